//! The `cargo generate` binary users install (0.23.x: the newest release that
//! installs on our toolchain) generates every service type, the result
//! builds, and it is byte for byte what the library (0.26.0, used by the
//! other tests) generates. The template's `cargo_generate_version` promises
//! both.
//!
//! Skipped, with a note, when the binary is not installed, unless
//! `NEBULA_TEMPLATE_REQUIRE_CLI=1` (set by `.ci/run`) makes that a failure.

mod common;

use common::{
    Scratch, assert_same_files, cargo_step, cli_version, generate_with_cli, generate_with_library,
    note, prepare_dependencies,
};

fn cli_generates_a_building_project(service_type: &'static str) {
    let test = format!("cli_generate::{service_type}");
    let Some(version) = cli_version(&test) else {
        return;
    };
    let name = format!("cli-{service_type}");
    let defines = [format!("service_type={service_type}")];

    let scratch = Scratch::new();
    let run = generate_with_cli(&scratch, &name, &defines);
    run.assert_succeeded(&format!("[{service_type}] ({version})"));
    note(&format!("[{service_type}] generated {name} with {version}"));
    let project = scratch.out().join(&name);
    assert!(
        project.join("Cargo.toml").is_file(),
        "[{service_type}] `{}` reported success but {} has no Cargo.toml:\n{}",
        run.command,
        project.display(),
        run.text()
    );

    // Same inputs through the library: the two releases must agree.
    let reference = Scratch::new();
    let reference_project = generate_with_library(&reference, &name, &defines)
        .unwrap_or_else(|error| panic!("[{service_type}] library generation failed:\n{error}"));
    assert_same_files(
        &format!("[{service_type}] the binary ({version}) and the library (0.26.0)"),
        &project,
        &reference_project,
    );

    // `--all-targets`, as in cargo_checks: the same feature set, so the
    // dependencies compiled there are reused here.
    let locked = prepare_dependencies(service_type, &project);
    cargo_step(
        service_type,
        &project,
        &[&["build", "--all-targets"], locked].concat(),
    );
}

#[test]
fn api() {
    cli_generates_a_building_project("api");
}

#[test]
fn worker() {
    cli_generates_a_building_project("worker");
}

#[test]
fn scheduler() {
    cli_generates_a_building_project("scheduler");
}
