//! Keeping a claimed job's lease while it runs.
//!
//! Every heartbeat interval the lease is extended in the database. The
//! worker stops trusting its lease in two cases: the database says the
//! row is no longer ours (rescued, so another worker may be running it),
//! or no heartbeat succeeded before the lease we last secured ran out (the
//! database cannot tell us, and a rescuer may already have taken it). Both
//! cancel the attempt; its outcome is never written.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

use crate::database::DbError;

/// Why the lease was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLost {
    /// The row was rescued or changed: the token no longer matches.
    Fenced,
    /// No heartbeat succeeded before the lease ran out.
    Expired,
}

impl LeaseLost {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fenced => "fenced",
            Self::Expired => "expired",
        }
    }
}

/// Extends the lease every `interval` with `beat` (`Ok(true)`: extended;
/// `Ok(false)`: no longer ours) until it is lost; it never returns
/// otherwise, so run it beside the attempt and stop it when that ends.
/// `lease` is the length of each extension; the claim secured the first,
/// until `first_ends`.
///
/// The lease is given up the moment the last secured one runs out, even
/// while a heartbeat is still waiting for the database: from then on a
/// rescuer may hand the job to another worker.
pub async fn keep_lease<F, Fut>(
    first_ends: Instant,
    interval: Duration,
    lease: Duration,
    mut beat: F,
) -> LeaseLost
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, DbError>>,
{
    let mut secured_until = first_ends;
    loop {
        let next_beat = async {
            tokio::time::sleep(interval).await;
            let sent = Instant::now();
            (sent, beat().await)
        };
        let (sent, result) = tokio::select! {
            biased;
            () = tokio::time::sleep_until(secured_until) => return LeaseLost::Expired,
            beat = next_beat => beat,
        };
        match result {
            Ok(true) => secured_until = sent + lease,
            Ok(false) => return LeaseLost::Fenced,
            // Logged by the database layer; the next heartbeat tries again.
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(10);
    const LEASE: Duration = Duration::from_secs(30);

    fn timed_out() -> DbError {
        DbError::Timeout {
            operation: "heartbeat",
            timeout_ms: 5_000,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fenced_heartbeat_gives_the_lease_up_at_once() {
        let beats = Arc::new(AtomicU32::new(0));
        let started = Instant::now();
        let lost = keep_lease(Instant::now() + LEASE, INTERVAL, LEASE, || {
            let beats = beats.clone();
            async move { Ok(beats.fetch_add(1, Ordering::Relaxed) < 3) }
        })
        .await;
        assert_eq!(lost, LeaseLost::Fenced);
        // Three extensions, refused on the fourth heartbeat.
        assert_eq!(started.elapsed(), INTERVAL * 4);
    }

    #[tokio::test(start_paused = true)]
    async fn failing_heartbeats_give_the_lease_up_when_it_runs_out() {
        let started = Instant::now();
        let lost = keep_lease(Instant::now() + LEASE, INTERVAL, LEASE, || async {
            Err(timed_out())
        })
        .await;
        assert_eq!(lost, LeaseLost::Expired);
        // The claim's lease ends at 30 s.
        assert_eq!(started.elapsed(), LEASE);
    }

    #[tokio::test(start_paused = true)]
    async fn one_successful_heartbeat_among_failures_keeps_the_lease() {
        let beats = Arc::new(AtomicU32::new(0));
        let started = Instant::now();
        let lost = keep_lease(Instant::now() + LEASE, INTERVAL, LEASE, || {
            let beats = beats.clone();
            async move {
                match beats.fetch_add(1, Ordering::Relaxed) {
                    1 => Ok(true),
                    _ => Err(timed_out()),
                }
            }
        })
        .await;
        assert_eq!(lost, LeaseLost::Expired);
        // Extended at 20 s to 50 s, so the lease is given up at 50 s.
        assert_eq!(started.elapsed(), Duration::from_secs(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_that_never_answers_gives_the_lease_up_when_it_runs_out() {
        let started = Instant::now();
        let lost = keep_lease(
            Instant::now() + LEASE,
            INTERVAL,
            LEASE,
            std::future::pending,
        )
        .await;
        assert_eq!(lost, LeaseLost::Expired);
        // The first heartbeat (at 10 s) hangs; the claim's lease ends at 30 s.
        assert_eq!(started.elapsed(), LEASE);
    }
}
