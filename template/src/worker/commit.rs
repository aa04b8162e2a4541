//! Group commit for intake, and the bound on the durable queue.
//!
//! One commit per request would serialize intake on the disk's flush (one
//! fsync each on SQLite with `synchronous = FULL`). Instead each request
//! hands its job to the one writer over a bounded channel and waits for
//! the commit that includes it; the writer takes whatever has gathered
//! while the previous commit was flushing, up to [`MAX_BATCH`], and commits
//! it as one transaction. Policy when the channel is full: refuse (503),
//! never wait.
//!
//! The queue bound ([`Backlog`]) counts jobs waiting across every replica.
//! It is an estimate: the maintenance task refreshes it from the database
//! every second, and this replica adds what it committed since. So the
//! slack is what *other* replicas accept within one refresh: with `r`
//! replicas taking `n` jobs/s each, the queue can pass the capacity by up
//! to `(r - 1) * n` jobs before intake refuses.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use tokio::sync::{Notify, mpsc, oneshot};

use super::{JobId, NewJob, QUEUE_CAPACITY, QUEUE_DEPTH, Store};

/// Most jobs in one commit.
pub const MAX_BATCH: usize = 256;

/// The estimated number of jobs waiting, against the capacity.
#[derive(Debug, Clone)]
pub struct Backlog {
    waiting: Arc<AtomicU64>,
    capacity: u64,
}

impl Backlog {
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        let capacity = u64::try_from(capacity).unwrap_or(u64::MAX);
        #[expect(
            clippy::cast_precision_loss,
            reason = "capacities are validated to at most a million, exact in f64"
        )]
        metrics::gauge!(QUEUE_CAPACITY).set(capacity as f64);
        Self {
            waiting: Arc::new(AtomicU64::new(0)),
            capacity,
        }
    }

    #[must_use]
    pub fn has_room(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) < self.capacity
    }

    #[must_use]
    pub const fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Replaces the estimate with a count read from the database.
    pub fn refresh(&self, waiting: u64) {
        self.waiting.store(waiting, Ordering::Relaxed);
        #[expect(
            clippy::cast_precision_loss,
            reason = "a gauge; counts far below 2^52"
        )]
        metrics::gauge!(QUEUE_DEPTH).set(waiting as f64);
    }

    /// Counts jobs this replica committed (`added`) or claimed.
    pub fn added(&self, jobs: u64) {
        self.waiting.fetch_add(jobs, Ordering::Relaxed);
    }

    pub fn taken(&self, jobs: u64) {
        // Saturating: the estimate may already be below what was claimed.
        let _ = self
            .waiting
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |waiting| {
                Some(waiting.saturating_sub(jobs))
            });
    }
}

/// Why intake could not commit a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotCommitted {
    /// The writer's channel is full: more requests wait for a commit than
    /// may.
    Busy,
    /// The commit failed; `transient` when a retry may succeed.
    Database { transient: bool },
}

struct Pending {
    job: NewJob,
    reply: oneshot::Sender<Result<JobId, NotCommitted>>,
}

/// The intake's side: hands a job to the writer and waits for its commit.
#[derive(Debug, Clone)]
pub struct Committer {
    sender: mpsc::Sender<Pending>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("job", &self.job).finish_non_exhaustive()
    }
}

impl Committer {
    /// Returns the id the job is stored under once it is committed.
    ///
    /// # Errors
    /// [`NotCommitted`]; then the job is not stored (or, for a database
    /// error at commit, its fate is unknown to us: the client retries with
    /// the same `Idempotency-Key` to be sure).
    pub async fn commit(&self, job: NewJob) -> Result<JobId, NotCommitted> {
        let (reply, committed) = oneshot::channel();
        self.sender
            .try_send(Pending { job, reply })
            .map_err(|_| NotCommitted::Busy)?;
        committed
            .await
            .unwrap_or(Err(NotCommitted::Database { transient: true }))
    }
}

/// The one task that commits intake's jobs.
pub struct Writer {
    receiver: mpsc::Receiver<Pending>,
    store: Store,
    backlog: Backlog,
    wake: Arc<Notify>,
}

/// A committer and its writer, with room for `pending` jobs waiting for a
/// commit (the HTTP concurrency limit: one per request in flight).
#[must_use]
pub fn channel(
    store: Store,
    pending: usize,
    backlog: Backlog,
    wake: Arc<Notify>,
) -> (Committer, Writer) {
    let (sender, receiver) = mpsc::channel(pending);
    (
        Committer { sender },
        Writer {
            receiver,
            store,
            backlog,
            wake,
        },
    )
}

impl Writer {
    /// Commits batches until every committer is gone (the HTTP server has
    /// stopped), so no request that got in is left without an answer.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while self.receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (jobs, replies): (Vec<NewJob>, Vec<_>) =
                batch.drain(..).map(|pending| (pending.job, pending.reply)).unzip();
            match self.store.insert_batch(&jobs).await {
                Ok(ids) => {
                    let created = ids.iter().zip(&jobs).filter(|(id, job)| **id == job.id).count();
                    self.backlog.added(u64::try_from(created).unwrap_or(u64::MAX));
                    self.wake.notify_one();
                    for (reply, id) in replies.into_iter().zip(ids) {
                        let _ = reply.send(Ok(id));
                    }
                }
                Err(error) => {
                    let failed = NotCommitted::Database {
                        transient: error.is_transient(),
                    };
                    for reply in replies {
                        let _ = reply.send(Err(failed));
                    }
                }
            }
        }
    }
}
