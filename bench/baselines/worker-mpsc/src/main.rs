//! Baseline for the `worker` benchmarks: `POST /jobs` puts the job in a
//! bounded queue (503 when full), 4 tasks take jobs and log each one.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, mpsc};

#[derive(Deserialize)]
struct JobRequest {
    #[serde(default)]
    duration_ms: u64,
}

#[derive(Serialize)]
struct Accepted {
    id: u64,
}

struct Job {
    id: u64,
    duration_ms: u64,
}

#[derive(Clone)]
struct Intake {
    sender: mpsc::Sender<Job>,
    next_id: Arc<AtomicU64>,
}

async fn submit(State(intake): State<Intake>, Json(request): Json<JobRequest>) -> Result<(StatusCode, Json<Accepted>), StatusCode> {
    let id = intake.next_id.fetch_add(1, Ordering::Relaxed);
    let job = Job { id, duration_ms: request.duration_ms };
    intake.sender.try_send(job).map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { id })))
}

#[tokio::main]
async fn main() {
    let (sender, receiver) = mpsc::channel::<Job>(1024);
    let receiver = Arc::new(Mutex::new(receiver));
    for _ in 0..4 {
        let receiver = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Some(job) = receiver.lock().await.recv().await else { break };
                if job.duration_ms > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(job.duration_ms)).await;
                }
                let _ = writeln!(std::io::stderr(), "job finished id={} outcome=succeeded", job.id);
            }
        });
    }
    let intake = Intake { sender, next_id: Arc::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    eprintln!("ready {}", listener.local_addr().unwrap());
    let app = Router::new().route("/jobs", post(submit)).with_state(intake);
    axum::serve(listener, app).await.unwrap();
}
