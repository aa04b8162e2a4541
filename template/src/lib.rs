//! {{description}}
//!
//! The service's own code, on the runtime crate (`runtime/`, nebula-runtime)
//! that holds the machinery: [`App`] tells the runtime who this service is,
//! its defaults and how it starts, and [`{{service_type}}`] is the code of its
//! type. The binary in `main.rs` parses the command line and maps the
//! outcome to an exit code; tests run the service in-process with
//! [`Service::bind`] then [`Service::run`] and a `Shutdown` they control.

use axum::Router;
use nebula_runtime::{
    database::Migration,
    tasks::{BoxError, Context},
    timeouts::Timeouts,
};

pub mod {{service_type}};

/// The kind of service this crate was generated as.
pub const SERVICE_KIND: &str = "{{service_type}}";

/// Prefix of every environment variable the service reads its settings
/// from: `{ENV_PREFIX}_SECTION__KEY`.
pub const ENV_PREFIX: &str = "{{crate_name | shouty_snake_case}}";

/// The port in the default listen address, chosen when the project was
/// generated.
pub const DEFAULT_PORT: u16 = {{http_port}};

/// The default `database.url`: a SQLite file under data/ in the working
/// directory.
pub const DATABASE_URL: &str = "sqlite://data/{{crate_name}}.db?mode=rwc";

/// This service's own migrations, `migrations/*.sql` in version order,
/// embedded by `build.rs`: add a migration by adding a file.
pub const OWN_MIGRATIONS: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The service's settings: the runtime's sections and `[{{service_type}}]`.
pub type Settings = nebula_runtime::Settings<App>;

/// The service bound to its listeners, ready to run.
pub type Service = nebula_runtime::BoundService<App>;

/// This service, as the runtime knows it.
pub struct App;

impl nebula_runtime::Service for App {
    const KIND: &'static str = SERVICE_KIND;
    const NAME: &'static str = env!("CARGO_PKG_NAME");
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = env!("CARGO_PKG_DESCRIPTION");
    const ENV_PREFIX: &'static str = ENV_PREFIX;
    const DEFAULT_PORT: u16 = DEFAULT_PORT;
    const DEFAULT_DATABASE_URL: &'static str = DATABASE_URL;
    /// The Nebula timeout rules; `[timeouts]` overrides them per deployment.
    const TIMEOUTS: Timeouts = Timeouts {
        // One operation: a request handled, a job attempt.
        default_ms: 30_000,
        // One database call, the wait for a pooled connection included.
        database_ms: 5_000,
        // One outbound HTTP call, connect included.
        http_client_ms: 10_000,
    };
    const MIGRATIONS: &'static [&'static [Migration]] = {{service_type}}::MIGRATIONS;
    type Settings = {{service_type}}::Settings;

    fn start(context: &mut Context<'_, Self>) -> Result<Router, BoxError> {
        {{service_type}}::start(context)
    }
{%- if service_type == "scheduler" %}

    fn check_settings(settings: &Settings, problems: &mut nebula_runtime::settings::Problems) {
        scheduler::check_settings(settings, problems);
    }
{%- endif %}
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_runtime::settings::Problems;

    #[test]
    fn shipped_config_file_matches_the_built_in_defaults() {
        let shipped: Settings = toml::from_str(include_str!("../config/default.toml"))
            .expect("config/default.toml parses into Settings");
        assert_eq!(
            shipped,
            Settings::default(),
            "config/default.toml and Settings::default() disagree"
        );
    }

    #[test]
    fn defaults_are_valid() {
        let mut problems = Problems::default();
        Settings::default().validate(&mut problems);
        let problems = problems.into_inner();
        assert!(problems.is_empty(), "{problems:?}");
    }
}
