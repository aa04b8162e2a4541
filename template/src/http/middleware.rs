//! Middleware applied to every request: a tracing span with a request id,
//! a panic guard and the request metrics; and for the service's own routes a
//! concurrency limit that refuses excess requests (503 + `Retry-After`)
//! instead of queueing them, plus the request timeout from
//! [`crate::timeouts`].

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::Response,
};
use futures_util::FutureExt;
use metrics::SharedString;
use tokio::{sync::Semaphore, time::Instant};
use tracing::{Instrument, field};

use super::{error_response, unavailable};
use crate::settings::HttpSettings;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Counter of finished requests, by method, route and status.
pub const REQUESTS: &str = "nebula_http_requests_total";
/// Histogram of request durations, by method and route.
pub const REQUEST_DURATION: &str = "nebula_http_request_duration_seconds";

/// Describes the request series for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_counter!(
        REQUESTS,
        "HTTP requests answered, by method, route template and status (503s included)"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION,
        metrics::Unit::Seconds,
        "Time from receiving an HTTP request to its response, by method and route template"
    );
}

/// Wraps each request in an `http.request` span. The request id comes from
/// the caller's `x-request-id` header, or is generated, and is echoed back.
pub async fn trace(mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| !value.is_empty() && value.len() <= 128)
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::try_from(uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("invalid"))
        });
    request.headers_mut().insert(REQUEST_ID, request_id.clone());
    let method = method_label(request.method());
    // The route as the router declares it (a path parameter stays `{id}`),
    // never the path itself: one series per route, not one per id a client
    // makes up. Shared, so the two series below take it without copying.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(SharedString::const_str("unmatched"), |path| {
            SharedString::from(Arc::<str>::from(path.as_str()))
        });

    let span = tracing::info_span!(
        "http.request",
        request.id = request_id.to_str().unwrap_or_default(),
        http.method = %request.method(),
        url.path = request.uri().path(),
        response.status = field::Empty,
        duration_ms = field::Empty,
    );
    // A caller's `traceparent` makes this span part of the caller's trace.
    crate::trace_context::accept(&span, request.headers());
    let started = Instant::now();
    // Dropped with the request, unless the request finishes: the server
    // drops requests still open at the drain deadline.
    let mut abandoned = Abandoned(Some(span.clone()));
    // A panic in a handler fails this request only: it becomes a 500, logged
    // with the request id, instead of a dropped connection.
    let outcome = AssertUnwindSafe(next.run(request))
        .catch_unwind()
        .instrument(span.clone())
        .await;
    abandoned.0 = None;
    let mut response = outcome.unwrap_or_else(|_panic| {
        span.in_scope(|| tracing::error!(error.kind = "panic", "request handler panicked"));
        error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    });
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route.clone())
        .record(elapsed.as_secs_f64());
    metrics::counter!(
        REQUESTS,
        "method" => method,
        "route" => route,
        "status" => status.as_u16().to_string(),
    )
    .increment(1);
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    span.record("response.status", status.as_u16());
    span.record("duration_ms", elapsed_ms);
    span.in_scope(|| {
        // 503 and 504 are the service's stated answers to overload and
        // timeouts, logged where they are decided; other 5xx are bugs.
        let answered_by_policy = [StatusCode::SERVICE_UNAVAILABLE, StatusCode::GATEWAY_TIMEOUT];
        if status.is_server_error() && !answered_by_policy.contains(&status) {
            tracing::error!("request failed");
        } else {
            tracing::debug!("request finished");
        }
    });
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

/// Logs, when dropped still holding the request's span, that the request
/// was abandoned: its client went away, or the drain deadline cut it. Take
/// the span out once the request has an answer.
struct Abandoned(Option<tracing::Span>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(span) = &self.0 {
            span.in_scope(|| tracing::warn!("request abandoned before its answer"));
        }
    }
}

/// The method as a label value; methods outside the standard set share one
/// value, since a client can send any token as a method.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Shared state of [`limit`].
#[derive(Debug, Clone)]
pub struct Limits {
    permits: Arc<Semaphore>,
    timeout: Duration,
    retry_after_secs: u64,
}

impl Limits {
    #[must_use]
    pub fn new(http: &HttpSettings, timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(http.max_concurrent_requests)),
            timeout,
            retry_after_secs: http.retry_after_secs,
        }
    }
}

/// Runs the request if a concurrency permit is free, under the request
/// timeout. Without a free permit the request is refused at once: a queue
/// here would only add latency and memory while the service is saturated.
///
/// A request that runs out of time gets 504, as a database operation that
/// runs out of its own time does: the service gave up waiting on work it
/// depends on. 503 with `Retry-After` stays the answer for "too busy, come
/// back": a timed-out request may well time out again.
pub async fn limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let Ok(_permit) = limits.permits.try_acquire_owned() else {
        tracing::debug!("request refused, concurrency limit reached");
        return unavailable(
            limits.retry_after_secs,
            "too many concurrent requests, retry later",
        );
    };
    match tokio::time::timeout(limits.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => {
            tracing::warn!(timeout_ms = limits.timeout.as_millis(), "request timed out");
            error_response(StatusCode::GATEWAY_TIMEOUT, "request timed out")
        }
    }
}
