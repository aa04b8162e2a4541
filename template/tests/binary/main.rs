//! Tests that run the service's own binary as a child process: real
//! signals, exit codes, stderr logs and resident memory, which in-process
//! tests cannot show. Unix only, since they send signals.
//!
//! Each test prints a `summary:` line; run with `--nocapture` to see them.
#![cfg(unix)]

mod config_errors;
{%- if deployment == "kubernetes" %}
mod container;
{%- endif %}
mod edge;
{%- if service_type != "scheduler" %}
mod faults;
mod load;
{%- endif %}
{%- if service_type != "scheduler" %}
mod outage;
mod proxy;
{%- endif %}
mod shutdown;
mod support;
#[cfg(feature = "otel")]
mod traces;

/// This service type under load, overload and shutdown.
mod {{service_type}};
