//! Taking PostgreSQL away from a running service, and watching it answer:
//! a relay the test cuts ([`crate::proxy`]), or the test server itself
//! stopped and started.

use std::time::{Duration, Instant};

use nebula_runtime::testing::{Answer, answer, process::unpooled_client as client};

use crate::support::WAIT_LIMIT;
/// How a test takes PostgreSQL away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// A relay between the service and the server refuses new connections
    /// and drops open ones: works with any server, a CI service container
    /// included.
    ConnectionsCut,
    /// The server is stopped and started by the program named in
    /// `NEBULA_TEST_POSTGRES_CTL`, run as `PROGRAM stop` and `PROGRAM
    /// start`: only where the tests own the server (the template's harness
    /// gives one); skipped with a note elsewhere.
    ServerRestart,
}

/// The variable naming the program that stops and starts the test server.
pub const POSTGRES_CTL_VAR: &str = "NEBULA_TEST_POSTGRES_CTL";

/// Runs `PROGRAM action` from [`POSTGRES_CTL_VAR`] and waits for it.
pub async fn control_server(program: &str, action: &str) {
    let status = tokio::process::Command::new(program)
        .arg(action)
        .status()
        .await
        .unwrap_or_else(|error| panic!("{POSTGRES_CTL_VAR}={program} does not run: {error}"));
    assert!(status.success(), "`{program} {action}` failed: {status}");
}

/// Polls `url` until it answers `status`; returns how long that took.
pub async fn wait_for_status(url: &str, status: u16) -> Duration {
    let started = Instant::now();
    while answer(client().get(url).send().await) != Answer::Status(status) {
        assert!(
            started.elapsed() < WAIT_LIMIT,
            "{url} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}
