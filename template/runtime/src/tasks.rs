//! Supervision of the long-running subsystems: the HTTP server, a worker
//! pool, a scheduler. Each runs as a named task in one `JoinSet`, so the
//! service can wait for all of them during the drain, tell which ones are
//! still running at the deadline, and notice when one ends too early.

use std::{collections::HashMap, error::Error, future::Future};

use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::{
    Service,
    readiness::{Degradation, Gate},
    settings::Settings,
};

/// The error a task or a service's start may fail with: any that can cross threads.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// What a supervised task returns.
pub type TaskResult = Result<(), BoxError>;

/// Why a supervised task ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TaskFailure {
    /// The task returned an error.
    #[error("task `{name}` failed: {source}")]
    Failed {
        /// The name the task was spawned under.
        name: &'static str,
        /// The error it returned.
        source: BoxError,
    },
    /// The task panicked, or was aborted.
    #[error("task `{name}` panicked")]
    Panicked {
        /// The name the task was spawned under.
        name: &'static str,
    },
    /// The task returned while the service was meant to keep running.
    #[error("task `{name}` stopped before shutdown was requested")]
    EndedEarly {
        /// The name the task was spawned under.
        name: &'static str,
    },
}

/// The set of supervised tasks.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<TaskResult>,
    names: HashMap<Id, &'static str>,
}

impl Tasks {
    /// Runs `task` in the set, under the `name` that logs and failures give it.
    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = TaskResult> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits for the next task to end. `None` once every task has ended.
    pub async fn join_next(&mut self) -> Option<(&'static str, Result<(), TaskFailure>)> {
        let joined = self.set.join_next_with_id().await?;
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(error) => error.id(),
        };
        let name = self.names.remove(&id).unwrap_or("unnamed");
        let result = match joined {
            Ok((_, Ok(()))) => Ok(()),
            Ok((_, Err(source))) => Err(TaskFailure::Failed { name, source }),
            Err(_) => Err(TaskFailure::Panicked { name }),
        };
        Some((name, result))
    }

    /// Names of the tasks still running, for the deadline log.
    #[must_use]
    pub fn running(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.names.values().copied().collect();
        names.sort_unstable();
        names
    }

    /// Whether every task has ended.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Aborts the tasks still running: the last resort for those that ignore cancellation.
    pub fn abort_all(&mut self) {
        self.set.abort_all();
    }
}

/// What a service type gets to set itself up: the settings, the two
/// shutdown tokens, the task set to run its subsystems in, and the
/// readiness gates and degradations it may add.
pub struct Context<'a, S: Service> {
    /// The service's settings, loaded and validated.
    pub settings: &'a Settings<S>,
    /// Cancelled when the drain starts: stop taking new work, finish the rest.
    pub draining: CancellationToken,
    /// Cancelled when the drain grace runs out: cancel whatever is running,
    /// and log it as abandoned.
    pub abandon: CancellationToken,
    /// Where to spawn the service's long-running subsystems; the drain waits for them.
    pub tasks: &'a mut Tasks,
    /// Conditions `/readyz` waits for besides the drain, such as the
    /// database answering.
    pub gates: &'a mut Vec<Gate>,
    /// Conditions `/readyz` names without turning unready, such as the
    /// database refusing writes.
    pub degradations: &'a mut Vec<Degradation>,
}
