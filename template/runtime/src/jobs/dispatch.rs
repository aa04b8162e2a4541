//! Claiming jobs and running them.
//!
//! The dispatcher claims up to the free worker slots at a time. It looks
//! again when intake on this replica commits a job, when PostgreSQL
//! announces one committed elsewhere ([`super::listen`]), when a slot
//! frees, and otherwise every `worker.poll_interval_ms` (which is also how
//! soon a retry whose backoff has passed is seen).
//!
//! Each claimed job runs in its own task beside its heartbeat. The first of
//! three things ends it: the attempt ends (its outcome is written under the
//! claim's token), the lease is lost (the attempt is cancelled and nothing
//! is written), or the drain deadline passes (the attempt is cancelled and
//! the job released to the queue).

use std::{sync::Arc, time::Duration};

use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    Backlog, Claimed, JOB_ATTEMPT_FAILURES, JOB_DURATION, JOBS, JOBS_CLAIMED, JOBS_RELEASED,
    JobContext, Kinds, LEASE_LOSSES, RetryPolicy, Store,
    attempt::{Failure, Next, run_attempt},
    job::Outcome,
    kind::{Prepared, Refused},
    lease::{LeaseLost, keep_lease},
};
use crate::{
    database::{Connected, DbError, jittered, now_ms},
    settings::duration_ms,
    trace_context,
};

/// Longest wait before claiming again after the database failed.
const MAX_CLAIM_RETRY: Duration = Duration::from_secs(5);

/// Claims due jobs into free worker slots until the drain starts, then
/// waits for the running ones.
pub struct Dispatcher {
    pub store: Store,
    pub workers: usize,
    pub poll_interval: Duration,
    pub runner: Runner,
    pub wake: Arc<Notify>,
    pub backlog: Backlog,
    pub connected: Connected,
    pub draining: CancellationToken,
}

impl Dispatcher {
    pub async fn run(self) {
        tokio::select! {
            biased;
            () = self.draining.cancelled() => return,
            () = self.connected.wait() => {}
        }
        let slots = Arc::new(Semaphore::new(self.workers));
        let runner = Arc::new(self.runner);
        let kinds: Vec<&str> = runner.kinds.names().collect();
        let mut running = JoinSet::new();
        let mut retry = Duration::from_millis(100);
        loop {
            while let Some(ended) = running.try_join_next() {
                log_panic(ended);
            }
            let free = slots.available_permits();
            let mut claimed_all_free = false;
            if free > 0 {
                let Ok(jobs) = self.store.claim(free, runner.lease, &kinds).await else {
                    // Logged by the database layer; wait, then try again.
                    let wait = jittered(retry);
                    retry = (retry * 2).min(MAX_CLAIM_RETRY);
                    tokio::select! {
                        biased;
                        () = self.draining.cancelled() => break,
                        () = tokio::time::sleep(wait) => {}
                    }
                    continue;
                };
                retry = Duration::from_millis(100);
                claimed_all_free = jobs.len() == free;
                let count = u64::try_from(jobs.len()).unwrap_or(u64::MAX);
                metrics::counter!(JOBS_CLAIMED).increment(count);
                self.backlog.taken(count);
                for job in jobs {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        unreachable_slot(&job);
                        continue;
                    };
                    let runner = runner.clone();
                    running.spawn(async move { runner.run(job, permit).await });
                }
            }
            if claimed_all_free {
                // Every slot was filled; wait for one to free.
                tokio::select! {
                    biased;
                    () = self.draining.cancelled() => break,
                    Some(ended) = running.join_next() => log_panic(ended),
                }
                continue;
            }
            tokio::select! {
                biased;
                () = self.draining.cancelled() => break,
                () = self.wake.notified() => {}
                Some(ended) = running.join_next(), if free == 0 => log_panic(ended),
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
        // Draining: claim nothing more, let the running jobs end (they
        // watch the drain deadline themselves).
        while let Some(ended) = running.join_next().await {
            log_panic(ended);
        }
    }
}

fn log_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(error) = ended {
        tracing::error!(%error, "job task panicked");
    }
}

/// A claim never returns more jobs than there were free slots; if it ever
/// did, the extra job stays leased and is rescued when the lease expires.
fn unreachable_slot(job: &Claimed) {
    tracing::error!(job.id = %job.id, "claimed more jobs than free slots, leaving it to the rescuer");
}

/// Runs one claimed job to what its attempt decides.
pub struct Runner {
    pub store: Store,
    pub kinds: Arc<Kinds>,
    pub policy: RetryPolicy,
    pub lease: Duration,
    pub heartbeat: Duration,
    /// Cancelled when the drain deadline passes.
    pub abandon: CancellationToken,
}

/// How a job's run ended, before its write-back.
enum Ended {
    Attempted(Result<(), Failure>),
    LeaseLost(LeaseLost),
    Abandoned,
}

impl Runner {
    async fn run(&self, claimed: Claimed, _slot: OwnedSemaphorePermit) {
        let span = tracing::info_span!(
            "job.execute",
            job.id = %claimed.id,
            job.kind = claimed.kind,
            attempt = claimed.attempt
        );
        // The job runs as part of the trace of the request that submitted it.
        trace_context::adopt(&span, claimed.traceparent.as_deref());
        self.run_claimed(claimed).instrument(span).await;
    }

    async fn run_claimed(&self, claimed: Claimed) {
        let cancelled = CancellationToken::new();
        // Also cancelled if this future is dropped (the task aborted).
        let _cancel_on_exit = cancelled.clone().drop_guard();
        let job = JobContext {
            id: claimed.id,
            attempt: claimed.attempt,
            cancelled: cancelled.clone(),
        };
        let Prepared { attempt, timeout } =
            match self.kinds.prepare(&claimed.kind, &claimed.args, job) {
                Ok(prepared) => prepared,
                Err(refused) => {
                    // Another attempt would meet the same: fail the job now.
                    // (Claims take only registered kinds, so an unknown kind
                    // here would be a bug; it still fails cleanly.)
                    let label = match refused {
                        Refused::UnknownKind(_) => "unknown_kind",
                        Refused::Args(_) => "args",
                    };
                    metrics::counter!(JOB_ATTEMPT_FAILURES, "kind" => label).increment(1);
                    self.record(&claimed, Next::Fail { kind: label }, &refused.to_string())
                        .await;
                    return;
                }
            };
        let ended = if self.abandon.is_cancelled() {
            Ended::Abandoned
        } else {
            let heartbeat = keep_lease(claimed.lease_ends, self.heartbeat, self.lease, || {
                self.store.heartbeat(&claimed, self.lease)
            });
            let timeout = timeout.unwrap_or(self.policy.attempt_timeout);
            tokio::select! {
                biased;
                () = self.abandon.cancelled() => Ended::Abandoned,
                lost = heartbeat => Ended::LeaseLost(lost),
                result = run_attempt(attempt, claimed.attempt, timeout) => {
                    Ended::Attempted(result)
                }
            }
        };
        // The attempt is over or dropped: work it left on the blocking pool
        // learns it now, not after the outcome is written.
        cancelled.cancel();
        match ended {
            Ended::Attempted(result) => {
                if let Err(failure) = &result {
                    metrics::counter!(JOB_ATTEMPT_FAILURES, "kind" => failure.kind).increment(1);
                }
                // The limit the job was accepted with; a job stored before
                // limits were stored takes the setting (as the rescue does).
                let max_attempts = claimed.max_attempts.unwrap_or(self.policy.max_attempts);
                let next = self
                    .policy
                    .next(claimed.attempt, max_attempts, result.as_ref().err());
                let message = match &result {
                    Ok(()) => String::new(),
                    Err(failure) => {
                        format!("attempt {} failed: {}", claimed.attempt, failure.message)
                    }
                };
                self.record(&claimed, next, &message).await;
            }
            Ended::LeaseLost(lost) => {
                metrics::counter!(LEASE_LOSSES).increment(1);
                tracing::warn!(
                    job.id = %claimed.id,
                    reason = lost.as_str(),
                    "job lease lost, attempt cancelled and not recorded"
                );
            }
            Ended::Abandoned => self.release(&claimed).await,
        }
    }

    /// Writes what `next` says under the claim's token, retrying a failed
    /// write while the lease lasts. Logs `job finished` only when the
    /// write recorded the outcome.
    async fn record(&self, claimed: &Claimed, next: Next, message: &str) {
        // Only bounds the retries: the fence alone decides whether a late
        // write still counts.
        let give_up_at = Instant::now() + self.lease;
        let mut retry = Duration::from_millis(50);
        let mut failed_before = false;
        loop {
            let written = match &next {
                Next::Succeed => self.store.succeed(claimed).await,
                Next::Retry { delay, .. } => self.store.retry(claimed, message, *delay).await,
                Next::Fail { .. } => self.store.fail(claimed, message).await,
            };
            match written {
                Ok(true) => break,
                // A retry that timed out may have been recorded, and the job
                // claimed again since: not a lost lease.
                Ok(false) if failed_before => {
                    tracing::warn!(job.id = %claimed.id, "job outcome write timed out and the job has moved on since; the write may have been recorded");
                    return;
                }
                Ok(false) => {
                    metrics::counter!(LEASE_LOSSES).increment(1);
                    tracing::warn!(job.id = %claimed.id, "job lease lost before its outcome was written, nothing recorded");
                    return;
                }
                Err(error) => {
                    failed_before = true;
                    if !self.may_retry_write(&error, give_up_at, &mut retry).await {
                        tracing::warn!(
                            job.id = %claimed.id,
                            "job outcome not written; the job runs again once its lease expires"
                        );
                        return;
                    }
                }
            }
        }
        let outcome = match next {
            Next::Retry { delay, kind } => {
                tracing::info!(
                    job.id = %claimed.id,
                    attempt = claimed.attempt,
                    error.kind = kind,
                    retry_in_ms = duration_ms(delay),
                    "job attempt failed, retrying"
                );
                return;
            }
            Next::Succeed => Outcome::Succeeded,
            Next::Fail { .. } => Outcome::Failed,
        };
        finished(claimed, outcome, message);
    }

    /// Waits before retrying a failed write, unless the lease will have
    /// ended (a rescuer may take the job then) or the deadline passed.
    async fn may_retry_write(
        &self,
        error: &DbError,
        give_up_at: Instant,
        retry: &mut Duration,
    ) -> bool {
        let wait = jittered(*retry);
        *retry = (*retry * 2).min(MAX_CLAIM_RETRY);
        if !error.is_transient() || Instant::now() + wait >= give_up_at {
            return false;
        }
        tokio::select! {
            biased;
            () = self.abandon.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// Gives the job back at the drain deadline. One try: the cancel
    /// margin is short, and a job not released is rescued later anyway.
    async fn release(&self, claimed: &Claimed) {
        let message = match self.store.release(claimed).await {
            Ok(true) => {
                metrics::counter!(JOBS_RELEASED).increment(1);
                "job cancelled at the drain deadline and released to the queue"
            }
            Ok(false) => "job cancelled at the drain deadline; its lease was already lost",
            Err(_) => {
                "job cancelled at the drain deadline, not released; it runs again once its lease expires"
            }
        };
        tracing::warn!(job.id = %claimed.id, "{message}");
    }
}

/// The one `job finished` event of a job, after its outcome was recorded.
pub fn finished(claimed: &Claimed, outcome: Outcome, error: &str) {
    record_outcome(outcome, claimed.created_at_ms);
    match outcome {
        Outcome::Succeeded => tracing::info!(
            job.id = %claimed.id,
            outcome = outcome.as_str(),
            attempts = claimed.attempt,
            "job finished"
        ),
        Outcome::Failed => tracing::warn!(
            job.id = %claimed.id,
            outcome = outcome.as_str(),
            attempts = claimed.attempt,
            error,
            "job finished"
        ),
    }
}

/// Counts an outcome and the time since the job was accepted.
pub fn record_outcome(outcome: Outcome, created_at_ms: i64) {
    metrics::counter!(JOBS, "outcome" => outcome.as_str()).increment(1);
    #[expect(
        clippy::cast_precision_loss,
        reason = "milliseconds of a job's life, far below 2^52"
    )]
    let seconds = now_ms().saturating_sub(created_at_ms).max(0) as f64 / 1_000.0;
    metrics::histogram!(JOB_DURATION, "outcome" => outcome.as_str()).record(seconds);
}
