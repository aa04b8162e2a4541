//! Baseline for the worker's durable intake: each `POST /jobs` is one
//! autocommitted `INSERT` into the same `jobs` table the worker uses, and
//! the 202 is sent after the commit returns. No group commit, no queue
//! bound, no idempotency keys, no job execution.
//!
//! `DATABASE_URL` picks the engine. SQLite connections get the worker's
//! durability settings (WAL, `synchronous = FULL`); PostgreSQL runs with
//! whatever the server is configured for.
//!
//! It starts as a hand-written service on the generated one's stack would
//! (`../shared/stack.rs`), which makes its build the same-stack baseline for
//! the worker's.

#[path = "../../shared/stack.rs"]
mod stack;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use sqlx::{AnyPool, Executor, any::AnyPoolOptions};

/// The worker's table, read from the template so both sides share it.
const SCHEMA: &str = include_str!("../../../../template/runtime/src/jobs/migrations/0001_jobs.sql");

#[derive(Clone)]
struct App {
    pool: AnyPool,
    prefix: u64,
    next: Arc<AtomicU64>,
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

async fn submit(
    State(app): State<App>,
    Json(request): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<serde_json::Value>), StatusCode> {
    // 36 characters, the length of the worker's UUID ids.
    let id = format!("{:015x}-{:020x}", app.prefix, app.next.fetch_add(1, Ordering::Relaxed));
    let now = now_ms();
    sqlx::query(
        "INSERT INTO jobs (id, payload, state, run_at, created_at, updated_at)
         VALUES ($1, $2, 'queued', $3, $3, $3)",
    )
    .bind(id.as_str())
    .bind(request.to_string())
    .bind(now)
    .execute(&app.pool)
    .await
    .map_err(|error| {
        tracing::error!(%error, "insert failed");
        StatusCode::SERVICE_UNAVAILABLE
    })?;
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))))
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
                if sqlite {
                    connection
                        .execute("PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;")
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .expect("cannot connect to DATABASE_URL");
    if sqlite {
        pool.execute("PRAGMA journal_mode = WAL").await.expect("cannot turn on WAL");
    }
    pool.execute(SCHEMA).await.expect("cannot create the jobs table");
    let prefix = u64::try_from(now_ms()).unwrap_or_default();
    let app = App { pool, prefix, next: Arc::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    eprintln!("ready {}", listener.local_addr().unwrap());
    let router = Router::new().route("/jobs", post(submit)).with_state(app);
    axum::serve(listener, router).await.unwrap();
}
