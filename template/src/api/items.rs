//! The example resource's routes:
//!
//! - `POST /v1/items` with `{"name": "..."}`: 201 and the item; 409 when
//!   the name is in use;
//! - `GET /v1/items/{id}`: 200 and the item, or 404;
//! - `DELETE /v1/items/{id}`: 204, or 404;
//! - `GET /v1/items?limit=N&cursor=C`: 200 and
//!   `{"items": [...], "next_cursor": C | null}`, in id order, at most
//!   `api.max_page_size` items (the default `limit`). A list never returns
//!   the whole table; `next_cursor` is opaque and fetches the next page.
//!   Ids are UUID version 7: their order is creation order within one
//!   process, and across replicas only as close as their clocks agree.
//!
//! When the database does not serve a request ([`Items::database_error`]):
//! 503 with `Retry-After` while it is unreachable, every pooled connection
//! is busy, or it has a fault that clears by itself (a full disk, a
//! read-only or locked file, a lost connection, a conflict); while a write
//! fault lasts, writes get that 503 at once and reads still work. 504 when
//! a query runs over `timeouts.database_ms`. Never a 500 for a condition
//! the client can retry.

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection, rejection::QueryRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::{Item, Store};
use nebula_runtime::{
    database::DbError,
    http::{error_response, unavailable},
    readiness::Gate,
};

/// Longest accepted item name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    pub name: String,
}

/// What the item routes share.
#[derive(Debug, Clone)]
pub struct Items {
    pub store: Store,
    /// Open while the database answers.
    pub gate: Gate,
    pub max_page_size: usize,
    pub retry_after_secs: u64,
}

pub fn routes(items: Items) -> Router {
    Router::new()
        .route("/v1/items", post(create).get(list))
        .route("/v1/items/{id}", get(read).delete(delete))
        .with_state(items)
}

impl Items {
    /// An answer at once while the background check finds the database
    /// away, instead of holding the request for the database timeout.
    fn refuse_while_away(&self) -> Option<Response> {
        (!self.gate.is_open()).then(|| {
            unavailable(
                self.retry_after_secs,
                "the database is unavailable, retry later",
            )
        })
    }

    /// As [`Items::refuse_while_away`], and also while the database refuses
    /// writes (a write fault): for the routes that write.
    fn refuse_write(&self) -> Option<Response> {
        self.refuse_while_away().or_else(|| {
            let fault = self.store.faults().write_fault()?;
            tracing::debug!(
                db.fault = fault.as_str(),
                "write refused, the database refuses writes"
            );
            Some(unavailable(
                self.retry_after_secs,
                "the database takes no writes now, retry later",
            ))
        })
    }

    /// The answer for a database call that failed, logged in the request's
    /// span (so with its `request.id`) with the `db.operation`: at WARN,
    /// or at DEBUG for a fault, which the database layer logs once when it
    /// starts instead of once per request.
    fn database_error(&self, error: &DbError) -> Response {
        let response = self.answer_for(error);
        let status = response.status().as_u16();
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
        response
    }

    fn answer_for(&self, error: &DbError) -> Response {
        match error {
            DbError::Unavailable { .. } => unavailable(
                self.retry_after_secs,
                "the database is unavailable, retry later",
            ),
            DbError::Timeout { .. } => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                "the database did not answer in time; the change may or may not have been made",
            ),
            error if error.is_constraint_violation() => {
                error_response(StatusCode::CONFLICT, "an item with this name exists")
            }
            DbError::Failed { .. } => {
                error_response(StatusCode::INTERNAL_SERVER_ERROR, "the item store failed")
            }
        }
    }
}

async fn create(
    State(items): State<Items>,
    body: Result<Json<NewItem>, JsonRejection>,
) -> Response {
    let Json(new) = match body {
        Ok(body) => body,
        Err(rejection) => return error_response(rejection.status(), rejection.body_text()),
    };
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("name must be 1 to {MAX_NAME_CHARS} characters"),
        );
    }
    if let Some(refused) = items.refuse_write() {
        return refused;
    }
    match items.store.insert(name).await {
        Ok(item) => {
            tracing::debug!(item.id = %item.id, "item created");
            (StatusCode::CREATED, Json(item)).into_response()
        }
        Err(error) => items.database_error(&error),
    }
}

async fn read(State(items): State<Items>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return not_found(&id);
    };
    if let Some(refused) = items.refuse_while_away() {
        return refused;
    }
    match items.store.get(id).await {
        Ok(Some(item)) => Json(item).into_response(),
        Ok(None) => not_found(&id),
        Err(error) => items.database_error(&error),
    }
}

async fn delete(State(items): State<Items>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return not_found(&id);
    };
    if let Some(refused) = items.refuse_write() {
        return refused;
    }
    match items.store.delete(id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => not_found(&id),
        Err(error) => items.database_error(&error),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
struct ListPage {
    items: Vec<Item>,
    next_cursor: Option<String>,
}

async fn list(
    State(items): State<Items>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(query) => query,
        Err(rejection) => return error_response(rejection.status(), rejection.body_text()),
    };
    let limit = query.limit.unwrap_or(items.max_page_size);
    if limit == 0 || limit > items.max_page_size {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {}", items.max_page_size),
        );
    }
    let after = match query.cursor.as_deref().map(decode_cursor) {
        None => None,
        Some(Some(after)) => Some(after),
        Some(None) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "cursor is not one this service gave out; start again without it",
            );
        }
    };
    if let Some(refused) = items.refuse_while_away() {
        return refused;
    }
    match items.store.list(after, limit).await {
        Ok(page) => {
            let next_cursor = page
                .more
                .then(|| page.items.last().map(|item| encode_cursor(item.id)))
                .flatten();
            Json(ListPage {
                items: page.items,
                next_cursor,
            })
            .into_response()
        }
        Err(error) => items.database_error(&error),
    }
}

/// The cursor after `id`: its 32 hex digits. Clients treat it as opaque,
/// so its form may change.
fn encode_cursor(id: Uuid) -> String {
    id.simple().to_string()
}

fn decode_cursor(cursor: &str) -> Option<Uuid> {
    (cursor.len() == 32)
        .then(|| Uuid::try_parse(cursor).ok())
        .flatten()
}

fn not_found(id: &dyn std::fmt::Display) -> Response {
    error_response(StatusCode::NOT_FOUND, format!("no item with id {id}"))
}
