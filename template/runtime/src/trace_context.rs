//! W3C trace context (`traceparent`) across the service's edges: taken from
//! incoming requests, sent on outbound calls, and kept as text where work
//! outlives a request (a stored job).
//!
//! With the `otel` feature off, or with the export not configured, every
//! function here does nothing, and callers need no `cfg` of their own.

use axum::http::HeaderMap;
use tracing::Span;

#[cfg(feature = "otel")]
mod propagation {
    use std::collections::HashMap;

    use axum::http::HeaderMap;
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry_http::{HeaderExtractor, HeaderInjector};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    const TRACEPARENT: &str = "traceparent";

    pub fn accept(span: &Span, headers: &HeaderMap) {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        // Fails when the export is off (no layer to hold the parent) or the
        // span is disabled by `log.level`: then there is no trace to join.
        let _ = span.set_parent(parent);
    }

    pub fn inject(headers: &mut HeaderMap) {
        let context = Span::current().context();
        TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
    }

    pub fn current_traceparent() -> Option<String> {
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&Span::current().context(), &mut carrier);
        carrier.remove(TRACEPARENT)
    }

    pub fn adopt(span: &Span, traceparent: Option<&str>) {
        let Some(traceparent) = traceparent else {
            return;
        };
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
        let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
    }
}

#[cfg(not(feature = "otel"))]
mod propagation {
    use axum::http::HeaderMap;
    use tracing::Span;

    pub fn accept(_span: &Span, _headers: &HeaderMap) {}

    pub fn inject(_headers: &mut HeaderMap) {}

    pub fn current_traceparent() -> Option<String> {
        None
    }

    pub fn adopt(_span: &Span, _traceparent: Option<&str>) {}
}

/// Makes `span` (not yet entered) a child of the caller's span named by the
/// request's `traceparent` header, when there is a valid one.
pub fn accept(span: &Span, headers: &HeaderMap) {
    propagation::accept(span, headers);
}

/// Adds `traceparent` for the current span to an outbound call's headers.
pub fn inject(headers: &mut HeaderMap) {
    propagation::inject(headers);
}

/// The current span as a `traceparent` value, to store with work that runs
/// later, perhaps in another process.
#[must_use]
pub fn current_traceparent() -> Option<String> {
    propagation::current_traceparent()
}

/// Makes `span` (not yet entered) a child of a stored `traceparent`.
pub fn adopt(span: &Span, traceparent: Option<&str>) {
    propagation::adopt(span, traceparent);
}
