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
    let config = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("schedule.toml");
    std::fs::write(&config, SCHEDULE).expect("the schedule is written");
    let config = config.to_str().expect("a UTF-8 path");
    let launch = Launch::new(BINARY, ENV_PREFIX).args(&["--config", config]);

    let process = launch.start().await;
    finished_runs(&process, 3).await;
    process.signal("TERM");
    let exited = process.exit().await;
    assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
    let beats = exited
        .logs
        .with_message("heartbeat")
        .into_iter()
        .filter(|event| {
            event["run.key"]
                .as_str()
                .is_some_and(|key| key.starts_with("beat/"))
        })
        .count();

    let process = launch.start().await;
    let before = runs(&process).await.expect("the history answers");
    assert!(
        before.iter().all(|run| run["state"] == "succeeded"),
        "every run before the signal finished: {before:#?}"
    );
    assert_eq!(before.len(), beats, "one run recorded per heartbeat logged");
    let after = finished_runs(&process, before.len() + 2).await;
    let mut periods: Vec<&Value> = after.iter().map(|run| &run["period_start_ms"]).collect();
    periods.dedup();
    assert_eq!(periods.len(), after.len(), "each period runs once");
    process.signal("TERM");
    assert_eq!(
        process.exit().await.code,
        Some(i32::from(Exit::Clean.code()))
    );
}
