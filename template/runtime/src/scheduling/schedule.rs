//! Running one periodic job.
//!
//! Timing rules:
//! - periods start at multiples of the job's period since the Unix epoch,
//!   so that every replica agrees on them; the first run is at the first
//!   period start after start-up;
//! - each period is claimed through the [`Ledger`] before it runs, and runs
//!   only on the replica whose claim won it;
//! - a run never overlaps another run of the same job: one task runs a
//!   job's periods one after the other, and the ledger refuses a claim
//!   while another replica's run of the job is held;
//! - ticks missed while a run was slow are skipped, not run back to back:
//!   the next run starts at the next period boundary;
//! - each run is limited to the job's timeout;
//! - once the drain starts no new run starts; a run in progress may finish
//!   until the drain deadline, where it is cancelled. Every run ends in one
//!   `run finished` event with `job.name`, `period_start_ms` and `outcome`,
//!   counted in [`RUNS`] and timed in [`RUN_DURATION`].

use std::{future::Future, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::runs::{Held, Running};
use crate::{
    database::{ms, now_ms},
    settings::duration_ms,
    tasks::BoxError,
};

/// Counter of finished runs, by `job` (its configured name) and `outcome`.
pub const RUNS: &str = "nebula_scheduler_runs_total";
/// Histogram of run durations, by `job` and `outcome`.
pub const RUN_DURATION: &str = "nebula_scheduler_run_duration_seconds";

/// Describes the scheduler's series for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_counter!(
        RUNS,
        "Scheduled runs finished on this replica, by job name and outcome: succeeded, failed, timed_out or cancelled"
    );
    metrics::describe_histogram!(
        RUN_DURATION,
        metrics::Unit::Seconds,
        "Time a scheduled run took, by job name and outcome"
    );
}

/// The work a job does on each run. `key` names the run's period
/// (`job/period start`): the same for a period run again by another
/// replica, so a target can use it to do the work once.
pub trait Action: Send + Sync + 'static {
    /// Runs once for the period `key` names. An error is a failed run,
    /// logged and recorded; the schedule goes on. The run is cut at the
    /// job's `timeout_ms`, and at the drain deadline.
    ///
    /// # Errors
    /// Why the run failed.
    fn run(&self, key: &str) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Who runs which period. In the service, the run table shared by the
/// replicas ([`super::claims::Claims`]).
pub trait Ledger: Send + Sync + 'static {
    /// Claims the period starting at `period_start` (ms since the epoch).
    fn claim(&self, job: &str, period_start: i64) -> impl Future<Output = Decision> + Send;
    /// Looks at a run held elsewhere whose lease has run out.
    fn look_after(&self, job: &str, running: &Running) -> impl Future<Output = Decision> + Send;
    /// Records how a run this replica held ended.
    fn finish(&self, job: &str, run: Finished) -> impl Future<Output = ()> + Send;
}

/// What a job's task does after asking the [`Ledger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run this period here.
    Run(Held),
    /// Another replica holds a run of the job: look again once its lease
    /// runs out.
    Watch(Running),
    /// Nothing to run.
    Skip,
}

/// A run that ended, for [`Ledger::finish`].
#[derive(Debug, Clone)]
pub struct Finished {
    pub held: Held,
    pub outcome: RunOutcome,
    pub duration: Duration,
    pub error: Option<String>,
}

/// When and for how long a job runs.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub every: Duration,
    pub timeout: Duration,
}

/// How one run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    Failed,
    TimedOut,
    /// Cut by the drain deadline.
    Cancelled,
}

impl RunOutcome {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Wall-clock milliseconds read from the runtime's monotonic clock, so
/// that period starts are agreed between replicas (wall time) while the
/// waits follow Tokio's clock (which tests can pause).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    origin_ms: i64,
}

impl Clock {
    /// The system clock, read once now.
    #[must_use]
    pub fn system() -> Self {
        Self::starting_at(now_ms())
    }

    /// A clock that reads `origin_ms` now.
    #[must_use]
    pub fn starting_at(origin_ms: i64) -> Self {
        Self {
            origin: Instant::now(),
            origin_ms,
        }
    }

    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.origin_ms.saturating_add(ms(self.origin.elapsed()))
    }

    /// The instant at which this clock reads `at_ms`.
    #[must_use]
    pub fn instant_at(&self, at_ms: i64) -> Instant {
        let ahead = u64::try_from(at_ms.saturating_sub(self.origin_ms)).unwrap_or(0);
        self.origin + Duration::from_millis(ahead)
    }
}

/// How long after a watched lease runs out the job's task looks at it
/// (the replicas' clocks differ a little), and the shortest wait before it
/// looks again.
const WATCH_SLACK_MS: i64 = 250;

/// Runs `action` on `schedule` until `draining` is cancelled (after the run
/// in progress, if any, ends) or `abandon` cuts the run in progress.
pub async fn run<A: Action, L: Ledger>(
    schedule: Schedule,
    action: A,
    ledger: L,
    clock: Clock,
    draining: CancellationToken,
    abandon: CancellationToken,
) {
    let every_ms = ms(schedule.every).max(1);
    let mut next = boundary_at_or_after(clock.now_ms() + 1, every_ms);
    // A run another replica holds, and when to look at it again.
    let mut watching: Option<(Running, Instant)> = None;
    loop {
        let tick_at = clock.instant_at(next);
        let watch_at = watching
            .as_ref()
            .map(|(_, watch_at)| *watch_at)
            .filter(|watch_at| *watch_at < tick_at);
        tokio::select! {
            biased;
            () = draining.cancelled() => break,
            () = tokio::time::sleep_until(watch_at.unwrap_or(tick_at)) => {}
        }
        let looking_after = watch_at.and(watching.take()).map(|(running, _)| running);
        let claimed = if looking_after.is_some() {
            None
        } else {
            Some(next)
        };
        let decision = if let Some(running) = &looking_after {
            ledger.look_after(&schedule.name, running).await
        } else {
            let period_start = next;
            next = next.saturating_add(every_ms);
            ledger.claim(&schedule.name, period_start).await
        };
        let mut took_over = looking_after.is_some();
        match decision {
            Decision::Run(held) => {
                // A claim that found an older period abandoned runs that
                // one: the tick's own period is claimed next, late, once.
                if let Some(claimed) = claimed.filter(|claimed| *claimed != held.period_start) {
                    next = claimed;
                    took_over = true;
                }
                if draining.is_cancelled() {
                    let error = "the drain started before the run".to_owned();
                    let finished = Finished {
                        held,
                        outcome: RunOutcome::Cancelled,
                        duration: Duration::ZERO,
                        error: Some(error),
                    };
                    ledger.finish(&schedule.name, finished).await;
                    break;
                }
                let span = tracing::info_span!(
                    "job.execute",
                    job.name = %schedule.name,
                    period_start_ms = held.period_start,
                    attempt = held.attempt
                );
                let finished = run_once(&schedule, &action, held, &abandon)
                    .instrument(span)
                    .await;
                let outcome = finished.outcome;
                ledger.finish(&schedule.name, finished).await;
                if outcome == RunOutcome::Cancelled {
                    break;
                }
            }
            Decision::Watch(running) => {
                // The holder's lease is in wall time: wait for it from now,
                // never less than the slack, so a clock that was set back
                // cannot make this loop spin.
                let wait_ms = running
                    .lease_until
                    .saturating_add(WATCH_SLACK_MS)
                    .saturating_sub(now_ms())
                    .max(WATCH_SLACK_MS);
                let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
                watching = Some((running, Instant::now() + wait));
            }
            Decision::Skip => {}
        }
        // Boundaries that passed during a tick's run are skipped. A period
        // taken over from a dead replica is not a tick: the tick due
        // meanwhile still runs, late, once.
        if !took_over {
            next = next.max(boundary_at_or_after(clock.now_ms(), every_ms));
        }
    }
    tracing::debug!(job.name = %schedule.name, "schedule stopped");
}

/// The first multiple of `every_ms` that is not before `at_ms`.
fn boundary_at_or_after(at_ms: i64, every_ms: i64) -> i64 {
    let periods = at_ms.saturating_add(every_ms - 1).div_euclid(every_ms);
    periods.saturating_mul(every_ms)
}

async fn run_once<A: Action>(
    schedule: &Schedule,
    action: &A,
    held: Held,
    abandon: &CancellationToken,
) -> Finished {
    let key = format!("{}/{}", schedule.name, held.period_start);
    let started = Instant::now();
    let result = tokio::select! {
        biased;
        () = abandon.cancelled() => None,
        result = tokio::time::timeout(schedule.timeout, action.run(&key)) => Some(result),
    };
    let elapsed = started.elapsed();
    let duration_ms = duration_ms(elapsed);
    let (outcome, error) = match result {
        None => (RunOutcome::Cancelled, None),
        Some(Ok(Ok(()))) => (RunOutcome::Succeeded, None),
        Some(Ok(Err(error))) => {
            tracing::warn!(error = %error, "run returned an error");
            (RunOutcome::Failed, Some(error.to_string()))
        }
        Some(Err(_elapsed)) => (RunOutcome::TimedOut, None),
    };
    let labels = [
        ("job", schedule.name.clone()),
        ("outcome", outcome.as_str().to_owned()),
    ];
    metrics::counter!(RUNS, &labels).increment(1);
    metrics::histogram!(RUN_DURATION, &labels).record(elapsed.as_secs_f64());
    let period_start_ms = held.period_start;
    if outcome == RunOutcome::Succeeded {
        tracing::info!(job.name = %schedule.name, period_start_ms, outcome = outcome.as_str(), duration_ms, "run finished");
    } else {
        tracing::warn!(job.name = %schedule.name, period_start_ms, outcome = outcome.as_str(), duration_ms, "run finished");
    }
    Finished {
        held,
        outcome,
        duration: elapsed,
        error,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    const PERIOD: Duration = Duration::from_secs(10);

    /// Records when each run starts and how many overlap; each run takes
    /// `duration` of (paused) time.
    #[derive(Clone)]
    struct Recorder {
        duration: Duration,
        origin: Instant,
        starts: Arc<Mutex<Vec<Duration>>>,
        running: Arc<AtomicUsize>,
        most_at_once: Arc<AtomicUsize>,
    }

    impl Recorder {
        fn new(duration: Duration) -> Self {
            Self {
                duration,
                origin: Instant::now(),
                starts: Arc::default(),
                running: Arc::default(),
                most_at_once: Arc::default(),
            }
        }

        fn start_secs(&self) -> Vec<u64> {
            self.starts
                .lock()
                .unwrap()
                .iter()
                .map(Duration::as_secs)
                .collect()
        }
    }

    impl Action for Recorder {
        async fn run(&self, _key: &str) -> Result<(), BoxError> {
            self.starts.lock().unwrap().push(self.origin.elapsed());
            let now_running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now_running, Ordering::SeqCst);
            tokio::time::sleep(self.duration).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A ledger for one replica alone: every period is claimed.
    struct Solo;

    impl Ledger for Solo {
        async fn claim(&self, _job: &str, period_start: i64) -> Decision {
            Decision::Run(Held {
                period_start,
                token: 1,
                attempt: 1,
            })
        }

        async fn look_after(&self, _job: &str, _running: &Running) -> Decision {
            Decision::Skip
        }

        async fn finish(&self, _job: &str, _run: Finished) {}
    }

    fn schedule(timeout: Duration) -> Schedule {
        Schedule {
            name: "test".to_owned(),
            every: PERIOD,
            timeout,
        }
    }

    fn spawn(
        recorder: &Recorder,
        timeout: Duration,
    ) -> (
        tokio::task::JoinHandle<()>,
        CancellationToken,
        CancellationToken,
    ) {
        let draining = CancellationToken::new();
        let abandon = CancellationToken::new();
        let handle = tokio::spawn(run(
            schedule(timeout),
            recorder.clone(),
            Solo,
            Clock::starting_at(0),
            draining.clone(),
            abandon.clone(),
        ));
        (handle, draining, abandon)
    }

    #[tokio::test(start_paused = true)]
    async fn runs_once_per_period_starting_one_period_in() {
        let recorder = Recorder::new(Duration::from_secs(1));
        let (handle, draining, _abandon) = spawn(&recorder, Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(35)).await;
        draining.cancel();
        handle.await.unwrap();
        assert_eq!(recorder.start_secs(), [10, 20, 30]);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_runs_never_overlap_and_missed_ticks_are_skipped() {
        // Each run takes 25 s of a 10 s period.
        let recorder = Recorder::new(Duration::from_secs(25));
        let (handle, draining, _abandon) = spawn(&recorder, Duration::from_secs(50));
        tokio::time::sleep(Duration::from_secs(75)).await;
        draining.cancel();
        handle.await.unwrap();
        assert_eq!(recorder.most_at_once.load(Ordering::SeqCst), 1);
        // Runs at 10 (ends 35), 40 (ends 65), 70: the ticks at 20, 30, 50
        // and 60 are skipped, not run late one after another.
        assert_eq!(recorder.start_secs(), [10, 40, 70]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_is_cut_at_its_timeout_and_the_next_one_still_starts() {
        let recorder = Recorder::new(Duration::from_secs(50));
        let (handle, draining, _abandon) = spawn(&recorder, Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(25)).await;
        draining.cancel();
        handle.await.unwrap();
        assert_eq!(recorder.start_secs(), [10, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn drain_lets_the_current_run_finish_and_starts_no_new_one() {
        let recorder = Recorder::new(Duration::from_secs(8));
        let (handle, draining, _abandon) = spawn(&recorder, Duration::from_secs(50));
        tokio::time::sleep(Duration::from_secs(12)).await;
        draining.cancel();
        let drained_at = Instant::now();
        handle.await.unwrap();
        assert_eq!(
            drained_at.elapsed(),
            Duration::from_secs(6),
            "the run started at 10 s ends at 18 s"
        );
        assert_eq!(recorder.start_secs(), [10]);
        assert_eq!(recorder.running.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn abandon_cancels_the_run_in_progress() {
        let recorder = Recorder::new(Duration::from_secs(500));
        let (handle, draining, abandon) = spawn(&recorder, Duration::from_secs(700));
        tokio::time::sleep(Duration::from_secs(12)).await;
        draining.cancel();
        abandon.cancel();
        let cancelled_at = Instant::now();
        handle.await.unwrap();
        assert_eq!(cancelled_at.elapsed(), Duration::ZERO);
        assert_eq!(recorder.start_secs(), [10]);
    }
}
