//! Every service type, freshly generated, passes the checks its own CI would
//! run: build (all targets), its tests, clippy with warnings denied, and
//! rustfmt.
//!
//! These are the slow tests. All projects share one target directory
//! (`target/generated`), so dependencies compile once for all types; cargo
//! serializes the builds on that directory's lock.

mod common;

use common::{Generated, cargo_step};

/// Generates `service_type` with the library and runs the four checks in
/// order; the first failing one fails the test with its output.
fn passes_cargo_checks(service_type: &'static str) {
    let generated = Generated::new("checks", service_type);
    let project = &generated.project;
    // `--all-targets` everywhere: the same feature set for every build, so
    // `cargo test` and the other types reuse what `cargo build` compiled.
    cargo_step(service_type, project, &["build", "--all-targets"]);
    cargo_step(service_type, project, &["test"]);
    cargo_step(
        service_type,
        project,
        &["clippy", "--all-targets", "--", "-D", "warnings"],
    );
    cargo_step(service_type, project, &["fmt", "--check"]);
}

#[test]
fn api() {
    passes_cargo_checks("api");
}

#[test]
fn worker() {
    passes_cargo_checks("worker");
}

#[test]
fn scheduler() {
    passes_cargo_checks("scheduler");
}
