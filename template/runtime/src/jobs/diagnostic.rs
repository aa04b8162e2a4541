//! The `diagnostic.sleep` job kind, for smoke and load tests of a deployed
//! service and for the template's own tests. Registered only when
//! `worker.diagnostic_jobs` is true; otherwise it is an unknown kind. Its
//! arguments, each optional (default 0), control how it behaves:
//!
//! - `duration_ms`: how long its I/O step waits (a stand-in for a call to
//!   another service);
//! - `cpu_rounds`: work for its CPU-heavy step, which runs on the blocking
//!   pool so it never stalls the async workers;
//! - `fail_attempts`: how many attempts fail before one succeeds;
//! - `panic_attempts`: how many attempts panic before one succeeds, to show
//!   that a panicking job is retried, not lost.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{JobContext, JobError, JobKind};

/// Most rounds a job may ask of the CPU step. Blocking work cannot be
/// cancelled by a timeout, so it is bounded up front instead.
pub const MAX_CPU_ROUNDS: u32 = 100_000_000;

/// The `diagnostic.sleep` kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct DiagnosticSleep;

/// The arguments of a `diagnostic.sleep` job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SleepArgs {
    /// How long the I/O step waits.
    pub duration_ms: u64,
    /// Work for the CPU step, on the blocking pool; at most [`MAX_CPU_ROUNDS`].
    pub cpu_rounds: u32,
    /// Attempts that fail before one succeeds.
    pub fail_attempts: u32,
    /// Attempts that panic before one succeeds.
    pub panic_attempts: u32,
}

/// An attempt that failed because `fail_attempts` asked for it.
#[derive(Debug, thiserror::Error)]
#[error("asked to fail by fail_attempts")]
pub struct RequestedFailure;

impl JobKind for DiagnosticSleep {
    const NAME: &'static str = "diagnostic.sleep";
    type Args = SleepArgs;

    fn validate(&self, args: &SleepArgs) -> Result<(), String> {
        if args.cpu_rounds > MAX_CPU_ROUNDS {
            return Err(format!("cpu_rounds must be at most {MAX_CPU_ROUNDS}"));
        }
        Ok(())
    }

    async fn run(&self, args: SleepArgs, job: JobContext) -> Result<(), JobError> {
        if args.duration_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.duration_ms)).await;
        }
        if args.cpu_rounds > 0 {
            let rounds = args.cpu_rounds;
            let checksum = tokio::task::spawn_blocking(move || cpu_step(rounds)).await?;
            tracing::debug!(checksum, "cpu step done");
        }
        assert!(
            job.attempt > args.panic_attempts,
            "asked to panic by panic_attempts"
        );
        if job.attempt <= args.fail_attempts {
            return Err(RequestedFailure.into());
        }
        Ok(())
    }
}

/// A stand-in for CPU-heavy work (hashing, parsing, compression).
fn cpu_step(rounds: u32) -> u64 {
    (0..rounds).fold(0xcbf2_9ce4_8422_2325_u64, |hash, round| {
        (hash ^ u64::from(round)).wrapping_mul(0x0100_0000_01b3)
    })
}
