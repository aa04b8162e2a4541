//! A service for the runtime's own tests: one small section, `[test]`, no
//! migrations, one route.

use axum::{Router, http::StatusCode, routing::get};
use serde::{Deserialize, Serialize};

use crate::{
    Service,
    database::Migration,
    settings::{Problems, Section},
    tasks::{BoxError, Context},
    timeouts::Timeouts,
};

pub struct TestService;

/// `[test]`: a number and a list, so that the loader's handling of a
/// service's section is tested too.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSettings {
    pub size: u32,
    /// Settable from the environment as comma-separated values.
    pub names: Vec<String>,
}

impl Section for TestSettings {
    const ENVIRONMENT_LISTS: &'static [&'static str] = &["test.names"];

    fn validate(&self, problems: &mut Problems) {
        if self.size > 10 {
            problems.add("test.size", "must be at most 10");
        }
        for (index, name) in self.names.iter().enumerate() {
            if name.contains(' ') {
                problems.add(format!("test.names[{index}]"), "must be one word");
            }
        }
    }
}

impl Service for TestService {
    const KIND: &'static str = "test";
    const NAME: &'static str = "test-service";
    const VERSION: &'static str = "0.0.1";
    const DESCRIPTION: &'static str = "The runtime's test service";
    const ENV_PREFIX: &'static str = "TEST_SERVICE";
    const DEFAULT_PORT: u16 = 8080;
    const DEFAULT_DATABASE_URL: &'static str = "sqlite://data/test_service.db?mode=rwc";
    const TIMEOUTS: Timeouts = Timeouts::NEBULA;
    const MIGRATIONS: &'static [&'static [Migration]] = &[];
    type Settings = TestSettings;

    /// One route with a path parameter, for the request metrics' route
    /// label.
    fn start(_context: &mut Context<'_, Self>) -> Result<Router, BoxError> {
        Ok(Router::new().route("/things/{id}", get(|| async { StatusCode::NO_CONTENT })))
    }
}
