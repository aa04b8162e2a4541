//! What `/readyz` reports: not ready while the service drains, or while a
//! dependency it needs (its database) is unreachable. Liveness (`/healthz`)
//! never looks at dependencies, so an outage makes every replica not ready
//! instead of restarting them all.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio_util::sync::CancellationToken;

/// A condition readiness waits for, opened and closed by the subsystem that
/// watches it. Starts closed: nothing is ready until it has been checked.
#[derive(Debug, Clone)]
pub struct Gate {
    name: &'static str,
    open: Arc<AtomicBool>,
}

impl Gate {
    #[must_use]
    pub fn closed(name: &'static str) -> Self {
        Self {
            name,
            open: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn set(&self, open: bool) {
        self.open.store(open, Ordering::Relaxed);
    }

    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }
}

/// Why the service is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    Draining,
    /// The names of the closed gates.
    Waiting(Vec<&'static str>),
}

/// The drain token and the gates of one service.
#[derive(Debug, Clone)]
pub struct Readiness {
    draining: CancellationToken,
    gates: Arc<[Gate]>,
}

impl Readiness {
    #[must_use]
    pub fn new(draining: CancellationToken, gates: Vec<Gate>) -> Self {
        Self {
            draining,
            gates: gates.into(),
        }
    }

    /// # Errors
    /// [`NotReady`] says why.
    pub fn check(&self) -> Result<(), NotReady> {
        if self.draining.is_cancelled() {
            return Err(NotReady::Draining);
        }
        let closed: Vec<_> = self
            .gates
            .iter()
            .filter(|gate| !gate.is_open())
            .map(|gate| gate.name)
            .collect();
        if closed.is_empty() {
            Ok(())
        } else {
            Err(NotReady::Waiting(closed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_gate_is_open_and_not_draining() {
        let draining = CancellationToken::new();
        let database = Gate::closed("database");
        let readiness = Readiness::new(draining.clone(), vec![database.clone()]);
        assert_eq!(readiness.check(), Err(NotReady::Waiting(vec!["database"])));
        database.set(true);
        assert_eq!(readiness.check(), Ok(()));
        draining.cancel();
        assert_eq!(readiness.check(), Err(NotReady::Draining));
    }
}
