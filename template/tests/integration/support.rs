//! This service's settings for tests; the other helpers are the runtime's
//! (`nebula_runtime::testing`: the service in-process, test databases, log
//! capture, bounded waits).

use {{crate_name}}::Settings;

/// Default settings, listening on free loopback ports.
pub fn settings() -> Settings {
    nebula_runtime::testing::settings()
}
