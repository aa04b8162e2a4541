//! OpenTelemetry export (the `otel` feature): the service's `tracing` spans
//! go to an OTLP/HTTP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and nowhere otherwise.
//!
//! The exporter reads the standard variables itself (`OTEL_EXPORTER_OTLP_*`
//! for the endpoint, headers and timeout, `OTEL_TRACES_SAMPLER*`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`); the service name
//! defaults to the crate's. Spans are batched on a thread of the SDK's own:
//! a slow or absent collector costs dropped spans, never a blocked request.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, SpanExporter};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::{Layer, registry::LookupSpan};

/// How long the exit waits for the collector to take the spans still
/// batched. With `shutdown.grace_ms` (25 s) and the cancellation margin it
/// stays inside Kubernetes' 30 s termination grace.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Variables that turn the export on.
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// The span pipeline: owns the batch thread until [`Export::shutdown`].
#[derive(Debug)]
pub struct Export {
    provider: SdkTracerProvider,
}

impl Export {
    /// The pipeline the environment asks for: `None` when no endpoint
    /// variable is set.
    ///
    /// # Errors
    /// When a variable holds a value the exporter refuses (a bad endpoint
    /// URL, for one).
    pub fn from_env() -> Result<Option<Self>, ExporterBuildError> {
        let configured = ENDPOINT_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()));
        if !configured {
            return Ok(None);
        }
        let exporter = SpanExporter::builder().with_http().build()?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(env!("CARGO_PKG_NAME"));
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(Self { provider }))
    }

    /// The `tracing` layer that hands finished spans to the pipeline.
    #[must_use]
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = self.provider.tracer(env!("CARGO_PKG_NAME"));
        tracing_opentelemetry::layer().with_tracer(tracer)
    }

    /// Sends the spans still batched, waiting at most `timeout`; spans the
    /// collector has not taken by then are dropped.
    pub fn shutdown(self, timeout: Duration) {
        if let Err(error) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(%error, "trace export did not flush before the exit");
        }
    }
}
