//! One attempt of a job, and what follows it.
//!
//! A panic in job code is caught at the attempt, so it fails that attempt
//! (and is retried) instead of killing the worker. Each attempt is limited
//! by the job timeout. The next attempt is not awaited here: its time is
//! stored with the job ([`super::Store::retry`]), so a retry survives a
//! restart and may run on another replica.

use std::{panic::AssertUnwindSafe, time::Duration};

use futures_util::FutureExt;

use super::{Backoff, Job};

/// How a job's attempts are limited and spaced.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per job, the first included.
    pub max_attempts: u32,
    /// Limit on each attempt (`timeouts.default_ms`).
    pub attempt_timeout: Duration,
    pub backoff: Backoff,
}

/// What to record after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Succeed,
    /// Queue the job again, to run after this wait.
    Retry {
        delay: Duration,
        kind: &'static str,
    },
    /// No attempts left.
    Fail {
        kind: &'static str,
    },
}

impl RetryPolicy {
    /// Decides what follows attempt number `attempt` that ended with
    /// `result` (its failure kind on error).
    #[must_use]
    pub fn next(&self, attempt: u32, result: Result<(), &'static str>) -> Next {
        match result {
            Ok(()) => Next::Succeed,
            Err(kind) if attempt >= self.max_attempts => Next::Fail { kind },
            Err(kind) => Next::Retry {
                delay: self.backoff.delay(attempt),
                kind,
            },
        }
    }
}

/// One attempt under `timeout`. A panic in the job fails the attempt
/// instead of unwinding through the worker. The error says what kind of
/// failure it was (`error`, `panic` or `timeout`), for logs and metrics.
///
/// # Errors
/// The kind of failure.
pub async fn run_attempt(job: &Job, attempt: u32, timeout: Duration) -> Result<(), &'static str> {
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
    use tokio::time::Instant;

    use super::*;
    use crate::worker::{JobId, JobRequest};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(30),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
        }
    }

    fn job(request: JobRequest) -> Job {
        Job {
            id: JobId::new(),
            request,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_fails_as_asked_then_succeeds() {
        let failing = job(JobRequest {
            fail_attempts: 1,
            duration_ms: 10,
            ..JobRequest::default()
        });
        let started = Instant::now();
        assert_eq!(
            run_attempt(&failing, 1, policy().attempt_timeout).await,
            Err("error")
        );
        assert_eq!(
            run_attempt(&failing, 2, policy().attempt_timeout).await,
            Ok(())
        );
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_is_cut_at_the_timeout() {
        let endless = job(JobRequest {
            duration_ms: 60_000,
            ..JobRequest::default()
        });
        let started = Instant::now();
        assert_eq!(
            run_attempt(&endless, 1, Duration::from_secs(30)).await,
            Err("timeout")
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_attempt_fails_instead_of_unwinding() {
        let panicking = job(JobRequest {
            panic_attempts: 1,
            ..JobRequest::default()
        });
        assert_eq!(
            run_attempt(&panicking, 1, policy().attempt_timeout).await,
            Err("panic")
        );
        assert_eq!(
            run_attempt(&panicking, 2, policy().attempt_timeout).await,
            Ok(())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_with_a_cpu_step_succeeds() {
        let cpu = job(JobRequest {
            cpu_rounds: 1_000,
            ..JobRequest::default()
        });
        assert_eq!(run_attempt(&cpu, 1, policy().attempt_timeout).await, Ok(()));
    }

    #[test]
    fn failures_are_retried_with_backoff_until_attempts_run_out() {
        let policy = policy();
        assert_eq!(policy.next(1, Ok(())), Next::Succeed);
        let Next::Retry { delay, kind } = policy.next(1, Err("error")) else {
            panic!("the first failure is retried");
        };
        assert_eq!(kind, "error");
        assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100));
        let Next::Retry { delay, .. } = policy.next(2, Err("timeout")) else {
            panic!("the second failure is retried");
        };
        assert!(delay >= Duration::from_millis(100) && delay <= Duration::from_millis(200));
        assert_eq!(policy.next(3, Err("panic")), Next::Fail { kind: "panic" });
    }
}
