//! Logging: `tracing` events to stderr, as text for people or JSON for
//! collectors, filtered by `log.level` (or `RUST_LOG`, which replaces it).
//! With the `otel` feature, the same spans also go to an OTLP collector
//! ([`crate::otel`]).

use std::{
    backtrace::{Backtrace, BacktraceStatus},
    io::IsTerminal,
    str::FromStr,
};

use serde::{Deserialize, Serialize};
use tracing_subscriber::{
    filter::{LevelFilter, Targets},
    fmt,
    layer::SubscriberExt,
    util::SubscriberInitExt,
};

use crate::settings::Problems;

/// The `[log]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Filter directives such as `info` or `info,my_crate=debug`.
    /// `RUST_LOG`, when set, replaces this value.
    pub level: String,
    /// Text for a terminal, JSON for a log collector.
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

impl LogSettings {
    /// Records a `log.level` that is not a valid filter in `problems`: it
    /// takes `level` and `target=level` directives, comma-separated.
    /// `Targets` alone would read a misspelt level (`inof`) as a target name
    /// and silently log nothing, so each level is checked here.
    pub fn validate(&self, problems: &mut Problems) {
        let valid = !self.level.trim().is_empty()
            && self.level.split(',').all(|directive| {
                let level = directive
                    .rsplit_once('=')
                    .map_or(directive, |(_, level)| level);
                LevelFilter::from_str(level.trim()).is_ok()
            })
            && Targets::from_str(&self.level).is_ok();
        if !valid {
            problems.add(
                "log.level",
                format!(
                    "\"{}\" is not a valid filter; use a level (error, warn, info, debug, trace, off), optionally per target: \"warn,my_crate=debug\"",
                    self.level
                ),
            );
        }
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `log.level` does not parse.
    #[error("log.level is not a valid filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// Something else installed the process's subscriber first.
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[from] tracing_subscriber::util::TryInitError),
    /// The `OTEL_*` variables are not usable.
    #[cfg(feature = "otel")]
    #[error("the OTEL_* variables do not configure a trace exporter")]
    Export(#[from] crate::otel::ExportError),
}

/// What [`init`] started that needs stopping at exit.
#[derive(Debug)]
#[must_use = "call `shutdown` at exit, or batched spans are lost"]
pub struct Telemetry {
    #[cfg(feature = "otel")]
    export: Option<crate::otel::Export>,
}

impl Telemetry {
    /// Hands the spans still batched to the collector, waiting at most
    /// [`crate::otel::FLUSH_TIMEOUT`]. Without the `otel` feature there is
    /// nothing to do.
    pub fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(export) = self.export {
            export.shutdown(crate::otel::FLUSH_TIMEOUT);
        }
    }
}

/// Installs the global subscriber for the service named `service_name`
/// (its package name: its traces carry it). Call once, before the service
/// starts.
///
/// The filter is a `Targets` list (`info`, `warn,my_crate=debug`): the
/// `RUST_LOG` syntax without regular expressions, which keeps `regex` out of
/// the build.
///
/// # Errors
/// When the filter does not parse, a subscriber is already installed, or
/// (with the `otel` feature) the `OTEL_*` variables are not valid.
pub fn init(
    settings: &LogSettings,
    #[cfg_attr(
        not(feature = "otel"),
        expect(
            unused_variables,
            reason = "it names the service in traces, which only the otel feature exports"
        )
    )]
    service_name: &'static str,
) -> Result<Telemetry, TelemetryError> {
    let filter = Targets::from_str(&settings.level)?;
    #[cfg(feature = "otel")]
    let export = crate::otel::Export::from_env(service_name)?;
    let registry = tracing_subscriber::registry().with(filter);
    #[cfg(feature = "otel")]
    let registry = registry.with(export.as_ref().map(crate::otel::Export::layer));
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
    Ok(Telemetry {
        #[cfg(feature = "otel")]
        export,
    })
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
