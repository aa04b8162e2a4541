//! What `/readyz` reports: not ready while the service drains, or while a
//! dependency it needs (its database) is unreachable. Liveness (`/healthz`)
//! never looks at dependencies, so an outage makes every replica not ready
//! instead of restarting them all.
//!
//! A dependency that works only in part (a database that reads but refuses
//! writes) leaves the service ready and is named in the answer's body
//! ([`Degradation`]): on a shared volume or database every replica has the
//! same fault, and taking them all out of the load balancer would also
//! stop the reads that still work.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
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
    /// A gate named `name` (as `/readyz` lists it), closed until set.
    #[must_use]
    pub fn closed(name: &'static str) -> Self {
        Self {
            name,
            open: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Opens or closes it.
    pub fn set(&self, open: bool) {
        self.open.store(open, Ordering::Relaxed);
    }

    /// Whether it is open.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }
}

/// A condition that lessens what the service can do without making it
/// unready, such as its database refusing writes; read, like a gate, from
/// state that a background check keeps.
#[derive(Clone)]
pub struct Degradation {
    name: &'static str,
    reason: Arc<dyn Fn() -> Option<&'static str> + Send + Sync>,
}

impl Degradation {
    /// `reason` says why the service is lessened now, or `None` while it
    /// is not.
    pub fn new(
        name: &'static str,
        reason: impl Fn() -> Option<&'static str> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            reason: Arc::new(reason),
        }
    }
}

impl std::fmt::Debug for Degradation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Degradation")
            .field("name", &self.name)
            .field("reason", &(self.reason)())
            .finish()
    }
}

/// Why the service is not ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The drain has started: the service takes no new work.
    Draining,
    /// The names of the closed gates.
    Waiting(Vec<&'static str>),
}

/// The drain token, the gates and the degradations of one service.
#[derive(Debug, Clone)]
pub struct Readiness {
    draining: CancellationToken,
    gates: Arc<[Gate]>,
    degradations: Arc<[Degradation]>,
}

impl Readiness {
    /// Readiness that ends when `draining` fires and waits for every gate
    /// in `gates`; `degradations` are reported but do not make it unready.
    #[must_use]
    pub fn new(
        draining: CancellationToken,
        gates: Vec<Gate>,
        degradations: Vec<Degradation>,
    ) -> Self {
        Self {
            draining,
            gates: gates.into(),
            degradations: degradations.into(),
        }
    }

    /// The degradations in force, by name, with their reasons.
    #[must_use]
    pub fn degraded(&self) -> BTreeMap<&'static str, &'static str> {
        self.degradations
            .iter()
            .filter_map(|degradation| Some((degradation.name, (degradation.reason)()?)))
            .collect()
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
        let readiness = Readiness::new(draining.clone(), vec![database.clone()], Vec::new());
        assert_eq!(readiness.check(), Err(NotReady::Waiting(vec!["database"])));
        database.set(true);
        assert_eq!(readiness.check(), Ok(()));
        draining.cancel();
        assert_eq!(readiness.check(), Err(NotReady::Draining));
    }

    #[test]
    fn a_degradation_is_named_only_while_it_lasts() {
        let writes = Arc::new(AtomicBool::new(true));
        let reason = writes.clone();
        let readiness = Readiness::new(
            CancellationToken::new(),
            Vec::new(),
            vec![Degradation::new("database_writes", move || {
                (!reason.load(Ordering::Relaxed)).then_some("disk_full")
            })],
        );
        assert!(readiness.degraded().is_empty());
        writes.store(false, Ordering::Relaxed);
        assert_eq!(
            readiness.degraded(),
            BTreeMap::from([("database_writes", "disk_full")])
        );
        assert_eq!(readiness.check(), Ok(()), "still ready");
    }
}
