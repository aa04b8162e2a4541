//! Tests that run the service's own binary as a child process: real
//! signals, exit codes, stderr logs and resident memory, which in-process
//! tests cannot show. Unix only, since they send signals.
//!
//! Each test prints a `summary:` line; run with `--nocapture` to see them.
#![cfg(unix)]

mod config_errors;
mod load;
mod shutdown;
mod support;

/// This service type under load, overload and shutdown.
mod {{service_type}};
