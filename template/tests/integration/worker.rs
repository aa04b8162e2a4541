//! This worker's job kinds in-process: the `webhook` kind against a local
//! target, and intake refusing a kind this service does not run. The
//! engine under them (intake, claims, retries, the fence, the drain) is the
//! runtime's, tested where it lives.

use serde_json::{Value, json};

use nebula_runtime::testing::{Running, eventually, start};

use crate::support::settings;
use {{crate_name}}::Settings;

/// The example `webhook` job kind.
mod webhook;

/// Test settings with short waits, so that retries are quick.
fn quick() -> Settings {
    let mut settings = settings();
    settings.service.poll_interval_ms = 20;
    settings.service.backoff_initial_ms = 1;
    settings.service.backoff_max_ms = 10;
    settings
}

/// Submits a job; returns its id once accepted.
async fn submit(service: &Running, job: &Value) -> Result<String, u16> {
    let response = service.post_json("/jobs", job).await.unwrap();
    if response.status() != 202 {
        return Err(response.status().as_u16());
    }
    let body: Value = response.json().await.unwrap();
    Ok(body["id"].as_str().unwrap().to_owned())
}

/// Waits until job `id` is in `state`; returns its status.
async fn until_state(service: &Running, id: &str, state: &str) -> Value {
    eventually(&format!("job {id} to be {state}"), || async {
        let response = service.get(&format!("/jobs/{id}")).await.ok()?;
        let status: Value = response.json().await.ok()?;
        (status["state"] == state).then_some(status)
    })
    .await
}

#[tokio::test]
async fn a_kind_this_service_does_not_run_is_refused_naming_the_kinds_it_runs() {
    let service = start(quick()).await;
    assert_eq!(
        service
            .refused("/jobs", &json!({"kind": "report.nightly"}), 400)
            .await,
        "unknown job kind \"report.nightly\"; this service runs: webhook"
    );
    service.stop().await.unwrap();
}
