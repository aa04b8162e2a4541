//! Command-line interface. Flags override every other settings layer.

use std::{net::SocketAddr, path::PathBuf};

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::{Service, settings::Overrides, telemetry::LogFormat};

/// Command-line arguments. The name, version and description in `--help`
/// and `--version` are the service's ([`Cli::parse_for`]).
#[derive(Debug, Parser)]
#[command(long_about = None)]
pub struct Cli {
    /// Config file (TOML). Without it, config/default.toml is read if present.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// HTTP listen address, such as 127.0.0.1:8080. Port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Log output format.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Validate the configuration, print the effective settings and exit.
    #[arg(long)]
    pub check_config: bool,

    /// Without a command, the service runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary does instead of running the service.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Exit 0 when the service on this host answers GET /healthz with 200,
    /// non-zero otherwise (1 when it does not answer 200): a health check
    /// for containers, whose images often lack curl. Reads the same settings
    /// as the service to find its address.
    Healthcheck,
    /// Apply the embedded database migrations to `database.url` and exit,
    /// for teams that migrate in a step of their own before the service
    /// starts (with `database.migrate_on_start = false`).
    Migrate,
}

impl Cli {
    /// Parses the process's arguments for service `S`; on a usage error, or
    /// for `--help` and `--version`, prints and exits as clap does (2 on an
    /// error, 0 otherwise).
    #[must_use]
    pub fn parse_for<S: Service>() -> Self {
        let command = Self::command()
            .name(S::NAME)
            .version(S::VERSION)
            .about(S::DESCRIPTION);
        Self::from_arg_matches(&command.get_matches()).unwrap_or_else(|error| error.exit())
    }

    /// The settings layer the flags make.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            listen: self.listen,
            log_format: self.log_format,
        }
    }
}
