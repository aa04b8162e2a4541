//! Liveness and readiness. Liveness says the process is up and serving;
//! readiness says it wants new work, and turns to 503 the moment the drain
//! starts so load balancers stop routing here before the listener closes.

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Serialize)]
pub struct Status {
    pub status: &'static str,
}

pub async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

pub async fn readyz(State(draining): State<CancellationToken>) -> (StatusCode, Json<Status>) {
    if draining.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Status { status: "draining" }),
        )
    } else {
        (StatusCode::OK, Json(Status { status: "ready" }))
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::Request, routing::get};
    use tower::ServiceExt;

    use super::*;

    fn app(draining: CancellationToken) -> Router {
        Router::new()
            .route("/readyz", get(readyz))
            .with_state(draining)
    }

    async fn status(app: Router) -> StatusCode {
        let request = Request::get("/readyz").body(Body::empty()).unwrap();
        app.oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn readiness_turns_503_when_the_drain_starts() {
        let draining = CancellationToken::new();
        assert_eq!(status(app(draining.clone())).await, StatusCode::OK);
        draining.cancel();
        assert_eq!(status(app(draining)).await, StatusCode::SERVICE_UNAVAILABLE);
    }
}
