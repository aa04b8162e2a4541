//! The HTTP surface every service type shares: probes, request tracing and
//! measuring, load shedding, the request timeout and the body limit, and a
//! server ([`serve`]) that drains without resets or waits on idle clients.

mod error;
mod middleware;
mod probes;
mod server;

use axum::{
    Json, Router,
    extract::DefaultBodyLimit,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tower_layer::Layer;

use crate::{Service, readiness::Readiness, settings::Settings};

pub use self::{
    error::{ApiError, DatabasePolicy},
    middleware::{Limits, RequestLayer},
    server::serve,
};

/// Builds the full router: the service's own routes behind the concurrency
/// limit, the request timeout and the body limit, plus `/healthz` and
/// `/readyz`, which stay outside the limit so probes answer even when the
/// service sheds load. Every request, unmatched paths included (404, route
/// `unmatched`), is traced and measured by one [`RequestLayer`] per group;
/// `deadline` is the drain deadline, which tells a request cut by it from
/// one its client gave up.
/// (`/metrics` has a listener of its own: [`crate::prometheus`].)
pub fn router<S: Service>(
    service_routes: Router,
    settings: &Settings<S>,
    readiness: Readiness,
    deadline: &CancellationToken,
) -> Router {
    middleware::describe_metrics();
    server::describe_metrics();
    let limits = Limits::new(&settings.http, settings.timeouts.default_operation());
    let service_routes = service_routes
        .layer(DefaultBodyLimit::max(settings.http.max_body_bytes))
        .layer(RequestLayer::limited(limits, deadline.clone()));
    let unmatched =
        RequestLayer::unlimited(deadline.clone()).layer(any(|| async { StatusCode::NOT_FOUND }));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .with_state(readiness)
        .layer(RequestLayer::unlimited(deadline.clone()))
        .merge(service_routes)
        .fallback_service(unmatched)
}

/// The JSON body of every error response: `{"error": "..."}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    /// What went wrong, in words for the client.
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{body::Body, http::Request, routing::post};
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::test_service::TestService;

    fn app(settings: &Settings<TestService>) -> Router {
        let routes = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_hours(1)).await;
                    "late"
                }),
            )
            .route("/echo", post(|body: String| async move { body }));
        router(
            routes,
            settings,
            Readiness::new(CancellationToken::new(), Vec::new(), Vec::new()),
            &CancellationToken::new(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_runs_out_of_time_gets_504() {
        let mut settings = Settings::<TestService>::default();
        settings.timeouts.default_ms = 1_000;
        let request = Request::get("/slow").body(Body::empty()).unwrap();

        let response = app(&settings).oneshot(request).await.unwrap();

        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    }

    #[tokio::test]
    async fn a_body_over_max_body_bytes_gets_413_and_one_at_the_limit_is_read() {
        let mut settings = Settings::<TestService>::default();
        settings.http.max_body_bytes = 1_000;
        let post = |size: usize| {
            Request::post("/echo")
                .body(Body::from("x".repeat(size)))
                .unwrap()
        };

        let at_limit = app(&settings).oneshot(post(1_000)).await.unwrap();
        let over = app(&settings).oneshot(post(1_001)).await.unwrap();

        assert_eq!(at_limit.status(), StatusCode::OK);
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }
}
