//! The `scheduler` binary and shutdown: a run in progress at SIGTERM
//! completes and no new run starts; a run still going at the deadline is
//! cancelled and logged. Replicas sharing a database are in [`replicas`].

mod replicas;
mod traced_calls;

use std::time::{Duration, Instant};

use axum::{Router, routing::get};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};

use crate::{
    config_errors::{case, check, config_file},
    support::{Counts, assert_deadline_exit, deadline_summary, launch, runtime, serial, summary},
};

use nebula_runtime::Exit;

/// An HTTP target whose answers wait until released. Each call is reported
/// on `calls` when it arrives.
struct Target {
    url: String,
    calls: mpsc::Receiver<()>,
    release: watch::Sender<bool>,
}

async fn target() -> Target {
    let (call_sender, calls) = mpsc::channel(16);
    let (release, released) = watch::channel(false);
    let app = Router::new().route(
        "/hook",
        get(move || {
            let call_sender = call_sender.clone();
            let mut released = released.clone();
            async move {
                let _ = call_sender.try_send(());
                let _ = released.wait_for(|released| *released).await;
                "done"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("target binds");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Target {
        url,
        calls,
        release,
    }
}

/// Starts the scheduler with one job calling `url` every 100 ms.
async fn scheduler_calling(url: &str, grace_ms: u64) -> crate::support::Process {
    let config = config_file(
        &format!("scheduler-{grace_ms}"),
        &format!(
            "[[scheduler.jobs]]\nname = \"hook\"\nevery_ms = 100\ntimeout_ms = 60000\nurl = \"{url}\"\n"
        ),
    );
    launch()
        .args(&["--config", &config])
        .setting("SHUTDOWN__GRACE_MS", grace_ms)
        .start()
        .await
}

#[test]
fn sigterm_during_a_run_lets_it_finish_and_starts_no_new_run() {
    let _serial = serial();
    runtime().block_on(async {
        let mut target = target().await;
        let process = scheduler_calling(&target.url, 25_000).await;

        tokio::time::timeout(crate::support::WAIT_LIMIT, target.calls.recv())
            .await
            .expect("the first run calls the target");
        process.signal("TERM");
        process
            .wait_for_event("the drain to start", |event| event["phase"] == "readiness")
            .await;
        target.release.send_replace(true);
        let exited = process.exit().await;

        let runs = exited.logs.with_message("run finished");
        let later_calls = std::iter::from_fn(|| target.calls.try_recv().ok()).count();
        summary(
            "sigterm-during-run",
            Counts {
                offered: 1 + later_calls,
                accepted: 1 + later_calls,
                completed: runs.len(),
                ..Counts::default()
            },
            exited.code,
            "",
        );
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        assert_eq!(later_calls, 0, "no run starts after the signal");
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0]["outcome"], "succeeded");
    });
}

#[test]
fn a_run_still_going_at_the_deadline_is_cancelled_and_logged() {
    let _serial = serial();
    runtime().block_on(async {
        let mut target = target().await;
        let grace = Duration::from_millis(500);
        let process = scheduler_calling(&target.url, 500).await;

        tokio::time::timeout(crate::support::WAIT_LIMIT, target.calls.recv())
            .await
            .expect("the first run calls the target");
        let signalled = Instant::now();
        process.signal("TERM");
        let exited = process.exit().await;
        deadline_summary(&exited, signalled);
        assert_deadline_exit(&exited, signalled, grace);

        let runs = exited.logs.with_message("run finished");
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0]["outcome"], "cancelled");
    });
}

/// A job naming an action the service does not register stops the start
/// as bad configuration: exit 78, the job's key and the actions there are.
#[test]
fn a_job_naming_an_unregistered_action_is_a_configuration_error() {
    let typo = config_file(
        "unregistered-action",
        "[[scheduler.jobs]]\nname = \"beat\"\nevery_ms = 1000\ntimeout_ms = 500\naction = \"hearbeat\"\n",
    );
    check(vec![case(
        "an action that is not registered",
        launch().args(&["--config", &typo]),
        &["scheduler.jobs[0].action", "\"hearbeat\"", "heartbeat"],
    )]);
}
