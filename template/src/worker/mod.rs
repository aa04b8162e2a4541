//! The `worker` service type: jobs come in over HTTP, wait in a bounded
//! queue, and a pool of workers runs them with a timeout per attempt and
//! retries with exponential backoff.
//!
//! Guarantees, and their limits:
//! - `POST /jobs` answers 202 only once the job is in the queue; when the
//!   queue is full, or the service is draining, it answers 503 with
//!   `Retry-After` and the job was not taken.
//! - Every accepted job ends in exactly one `job finished` event, with
//!   `job.id` and `outcome` (`succeeded`, `failed` or `abandoned`).
//! - On shutdown intake closes first, then every queued job is still run
//!   within the drain grace; jobs left at the deadline are logged as
//!   `abandoned`.
//! - The queue lives in memory: a crash or SIGKILL loses the jobs in it.
//!   Put a durable queue in front when that is not acceptable.

mod backoff;
mod intake;
mod job;
mod pool;
mod queue;

use std::time::Duration;

use axum::Router;
use serde::{Deserialize, Serialize};

pub use self::{
    backoff::Backoff,
    job::{Job, JobId, JobRequest, Outcome},
    pool::RetryPolicy,
    queue::{JobQueue, JobSource, Refused},
};
use crate::{
    settings::Problems,
    tasks::{BoxError, Context},
};

/// The `[worker]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Jobs processed at once.
    pub workers: usize,
    /// Jobs accepted but not yet started; more are refused with 503.
    pub queue_capacity: usize,
    /// Attempts per job, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles on each further retry.
    pub backoff_initial_ms: u64,
    /// Longest wait between two attempts.
    pub backoff_max_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            workers: 4,
            queue_capacity: 1024,
            max_attempts: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
        }
    }
}

impl Settings {
    pub(crate) fn validate(&self, problems: &mut Problems) {
        problems.require_capacity("worker.workers", self.workers, 10_000);
        problems.require_capacity("worker.queue_capacity", self.queue_capacity, 1_000_000);
        if self.max_attempts == 0 {
            problems.add("worker.max_attempts", "must be at least 1");
        }
        problems.require_positive("worker.backoff_initial_ms", self.backoff_initial_ms);
        if self.backoff_max_ms < self.backoff_initial_ms {
            problems.add(
                "worker.backoff_max_ms",
                format!(
                    "must be at least worker.backoff_initial_ms ({} ms)",
                    self.backoff_initial_ms
                ),
            );
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.backoff_initial_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }
}

/// Creates the queue, starts the workers and returns the intake routes.
///
/// # Errors
/// Never, today; the signature matches the other service types.
pub fn start(context: &mut Context<'_>) -> Result<Router, BoxError> {
    let settings = &context.settings.worker;
    let (queue, source) = queue::bounded(settings.queue_capacity, context.draining.clone());
    let policy = RetryPolicy {
        max_attempts: settings.max_attempts,
        attempt_timeout: context.settings.timeouts.default_operation(),
        backoff: settings.backoff(),
    };
    for _ in 0..settings.workers {
        let worker = pool::Worker {
            source: source.clone(),
            policy: policy.clone(),
            abandon: context.abandon.clone(),
        };
        context.tasks.spawn("worker", async move {
            worker.run().await;
            Ok(())
        });
    }
    Ok(intake::routes(
        queue,
        context.settings.http.retry_after_secs,
    ))
}
