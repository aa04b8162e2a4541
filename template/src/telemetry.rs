//! Logging: `tracing` events to stderr, as text for people or JSON for
//! collectors, filtered by `log.level` (or `RUST_LOG`, which replaces it).

use std::{
    backtrace::{Backtrace, BacktraceStatus},
    io::IsTerminal,
    str::FromStr,
};

use tracing_subscriber::{filter::Targets, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::settings::{LogFormat, LogSettings};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("log.level is not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
}

/// Installs the global subscriber. Call once, before the service starts.
///
/// The filter is a `Targets` list (`info`, `warn,my_crate=debug`): the
/// `RUST_LOG` syntax without regular expressions, which keeps `regex` out of
/// the build.
///
/// # Errors
/// When the filter does not parse or a subscriber is already installed.
pub fn init(settings: &LogSettings) -> Result<(), TelemetryError> {
    let filter = Targets::from_str(&settings.level)?;
    let registry = tracing_subscriber::registry().with(filter);
    let output = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match settings.format {
        LogFormat::Text => registry.with(output).try_init()?,
        LogFormat::Json => registry
            .with(
                output
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init()?,
    }
    log_panics();
    Ok(())
}

/// Routes panic messages through tracing, so they reach the log collector in
/// the configured format, with the span they happened in (and so the
/// request or job id). `RUST_BACKTRACE=1` adds a backtrace.
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("non-string panic payload");
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        let backtrace = Backtrace::capture();
        if backtrace.status() == BacktraceStatus::Captured {
            tracing::error!(panic.message = message, panic.location = location, %backtrace, "panic");
        } else {
            tracing::error!(panic.message = message, panic.location = location, "panic");
        }
    }));
}
