//! Every service type, freshly generated, passes the checks its own CI would
//! run: build (all targets), its tests, clippy with warnings denied, and
//! rustfmt. Then the template's own checks on its binary (`checks/`: signals,
//! load, crashes, hostile clients, faults, outages, replicas, the binary run
//! as the image runs it, bad configuration, the deployment files) run
//! against it. A project generated without deployment files or CI workflow
//! passes clippy and rustfmt too (its tests are a subset of the default
//! project's, on the same code). Each type generated with
//! `database=postgres` has its deployment files checked against its binary,
//! the only thing that option changes. Each type with its `otel` feature on
//! passes clippy and has its binary's traces checked against the OTLP
//! receiver those checks start.
//!
//! These are the slow tests. All projects share one target directory
//! (`target/generated`), so dependencies compile once for all types; cargo
//! serializes the builds on that directory's lock.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard, PoisonError},
};

use common::{
    Generated, POSTGRES_CTL_VAR, POSTGRES_URL_VAR, REQUIRE_MOUNT_VAR, TestPostgres, can_mount,
    cargo_step, cargo_step_with_env, mount_required, note, prepare_dependencies, repo_root,
    shared_target_dir,
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

/// A throwaway PostgreSQL server's variables for the generated tests and
/// the checks: its admin URL, and the program that stops and starts it.
fn postgres_env(server: Option<&TestPostgres>) -> Vec<(&str, &str)> {
    server
        .map(|server| {
            vec![
                (POSTGRES_URL_VAR, server.url()),
                (POSTGRES_CTL_VAR, server.control()),
            ]
        })
        .unwrap_or_default()
}

/// Generates `service_type` with the library and runs the four checks in
/// order; the first failing one fails the test with its output. Then the
/// template's checks on its binary ([`Checks`]). `cargo test` and the
/// checks get a throwaway PostgreSQL server's admin URL in
/// `NEBULA_TEST_POSTGRES_URL` (see [`TestPostgres::for_tests`]).
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
    // A PostgreSQL server of its own for the generated tests and the
    // checks, only while they run; without one their PostgreSQL tests are
    // reported ignored.
    let postgres = TestPostgres::for_tests(service_type);
    let include_ignored: &[&str] = if postgres.is_some() {
        &["--", "--include-ignored"]
    } else {
        &[]
    };
    cargo_step_with_env(
        service_type,
        project,
        &[&["test"], locked, include_ignored].concat(),
        &postgres_env(postgres.as_ref()),
    );
    let checks = Checks::of(service_type, project);
    // The trace checks need the `otel` build (`with_otel_passes_its_trace_checks`);
    // the tmpfs ones root, below.
    let mut filters = vec![
        "--skip", "traces::", "--skip", "traced_", "--skip", "tmpfs_",
    ];
    if postgres.is_some() {
        filters.push("--include-ignored");
    }
    checks.run(service_type, &filters, postgres.as_ref());
    drop(postgres);
    checks.run_deployment("on_postgres_");
    if service_type != "scheduler" {
        runs_its_tmpfs_checks(&checks);
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

/// The template's checks (`checks/`, a member of this repository's
/// workspace) on the binary a generated project built: one test target per
/// service type, and `deployment` for the deployment files.
struct Checks {
    service_type: &'static str,
    binary: PathBuf,
    project: PathBuf,
}

impl Checks {
    /// The checks on `project`'s debug binary, which its `cargo build` put
    /// in the shared target directory.
    fn of(service_type: &'static str, project: &Path) -> Self {
        let name = project
            .file_name()
            .and_then(|name| name.to_str())
            .expect("the project folder is its name");
        let binary = shared_target_dir().join("debug").join(name);
        assert!(
            binary.is_file(),
            "[{service_type}] no binary at {}",
            binary.display()
        );
        Self {
            service_type,
            binary,
            project: project.to_owned(),
        }
    }

    /// Runs the test target `target` (a service type, or `deployment`) with
    /// libtest's `args`; its `summary:` lines are printed. Returns its
    /// stdout.
    fn run(&self, target: &str, args: &[&str], postgres: Option<&TestPostgres>) -> String {
        let binary = self.binary.to_str().expect("a UTF-8 path");
        let project = self.project.to_str().expect("a UTF-8 path");
        let mut env = vec![
            ("NEBULA_CHECK_BINARY", binary),
            ("NEBULA_CHECK_PROJECT", project),
        ];
        env.extend(postgres_env(postgres));
        let output = cargo_step_with_env(
            self.service_type,
            &repo_root().join("checks"),
            &[
                &["test", "--locked", "--test", target, "--"],
                args,
                &["--show-output"],
            ]
            .concat(),
            &env,
        );
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        for line in stdout.lines().filter(|line| line.starts_with("summary:")) {
            note(&format!("[{}] {line}", self.service_type));
        }
        stdout
    }

    /// The deployment files held to the binary, but for the check of the
    /// other `database` option (`skip`: `on_postgres_` or `on_sqlite_`):
    /// every other check runs, and only that one is left out.
    fn run_deployment(&self, skip: &str) {
        let output = self.run("deployment", &["--skip", skip], None);
        assert!(
            output.contains(
                "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out"
            ),
            "[{}] expected 9 deployment checks to pass and 1 to be left out:\n{output}",
            self.service_type
        );
    }
}

/// The checks that put SQLite on a tmpfs they mount (a volume that fills
/// up, one that is read-only from the start) are `#[ignore]`d, since
/// mounting needs root: run them here where this process can mount, and
/// check that both ran and passed. Elsewhere they are skipped with a note,
/// or fail with `NEBULA_TEMPLATE_REQUIRE_MOUNT=1`.
fn runs_its_tmpfs_checks(checks: &Checks) {
    let service_type = checks.service_type;
    if !can_mount() {
        assert!(
            !mount_required(),
            "[{service_type}] {REQUIRE_MOUNT_VAR}=1 requires the tmpfs checks to run, and \
             this process cannot mount a tmpfs (it needs root)"
        );
        note(&format!(
            "NOTE: [{service_type}] the checks that mount a tmpfs are skipped: this process \
             cannot mount one (it needs root; {REQUIRE_MOUNT_VAR}=1 turns this skip into a \
             failure)"
        ));
        return;
    }
    let output = checks.run(service_type, &["--ignored", "tmpfs_"], None);
    assert!(
        output.contains("test result: ok. 2 passed"),
        "[{service_type}] expected the 2 tmpfs checks to run and pass:\n{output}"
    );
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

/// `database=postgres` changes only the deployment files (`generated_files`
/// checks that): the rest is the default project's code, which [`api`],
/// [`worker`] and [`scheduler`] build, test and check in full. So only its
/// binary is built here, on the dependencies the other projects compiled,
/// and its deployment files are held to it.
fn on_postgres_passes_its_deployment_checks(service_type: &'static str) {
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
        &[&["build", "--all-targets"], locked].concat(),
    );
    Checks::of(service_type, project).run_deployment("on_sqlite_");
}

/// The `otel` feature: every target compiles under clippy with warnings
/// denied, and the checks that need the feature (`traces` and the type's
/// own `traced_*` module) pass on its binary. The rest of the checks run
/// without it in [`passes_cargo_checks`]: the feature only adds the export
/// and the trace context, which these cover.
fn with_otel_passes_its_trace_checks(service_type: &'static str) {
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
    cargo_step(
        service_type,
        project,
        &[&["build", "--all-targets"], feature, locked].concat(),
    );
    let output =
        Checks::of(service_type, project).run(service_type, &["traces::", "traced_"], None);
    let expected = if service_type == "api" { 7 } else { 8 };
    assert!(
        output.contains(&format!("test result: ok. {expected} passed")),
        "[{service_type}] expected {expected} trace checks to run and pass:\n{output}"
    );
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
    on_postgres_passes_its_deployment_checks("api");
}

#[test]
fn worker_on_postgres() {
    on_postgres_passes_its_deployment_checks("worker");
}

#[test]
fn scheduler_on_postgres() {
    on_postgres_passes_its_deployment_checks("scheduler");
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
    with_otel_passes_its_trace_checks("api");
}

#[test]
fn worker_with_otel() {
    with_otel_passes_its_trace_checks("worker");
}

#[test]
fn scheduler_with_otel() {
    with_otel_passes_its_trace_checks("scheduler");
}
