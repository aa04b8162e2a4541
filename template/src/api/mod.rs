//! The `api` service type: a JSON API around one example resource, items,
//! stored in the database.
//!
//! Replace [`items`] with your own resources; the shared core (limits,
//! timeout, probes, drain) applies to whatever routes [`start`] returns,
//! and [`store`] shows the shape of a table behind them: an embedded
//! migration, and every query under the database timeout.

mod items;
pub mod store;

use axum::Router;
use serde::{Deserialize, Serialize};

pub use self::store::{Item, Store};
use nebula_runtime::{
    database::{self, Migration},
    http::DatabasePolicy,
    settings::{Problems, Section},
    tasks::{BoxError, Context},
};

/// The database's migrations: this service's own (`migrations/`).
pub const MIGRATIONS: &[&[Migration]] = &[crate::OWN_MIGRATIONS];

/// The `[api]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Most items one `GET /v1/items` returns, and the page size when the
    /// request gives no `limit`.
    pub max_page_size: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_page_size: 100 }
    }
}

impl Section for Settings {
    fn validate(&self, problems: &mut Problems) {
        problems.require_capacity("api.max_page_size", self.max_page_size, 10_000);
    }
}

/// Opens the database, starts its supervisor (connect, migrate, health),
/// and builds the API's routes. The api runs no other background task: its
/// in-flight work is the requests, which the HTTP server drains.
///
/// # Errors
/// When the database URL is unusable or its data folder cannot be made.
pub fn start(context: &mut Context<'_, crate::App>) -> Result<Router, BoxError> {
    let database::Started { database, gate, .. } = database::start(context)?;
    let policy = DatabasePolicy::new(
        gate,
        database.faults().clone(),
        context.settings.http.retry_after_secs,
    );
    Ok(items::routes(items::Items {
        store: Store::new(database),
        database: policy,
        max_page_size: context.settings.service.max_page_size,
    }))
}
