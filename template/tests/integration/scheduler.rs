//! This scheduler's own actions in-process: the example `heartbeat` runs on
//! its schedule, and the shipped schedule names only actions registered.
//! The engine under them (claims, the run table, the history, the drain)
//! is the runtime's, tested where it lives.

use nebula_runtime::{
    Stopped,
    scheduling::{Delivery, JobSettings},
    testing::{Logs, eventually, start},
};

use crate::support::settings;
use {{crate_name}}::scheduler::Heartbeat;

#[tokio::test]
async fn the_heartbeat_action_runs_on_its_schedule() {
    let (logs, _guard) = Logs::capture();
    let mut settings = settings();
    settings.service.jobs = vec![JobSettings {
        name: "beat".to_owned(),
        every_ms: 50,
        timeout_ms: 1_000,
        url: None,
        action: Some(Heartbeat::NAME.to_owned()),
        delivery: Delivery::AtMostOnce,
    }];
    let service = start(settings).await;
    let beats = eventually("two heartbeats", || async {
        let beats = logs.events("heartbeat");
        (beats.len() >= 2).then_some(beats)
    })
    .await;
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
    for beat in beats {
        let key = beat["run.key"].as_str().unwrap_or_default();
        assert!(key.starts_with("beat/"), "{beat}");
    }
}

/// A job naming an action that is not registered stops the start: the
/// default schedule must start.
#[tokio::test]
async fn the_default_schedule_starts() {
    let service = start(settings()).await;
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}
