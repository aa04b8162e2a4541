//! Start-up and health of the database, in the background: the service
//! starts even while the database is down, stays not ready, and keeps
//! trying with jittered backoff, logging each failure, instead of exiting
//! and crash-looping. Once connected (and migrated) it checks the database
//! every `database.health_check_interval_ms` and opens or closes the
//! readiness gate; probes read the gate and never query the database.
//! While a write fault is in force ([`super::Faults`]) the same check also
//! tries a write ([`Database::probe_write`]), and ends the fault when one
//! commits.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Database, Fault, Migration, OpenError, migrate};
use crate::{
    Service,
    readiness::{Degradation, Gate},
    settings::duration_ms,
    tasks::{Context, TaskResult},
};

/// Fires once the database answered and its migrations are in place. Work
/// that needs the schema waits for it.
#[derive(Debug, Clone, Default)]
pub struct Connected(CancellationToken);

impl Connected {
    /// Waits until the database is connected.
    pub async fn wait(&self) {
        self.0.cancelled().await;
    }

    fn fire(&self) {
        self.0.cancel();
    }
}

/// First wait between two start-up attempts; it doubles up to
/// [`MAX_RETRY`], with jitter so that replicas do not retry in step.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// What [`supervise`] watches.
pub struct Supervised {
    /// The database to connect to and then watch.
    pub database: Database,
    /// The service's migrations, applied before it counts as connected.
    pub migrations: &'static [&'static [Migration]],
    /// Whether to apply the migrations, or only wait for the database to answer.
    pub migrate_on_start: bool,
    /// How often to check the database once connected.
    pub health_check_interval: Duration,
    /// The readiness gate, open while the database answers.
    pub gate: Gate,
    /// Fired once connected (and migrated).
    pub connected: Connected,
}

/// The database of a started service, and what tells whether it answers.
pub struct Started {
    /// The handle the service's handlers query through.
    pub database: Database,
    /// Open while the database answers; `/readyz` reports 503 while it is
    /// closed, and request handlers answer 503 at once instead of waiting
    /// out the database timeout.
    pub gate: Gate,
    /// Fires once connected and migrated.
    pub connected: Connected,
}

/// Opens the pool of `database.url`, adds the `database` readiness gate
/// and the `database_writes` degradation (a write fault in force), and
/// starts the supervisor task that connects, applies the service's migrations and then
/// watches the database's health.
///
/// # Errors
/// When the URL is unusable or its data folder cannot be made.
pub fn start<S: Service>(context: &mut Context<'_, S>) -> Result<Started, OpenError> {
    let settings = context.settings;
    let database = Database::open(&settings.database, settings.timeouts.database())?;
    let gate = Gate::closed("database");
    context.gates.push(gate.clone());
    database.faults().describe_metrics();
    let faults = database.faults().clone();
    context
        .degradations
        .push(Degradation::new("database_writes", move || {
            faults.write_fault().map(Fault::as_str)
        }));
    let connected = Connected::default();
    context.tasks.spawn(
        "database",
        supervise(
            Supervised {
                database: database.clone(),
                migrations: S::MIGRATIONS,
                migrate_on_start: settings.database.migrate_on_start,
                health_check_interval: Duration::from_millis(
                    settings.database.health_check_interval_ms,
                ),
                gate: gate.clone(),
                connected: connected.clone(),
            },
            context.draining.clone(),
        ),
    );
    Ok(Started {
        database,
        gate,
        connected,
    })
}

/// Connects (and migrates) with retries, then checks the database's health
/// until the drain starts.
///
/// # Errors
/// When a migration cannot apply to this database, which no retry fixes.
pub async fn supervise(supervised: Supervised, draining: CancellationToken) -> TaskResult {
    let Supervised {
        database,
        migrations,
        migrate_on_start,
        health_check_interval,
        gate,
        connected,
    } = supervised;
    let mut retry = FIRST_RETRY;
    let mut attempt = 1_u32;
    loop {
        let attempt_start = async {
            if migrate_on_start {
                migrate(&database, migrations).await
            } else {
                database.ping().await.map_err(Into::into)
            }
        };
        let started = tokio::select! {
            biased;
            () = draining.cancelled() => return Ok(()),
            started = attempt_start => started,
        };
        match started {
            Ok(()) => break,
            Err(error) if !error.is_transient() => return Err(error.into()),
            Err(error) => {
                let wait = jittered(retry);
                tracing::warn!(
                    attempt,
                    retry_in_ms = duration_ms(wait),
                    %error,
                    "database not available yet, not ready"
                );
                tokio::select! {
                    biased;
                    () = draining.cancelled() => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
                retry = (retry * 2).min(MAX_RETRY);
                attempt += 1;
            }
        }
    }
    tracing::info!(
        database.backend = database.backend().as_str(),
        migrated = migrate_on_start,
        "database connected"
    );
    gate.set(true);
    connected.fire();
    let mut checks = tokio::time::interval(health_check_interval);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = draining.cancelled() => return Ok(()),
            _ = checks.tick() => {}
        }
        let (answered, ()) = tokio::join!(database.ping(), async {
            // Only while a write fault is in force: nothing else ends one.
            let Some(fault) = database.faults().write_fault() else {
                return;
            };
            if fault == Fault::ReadOnly {
                database.reopen_connections().await;
            }
            if database.probe_write().await.is_ok() {
                database.faults().probe_wrote(fault);
            }
        });
        database.faults().publish();
        let healthy = answered.is_ok();
        if healthy != gate.is_open() {
            if healthy {
                tracing::info!("database reachable again, ready");
            } else {
                tracing::warn!("database unreachable, not ready");
            }
            gate.set(healthy);
        }
    }
}

/// `wait` scaled by a random factor in [0.5, 1.0).
#[must_use]
pub fn jittered(wait: Duration) -> Duration {
    wait.mul_f64(0.5 + fastrand::f64() / 2.0)
}
