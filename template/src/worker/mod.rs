//! The `worker` service type: this service's job kinds, run by the
//! runtime's durable job engine (`nebula_runtime::jobs`: intake, claims,
//! leases, retries and the drain; the README's "Jobs" states what it
//! guarantees).
//!
//! To add a kind, write a type that implements [`JobKind`] in a file of its
//! own (`webhook.rs` is a model) and register it in [`kinds`]. Settings it
//! needs go in [`KindSettings`], read from `[worker.kinds]`.
//!
//! [`JobKind`]: nebula_runtime::jobs::JobKind

mod webhook;

use axum::Router;
use serde::{Deserialize, Serialize};

pub use self::webhook::{Webhook, WebhookArgs, WebhookSettings};
use nebula_runtime::{
    database::Migration,
    jobs::{self, Kinds},
    settings::{Problems, Section},
    tasks::{BoxError, Context},
};

/// The `[worker]` settings: the engine's, and this service's in
/// `[worker.kinds]`.
pub type Settings = jobs::Settings<KindSettings>;

/// `[worker.kinds]`: the settings of this service's kinds, a table per kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindSettings {
    /// `[worker.kinds.webhook]`: where the `webhook` kind may deliver.
    pub webhook: WebhookSettings,
}

impl Section for KindSettings {
    const ENVIRONMENT_LISTS: &'static [&'static str] = &["worker.kinds.webhook.allowed_hosts"];

    fn validate(&self, problems: &mut Problems) {
        self.webhook.validate(problems);
    }
}

/// The database's migrations: the job engine's tables, then this service's
/// own (`migrations/`).
pub const MIGRATIONS: &[&[Migration]] = &[jobs::MIGRATIONS, crate::OWN_MIGRATIONS];

/// The job kinds this service runs: register each of yours here.
///
/// # Errors
/// When a kind cannot be made (its HTTP client, say).
fn kinds(settings: &crate::Settings) -> Result<Kinds, BoxError> {
    let mut kinds = Kinds::new();
    kinds.register(Webhook::new(
        &settings.service.kinds.webhook,
        settings.timeouts.http_client(),
    )?);
    Ok(kinds)
}

/// Starts the job engine with this service's kinds; returns its routes.
///
/// # Errors
/// When a kind cannot be made, or the database cannot be opened.
pub fn start(context: &mut Context<'_, crate::App>) -> Result<Router, BoxError> {
    let kinds = kinds(context.settings)?;
    jobs::start(context, kinds)
}
