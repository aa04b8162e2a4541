//! The binary edge: command line in, exit code out.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use nebula_runtime::{
    Exit,
    cli::{Cli, Command},
    commands,
    settings::TokioSettings,
    telemetry,
};

use {{crate_name}}::{App, Settings};

fn main() -> ExitCode {
    let cli = Cli::parse_for::<App>();
    let settings = match Settings::load(&cli.overrides()) {
        Ok(settings) => settings,
        Err(error) => return commands::fail(Exit::ConfigError, &error).into(),
    };
    if cli.check_config {
        return commands::print_settings(&settings).into();
    }
    if let Some(Command::Healthcheck) = cli.command {
        return commands::healthcheck(&settings.http).into();
    }
    let telemetry = match telemetry::init(&settings.log, env!("CARGO_PKG_NAME")) {
        Ok(telemetry) => telemetry,
        Err(error) => return commands::fail(Exit::ConfigError, &error).into(),
    };
    let exit = match cli.command {
        Some(Command::Migrate) => commands::migrate(&settings),
        _ => run(settings),
    };
    telemetry.shutdown();
    exit.into()
}

/// Runs the service until it stops, on a Tokio runtime built as `[tokio]`
/// says.
fn run(settings: Settings) -> Exit {
    let runtime = match tokio_runtime(&settings.tokio) {
        Ok(runtime) => runtime,
        Err(error) => {
            let error = std::io::Error::other(format!("cannot start the Tokio runtime: {error}"));
            return commands::fail(Exit::RuntimeFailure, &error);
        }
    };
    let exit = match runtime.block_on(nebula_runtime::run(settings)) {
        Ok(stopped) => stopped.exit(),
        Err(error) => commands::fail(error.exit(), &error),
    };
    // After a forced exit or an exceeded deadline, blocking work may still
    // hold runtime threads: leave without waiting for them.
    runtime.shutdown_background();
    exit
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
