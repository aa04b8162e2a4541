//! Baseline for the `api` benchmarks: one JSON route, nothing else.

use axum::{Json, Router, routing::get};
use serde::Serialize;

#[derive(Serialize)]
struct Item {
    id: &'static str,
    name: &'static str,
}

async fn item() -> Json<Item> {
    Json(Item {
        id: "6f1c2b1e-9d4e-4c1a-8f5e-2a7b3c4d5e6f",
        name: "benchmark",
    })
}

#[tokio::main]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    eprintln!("ready {}", listener.local_addr().unwrap());
    let app = Router::new().route("/v1/items/{id}", get(item));
    axum::serve(listener, app).await.unwrap();
}
