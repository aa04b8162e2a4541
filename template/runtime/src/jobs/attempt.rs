//! One attempt of a job, and what follows it.
//!
//! A panic in job code is caught at the attempt, so it fails that attempt
//! (and is retried) instead of killing the worker. Each attempt is limited
//! by the job timeout. The next attempt is not awaited here: its time is
//! stored with the job ([`super::Store::retry`]), so a retry survives a
//! restart and may run on another replica.

use std::{panic::AssertUnwindSafe, time::Duration};

use futures_util::FutureExt;

use super::{Attempt, Backoff};

/// How a job's attempts are limited and spaced.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per job, the first included, for kinds without a limit of
    /// their own (`worker.max_attempts`).
    pub max_attempts: u32,
    /// Limit on each attempt, for kinds without one of their own
    /// (`timeouts.default_ms`).
    pub attempt_timeout: Duration,
    pub backoff: Backoff,
}

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `error`, `panic` or `timeout`, for logs and metrics.
    pub kind: &'static str,
    /// What the job said (an error's message), or what cut it.
    pub message: String,
    /// Another attempt cannot help (the job said so).
    pub permanent: bool,
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
    /// No attempts left, or none would help.
    Fail {
        kind: &'static str,
    },
}

impl RetryPolicy {
    /// Decides what follows attempt number `attempt` of a job allowed
    /// `max_attempts`, which succeeded or ended with `failure`.
    #[must_use]
    pub fn next(&self, attempt: u32, max_attempts: u32, failure: Option<&Failure>) -> Next {
        match failure {
            None => Next::Succeed,
            Some(failure) if failure.permanent || attempt >= max_attempts => {
                Next::Fail { kind: failure.kind }
            }
            Some(failure) => Next::Retry {
                delay: self.backoff.delay(attempt),
                kind: failure.kind,
            },
        }
    }
}

/// Runs one attempt under `timeout`. A panic in the job fails the attempt
/// instead of unwinding through the worker.
///
/// # Errors
/// How the attempt failed.
pub async fn run_attempt(attempt: Attempt, number: u32, timeout: Duration) -> Result<(), Failure> {
    let guarded = AssertUnwindSafe(attempt).catch_unwind();
    // On timeout the attempt's future is dropped, which cancels it.
    match tokio::time::timeout(timeout, guarded).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => {
            tracing::debug!(attempt = number, %error, "job attempt returned an error");
            Err(Failure {
                kind: "error",
                message: error.to_string(),
                permanent: error.is_permanent(),
            })
        }
        Ok(Err(panic)) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(attempt = number, panic = %message, "job attempt panicked");
            Err(Failure {
                kind: "panic",
                message: format!("panicked: {message}"),
                permanent: false,
            })
        }
        Err(_elapsed) => Err(Failure {
            kind: "timeout",
            message: format!("timed out after {} ms", timeout.as_millis()),
            permanent: false,
        }),
    }
}

/// The text a panic carried, when it carried one.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::jobs::{JobContext, JobId, Kinds, SleepArgs, diagnostic::DiagnosticSleep};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            attempt_timeout: Duration::from_secs(30),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
        }
    }

    /// Attempt `number` of a `diagnostic.sleep` job with `args`.
    fn sleep(args: &SleepArgs, number: u32) -> Attempt {
        let mut kinds = Kinds::new();
        kinds.register(DiagnosticSleep);
        let args = serde_json::to_string(args).unwrap();
        let job = JobContext {
            id: JobId::new(),
            attempt: number,
            cancelled: CancellationToken::new(),
        };
        kinds
            .prepare("diagnostic.sleep", &args, job)
            .unwrap()
            .attempt
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_fails_as_asked_then_succeeds() {
        let failing = SleepArgs {
            fail_attempts: 1,
            duration_ms: 10,
            ..SleepArgs::default()
        };
        let started = Instant::now();
        let failure = run_attempt(sleep(&failing, 1), 1, policy().attempt_timeout)
            .await
            .unwrap_err();
        assert_eq!(failure.kind, "error");
        assert_eq!(failure.message, "asked to fail by fail_attempts");
        assert!(!failure.permanent);
        assert_eq!(
            run_attempt(sleep(&failing, 2), 2, policy().attempt_timeout).await,
            Ok(())
        );
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_is_cut_at_the_timeout() {
        let endless = SleepArgs {
            duration_ms: 60_000,
            ..SleepArgs::default()
        };
        let started = Instant::now();
        let failure = run_attempt(sleep(&endless, 1), 1, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(failure.kind, "timeout");
        assert_eq!(failure.message, "timed out after 30000 ms");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_attempt_fails_instead_of_unwinding() {
        let panicking = SleepArgs {
            panic_attempts: 1,
            ..SleepArgs::default()
        };
        let failure = run_attempt(sleep(&panicking, 1), 1, policy().attempt_timeout)
            .await
            .unwrap_err();
        assert_eq!(failure.kind, "panic");
        assert_eq!(
            failure.message,
            "panicked: asked to panic by panic_attempts"
        );
        assert_eq!(
            run_attempt(sleep(&panicking, 2), 2, policy().attempt_timeout).await,
            Ok(())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_with_a_cpu_step_succeeds() {
        let cpu = SleepArgs {
            cpu_rounds: 1_000,
            ..SleepArgs::default()
        };
        assert_eq!(
            run_attempt(sleep(&cpu, 1), 1, policy().attempt_timeout).await,
            Ok(())
        );
    }

    fn failure(kind: &'static str, permanent: bool) -> Failure {
        Failure {
            kind,
            message: String::new(),
            permanent,
        }
    }

    #[test]
    fn failures_are_retried_with_backoff_until_attempts_run_out() {
        let policy = policy();
        assert_eq!(policy.next(1, 3, None), Next::Succeed);
        let Next::Retry { delay, kind } = policy.next(1, 3, Some(&failure("error", false))) else {
            panic!("the first failure is retried");
        };
        assert_eq!(kind, "error");
        assert!(delay >= Duration::from_millis(50) && delay <= Duration::from_millis(100));
        let Next::Retry { delay, .. } = policy.next(2, 3, Some(&failure("timeout", false))) else {
            panic!("the second failure is retried");
        };
        assert!(delay >= Duration::from_millis(100) && delay <= Duration::from_millis(200));
        assert_eq!(
            policy.next(3, 3, Some(&failure("panic", false))),
            Next::Fail { kind: "panic" }
        );
        assert!(
            matches!(
                policy.next(3, 5, Some(&failure("panic", false))),
                Next::Retry { kind: "panic", .. }
            ),
            "a kind allowing more attempts is retried"
        );
    }

    #[test]
    fn a_permanent_failure_is_not_retried() {
        assert_eq!(
            policy().next(1, 3, Some(&failure("error", true))),
            Next::Fail { kind: "error" }
        );
    }
}
