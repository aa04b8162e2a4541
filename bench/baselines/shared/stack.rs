//! The start-up a hand-written service on the generated one's stack would
//! have: clap reads the command line, config layers the environment over an
//! optional TOML file, tracing-subscriber writes JSON logs to stderr (where
//! the generated service writes its logs, and where `scripts/bench` reads).
//! Both database baselines include this file, so that their build covers the
//! crates a generated service is built from, not just axum and sqlx.

use std::path::PathBuf;

use clap::Parser;
use config::{Config, Environment, File};
use serde::Deserialize;

#[derive(Parser)]
struct Cli {
    /// A TOML file of settings; the environment overrides it.
    #[arg(long, default_value = "baseline.toml")]
    config: PathBuf,
}

#[derive(Deserialize)]
pub struct Settings {
    /// From `DATABASE_URL` in the environment.
    pub database_url: String,
}

/// Parses the command line, starts the JSON logs and loads the settings.
pub fn start() -> Settings {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .init();
    Config::builder()
        .add_source(File::from(cli.config).required(false))
        .add_source(Environment::default())
        .build()
        .and_then(Config::try_deserialize)
        .unwrap_or_else(|error| panic!("bad settings: {error}"))
}
