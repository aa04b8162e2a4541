//! Bad configuration, one case per row: the process exits with the
//! configuration-error code well within a second, names the key and where
//! it came from, and never gets as far as binding a port.

use std::{path::Path, time::Duration};

use crate::support::{Counts, Launch, launch, runtime, serial, summary};

use nebula_runtime::Exit;

use nebula_checks::project;

/// A start-up that must fail, and the words its message must contain.
pub struct Case {
    pub name: &'static str,
    pub launch: Launch,
    pub mentions: Vec<String>,
}

pub fn case(name: &'static str, launch: Launch, mentions: &[&str]) -> Case {
    Case {
        name,
        launch,
        mentions: mentions.iter().map(|text| (*text).to_owned()).collect(),
    }
}

/// Writes `contents` to a config file in a fresh temp folder of the target
/// directory and returns its path.
pub fn config_file(name: &str, contents: &str) -> String {
    let folder = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{}-{name}", project().kind));
    std::fs::create_dir_all(&folder).expect("temp folder");
    let path = folder.join("config.toml");
    std::fs::write(&path, contents).expect("config file written");
    path.display().to_string()
}

/// Runs every case and checks exit code, message and speed.
pub fn check(cases: Vec<Case>) {
    let _serial = serial();
    runtime().block_on(async {
        let mut failures = Vec::new();
        let count = cases.len();
        for case in cases {
            let (status, elapsed, stderr) = case.launch.run_to_exit().await;
            let mut problems = Vec::new();
            if status.code() != Some(i32::from(Exit::ConfigError.code())) {
                problems.push(format!(
                    "exit code {:?}, expected {}",
                    status.code(),
                    Exit::ConfigError.code()
                ));
            }
            if elapsed >= Duration::from_secs(1) {
                problems.push(format!("took {elapsed:?}, expected well under a second"));
            }
            for text in &case.mentions {
                if !stderr.contains(text.as_str()) {
                    problems.push(format!("message does not mention {text:?}"));
                }
            }
            if stderr.contains("\"ready\"") || stderr.contains(" ready ") {
                problems.push("the service reported ready".to_owned());
            }
            if !problems.is_empty() {
                failures.push(format!(
                    "{}: {}\nstderr: {stderr}",
                    case.name,
                    problems.join("; ")
                ));
            }
        }
        summary(
            "bad-configuration",
            Counts {
                offered: count,
                refused: count - failures.len(),
                ..Counts::default()
            },
            Some(i32::from(Exit::ConfigError.code())),
            "",
        );
        assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    });
}

fn env_var(key: &str) -> String {
    project().var(key)
}

#[test]
fn bad_configuration_stops_start_up_with_a_clear_message() {
    let missing = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-dir/config.toml");
    let missing = missing.display().to_string();
    let wrong_type = config_file("wrong-type", "[http]\nmax_concurrent_requests = \"many\"\n");
    let malformed = config_file("malformed", "[http\nlisten = \n");
    let unknown_in_file = config_file("unknown-key", "[shutdown]\ngrace_secs = 5\n");
    check(vec![
        case(
            "unknown key in the environment",
            launch().setting("HTTP__LISTNE", "x"),
            &["http.listne", &env_var("HTTP__LISTNE")],
        ),
        case(
            "unknown key in a file",
            launch().args(&["--config", &unknown_in_file]),
            &["shutdown.grace_secs", &unknown_in_file, "grace_ms"],
        ),
        case(
            "wrong type in a file",
            launch().args(&["--config", &wrong_type]),
            &["http.max_concurrent_requests", &wrong_type],
        ),
        case(
            "out-of-range port",
            launch().setting("HTTP__LISTEN", "127.0.0.1:70000"),
            &["http.listen", &env_var("HTTP__LISTEN")],
        ),
        case(
            "zero concurrency limit",
            launch().setting("HTTP__MAX_CONCURRENT_REQUESTS", 0),
            &["http.max_concurrent_requests", "between 1 and"],
        ),
        case(
            "a head limit too small for real clients",
            launch().setting("HTTP__MAX_HEADER_BYTES", 100),
            &[
                "http.max_header_bytes",
                &env_var("HTTP__MAX_HEADER_BYTES"),
                "between 1024 and 65536",
            ],
        ),
        case(
            "no connections allowed",
            launch().setting("HTTP__MAX_CONNECTIONS", 0),
            &["http.max_connections", "between 1 and"],
        ),
        case(
            "malformed TOML",
            launch().args(&["--config", &malformed]),
            &[&malformed, "TOML"],
        ),
        case(
            "missing --config file",
            launch().args(&["--config", &missing]),
            &[&missing, "not found"],
        ),
        case(
            "bad environment variable",
            launch().setting("SHUTDOWN__GRACE_MS", "soon"),
            &["shutdown.grace_ms", &env_var("SHUTDOWN__GRACE_MS")],
        ),
        case(
            "bad RUST_LOG",
            launch().env("RUST_LOG", "info,=bad="),
            &["log.level", "RUST_LOG"],
        ),
    ]);
}
