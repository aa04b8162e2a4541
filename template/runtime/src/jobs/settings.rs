//! The `[worker]` section: the engine's settings, and under `kinds` the
//! settings of the service's own job kinds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Backoff;
use crate::settings::{Problems, Section};

/// The `[worker]` settings. `K` is the service's own section for its kinds,
/// `[worker.kinds]`: a kind's settings sit under its name there
/// (`[worker.kinds.webhook]`), apart from the engine's keys, so that a
/// later engine key cannot clash with one of the service's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "K: Section")]
pub struct Settings<K> {
    /// Jobs this replica runs at once.
    pub workers: usize,
    /// Registers the `diagnostic.sleep` kind, for smoke and load tests.
    pub diagnostic_jobs: bool,
    /// Jobs waiting across every replica; more are refused with 503.
    pub queue_capacity: usize,
    /// Attempts per job, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubles on each further retry.
    pub backoff_initial_ms: u64,
    /// Longest wait between two attempts.
    pub backoff_max_ms: u64,
    /// How long a claim holds a job without a heartbeat.
    pub lease_ms: u64,
    /// How often a running job's lease is extended.
    pub heartbeat_ms: u64,
    /// How often idle workers look for due jobs when nothing woke them.
    pub poll_interval_ms: u64,
    /// How often expired leases are looked for.
    pub rescue_interval_ms: u64,
    /// Rescues after which a job fails instead of running again.
    pub max_rescues: u32,
    /// How long a queued job of a kind this replica does not run may wait
    /// for a replica that does, before it fails.
    pub unknown_kind_grace_ms: u64,
    /// How long finished jobs (and their idempotency keys) are kept.
    pub retention_ms: u64,
    /// `[worker.kinds]`: the settings of the service's own kinds.
    pub kinds: K,
}

impl<K: Section> Default for Settings<K> {
    fn default() -> Self {
        Self {
            workers: 4,
            diagnostic_jobs: false,
            queue_capacity: 1024,
            max_attempts: 5,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            lease_ms: 30_000,
            heartbeat_ms: 10_000,
            poll_interval_ms: 1_000,
            rescue_interval_ms: 5_000,
            max_rescues: 3,
            unknown_kind_grace_ms: 15 * 60 * 1_000,
            retention_ms: 7 * 24 * 60 * 60 * 1_000,
            kinds: K::default(),
        }
    }
}

impl<K: Section> Section for Settings<K> {
    const ENVIRONMENT_LISTS: &'static [&'static str] = K::ENVIRONMENT_LISTS;

    fn validate(&self, problems: &mut Problems) {
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
        problems.require_positive("worker.heartbeat_ms", self.heartbeat_ms);
        if self.lease_ms < self.heartbeat_ms.saturating_mul(3) {
            problems.add(
                "worker.lease_ms",
                format!(
                    "must be at least 3 times worker.heartbeat_ms ({} ms), so that one late heartbeat does not lose the lease",
                    self.heartbeat_ms
                ),
            );
        }
        problems.require_positive("worker.poll_interval_ms", self.poll_interval_ms);
        problems.require_positive("worker.rescue_interval_ms", self.rescue_interval_ms);
        problems.require_positive("worker.retention_ms", self.retention_ms);
        self.kinds.validate(problems);
    }
}

impl<K> Settings<K> {
    pub(super) fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.backoff_initial_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }

    /// `lease_ms` as a duration.
    #[must_use]
    pub(super) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// `heartbeat_ms` as a duration.
    #[must_use]
    pub(super) fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}
