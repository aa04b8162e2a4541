//! The `scheduler` service type: its schedule is configuration
//! (`[[scheduler.jobs]]`), run by the runtime's scheduling engine
//! (`nebula_runtime::scheduling`: periods claimed once across replicas, the
//! run history, the drain; the README's "Scheduled jobs" states the rules). A
//! job calls a URL, or runs one of this service's own actions: register
//! yours in [`actions`], beside the example [`Heartbeat`]. Settings they
//! need go in [`ActionSettings`], read from `[scheduler.actions]`.

mod heartbeat;

use axum::Router;
use serde::{Deserialize, Serialize};

pub use self::heartbeat::Heartbeat;
use nebula_runtime::{
    Service,
    database::Migration,
    scheduling::{self, Actions, Delivery, JobSettings, ServiceSchedule},
    settings::{Problems, Section},
    tasks::{BoxError, Context},
};

/// The `[scheduler]` settings: the engine's and the schedule, and this
/// service's in `[scheduler.actions]`.
pub type Settings = scheduling::Settings<ActionSettings>;

/// `[scheduler.actions]`: the settings of this service's actions, a table
/// per action that has any (the example has none).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSettings {}

impl Section for ActionSettings {
    fn validate(&self, _problems: &mut Problems) {}
}

impl ServiceSchedule for ActionSettings {
    /// The schedule without a config file: a call to this service's own
    /// `/healthz` every minute, and the example action every hour.
    fn default_jobs() -> Vec<JobSettings> {
        vec![
            JobSettings {
                name: "self-check".to_owned(),
                every_ms: 60_000,
                // Its call's own limit: the outbound HTTP rule.
                timeout_ms: <crate::App as Service>::TIMEOUTS.http_client_ms,
                url: Some(format!("http://127.0.0.1:{}/healthz", crate::DEFAULT_PORT)),
                action: None,
                delivery: Delivery::AtMostOnce,
            },
            JobSettings {
                name: "heartbeat".to_owned(),
                every_ms: 60 * 60 * 1_000,
                timeout_ms: 10_000,
                url: None,
                action: Some(Heartbeat::NAME.to_owned()),
                delivery: Delivery::AtMostOnce,
            },
        ]
    }
}

/// The database's migrations: the scheduling engine's run table, then this
/// service's own (`migrations/`).
pub const MIGRATIONS: &[&[Migration]] = &[scheduling::MIGRATIONS, crate::OWN_MIGRATIONS];

/// This service's actions, by the name a job's `action` gives: register
/// each of yours here.
fn actions() -> Actions {
    let mut actions = Actions::new();
    actions.register(Heartbeat::NAME, Heartbeat);
    actions
}

/// Checks that every job's action is registered: `--check-config` and the
/// start report one that is not with where it was set, exit code 78.
pub fn check_settings(settings: &crate::Settings, problems: &mut Problems) {
    actions().check(&settings.service.jobs, problems);
}

/// Starts the scheduling engine with this service's actions; returns the
/// run history's route.
///
/// # Errors
/// When the database cannot be opened.
pub fn start(context: &mut Context<'_, crate::App>) -> Result<Router, BoxError> {
    scheduling::start(context, &actions())
}
