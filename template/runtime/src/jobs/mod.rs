//! The durable job engine (the `jobs` feature): jobs come in over HTTP,
//! are committed to the database before they are acknowledged, and workers
//! on any replica claim them with a lease, run them with their [`JobKind`],
//! and record one outcome under a fencing token.
//!
//! A service brings its kinds in a [`Kinds`] registry and calls [`start`]
//! from its `Service::start`; its settings section is [`Settings`], the
//! engine's keys beside `kinds`, the settings of the service's own kinds.
//!
//! Guarantees, and their limits:
//! - `POST /jobs` answers 202 only once the job is committed: a crash, an
//!   OOM kill or a lost node after that does not lose it. Concurrent
//!   requests share one commit.
//! - Execution is at least once: a worker that dies or loses its lease
//!   mid-job leaves the job to be rescued and run again, so job code must
//!   be idempotent, keyed on the job id.
//! - Each accepted job gets exactly one recorded outcome, across restarts
//!   and replicas: the `job finished` event (with `job.id` and `outcome`,
//!   `succeeded` or `failed`) is logged only by the write that recorded it.
//! - On shutdown the workers stop claiming; running jobs get the drain
//!   grace, and at the deadline they are cancelled and released to the
//!   queue, their attempt not counted. Queued jobs wait in the database for
//!   the next start or another replica.
//!
//! Metrics: the series named below.

mod attempt;
mod backoff;
mod commit;
mod diagnostic;
mod dispatch;
mod intake;
mod job;
mod kind;
mod lease;
mod listen;
mod maintenance;
mod settings;
mod store;
#[cfg(all(test, feature = "testing"))]
mod tests;

use std::{sync::Arc, time::Duration};

use axum::Router;
use tokio::sync::Notify;

use self::{
    attempt::RetryPolicy,
    backoff::Backoff,
    commit::Backlog,
    diagnostic::DiagnosticSleep,
    kind::Attempt,
    store::{Claimed, NewJob, Store},
};
pub use self::{
    diagnostic::SleepArgs,
    job::JobId,
    kind::{JobContext, JobError, JobKind, Kinds},
    settings::Settings,
    store::MIGRATIONS,
};
use crate::{
    Service, database,
    settings::Section,
    tasks::{BoxError, Context},
};

/// Counter of jobs finished, by `outcome` (`succeeded`, `failed`).
pub const JOBS: &str = "nebula_jobs_total";
/// Histogram of the time from a job's acceptance to its outcome, by `outcome`.
pub const JOB_DURATION: &str = "nebula_job_duration_seconds";
/// Counter of failed attempts, by `kind` (`error`, `panic`, `timeout`; and
/// `args` for a stored job whose arguments its kind no longer decodes).
pub const JOB_ATTEMPT_FAILURES: &str = "nebula_job_attempt_failures_total";
/// Counter of jobs refused at intake, by `reason`.
pub const JOBS_REFUSED: &str = "nebula_jobs_refused_total";
/// Counter of jobs claimed by this replica.
pub const JOBS_CLAIMED: &str = "nebula_jobs_claimed_total";
/// Counter of attempts cancelled because their lease was lost.
pub const LEASE_LOSSES: &str = "nebula_job_lease_losses_total";
/// Counter of expired leases taken back, by `result` (`queued`, `failed`).
pub const RESCUES: &str = "nebula_job_rescues_total";
/// Counter of running jobs given back to the queue at the drain deadline.
pub const JOBS_RELEASED: &str = "nebula_jobs_released_total";
/// Gauge of the jobs waiting in the database, across every replica.
pub const QUEUE_DEPTH: &str = "nebula_job_queue_depth";
/// Gauge of the most jobs that may wait (`worker.queue_capacity`).
pub const QUEUE_CAPACITY: &str = "nebula_job_queue_capacity";

/// Describes the engine's series for `/metrics`.
fn describe_metrics() {
    metrics::describe_counter!(JOBS, "Jobs finished, by outcome: succeeded or failed");
    metrics::describe_histogram!(
        JOB_DURATION,
        metrics::Unit::Seconds,
        "Time from a job's acceptance to its recorded outcome, by outcome"
    );
    metrics::describe_counter!(
        JOB_ATTEMPT_FAILURES,
        "Job attempts that failed, by kind: error, panic, timeout or args"
    );
    metrics::describe_counter!(
        JOBS_REFUSED,
        "Jobs refused at intake with 503, by reason: full, draining, busy or database"
    );
    metrics::describe_counter!(JOBS_CLAIMED, "Jobs claimed by this replica");
    metrics::describe_counter!(
        LEASE_LOSSES,
        "Attempts cancelled because their lease was lost; nothing was recorded"
    );
    metrics::describe_counter!(
        RESCUES,
        "Expired leases taken back, by result: queued again or failed"
    );
    metrics::describe_counter!(
        JOBS_RELEASED,
        "Running jobs given back to the queue at the drain deadline"
    );
    metrics::describe_gauge!(
        QUEUE_DEPTH,
        "Jobs waiting in the database across every replica, refreshed every second"
    );
    metrics::describe_gauge!(QUEUE_CAPACITY, "Most jobs that may wait");
}

/// Starts the engine for a service whose kinds are `kinds` (and
/// `diagnostic.sleep` when `worker.diagnostic_jobs` is true): opens the
/// database and starts its supervisor, then the intake writer, the
/// dispatcher and the maintenance tasks, and returns the job routes,
/// `POST /jobs` and `GET /jobs/{id}`.
///
/// # Errors
/// When the service is not of kind `worker` (its settings are read from
/// `[worker]`, the section the engine's errors name), or the database URL
/// is unusable or its data folder cannot be made.
pub fn start<S, K>(context: &mut Context<'_, S>, mut kinds: Kinds) -> Result<Router, BoxError>
where
    S: Service<Settings = Settings<K>>,
    K: Section,
{
    if S::KIND != "worker" {
        return Err(format!(
            "the job engine runs in a service of kind worker, not {}",
            S::KIND
        )
        .into());
    }
    let settings = context.settings;
    describe_metrics();
    if settings.service.diagnostic_jobs {
        kinds.register(DiagnosticSleep);
    }
    let database::Started {
        database,
        gate,
        connected,
    } = database::start(context)?;
    let store = Store::new(database.clone());
    let kinds = Arc::new(kinds);
    let wake = Arc::new(Notify::new());
    let backlog = Backlog::new(settings.service.queue_capacity);

    let (committer, writer) = commit::channel(
        store.clone(),
        settings.http.max_concurrent_requests,
        backlog.clone(),
        wake.clone(),
    );
    context.tasks.spawn("job intake writer", async move {
        writer.run().await;
        Ok(())
    });
    let dispatcher = dispatch::Dispatcher {
        store: store.clone(),
        workers: settings.service.workers,
        poll_interval: Duration::from_millis(settings.service.poll_interval_ms),
        runner: dispatch::Runner {
            store: store.clone(),
            kinds: kinds.clone(),
            policy: RetryPolicy {
                max_attempts: settings.service.max_attempts,
                attempt_timeout: settings.timeouts.default_operation(),
                backoff: settings.service.backoff(),
            },
            lease: settings.service.lease(),
            heartbeat: settings.service.heartbeat(),
            abandon: context.abandon.clone(),
        },
        wake: wake.clone(),
        backlog: backlog.clone(),
        connected: connected.clone(),
        draining: context.draining.clone(),
    };
    context.tasks.spawn("worker dispatcher", async move {
        dispatcher.run().await;
        Ok(())
    });
    let maintenance = maintenance::Maintenance {
        store: store.clone(),
        backlog: backlog.clone(),
        rescue_interval: Duration::from_millis(settings.service.rescue_interval_ms),
        retention: Duration::from_millis(settings.service.retention_ms),
        max_rescues: settings.service.max_rescues,
        max_attempts: settings.service.max_attempts,
        kinds: kinds.names().collect(),
        unknown_kind_grace: Duration::from_millis(settings.service.unknown_kind_grace_ms),
        wake: wake.clone(),
        connected: connected.clone(),
    };
    context
        .tasks
        .spawn("job maintenance", maintenance.run(context.draining.clone()));
    if database.backend() == database::Backend::Postgres {
        let url = settings.database.url.clone();
        context.tasks.spawn(
            "job listener",
            listen::forward_notifications(url, wake, context.draining.clone()),
        );
    }
    Ok(intake::routes(intake::Intake {
        committer,
        store,
        kinds,
        max_attempts: settings.service.max_attempts,
        backlog,
        gate,
        draining: context.draining.clone(),
        retry_after_secs: settings.http.retry_after_secs,
    }))
}
