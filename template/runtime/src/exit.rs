//! Process exit codes. Each outcome has its own code so that supervisors,
//! deploy tooling and tests can tell a clean drain from lost work.

use std::process::ExitCode;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success: every accepted piece of work finished within the drain
    /// grace, or `--check-config` found the settings valid.
    Clean,
    /// The service failed: a task crashed or the server could not run.
    RuntimeFailure,
    /// The grace ran out; remaining work was cancelled and logged.
    DeadlineExceeded,
    /// The settings were invalid; nothing was started.
    ConfigError,
    /// A second signal arrived during the drain; the process left at once.
    Forced,
}

impl Exit {
    /// The numeric code. 2 is left to clap for command-line usage errors.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Clean => 0,
            Self::RuntimeFailure => 1,
            Self::DeadlineExceeded => 75,
            Self::ConfigError => 78,
            Self::Forced => 130,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}
