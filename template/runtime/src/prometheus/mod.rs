//! Metrics in the Prometheus text format, served at `GET /metrics` on a
//! listener of their own (`metrics.listen`).
//!
//! Code records with the `metrics` macros (`counter!`, `gauge!`,
//! `histogram!`) where the event happens, next to its log line; each module
//! names and describes its own series. This module installs the one
//! process-wide recorder they report to (`registry`) and serves it in the
//! text format (`exposition`).
//!
//! Why a listener of its own: the service's listener closes early in the
//! drain, but the drain is when its progress is worth watching; this one
//! stays open until the drain has ended. It also keeps the metrics off the
//! port that takes the service's traffic.
//!
//! Every name starts with `nebula_`. Label values come from small fixed sets
//! (a route template, an outcome, a configured job name), never from a
//! request or job id: each distinct value is a series kept until exit.

mod exposition;
mod registry;

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use self::registry::Registry;
use exposition::CONTENT_TYPE;

/// The metrics port unless configured: the one registered for Prometheus
/// exporters of OpenTelemetry, far from the usual HTTP ports.
pub const DEFAULT_PORT: u16 = 9464;

/// Bucket bounds, in seconds, of every histogram: from a fast in-memory
/// request, past the 30 s default timeout, to a job whose attempts and
/// backoffs take minutes. Buckets make them real Prometheus histograms, which
/// add up across replicas, instead of per-process summaries. Every histogram
/// name ends in `_seconds`, and a debug build checks it: a histogram of
/// another unit needs bounds of its own.
const SECONDS_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Name of the gauge that is 1 and carries the service kind and version.
pub const SERVICE_INFO: &str = "nebula_service_info";

/// The `[metrics]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address the metrics listener binds; port 0 picks a free port.
    pub listen: SocketAddr,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
        }
    }
}

/// Another recorder holds the process's `metrics` facade.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct RecorderError(String);

/// The process-wide recorder, installed on first use. Several services in
/// one process (as in the in-process tests) share it.
///
/// # Errors
/// When another `metrics` recorder was installed first.
pub fn recorder() -> Result<Arc<Registry>, RecorderError> {
    static RECORDER: OnceLock<Result<Arc<Registry>, RecorderError>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let registry = Arc::new(Registry::new(&SECONDS_BUCKETS));
            metrics::set_global_recorder(Arc::clone(&registry))
                .map(|()| registry)
                .map_err(|error| RecorderError(error.to_string()))
        })
        .clone()
}

/// Publishes [`SERVICE_INFO`] for the service of this `kind` (`api`,
/// `worker`, `scheduler`) and `version` (its package's, not the runtime's).
pub fn describe_service(kind: &'static str, version: &'static str) {
    metrics::describe_gauge!(
        SERVICE_INFO,
        "Always 1; the labels say which service kind and version runs"
    );
    metrics::gauge!(
        SERVICE_INFO,
        "kind" => kind,
        "version" => version,
    )
    .set(1.0);
}

/// The metrics listener's routes: `GET /metrics` only.
pub fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
}

/// The metrics listener, serving [`router`] in a task of its own until
/// stopped. The service stops it only once the drain
/// has ended, so that scrapes can follow the drain; dropping it (a `run`
/// future dropped midway) aborts the task, so the port is never left bound.
pub struct MetricsServer {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Starts serving on `listener`.
    #[must_use]
    pub fn start(listener: TcpListener, registry: Arc<Registry>) -> Self {
        let stop = CancellationToken::new();
        let server = axum::serve(listener, router(registry))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(error) = server.await {
                tracing::error!(%error, "metrics listener failed, metrics are not served");
            }
        });
        Self { stop, task }
    }

    /// Closes the listener and lets scrapes in progress finish, for at
    /// most `within`; what is left then is cut.
    pub async fn stop(mut self, within: Duration) {
        self.stop.cancel();
        // Finished or not, the drop below aborts the task.
        let _ = tokio::time::timeout(within, &mut self.task).await;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `GET /metrics`.
async fn scrape(State(registry): State<Arc<Registry>>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        registry.render(),
    )
        .into_response()
}
