//! Each service type gets exactly its own files: its module (`src/<type>/`)
//! and integration tests (`tests/<type>.rs` or `tests/integration/<type>.rs`)
//! and none of the other types',
//! the default configuration with only its own section, and a manifest with
//! the promised toolchain floor and no blanket Tokio features. The
//! deployment files and the CI workflow are there by default, and gone with
//! `deployment=none` and `ci=none`. The worker's PersistentVolumeClaim is
//! there with `database=sqlite` (the default) and gone with
//! `database=postgres`, which changes nothing but the deployment files, their
//! tests and the README (and nothing at all for the other types, or without
//! deployment files). Every type carries the runtime crate, `runtime/`,
//! byte for byte as `template/runtime/` holds it: never rendered, never
//! shaped by type.
//!
//! Cheap (no build): generation only.

mod common;

use std::{fs, path::Path};

use common::{Generated, SERVICE_TYPES, files_below, raw_template_dir, read_text};

/// The `rust-version` generated projects declare.
const GENERATED_RUST_VERSION: &str = "1.92";

/// Files that `deployment=kubernetes` (the default) adds, and `none` leaves out.
const DEPLOYMENT_FILES: [&str; 6] = [
    "Dockerfile",
    ".dockerignore",
    "deploy/kubernetes/configmap.yaml",
    "deploy/kubernetes/deployment.yaml",
    "deploy/kubernetes/service.yaml",
    "deploy/kubernetes/poddisruptionbudget.yaml",
];

/// Files that `ci=github` (the default) adds, and `none` leaves out.
const CI_FILES: [&str; 1] = [".github/workflows/ci.yml"];

/// The worker's claim for its SQLite file: `database=sqlite` (the default)
/// adds it, `postgres` leaves it out.
const CLAIM: [&str; 1] = ["deploy/kubernetes/persistentvolumeclaim.yaml"];

/// Problems with the files that `deployment` and `ci` add by default: all
/// must be there.
fn check_deployment_and_ci_present(project: &Path) -> Vec<String> {
    let mut problems = check_optional(project, "deployment", &DEPLOYMENT_FILES, true);
    problems.extend(check_optional(project, "ci", &CI_FILES, true));
    problems
}

/// Problems with the optional files: each of `files` must exist when
/// `present`, and must not otherwise.
fn check_optional(project: &Path, option: &str, files: &[&str], present: bool) -> Vec<String> {
    files
        .iter()
        .filter(|file| project.join(file).exists() != present)
        .map(|file| {
            if present {
                format!("missing {file} ({option} at its default)")
            } else {
                format!("has {file}, which {option}=none leaves out")
            }
        })
        .collect()
}

/// Checks the generated tree of `service_type` and reports every problem at
/// once, with the list of generated files.
fn has_its_own_files(service_type: &'static str) {
    let generated = Generated::new("files", service_type);
    let project = &generated.project;
    let mut problems = Vec::new();

    let own_module = project.join("src").join(service_type);
    if !own_module.join("mod.rs").is_file() {
        problems.push(format!("missing its module: src/{service_type}/mod.rs"));
    }
    // Integration tests may sit in their own crate (`tests/<type>.rs`) or in
    // a module of a shared one (`tests/integration/<type>.rs`).
    let tests = files_below(&project.join("tests"));
    let own_tests = format!("{service_type}.rs");
    if !tests.iter().any(|path| {
        path.file_name()
            .is_some_and(|name| name == own_tests.as_str())
    }) {
        problems.push(format!(
            "missing its integration tests: no tests/**/{own_tests}"
        ));
    }
    // No file or folder of src/ or tests/ may be named after another type.
    for other in SERVICE_TYPES.iter().filter(|&&other| other != service_type) {
        for folder in ["src", "tests"] {
            for path in files_below(&project.join(folder)) {
                let named_after_other = path.components().any(|part| {
                    let part = part.as_os_str().to_string_lossy();
                    part == *other || part == format!("{other}.rs")
                });
                if named_after_other {
                    problems.push(format!(
                        "contains {folder}/{}, which belongs to the {other} type",
                        path.display()
                    ));
                }
            }
        }
    }

    check_default_config(project, service_type, &mut problems);
    check_manifest(
        project,
        "Cargo.toml",
        &format!("files-{service_type}"),
        &mut problems,
    );
    check_manifest(
        project,
        "runtime/Cargo.toml",
        "nebula-runtime",
        &mut problems,
    );
    problems.extend(
        differences(
            &raw_template_dir().join("runtime"),
            &project.join("runtime"),
        )
        .into_iter()
        .map(|file| format!("runtime/{file} is not template/runtime/{file}, byte for byte")),
    );
    problems.extend(check_deployment_and_ci_present(project));
    problems.extend(check_optional(project, "database", &CLAIM, true));
    if !project.join("deny.toml").is_file() {
        problems.push("missing deny.toml".to_owned());
    }

    assert!(
        problems.is_empty(),
        "[{service_type}] generated project {}:\n  - {}\nfiles:\n  {}",
        project.display(),
        problems.join("\n  - "),
        files_below(project)
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// `config/default.toml` exists, is valid TOML once rendered, and has a
/// section for this type only.
fn check_default_config(project: &Path, service_type: &str, problems: &mut Vec<String>) {
    let path = project.join("config/default.toml");
    if !path.is_file() {
        problems.push("missing config/default.toml".to_owned());
        return;
    }
    let config: toml::Table = match read_text(&path).parse() {
        Ok(config) => config,
        Err(error) => {
            problems.push(format!("config/default.toml is not valid TOML: {error}"));
            return;
        }
    };
    for section in SERVICE_TYPES {
        match (section == service_type, config.contains_key(section)) {
            (true, false) => {
                problems.push(format!("config/default.toml lacks its [{section}] section"));
            }
            (false, true) => problems.push(format!(
                "config/default.toml has a [{section}] section, which belongs to the {section} type"
            )),
            _ => {}
        }
    }
}

/// The manifest at `manifest_name` (the project's, or the runtime's)
/// parses, names `expected_name`, declares `rust-version = "1.92"`, and no
/// dependency table enables Tokio's `full` feature (the template lists what
/// it uses).
fn check_manifest(
    project: &Path,
    manifest_name: &str,
    expected_name: &str,
    problems: &mut Vec<String>,
) {
    let manifest: toml::Table = match read_text(&project.join(manifest_name)).parse() {
        Ok(manifest) => manifest,
        Err(error) => {
            problems.push(format!("{manifest_name} is not valid TOML: {error}"));
            return;
        }
    };
    let package = manifest.get("package").and_then(toml::Value::as_table);
    let rust_version = package
        .and_then(|package| package.get("rust-version"))
        .and_then(toml::Value::as_str);
    if rust_version != Some(GENERATED_RUST_VERSION) {
        problems.push(format!(
            "{manifest_name}: package.rust-version is {rust_version:?}, expected \"{GENERATED_RUST_VERSION}\""
        ));
    }
    let name = package
        .and_then(|package| package.get("name"))
        .and_then(toml::Value::as_str);
    if name != Some(expected_name) {
        problems.push(format!(
            "{manifest_name}: package.name is {name:?}, expected {expected_name:?}"
        ));
    }

    // [dependencies], [dev-dependencies], [build-dependencies] and their
    // [target.'cfg(..)'.*] variants.
    let mut tables: Vec<(String, &toml::Table)> = Vec::new();
    let kinds = ["dependencies", "dev-dependencies", "build-dependencies"];
    for kind in kinds {
        if let Some(table) = manifest.get(kind).and_then(toml::Value::as_table) {
            tables.push((kind.to_owned(), table));
        }
    }
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        for (cfg, target) in targets {
            for kind in kinds {
                if let Some(table) = target.get(kind).and_then(toml::Value::as_table) {
                    tables.push((format!("target.{cfg}.{kind}"), table));
                }
            }
        }
    }
    for (where_, table) in tables {
        let features = table
            .get("tokio")
            .and_then(|tokio| tokio.get("features"))
            .and_then(toml::Value::as_array);
        if features.is_some_and(|features| features.iter().any(|f| f.as_str() == Some("full"))) {
            problems.push(format!(
                "{manifest_name}: [{where_}] tokio enables the \"full\" feature"
            ));
        }
    }
}

#[test]
fn api() {
    has_its_own_files("api");
}

#[test]
fn worker() {
    has_its_own_files("worker");
}

#[test]
fn scheduler() {
    has_its_own_files("scheduler");
}

/// Without deployment files or CI workflow: those files are gone, and no
/// empty folder is left where they were.
fn leaves_out_deployment_and_ci(service_type: &'static str) {
    let name = format!("bare-{service_type}");
    let generated = Generated::with_options(&name, service_type, &["deployment=none", "ci=none"]);
    let project = &generated.project;
    let mut problems = check_optional(project, "deployment", &DEPLOYMENT_FILES, false);
    problems.extend(check_optional(project, "ci", &CI_FILES, false));
    for folder in ["deploy", ".github"] {
        let path = project.join(folder);
        if path.is_dir() && files_below(&path).is_empty() {
            problems.push(format!("{folder}/ is left empty"));
        }
    }
    assert!(
        problems.is_empty(),
        "[{service_type}] {}:\n  - {}",
        project.display(),
        problems.join("\n  - ")
    );
}

#[test]
fn api_without_deployment_or_ci() {
    leaves_out_deployment_and_ci("api");
}

#[test]
fn worker_without_deployment_or_ci() {
    leaves_out_deployment_and_ci("worker");
}

#[test]
fn scheduler_without_deployment_or_ci() {
    leaves_out_deployment_and_ci("scheduler");
}

/// `database=postgres`: the deployment files without the claim (the rest
/// of them, and everything else, still there).
#[test]
fn every_type_on_postgres() {
    for service_type in SERVICE_TYPES {
        let generated = Generated::with_options(
            &format!("files-pg-{service_type}"),
            service_type,
            &["database=postgres"],
        );
        let project = &generated.project;
        let mut problems = check_optional(project, "database", &CLAIM, false);
        problems.extend(check_deployment_and_ci_present(project));
        assert!(
            problems.is_empty(),
            "[{service_type}] database=postgres, {}:\n  - {}",
            project.display(),
            problems.join("\n  - ")
        );
    }
}

/// The files whose content differs between two projects of the same name,
/// and those only one of them has.
fn differences(left: &Path, right: &Path) -> Vec<String> {
    let left_files = files_below(left);
    let right_files = files_below(right);
    let mut differing: Vec<String> = left_files
        .iter()
        .chain(right_files.iter().filter(|file| !left_files.contains(file)))
        .filter(|file| fs::read(left.join(file)).ok() != fs::read(right.join(file)).ok())
        .map(|file| file.display().to_string())
        .collect();
    differing.sort();
    differing
}

/// Generates `service_type` twice under one name, with `options` and with
/// `other_options`, and returns the files that differ.
fn differences_between(
    service_type: &'static str,
    options: &[&str],
    other_options: &[&str],
) -> Vec<String> {
    let name = format!("db-option-{service_type}");
    let one = Generated::with_options(&name, service_type, options);
    let other = Generated::with_options(&name, service_type, other_options);
    differences(&one.project, &other.project)
}

/// `database` shapes only the deployment files and the docs: the code is
/// the same, which is why the harness runs only the deployment checks on
/// the postgres variant (`cargo_checks`).
#[test]
fn the_database_option_changes_only_the_deployment_files() {
    for service_type in SERVICE_TYPES {
        let differing =
            differences_between(service_type, &["database=sqlite"], &["database=postgres"]);
        let expected = [
            "Dockerfile",
            "README.md",
            "deploy/kubernetes/deployment.yaml",
            CLAIM[0],
        ];
        assert_eq!(
            differing, expected,
            "[{service_type}] database=sqlite and database=postgres differ in these files"
        );
    }
}

/// Without deployment files, `database` changes nothing.
#[test]
fn the_database_option_changes_nothing_without_deployment_files() {
    for service_type in SERVICE_TYPES {
        let differing = differences_between(
            service_type,
            &["deployment=none", "database=sqlite"],
            &["deployment=none", "database=postgres"],
        );
        assert!(
            differing.is_empty(),
            "[{service_type}] with deployment=none, database=postgres changes {differing:?}"
        );
    }
}

/// The code renders formatted whatever the name: rustfmt sorts imports by
/// name, so a project named to sort before every crate it uses and one
/// named to sort after them must both pass `cargo fmt --check` (the build
/// checks run with the longest name, which sorts among the rest).
#[test]
fn the_code_is_formatted_whether_the_name_sorts_first_or_last() {
    for service_type in SERVICE_TYPES {
        for name in ["aaa", "zzz"] {
            let generated = Generated::named(&format!("{name}-{service_type}"), service_type);
            common::cargo_step(service_type, &generated.project, &["fmt", "--check"]);
        }
    }
}
