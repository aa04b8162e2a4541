//! The service's own binary as a child process, as production runs it:
//! real signals and exit codes, which in-process tests cannot show. Unix
//! only, since it sends signals.
//!
//! The template checks much more on the binaries it generates (crashes,
//! overload, hostile clients, database faults, replicas, traces, the
//! deployment files) in its own repository; this is the one such test a
//! service keeps, to run on every change of its own.
#![cfg(unix)]

mod {{service_type}};
