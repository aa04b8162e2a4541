//! One error type for handlers ([`ApiError`]), and the policy that turns
//! the database's state and failures into answers ([`DatabasePolicy`]), so
//! that a route returns `Result<_, ApiError>` and uses `?` instead of
//! mapping rejections and database errors by hand.

use axum::{
    extract::rejection::{JsonRejection, PathRejection, QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
};

use super::{error_response, unavailable};
use crate::{
    database::{DbError, Faults},
    readiness::Gate,
};

/// An error answer: a status and a message for the client, sent as
/// `{"error": "..."}`; a 503 also says when to come back (`Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    /// `status` with `message`.
    #[must_use]
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// 503 with `Retry-After: retry_after_secs`: come back later.
    #[must_use]
    pub fn unavailable(retry_after_secs: u64, message: impl Into<String>) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }

    /// The answer's status.
    #[must_use]
    pub const fn status(&self) -> StatusCode {
        self.status
    }

    /// The message the client reads.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.retry_after_secs {
            Some(seconds) => unavailable(seconds, self.message),
            None => error_response(self.status, self.message),
        }
    }
}

/// A body that is not the JSON the route takes: axum's status (400, 415 or
/// 422) and its message, which names the field.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

/// A query string the route cannot decode: 400, naming the parameter.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

/// A path segment the route cannot decode.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(rejection.status(), rejection.body_text())
    }
}

/// How routes meet the database: while the background health check finds
/// it away, a request is answered 503 at once instead of being held for the
/// database timeout, and while a write fault lasts (a full disk, a
/// read-only or locked file) so are writes, while reads go on; a call that
/// fails becomes 503 (a fault that clears by itself), 504 (over the
/// database timeout: the change may or may not have been made) or 500,
/// never a 500 for something the client can retry. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DatabasePolicy {
    gate: Gate,
    faults: Faults,
    retry_after_secs: u64,
}

impl DatabasePolicy {
    /// The policy over the database's readiness `gate` and `faults`, with
    /// `Retry-After: retry_after_secs` on its 503s (`http.retry_after_secs`).
    #[must_use]
    pub const fn new(gate: Gate, faults: Faults, retry_after_secs: u64) -> Self {
        Self {
            gate,
            faults,
            retry_after_secs,
        }
    }

    /// `Ok` when a request may read: the database answers.
    ///
    /// # Errors
    /// 503 while the health check finds the database away.
    pub fn readable(&self) -> Result<(), ApiError> {
        if self.gate.is_open() {
            Ok(())
        } else {
            Err(ApiError::unavailable(
                self.retry_after_secs,
                "the database is unavailable, retry later",
            ))
        }
    }

    /// `Ok` when a request may write: the database answers and takes
    /// writes.
    ///
    /// # Errors
    /// 503 while it is away, or has a write fault.
    pub fn writable(&self) -> Result<(), ApiError> {
        self.readable()?;
        match self.faults.write_fault() {
            None => Ok(()),
            Some(fault) => {
                tracing::debug!(
                    db.fault = fault.as_str(),
                    "write refused, the database refuses writes"
                );
                Err(ApiError::unavailable(
                    self.retry_after_secs,
                    "the database takes no writes now, retry later",
                ))
            }
        }
    }

    /// The answer for a call that failed, logged in the request's span (so
    /// with its `request.id`) with the `db.operation`: at DEBUG for a
    /// fault, which the database layer logs once when it starts rather than
    /// once per request, and at WARN otherwise. A constraint violation (a
    /// unique key taken) is the request's conflict with what is stored:
    /// 409, whose message a route may replace with one that names the
    /// field.
    #[must_use]
    pub fn failed(&self, error: &DbError) -> ApiError {
        let answer = match error {
            DbError::Unavailable { .. } => ApiError::unavailable(
                self.retry_after_secs,
                "the database is unavailable, retry later",
            ),
            DbError::Timeout { .. } => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "the database did not answer in time; a change the request asked for may or may \
                 not have been made",
            ),
            error if error.is_constraint_violation() => ApiError::new(
                StatusCode::CONFLICT,
                "the request conflicts with what is stored",
            ),
            DbError::Failed { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the database call failed",
            ),
        };
        let status = answer.status().as_u16();
        if let DbError::Unavailable { .. } = error {
            tracing::debug!(
                db.operation = error.operation(),
                error.kind = error.kind(),
                http.response.status_code = status,
                "request failed on the database"
            );
        } else {
            tracing::warn!(
                db.operation = error.operation(),
                error.kind = error.kind(),
                http.response.status_code = status,
                "request failed on the database"
            );
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use axum::body::to_bytes;

    use super::*;
    use crate::database::Fault;

    /// A policy whose gate is open, with no fault.
    fn policy() -> (DatabasePolicy, Gate, Faults) {
        let gate = Gate::closed("database");
        gate.set(true);
        let faults = Faults::default();
        (
            DatabasePolicy::new(gate.clone(), faults.clone(), 7),
            gate,
            faults,
        )
    }

    async fn body(error: ApiError) -> (StatusCode, Option<String>, String) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|value| value.to_str().unwrap().to_owned());
        let bytes = to_bytes(response.into_body(), 1024).await.unwrap();
        (
            status,
            retry_after,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn an_error_answers_its_status_and_a_json_message() {
        let (status, retry_after, text) =
            body(ApiError::new(StatusCode::NOT_FOUND, "no item \"x\"")).await;
        assert_eq!(status, 404);
        assert_eq!(retry_after, None);
        assert_eq!(text, r#"{"error":"no item \"x\""}"#);

        let (status, retry_after, _) = body(ApiError::unavailable(3, "busy")).await;
        assert_eq!(status, 503);
        assert_eq!(retry_after.as_deref(), Some("3"));
    }

    #[test]
    fn reads_wait_for_the_database_and_writes_for_its_write_faults() {
        let (policy, gate, faults) = policy();
        assert_eq!(policy.readable(), Ok(()));
        assert_eq!(policy.writable(), Ok(()));

        faults.met(Fault::DiskFull, "insert", &"disk full", faults.call_start());
        assert_eq!(
            policy.readable(),
            Ok(()),
            "reads go on during a write fault"
        );
        let refused = policy.writable().unwrap_err();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after_secs, Some(7));

        gate.set(false);
        assert_eq!(
            policy.readable().unwrap_err().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn failed_calls_answer_503_504_or_500() {
        let (policy, _, _) = policy();
        let unavailable = DbError::Unavailable {
            operation: "select",
            fault: Fault::DiskFull,
            source: sqlx::Error::PoolTimedOut,
        };
        let timeout = DbError::Timeout {
            operation: "select",
            timeout_ms: 5_000,
        };
        let failed = DbError::Failed {
            operation: "select",
            source: sqlx::Error::RowNotFound,
        };
        let answer = policy.failed(&unavailable);
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.retry_after_secs, Some(7));
        assert_eq!(
            policy.failed(&timeout).status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(
            policy.failed(&failed).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
