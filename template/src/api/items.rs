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
//! When the database does not serve a request, the runtime's
//! [`DatabasePolicy`] answers: 503 with `Retry-After` while it is
//! unreachable, every pooled connection is busy, or it has a fault that
//! clears by itself (a full disk, a read-only or locked file, a lost
//! connection, a conflict); while a write fault lasts, writes get that 503
//! at once and reads still work. 504 when a query runs over
//! `timeouts.database_ms`. Never a 500 for a condition the client can
//! retry.

use axum::{
    Json, Router,
    extract::{Path, Query, State, rejection::JsonRejection, rejection::QueryRejection},
    http::StatusCode,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::store::{Item, Store};
use nebula_runtime::{
    database::DbError,
    http::{ApiError, DatabasePolicy},
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
    /// When requests may touch the database, and what a failed call answers.
    pub database: DatabasePolicy,
    pub max_page_size: usize,
}

pub fn routes(items: Items) -> Router {
    Router::new()
        .route("/v1/items", post(create).get(list))
        .route("/v1/items/{id}", get(read).delete(delete))
        .with_state(items)
}

impl Items {
    /// The runtime's answer for a failed call ([`DatabasePolicy::failed`]),
    /// its 409 saying which constraint: the item names are unique.
    fn failed(&self, error: &DbError) -> ApiError {
        let answer = self.database.failed(error);
        if answer.status() == StatusCode::CONFLICT {
            ApiError::new(StatusCode::CONFLICT, "an item with this name exists")
        } else {
            answer
        }
    }
}

async fn create(
    State(items): State<Items>,
    body: Result<Json<NewItem>, JsonRejection>,
) -> Result<(StatusCode, Json<Item>), ApiError> {
    let Json(new) = body?;
    let name = new.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("name must be 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    items.database.writable()?;
    let item = items
        .store
        .insert(name)
        .await
        .map_err(|error| items.failed(&error))?;
    tracing::debug!(item.id = %item.id, "item created");
    Ok((StatusCode::CREATED, Json(item)))
}

async fn read(State(items): State<Items>, Path(id): Path<String>) -> Result<Json<Item>, ApiError> {
    let id = parse_id(&id)?;
    items.database.readable()?;
    match items.store.get(id).await {
        Ok(Some(item)) => Ok(Json(item)),
        Ok(None) => Err(not_found(&id)),
        Err(error) => Err(items.failed(&error)),
    }
}

async fn delete(
    State(items): State<Items>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    items.database.writable()?;
    match items.store.delete(id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(not_found(&id)),
        Err(error) => Err(items.failed(&error)),
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
) -> Result<Json<ListPage>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(items.max_page_size);
    if limit == 0 || limit > items.max_page_size {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {}", items.max_page_size),
        ));
    }
    let after = match query.cursor.as_deref() {
        None => None,
        Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "cursor is not one this service gave out; start again without it",
            )
        })?),
    };
    items.database.readable()?;
    let page = items
        .store
        .list(after, limit)
        .await
        .map_err(|error| items.failed(&error))?;
    let next_cursor = page
        .more
        .then(|| page.items.last().map(|item| encode_cursor(item.id)))
        .flatten();
    Ok(Json(ListPage {
        items: page.items,
        next_cursor,
    }))
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

/// An id that is not a UUID names no item.
fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    id.parse().map_err(|_| not_found(&id))
}

fn not_found(id: &dyn std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no item with id {id}"))
}
