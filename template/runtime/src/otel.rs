//! OpenTelemetry export (the `otel` feature): the service's `tracing` spans
//! go to an OTLP/HTTP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and nowhere otherwise.
//!
//! The exporter reads the standard variables itself (`OTEL_EXPORTER_OTLP_*`
//! for the endpoint, headers and timeout, `OTEL_TRACES_SAMPLER*`,
//! `OTEL_BSP_*`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`); the
//! service name defaults to the crate's, and `OTEL_SDK_DISABLED=true` turns
//! the export off. This build speaks OTLP over HTTP with protobuf only: a
//! `grpc` protocol is refused at start, not left to fail every export. Spans are batched on a thread of the SDK's own:
//! a slow or absent collector costs dropped spans, never a blocked request.
//! The SDK reports its own trouble (a failed export, dropped spans) as
//! `tracing` events, targets `opentelemetry*`: they reach the log, never the
//! export itself.

use std::{env, time::Duration};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{ExporterBuildError, SpanExporter};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing::Subscriber;
use tracing_subscriber::{
    Layer,
    filter::{FilterFn, filter_fn},
    registry::LookupSpan,
};

/// How long the exit waits for the collector to take the spans still
/// batched. With `shutdown.grace_ms` (25 s) and the cancellation margin it
/// stays inside Kubernetes' 30 s termination grace.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Variables that turn the export on.
const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
];

/// Variables that choose the protocol, and the one value this build has.
const PROTOCOL_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
];
const PROTOCOL: &str = "http/protobuf";

/// Why the `OTEL_*` variables do not make an exporter.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The exporter could not be built from them.
    #[error(transparent)]
    Build(#[from] ExporterBuildError),
    #[error(
        "{variable}={value:?} is not supported by this build: the accepted value is {PROTOCOL} \
         (gRPC needs opentelemetry-otlp's grpc-tonic feature)"
    )]
    /// A protocol this build does not speak.
    Protocol {
        /// The variable that names it.
        variable: &'static str,
        /// What it says.
        value: String,
    },
}

/// The span pipeline: owns the batch thread until [`Export::shutdown`].
#[derive(Debug)]
pub struct Export {
    provider: SdkTracerProvider,
    /// The service's package name, which names its tracer.
    service_name: &'static str,
}

impl Export {
    /// The pipeline the environment asks for: `None` when no endpoint
    /// variable is set, or `OTEL_SDK_DISABLED` is `true`. Spans carry
    /// `service_name` (the service's package name) as `service.name`
    /// unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` name it.
    ///
    /// # Errors
    /// When a variable holds a value the exporter refuses (a bad endpoint
    /// URL, a protocol other than `http/protobuf`).
    pub fn from_env(service_name: &'static str) -> Result<Option<Self>, ExportError> {
        let disabled =
            var("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true"));
        if disabled || !ENDPOINT_VARIABLES.iter().any(|name| var(name).is_some()) {
            return Ok(None);
        }
        for variable in PROTOCOL_VARIABLES {
            if let Some(value) = var(variable).filter(|value| value != PROTOCOL) {
                return Err(ExportError::Protocol { variable, value });
            }
        }
        let exporter = SpanExporter::builder().with_http().build()?;
        let mut resource = Resource::builder();
        let named_in_attributes = var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|attributes| {
            attributes
                .split(',')
                .any(|pair| pair.trim_start().starts_with("service.name="))
        });
        if var("OTEL_SERVICE_NAME").is_none() && !named_in_attributes {
            resource = resource.with_service_name(service_name);
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        Ok(Some(Self {
            provider,
            service_name,
        }))
    }

    /// The `tracing` layer that hands finished spans to the pipeline.
    #[must_use]
    pub fn layer<S>(&self) -> impl Layer<S> + use<S>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        let tracer = self.provider.tracer(self.service_name);
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(not_from_the_sdk())
    }

    /// Sends the spans still batched, waiting at most `timeout`; spans the
    /// collector has not taken by then are dropped.
    pub fn shutdown(self, timeout: Duration) {
        if let Err(error) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(%error, "trace export did not flush before the exit");
        }
    }
}

/// A variable's value, `None` when unset or empty (as the SDK reads them).
fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|value| !value.is_empty())
}

/// Keeps the SDK's own events (an export that failed) out of the spans it
/// exports: they would go back through the exporter that just failed.
fn not_from_the_sdk() -> FilterFn {
    filter_fn(|metadata| !metadata.target().starts_with("opentelemetry"))
}
