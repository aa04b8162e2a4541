//! Signals on an idle service: a clean drain, and a second signal that
//! forces the exit.

use std::time::{Duration, Instant};

use crate::support::{Counts, launch, runtime, serial, summary};

use nebula_runtime::Exit;

#[test]
fn sigterm_on_an_idle_service_drains_and_exits_cleanly() {
    let _serial = serial();
    runtime().block_on(async {
        let process = launch().start().await;
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
        let process = launch().in_dir(&empty).start().await;
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
        let process = launch()
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
