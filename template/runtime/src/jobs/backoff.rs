//! Exponential backoff between the attempts of a job, with jitter so that
//! jobs that failed together (a dependency went down) do not all retry in
//! the same instant.

use std::time::Duration;

/// Waits about `initial`, then twice that, and so on, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
}

impl Backoff {
    #[must_use]
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The wait after failed attempt number `attempt` (1-based), before
    /// jitter.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }

    /// The wait after failed attempt `attempt`: a random point in the upper
    /// half of [`Backoff::ceiling`] ("equal jitter"), so retries spread out
    /// but never come sooner than half the planned wait.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Duration {
        crate::database::jittered(self.ceiling(attempt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_the_initial_wait_up_to_the_cap() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let ceilings: Vec<u128> = (1..=6)
            .map(|attempt| backoff.ceiling(attempt).as_millis())
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_stays_within_the_upper_half_of_the_ceiling() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..=6 {
            let ceiling = backoff.ceiling(attempt);
            for _ in 0..100 {
                let delay = backoff.delay(attempt);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{delay:?} vs {ceiling:?}"
                );
            }
        }
    }

    #[test]
    fn never_overflows() {
        let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(90));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(90));
    }
}
