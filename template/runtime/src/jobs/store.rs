//! The job table and every statement on it. Each function is one store
//! operation under the database timeout ([`Database::run`]).
//!
//! Fencing: a claim raises the row's `token` and returns it; completion,
//! retry, failure, heartbeat and release are written only where the row is
//! still under that token. Outcome writes also match the state they write,
//! so writing one again is harmless: a write that timed out may have
//! committed, and its retry must then find it done rather than lost (no
//! other claim can have written under this token). A rescue raises the
//! token too, so a worker that lost its lease (paused, partitioned, slow)
//! can no longer write anything about that job. The rescue itself is one guarded
//! statement, so it cannot overwrite a job that finished meanwhile.

use std::{collections::HashSet, fmt::Write, time::Duration};

use serde::Serialize;
use sqlx::{Row, any::AnyRow};
use tokio::time::Instant;

use super::JobId;
use crate::database::{Backend, Database, DbError, Faults, Migration, ms, now_ms};

/// The job engine's migrations, in order: versions 1 to 99 are its share
/// of the runtime's range.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "jobs",
        sql: include_str!("migrations/0001_jobs.sql"),
    },
    Migration {
        version: 2,
        description: "job trace",
        sql: include_str!("migrations/0002_job_trace.sql"),
    },
    Migration {
        version: 3,
        description: "job kind",
        sql: include_str!("migrations/0003_job_kind.sql"),
    },
];

/// PostgreSQL channel on which intake announces new jobs.
pub const NEW_JOBS_CHANNEL: &str = "nebula_jobs_queued";

/// A job to insert, as intake received it.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub idempotency_key: Option<String>,
    /// Its kind's name, registered when it was accepted.
    pub kind: String,
    /// Its arguments, as the JSON the client sent (checked by its kind).
    pub args: String,
    /// Attempts it may take, the first included.
    pub max_attempts: u32,
    /// The submitting request's trace, as a W3C `traceparent`.
    pub traceparent: Option<String>,
}

/// A claimed job: what the worker runs, and the token its writes need.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: JobId,
    /// Never NULL here: only registered kinds are claimed.
    pub kind: String,
    /// Its arguments as JSON, decoded by its kind before the attempt.
    pub args: String,
    /// The attempt limit it was accepted with; `None` for a job stored
    /// before limits were stored.
    pub max_attempts: Option<u32>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The submitting request's trace, as a W3C `traceparent`.
    pub traceparent: Option<String>,
    pub token: i64,
    /// When intake committed it, for the job's duration.
    pub created_at_ms: i64,
    /// When the claim's lease ends, by this process's clock: measured from
    /// before the claim was sent, as the database measured it.
    pub lease_ends: Instant,
}

/// `GET /jobs/{id}`: what a client may know about a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobStatus {
    pub id: String,
    pub kind: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub rescues: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// When the job may next run (after a retry's backoff).
    pub run_at_ms: i64,
    pub finished_at_ms: Option<i64>,
}

/// A job whose lease expired and was taken back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescued {
    pub id: String,
    pub created_at_ms: i64,
    /// `true` when it was rescued too often (or had no attempts left) and
    /// now counts as failed; otherwise it is queued again.
    pub failed: bool,
}

/// The job store over one database.
#[derive(Debug, Clone)]
pub struct Store {
    database: Database,
}

impl Store {
    #[must_use]
    pub const fn new(database: Database) -> Self {
        Self { database }
    }

    /// The database's faults: intake refuses jobs at once while a write
    /// fault is in force.
    #[must_use]
    pub const fn faults(&self) -> &Faults {
        self.database.faults()
    }

    /// Inserts `jobs` in one transaction (one commit for the whole batch)
    /// and returns each one's id: its own, or, for a repeated
    /// idempotency key, the id of the job created first.
    ///
    /// # Errors
    /// [`DbError`]; then none of the batch was stored, unless the commit
    /// itself was cut by the timeout after the database applied it.
    pub async fn insert_batch(&self, jobs: &[NewJob]) -> Result<Vec<JobId>, DbError> {
        let database = &self.database;
        let sql = insert_sql(jobs.len());
        database
            .run("insert_jobs", async {
                // One statement for the batch: one round trip to the
                // database, however many jobs share the commit.
                // Not prepared: each batch size is another statement text.
                let mut insert = sqlx::query(&sql).persistent(false).bind(now_ms());
                // Keys in one order in every batch, so that two replicas'
                // batches never wait on each other's keys in a cycle.
                let mut ordered: Vec<&NewJob> = jobs.iter().collect();
                ordered.sort_by(|a, b| a.idempotency_key.cmp(&b.idempotency_key));
                for job in ordered {
                    insert = insert
                        .bind(job.id.to_string())
                        .bind(job.idempotency_key.as_deref())
                        .bind(job.kind.as_str())
                        .bind(job.args.as_str())
                        .bind(i64::from(job.max_attempts))
                        .bind(job.traceparent.as_deref());
                }
                let mut transaction = database.begin_write().await?;
                let inserted = insert
                    .fetch_all(&mut *transaction)
                    .await?
                    .iter()
                    .map(|row| parse_id(&row.try_get::<String, _>("id")?))
                    .collect::<Result<HashSet<JobId>, _>>()?;
                let mut ids = Vec::with_capacity(jobs.len());
                for job in jobs {
                    let id = match &job.idempotency_key {
                        // Not inserted: the key was taken, by an earlier job
                        // or one earlier in this batch.
                        Some(key) if !inserted.contains(&job.id) => {
                            let existing: String = sqlx::query_scalar(
                                "SELECT id FROM jobs WHERE idempotency_key = $1",
                            )
                            .bind(key.as_str())
                            .fetch_one(&mut *transaction)
                            .await?;
                            parse_id(&existing)?
                        }
                        _ => job.id,
                    };
                    ids.push(id);
                }
                if database.backend() == Backend::Postgres {
                    // Delivered to listeners when the transaction commits.
                    sqlx::query("SELECT pg_notify($1, '')")
                        .bind(NEW_JOBS_CHANNEL)
                        .execute(&mut *transaction)
                        .await?;
                }
                transaction.commit().await?;
                Ok(ids)
            })
            .await
    }

    /// Claims up to `limit` due jobs of the `kinds` this replica runs,
    /// under a lease of `lease`, oldest due first. Jobs of other kinds wait
    /// for a replica that runs them (a rolling update that adds a kind).
    /// PostgreSQL skips rows another replica is claiming (`FOR UPDATE SKIP
    /// LOCKED`); on SQLite the statement is its own write transaction, so
    /// two claims never return the same job.
    ///
    /// # Errors
    /// [`DbError`]; then nothing was claimed.
    pub async fn claim(
        &self,
        limit: usize,
        lease: Duration,
        kinds: &[&str],
    ) -> Result<Vec<Claimed>, DbError> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let lock = match self.database.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, token = token + 1,
                 lease_until = $2, updated_at = $1
             WHERE id IN (
                 SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $1 AND kind IN ({})
                 ORDER BY run_at LIMIT $3 {lock})
             RETURNING id, kind, payload, max_attempts, attempts, token, created_at, traceparent",
            parameters(4, kinds.len())
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let database = &self.database;
        let lease_ends = Instant::now() + lease;
        let rows = database
            .run("claim_jobs", async {
                let now = now_ms();
                let mut claim = sqlx::query(&sql)
                    .bind(now)
                    .bind(now.saturating_add(ms(lease)))
                    .bind(limit);
                for kind in kinds {
                    claim = claim.bind(*kind);
                }
                claim.fetch_all(database.pool()).await
            })
            .await?;
        rows.iter()
            .map(|row| {
                claimed(row, lease_ends).map_err(|source| DbError::Failed {
                    operation: "claim_jobs",
                    source,
                })
            })
            .collect()
    }

    /// Extends a running job's lease. `Ok(false)`: the lease was lost.
    ///
    /// # Errors
    /// [`DbError`]; the lease may still be held.
    pub async fn heartbeat(&self, job: &Claimed, lease: Duration) -> Result<bool, DbError> {
        let now = now_ms();
        self.fenced(
            "heartbeat",
            "UPDATE jobs SET lease_until = $3, updated_at = $4
             WHERE id = $1 AND token = $2 AND state = 'running'",
            job,
            now.saturating_add(ms(lease)),
            None,
        )
        .await
    }

    /// Records success. `Ok(false)`: the lease was lost, nothing recorded.
    ///
    /// # Errors
    /// [`DbError`]; a write that timed out may still have been recorded,
    /// and writing it again is safe.
    pub async fn succeed(&self, job: &Claimed) -> Result<bool, DbError> {
        self.fenced(
            "complete_job",
            "UPDATE jobs SET state = 'succeeded', lease_until = NULL, last_error = NULL,
                 finished_at = $3, updated_at = $4
             WHERE id = $1 AND token = $2 AND state IN ('running', 'succeeded')",
            job,
            now_ms(),
            None,
        )
        .await
    }

    /// Records a failed attempt and when the next one may start.
    ///
    /// # Errors
    /// [`DbError`]; a write that timed out may still have been recorded,
    /// and writing it again is safe.
    pub async fn retry(
        &self,
        job: &Claimed,
        error: &str,
        delay: Duration,
    ) -> Result<bool, DbError> {
        self.fenced(
            "retry_job",
            "UPDATE jobs SET state = 'queued', lease_until = NULL, last_error = $5,
                 run_at = $3, updated_at = $4
             WHERE id = $1 AND token = $2 AND state IN ('running', 'queued')",
            job,
            now_ms().saturating_add(ms(delay)),
            Some(error),
        )
        .await
    }

    /// Records that the job failed for good.
    ///
    /// # Errors
    /// [`DbError`]; a write that timed out may still have been recorded,
    /// and writing it again is safe.
    pub async fn fail(&self, job: &Claimed, error: &str) -> Result<bool, DbError> {
        self.fenced(
            "fail_job",
            "UPDATE jobs SET state = 'failed', lease_until = NULL, last_error = $5,
                 finished_at = $3, updated_at = $4
             WHERE id = $1 AND token = $2 AND state IN ('running', 'failed')",
            job,
            now_ms(),
            Some(error),
        )
        .await
    }

    /// Gives a job back to the queue at once, its attempt not counted: the
    /// drain deadline cut it, not a fault of its own.
    ///
    /// # Errors
    /// [`DbError`]; the job stays leased and is rescued when the lease ends.
    pub async fn release(&self, job: &Claimed) -> Result<bool, DbError> {
        let now = now_ms();
        self.fenced(
            "release_job",
            "UPDATE jobs SET state = 'queued', attempts = attempts - 1, lease_until = NULL,
                 run_at = $3, updated_at = $4
             WHERE id = $1 AND token = $2 AND state = 'running'",
            job,
            now,
            None,
        )
        .await
    }

    /// One fenced write: `$1` id, `$2` token, `$3` the statement's time
    /// value, `$4` now, and `$5` an error text when given. `true` when the
    /// row was still this claim's.
    async fn fenced(
        &self,
        operation: &'static str,
        sql: &'static str,
        job: &Claimed,
        time: i64,
        error: Option<&str>,
    ) -> Result<bool, DbError> {
        let database = &self.database;
        let updated = database
            .run(operation, async {
                let mut query = sqlx::query(sql)
                    .bind(job.id.to_string())
                    .bind(job.token)
                    .bind(time)
                    .bind(now_ms());
                if let Some(error) = error {
                    query = query.bind(error.to_owned());
                }
                query.execute(database.pool()).await
            })
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Takes back every job whose lease expired: queued again, or failed
    /// when it was already rescued `max_rescues` times or has used its
    /// `max_attempts`. Guarded by state and lease in the same statement.
    ///
    /// # Errors
    /// [`DbError`]; nothing was rescued.
    pub async fn rescue_expired(
        &self,
        max_rescues: u32,
        max_attempts: u32,
    ) -> Result<Vec<Rescued>, DbError> {
        let database = &self.database;
        let rows = database
            .run("rescue_jobs", async {
                sqlx::query(
                    "UPDATE jobs SET
                         state = CASE WHEN rescues >= $2 OR attempts >= COALESCE(max_attempts, $3)
                             THEN 'failed' ELSE 'queued' END,
                         finished_at = CASE WHEN rescues >= $2 OR attempts >= COALESCE(max_attempts, $3)
                             THEN $1 ELSE NULL END,
                         last_error = 'lease expired: the worker running it stopped or lost contact',
                         rescues = rescues + 1, token = token + 1, lease_until = NULL,
                         run_at = $1, updated_at = $1
                     WHERE state = 'running' AND lease_until < $1
                     RETURNING id, state, created_at",
                )
                .bind(now_ms())
                .bind(i64::from(max_rescues))
                .bind(i64::from(max_attempts))
                .fetch_all(database.pool())
                .await
            })
            .await?;
        rows.iter()
            .map(rescued)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| DbError::Failed {
                operation: "rescue_jobs",
                source,
            })
    }

    /// Fails up to `batch` queued jobs of kinds not among `kinds` (or of
    /// none) that have been due for longer than `grace`: no replica took
    /// them in that time. Guarded by the state in the same statement, so
    /// each is failed once across replicas.
    ///
    /// # Errors
    /// [`DbError`]; nothing was failed.
    pub async fn fail_unknown_kinds(
        &self,
        kinds: &[&str],
        grace: Duration,
        batch: u32,
    ) -> Result<Vec<Rescued>, DbError> {
        let sql = format!(
            "UPDATE jobs SET state = 'failed', finished_at = $1, updated_at = $1, token = token + 1,
                 last_error = 'unknown job kind \"' || COALESCE(kind, '') || '\"; this service runs: ' || $3
             WHERE id IN (
                 SELECT id FROM jobs
                 WHERE state = 'queued' AND run_at < $2 AND (kind IS NULL OR kind NOT IN ({}))
                 ORDER BY run_at LIMIT {batch})
               AND state = 'queued'
             RETURNING id, state, created_at",
            parameters(4, kinds.len().max(1))
        );
        let known = kinds.join(", ");
        let database = &self.database;
        let rows = database
            .run("fail_unknown_kinds", async {
                let now = now_ms();
                let mut fail = sqlx::query(&sql)
                    .bind(now)
                    .bind(now.saturating_sub(ms(grace)))
                    .bind(if known.is_empty() { "no kinds" } else { &known });
                if kinds.is_empty() {
                    // `NOT IN ('')`: no kind is the empty name.
                    fail = fail.bind("");
                }
                for kind in kinds {
                    fail = fail.bind(*kind);
                }
                fail.fetch_all(database.pool()).await
            })
            .await?;
        rows.iter()
            .map(rescued)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|source| DbError::Failed {
                operation: "fail_unknown_kinds",
                source,
            })
    }

    /// Deletes up to `batch` jobs that finished before `retention` ago.
    /// Returns how many went.
    ///
    /// # Errors
    /// [`DbError`]; nothing was deleted.
    pub async fn prune(&self, retention: Duration, batch: u32) -> Result<u64, DbError> {
        let database = &self.database;
        let deleted = database
            .run("prune_jobs", async {
                sqlx::query(
                    "DELETE FROM jobs WHERE id IN (
                         SELECT id FROM jobs
                         WHERE state IN ('succeeded', 'failed') AND finished_at < $1
                         LIMIT $2)",
                )
                .bind(now_ms().saturating_sub(ms(retention)))
                .bind(i64::from(batch))
                .execute(database.pool())
                .await
            })
            .await?;
        Ok(deleted.rows_affected())
    }

    /// Jobs waiting to run, across every replica, and what `mark` returned
    /// just before the count was sent (with a connection in hand, so that
    /// the wait for one is not inside the window between the two).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn count_queued(&self, mark: impl FnOnce() -> i64) -> Result<(u64, i64), DbError> {
        let database = &self.database;
        let (count, marked): (i64, i64) = database
            .run("count_queued", async {
                let mut connection = database.pool().acquire().await?;
                let marked = mark();
                let count = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued'")
                    .fetch_one(&mut *connection)
                    .await?;
                Ok((count, marked))
            })
            .await?;
        Ok((u64::try_from(count).unwrap_or_default(), marked))
    }

    /// The status of job `id`, if it exists (and was not pruned).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn status(&self, id: &str) -> Result<Option<JobStatus>, DbError> {
        let database = &self.database;
        let row = database
            .run("get_job", async {
                sqlx::query(
                    "SELECT id, kind, state, attempts, rescues, last_error, created_at, updated_at,
                         run_at, finished_at
                     FROM jobs WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(database.pool())
                .await
            })
            .await?;
        row.as_ref()
            .map(job_status)
            .transpose()
            .map_err(|source| DbError::Failed {
                operation: "get_job",
                source,
            })
    }
}

/// The `INSERT` of `rows` jobs in one statement: `$1` is the time, then
/// six parameters a job (id, idempotency key, kind, arguments, attempt
/// limit, traceparent). A
/// repeated key inserts nothing; `RETURNING id` names the rows that were
/// inserted.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO jobs (id, idempotency_key, kind, payload, max_attempts, traceparent, state, run_at, created_at, updated_at) VALUES ",
    );
    for row in 0..rows {
        let first = 2 + row * 6;
        if row > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "(${first}");
        for parameter in first + 1..first + 6 {
            let _ = write!(sql, ", ${parameter}");
        }
        sql.push_str(", 'queued', $1, $1, $1)");
    }
    sql.push_str(" ON CONFLICT (idempotency_key) DO NOTHING RETURNING id");
    sql
}

/// `$first, $first+1, ...`: `count` placeholders for an `IN` list.
fn parameters(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_id(text: &str) -> Result<JobId, sqlx::Error> {
    text.parse()
        .map_err(|error: uuid::Error| sqlx::Error::Decode(error.into()))
}

fn claimed(row: &AnyRow, lease_ends: Instant) -> Result<Claimed, sqlx::Error> {
    let attempt: i64 = row.try_get("attempts")?;
    let max_attempts: Option<i64> = row.try_get("max_attempts")?;
    Ok(Claimed {
        id: parse_id(&row.try_get::<String, _>("id")?)?,
        kind: row.try_get("kind")?,
        args: row.try_get("payload")?,
        max_attempts: max_attempts.map(|limit| u32::try_from(limit).unwrap_or(u32::MAX)),
        attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
        traceparent: row.try_get("traceparent")?,
        token: row.try_get("token")?,
        created_at_ms: row.try_get("created_at")?,
        lease_ends,
    })
}

/// A job the rescue or the unknown-kind sweep changed, from the row its
/// `RETURNING id, state, created_at` gave back.
fn rescued(row: &AnyRow) -> Result<Rescued, sqlx::Error> {
    Ok(Rescued {
        id: row.try_get("id")?,
        created_at_ms: row.try_get("created_at")?,
        failed: row.try_get::<String, _>("state")? == "failed",
    })
}

fn job_status(row: &AnyRow) -> Result<JobStatus, sqlx::Error> {
    Ok(JobStatus {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        state: row.try_get("state")?,
        attempts: row.try_get("attempts")?,
        rescues: row.try_get("rescues")?,
        last_error: row.try_get("last_error")?,
        created_at_ms: row.try_get("created_at")?,
        updated_at_ms: row.try_get("updated_at")?,
        run_at_ms: row.try_get("run_at")?,
        finished_at_ms: row.try_get("finished_at")?,
    })
}
