//! The Nebula timeout rules, in one place so every service uses the same ones.
//!
//! Every operation that waits on something outside the process has a
//! deadline. [`Timeouts::NEBULA`] holds the house rules, a service names
//! its own (`Service::TIMEOUTS`, usually the same), the `[timeouts]`
//! settings override them per deployment, and code reads the values from
//! [`Timeouts`], never from literals scattered through the code.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::settings::Problems;

/// How long shutdown waits for accepted work before cancelling it. Below
/// Kubernetes' default 30 s termination grace, so the process exits on its
/// own terms before it is killed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// The `[timeouts]` settings, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// One operation: an HTTP request handled by this service, a job
    /// attempt, a scheduled run without its own timeout.
    pub default_ms: u64,
    /// One database call, the wait for a pooled connection included: every
    /// call of the `database` module, and the engines' own limits. Short,
    /// because a slow query holds a connection others are waiting for.
    pub database_ms: u64,
    /// One outbound HTTP call, connect included.
    pub http_client_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::NEBULA
    }
}

impl Timeouts {
    /// The house rules: 30 s per operation, 5 s per database call, 10 s per
    /// outbound HTTP call.
    pub const NEBULA: Self = Self {
        default_ms: 30_000,
        database_ms: 5_000,
        http_client_ms: 10_000,
    };

    /// The deadline of one operation.
    #[must_use]
    pub fn default_operation(&self) -> Duration {
        Duration::from_millis(self.default_ms)
    }

    /// The deadline of one database call.
    #[must_use]
    pub fn database(&self) -> Duration {
        Duration::from_millis(self.database_ms)
    }

    /// The deadline of one outbound HTTP call.
    #[must_use]
    pub fn http_client(&self) -> Duration {
        Duration::from_millis(self.http_client_ms)
    }

    /// Records every out-of-range value in `problems`.
    pub fn validate(&self, problems: &mut Problems) {
        problems.require_positive("timeouts.default_ms", self.default_ms);
        problems.require_positive("timeouts.database_ms", self.database_ms);
        problems.require_positive("timeouts.http_client_ms", self.http_client_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_nebula_rules() {
        let timeouts = Timeouts::default();
        assert_eq!(timeouts.default_operation(), Duration::from_secs(30));
        assert_eq!(timeouts.database(), Duration::from_secs(5));
        assert_eq!(timeouts.http_client(), Duration::from_secs(10));
    }
}
