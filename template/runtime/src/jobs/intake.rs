//! `POST /jobs` commits a job and answers 202 with its id; `GET /jobs/{id}`
//! reports a job's state.
//!
//! Answers of `POST /jobs`:
//! - 202 `{"id": ...}` once the job is committed. With an `Idempotency-Key`
//!   header, a repeat of a key answers 202 with the first job's id and
//!   creates nothing (keys are remembered as long as the job is kept:
//!   `worker.retention_ms` after it finished);
//! - 503 with `Retry-After` when the service is draining, the database is
//!   unavailable, slow or has a fault (a full disk, a read-only or locked
//!   file, a lost connection), or the queue holds `worker.queue_capacity`
//!   jobs. No 202 is given for a job that was not committed;
//! - 400 with `{"error": ...}` for a job of an unknown kind, or whose
//!   `args` its kind does not decode or accept (the message names the kind
//!   or the field), and for a bad `Idempotency-Key`; nothing is stored.
//!
//! The body is `{"kind": "...", "args": {...}}`; `args` may be left out
//! when every argument of the kind has a default.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::{
    Backlog, JOBS_REFUSED, JobId, Kinds, NewJob, Store,
    commit::{Committer, NotCommitted},
};
use crate::{
    http::{error_response, unavailable},
    readiness::Gate,
    trace_context,
};

/// Longest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

#[derive(Clone)]
pub struct Intake {
    pub committer: Committer,
    pub store: Store,
    pub kinds: Arc<Kinds>,
    /// `worker.max_attempts`, for kinds without a limit of their own.
    pub max_attempts: u32,
    pub backlog: Backlog,
    /// Open while the database answers.
    pub gate: Gate,
    pub draining: CancellationToken,
    pub retry_after_secs: u64,
}

/// The body of `POST /jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Submission {
    kind: String,
    /// Kept as the client sent it: checked by the kind, then stored as is.
    args: Option<Box<RawValue>>,
}

#[derive(Debug, Serialize)]
struct Accepted {
    id: JobId,
}

pub fn routes(intake: Intake) -> Router {
    Router::new()
        .route("/jobs", post(submit))
        .route("/jobs/{id}", get(status))
        .with_state(intake)
}

impl Intake {
    fn refuse(&self, reason: &'static str, message: &str) -> Response {
        metrics::counter!(JOBS_REFUSED, "reason" => reason).increment(1);
        unavailable(self.retry_after_secs, message)
    }
}

async fn submit(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: Result<Json<Submission>, JsonRejection>,
) -> Response {
    let submission = match body {
        Ok(Json(submission)) => submission,
        Err(rejection) => return error_response(rejection.status(), rejection.body_text()),
    };
    let args = submission.args.as_deref().map_or("{}", RawValue::get);
    let max_attempts = match intake
        .kinds
        .check(&submission.kind, args, intake.max_attempts)
    {
        Ok(max_attempts) => max_attempts,
        Err(refused) => return error_response(StatusCode::BAD_REQUEST, refused.to_string()),
    };
    let idempotency_key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
    };
    if intake.draining.is_cancelled() {
        return intake.refuse(
            "draining",
            "the service is shutting down and takes no new jobs",
        );
    }
    if !intake.gate.is_open() {
        return intake.refuse("database", "the job store is unavailable, retry later");
    }
    if let Some(fault) = intake.store.faults().write_fault() {
        tracing::debug!(
            db.fault = fault.as_str(),
            "job refused, the database refuses writes"
        );
        return intake.refuse("database", "the job store takes no writes now, retry later");
    }
    if !intake.backlog.try_reserve() {
        tracing::debug!(
            queue.capacity = intake.backlog.capacity(),
            "job refused, queue full"
        );
        return intake.refuse("full", "the job queue is full, retry later");
    }
    let job = NewJob {
        id: JobId::new(),
        idempotency_key,
        args: args.to_owned(),
        kind: submission.kind,
        max_attempts,
        traceparent: trace_context::current_traceparent(),
    };
    match intake.committer.commit(job).await {
        Ok(id) => {
            tracing::debug!(job.id = %id, "job accepted");
            (StatusCode::ACCEPTED, Json(Accepted { id })).into_response()
        }
        Err(NotCommitted::Busy) => {
            intake.backlog.cancel(1);
            intake.refuse(
                "busy",
                "too many jobs are waiting to be stored, retry later",
            )
        }
        Err(NotCommitted::Database { transient: true }) => {
            intake.refuse("database", "the job store is unavailable, retry later")
        }
        Err(NotCommitted::Database { transient: false }) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the job could not be stored",
        ),
    }
}

/// The optional `Idempotency-Key` header: printable ASCII, at most
/// [`MAX_IDEMPOTENCY_KEY`] characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, String> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY => Ok(Some(key.to_owned())),
        _ => Err(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )),
    }
}

async fn status(State(intake): State<Intake>, Path(id): Path<String>) -> Response {
    if id.parse::<JobId>().is_err() {
        return error_response(StatusCode::NOT_FOUND, "no such job");
    }
    // While the background check finds the database away, answer at once
    // instead of holding the request for the database timeout.
    if !intake.gate.is_open() {
        return unavailable(
            intake.retry_after_secs,
            "the job store is unavailable, retry later",
        );
    }
    match intake.store.status(&id).await {
        Ok(Some(status)) => Json(status).into_response(),
        Ok(None) => error_response(StatusCode::NOT_FOUND, "no such job"),
        Err(error) if error.is_transient() => unavailable(
            intake.retry_after_secs,
            "the job store is unavailable, retry later",
        ),
        Err(_) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the job could not be read",
        ),
    }
}
