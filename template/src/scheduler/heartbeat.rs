//! The example action, `heartbeat`: logs that the schedule is alive. A
//! model for actions of your own; keep it, change it or remove its
//! registration in [`super::actions`] and its job in the schedule.

use nebula_runtime::{scheduling::Action, tasks::BoxError};

/// Logs `heartbeat` with the run's key (`job/period start`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Heartbeat;

impl Heartbeat {
    /// The name a job's `action` gives.
    pub const NAME: &'static str = "heartbeat";
}

impl Action for Heartbeat {
    async fn run(&self, key: &str) -> Result<(), BoxError> {
        tracing::info!(run.key = key, "heartbeat");
        Ok(())
    }
}
