//! Metrics in the Prometheus text format, served at `GET /metrics` on a
//! listener of their own (`metrics.listen`).
//!
//! Code records with the `metrics` macros (`counter!`, `gauge!`,
//! `histogram!`) where the event happens, next to its log line; each module
//! names and describes its own series. This module installs the one
//! process-wide recorder they report to, serves it, and runs the upkeep that
//! folds histogram samples into their buckets between scrapes, so that
//! memory stays bounded when nobody scrapes.
//!
//! Why a listener of its own: the service's listener closes early in the
//! drain, but the drain is when its progress is worth watching; this one
//! stays open until the drain has ended. It also keeps the metrics off the
//! port that takes the service's traffic.
//!
//! Every name starts with `nebula_`. Label values come from small fixed sets
//! (a route template, an outcome, a configured job name), never from a
//! request or job id: each distinct value is a series kept until exit.

use std::{convert::Infallible, net::SocketAddr, sync::OnceLock, time::Duration};

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// The metrics port unless configured: the one registered for Prometheus
/// exporters of OpenTelemetry, far from the usual HTTP ports.
pub const DEFAULT_PORT: u16 = 9464;

/// Bucket bounds, in seconds, of every histogram (their names end in
/// `_seconds`): from a fast in-memory request, past the 30 s default
/// timeout, to a job whose attempts and backoffs take minutes. Buckets make
/// them real Prometheus histograms, which add up across replicas, instead of
/// per-process summaries.
const SECONDS_BUCKETS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// How often recorded histogram samples are folded into their buckets.
/// Samples wait in memory until then: at 50,000 requests a second, a second
/// of them is about half a MiB per histogram.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Name of the gauge that is 1 and carries the service kind and version.
pub const SERVICE_INFO: &str = "nebula_service_info";

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

#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct RecorderError(String);

/// The process-wide recorder, installed on first use. Several services in
/// one process (as in the in-process tests) share it.
///
/// # Errors
/// When another `metrics` recorder was installed first.
pub fn recorder() -> Result<PrometheusHandle, RecorderError> {
    static RECORDER: OnceLock<Result<PrometheusHandle, RecorderError>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &SECONDS_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|error| RecorderError(error.to_string()))
        })
        .clone()
}

/// Publishes [`SERVICE_INFO`] for this build.
pub fn describe_service() {
    metrics::describe_gauge!(
        SERVICE_INFO,
        "Always 1; the labels say which service kind and version runs"
    );
    metrics::gauge!(
        SERVICE_INFO,
        "kind" => crate::SERVICE_KIND,
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
}

/// The metrics listener's routes: `GET /metrics` only.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(handle)
}

/// The metrics listener, serving [`router`] and running the upkeep in a
/// task of its own until stopped. The service stops it only once the drain
/// has ended, so that scrapes can follow the drain; dropping it (a `run`
/// future dropped midway) aborts the task, so the port is never left bound.
pub struct MetricsServer {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// Starts serving on `listener`.
    #[must_use]
    pub fn start(listener: TcpListener, handle: PrometheusHandle) -> Self {
        let stop = CancellationToken::new();
        let server = axum::serve(listener, router(handle.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            tokio::select! {
                result = server.into_future() => {
                    if let Err(error) = result {
                        tracing::error!(%error, "metrics listener failed, metrics are not served");
                    }
                }
                never = upkeep(handle) => match never {},
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
async fn scrape(State(handle): State<PrometheusHandle>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT))],
        handle.render(),
    )
        .into_response()
}

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`], for as long as the
/// metrics are served.
async fn upkeep(handle: PrometheusHandle) -> Infallible {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}
