//! The runtime crate (`template/runtime/`), checked where it lives, once:
//! the generated services carry it unchanged, lint only their own code and
//! test only their own behaviour. Here it is held to the generated code's
//! lints and formatting, without features and with all of them, and its
//! tests run on SQLite and on PostgreSQL.

mod common;

use common::{
    POSTGRES_URL_VAR, TestPostgres, cargo_step, cargo_step_with_env, raw_template_dir,
};

#[test]
fn the_runtime_is_clippy_clean_and_formatted() {
    let runtime = raw_template_dir().join("runtime");
    cargo_step("runtime", &runtime, &["fmt", "--check"]);
    for features in [&[][..], &["--all-features"]] {
        let mut args = vec!["clippy", "--locked", "--all-targets"];
        args.extend_from_slice(features);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        cargo_step("runtime", &runtime, &args);
    }
}

/// Every feature on (the job engine's tests need `jobs` and `testing`), and
/// the PostgreSQL tests, `#[ignore]`d without a server, included with one:
/// a server of the harness's own, required in CI.
#[test]
fn the_runtime_tests_pass_on_sqlite_and_postgres() {
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
