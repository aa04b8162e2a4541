//! {{description}}
//!
//! The binary in `main.rs` only parses the command line and maps the outcome
//! to an exit code; everything else lives here so tests can run the service
//! in-process: [`Service::bind`] then [`Service::run`] with a [`Shutdown`]
//! handle they control.

pub mod cli;
pub mod database;
pub mod healthcheck;
pub mod http;
pub mod service;
pub mod settings;
pub mod tasks;
pub mod timeouts;

// The runtime's modules under the paths this crate's code uses; the rest of
// the machinery above moves into the runtime crate in the next steps.
#[cfg(feature = "otel")]
pub use nebula_runtime::otel;
pub use nebula_runtime::{exit, prometheus, readiness, shutdown, telemetry, trace_context};

/// The code specific to this service type.
pub mod {{service_type}};

/// The kind of service this crate was generated as.
pub const SERVICE_KIND: &str = "{{service_type}}";

pub use nebula_runtime::{Exit, Shutdown, Signals};

pub use self::{
    service::{RunError, Service, Stopped},
    settings::Settings,
};

/// Runs the service until SIGTERM or SIGINT, then drains it; a second signal
/// forces it out. This is what the binary runs.
///
/// # Errors
/// As [`Service::run`], plus failures to bind or to install signal handlers.
pub async fn run(settings: Settings) -> Result<Stopped, RunError> {
    // Installed before the service reports ready: a signal that arrives
    // early must start a drain, not kill the process.
    let signals = Signals::install().map_err(RunError::Signals)?;
    let service = Service::bind(settings).await?;
    let shutdown = Shutdown::new();
    tokio::select! {
        result = service.run(shutdown.clone()) => result,
        never = signals.forward_to(shutdown) => match never {},
    }
}
