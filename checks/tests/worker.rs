//! The checks on a `worker` binary (see the crate's documentation): run by
//! the harness with `NEBULA_CHECK_BINARY` and `NEBULA_CHECK_PROJECT` naming
//! a generated `worker` project. Unix only, since they send signals.
//!
//! Each check prints a `summary:` line; run with `--show-output` to see them.
#![cfg(unix)]

#[path = "common/config_errors.rs"]
mod config_errors;
#[path = "common/container.rs"]
mod container;
#[path = "common/edge.rs"]
mod edge;
#[path = "common/faults.rs"]
mod faults;
#[path = "common/shutdown.rs"]
mod shutdown;
#[path = "common/traces.rs"]
mod traces;

/// The `worker`: its queue under load, crashes, replicas and outages.
#[path = "worker/mod.rs"]
mod worker;

use nebula_checks::{load, outage, proxy, support};
use worker::writes;

/// The binary under check is of this target's type: a wrong
/// `NEBULA_CHECK_PROJECT` fails here by name rather than somewhere below.
#[test]
fn the_project_under_check_is_a_worker() {
    assert_eq!(nebula_checks::project().kind, "worker");
}
