//! Liveness and readiness. Liveness says the process is up and serving;
//! readiness says it wants new work: it turns to 503 the moment the drain
//! starts, so load balancers stop routing here before the listener closes,
//! and while a dependency such as the database is unreachable. A ready
//! answer names what works only in part under `degraded` (such as
//! `{"database_writes": "disk_full"}`). Neither probe does any I/O:
//! readiness reads gates that background checks keep.

use std::collections::BTreeMap;

use axum::{Json, extract::State, http::StatusCode};
use serde::Serialize;

use crate::readiness::{NotReady, Readiness};

#[derive(Debug, Serialize)]
pub struct ProbeAnswer {
    pub status: &'static str,
    /// The dependencies readiness is waiting for, when there are any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<&'static str>,
    /// What works only in part, and why, when anything does.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub degraded: BTreeMap<&'static str, &'static str>,
}

impl ProbeAnswer {
    const fn only(status: &'static str) -> Self {
        Self {
            status,
            waiting_for: Vec::new(),
            degraded: BTreeMap::new(),
        }
    }
}

pub async fn healthz() -> Json<ProbeAnswer> {
    Json(ProbeAnswer::only("ok"))
}

pub async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, Json<ProbeAnswer>) {
    let (code, mut status) = match readiness.check() {
        Ok(()) => (StatusCode::OK, ProbeAnswer::only("ready")),
        Err(NotReady::Draining) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ProbeAnswer::only("draining"),
        ),
        Err(NotReady::Waiting(waiting_for)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ProbeAnswer {
                waiting_for,
                ..ProbeAnswer::only("waiting")
            },
        ),
    };
    status.degraded = readiness.degraded();
    (code, Json(status))
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, http::Request, routing::get};
    use tokio_util::sync::CancellationToken;
    use tower::ServiceExt;

    use super::*;
    use crate::readiness::Gate;

    fn app(readiness: Readiness) -> Router {
        Router::new()
            .route("/readyz", get(readyz))
            .with_state(readiness)
    }

    async fn status(app: Router) -> StatusCode {
        let request = Request::get("/readyz").body(Body::empty()).unwrap();
        app.oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn readiness_turns_503_when_the_drain_starts() {
        let draining = CancellationToken::new();
        let readiness = Readiness::new(draining.clone(), Vec::new(), Vec::new());
        assert_eq!(status(app(readiness.clone())).await, StatusCode::OK);
        draining.cancel();
        assert_eq!(
            status(app(readiness)).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn readiness_is_503_while_a_gate_is_closed() {
        let gate = Gate::closed("database");
        let readiness = Readiness::new(CancellationToken::new(), vec![gate.clone()], Vec::new());
        assert_eq!(
            status(app(readiness.clone())).await,
            StatusCode::SERVICE_UNAVAILABLE
        );
        gate.set(true);
        assert_eq!(status(app(readiness)).await, StatusCode::OK);
    }
}
