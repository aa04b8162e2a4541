//! The `scheduler` type: configured jobs call their URL on schedule, and
//! failures are logged without stopping the schedule.

use axum::{Router, http::StatusCode, routing::get};
use tokio::{net::TcpListener, sync::mpsc};

use crate::{
    metrics_text::{count, series},
    support::{Logs, eventually, settings, start},
};

use {{crate_name}}::{Stopped, prometheus, scheduler::JobSettings};

/// A local HTTP target that answers `status` and reports each call.
async fn target(status: StatusCode) -> (String, mpsc::Receiver<()>) {
    let (calls, received) = mpsc::channel(64);
    let app = Router::new().route(
        "/hook",
        get(move || {
            let calls = calls.clone();
            async move {
                let _ = calls.try_send(());
                status
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn job(url: String) -> JobSettings {
    JobSettings {
        name: "hook".to_owned(),
        every_ms: 50,
        timeout_ms: 5_000,
        url,
    }
}

#[tokio::test]
async fn jobs_call_their_url_on_schedule() {
    let (logs, _guard) = Logs::capture();
    let (url, mut calls) = target(StatusCode::OK).await;
    let mut settings = settings();
    settings.scheduler.jobs = vec![job(url)];
    let service = start(settings).await;

    for call in 1..=3 {
        tokio::time::timeout(crate::support::WAIT_LIMIT, calls.recv())
            .await
            .unwrap_or_else(|_| panic!("call {call} should arrive"));
    }
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);

    let runs = logs.events("run finished");
    assert!(runs.len() >= 3, "{runs:?}");
    assert!(
        runs.iter()
            .all(|run| run["job.name"] == "hook" && run["outcome"] == "succeeded")
    );
}

#[tokio::test]
async fn failed_runs_are_logged_and_the_schedule_goes_on() {
    let (logs, _guard) = Logs::capture();
    let (url, _calls) = target(StatusCode::INTERNAL_SERVER_ERROR).await;
    let mut settings = settings();
    settings.scheduler.jobs = vec![job(url)];
    let service = start(settings).await;

    eventually("two failed runs", || async {
        let failed = logs
            .events("run finished")
            .into_iter()
            .filter(|run| run["outcome"] == "failed")
            .count();
        (failed >= 2).then_some(())
    })
    .await;
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn every_run_is_counted_and_timed_under_its_job_name() {
    let (logs, _guard) = Logs::capture();
    let (url, mut calls) = target(StatusCode::OK).await;
    let mut settings = settings();
    // A name no other test uses: the recorder is shared by the whole process.
    let name = "metrics-probe";
    settings.scheduler.jobs = vec![JobSettings {
        name: name.to_owned(),
        ..job(url)
    }];
    let service = start(settings).await;
    for call in 1..=2 {
        tokio::time::timeout(crate::support::WAIT_LIMIT, calls.recv())
            .await
            .unwrap_or_else(|_| panic!("call {call} should arrive"));
    }
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);

    let runs = logs
        .events("run finished")
        .iter()
        .filter(|run| run["job.name"] == name && run["outcome"] == "succeeded")
        .count();
    assert!(runs >= 2, "{runs} runs");
    let text = prometheus::recorder().unwrap().render();
    let labels = [("job", name), ("outcome", "succeeded")];
    let counted = series("nebula_scheduler_runs_total", &labels);
    assert_eq!(
        count(&text, &counted),
        u64::try_from(runs).unwrap(),
        "{counted}"
    );
    let timed = series("nebula_scheduler_run_duration_seconds_count", &labels);
    assert_eq!(
        count(&text, &timed),
        u64::try_from(runs).unwrap(),
        "{timed}"
    );
}
