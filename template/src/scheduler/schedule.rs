//! Running one periodic job.
//!
//! Timing rules:
//! - the first run starts one period after start-up, then one per period;
//! - a run never overlaps the previous run of the same job: runs happen one
//!   after the other in a single task;
//! - ticks missed while a run was slow are skipped, not run back to back:
//!   the next run starts at the next period boundary;
//! - each run is limited to the job's timeout;
//! - once the drain starts no new run starts; a run in progress may finish
//!   until the drain deadline, where it is cancelled. Every run ends in one
//!   `run finished` event with `job.name` and `outcome`, counted in
//!   [`RUNS`] and timed in [`RUN_DURATION`].

use std::{future::Future, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{settings::duration_ms, tasks::BoxError};

/// Counter of finished runs, by `job` (its configured name) and `outcome`.
pub const RUNS: &str = "nebula_scheduler_runs_total";
/// Histogram of run durations, by `job` and `outcome`.
pub const RUN_DURATION: &str = "nebula_scheduler_run_duration_seconds";

/// Describes the scheduler's series for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_counter!(
        RUNS,
        "Scheduled runs finished, by job name and outcome: succeeded, failed, timed_out or cancelled"
    );
    metrics::describe_histogram!(
        RUN_DURATION,
        metrics::Unit::Seconds,
        "Time a scheduled run took, by job name and outcome"
    );
}

/// The work a job does on each run.
pub trait Action: Send + Sync + 'static {
    fn run(&self) -> impl Future<Output = Result<(), BoxError>> + Send;
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

/// Runs `action` on `schedule` until `draining` is cancelled (after the run
/// in progress, if any, ends) or `abandon` cuts the run in progress.
pub async fn run<A: Action>(
    schedule: Schedule,
    action: A,
    draining: CancellationToken,
    abandon: CancellationToken,
) {
    let origin = Instant::now();
    let mut next = origin + schedule.every;
    loop {
        tokio::select! {
            biased;
            () = draining.cancelled() => break,
            () = tokio::time::sleep_until(next) => {}
        }
        let span = tracing::info_span!("job.execute", job.name = %schedule.name);
        let outcome = run_once(&schedule, &action, &abandon)
            .instrument(span)
            .await;
        if outcome == RunOutcome::Cancelled {
            break;
        }
        next = next_start(origin, schedule.every, next, Instant::now());
    }
    tracing::debug!(job.name = %schedule.name, "schedule stopped");
}

/// The first period boundary (`origin` + k × `every`) after `previous` that
/// is not already in the past: the boundaries a slow run missed are skipped.
fn next_start(origin: Instant, every: Duration, previous: Instant, now: Instant) -> Instant {
    let following = previous + every;
    if now <= following {
        return following;
    }
    let every_ns = every.as_nanos().max(1);
    let periods = (now - origin).as_nanos().div_ceil(every_ns);
    let offset_ns = u64::try_from(periods.saturating_mul(every_ns)).unwrap_or(u64::MAX);
    origin + Duration::from_nanos(offset_ns)
}

async fn run_once<A: Action>(
    schedule: &Schedule,
    action: &A,
    abandon: &CancellationToken,
) -> RunOutcome {
    let started = Instant::now();
    let result = tokio::select! {
        biased;
        () = abandon.cancelled() => None,
        result = tokio::time::timeout(schedule.timeout, action.run()) => Some(result),
    };
    let elapsed = started.elapsed();
    let duration_ms = duration_ms(elapsed);
    let outcome = match result {
        None => RunOutcome::Cancelled,
        Some(Ok(Ok(()))) => RunOutcome::Succeeded,
        Some(Ok(Err(error))) => {
            tracing::warn!(error = %error, "run returned an error");
            RunOutcome::Failed
        }
        Some(Err(_elapsed)) => RunOutcome::TimedOut,
    };
    let labels = [
        ("job", schedule.name.clone()),
        ("outcome", outcome.as_str().to_owned()),
    ];
    metrics::counter!(RUNS, &labels).increment(1);
    metrics::histogram!(RUN_DURATION, &labels).record(elapsed.as_secs_f64());
    if outcome == RunOutcome::Succeeded {
        tracing::info!(job.name = %schedule.name, outcome = outcome.as_str(), duration_ms, "run finished");
    } else {
        tracing::warn!(job.name = %schedule.name, outcome = outcome.as_str(), duration_ms, "run finished");
    }
    outcome
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
        async fn run(&self) -> Result<(), BoxError> {
            self.starts.lock().unwrap().push(self.origin.elapsed());
            let now_running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(now_running, Ordering::SeqCst);
            tokio::time::sleep(self.duration).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        }
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
