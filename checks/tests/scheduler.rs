//! The checks on a `scheduler` binary (see the crate's documentation): run
//! by the harness with `NEBULA_CHECK_BINARY` and `NEBULA_CHECK_PROJECT`
//! naming a generated `scheduler` project. Unix only, since they send
//! signals.
//!
//! Each check prints a `summary:` line; run with `--show-output` to see them.
#![cfg(unix)]

#[path = "common/config_errors.rs"]
mod config_errors;
#[path = "common/container.rs"]
mod container;
#[path = "common/edge.rs"]
mod edge;
#[path = "common/shutdown.rs"]
mod shutdown;
#[path = "common/traces.rs"]
mod traces;

/// The `scheduler`: its periods across replicas, restarts and calls.
#[path = "scheduler/mod.rs"]
mod scheduler;

use nebula_checks::support;

/// The binary under check is of this target's type: a wrong
/// `NEBULA_CHECK_PROJECT` fails here by name rather than somewhere below.
#[test]
fn the_project_under_check_is_a_scheduler() {
    assert_eq!(nebula_checks::project().kind, "scheduler");
}
