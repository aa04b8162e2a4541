//! The template's own checks on a generated service, run by the harness
//! (`tests/cargo_checks.rs`) against the binary of a freshly generated
//! project of every type: signals and the drain, load and overload,
//! crashes, hostile clients, database faults and outages, replicas, traces,
//! the binary run as the image runs it, bad configuration, and the
//! deployment files held to what the binary loads and serves.
//!
//! They treat the service as a black box: a binary, its settings through
//! the environment, its HTTP answers, its JSON logs, its database and its
//! exit code. So they are built once, here, and the generated projects keep
//! only the tests of their own code (and one test of their own binary).
//! What a project declares that a check needs (its name, kind, settings
//! prefix) is read from its files ([`project`]).
//!
//! One test target per service type (`tests/api.rs`, `tests/worker.rs`,
//! `tests/scheduler.rs`) and one for the deployment files
//! (`tests/deployment.rs`); this library is what they share.

pub mod deployment;
pub mod held_request;
pub mod load;
pub mod outage;
mod project;
pub mod proxy;
pub mod support;

pub use project::{BINARY_VAR, PROJECT_VAR, Project, project};
