//! Metrics in the Prometheus text format, served at `GET /metrics`.
//!
//! Code records with the `metrics` macros (`counter!`, `gauge!`,
//! `histogram!`) where the event happens, next to its log line; each module
//! names and describes its own series. This module installs the one
//! process-wide recorder they report to, renders it for a scrape, and runs
//! the upkeep that folds histogram samples into their buckets between
//! scrapes, so that memory stays bounded when nobody scrapes.
//!
//! Every name starts with `nebula_`. Label values come from small fixed sets
//! (a route template, an outcome, a configured job name), never from a
//! request or job id: each distinct value is a series kept until exit.

use std::{sync::OnceLock, time::Duration};

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Bucket bounds, in seconds, of every histogram (their names end in
/// `_seconds`): from a fast in-memory request to the 30 s default timeout.
/// Buckets make them real Prometheus histograms, which add up across
/// replicas, instead of per-process summaries.
const SECONDS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

/// How often recorded histogram samples are folded into their buckets.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Name of the gauge that is 1 and carries the service kind and version.
pub const SERVICE_INFO: &str = "nebula_service_info";

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

/// `GET /metrics`.
pub async fn scrape(State(handle): State<PrometheusHandle>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(TEXT_FORMAT))],
        handle.render(),
    )
        .into_response()
}

/// Runs the recorder's upkeep every [`UPKEEP_INTERVAL`] until `stop`.
pub async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = ticks.tick() => handle.run_upkeep(),
        }
    }
}
