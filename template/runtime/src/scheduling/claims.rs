//! The [`Ledger`] of the service: periods claimed in the run table that
//! every replica shares, and what happens to a run whose replica died.
//!
//! A run holds its period for a lease of the job's timeout plus three
//! database timeouts ([`lease`]): the claim, the run (cut at its timeout)
//! and the first write of its outcome each fit in it, with a database
//! timeout to spare for the replicas' clocks, which must be kept in sync
//! (NTP). A lease that runs out means its replica died, hung, was paused
//! or cut off from the database. A replica that found the job held
//! elsewhere looks again when the lease runs out, and then, by the job's
//! [`Delivery`]:
//! - `at_most_once` (the default): records the period `lost`; it is not
//!   run again. A call that is not safe to repeat is never made twice by a
//!   takeover, and a period can be missed.
//! - `at_least_once`: takes the period over and runs it again, under a new
//!   token; the tick it was found at still runs, late. A period is not
//!   missed this way, and can be run twice; the call carries the period's
//!   `Idempotency-Key` so its target can tell.
//!
//! The replica that lost its run can no longer record it: its token no
//! longer matches. If it was only paused, its call may still be under way
//! while the period runs again elsewhere: the fence stops its write, not
//! its call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{
    runs::{Claim, RunStore, Running},
    schedule::{Decision, Finished, Ledger, RunOutcome},
};
use crate::database::{DbError, jittered, now_ms};

/// Counter of claims and what they found, by `job` and `result`.
pub const CLAIMS: &str = "nebula_scheduler_claims_total";

/// Describes the claim series for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_counter!(
        CLAIMS,
        "Periods looked at by this replica, by job and result: won, taken (by another replica), taken_over, recorded_lost, fenced or error"
    );
}

/// What happens to a period whose replica died mid-run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// The period is recorded lost, never run twice.
    #[default]
    AtMostOnce,
    /// Another replica runs the period again once the lease runs out.
    AtLeastOnce,
}

/// Attempts at recording an outcome before it is left to the lease.
const RECORD_ATTEMPTS: u32 = 3;
const RECORD_RETRY: Duration = Duration::from_millis(200);

/// One job's claims in the shared run table.
#[derive(Debug, Clone)]
pub struct Claims {
    pub store: RunStore,
    pub delivery: Delivery,
    /// How long a claim holds its period without being recorded.
    pub lease: Duration,
    /// How long finished runs stay in the history.
    pub retention: Duration,
}

fn count(job: &str, result: &'static str) {
    metrics::counter!(CLAIMS, "job" => job.to_owned(), "result" => result).increment(1);
}

impl Claims {
    /// Acts on a run held elsewhere: wait for its lease, or deal with it.
    async fn held_elsewhere(&self, job: &str, running: Running) -> Decision {
        if running.lease_until > now_ms() {
            count(job, "taken");
            return Decision::Watch(running);
        }
        match self.delivery {
            Delivery::AtLeastOnce => match self.store.take_over(job, &running, self.lease).await {
                Ok(Some(held)) => {
                    count(job, "taken_over");
                    tracing::warn!(
                        job.name = job,
                        period_start_ms = running.period_start,
                        previous.replica = %running.replica,
                        "run taken over: its replica stopped answering; running the period again"
                    );
                    Decision::Run(held)
                }
                Ok(None) => self.look_again(job).await,
                Err(_) => Self::failed(job),
            },
            Delivery::AtMostOnce => match self.store.mark_lost(job, &running).await {
                Ok(true) => {
                    count(job, "recorded_lost");
                    tracing::warn!(
                        job.name = job,
                        period_start_ms = running.period_start,
                        previous.replica = %running.replica,
                        "run recorded lost: its replica stopped answering; the period is not run again"
                    );
                    Decision::Skip
                }
                Ok(false) => self.look_again(job).await,
                Err(_) => Self::failed(job),
            },
        }
    }

    /// The watched run changed meanwhile: watch the job's current run, if
    /// another replica holds one.
    async fn look_again(&self, job: &str) -> Decision {
        match self.store.running(job).await {
            Ok(Some(running)) if running.lease_until > now_ms() => Decision::Watch(running),
            Ok(_) => Decision::Skip,
            Err(_) => Self::failed(job),
        }
    }

    /// The database did not answer: this period is not run here. The error
    /// was logged with its `db.operation`.
    fn failed(job: &str) -> Decision {
        count(job, "error");
        Decision::Skip
    }

    async fn record(&self, job: &str, run: &Finished) -> Result<bool, DbError> {
        // A cancelled run is recorded in the drain's short margin: once.
        let attempts = if run.outcome == RunOutcome::Cancelled {
            1
        } else {
            RECORD_ATTEMPTS
        };
        let mut retry = RECORD_RETRY;
        let mut attempt = 1;
        loop {
            let written =
                if run.outcome == RunOutcome::Cancelled && self.delivery == Delivery::AtLeastOnce {
                    self.store.release(job, run.held).await
                } else {
                    self.store
                        .finish(
                            job,
                            run.held,
                            run.outcome.as_str(),
                            run.duration,
                            run.error.as_deref(),
                        )
                        .await
                };
            match written {
                Err(error) if error.is_transient() && attempt < attempts => {
                    tokio::time::sleep(jittered(retry)).await;
                    retry *= 2;
                    attempt += 1;
                }
                written => return written,
            }
        }
    }
}

impl Ledger for Claims {
    async fn claim(&self, job: &str, period_start: i64) -> Decision {
        // A run found lost, or one that ended meanwhile, frees the job:
        // the period is claimed again, once.
        for _ in 0..2 {
            let decision = match self.store.claim(job, period_start, self.lease).await {
                Ok(Claim::Won(held)) => {
                    count(job, "won");
                    return Decision::Run(held);
                }
                Ok(Claim::Taken(Some(running))) if running.period_start != period_start => {
                    self.held_elsewhere(job, running).await
                }
                Ok(Claim::Taken(Some(running))) => return self.held_elsewhere(job, running).await,
                // Another period's run held the job and has just ended:
                // this period may still be free.
                Ok(Claim::Taken(None)) => Decision::Skip,
                Err(_) => return Self::failed(job),
            };
            if decision != Decision::Skip {
                return decision;
            }
        }
        count(job, "taken");
        Decision::Skip
    }

    async fn look_after(&self, job: &str, running: &Running) -> Decision {
        self.held_elsewhere(job, running.clone()).await
    }

    async fn finish(&self, job: &str, run: Finished) {
        let period_start_ms = run.held.period_start;
        match self.record(job, &run).await {
            Ok(true) => {}
            Ok(false) => {
                count(job, "fenced");
                tracing::warn!(
                    job.name = job,
                    period_start_ms,
                    outcome = run.outcome.as_str(),
                    "run result refused: the period was taken over or recorded lost while this replica held it past its lease"
                );
            }
            Err(error) => tracing::warn!(
                job.name = job,
                period_start_ms,
                %error,
                "run result not recorded; the period stays claimed until its lease runs out"
            ),
        }
        if run.outcome != RunOutcome::Cancelled {
            let cutoff = now_ms().saturating_sub(crate::database::ms(self.retention));
            // A failure is logged with its operation; the next run prunes.
            let _ = self.store.prune(job, cutoff).await;
        }
    }
}

/// How long a claim holds its period: the job's `timeout`, plus three
/// database timeouts (the claim, the outcome's first write, and the
/// replicas' clock difference).
#[must_use]
pub fn lease(timeout: Duration, database_timeout: Duration) -> Duration {
    timeout + database_timeout * 3
}

/// The name this replica writes in the `replica` column: the host name
/// (the pod's name in Kubernetes) and the process id.
#[must_use]
pub fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}
