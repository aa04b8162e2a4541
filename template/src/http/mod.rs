//! The HTTP surface every service type shares: probes, request tracing,
//! load shedding and the request timeout, and a server that stops accepting
//! on request while in-flight requests finish.

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

use crate::settings::Settings;

pub use self::middleware::Limits;

/// Builds the full router: the service's own routes behind the concurrency
/// limit and request timeout, plus `/healthz` and `/readyz`, which stay
/// outside the limit so probes answer even when the service sheds load.
pub fn router(service_routes: Router, settings: &Settings, draining: CancellationToken) -> Router {
    let limits = Limits::new(&settings.http, settings.timeouts.default_operation());
    let service_routes = service_routes.layer(from_fn_with_state(limits, middleware::limit));
    Router::new()
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .with_state(draining)
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

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex, PoisonError},
    };

    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;

    /// Collects the JSON log lines written while it is the default subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn events(&self) -> Vec<serde_json::Value> {
            let bytes = self
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(|line| serde_json::from_str(line).unwrap())
                .collect()
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_fails_its_request_with_500_logged_with_the_request_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let routes = Router::new().route(
            "/boom",
            get(|| async {
                let empty: Vec<u8> = Vec::new();
                // Indexing out of bounds stands in for any bug in a handler.
                empty[1].to_string()
            }),
        );
        let app = router(routes, &Settings::default(), CancellationToken::new());
        let request = || {
            Request::get("/boom")
                .header("x-request-id", "req-42")
                .body(Body::empty())
                .unwrap()
        };

        let response = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()["x-request-id"], "req-42");
        let logged = captured
            .events()
            .into_iter()
            .find(|event| event["fields"]["message"] == "request handler panicked")
            .expect("the panic is logged");
        assert_eq!(logged["span"]["request.id"], "req-42");

        let again = app.oneshot(request()).await.unwrap();
        assert_eq!(
            again.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "the router keeps serving"
        );
    }
}
