//! The `api` service type: a JSON API around one example resource, items.
//!
//! Replace [`items`] with your own resources; the shared core (limits,
//! timeout, probes, drain) applies to whatever routes [`start`] returns.

mod items;

use axum::Router;
use serde::{Deserialize, Serialize};

use crate::{
    settings::Problems,
    tasks::{BoxError, Context},
};

/// The `[api]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Most items the in-memory store holds; creating more is refused with
    /// 507 until some are deleted.
    pub max_items: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self { max_items: 10_000 }
    }
}

impl Settings {
    pub(crate) fn validate(&self, problems: &mut Problems) {
        problems.require_capacity("api.max_items", self.max_items, 100_000_000);
    }
}

/// Builds the API's routes. The `api` type runs no background tasks: its
/// in-flight work is the requests, which the HTTP server drains.
///
/// # Errors
/// Never, today; the signature matches the other service types.
pub fn start(context: &mut Context<'_>) -> Result<Router, BoxError> {
    Ok(items::routes(items::Store::new(
        context.settings.api.max_items,
    )))
}
