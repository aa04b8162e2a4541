//! `cargo generate --git <url>` (the binary, 0.23.x) generates every service
//! type byte for byte as `--path` does. The repository it clones is made
//! from the current working tree (tracked and untracked files, ignored ones
//! left out, as a push would carry them), so uncommitted work is checked
//! too, not only `HEAD`. Nothing is built: the `--path` output is built by
//! `tests/cli_generate.rs`.
//!
//! Skipped, with a note, when the binary is not installed, unless
//! `NEBULA_TEMPLATE_REQUIRE_CLI=1` (set by `.ci/run`) makes that a failure.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use common::{
    Scratch, assert_same_files, cli_version, generate_with_cli, generate_with_cli_from_git, note,
    repo_root,
};

/// Runs `git <args>` in `dir` and returns its stdout; panics with its output
/// when it fails.
fn git(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run git {args:?}: {error}"));
    assert!(
        output.status.success(),
        "git {args:?} failed in {} ({}):\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A git repository in `scratch` holding one commit of the working tree's
/// files that git does not ignore; returns its folder.
fn working_tree_repository(scratch: &Scratch) -> PathBuf {
    let root = repo_root();
    let listed = git(
        &root,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    );
    let copy = scratch.path("template-git");
    for relative in listed
        .split(|&byte| byte == 0)
        .filter(|path| !path.is_empty())
    {
        let relative = Path::new(std::str::from_utf8(relative).expect("a non-UTF-8 path"));
        let from = root.join(relative);
        // Tracked but deleted in the working tree: not part of it.
        if !from.is_file() {
            continue;
        }
        let to = copy.join(relative);
        fs::create_dir_all(to.parent().expect("a file has a parent"))
            .expect("cannot create a folder in the git copy");
        fs::copy(&from, &to).unwrap_or_else(|error| {
            panic!("cannot copy {} into the git copy: {error}", from.display())
        });
    }
    git(&copy, &["init", "--quiet"]);
    git(&copy, &["add", "--all"]);
    git(
        &copy,
        &[
            "-c",
            "user.name=Nebula template tests",
            "-c",
            "user.email=tests@nebula.invalid",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "--quiet",
            "--message",
            "working tree",
        ],
    );
    copy
}

fn git_matches_path(service_type: &str) {
    let Some(version) = cli_version(&format!("git_generate::{service_type}")) else {
        return;
    };
    let name = format!("git-{service_type}");
    let defines = [format!("service_type={service_type}")];

    let scratch = Scratch::new();
    let repository = working_tree_repository(&scratch);
    let url = format!("file://{}", repository.display());
    let run = generate_with_cli_from_git(&scratch, &url, &name, &defines);
    run.assert_succeeded(&format!("[{service_type}] ({version})"));
    let project = scratch.out().join(&name);
    assert!(
        project.join("Cargo.toml").is_file(),
        "[{service_type}] `{}` wrote no Cargo.toml into {}",
        run.command,
        project.display()
    );

    let reference = Scratch::new();
    generate_with_cli(&reference, &name, &defines)
        .assert_succeeded(&format!("[{service_type}] ({version})"));
    let files = assert_same_files(
        &format!("[{service_type}] --git and --path ({version})"),
        &project,
        &reference.out().join(&name),
    );
    note(&format!(
        "[{service_type}] --git generates what --path does ({files} files, {version})"
    ));
}

#[test]
fn api() {
    git_matches_path("api");
}

#[test]
fn worker() {
    git_matches_path("worker");
}

#[test]
fn scheduler() {
    git_matches_path("scheduler");
}
