//! The checks on generated binaries (`checks/`, run by `cargo_checks`
//! against every generated type) are held to the lints and formatting of
//! the code they check: pedantic clippy with warnings denied, and rustfmt.

mod common;

use common::{cargo_step, repo_root};

#[test]
fn the_checks_are_clippy_clean_and_formatted() {
    let checks = repo_root().join("checks");
    cargo_step("checks", &checks, &["fmt", "--check"]);
    cargo_step(
        "checks",
        &checks,
        &[
            "clippy",
            "--locked",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    );
}
