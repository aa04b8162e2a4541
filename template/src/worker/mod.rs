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
//!
//! Metrics: the series named below, described in [`describe_metrics`].

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

/// Counter of jobs finished, by `outcome`.
pub const JOBS: &str = "nebula_jobs_total";
/// Histogram of the time from a job's start to its outcome, by `outcome`.
pub const JOB_DURATION: &str = "nebula_job_duration_seconds";
/// Counter of failed attempts, by `kind` (`error`, `panic`, `timeout`).
pub const JOB_ATTEMPT_FAILURES: &str = "nebula_job_attempt_failures_total";
/// Counter of jobs refused at intake, by `reason` (`full`, `draining`).
pub const JOBS_REFUSED: &str = "nebula_jobs_refused_total";
/// Gauge of the jobs accepted and not yet started.
pub const QUEUE_DEPTH: &str = "nebula_job_queue_depth";
/// Gauge of the most jobs the queue holds (`worker.queue_capacity`).
pub const QUEUE_CAPACITY: &str = "nebula_job_queue_capacity";

/// Describes the worker's series for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_counter!(
        JOBS,
        "Jobs finished, by outcome: succeeded, failed or abandoned"
    );
    metrics::describe_histogram!(
        JOB_DURATION,
        metrics::Unit::Seconds,
        "Time from a job's start to its outcome, retries included, by outcome"
    );
    metrics::describe_counter!(
        JOB_ATTEMPT_FAILURES,
        "Job attempts that failed, by kind: error, panic or timeout"
    );
    metrics::describe_counter!(
        JOBS_REFUSED,
        "Jobs refused at intake with 503, by reason: full or draining"
    );
    metrics::describe_gauge!(QUEUE_DEPTH, "Jobs accepted and not yet started");
    metrics::describe_gauge!(QUEUE_CAPACITY, "Most jobs the queue holds");
}

/// Creates the queue, starts the workers and returns the intake routes.
///
/// # Errors
/// Never, today; the signature matches the other service types.
pub fn start(context: &mut Context<'_>) -> Result<Router, BoxError> {
    let settings = &context.settings.worker;
    describe_metrics();
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
