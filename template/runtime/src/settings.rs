//! What every service's settings share: the validation that collects every
//! out-of-range value in one pass, and the unit of the `*_ms` keys.

use std::time::Duration;

/// Out-of-range values found by validation, each with its dotted key.
#[derive(Debug, Default)]
pub struct Problems(Vec<(String, String)>);

impl Problems {
    /// Records that `key` holds an invalid value; `reason` says what is valid.
    pub fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push((key.into(), reason.into()));
    }

    /// Records a problem unless `value` is at least 1.
    pub fn require_positive(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.add(key, "must be at least 1");
        }
    }

    /// Records a problem unless `value` is within `1..=max`. Capacities
    /// have a ceiling: a bound in the millions is no bound at all, and the
    /// Tokio primitives behind them panic far above it.
    pub fn require_capacity(&mut self, key: &str, value: usize, max: usize) {
        if value == 0 || value > max {
            self.add(key, format!("must be between 1 and {max}"));
        }
    }

    /// Each problem found: its dotted key and what would be valid.
    #[must_use]
    pub fn into_inner(self) -> Vec<(String, String)> {
        self.0
    }
}

/// A duration as whole milliseconds, the unit every `*_ms` setting uses.
#[must_use]
pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
