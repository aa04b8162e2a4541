//! Signals on an idle service: a clean drain, and a second signal that
//! forces the exit; and the metrics listener, which serves through the
//! drain.

use std::time::{Duration, Instant};

use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::{
    metrics_text::{sample, series},
    support::{Counts, Launch, assert_deadline_exit, runtime, serial, summary},
};

use {{crate_name}}::Exit;

#[test]
fn sigterm_on_an_idle_service_drains_and_exits_cleanly() {
    let _serial = serial();
    runtime().block_on(async {
        let process = Launch::default().start().await;
        process.signal("TERM");
        let exited = process.exit().await;
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        summary(
            "idle-sigterm",
            Counts::default(),
            exited.code,
            &format!("exit_ms={}", exited.waited.as_millis()),
        );
    });
}

#[test]
fn the_binary_starts_without_a_config_file() {
    let _serial = serial();
    runtime().block_on(async {
        let empty = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-config-here");
        std::fs::create_dir_all(&empty).expect("empty folder");
        let process = Launch::default().in_dir(&empty).start().await;
        process.signal("TERM");
        let exited = process.exit().await;
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
    });
}

#[test]
fn a_second_signal_forces_the_exit_during_the_drain() {
    let _serial = serial();
    runtime().block_on(async {
        // A long readiness delay keeps the drain going until the second signal.
        let process = Launch::default()
            .setting("SHUTDOWN__READINESS_DELAY_MS", 60_000)
            .setting("SHUTDOWN__GRACE_MS", 120_000)
            .start()
            .await;
        process.signal("TERM");
        process
            .wait_for_event("the drain to start", |event| event["phase"] == "readiness")
            .await;
        let signalled = Instant::now();
        process.signal("INT");
        let exited = process.exit().await;
        let exit_after = exited.at - signalled;
        assert_eq!(exited.code, Some(i32::from(Exit::Forced.code())));
        assert!(
            exit_after < Duration::from_secs(2),
            "forced exit took {exit_after:?}"
        );
        summary(
            "second-signal",
            Counts::default(),
            exited.code,
            &format!("exit_ms={}", exited.waited.as_millis()),
        );
    });
}

#[test]
fn metrics_are_served_through_the_drain_after_the_listener_closes() {
    let _serial = serial();
    runtime().block_on(async {
        let grace = Duration::from_secs(3);
        let process = Launch::default()
            .setting("SHUTDOWN__READINESS_DELAY_MS", 200)
            .setting("SHUTDOWN__GRACE_MS", grace.as_millis())
            .start()
            .await;
        // Half a request, never finished, holds the drain open until the
        // deadline whatever the service type (the limit the README lists).
        let mut stalled = TcpStream::connect(process.address).await.expect("connects");
        stalled
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("writes half a request");

        let signalled = Instant::now();
        process.signal("TERM");
        process
            .wait_for_event("the listener to close", |event| {
                event["phase"] == "listener_closed"
            })
            .await;
        let metrics = process.metrics().await;
        let phase = |name: &str| {
            sample(
                &metrics,
                &series("nebula_shutdown_phase_seconds", &[("phase", name)]),
            )
        };
        let closed = phase("listener_closed").expect("the listener_closed phase is recorded");
        assert!(
            (0.2..grace.as_secs_f64()).contains(&closed),
            "the listener closed {closed} s after the signal, after the 0.2 s readiness delay"
        );
        assert_eq!(phase("drained"), None, "the drain is still going");
        let service_port = TcpStream::connect(process.address).await;
        assert!(
            service_port.is_err(),
            "the service's own listener is closed while metrics are served"
        );

        let exited = process.exit().await;
        assert_deadline_exit(&exited, signalled, grace);
        drop(stalled);
        summary(
            "metrics-through-drain",
            Counts::default(),
            exited.code,
            &format!("listener_closed_s={closed:.3}"),
        );
    });
}
