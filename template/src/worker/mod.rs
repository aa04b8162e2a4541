//! The `worker` service type: jobs come in over HTTP, are committed to the
//! database before they are acknowledged, and workers on any replica claim
//! them with a lease, run them, and record one outcome under a fencing
//! token.
//!
//! Guarantees, and their limits:
//! - `POST /jobs` answers 202 only once the job is committed: a crash, an
//!   OOM kill or a lost node after that does not lose it. Concurrent
//!   requests share one commit ([`commit`]).
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
//! Metrics: the series named below, described in [`describe_metrics`].

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
pub mod store;
mod webhook;

use std::{sync::Arc, time::Duration};

use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use self::{
    attempt::{Failure, Next, RetryPolicy, run_attempt},
    backoff::Backoff,
    commit::Backlog,
    diagnostic::{DiagnosticSleep, MAX_CPU_ROUNDS, SleepArgs},
    job::JobId,
    kind::{Attempt, JobContext, JobError, JobKind, Kinds},
    lease::{LeaseLost, keep_lease},
    store::{Claimed, JobStatus, MIGRATIONS, NewJob, Store},
    webhook::{Webhook, WebhookArgs, WebhookSettings},
};
use nebula_runtime::{
    database,
    settings::{Problems, Section},
    tasks::{BoxError, Context},
};

/// The `[worker]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
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
    /// Where the `webhook` kind may deliver.
    pub webhook: WebhookSettings,
}

impl Default for Settings {
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
            webhook: WebhookSettings::default(),
        }
    }
}

impl Section for Settings {
    const ENVIRONMENT_LISTS: &'static [&'static str] = &["worker.webhook.allowed_hosts"];

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
        self.webhook.validate(problems);
    }
}

impl Settings {
    fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.backoff_initial_ms),
            Duration::from_millis(self.backoff_max_ms),
        )
    }

    #[must_use]
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    #[must_use]
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}

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

/// Describes the worker's series for `/metrics`.
pub fn describe_metrics() {
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

/// The job kinds this service runs: register each of yours here.
///
/// # Errors
/// When a kind cannot be made (its HTTP client, say).
fn kinds(settings: &crate::Settings) -> Result<Kinds, BoxError> {
    let mut kinds = Kinds::new();
    kinds.register(Webhook::new(
        &settings.service.webhook,
        settings.timeouts.http_client(),
    )?);
    if settings.service.diagnostic_jobs {
        kinds.register(DiagnosticSleep);
    }
    Ok(kinds)
}

/// Opens the database and starts its supervisor, then the intake writer, the
/// dispatcher and the maintenance tasks, and returns the job routes.
///
/// # Errors
/// When the database URL is unusable or its data folder cannot be made.
pub fn start(context: &mut Context<'_, crate::App>) -> Result<Router, BoxError> {
    let settings = context.settings;
    describe_metrics();
    let database::Started {
        database,
        gate,
        connected,
    } = database::start(context)?;
    let store = Store::new(database.clone());
    let kinds = Arc::new(kinds(settings)?);
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
