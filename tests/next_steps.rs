//! After a successful generation, `hooks/post.rhai` prints the next steps:
//! the project folder, how to run it and its tests, and where the settings
//! are documented. Both entry points show it with `--silent`: the binary
//! (0.23, on stdout) and the library (0.26, on stderr; run in a child
//! process to read it). The claims it makes about the project are checked
//! against the generated files.

mod common;

use std::path::Path;

use common::{
    SERVICE_TYPES, Scratch, cli_version, generate_with_cli, generate_with_library_in_child,
    read_text,
};

/// A port other than the default, to see that the message uses the option.
const PORT: &str = "8123";

/// Checks the message in `output` for a project generated in `project`,
/// and that the generated files bear it out.
fn assert_next_steps(via: &str, output: &str, project: &Path) {
    let folder = project.display().to_string();
    let expected = [
        format!("Next steps: the project is in {folder}"),
        format!("cd {folder}"),
        "cargo run -- --check-config".to_owned(),
        format!("HTTP on 127.0.0.1:{PORT}"),
        "cargo test".to_owned(),
        "config/default.toml".to_owned(),
        "README.md, section \"Settings\"".to_owned(),
    ];
    let missing: Vec<&String> = expected
        .iter()
        .filter(|phrase| !output.contains(phrase.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{via}: the next steps miss {missing:?}:\n{output}"
    );

    let readme = read_text(&project.join("README.md"));
    assert!(
        readme.lines().any(|line| line == "## Settings"),
        "{via}: the message points to the README's \"Settings\" section, which is gone"
    );
    for command in ["cargo run -- --check-config", "cargo test"] {
        assert!(
            readme.contains(command),
            "{via}: the README no longer mentions `{command}`"
        );
    }
    let config = read_text(&project.join("config/default.toml"));
    assert!(
        config.contains(&format!("127.0.0.1:{PORT}")),
        "{via}: config/default.toml does not listen on port {PORT}"
    );
}

fn library_prints_next_steps(service_type: &str) {
    let scratch = Scratch::new();
    let defines = [
        format!("service_type={service_type}"),
        format!("http_port={PORT}"),
    ];
    let run = generate_with_library_in_child(&scratch, &format!("next-{service_type}"), &defines);
    let project = run
        .result
        .unwrap_or_else(|error| panic!("[{service_type}] library generation failed:\n{error}"));
    assert_next_steps(&format!("[{service_type}] library"), &run.stderr, &project);
}

fn cli_prints_next_steps(service_type: &str) {
    let Some(version) = cli_version(&format!("next_steps::cli_{service_type}")) else {
        return;
    };
    let scratch = Scratch::new();
    let name = format!("next-{service_type}");
    let defines = [
        format!("service_type={service_type}"),
        format!("http_port={PORT}"),
    ];
    let run = generate_with_cli(&scratch, &name, &defines);
    assert!(
        run.succeeded(),
        "[{service_type}] `{}` ({version}) failed:\n{}",
        run.command,
        run.text()
    );
    assert_next_steps(
        &format!("[{service_type}] `{}` ({version})", run.command),
        &String::from_utf8_lossy(&run.output.stdout),
        &scratch.out().join(&name),
    );
}

#[test]
fn library_prints_next_steps_for_every_type() {
    for service_type in SERVICE_TYPES {
        library_prints_next_steps(service_type);
    }
}

#[test]
fn cli_prints_next_steps_for_every_type() {
    for service_type in SERVICE_TYPES {
        cli_prints_next_steps(service_type);
    }
}

#[test]
#[ignore = "run by the tests above in a child process (common::generate_with_library_in_child)"]
fn library_child() {
    common::library_child();
}
