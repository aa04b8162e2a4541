//! The worker's upkeep, on every replica: take back expired leases (at
//! start, then every `worker.rescue_interval_ms`), refresh the queue-depth
//! estimate every second, and every minute (and at start) fail the jobs of
//! kinds no replica took within `worker.unknown_kind_grace_ms` and delete
//! finished jobs older than `worker.retention_ms`, so the table stays
//! bounded. Both go in batches, so neither holds SQLite's write lock long.
//!
//! Several replicas may rescue at once: each rescue is one guarded
//! statement, so a job is taken back by at most one of them.

use std::{sync::Arc, time::Duration};

use tokio::{sync::Notify, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{Backlog, RESCUES, Store, dispatch::record_outcome, job::Outcome, store::Rescued};
use crate::{database::Connected, tasks::TaskResult};

const DEPTH_REFRESH: Duration = Duration::from_secs(1);
const PRUNE_INTERVAL: Duration = Duration::from_mins(1);
/// Rows deleted or failed per statement, so a large backlog never holds
/// SQLite's write lock for long.
const PRUNE_BATCH: u32 = 1_000;

pub struct Maintenance {
    pub store: Store,
    pub backlog: Backlog,
    pub rescue_interval: Duration,
    pub retention: Duration,
    pub max_rescues: u32,
    pub max_attempts: u32,
    /// The kinds this replica runs, and how long a queued job of another
    /// kind may wait for a replica that runs it.
    pub kinds: Vec<&'static str>,
    pub unknown_kind_grace: Duration,
    /// Rescued jobs are due at once: wake the dispatcher.
    pub wake: Arc<Notify>,
    pub connected: Connected,
}

impl Maintenance {
    /// Runs until the drain starts. Failures are logged by the database
    /// layer and tried again at the next tick. The depth estimate is
    /// refreshed beside the rescue and the prune, not after them, so a
    /// long prune cannot leave it stale.
    pub async fn run(self, draining: CancellationToken) -> TaskResult {
        tokio::select! {
            biased;
            () = draining.cancelled() => return Ok(()),
            () = self.connected.wait() => {}
        }
        tokio::join!(self.upkeep(&draining), self.refresh_depth(&draining));
        Ok(())
    }

    async fn upkeep(&self, draining: &CancellationToken) {
        let mut rescue = tokio::time::interval(self.rescue_interval);
        let mut prune = tokio::time::interval(PRUNE_INTERVAL);
        for timer in [&mut rescue, &mut prune] {
            timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                biased;
                () = draining.cancelled() => return,
                _ = rescue.tick() => self.rescue().await,
                _ = prune.tick() => {
                    self.fail_unknown_kinds().await;
                    self.prune().await;
                }
            }
        }
    }

    async fn refresh_depth(&self, draining: &CancellationToken) {
        let mut depth = tokio::time::interval(DEPTH_REFRESH);
        depth.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = draining.cancelled() => return,
                _ = depth.tick() => {
                    if let Ok((waiting, since)) = self.store.count_queued(|| self.backlog.counting()).await {
                        self.backlog.refresh(waiting, since);
                    }
                }
            }
        }
    }

    async fn rescue(&self) {
        let Ok(rescued) = self
            .store
            .rescue_expired(self.max_rescues, self.max_attempts)
            .await
        else {
            return;
        };
        for job in &rescued {
            if job.failed {
                metrics::counter!(RESCUES, "result" => "failed").increment(1);
                failed(job, "lease expired too often, or no attempts left");
            } else {
                metrics::counter!(RESCUES, "result" => "queued").increment(1);
                tracing::warn!(
                    job.id = job.id,
                    "job lease expired, rescued and queued again"
                );
            }
        }
        if rescued.iter().any(|job| !job.failed) {
            self.wake.notify_one();
        }
    }

    async fn fail_unknown_kinds(&self) {
        while let Ok(swept) = self
            .store
            .fail_unknown_kinds(&self.kinds, self.unknown_kind_grace, PRUNE_BATCH)
            .await
        {
            for job in &swept {
                failed(job, "no replica runs its kind");
            }
            if swept.len() < PRUNE_BATCH as usize {
                break;
            }
        }
    }

    async fn prune(&self) {
        while let Ok(deleted) = self.store.prune(self.retention, PRUNE_BATCH).await {
            if deleted > 0 {
                tracing::debug!(deleted, "finished jobs pruned");
            }
            if deleted < u64::from(PRUNE_BATCH) {
                break;
            }
        }
    }
}

/// Counts and logs the outcome of a job this upkeep recorded as failed: the
/// one `job finished` event for it.
fn failed(job: &Rescued, error: &str) {
    record_outcome(Outcome::Failed, job.created_at_ms);
    tracing::warn!(
        job.id = job.id,
        outcome = Outcome::Failed.as_str(),
        error,
        "job finished"
    );
}
