//! Bad answers are refused before a project is written, with a message that
//! names the option and what it accepts, through both entry points: the
//! cargo-generate library (0.26) and the `cargo generate` binary (0.23).
//!
//! What is left on disk, checked exactly (cargo-generate 0.23.14 and 0.26.0
//! behave the same):
//! - A bad project name is refused by the template's `init` hook, which runs
//!   before cargo-generate creates the project folder: nothing is left.
//! - A bad `service_type`, `http_port`, `deployment`, `ci` or `database` is
//!   refused by the template's `pre` hook, which cargo-generate runs AFTER creating the project folder
//!   (`expand_template`: `destination.create()` comes before the placeholders
//!   are filled and the hooks run). An EMPTY project folder is left behind,
//!   and a second run with the same name then fails with "Target directory
//!   already exists". Hooks cannot remove it; if a cargo-generate release
//!   stops creating it early, these expectations fail and must be updated to
//!   `Leftover::Nothing`.

mod common;

use common::{Scratch, cli_version, generate_with_cli, generate_with_library, mentions};

/// What a refused generation leaves in the output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leftover {
    Nothing,
    /// The project folder, empty.
    EmptyProjectFolder,
}

/// One bad input and what the refusal must look like.
struct Case {
    name: &'static str,
    defines: &'static [&'static str],
    /// Phrases the message must contain as whole words: the option, then
    /// what it accepts. (cargo-generate's own message for `choices` and
    /// `regex` placeholders lists nothing accepted, which is why the template
    /// validates them in its `pre` hook.)
    mentions: &'static [&'static str],
    leftover: Leftover,
}

const UNKNOWN_SERVICE_TYPE: Case = Case {
    name: "bad-type",
    defines: &["service_type=cron"],
    mentions: &["service_type", "api", "worker", "scheduler"],
    leftover: Leftover::EmptyProjectFolder,
};

const PORT_OUT_OF_RANGE: Case = Case {
    name: "bad-port",
    defines: &["http_port=70000"],
    mentions: &["http_port", "65535"],
    leftover: Leftover::EmptyProjectFolder,
};

const PORT_NOT_A_NUMBER: Case = Case {
    name: "bad-port",
    defines: &["http_port=abc"],
    mentions: &["http_port", "65535"],
    leftover: Leftover::EmptyProjectFolder,
};

const PORT_OF_THE_METRICS_LISTENER: Case = Case {
    name: "bad-port",
    defines: &["http_port=9464"],
    mentions: &["http_port", "9464", "metrics"],
    leftover: Leftover::EmptyProjectFolder,
};

const UNKNOWN_DEPLOYMENT: Case = Case {
    name: "bad-deployment",
    defines: &["deployment=helm"],
    mentions: &["deployment", "kubernetes", "none"],
    leftover: Leftover::EmptyProjectFolder,
};

const UNKNOWN_CI: Case = Case {
    name: "bad-ci",
    defines: &["ci=gitlab"],
    mentions: &["ci", "github", "none"],
    leftover: Leftover::EmptyProjectFolder,
};

const UNKNOWN_DATABASE: Case = Case {
    name: "bad-database",
    defines: &["service_type=worker", "database=mysql"],
    mentions: &["database", "sqlite", "postgres"],
    leftover: Leftover::EmptyProjectFolder,
};

const NAME_STARTS_WITH_DIGIT: Case = Case {
    name: "123abc",
    defines: &[],
    mentions: &["project name", "ASCII letter"],
    leftover: Leftover::Nothing,
};

const NAME_NOT_ASCII: Case = Case {
    name: "café",
    defines: &[],
    mentions: &["project name", "ASCII letter"],
    leftover: Leftover::Nothing,
};

const NAME_IS_KEYWORD: Case = Case {
    name: "async",
    defines: &[],
    mentions: &["project name", "keyword"],
    leftover: Leftover::Nothing,
};

impl Case {
    fn defines(&self) -> Vec<String> {
        self.defines
            .iter()
            .map(|&define| define.to_owned())
            .collect()
    }

    /// Checks the message and the output folder after a refused run, and
    /// reports every problem at once.
    fn assert_refusal(&self, via: &str, message: &str, scratch: &Scratch) {
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
            "{via}: refusing --name {:?} {:?}:\n  - {}\nMessage:\n{message}",
            self.name,
            self.defines,
            problems.join("\n  - ")
        );
    }

    fn is_refused_by_library(&self) {
        let scratch = Scratch::new();
        match generate_with_library(&scratch, self.name, &self.defines()) {
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
                self.assert_refusal("library", &message, &scratch);
            }
        }
    }

    fn is_refused_by_cli(&self, test_name: &str) {
        if cli_version(test_name).is_none() {
            return;
        }
        let scratch = Scratch::new();
        let run = generate_with_cli(&scratch, self.name, &self.defines());
        assert!(
            !run.succeeded(),
            "`{}` was accepted:\n{}",
            run.command,
            run.text()
        );
        common::note(&format!(
            "cli refuses {:?} {:?} ({}): {}",
            self.name,
            self.defines,
            run.output.status,
            String::from_utf8_lossy(&run.output.stderr)
                .trim()
                .replace('\n', " | ")
        ));
        self.assert_refusal(&format!("`{}`", run.command), &run.error_text(), &scratch);
    }
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
