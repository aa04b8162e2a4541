//! The machinery every Nebula service shares: what a generated service
//! runs on, tested once in the template's repository instead of in every
//! service. A service's own code (its routes, job kinds or scheduled
//! actions, its settings section and its tests) sits on top of it.
//!
//! This crate is vendored into each generated project as `runtime/`. Do not
//! edit it there: a template update replaces it whole (see its README).
//!
//! A service implements [`Service`] once: its identity, its defaults (the
//! Nebula timeout rules among them), its settings [`Section`], its
//! migrations and its [`Service::start`]. The runtime does the rest:
//! settings in layers ([`Settings`]), the command line ([`cli`]), logging
//! ([`telemetry`]), signals and the drain ([`run`], [`BoundService`]),
//! supervised tasks ([`tasks`]), the HTTP server and its request layer
//! ([`http`]), health and readiness ([`readiness`], [`healthcheck`]),
//! metrics ([`prometheus`]), the database ([`database`]: the pool, the 5 s
//! rule, migrations, faults and health), trace context
//! ([`trace_context`], and `otel` with the `otel` feature) and, with the
//! `outbound` feature, the outbound HTTP client (`outbound`), with the
//! `jobs` feature the durable job engine (`jobs`), and with the `testing`
//! feature helpers for a service's tests (`testing`), and with the
//! `scheduling` feature the scheduling engine (`scheduling`).
//!
//! [`Section`]: settings::Section

// Services get this crate copied, not rendered (`exclude` in the template's
// cargo-generate.toml): rendered, `{{ liquid_would_empty_this }}` would
// arrive empty, and tests/generated_files.rs compares the copy byte for
// byte.

pub mod cli;
pub mod commands;
pub mod database;
pub mod exit;
pub mod healthcheck;
pub mod http;
#[cfg(feature = "jobs")]
pub mod jobs;
#[cfg(all(test, feature = "testing"))]
mod lifecycle_tests;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "outbound")]
pub mod outbound;
pub mod prometheus;
pub mod readiness;
#[cfg(feature = "scheduling")]
pub mod scheduling;
pub mod service;
pub mod settings;
pub mod shutdown;
pub mod tasks;
pub mod telemetry;
#[cfg(test)]
mod test_service;
#[cfg(feature = "testing")]
pub mod testing;
pub mod timeouts;
pub mod trace_context;

pub use self::{
    exit::Exit,
    service::{BoundService, RunError, Service, Stopped},
    settings::Settings,
    shutdown::{Shutdown, Signals},
};

/// Runs service `S` until SIGTERM or SIGINT, then drains it; a second
/// signal forces it out. This is what a service's binary runs.
///
/// # Errors
/// As [`BoundService::run`], plus failures to bind or to install signal
/// handlers.
pub async fn run<S: Service>(settings: Settings<S>) -> Result<Stopped, RunError> {
    // Installed before the service reports ready: a signal that arrives
    // early must start a drain, not kill the process.
    let signals = Signals::install().map_err(RunError::Signals)?;
    let service = BoundService::bind(settings).await?;
    let shutdown = Shutdown::new();
    tokio::select! {
        result = service.run(shutdown.clone()) => result,
        never = signals.forward_to(shutdown) => match never {},
    }
}
