//! The machinery every Nebula service shares: what a generated service
//! runs on, tested once in the template's repository instead of in every
//! service. A service's own code (its routes, job kinds or schedules, its
//! settings section and its tests) sits on top of it.
//!
//! This crate is vendored into each generated project as `runtime/`. Do not
//! edit it there: a template update replaces it whole (see its README).
//!
//! It holds so far: exit codes ([`Exit`]), shutdown and signals
//! ([`Shutdown`], [`Signals`]), readiness ([`readiness`]), logging
//! ([`telemetry`]), metrics ([`prometheus`]), trace context
//! ([`trace_context`], and [`otel`] with the `otel` feature) and the
//! validation every settings section shares ([`settings`]). The rest of the
//! machinery (settings loading, the server, the database, the job and
//! scheduling engines) moves here in the next steps of the runtime-crate
//! change.

pub mod exit;
#[cfg(feature = "otel")]
pub mod otel;
pub mod prometheus;
pub mod readiness;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;

pub use self::{
    exit::Exit,
    shutdown::{Shutdown, Signals},
};

/// This crate's version: the version of the template it came with.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
