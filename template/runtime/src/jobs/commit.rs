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
//! Intake reserves a place before it hands a job over, so concurrent
//! requests on one replica can never pass the capacity together. The count
//! of committed jobs is an estimate: the maintenance task refreshes it from
//! the database every second, and this replica adjusts it for what it
//! commits and claims in between. So the slack is what *other* replicas
//! accept within one refresh: with `r` replicas taking `n` jobs/s each,
//! the queue can pass the capacity by up to `(r - 1) * n` jobs before
//! intake refuses.

use std::sync::{
    Arc,
    atomic::{AtomicI64, AtomicU64, Ordering},
};

use tokio::sync::{Notify, mpsc, oneshot};

use super::{JobId, NewJob, QUEUE_CAPACITY, QUEUE_DEPTH, Store};

/// Most jobs in one commit.
pub const MAX_BATCH: usize = 256;

/// The estimated number of jobs waiting, against the capacity.
#[derive(Debug, Clone)]
pub struct Backlog {
    /// Committed and waiting, as last counted and adjusted since.
    committed: Arc<AtomicU64>,
    /// Admitted by intake here, not yet committed (or refused).
    reserved: Arc<AtomicU64>,
    /// Every change this replica made to `committed` (created jobs up,
    /// claimed jobs down), summed since start: a count read from the
    /// database is adjusted by what changed while it was being read.
    changes: Arc<AtomicI64>,
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
            committed: Arc::new(AtomicU64::new(0)),
            reserved: Arc::new(AtomicU64::new(0)),
            changes: Arc::new(AtomicI64::new(0)),
            capacity,
        }
    }

    /// Reserves a place for one job; `false` when the queue is full. A
    /// reservation ends with [`Backlog::committed`] or [`Backlog::cancel`].
    #[must_use]
    pub fn try_reserve(&self) -> bool {
        let committed = self.committed.load(Ordering::Relaxed);
        self.reserved
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |reserved| {
                (committed.saturating_add(reserved) < self.capacity).then_some(reserved + 1)
            })
            .is_ok()
    }

    /// Ends `reserved` reservations of which `created` became new jobs
    /// (the others repeated an idempotency key).
    pub fn committed(&self, reserved: u64, created: u64) {
        self.committed.fetch_add(created, Ordering::Relaxed);
        self.changes.fetch_add(
            i64::try_from(created).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        self.cancel(reserved);
    }

    /// Ends `reserved` reservations that stored nothing.
    pub fn cancel(&self, reserved: u64) {
        saturating_sub(&self.reserved, reserved);
    }

    #[must_use]
    pub const fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Marks the start of a count: pass it to [`Backlog::refresh`].
    #[must_use]
    pub fn counting(&self) -> i64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Replaces the estimate with `waiting`, as counted in the database
    /// from `since` ([`Backlog::counting`]), plus what this replica
    /// changed meanwhile: a claim made during the count is not undone.
    pub fn refresh(&self, waiting: u64, since: i64) {
        let meanwhile = self.changes.load(Ordering::Relaxed).saturating_sub(since);
        let estimate = i64::try_from(waiting)
            .unwrap_or(i64::MAX)
            .saturating_add(meanwhile);
        let estimate = u64::try_from(estimate).unwrap_or_default();
        self.committed.store(estimate, Ordering::Relaxed);
        #[expect(clippy::cast_precision_loss, reason = "a gauge; counts far below 2^52")]
        metrics::gauge!(QUEUE_DEPTH).set(waiting as f64);
    }

    /// Counts jobs this replica claimed out of the queue.
    pub fn taken(&self, jobs: u64) {
        saturating_sub(&self.committed, jobs);
        self.changes
            .fetch_sub(i64::try_from(jobs).unwrap_or(i64::MAX), Ordering::Relaxed);
    }
}

/// Lowers `counter` by `amount`, never below zero: an estimate refreshed
/// meanwhile may already be lower.
fn saturating_sub(counter: &AtomicU64, amount: u64) {
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |value| {
        Some(value.saturating_sub(amount))
    });
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
        f.debug_struct("Pending")
            .field("job", &self.job)
            .finish_non_exhaustive()
    }
}

impl Committer {
    /// Returns the id the job is stored under once it is committed. The
    /// caller holds a [`Backlog`] reservation for it; the writer ends it.
    ///
    /// # Errors
    /// [`NotCommitted`]; then the job is not stored (or, for a database
    /// error at commit, its fate is unknown to us: the client retries with
    /// the same `Idempotency-Key` to be sure).
    pub async fn commit(&self, job: NewJob) -> Result<JobId, NotCommitted> {
        let (reply, committed) = oneshot::channel();
        if self.sender.try_send(Pending { job, reply }).is_err() {
            return Err(NotCommitted::Busy);
        }
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
            let (jobs, replies): (Vec<NewJob>, Vec<_>) = batch
                .drain(..)
                .map(|pending| (pending.job, pending.reply))
                .unzip();
            let reserved = u64::try_from(jobs.len()).unwrap_or(u64::MAX);
            match self.store.insert_batch(&jobs).await {
                Ok(ids) => {
                    let created = ids
                        .iter()
                        .zip(&jobs)
                        .filter(|(id, job)| **id == job.id)
                        .count();
                    self.backlog
                        .committed(reserved, u64::try_from(created).unwrap_or(u64::MAX));
                    self.wake.notify_one();
                    for (reply, id) in replies.into_iter().zip(ids) {
                        let _ = reply.send(Ok(id));
                    }
                }
                Err(error) => {
                    self.backlog.cancel(reserved);
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
