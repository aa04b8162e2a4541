//! What the checks share: the binary's launch (the runtime's
//! `testing::process` starts it, reads its JSON logs, signals it and times
//! its exit), one check at a time, and the `summary:` lines.

use std::{
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use nebula_runtime::Exit;
pub use nebula_runtime::testing::{
    WAIT_LIMIT,
    process::{Exited, Launch, Process},
};
use serde_json::Value;

use crate::project;

/// Runs one check at a time: they measure latency and memory, which other
/// checks' load would disturb on a small machine.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A multi-threaded runtime for the load generators.
///
/// # Panics
///
/// When the runtime does not start.
#[must_use]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime starts")
}

/// The binary with JSON logs, free loopback ports and a SQLite database of
/// its own.
#[must_use]
pub fn launch() -> Launch {
    let project = project();
    Launch::new(&project.binary, &project.env_prefix)
}

/// The binary with no arguments and no settings of its own.
#[must_use]
pub fn bare() -> Launch {
    let project = project();
    Launch::bare(&project.binary, &project.env_prefix)
}

/// Checks an exit at the drain deadline: the deadline code, no sooner than
/// the grace after the signal and no later than 2 s past it (the cancel
/// margin plus room for a loaded machine), and no ERROR logged: the
/// deadline is a normal way to stop, and what it cuts is logged at WARN.
///
/// # Panics
///
/// When the exit is not that.
pub fn assert_deadline_exit(exited: &Exited, signalled: Instant, grace: Duration) {
    let sigterm_to_exit = exited.at - signalled;
    assert_eq!(exited.code, Some(i32::from(Exit::DeadlineExceeded.code())));
    assert!(
        sigterm_to_exit >= grace && sigterm_to_exit < grace + Duration::from_secs(2),
        "exit came {sigterm_to_exit:?} after SIGTERM; the grace is {grace:?}"
    );
    let errors: Vec<Value> = exited
        .logs
        .all()
        .into_iter()
        .filter(|event| event["level"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "a deadline exit logged: {errors:#?}");
}

/// The summary of a scenario with one piece of work cut at the deadline.
pub fn deadline_summary(exited: &Exited, signalled: Instant) {
    let sigterm_to_exit = exited.at - signalled;
    summary(
        "drain-deadline",
        Counts {
            offered: 1,
            accepted: 1,
            ..Counts::default()
        },
        exited.code,
        &format!("sigterm_to_exit_ms={}", sigterm_to_exit.as_millis()),
    );
}

/// What happened to the work offered in a scenario. Printed as one
/// `summary:` line, which the template's harness collects.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub offered: usize,
    pub accepted: usize,
    pub completed: usize,
    pub refused: usize,
    pub lost: usize,
}

/// Prints the `summary:` line of `scenario`.
#[expect(
    clippy::print_stdout,
    reason = "the summary line is what these checks report"
)]
pub fn summary(scenario: &str, counts: Counts, exit: Option<i32>, extra: &str) {
    let Counts {
        offered,
        accepted,
        completed,
        refused,
        lost,
    } = counts;
    let exit = exit.map_or_else(|| "signal".to_owned(), |code| code.to_string());
    println!(
        "summary: type={} scenario={scenario} offered={offered} accepted={accepted} completed={completed} refused={refused} lost={lost} exit={exit} {extra}",
        project().kind
    );
}
