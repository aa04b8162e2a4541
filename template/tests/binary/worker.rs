//! SIGTERM in the middle of a submit load: the process exits 0, and every
//! job the service answered 202 for runs to success after a restart on
//! the same database. The jobs are the runtime's `diagnostic.sleep` kind,
//! which `worker.diagnostic_jobs` registers for smoke and load tests.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use nebula_runtime::{
    Exit,
    testing::{
        Answer, answer, eventually,
        process::{Launch, unpooled_client as client},
    },
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use {{crate_name}}::ENV_PREFIX;

const BINARY: &str = env!("CARGO_BIN_EXE_{{project-name}}");

/// What one client saw: the ids of the jobs accepted, and any answer that
/// was neither a 202, a 503 (the queue is full: try again) nor a refused
/// connection.
#[derive(Default)]
struct Seen {
    accepted: Vec<String>,
    unexpected: Vec<String>,
}

/// Submits short jobs one request at a time until the service stops taking
/// connections, or answers otherwise than 202 or 503.
async fn submit_until_refused(url: String, answered: Arc<AtomicUsize>) -> Seen {
    let http = client();
    let job = json!({"kind": "diagnostic.sleep", "args": {"duration_ms": 5}});
    let mut seen = Seen::default();
    loop {
        match http.post(&url).json(&job).send().await {
            Ok(response) if response.status() == 202 => {
                let body: Value = response.json().await.expect("a 202 carries the id");
                seen.accepted
                    .push(body["id"].as_str().expect("id").to_owned());
                answered.fetch_add(1, Ordering::Relaxed);
            }
            other => match answer(other) {
                Answer::Refused => return seen,
                // The queue is full: back off as Retry-After asks, briefly.
                Answer::Status(503) => tokio::time::sleep(Duration::from_millis(10)).await,
                unexpected => {
                    seen.unexpected.push(format!("{unexpected:?}"));
                    return seen;
                }
            },
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_loses_no_accepted_job_and_exits_0() {
    let launch = Launch::new(BINARY, ENV_PREFIX).setting("WORKER__DIAGNOSTIC_JOBS", true);
    let process = launch.start().await;
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..8 {
        clients.spawn(submit_until_refused(
            process.url("/jobs"),
            Arc::clone(&answered),
        ));
    }
    eventually("the load to get 200 jobs accepted", || async {
        (answered.load(Ordering::Relaxed) >= 200).then_some(())
    })
    .await;
    process.signal("TERM");
    let exited = process.exit().await;
    assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));

    let mut accepted = Vec::new();
    while let Some(seen) = clients.join_next().await {
        let seen = seen.expect("client task");
        assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
        accepted.extend(seen.accepted);
    }
    // The same database, a new process: what the first left queued runs.
    let process = launch.start().await;
    let http = client();
    for id in &accepted {
        let url = process.url(&format!("/jobs/{id}"));
        eventually(&format!("job {id} to succeed"), || async {
            let status: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            (status["state"] == "succeeded").then_some(())
        })
        .await;
    }
    process.signal("TERM");
    assert_eq!(
        process.exit().await.code,
        Some(i32::from(Exit::Clean.code()))
    );
}
