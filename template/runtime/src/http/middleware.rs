//! The one layer every request passes through: a tracing span with a
//! request id, a panic guard and the request metrics; and, for the service's
//! own routes, a concurrency limit that refuses excess requests (503 +
//! `Retry-After`) instead of queueing them, and the request timeout from
//! [`crate::timeouts`].
//!
//! It is a tower `Layer` with a future of its own rather than
//! `axum::middleware::from_fn`: nothing is boxed or cloned per request, and
//! the metric handles of each route are looked up once, not per request.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    sync::{Arc, PoisonError, RwLock},
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue, Method, StatusCode},
    response::Response,
};
use metrics::{Counter, Histogram, SharedString};
use pin_project_lite::pin_project;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Span, field};

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

/// The concurrency limit and timeout of the service's own routes.
#[derive(Debug, Clone)]
pub struct Limits {
    permits: Arc<Semaphore>,
    timeout: Duration,
    retry_after_secs: u64,
}

impl Limits {
    /// The limit and `Retry-After` from `http`; `timeout` is each request's own.
    #[must_use]
    pub fn new(http: &HttpSettings, timeout: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(http.max_concurrent_requests)),
            timeout,
            retry_after_secs: http.retry_after_secs,
        }
    }
}

/// Wraps each route of a group in a [`RequestService`].
#[derive(Debug, Clone)]
pub struct RequestLayer {
    limits: Option<Limits>,
    /// Cancelled at the drain deadline: a request dropped after that was
    /// cut by the deadline, one dropped before by its client.
    deadline: CancellationToken,
}

impl RequestLayer {
    /// Traced and measured, without a limit: the probes, which must answer
    /// while the service sheds load.
    #[must_use]
    pub const fn unlimited(deadline: CancellationToken) -> Self {
        Self {
            limits: None,
            deadline,
        }
    }

    /// Traced and measured, under the concurrency limit and the timeout.
    #[must_use]
    pub const fn limited(limits: Limits, deadline: CancellationToken) -> Self {
        Self {
            limits: Some(limits),
            deadline,
        }
    }
}

impl<S> Layer<S> for RequestLayer {
    type Service = RequestService<S>;

    /// axum calls this once per route and method, so each route keeps its
    /// own small set of metric handles.
    fn layer(&self, inner: S) -> Self::Service {
        RequestService {
            inner,
            limits: self.limits.clone(),
            route: Arc::new(Route {
                series: RouteSeries::default(),
                deadline: self.deadline.clone(),
            }),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RequestService<S> {
    inner: S,
    limits: Option<Limits>,
    route: Arc<Route>,
}

/// What the requests of one route share.
#[derive(Debug)]
struct Route {
    series: RouteSeries,
    deadline: CancellationToken,
}

impl<S> Service<Request> for RequestService<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let request_id = request_id(&request);
        request.headers_mut().insert(REQUEST_ID, request_id.clone());
        let method = method_label(request.method());
        let span = tracing::info_span!(
            "http.request",
            request.id = request_id.to_str().unwrap_or_default(),
            http.method = method,
            url.path = request.uri().path(),
            response.status = field::Empty,
            duration_ms = field::Empty,
        );
        // A caller's `traceparent` makes this span part of the caller's trace.
        crate::trace_context::accept(&span, request.headers());
        let in_flight = InFlight {
            span,
            request_id,
            started: Instant::now(),
            method,
            matched: request.extensions().get::<MatchedPath>().cloned(),
            route: Arc::clone(&self.route),
            _permit: None,
        };

        let Some(limits) = &self.limits else {
            let future = in_flight.span.in_scope(|| self.inner.call(request));
            return ResponseFuture::running(in_flight, future, None);
        };
        // Without a free permit the request is refused at once: a queue here
        // would only add latency and memory while the service is saturated.
        let Ok(permit) = Arc::clone(&limits.permits).try_acquire_owned() else {
            in_flight
                .span
                .in_scope(|| tracing::debug!("request refused, concurrency limit reached"));
            let refused = unavailable(
                limits.retry_after_secs,
                "too many concurrent requests, retry later",
            );
            return ResponseFuture::answered(in_flight, refused);
        };
        let in_flight = InFlight {
            _permit: Some(permit),
            ..in_flight
        };
        let deadline = tokio::time::sleep(limits.timeout);
        let future = in_flight.span.in_scope(|| self.inner.call(request));
        ResponseFuture::running(in_flight, future, Some((deadline, limits.timeout)))
    }
}

pin_project! {
    /// The response of a [`RequestService`]: the route's own future, under
    /// the request span, the panic guard and the timeout.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Option<F>,
        #[pin]
        deadline: Option<Sleep>,
        timeout: Duration,
        answer: Option<Response>,
        // `None` once the request has its answer; a future dropped before
        // that is a request abandoned.
        in_flight: Option<InFlight>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(in_flight) = this.project().in_flight.take() {
                in_flight.abandoned();
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    fn running(in_flight: InFlight, inner: F, deadline: Option<(Sleep, Duration)>) -> Self {
        let (deadline, timeout) = deadline.map_or((None, Duration::ZERO), |(sleep, timeout)| {
            (Some(sleep), timeout)
        });
        Self {
            inner: Some(inner),
            deadline,
            timeout,
            answer: None,
            in_flight: Some(in_flight),
        }
    }

    const fn answered(in_flight: InFlight, response: Response) -> Self {
        Self {
            inner: None,
            deadline: None,
            timeout: Duration::ZERO,
            answer: Some(response),
            in_flight: Some(in_flight),
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(in_flight) = this.in_flight.as_ref() else {
            panic!("ResponseFuture polled after completion");
        };
        let response = if let Some(response) = this.answer.take() {
            response
        } else if let Some(inner) = this.inner.as_mut().as_pin_mut() {
            let polled = {
                let _entered = in_flight.span.enter();
                // A panic in a handler fails this request only: it becomes a
                // 500, logged with the request id, instead of a dropped
                // connection.
                std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx)))
            };
            match polled {
                Ok(Poll::Ready(Ok(response))) => response,
                Ok(Poll::Ready(Err(error))) => {
                    // Not an abandoned request: the error goes up instead.
                    this.in_flight.take();
                    return Poll::Ready(Err(error));
                }
                Err(_panic) => {
                    in_flight.span.in_scope(|| {
                        tracing::error!(error.kind = "panic", "request handler panicked");
                    });
                    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
                }
                Ok(Poll::Pending) => {
                    let Some(deadline) = this.deadline.as_pin_mut() else {
                        return Poll::Pending;
                    };
                    ready!(deadline.poll(cx));
                    let timeout_ms = this.timeout.as_millis();
                    in_flight
                        .span
                        .in_scope(|| tracing::warn!(timeout_ms, "request timed out"));
                    // A request that runs out of time gets 504, as a database
                    // operation that runs out of its own time does: the
                    // service gave up waiting on work it depends on. 503 with
                    // `Retry-After` stays the answer for "too busy, come
                    // back"; a timed-out request may well time out again.
                    error_response(StatusCode::GATEWAY_TIMEOUT, "request timed out")
                }
            }
        } else {
            panic!("ResponseFuture has neither an answer nor a future");
        };
        // The handler's future goes now, with what it holds.
        this.inner.set(None);
        let Some(in_flight) = this.in_flight.take() else {
            unreachable!("checked above");
        };
        Poll::Ready(Ok(in_flight.finish(response)))
    }
}

/// What a request carries from its start to its answer.
struct InFlight {
    span: Span,
    request_id: HeaderValue,
    started: Instant,
    method: &'static str,
    matched: Option<MatchedPath>,
    route: Arc<Route>,
    /// The concurrency permit, held until the answer.
    _permit: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    /// Logs a request dropped before its answer: at WARN when the drain
    /// deadline cut it, at DEBUG when its client went away (which any
    /// client can do at will, so it must not fill the logs).
    fn abandoned(&self) {
        self.span.in_scope(|| {
            if self.route.deadline.is_cancelled() {
                tracing::warn!("request abandoned at the drain deadline");
            } else {
                tracing::debug!("request abandoned, the client went away");
            }
        });
    }

    /// Records the answer in the metrics and on the span, and echoes the
    /// request id.
    fn finish(self, mut response: Response) -> Response {
        let status = response.status();
        let elapsed = self.started.elapsed();
        // The route as the router declares it (a path parameter stays
        // `{id}`), never the path itself: one series per route, not one per
        // id a client makes up.
        let route = self
            .matched
            .as_ref()
            .map_or("unmatched", MatchedPath::as_str);
        let (requests, duration) = self.route.series.handles(self.method, route, status);
        duration.record(elapsed.as_secs_f64());
        requests.increment(1);
        self.span.record("response.status", status.as_u16());
        self.span
            .record("duration_ms", crate::settings::duration_ms(elapsed));
        self.span.in_scope(|| {
            // 503 and 504 are the service's stated answers to overload and
            // timeouts, logged where they are decided; other 5xx are bugs.
            let answered_by_policy = [StatusCode::SERVICE_UNAVAILABLE, StatusCode::GATEWAY_TIMEOUT];
            if status.is_server_error() && !answered_by_policy.contains(&status) {
                tracing::error!("request failed");
            } else {
                tracing::debug!("request finished");
            }
        });
        response.headers_mut().insert(REQUEST_ID, self.request_id);
        response
    }
}

/// The metric handles of one route, by method and status: resolved in the
/// registry on first use, then shared. A route sees a handful of methods
/// and statuses, so a short list beats a map.
#[derive(Debug, Default)]
struct RouteSeries(RwLock<Vec<Handles>>);

#[derive(Debug)]
struct Handles {
    method: &'static str,
    route: SharedString,
    status: StatusCode,
    requests: Counter,
    duration: Histogram,
}

impl RouteSeries {
    fn handles(
        &self,
        method: &'static str,
        route: &str,
        status: StatusCode,
    ) -> (Counter, Histogram) {
        let matches = |handles: &&Handles| {
            handles.status == status && handles.method == method && handles.route.as_ref() == route
        };
        if let Some(found) = self
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(matches)
        {
            return (found.requests.clone(), found.duration.clone());
        }
        let route = SharedString::from(route.to_owned());
        let handles = Handles {
            method,
            status,
            requests: metrics::counter!(
                REQUESTS,
                "method" => method,
                "route" => route.clone(),
                "status" => status.as_u16().to_string(),
            ),
            duration: metrics::histogram!(REQUEST_DURATION, "method" => method, "route" => route.clone()),
            route,
        };
        let found = (handles.requests.clone(), handles.duration.clone());
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(handles);
        found
    }
}

/// The caller's `x-request-id` when it is usable, or a new UUID.
fn request_id(request: &Request) -> HeaderValue {
    if let Some(given) = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| !value.is_empty() && value.len() <= 128)
    {
        return given.clone();
    }
    // A request id names a request in logs; it needs to be unique, not
    // secret, so it comes from the thread's fast generator rather than a
    // system call.
    let id = uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes()).into_uuid();
    let mut text = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .unwrap_or(HeaderValue::from_static("invalid"))
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
