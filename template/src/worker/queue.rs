//! The bounded queue between intake and the workers.
//!
//! Policy when full: refuse. [`JobQueue::offer`] never waits; the caller
//! gets [`Refused::Full`] and the HTTP intake turns that into 503 with
//! `Retry-After`, so the backlog can never exceed the capacity and the
//! client, which still holds the job, decides when to retry.

use std::sync::Arc;

use metrics::Gauge;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::{JOBS_REFUSED, Job, QUEUE_CAPACITY, QUEUE_DEPTH};

/// Why a job was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `capacity` jobs already.
    Full,
    /// The service is draining and takes no new work.
    Draining,
}

impl Refused {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Draining => "draining",
        }
    }
}

/// Creates a queue for at most `capacity` waiting jobs. When `draining` is
/// cancelled the queue stops taking jobs; the ones already in it are still
/// handed out. The queue keeps the [`QUEUE_DEPTH`] and [`QUEUE_CAPACITY`]
/// gauges up to date; they have no labels, so they assume one queue per
/// process (in-process tests that run several share them).
#[must_use]
pub fn bounded(capacity: usize, draining: CancellationToken) -> (JobQueue, JobSource) {
    let (sender, receiver) = mpsc::channel(capacity);
    #[expect(
        clippy::cast_precision_loss,
        reason = "capacities are validated to at most a million, exact in f64"
    )]
    metrics::gauge!(QUEUE_CAPACITY).set(capacity as f64);
    let depth = metrics::gauge!(QUEUE_DEPTH);
    let queue = JobQueue {
        sender,
        draining: draining.clone(),
        depth: depth.clone(),
    };
    let source = JobSource {
        receiver: Arc::new(Mutex::new(receiver)),
        draining,
        depth,
    };
    (queue, source)
}

/// The producing side, held by the intake.
#[derive(Debug, Clone)]
pub struct JobQueue {
    sender: mpsc::Sender<Job>,
    draining: CancellationToken,
    /// Counted up here and down in [`JobSource::next`], rather than read
    /// from the channel, so that concurrent updates cannot leave it stale.
    depth: Gauge,
}

impl JobQueue {
    /// Puts `job` in the queue if there is room and the service is not
    /// draining. Never waits.
    ///
    /// # Errors
    /// [`Refused`] says why the job was not taken.
    pub fn offer(&self, job: Job) -> Result<(), Refused> {
        if self.draining.is_cancelled() {
            return Err(refuse(Refused::Draining));
        }
        // Counted before the send, so that a worker taking the job at once
        // never drives the gauge below zero.
        self.depth.increment(1.0);
        self.sender.try_send(job).map_err(|error| {
            self.depth.decrement(1.0);
            refuse(match error {
                mpsc::error::TrySendError::Full(_) => Refused::Full,
                mpsc::error::TrySendError::Closed(_) => Refused::Draining,
            })
        })
    }

    #[must_use]
    pub fn capacity(&self) -> usize {
        self.sender.max_capacity()
    }
}

/// Counts a refusal in [`JOBS_REFUSED`] and returns it.
fn refuse(refused: Refused) -> Refused {
    metrics::counter!(JOBS_REFUSED, "reason" => refused.as_str()).increment(1);
    refused
}

/// The consuming side, shared by the workers.
#[derive(Debug, Clone)]
pub struct JobSource {
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    draining: CancellationToken,
    depth: Gauge,
}

impl JobSource {
    /// The next job; `None` once the service is draining and the queue is
    /// empty.
    pub async fn next(&self) -> Option<Job> {
        let mut receiver = self.receiver.lock().await;
        let job = tokio::select! {
            biased;
            job = receiver.recv() => job,
            () = self.draining.cancelled() => {
                // Refuse further sends, then hand out what is still queued.
                receiver.close();
                receiver.recv().await
            }
        };
        if job.is_some() {
            self.depth.decrement(1.0);
        }
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::JobRequest;

    fn job() -> Job {
        Job::new(JobRequest::default())
    }

    #[tokio::test]
    async fn refuses_when_full_and_never_holds_more_than_capacity() {
        let draining = CancellationToken::new();
        let (queue, source) = bounded(2, draining.clone());
        assert_eq!(queue.offer(job()), Ok(()));
        assert_eq!(queue.offer(job()), Ok(()));
        assert_eq!(queue.offer(job()), Err(Refused::Full));
        assert_eq!(queue.capacity(), 2);

        // Draining hands out what the queue holds, then ends: two jobs.
        draining.cancel();
        let mut held = 0;
        while source.next().await.is_some() {
            held += 1;
        }
        assert_eq!(held, 2);
    }

    #[tokio::test]
    async fn draining_refuses_new_jobs_but_hands_out_queued_ones() {
        let draining = CancellationToken::new();
        let (queue, source) = bounded(4, draining.clone());
        let first = job();
        let first_id = first.id;
        queue.offer(first).unwrap();

        draining.cancel();
        assert_eq!(queue.offer(job()), Err(Refused::Draining));
        assert_eq!(source.next().await.map(|job| job.id), Some(first_id));
        assert!(
            source.next().await.is_none(),
            "queue should end once drained"
        );
    }
}
