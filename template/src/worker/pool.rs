//! The workers: each takes jobs from the queue and runs them to one outcome.
//!
//! A panic in job code is caught at the attempt, so it fails that attempt
//! (and is retried) instead of killing the worker and losing the job. Each
//! attempt is limited by the job timeout; between attempts the worker waits
//! according to the backoff. Only the drain deadline stops a job early, and
//! then it is reported as abandoned.

use std::{panic::AssertUnwindSafe, time::Duration};

use futures_util::FutureExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Backoff, JOB_ATTEMPT_FAILURES, JOB_DURATION, JOBS, Job, JobSource, Outcome};
use crate::settings::duration_ms;

/// How a job's attempts are limited and spaced.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per job, the first included.
    pub max_attempts: u32,
    /// Limit on each attempt ([`crate::timeouts::DEFAULT`] unless configured).
    pub attempt_timeout: Duration,
    pub backoff: Backoff,
}

/// One worker of the pool.
pub struct Worker {
    pub source: JobSource,
    pub policy: RetryPolicy,
    /// Cancelled when the drain deadline passes.
    pub abandon: CancellationToken,
}

impl Worker {
    /// Runs jobs until the queue is closed and empty.
    pub async fn run(self) {
        while let Some(job) = self.source.next().await {
            let span = tracing::info_span!("job.execute", job.id = %job.id);
            self.finish(job).instrument(span).await;
        }
    }

    /// Runs `job` to its outcome and logs the one `job finished` event.
    async fn finish(&self, job: Job) {
        let started = Instant::now();
        let (outcome, attempts) = if self.abandon.is_cancelled() {
            (Outcome::Abandoned, 0)
        } else {
            process(&job, &self.policy, &self.abandon).await
        };
        let elapsed = started.elapsed();
        metrics::counter!(JOBS, "outcome" => outcome.as_str()).increment(1);
        metrics::histogram!(JOB_DURATION, "outcome" => outcome.as_str())
            .record(elapsed.as_secs_f64());
        let duration_ms = duration_ms(elapsed);
        match outcome {
            Outcome::Succeeded => {
                tracing::info!(job.id = %job.id, outcome = outcome.as_str(), attempts, duration_ms, "job finished");
            }
            Outcome::Failed | Outcome::Abandoned => {
                tracing::warn!(job.id = %job.id, outcome = outcome.as_str(), attempts, duration_ms, "job finished");
            }
        }
    }
}

/// Runs the attempts of `job` until one succeeds, they run out, or
/// `abandon` is cancelled. Returns the outcome and the attempts started.
pub async fn process(
    job: &Job,
    policy: &RetryPolicy,
    abandon: &CancellationToken,
) -> (Outcome, u32) {
    let mut attempt = 1;
    loop {
        let result = tokio::select! {
            biased;
            () = abandon.cancelled() => return (Outcome::Abandoned, attempt),
            result = run_attempt(job, attempt, policy.attempt_timeout) => result,
        };
        let Err(reason) = result else {
            return (Outcome::Succeeded, attempt);
        };
        metrics::counter!(JOB_ATTEMPT_FAILURES, "kind" => reason).increment(1);
        if attempt >= policy.max_attempts {
            tracing::warn!(
                attempt,
                error.kind = reason,
                "job attempt failed, no attempts left"
            );
            return (Outcome::Failed, attempt);
        }
        let delay = policy.backoff.delay(attempt);
        tracing::info!(
            attempt,
            error.kind = reason,
            retry_in_ms = duration_ms(delay),
            "job attempt failed, retrying"
        );
        tokio::select! {
            biased;
            () = abandon.cancelled() => return (Outcome::Abandoned, attempt),
            () = tokio::time::sleep(delay) => {}
        }
        attempt += 1;
    }
}

/// One attempt under `timeout`. A panic in the job fails the attempt
/// instead of unwinding through the worker. The error says what kind of
/// failure it was, for the log.
async fn run_attempt(job: &Job, attempt: u32, timeout: Duration) -> Result<(), &'static str> {
    let guarded = AssertUnwindSafe(job.run_attempt(attempt)).catch_unwind();
    // On timeout the attempt's future is dropped, which cancels it.
    match tokio::time::timeout(timeout, guarded).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => {
            tracing::debug!(attempt, %error, "job attempt returned an error");
            Err("error")
        }
        Ok(Err(_panic)) => {
            tracing::error!(attempt, "job attempt panicked");
            Err("panic")
        }
        Err(_elapsed) => Err("timeout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::JobRequest;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(30),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
        }
    }

    fn job(duration_ms: u64, fail_attempts: u32) -> Job {
        Job::new(JobRequest {
            duration_ms,
            fail_attempts,
            ..JobRequest::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_retries_waiting_the_backoff_between_attempts() {
        let started = Instant::now();
        let outcome = process(&job(10, 2), &policy(), &CancellationToken::new()).await;
        assert_eq!(outcome, (Outcome::Succeeded, 3));
        // Three attempts of 10 ms, backoff of 100 ms then 200 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(330));
    }

    #[tokio::test(start_paused = true)]
    async fn fails_once_attempts_run_out() {
        let outcome = process(&job(0, 5), &policy(), &CancellationToken::new()).await;
        assert_eq!(outcome, (Outcome::Failed, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn each_attempt_is_cut_at_the_timeout() {
        let started = Instant::now();
        let outcome = process(&job(60_000, 0), &policy(), &CancellationToken::new()).await;
        assert_eq!(outcome, (Outcome::Failed, 3));
        // Three 30 s timeouts, backoff of 100 ms then 200 ms.
        assert_eq!(started.elapsed(), Duration::from_millis(90_300));
    }

    #[tokio::test(start_paused = true)]
    async fn abandon_stops_a_running_job() {
        let abandon = CancellationToken::new();
        let running = tokio::spawn({
            let abandon = abandon.clone();
            async move { process(&job(60_000, 0), &policy(), &abandon).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        abandon.cancel();
        assert_eq!(running.await.unwrap(), (Outcome::Abandoned, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_attempt_fails_and_is_retried() {
        let request = JobRequest {
            panic_attempts: 1,
            ..JobRequest::default()
        };
        let outcome = process(&Job::new(request), &policy(), &CancellationToken::new()).await;
        assert_eq!(outcome, (Outcome::Succeeded, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_with_a_cpu_step_succeeds() {
        let request = JobRequest {
            duration_ms: 0,
            cpu_rounds: 1_000,
            ..JobRequest::default()
        };
        let outcome = process(&Job::new(request), &policy(), &CancellationToken::new()).await;
        assert_eq!(outcome, (Outcome::Succeeded, 1));
    }
}
