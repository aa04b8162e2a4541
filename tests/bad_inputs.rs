//! Bad answers are refused before a project is written, with output that
//! names the option and what it accepts, through both entry points: the
//! cargo-generate library (0.26) and the `cargo generate` binary (0.23).
//!
//! Who refuses, and what is left on disk, checked exactly (cargo-generate
//! 0.23.14 and 0.26.0 behave the same):
//! - A bad project name given with `--name` is refused by the template's
//!   `init` hook, which runs before cargo-generate creates the project
//!   folder: nothing is left.
//! - A bad `service_type`, `deployment`, `ci` or `database` is refused by
//!   cargo-generate itself (`choices` in cargo-generate.toml): "Sorry, "x" is
//!   not a valid value for <option>", which lists nothing accepted. The
//!   `init` hook cannot refuse first (those values are not visible to it), so
//!   it prints each fixed-value option with its accepted values at the start
//!   of every run; the tests check that list is in the output, and equals the
//!   `choices`. The same holds for values from `CARGO_GENERATE_VALUE_<NAME>`
//!   and `--template-values-file`, which cargo-generate merges with `-d`
//!   before any check (checked with the binary).
//! - A bad `http_port` is refused by the template's `pre` hook.
//! - Both of the last two happen after cargo-generate created the project
//!   folder (`expand_template`: `destination.create()` comes before the
//!   placeholders are filled and the `pre` hook runs). An EMPTY project
//!   folder is left behind, and a second run with the same name then fails
//!   with "Target directory already exists". Hooks cannot remove it; if a
//!   cargo-generate release stops creating it early, these expectations fail
//!   and must be updated to `Leftover::Nothing`.
//!
//! The library runs in a child process ([`common::generate_with_library_in_child`])
//! so that what it prints can be read.

mod common;

use common::{
    LibraryRun, Scratch, cli_version, generate_with_cli_adjusted, generate_with_library_in_child,
    mentions, repo_root,
};

/// What a refused generation leaves in the output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftover {
    Nothing,
    /// The project folder, empty.
    EmptyProjectFolder,
}

/// How the `key=value` pairs of a [`Case`] reach cargo-generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Given {
    /// `-d key=value`.
    Define,
    /// `CARGO_GENERATE_VALUE_<KEY>=value` in the environment (binary only).
    Env,
    /// `--template-values-file` with `[values] key = "value"` (binary only).
    ValuesFile,
}

/// One bad input and what the refusal must look like.
struct Case {
    name: &'static str,
    defines: &'static [&'static str],
    given: Given,
    /// Phrases the error message must contain as whole words: the option,
    /// then what it accepts when the message says it.
    mentions: &'static [&'static str],
    /// For a fixed-value option, whose error lists nothing accepted: the line
    /// the `init` hook must have printed before it, `<option>: <values>`.
    listed: Option<&'static str>,
    leftover: Leftover,
}

const UNKNOWN_SERVICE_TYPE: Case = Case {
    name: "bad-type",
    defines: &["service_type=cron"],
    given: Given::Define,
    mentions: &["service_type"],
    listed: Some("service_type: api, worker, scheduler"),
    leftover: Leftover::EmptyProjectFolder,
};

const PORT_OUT_OF_RANGE: Case = Case {
    name: "bad-port",
    defines: &["http_port=70000"],
    given: Given::Define,
    mentions: &["http_port", "65535"],
    listed: None,
    leftover: Leftover::EmptyProjectFolder,
};

const PORT_NOT_A_NUMBER: Case = Case {
    name: "bad-port",
    defines: &["http_port=abc"],
    given: Given::Define,
    mentions: &["http_port", "65535"],
    listed: None,
    leftover: Leftover::EmptyProjectFolder,
};

const PORT_OF_THE_METRICS_LISTENER: Case = Case {
    name: "bad-port",
    defines: &["http_port=9464"],
    given: Given::Define,
    mentions: &["http_port", "9464", "metrics"],
    listed: None,
    leftover: Leftover::EmptyProjectFolder,
};

const UNKNOWN_DEPLOYMENT: Case = Case {
    name: "bad-deployment",
    defines: &["deployment=helm"],
    given: Given::Define,
    mentions: &["deployment"],
    listed: Some("deployment: kubernetes, none"),
    leftover: Leftover::EmptyProjectFolder,
};

const UNKNOWN_CI: Case = Case {
    name: "bad-ci",
    defines: &["ci=gitlab"],
    given: Given::Define,
    mentions: &["ci"],
    listed: Some("ci: github, none"),
    leftover: Leftover::EmptyProjectFolder,
};

const UNKNOWN_DATABASE: Case = Case {
    name: "bad-database",
    defines: &["service_type=worker", "database=mysql"],
    given: Given::Define,
    mentions: &["database"],
    listed: Some("database: sqlite, postgres"),
    leftover: Leftover::EmptyProjectFolder,
};

const UNKNOWN_DEPLOYMENT_FROM_ENV: Case = Case {
    name: "bad-deployment",
    defines: &["deployment=helm"],
    given: Given::Env,
    mentions: &["deployment"],
    listed: Some("deployment: kubernetes, none"),
    leftover: Leftover::EmptyProjectFolder,
};

const UNKNOWN_CI_FROM_VALUES_FILE: Case = Case {
    name: "bad-ci",
    defines: &["ci=gitlab"],
    given: Given::ValuesFile,
    mentions: &["ci"],
    listed: Some("ci: github, none"),
    leftover: Leftover::EmptyProjectFolder,
};

const NAME_STARTS_WITH_DIGIT: Case = Case {
    name: "123abc",
    defines: &[],
    given: Given::Define,
    mentions: &["project name", "ASCII letter"],
    listed: None,
    leftover: Leftover::Nothing,
};

const NAME_NOT_ASCII: Case = Case {
    name: "café",
    defines: &[],
    given: Given::Define,
    mentions: &["project name", "ASCII letter"],
    listed: None,
    leftover: Leftover::Nothing,
};

const NAME_IS_KEYWORD: Case = Case {
    name: "async",
    defines: &[],
    given: Given::Define,
    mentions: &["project name", "keyword"],
    listed: None,
    leftover: Leftover::Nothing,
};

impl Case {
    fn defines(&self) -> Vec<String> {
        self.defines
            .iter()
            .map(|&define| define.to_owned())
            .collect()
    }

    /// Checks the error message, the output around it and the output folder
    /// after a refused run, and reports every problem at once.
    fn assert_refusal(&self, via: &str, message: &str, output: &str, scratch: &Scratch) {
        let mut problems = Vec::new();
        let missing: Vec<&str> = self
            .mentions
            .iter()
            .copied()
            .filter(|phrase| !mentions(message, phrase))
            .collect();
        if !missing.is_empty() {
            problems.push(format!("the message does not mention {missing:?}"));
        }
        if let Some(listed) = self.listed
            && !output.lines().any(|line| line.trim() == listed)
        {
            problems.push(format!(
                "the output has no line {listed:?} (printed by hooks/init.rhai)"
            ));
        }

        let entries = scratch.out_entries();
        let left = match entries.as_slice() {
            [] => Some(Leftover::Nothing),
            [only] if only == self.name && scratch.out().join(only).is_dir() => {
                let inside = std::fs::read_dir(scratch.out().join(only))
                    .expect("cannot list the project folder")
                    .count();
                if inside == 0 {
                    Some(Leftover::EmptyProjectFolder)
                } else {
                    problems.push(format!("{inside} entries were written into {only}/"));
                    None
                }
            }
            _ => {
                problems.push(format!("the output folder holds {entries:?}"));
                None
            }
        };
        if let Some(left) = left
            && left != self.leftover
        {
            problems.push(format!(
                "left {left:?} in the output folder, expected {:?} (see the module documentation)",
                self.leftover
            ));
        }

        assert!(
            problems.is_empty(),
            "{via}: refusing --name {:?} {:?} ({:?}):\n  - {}\nMessage:\n{message}\nOutput:\n{output}",
            self.name,
            self.defines,
            self.given,
            problems.join("\n  - ")
        );
    }

    fn is_refused_by_library(&self) {
        assert_eq!(
            self.given,
            Given::Define,
            "the library cases pass values with -d only"
        );
        let scratch = Scratch::new();
        let LibraryRun { result, stderr } =
            generate_with_library_in_child(&scratch, self.name, &self.defines());
        match result {
            Ok(path) => panic!(
                "library: {:?} {:?} was accepted and generated {}",
                self.name,
                self.defines,
                path.display()
            ),
            Err(message) => {
                common::note(&format!(
                    "library refuses {:?} {:?}: {}",
                    self.name,
                    self.defines,
                    message.replace('\n', " | ")
                ));
                self.assert_refusal("library", &message, &stderr, &scratch);
                // 0.26 writes the list and the refusal to the same stream:
                // the list must come first.
                if let Some(listed) = self.listed {
                    let first_line = message.lines().next().unwrap_or_default().trim();
                    let list_at = stderr.find(listed);
                    let refusal_at = stderr.rfind(first_line);
                    assert!(
                        list_at < refusal_at,
                        "library: the refusal {first_line:?} is printed before the list \
                         {listed:?}:\n{stderr}"
                    );
                }
            }
        }
    }

    fn is_refused_by_cli(&self, test_name: &str) {
        if cli_version(test_name).is_none() {
            return;
        }
        let scratch = Scratch::new();
        let (defines, values) = match self.given {
            Given::Define => (self.defines(), Vec::new()),
            Given::Env | Given::ValuesFile => (Vec::new(), self.defines()),
        };
        let values_file = scratch.path("values").join("values.toml");
        let run = generate_with_cli_adjusted(&scratch, self.name, &defines, |command| {
            let pairs = values.iter().filter_map(|value| value.split_once('='));
            match self.given {
                Given::Define => {}
                Given::Env => {
                    for (key, value) in pairs {
                        let var = format!("CARGO_GENERATE_VALUE_{}", key.to_ascii_uppercase());
                        command.env(var, value);
                    }
                }
                Given::ValuesFile => {
                    let lines: String = pairs
                        .map(|(key, value)| format!("{key} = {value:?}\n"))
                        .collect();
                    std::fs::write(&values_file, format!("[values]\n{lines}"))
                        .expect("cannot write the values file");
                    command.arg("--template-values-file").arg(&values_file);
                }
            }
        });
        assert!(
            !run.succeeded(),
            "`{}` ({:?} {:?}) was accepted:\n{}",
            run.command,
            self.given,
            self.defines,
            run.text()
        );
        common::note(&format!(
            "cli refuses {:?} {:?} ({:?}, {}): {}",
            self.name,
            self.defines,
            self.given,
            run.output.status,
            String::from_utf8_lossy(&run.output.stderr)
                .trim()
                .replace('\n', " | ")
        ));
        // 0.23 prints the hooks' output on stdout and the error on stderr:
        // the order between them is not kept.
        self.assert_refusal(
            &format!("`{}`", run.command),
            &run.error_text(),
            &run.text(),
            &scratch,
        );
    }
}

/// The list `hooks/init.rhai` prints is the `choices` of
/// `cargo-generate.toml`, in order, each with its default first: 0.23
/// preselects the default with a binary search (`choices.binary_search`,
/// index 0 when it misses), right only in a sorted list or at index 0.
#[test]
fn init_lists_every_choices_placeholder() {
    let config: toml::Table =
        toml::from_str(&common::read_text(&repo_root().join("cargo-generate.toml")))
            .expect("cargo-generate.toml does not parse");
    let placeholders = config["placeholders"]
        .as_table()
        .expect("cargo-generate.toml has no [placeholders]");
    let scratch = Scratch::new();
    let run = generate_with_library_in_child(&scratch, "listed", &[]);
    if let Err(message) = &run.result {
        panic!("library generation with the defaults failed:\n{message}");
    }
    let mut with_choices = Vec::new();
    for (name, placeholder) in placeholders {
        let Some(choices) = placeholder.get("choices").and_then(toml::Value::as_array) else {
            continue;
        };
        let choices: Vec<&str> = choices.iter().filter_map(toml::Value::as_str).collect();
        let default = placeholder.get("default").and_then(toml::Value::as_str);
        assert_eq!(
            choices.first().copied(),
            default,
            "placeholder {name}: the default must be the first choice"
        );
        let line = format!("{name}: {}", choices.join(", "));
        assert!(
            run.stderr.lines().any(|printed| printed.trim() == line),
            "hooks/init.rhai does not print {line:?} (the choices of {name}):\n{}",
            run.stderr
        );
        with_choices.push(name.as_str());
    }
    with_choices.sort_unstable();
    assert_eq!(
        with_choices,
        ["ci", "database", "deployment", "service_type"],
        "the placeholders with choices changed: update the cases in this file"
    );
}

#[test]
#[ignore = "run by the tests above in a child process (common::generate_with_library_in_child)"]
fn library_child() {
    common::library_child();
}

#[test]
fn library_refuses_unknown_service_type() {
    UNKNOWN_SERVICE_TYPE.is_refused_by_library();
}

#[test]
fn cli_refuses_unknown_service_type() {
    UNKNOWN_SERVICE_TYPE.is_refused_by_cli("cli_refuses_unknown_service_type");
}

#[test]
fn library_refuses_the_metrics_port() {
    PORT_OF_THE_METRICS_LISTENER.is_refused_by_library();
}

#[test]
fn cli_refuses_the_metrics_port() {
    PORT_OF_THE_METRICS_LISTENER.is_refused_by_cli("cli_refuses_the_metrics_port");
}

#[test]
fn library_refuses_unknown_deployment() {
    UNKNOWN_DEPLOYMENT.is_refused_by_library();
}

#[test]
fn cli_refuses_unknown_deployment() {
    UNKNOWN_DEPLOYMENT.is_refused_by_cli("cli_refuses_unknown_deployment");
}

#[test]
fn library_refuses_unknown_ci() {
    UNKNOWN_CI.is_refused_by_library();
}

#[test]
fn cli_refuses_unknown_ci() {
    UNKNOWN_CI.is_refused_by_cli("cli_refuses_unknown_ci");
}

#[test]
fn library_refuses_unknown_database() {
    UNKNOWN_DATABASE.is_refused_by_library();
}

#[test]
fn cli_refuses_unknown_database() {
    UNKNOWN_DATABASE.is_refused_by_cli("cli_refuses_unknown_database");
}

#[test]
fn library_refuses_port_out_of_range() {
    PORT_OUT_OF_RANGE.is_refused_by_library();
}

#[test]
fn cli_refuses_port_out_of_range() {
    PORT_OUT_OF_RANGE.is_refused_by_cli("cli_refuses_port_out_of_range");
}

#[test]
fn library_refuses_port_not_a_number() {
    PORT_NOT_A_NUMBER.is_refused_by_library();
}

#[test]
fn cli_refuses_port_not_a_number() {
    PORT_NOT_A_NUMBER.is_refused_by_cli("cli_refuses_port_not_a_number");
}

#[test]
fn library_refuses_name_starting_with_digit() {
    NAME_STARTS_WITH_DIGIT.is_refused_by_library();
}

#[test]
fn cli_refuses_name_starting_with_digit() {
    NAME_STARTS_WITH_DIGIT.is_refused_by_cli("cli_refuses_name_starting_with_digit");
}

#[test]
fn library_refuses_non_ascii_name() {
    NAME_NOT_ASCII.is_refused_by_library();
}

#[test]
fn cli_refuses_non_ascii_name() {
    NAME_NOT_ASCII.is_refused_by_cli("cli_refuses_non_ascii_name");
}

#[test]
fn library_refuses_rust_keyword_name() {
    NAME_IS_KEYWORD.is_refused_by_library();
}

#[test]
fn cli_refuses_rust_keyword_name() {
    NAME_IS_KEYWORD.is_refused_by_cli("cli_refuses_rust_keyword_name");
}

#[test]
fn cli_refuses_unknown_deployment_from_env() {
    UNKNOWN_DEPLOYMENT_FROM_ENV.is_refused_by_cli("cli_refuses_unknown_deployment_from_env");
}

#[test]
fn cli_refuses_unknown_ci_from_values_file() {
    UNKNOWN_CI_FROM_VALUES_FILE.is_refused_by_cli("cli_refuses_unknown_ci_from_values_file");
}
