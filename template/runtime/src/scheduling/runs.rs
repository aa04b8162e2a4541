//! The run table and every statement on it. Each function is one store
//! operation under the database timeout ([`Database::run`]).
//!
//! A period of a job is run by the replica whose claim inserted its row:
//! the primary key (job, period start) admits one claim per period, and a
//! partial unique index admits one running row per job, so a job's runs
//! never overlap across replicas either. Fencing: the row's `token` is
//! raised by every takeover, and outcomes are written only under the token
//! the claim returned, so a replica that was paused past its lease cannot
//! record anything once another replica took the period over or recorded
//! it lost. Outcome writes also match the state they write, so a write
//! retried after a timeout finds itself done rather than refused.

use std::time::Duration;

use serde::Serialize;
use sqlx::{Row, any::AnyRow};

use crate::database::{Database, DbError, Migration, ms, now_ms};

/// The scheduling engine's migrations, in order: versions 101 to 199 are
/// its share of the runtime's range.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 101,
    description: "scheduled runs",
    sql: include_str!("migrations/0101_runs.sql"),
}];

/// A run this replica holds: its period, and the token its writes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub period_start: i64,
    pub token: i64,
    /// 1 for the first run of the period, one more per takeover.
    pub attempt: i64,
}

/// A run of the job that some replica holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Running {
    pub period_start: i64,
    pub token: i64,
    pub replica: String,
    /// When its holder is presumed dead, in ms since the Unix epoch.
    pub lease_until: i64,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This replica runs the period.
    Won(Held),
    /// The period was claimed before, or another run of the job is held
    /// (`Some`, with that run) or already over (`None`).
    Taken(Option<Running>),
}

/// One row of the history, as `GET /runs` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub job: String,
    pub period_start_ms: i64,
    /// `running`, or the outcome: `succeeded`, `failed`, `timed_out`,
    /// `cancelled` or `lost`.
    pub state: String,
    pub replica: String,
    pub attempt: i64,
    pub started_at_ms: i64,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
}

/// The run table, as one replica sees it; cheap to clone.
#[derive(Debug, Clone)]
pub struct RunStore {
    database: Database,
    /// This replica's name in the `replica` column.
    replica: String,
}

impl RunStore {
    #[must_use]
    pub const fn new(database: Database, replica: String) -> Self {
        Self { database, replica }
    }

    /// Claims `period_start` of `job` for `lease`.
    ///
    /// # Errors
    /// [`DbError`]; the period is then neither claimed nor known taken.
    pub async fn claim(
        &self,
        job: &str,
        period_start: i64,
        lease: Duration,
    ) -> Result<Claim, DbError> {
        let now = now_ms();
        let inserted = self
            .database
            .run("claim_period", async {
                sqlx::query(
                    "INSERT INTO scheduled_runs \
                     (job, period_start, state, replica, lease_until, started_at) \
                     VALUES ($1, $2, 'running', $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(job)
                .bind(period_start)
                .bind(&self.replica)
                .bind(now.saturating_add(ms(lease)))
                .bind(now)
                .execute(self.database.pool())
                .await
            })
            .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Won(Held {
                period_start,
                token: 1,
                attempt: 1,
            }));
        }
        Ok(Claim::Taken(self.running(job).await?))
    }

    /// The run of `job` that a replica holds, if any.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn running(&self, job: &str) -> Result<Option<Running>, DbError> {
        self.database
            .run("find_running", async {
                let row = sqlx::query(
                    "SELECT period_start, token, replica, lease_until FROM scheduled_runs \
                     WHERE job = $1 AND state = 'running'",
                )
                .bind(job)
                .fetch_optional(self.database.pool())
                .await?;
                row.map(|row| {
                    Ok(Running {
                        period_start: row.try_get("period_start")?,
                        token: row.try_get("token")?,
                        replica: row.try_get("replica")?,
                        lease_until: row.try_get("lease_until")?,
                    })
                })
                .transpose()
            })
            .await
    }

    /// Takes over `running` once its lease has expired: a new token, this
    /// replica, a new lease. `None` when it was finished, taken over or
    /// extended meanwhile, or its lease has not expired.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn take_over(
        &self,
        job: &str,
        running: &Running,
        lease: Duration,
    ) -> Result<Option<Held>, DbError> {
        let now = now_ms();
        let attempt = self
            .database
            .run("take_over_period", async {
                let row = sqlx::query(
                    "UPDATE scheduled_runs SET token = token + 1, attempt = attempt + 1, \
                     replica = $4, lease_until = $5, started_at = $6 \
                     WHERE job = $1 AND period_start = $2 AND token = $3 \
                     AND state = 'running' AND lease_until <= $6 RETURNING attempt",
                )
                .bind(job)
                .bind(running.period_start)
                .bind(running.token)
                .bind(&self.replica)
                .bind(now.saturating_add(ms(lease)))
                .bind(now)
                .fetch_optional(self.database.pool())
                .await?;
                row.map(|row: AnyRow| row.try_get::<i64, _>("attempt"))
                    .transpose()
            })
            .await?;
        Ok(attempt.map(|attempt| Held {
            period_start: running.period_start,
            token: running.token + 1,
            attempt,
        }))
    }

    /// Records `running` as lost once its lease has expired: its holder
    /// stopped answering, and the period is not run again. `false` when it
    /// was finished, taken over or extended meanwhile, or its lease has not
    /// expired.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn mark_lost(&self, job: &str, running: &Running) -> Result<bool, DbError> {
        let now = now_ms();
        let marked = self
            .database
            .run("mark_period_lost", async {
                sqlx::query(
                    "UPDATE scheduled_runs SET state = 'lost', finished_at = $4, \
                     error = 'its replica stopped answering before the run was recorded' \
                     WHERE job = $1 AND period_start = $2 AND token = $3 \
                     AND state = 'running' AND lease_until <= $4",
                )
                .bind(job)
                .bind(running.period_start)
                .bind(running.token)
                .bind(now)
                .execute(self.database.pool())
                .await
            })
            .await?;
        Ok(marked.rows_affected() == 1)
    }

    /// Records the outcome of `held`; `false` when the token no longer
    /// holds it (the period was taken over or recorded lost).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn finish(
        &self,
        job: &str,
        held: Held,
        state: &str,
        duration: Duration,
        error: Option<&str>,
    ) -> Result<bool, DbError> {
        let recorded = self
            .database
            .run("record_run", async {
                sqlx::query(
                    "UPDATE scheduled_runs SET state = $4, finished_at = $5, \
                     duration_ms = $6, error = $7 \
                     WHERE job = $1 AND period_start = $2 AND token = $3 \
                     AND state IN ('running', $4)",
                )
                .bind(job)
                .bind(held.period_start)
                .bind(held.token)
                .bind(state)
                .bind(now_ms())
                .bind(ms(duration))
                .bind(error)
                .execute(self.database.pool())
                .await
            })
            .await?;
        Ok(recorded.rows_affected() == 1)
    }

    /// Gives `held` up at once, unfinished, for another replica to take
    /// over; `false` when the token no longer holds it.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn release(&self, job: &str, held: Held) -> Result<bool, DbError> {
        let released = self
            .database
            .run("release_period", async {
                sqlx::query(
                    "UPDATE scheduled_runs SET lease_until = 0 \
                     WHERE job = $1 AND period_start = $2 AND token = $3 AND state = 'running'",
                )
                .bind(job)
                .bind(held.period_start)
                .bind(held.token)
                .execute(self.database.pool())
                .await
            })
            .await?;
        Ok(released.rows_affected() == 1)
    }

    /// Deletes the finished runs of `job` whose period started before
    /// `before` (ms since the Unix epoch).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn prune(&self, job: &str, before: i64) -> Result<u64, DbError> {
        let pruned = self
            .database
            .run("prune_runs", async {
                sqlx::query(
                    "DELETE FROM scheduled_runs \
                     WHERE job = $1 AND period_start < $2 AND state <> 'running'",
                )
                .bind(job)
                .bind(before)
                .execute(self.database.pool())
                .await
            })
            .await?;
        Ok(pruned.rows_affected())
    }

    /// The newest `limit` runs of `job`, newest period first.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn history(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.database
            .run("list_runs", async {
                sqlx::query(
                    "SELECT job, period_start, state, replica, attempt, started_at, \
                     duration_ms, error FROM scheduled_runs \
                     WHERE job = $1 ORDER BY period_start DESC LIMIT $2",
                )
                .bind(job)
                .bind(limit)
                .fetch_all(self.database.pool())
                .await?
                .iter()
                .map(record)
                .collect()
            })
            .await
    }
}

fn record(row: &AnyRow) -> Result<RunRecord, sqlx::Error> {
    Ok(RunRecord {
        job: row.try_get("job")?,
        period_start_ms: row.try_get("period_start")?,
        state: row.try_get("state")?,
        replica: row.try_get("replica")?,
        attempt: row.try_get("attempt")?,
        started_at_ms: row.try_get("started_at")?,
        duration_ms: row.try_get("duration_ms")?,
        error: row.try_get("error")?,
    })
}
