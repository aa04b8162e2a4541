//! `POST /jobs`: validates a job, queues it, and answers 202 with its id, or
//! 503 with `Retry-After` when the queue is full or the service is draining.

use axum::{
    Json, Router,
    extract::{State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use serde::Serialize;

use super::{Job, JobId, JobQueue, JobRequest, Refused};
use crate::http::{error_response, unavailable};

#[derive(Clone)]
struct Intake {
    queue: JobQueue,
    retry_after_secs: u64,
}

#[derive(Debug, Serialize)]
struct Accepted {
    id: JobId,
}

pub fn routes(queue: JobQueue, retry_after_secs: u64) -> Router {
    Router::new()
        .route("/jobs", post(submit))
        .with_state(Intake {
            queue,
            retry_after_secs,
        })
}

async fn submit(
    State(intake): State<Intake>,
    body: Result<Json<JobRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => return error_response(rejection.status(), rejection.body_text()),
    };
    if let Err(message) = request.validate() {
        return error_response(StatusCode::UNPROCESSABLE_ENTITY, message);
    }
    let job = Job::new(request);
    let id = job.id;
    match intake.queue.offer(job) {
        Ok(()) => {
            tracing::debug!(job.id = %id, "job accepted");
            (StatusCode::ACCEPTED, Json(Accepted { id })).into_response()
        }
        Err(Refused::Full) => {
            tracing::debug!(
                queue.capacity = intake.queue.capacity(),
                "job refused, queue full"
            );
            unavailable(
                intake.retry_after_secs,
                "the job queue is full, retry later",
            )
        }
        Err(Refused::Draining) => unavailable(
            intake.retry_after_secs,
            "the service is shutting down and takes no new jobs",
        ),
    }
}
