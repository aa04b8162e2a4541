//! Every service type, freshly generated, passes the checks its own CI would
//! run: build (all targets), its tests, clippy with warnings denied, and
//! rustfmt. A project generated without deployment files or CI workflow
//! passes clippy and rustfmt too (its tests are a subset of the default
//! project's, on the same code). Each type generated with
//! `database=postgres` runs its deployment tests, the only code that option
//! changes, under clippy and rustfmt too. Each type with its `otel`
//! feature on passes clippy and runs its trace tests against the OTLP
//! receiver those tests start.
//!
//! These are the slow tests. All projects share one target directory
//! (`target/generated`), so dependencies compile once for all types; cargo
//! serializes the builds on that directory's lock.

mod common;

use std::{
    path::Path,
    sync::{Mutex, MutexGuard, PoisonError},
};

use common::{
    Generated, POSTGRES_CTL_VAR, POSTGRES_URL_VAR, REQUIRE_MOUNT_VAR, TestPostgres, can_mount,
    cargo_step, cargo_step_with_env, mount_required, note, prepare_dependencies,
};

/// The longest project name `hooks/init.rhai` accepts (40 characters), so
/// that every generated line holding the name is checked against rustfmt's
/// width at its worst.
fn longest_name(service_type: &str) -> String {
    let suffix = format!("-{service_type}");
    let mut name = String::from("checks-longest-name-");
    while name.len() + suffix.len() < 40 {
        name.push('x');
    }
    name + suffix.as_str()
}

/// Generates `service_type` with the library and runs the four checks in
/// order; the first failing one fails the test with its output. The
/// generated tests' `summary:` lines (SIGTERM under load, overload, faults)
/// are printed. `cargo test` gets a throwaway PostgreSQL server's admin URL
/// in `NEBULA_TEST_POSTGRES_URL` (see [`TestPostgres::for_tests`]).
fn passes_cargo_checks(service_type: &'static str) {
    let _one_at_a_time = one_at_a_time();
    let generated = Generated::named(&longest_name(service_type), service_type);
    let project = &generated.project;
    // `--all-targets` everywhere: the same feature set for every build, so
    // `cargo test` and the other types reuse what `cargo build` compiled.
    let locked = prepare_dependencies(service_type, project);
    cargo_step(
        service_type,
        project,
        &[&["build", "--all-targets"], locked].concat(),
    );
    // A PostgreSQL server of its own for the generated tests, only while they
    // run; without one their PostgreSQL tests are reported ignored.
    let postgres = TestPostgres::for_tests(service_type);
    let postgres_env: Vec<(&str, &str)> = postgres
        .as_ref()
        .map(|server| {
            vec![
                (POSTGRES_URL_VAR, server.url()),
                (POSTGRES_CTL_VAR, server.control()),
            ]
        })
        .unwrap_or_default();
    // The generated PostgreSQL tests are `#[ignore]`d without a server:
    // with one, include them (the tmpfs tests, also ignored, run below).
    let test_args: &[&str] = if postgres.is_some() {
        &["--", "--include-ignored", "--skip", "faults::tmpfs_", "--show-output"]
    } else {
        &["--", "--show-output"]
    };
    let tests = cargo_step_with_env(
        service_type,
        project,
        &[&["test"], locked, test_args].concat(),
        &postgres_env,
    );
    drop(postgres);
    for line in String::from_utf8_lossy(&tests.stdout).lines() {
        if line.starts_with("summary:") {
            note(&format!("[{service_type}] {line}"));
        }
    }
    if service_type != "scheduler" {
        runs_its_tmpfs_tests(service_type, project, locked);
    }
    // The runtime's tests run at the root of this repository on both
    // engines (tests/runtime.rs), whose lock may hold newer crates than the
    // services ship: run them once more on this type's lock, with the engine
    // it builds (their PostgreSQL tests are left to the root run).
    let engine: &[&str] = match service_type {
        "worker" => &["--features", "jobs,testing"],
        "scheduler" => &["--features", "scheduling,testing"],
        _ => &["--features", "testing"],
    };
    cargo_step(
        service_type,
        project,
        &[&["test", "-p", "nebula-runtime"], engine, locked].concat(),
    );
    lints_and_format(service_type, project, locked);
}

/// The generated database-fault tests that put SQLite on a tmpfs they
/// mount (a volume that fills up, one that is read-only from the start)
/// are `#[ignore]`d, since mounting needs root: run them here where this
/// process can mount, and check that both ran and passed. Elsewhere they
/// are skipped with a note, or fail with `NEBULA_TEMPLATE_REQUIRE_MOUNT=1`.
fn runs_its_tmpfs_tests(service_type: &str, project: &Path, locked: &[&str]) {
    if !can_mount() {
        assert!(
            !mount_required(),
            "[{service_type}] {REQUIRE_MOUNT_VAR}=1 requires the generated tmpfs tests to run, and \
             this process cannot mount a tmpfs (it needs root)"
        );
        note(&format!(
            "NOTE: [{service_type}] the generated tests that mount a tmpfs are skipped: this \
             process cannot mount one (it needs root; {REQUIRE_MOUNT_VAR}=1 turns this skip into \
             a failure)"
        ));
        return;
    }
    let tests = cargo_step(
        service_type,
        project,
        &[
            &["test", "--test", "binary"],
            locked,
            &["--", "--ignored", "faults::tmpfs_", "--show-output"],
        ]
        .concat(),
    );
    let output = String::from_utf8_lossy(&tests.stdout);
    assert!(
        output.contains("test result: ok. 2 passed"),
        "[{service_type}] expected the 2 tmpfs tests to run and pass:\n{output}"
    );
    for line in output.lines().filter(|line| line.starts_with("summary:")) {
        note(&format!("[{service_type}] {line}"));
    }
}

/// Clippy on every target with warnings denied, then rustfmt's check.
fn lints_and_format(service_type: &str, project: &Path, locked: &[&str]) {
    cargo_step(
        service_type,
        project,
        &[
            &["clippy", "--all-targets"],
            locked,
            &["--", "-D", "warnings"],
        ]
        .concat(),
    );
    cargo_step(service_type, project, &["fmt", "--check"]);
}

/// One project at a time: the generated binary tests measure latency and
/// memory under load, which another project's build or load would disturb.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `deployment=none`, `ci=none`: every target of what is left compiles
/// under clippy with warnings denied, and is formatted.
fn builds_without_deployment_or_ci(service_type: &'static str) {
    let _one_at_a_time = one_at_a_time();
    let generated = Generated::with_options(
        &longest_name(service_type),
        service_type,
        &["deployment=none", "ci=none"],
    );
    let project = &generated.project;
    let locked = prepare_dependencies(service_type, project);
    lints_and_format(service_type, project, locked);
}

/// `database=postgres` changes only the deployment files and
/// `tests/deployment.rs` (`generated_files` checks that): the rest is the
/// default project's code, which [`api`], [`worker`] and [`scheduler`] build
/// and test in full. So only the library and that test crate are built
/// here, on the dependencies the other projects compiled: its tests run,
/// and pass clippy and rustfmt.
fn on_postgres_passes_its_deployment_tests(service_type: &'static str) {
    let _one_at_a_time = one_at_a_time();
    let generated = Generated::with_options(
        &longest_name(&format!("postgres-{service_type}")),
        service_type,
        &["database=postgres"],
    );
    let project = &generated.project;
    let locked = prepare_dependencies(service_type, project);
    cargo_step(
        service_type,
        project,
        &[&["test", "--test", "deployment"], locked].concat(),
    );
    cargo_step(
        service_type,
        project,
        &[
            &["clippy", "--test", "deployment"],
            locked,
            &["--", "-D", "warnings"],
        ]
        .concat(),
    );
    cargo_step(service_type, project, &["fmt", "--check"]);
}

/// The `otel` feature: every target compiles under clippy with warnings
/// denied, and the tests that need the feature (the binary tests in
/// `traces` and the type's own `traced_*` module) pass. The rest of the
/// suite runs without it in [`passes_cargo_checks`]: the feature only adds
/// the export and the trace context, which those tests cover.
fn with_otel_passes_its_trace_tests(service_type: &'static str) {
    let _one_at_a_time = one_at_a_time();
    let generated = Generated::named(&longest_name(&format!("otel-{service_type}")), service_type);
    let project = &generated.project;
    let locked = prepare_dependencies(service_type, project);
    let feature: &[&str] = &["--features", "otel"];
    cargo_step(
        service_type,
        project,
        &[
            &["clippy", "--all-targets"],
            feature,
            locked,
            &["--", "-D", "warnings"],
        ]
        .concat(),
    );
    let tests = cargo_step(
        service_type,
        project,
        &[
            &["test", "--test", "binary"],
            feature,
            locked,
            &["--", "traces::", "traced_", "--show-output"],
        ]
        .concat(),
    );
    let output = String::from_utf8_lossy(&tests.stdout);
    let expected = if service_type == "api" { 7 } else { 8 };
    assert!(
        output.contains(&format!("test result: ok. {expected} passed")),
        "[{service_type}] expected {expected} trace tests to run and pass:\n{output}"
    );
    for line in output.lines().filter(|line| line.starts_with("summary:")) {
        note(&format!("[{service_type}] otel {line}"));
    }
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

#[test]
fn api_on_postgres() {
    on_postgres_passes_its_deployment_tests("api");
}

#[test]
fn worker_on_postgres() {
    on_postgres_passes_its_deployment_tests("worker");
}

#[test]
fn scheduler_on_postgres() {
    on_postgres_passes_its_deployment_tests("scheduler");
}

#[test]
fn api_without_deployment_or_ci() {
    builds_without_deployment_or_ci("api");
}

#[test]
fn worker_without_deployment_or_ci() {
    builds_without_deployment_or_ci("worker");
}

#[test]
fn scheduler_without_deployment_or_ci() {
    builds_without_deployment_or_ci("scheduler");
}

#[test]
fn api_with_otel() {
    with_otel_passes_its_trace_tests("api");
}

#[test]
fn worker_with_otel() {
    with_otel_passes_its_trace_tests("worker");
}

#[test]
fn scheduler_with_otel() {
    with_otel_passes_its_trace_tests("scheduler");
}
