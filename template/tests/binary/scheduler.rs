//! SIGTERM while the schedule runs: the process exits 0 with no run left
//! unfinished, and after a restart on the same database the history still
//! holds every run, each period once, and the schedule goes on.

use nebula_runtime::{
    Exit,
    testing::{
        eventually,
        process::{Launch, Process, unpooled_client as client},
    },
};
use serde_json::Value;

use {{crate_name}}::ENV_PREFIX;

const BINARY: &str = env!("CARGO_BIN_EXE_{{project-name}}");

/// A schedule of one job: the `heartbeat` action every 100 ms.
const SCHEDULE: &str = r#"
[[scheduler.jobs]]
name = "beat"
every_ms = 100
timeout_ms = 1000
action = "heartbeat"
"#;

/// The recorded runs of `beat`, newest first.
async fn runs(process: &Process) -> Option<Vec<Value>> {
    let response = client()
        .get(process.url("/runs?job=beat&limit=100"))
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    body["runs"].as_array().cloned()
}

/// Waits until `beat` has at least `count` finished runs; returns them all.
async fn finished_runs(process: &Process, count: usize) -> Vec<Value> {
    eventually(&format!("{count} finished runs"), || async {
        let runs = runs(process).await?;
        let finished = runs.iter().filter(|run| run["state"] != "running").count();
        (finished >= count).then_some(runs)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_no_run_unfinished_and_the_history_survives_a_restart() {
    let config = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(concat!(env!("CARGO_PKG_NAME"), "-schedule.toml"));
    std::fs::write(&config, SCHEDULE).expect("the schedule is written");
    let config = config.to_str().expect("a UTF-8 path");
    let launch = Launch::new(BINARY, ENV_PREFIX).args(&["--config", config]);

    let process = launch.start().await;
    finished_runs(&process, 3).await;
    process.signal("TERM");
    let exited = process.exit().await;
    assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
    // The periods the first process ran: its heartbeats' run keys.
    let mut beaten: Vec<i64> = exited
        .logs
        .with_message("heartbeat")
        .iter()
        .filter_map(|event| {
            event["run.key"]
                .as_str()?
                .strip_prefix("beat/")?
                .parse()
                .ok()
        })
        .collect();
    beaten.sort_unstable();
    let last = *beaten.last().expect("the first process ran the action");

    // The same database, a new process, two runs of its own.
    let process = launch.start().await;
    let runs = finished_runs(&process, beaten.len() + 2).await;
    let period = |run: &Value| run["period_start_ms"].as_i64().expect("a period");
    let mut before: Vec<i64> = runs
        .iter()
        .filter(|run| period(run) <= last)
        .inspect(|run| assert_eq!(run["state"], "succeeded", "{run}"))
        .map(period)
        .collect();
    before.sort_unstable();
    assert_eq!(
        before, beaten,
        "each period the first process ran is recorded, once"
    );
    let mut periods: Vec<i64> = runs.iter().map(period).collect();
    periods.sort_unstable();
    periods.dedup();
    assert_eq!(periods.len(), runs.len(), "each period runs once");
    process.signal("TERM");
    assert_eq!(
        process.exit().await.code,
        Some(i32::from(Exit::Clean.code()))
    );
}
