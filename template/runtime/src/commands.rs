//! What a service's binary does besides running the service:
//! `--check-config`, the `healthcheck` and `migrate` commands, and the
//! report of a fatal error. Each returns the [`Exit`] the process ends
//! with; the commands run on a small current-thread runtime of their own,
//! not on the service's.

use std::{error::Error, fmt::Write as _, future::Future};

use crate::{Exit, Service, database, healthcheck, settings::HttpSettings, settings::Settings};

/// `--check-config`: the settings loaded, so they are valid; prints them as
/// TOML on stdout (any database password as `***`).
#[must_use]
#[expect(
    clippy::print_stdout,
    reason = "--check-config prints the effective settings"
)]
pub fn print_settings<S: Service>(settings: &Settings<S>) -> Exit {
    match toml::to_string(settings) {
        Ok(text) => {
            println!("{text}");
            Exit::Clean
        }
        Err(error) => fail(Exit::RuntimeFailure, &error),
    }
}

/// `healthcheck`: `GET /healthz` on this host's listen address; no logs,
/// only the error on stderr when it fails.
#[must_use]
pub fn healthcheck(http: &HttpSettings) -> Exit {
    on_small_runtime(healthcheck::check(http))
}

/// `migrate`: applies the service's and the runtime's migrations to
/// `database.url` (for teams that migrate in a step of their own, with
/// `database.migrate_on_start = false`).
#[must_use]
pub fn migrate<S: Service>(settings: &Settings<S>) -> Exit {
    on_small_runtime(database::migrate_command(settings))
}

fn on_small_runtime<E: Error>(command: impl Future<Output = Result<(), E>>) -> Exit {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(Exit::RuntimeFailure, &error),
    };
    match runtime.block_on(command) {
        Ok(()) => Exit::Clean,
        Err(error) => fail(Exit::RuntimeFailure, &error),
    }
}

/// Reports a fatal `error` on stderr as `error: ` and its chain of causes,
/// and returns `exit`: the binary's last word before it ends.
#[must_use]
#[expect(
    clippy::print_stderr,
    reason = "the binary edge reports fatal errors on stderr"
)]
pub fn fail(exit: Exit, error: &dyn Error) -> Exit {
    let mut message = format!("error: {error}");
    let mut cause = error.source();
    while let Some(error) = cause {
        let _ = write!(message, ": {error}");
        cause = error.source();
    }
    eprintln!("{message}");
    exit
}
