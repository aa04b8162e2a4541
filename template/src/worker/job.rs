//! The example job. Its payload controls how it behaves, so that timeouts,
//! retries and the drain can be exercised from outside:
//!
//! - `duration_ms`: how long its I/O step waits (a stand-in for a call to
//!   another service);
//! - `cpu_rounds`: work for its CPU-heavy step, which runs on the blocking
//!   pool so it never stalls the async workers;
//! - `fail_attempts`: how many attempts fail before one succeeds;
//! - `panic_attempts`: how many attempts panic before one succeeds, to show
//!   that a panicking job is retried, not lost.
//!
//! Replace [`Job::run_attempt`] with your own job's work.

use std::{fmt, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Most rounds a job may ask of the CPU step. Blocking work cannot be
/// cancelled by a timeout, so it is bounded up front instead.
pub const MAX_CPU_ROUNDS: u32 = 100_000_000;

/// Identifies one accepted job in responses and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobId(Uuid);

impl JobId {
    #[must_use]
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for JobId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(Self)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a client submits with `POST /jobs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub cpu_rounds: u32,
    #[serde(default)]
    pub fail_attempts: u32,
    #[serde(default)]
    pub panic_attempts: u32,
}

impl JobRequest {
    /// Checks the payload before the job is accepted.
    ///
    /// # Errors
    /// A message saying which field is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.cpu_rounds > MAX_CPU_ROUNDS {
            return Err(format!("cpu_rounds must be at most {MAX_CPU_ROUNDS}"));
        }
        Ok(())
    }
}

/// A job being run: its id and what it was asked to do.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub request: JobRequest,
}

/// Why one attempt of a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("attempt {attempt} failed as requested by fail_attempts")]
    Requested { attempt: u32 },
    #[error("the CPU step panicked")]
    CpuStepPanicked,
}

impl Job {
    /// Runs one attempt (numbered from 1).
    ///
    /// # Errors
    /// When the attempt fails; the caller decides whether to retry.
    ///
    /// # Panics
    /// When `panic_attempts` asks for it.
    pub async fn run_attempt(&self, attempt: u32) -> Result<(), JobError> {
        if self.request.duration_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.request.duration_ms)).await;
        }
        if self.request.cpu_rounds > 0 {
            let rounds = self.request.cpu_rounds;
            let checksum = tokio::task::spawn_blocking(move || cpu_step(rounds))
                .await
                .map_err(|_| JobError::CpuStepPanicked)?;
            tracing::debug!(checksum, "cpu step done");
        }
        // Fault injection for the example job only; real jobs return errors.
        assert!(
            attempt > self.request.panic_attempts,
            "attempt {attempt} panicked as requested by panic_attempts"
        );
        if attempt <= self.request.fail_attempts {
            return Err(JobError::Requested { attempt });
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

/// How a job ended; recorded once per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// Every attempt failed, timed out or panicked, or the job was rescued
    /// too often.
    Failed,
}

impl Outcome {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}
