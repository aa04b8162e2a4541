//! The example resource: items kept in a bounded in-memory store.
//!
//! - `POST /v1/items` with `{"name": "..."}`: 201 and the item;
//! - `GET /v1/items/{id}`: 200 and the item, or 404;
//! - `DELETE /v1/items/{id}`: 204, or 404.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
};

use axum::{
    Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::http::error_response;

/// Longest accepted item name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    pub name: String,
}

/// Items by id, never more than `capacity` of them.
#[derive(Debug, Clone)]
pub struct Store {
    items: Arc<RwLock<HashMap<Uuid, Item>>>,
    capacity: usize,
}

impl Store {
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            items: Arc::default(),
            capacity,
        }
    }

    /// Adds an item, or gives it back when the store is full.
    fn insert(&self, item: Item) -> Result<Item, Item> {
        // The lock is never held across an await, and a panic while holding
        // it cannot leave a half-written map, so poisoning is ignored.
        let mut items = self.items.write().unwrap_or_else(PoisonError::into_inner);
        if items.len() >= self.capacity {
            return Err(item);
        }
        items.insert(item.id, item.clone());
        Ok(item)
    }

    fn get(&self, id: Uuid) -> Option<Item> {
        self.items
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    fn remove(&self, id: Uuid) -> Option<Item> {
        self.items
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id)
    }
}

pub fn routes(store: Store) -> Router {
    Router::new()
        .route("/v1/items", post(create))
        .route("/v1/items/{id}", get(read).delete(delete))
        .with_state(store)
}

async fn create(
    State(store): State<Store>,
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
    let item = Item {
        id: Uuid::new_v4(),
        name: name.to_owned(),
    };
    match store.insert(item) {
        Ok(item) => {
            tracing::debug!(item.id = %item.id, "item created");
            (StatusCode::CREATED, Json(item)).into_response()
        }
        Err(_) => error_response(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "the store is full ({} items); delete some first",
                store.capacity
            ),
        ),
    }
}

async fn read(State(store): State<Store>, Path(id): Path<Uuid>) -> Response {
    match store.get(id) {
        Some(item) => Json(item).into_response(),
        None => not_found(id),
    }
}

async fn delete(State(store): State<Store>, Path(id): Path<Uuid>) -> Response {
    match store.remove(id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => not_found(id),
    }
}

fn not_found(id: Uuid) -> Response {
    error_response(StatusCode::NOT_FOUND, format!("no item with id {id}"))
}
