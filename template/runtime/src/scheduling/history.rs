//! `GET /runs?job=NAME&limit=N`: the newest runs of one job, newest period
//! first, at most [`MAX_RUNS`] (the default `limit` is [`DEFAULT_RUNS`]).
//! Each run shows its period, its state (`running` or its outcome), the
//! replica that ran it, its attempt, start, duration and error. 404 for a
//! job that is not configured; 503 with `Retry-After` while the database is
//! unavailable, 504 when it does not answer in time.

use axum::{
    Json, Router,
    extract::{Query, State, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::runs::{RunRecord, RunStore};
use crate::{
    database::DbError,
    http::{error_response, unavailable},
    readiness::Gate,
};

/// Most runs one request returns.
pub const MAX_RUNS: usize = 100;
/// Runs returned when the request gives no `limit`.
pub const DEFAULT_RUNS: usize = 20;

#[derive(Debug, Clone)]
pub struct History {
    pub store: RunStore,
    /// Open while the database answers.
    pub gate: Gate,
    /// The configured job names.
    pub jobs: Vec<String>,
    pub retry_after_secs: u64,
}

pub fn routes(history: History) -> Router {
    Router::new().route("/runs", get(runs)).with_state(history)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    job: String,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Runs {
    runs: Vec<RunRecord>,
}

async fn runs(
    State(history): State<History>,
    query: Result<Query<RunsQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error_response(rejection.status(), rejection.body_text()),
    };
    let limit = query.limit.unwrap_or(DEFAULT_RUNS);
    if limit == 0 || limit > MAX_RUNS {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {MAX_RUNS}"),
        );
    }
    if !history.jobs.contains(&query.job) {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("no job named {:?} is configured", query.job),
        );
    }
    if !history.gate.is_open() {
        return unavailable(
            history.retry_after_secs,
            "the database is unavailable, retry later",
        );
    }
    match history.store.history(&query.job, limit).await {
        Ok(runs) => Json(Runs { runs }).into_response(),
        Err(DbError::Timeout { .. }) => error_response(
            StatusCode::GATEWAY_TIMEOUT,
            "the database did not answer in time",
        ),
        Err(error) if error.is_transient() => unavailable(
            history.retry_after_secs,
            "the database is unavailable, retry later",
        ),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the run history could not be read",
        ),
    }
}
