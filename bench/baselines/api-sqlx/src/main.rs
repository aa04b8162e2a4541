//! Baseline for the api's item routes on a database: `POST /v1/items` is one
//! autocommitted `INSERT`, `GET /v1/items/{id}` one `SELECT` by primary key,
//! on the same table the api uses. No middleware, no validation beyond
//! JSON, no list or delete.
//!
//! `DATABASE_URL` picks the engine. Connections get the session settings the
//! generated service gives them (SQLite: WAL, `synchronous = FULL`, a busy
//! timeout; PostgreSQL: statement and lock timeouts), and the pool the
//! generated default size.
//!
//! It starts as a hand-written service on the generated one's stack would
//! (`../shared/stack.rs`: clap, config, JSON logs), which makes its build the
//! same-stack baseline for the api's.

#[path = "../../shared/stack.rs"]
mod stack;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Executor, Row, any::AnyPoolOptions};
use uuid::Uuid;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS items \
    (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at BIGINT NOT NULL)";

#[derive(Deserialize)]
struct NewItem {
    name: String,
}

#[derive(Serialize)]
struct Item {
    id: String,
    name: String,
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

async fn create(
    State(pool): State<AnyPool>,
    Json(new): Json<NewItem>,
) -> Result<(StatusCode, Json<Item>), StatusCode> {
    let id = Uuid::now_v7().to_string();
    sqlx::query("INSERT INTO items (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(new.name.as_str())
        .bind(now_ms())
        .execute(&pool)
        .await
        .map_err(|error| match error {
            sqlx::Error::Database(error) if error.is_unique_violation() => StatusCode::CONFLICT,
            error => {
                tracing::error!(%error, "insert failed");
                StatusCode::SERVICE_UNAVAILABLE
            }
        })?;
    Ok((StatusCode::CREATED, Json(Item { id, name: new.name })))
}

async fn read(State(pool): State<AnyPool>, Path(id): Path<String>) -> Result<Json<Item>, StatusCode> {
    let unavailable = |error: sqlx::Error| {
        tracing::error!(%error, "select failed");
        StatusCode::SERVICE_UNAVAILABLE
    };
    let row = sqlx::query("SELECT id, name FROM items WHERE id = $1")
        .bind(id)
        .fetch_optional(&pool)
        .await
        .map_err(unavailable)?
        .ok_or(StatusCode::NOT_FOUND)?;
    let item = Item {
        id: row.try_get("id").map_err(unavailable)?,
        name: row.try_get("name").map_err(unavailable)?,
    };
    Ok(Json(item))
}

#[tokio::main]
async fn main() {
    sqlx::any::install_default_drivers();
    let url = stack::start().database_url;
    let sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        .max_connections(8)
        .after_connect(move |connection, _| {
            Box::pin(async move {
                let session = if sqlite {
                    "PRAGMA busy_timeout = 4500; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                } else {
                    "SET statement_timeout = 4500; SET lock_timeout = 4500;"
                };
                connection.execute(session).await?;
                Ok(())
            })
        })
        .connect(&url)
        .await
        .expect("cannot connect to DATABASE_URL");
    if sqlite {
        pool.execute("PRAGMA journal_mode = WAL").await.expect("cannot turn on WAL");
    }
    pool.execute(SCHEMA).await.expect("cannot create the items table");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    eprintln!("ready {}", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/v1/items", post(create))
        .route("/v1/items/{id}", get(read))
        .with_state(pool);
    axum::serve(listener, router).await.unwrap();
}
