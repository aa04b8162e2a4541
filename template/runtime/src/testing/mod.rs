//! Helpers for a service's tests, with the `testing` feature (a
//! dev-dependency of the service): the service in-process on `127.0.0.1:0`
//! ([`start`]), a database of the test's own ([`TestDatabase`]: SQLite
//! always, PostgreSQL when `NEBULA_TEST_POSTGRES_URL` names a server), the
//! log events a test caused ([`Logs`]), bounded waits ([`eventually`]) and
//! the metrics text read back ([`metrics`]), and the service's binary as a
//! child process ([`process`]).
//! The runtime's own tests use them too.

mod database;
mod logs;
pub mod metrics;
#[cfg(unix)]
pub mod process;
mod service;

pub use self::{
    database::{Engine, POSTGRES_URL_VAR, TestDatabase},
    logs::{CaptureGuard, Logs},
    service::{Answer, Running, WAIT_LIMIT, answer, eventually, settings, start, start_unready},
};
