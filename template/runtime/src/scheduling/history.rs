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
    routing::get,
};
use serde::{Deserialize, Serialize};

use super::runs::{RunRecord, RunStore};
use crate::http::{ApiError, DatabasePolicy};

/// Most runs one request returns.
pub const MAX_RUNS: usize = 100;
/// Runs returned when the request gives no `limit`.
pub const DEFAULT_RUNS: usize = 20;

#[derive(Debug, Clone)]
pub struct History {
    pub store: RunStore,
    /// When a request may read the database, and what a failed read
    /// answers.
    pub database: DatabasePolicy,
    /// The configured job names.
    pub jobs: Vec<String>,
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
) -> Result<Json<Runs>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(DEFAULT_RUNS);
    if limit == 0 || limit > MAX_RUNS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {MAX_RUNS}"),
        ));
    }
    if !history.jobs.contains(&query.job) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no job named {:?} is configured", query.job),
        ));
    }
    history.database.readable()?;
    match history.store.history(&query.job, limit).await {
        Ok(runs) => Ok(Json(Runs { runs })),
        Err(error) => Err(history.database.failed(&error)),
    }
}
