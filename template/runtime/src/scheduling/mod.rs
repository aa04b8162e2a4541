//! The scheduling engine (the `scheduling` feature): jobs declared in
//! configuration, each run once per period across every replica that
//! shares the database.
//!
//! Each `[[scheduler.jobs]]` entry runs every `every_ms` milliseconds (the
//! README's "Scheduled jobs" gives the timing rules) one action: a call to its `url` (the
//! runtime's HTTP call), or one of the service's own [`Actions`], named by
//! `action`. Each period is claimed in the run table first, so
//! replicas on one PostgreSQL run each period of each job once; the table
//! keeps each run's outcome, readable at `GET /runs?job=NAME`.
//!
//! A service calls [`start`] from its `Service::start` with its actions;
//! its settings section is [`Settings`], the engine's keys beside
//! `actions`, the settings of the service's own actions.

mod actions;
mod claims;
mod history;
mod http_call;
mod runs;
mod schedule;
mod settings;
#[cfg(all(test, feature = "testing"))]
mod tests;

use std::time::Duration;

use axum::Router;

pub use self::{
    actions::Actions,
    claims::{CLAIMS, Delivery},
    runs::MIGRATIONS,
    schedule::{Action, RUN_DURATION, RUNS},
    settings::{JobSettings, ServiceSchedule, Settings},
};
use self::{
    claims::Claims,
    http_call::HttpCall,
    runs::RunStore,
    schedule::{Clock, Schedule},
};
use crate::{
    Service, database,
    http::DatabasePolicy,
    outbound::HttpClient,
    tasks::{BoxError, Context},
};

/// Starts the engine for a service whose own actions are `actions`: opens
/// the database and starts its supervisor, then one task per configured
/// job once the run table is in place, and returns the run history's
/// route, `GET /runs`.
///
/// # Errors
/// When the service is not of kind `scheduler` (its settings are read from
/// `[scheduler]`, the section the engine's errors name). A
/// [`SettingsError`](crate::settings::SettingsError) when a job names an action that `actions` does not
/// hold; otherwise when the database URL is unusable or its data folder
/// cannot be made, or the HTTP client cannot be built.
pub fn start<S, A>(context: &mut Context<'_, S>, actions: &Actions) -> Result<Router, BoxError>
where
    S: Service<Settings = Settings<A>>,
    A: ServiceSchedule,
{
    if S::KIND != "scheduler" {
        return Err(format!(
            "the scheduling engine runs in a service of kind scheduler, not {}",
            S::KIND
        )
        .into());
    }
    let settings = context.settings;
    actions.check_at_start(&settings.service.jobs)?;
    schedule::describe_metrics();
    claims::describe_metrics();
    let database::Started {
        database,
        gate,
        connected,
    } = database::start(context)?;
    let policy = DatabasePolicy::new(
        gate,
        database.faults().clone(),
        settings.http.retry_after_secs,
    );
    let store = RunStore::new(database, claims::replica_name());
    let client = HttpClient::new(settings.timeouts.http_client())?;
    let clock = Clock::system();
    for job in &settings.service.jobs {
        let schedule = Schedule {
            name: job.name.clone(),
            every: Duration::from_millis(job.every_ms),
            timeout: Duration::from_millis(job.timeout_ms),
        };
        let claims = Claims {
            store: store.clone(),
            delivery: job.delivery,
            lease: claims::lease(schedule.timeout, settings.timeouts.database()),
            retention: Duration::from_millis(settings.service.history_retention_ms),
        };
        let action = actions.for_job(job, &client)?;
        let connected = connected.clone();
        let draining = context.draining.clone();
        let abandon = context.abandon.clone();
        context.tasks.spawn("scheduled job", async move {
            tokio::select! {
                biased;
                () = draining.cancelled() => return Ok(()),
                () = connected.wait() => {}
            }
            schedule::run(schedule, action, claims, clock, draining, abandon).await;
            Ok(())
        });
    }
    Ok(history::routes(history::History {
        store,
        database: policy,
        jobs: settings
            .service
            .jobs
            .iter()
            .map(|job| job.name.clone())
            .collect(),
    }))
}
