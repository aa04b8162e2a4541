//! The runtime crate (`template/runtime/`), checked where it lives, once:
//! the generated services carry it unchanged, lint only their own code and
//! test only their own behaviour. Here it is held to the generated code's
//! lints and formatting, with each feature set a service type builds, and
//! its tests run on SQLite and on PostgreSQL.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};

use common::{POSTGRES_URL_VAR, TestPostgres, cargo_step, cargo_step_with_env, raw_template_dir};

/// The feature sets linted: none, what each service type builds (its
/// dependency and its dev-dependency, unified), and all of them.
const FEATURE_SETS: [&[&str]; 5] = [
    &[],
    &["--features", "testing"],
    &["--features", "jobs,outbound,testing"],
    &["--features", "scheduling,testing"],
    &["--all-features"],
];

/// One test at a time: the engine tests time drains, leases and database
/// timeouts, which a clippy build beside them on a small machine would
/// disturb.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn the_runtime_is_clippy_clean_and_formatted() {
    let _one = one_at_a_time();
    let runtime = raw_template_dir().join("runtime");
    cargo_step("runtime", &runtime, &["fmt", "--check"]);
    for features in FEATURE_SETS {
        let mut args = vec!["clippy", "--locked", "--all-targets"];
        args.extend_from_slice(features);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        cargo_step("runtime", &runtime, &args);
    }
}

/// Every feature on (the engine tests need `jobs`, `scheduling` and
/// `testing`), and the PostgreSQL tests, `#[ignore]`d without a server,
/// included with one: a server of the harness's own, required in CI.
#[test]
fn the_runtime_tests_pass_on_sqlite_and_postgres() {
    let _one = one_at_a_time();
    let runtime = raw_template_dir().join("runtime");
    let postgres = TestPostgres::for_tests("runtime");
    let mut args = vec!["test", "--locked", "--all-features"];
    let mut env = Vec::new();
    if let Some(server) = &postgres {
        args.extend_from_slice(&["--", "--include-ignored"]);
        env.push((POSTGRES_URL_VAR, server.url()));
    }
    cargo_step_with_env("runtime", &runtime, &args, &env);
}
