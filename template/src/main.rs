//! The binary edge: command line in, exit code out.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use nebula_runtime::{
    Exit,
    cli::{Cli, Command},
    database, healthcheck,
    settings::TokioSettings,
    telemetry,
};

use {{crate_name}}::{App, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse_for::<App>();
    let settings = match Settings::load(&cli.overrides()) {
        Ok(settings) => settings,
        Err(error) => return fail(Exit::ConfigError, &error.into()),
    };
    if cli.check_config {
        return print_settings(&settings);
    }
    if let Some(Command::Healthcheck) = cli.command {
        return check_health(&settings);
    }
    let telemetry = match telemetry::init(&settings.log, env!("CARGO_PKG_NAME")) {
        Ok(telemetry) => telemetry,
        Err(error) => return fail(Exit::ConfigError, &error.into()),
    };
    if let Some(Command::Migrate) = cli.command {
        let exit = migrate(&settings);
        telemetry.shutdown();
        return exit;
    }
    let runtime = match tokio_runtime(&settings.tokio) {
        Ok(runtime) => runtime,
        Err(error) => {
            let error = anyhow::Error::new(error).context("cannot start the Tokio runtime");
            telemetry.shutdown();
            return fail(Exit::RuntimeFailure, &error);
        }
    };
    let exit = match runtime.block_on(nebula_runtime::run(settings)) {
        Ok(stopped) => stopped.exit(),
        Err(error) => fail_exit(error.exit(), &error.into()),
    };
    // After a forced exit or an exceeded deadline, blocking work may still
    // hold runtime threads: leave without waiting for them.
    runtime.shutdown_background();
    telemetry.shutdown();
    exit.into()
}

/// The Tokio runtime the service runs on, its threads as `[tokio]` says.
fn tokio_runtime(settings: &TokioSettings) -> std::io::Result<Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        .max_blocking_threads(settings.max_blocking_threads);
    if settings.worker_threads > 0 {
        builder.worker_threads(settings.worker_threads);
    }
    builder.build()
}

fn fail(exit: Exit, error: &anyhow::Error) -> ExitCode {
    fail_exit(exit, error).into()
}

#[expect(
    clippy::print_stderr,
    reason = "the binary edge reports fatal errors on stderr"
)]
fn fail_exit(exit: Exit, error: &anyhow::Error) -> Exit {
    eprintln!("error: {error:#}");
    exit
}

/// Runs the health check on a small runtime of its own: no logging, and
/// only the error on stderr when it fails.
fn check_health(settings: &Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(Exit::RuntimeFailure, &error.into()),
    };
    match runtime.block_on(healthcheck::check(&settings.http)) {
        Ok(()) => Exit::Clean.into(),
        Err(error) => fail(Exit::RuntimeFailure, &error.into()),
    }
}

/// Applies the migrations on a small runtime of its own.
fn migrate(settings: &Settings) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(Exit::RuntimeFailure, &error.into()),
    };
    match runtime.block_on(database::migrate_command(settings)) {
        Ok(()) => Exit::Clean.into(),
        Err(error) => fail(Exit::RuntimeFailure, &error.into()),
    }
}

#[expect(
    clippy::print_stdout,
    reason = "--check-config prints the effective settings"
)]
fn print_settings(settings: &Settings) -> ExitCode {
    match toml::to_string(settings) {
        Ok(text) => {
            println!("{text}");
            Exit::Clean.into()
        }
        Err(error) => fail(Exit::RuntimeFailure, &error.into()),
    }
}
