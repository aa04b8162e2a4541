//! The HTTP surface every service type shares: probes, request tracing and
//! measuring, load shedding and the request timeout, and a server that stops
//! accepting on request while in-flight requests finish.

mod middleware;
mod probes;

use std::io;

use axum::{
    Json, Router,
    http::{HeaderValue, StatusCode, header},
    middleware::{from_fn, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{readiness::Readiness, settings::Settings};

pub use self::middleware::Limits;

/// Builds the full router: the service's own routes behind the concurrency
/// limit and request timeout, plus `/healthz` and `/readyz`, which stay
/// outside the limit so probes answer even when the service sheds load.
/// (`/metrics` has a listener of its own: [`crate::prometheus`].)
pub fn router(service_routes: Router, settings: &Settings, readiness: Readiness) -> Router {
    middleware::describe_metrics();
    let limits = Limits::new(&settings.http, settings.timeouts.default_operation());
    let service_routes = service_routes.layer(from_fn_with_state(limits, middleware::limit));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .with_state(readiness)
        .merge(service_routes)
        .layer(from_fn(middleware::trace))
}

/// Serves `app` until `stop_accepting` fires, then closes the listener and
/// returns once every open connection has finished its request.
///
/// # Errors
/// When the server fails for a reason other than shutdown.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop_accepting: CancellationToken,
) -> io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(stop_accepting.cancelled_owned())
        .await
}

/// The JSON body of every error response: `{"error": "..."}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
}

/// An error response with a JSON body.
#[must_use]
pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.into(),
        }),
    )
        .into_response()
}

/// 503 with `Retry-After`: the policy whenever this service is too busy, or
/// is draining, and the client should come back later.
#[must_use]
pub fn unavailable(retry_after_secs: u64, message: impl Into<String>) -> Response {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}
