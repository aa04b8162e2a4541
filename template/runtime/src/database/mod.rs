//! The service's database: one connection pool over SQLite (embedded, the
//! default) or PostgreSQL (shared by replicas), chosen at run time by
//! `database.url`, so moving to PostgreSQL is a setting, not a rebuild.
//!
//! Every call goes through [`Database::run`], which holds it to the
//! database timeout (`timeouts.database_ms`, the Nebula 5 s rule) and runs
//! it in a `db.query` span (DEBUG) with `db.operation`. The engines enforce a
//! slightly shorter limit themselves ([`engine_limit`]): the pool's acquire
//! timeout, SQLite's `busy_timeout`, PostgreSQL's `statement_timeout` and
//! `lock_timeout`. A slow statement is then usually cut by the database,
//! rolled back and reported, before the outer timeout gives up on an answer
//! it can no longer know. Not always: a long wait for a connection followed
//! by a slow statement can reach the outer timeout first, so a write may
//! commit after its caller stopped waiting, and callers that retry writes
//! make them safe to repeat.
//!
//! SQLite settings that keep a commit true after a crash or a power loss:
//! WAL (readers run beside the one writer), `synchronous = FULL` (each
//! commit is on disk before it returns), foreign keys on, and writes that
//! span several statements start with `BEGIN IMMEDIATE`, which takes the
//! write lock up front (waiting for `busy_timeout`) instead of failing at
//! once when a read transaction tries to upgrade.
//!
//! Faults that clear by themselves (a full disk, a read-only volume, a
//! lock held elsewhere, a killed connection) are told apart from refusals
//! ([`Fault`], [`Faults`]): callers answer them with 503 and `Retry-After`,
//! and the service heals without a restart. A connection never goes back
//! to the pool inside a transaction (`released_outside_transaction`).
//!
//! SQL text is shared between the engines: `$1` placeholders, integers as
//! `BIGINT`, times as milliseconds since the Unix epoch.

mod faults;
mod migrations;
mod settings;
mod supervisor;

use std::{
    future::Future,
    io,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sqlx::{
    Any, AnyConnection, AnyPool, Connection, Executor, Transaction,
    any::{AnyConnectOptions, AnyPoolOptions},
    error::ErrorKind,
    sqlite::SqliteError,
};
use tracing::Instrument;

pub use self::{
    faults::{CallStart, Fault, Faults, WRITE_FAULT},
    migrations::{
        FIRST_SERVICE_VERSION, MigrateCommandError, Migration, MigrationError, migrate,
        migrate_command,
    },
    settings::{Backend, DatabaseUrl, Settings},
    supervisor::{Connected, Started, Supervised, jittered, start, supervise},
};
use crate::settings::duration_ms;

/// A handle on the pool; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    timeout: Duration,
    faults: Faults,
    /// For the connections opened outside the pool (the probe write).
    options: AnyConnectOptions,
    session: String,
}

/// The health check's probe table: one row, rewritten by each probe.
/// Made at migration, and by the probe when missing.
pub const PROBE_TABLE: &str = "CREATE TABLE IF NOT EXISTS nebula_write_probe (id BIGINT PRIMARY KEY, written_at BIGINT NOT NULL)";

/// Why a database call did not succeed. Each names the operation, for the
/// caller's log and answer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Over the database timeout: the call, a PostgreSQL statement or lock
    /// wait. Its effect is unknown: a write may have been made.
    #[error("database operation `{operation}` timed out after {timeout_ms} ms")]
    Timeout {
        /// The operation that ran out of time, as its `db.operation`.
        operation: &'static str,
        /// The deadline that ran out, in milliseconds.
        timeout_ms: u64,
    },
    /// A fault of the database that clears by itself ([`Fault`]); the call
    /// may be tried again later. Nothing was changed, unless the fault cut
    /// a commit (a connection lost, an I/O error): then, as after a
    /// timeout, the write may have been made.
    #[error("database unavailable during `{operation}` ({fault}): {source}")]
    Unavailable {
        /// The operation the fault interrupted, as its `db.operation`.
        operation: &'static str,
        /// The fault met; its name is the error's `kind`.
        fault: Fault,
        /// The driver's error that showed the fault.
        #[source]
        source: sqlx::Error,
    },
    /// Any other failure: a constraint, bad SQL, a decoding error.
    #[error("database operation `{operation}` failed: {source}")]
    Failed {
        /// The operation that failed, as its `db.operation`.
        operation: &'static str,
        /// The driver's error, saying what was refused.
        #[source]
        source: sqlx::Error,
    },
}

impl DbError {
    /// Whether a client may retry later: the database is slow or has a
    /// fault, as opposed to refusing the request itself.
    #[must_use]
    pub const fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Unavailable { .. })
    }

    /// Whether the database refused the statement for a constraint (a
    /// unique key taken, a foreign key, a check): the request conflicts
    /// with what is stored.
    #[must_use]
    pub fn is_constraint_violation(&self) -> bool {
        let Self::Failed { source, .. } = self else {
            return false;
        };
        source.as_database_error().is_some_and(|error| {
            matches!(
                error.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
            )
        })
    }

    /// The operation that failed, as its `db.operation`.
    #[must_use]
    pub const fn operation(&self) -> &'static str {
        match self {
            Self::Timeout { operation, .. }
            | Self::Unavailable { operation, .. }
            | Self::Failed { operation, .. } => operation,
        }
    }

    /// The `error.kind` of log lines: `timeout`, `failed`, or the fault's
    /// name.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { fault, .. } => fault.as_str(),
            Self::Failed { .. } => "failed",
        }
    }

    fn classify(operation: &'static str, timeout: Duration, source: sqlx::Error) -> Self {
        match Cause::of(&source) {
            Cause::Timeout => Self::Timeout {
                operation,
                timeout_ms: duration_ms(timeout),
            },
            Cause::Fault(fault) => Self::Unavailable {
                operation,
                fault,
                source,
            },
            Cause::Refused => Self::Failed { operation, source },
        }
    }
}

/// What an error from sqlx says about the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A PostgreSQL statement or lock wait ran out.
    Timeout,
    /// A fault that clears by itself.
    Fault(Fault),
    /// The database answered and refused: a constraint, bad SQL, a type.
    Refused,
}

impl Cause {
    fn of(source: &sqlx::Error) -> Self {
        match source {
            // The pool retries an unreachable server until its acquire
            // timeout, then reports this.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Self::Fault(Fault::Unreachable),
            sqlx::Error::Io(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
                Self::Fault(Fault::Unreachable)
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Self::Fault(Fault::ConnectionLost),
            sqlx::Error::Database(error) => {
                // statement_timeout (57014), lock_timeout (55P03).
                if matches!(error.code().as_deref(), Some("57014" | "55P03"))
                    && error.try_downcast_ref::<SqliteError>().is_none()
                {
                    return Self::Timeout;
                }
                Fault::of_database_error(error.as_ref()).map_or(Self::Refused, Self::Fault)
            }
            _ => Self::Refused,
        }
    }
}

/// Whether `source` says the database was slow or has a fault (worth
/// trying again later), rather than refusing the statement.
#[must_use]
pub fn is_transient(source: &sqlx::Error) -> bool {
    Cause::of(source) != Cause::Refused
}

/// Why the pool could not be set up. Nothing has been connected yet.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL names no engine this service supports.
    #[error("database.url is not a supported database URL: {url}")]
    Unsupported {
        /// The URL as configured, shown with its password hidden.
        url: DatabaseUrl,
    },
    /// The URL names a supported engine, but the driver cannot parse it.
    #[error("database.url {url} cannot be parsed")]
    Url {
        /// The URL as configured, shown with its password hidden.
        url: DatabaseUrl,
        /// The driver's reason for rejecting it.
        #[source]
        source: sqlx::Error,
    },
    /// The folder that is to hold the SQLite file cannot be created.
    #[error("cannot create the data folder {folder} for database.url")]
    DataFolder {
        /// The folder's path, as the URL resolves it.
        folder: String,
        /// The file system's reason for refusing it.
        #[source]
        source: io::Error,
    },
}

impl Database {
    /// Sets up the pool without connecting: connections are opened on
    /// first use, so a service whose database is down still starts, stays
    /// not ready, and retries ([`supervise`]). Creates the data folder of a
    /// SQLite file.
    ///
    /// # Errors
    /// When the URL is unusable or the data folder cannot be created.
    pub fn open(settings: &Settings, timeout: Duration) -> Result<Self, OpenError> {
        sqlx::any::install_default_drivers();
        let url = &settings.url;
        let backend = url
            .backend()
            .ok_or_else(|| OpenError::Unsupported { url: url.clone() })?;
        if let Some(folder) = url.sqlite_file().as_deref().and_then(|file| file.parent()) {
            std::fs::create_dir_all(folder).map_err(|source| OpenError::DataFolder {
                folder: folder.display().to_string(),
                source,
            })?;
        }
        let options: AnyConnectOptions = url.expose().parse().map_err(|source| OpenError::Url {
            url: url.clone(),
            source,
        })?;
        let limit = engine_limit(timeout);
        let session = session_settings(backend, limit);
        let faults = Faults::default();
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(limit)
            .after_connect({
                let session = session.clone();
                move |connection, _| Box::pin(configure(connection, session.clone()))
            })
            .before_acquire({
                let faults = faults.clone();
                move |_, metadata| {
                    let usable = !faults.is_retired(metadata.age);
                    Box::pin(async move { Ok(usable) })
                }
            })
            .after_release({
                let faults = faults.clone();
                move |connection, metadata| {
                    let retired = faults.is_retired(metadata.age);
                    Box::pin(async move {
                        Ok(!retired && released_outside_transaction(connection).await?)
                    })
                }
            })
            .connect_lazy_with(options.clone());
        Ok(Self {
            pool,
            backend,
            timeout,
            faults,
            options,
            session,
        })
    }

    /// The engine the URL selected, for the SQL that differs between the two.
    #[must_use]
    pub const fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, to run statements on inside [`Database::run`].
    #[must_use]
    pub const fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The faults this database has now; callers refuse writes at once
    /// while [`Faults::write_fault`] names one.
    #[must_use]
    pub const fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Runs one store operation under the database timeout, in a `db.query`
    /// span. A failure is returned as a [`DbError`] naming its
    /// `db.operation`, and logged with it: a timeout or a refusal at WARN
    /// each time, a fault at WARN when it starts ([`Faults::met`]).
    ///
    /// # Errors
    /// [`DbError`]: over the timeout, unreachable, or failed.
    pub async fn run<T, F>(&self, operation: &'static str, call: F) -> Result<T, DbError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        // DEBUG: at INFO, this second span per request cost a read by id a
        // tenth of its throughput (measured on the template's api type), and
        // the failure below carries `db.operation` itself. Raise this
        // module's level to see the span in logs and traces.
        let span = tracing::debug_span!("db.query", db.operation = operation);
        let started = self.faults.call_start();
        async {
            let result = match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok(value)) => {
                    self.faults.succeeded();
                    return Ok(value);
                }
                Ok(Err(source)) => DbError::classify(operation, self.timeout, source),
                Err(_elapsed) => DbError::Timeout {
                    operation,
                    timeout_ms: duration_ms(self.timeout),
                },
            };
            match &result {
                DbError::Unavailable { fault, source, .. } => {
                    self.faults.met(*fault, operation, source, started);
                }
                DbError::Timeout { .. } | DbError::Failed { .. } => tracing::warn!(
                    db.operation = operation,
                    error.kind = result.kind(),
                    error = %result,
                    "database call failed"
                ),
            }
            Err(result)
        }
        .instrument(span)
        .await
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite (the write
    /// lock up front), `BEGIN` on PostgreSQL. Dropping it uncommitted rolls
    /// it back; its connection goes back to the pool only once it is
    /// outside the transaction (`released_outside_transaction`).
    ///
    /// # Errors
    /// When no connection or lock is available in time.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Writes one row to a table of its own ([`PROBE_TABLE`]) on a
    /// connection opened for it, and commits: whether the database takes
    /// writes again after a write fault. A committed write needs what any
    /// other does: room on the disk, a writable file, the write lock. A
    /// fresh connection, because a pooled one may have been opened while
    /// the file could not be written, and SQLite keeps such a connection
    /// read-only.
    ///
    /// # Errors
    /// [`DbError`] when the write does not commit, in time.
    pub async fn probe_write(&self) -> Result<(), DbError> {
        self.run("probe_write", async {
            let mut connection = AnyConnection::connect_with(&self.options).await?;
            let written = async {
                configure(&mut connection, self.session.clone()).await?;
                match upsert_probe(&mut connection).await {
                    // Made at migration; an older release migrated this
                    // database, or the migration could not make it.
                    Err(error) if is_missing_table(&error) => {
                        connection.execute(PROBE_TABLE).await?;
                        upsert_probe(&mut connection).await
                    }
                    written => written,
                }
            }
            .await;
            connection.close().await.ok();
            written
        })
        .await
    }

    /// Closes every pooled connection: the idle ones now, the busy ones
    /// when they are handed back. While the database is read-only, before
    /// each probe: SQLite shares one map of a file's `-shm` among all of a
    /// process's connections to it, and one mapped while the volume was
    /// read-only keeps every new connection read-only, until all of them
    /// are closed.
    pub async fn reopen_connections(&self) {
        self.faults.retire_connections();
        while let Some(connection) = self.pool.try_acquire() {
            connection.close().await.ok();
        }
    }

    /// Asks the database whether it answers.
    ///
    /// # Errors
    /// [`DbError`] when it does not, in time.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.run("ping", async {
            sqlx::query("SELECT 1").execute(&self.pool).await.map(drop)
        })
        .await
    }
}

/// Milliseconds since the Unix epoch, the unit of every time column.
/// Leases compare these across replicas: keep the hosts' clocks in sync
/// (NTP); the lease is long against any sane skew.
#[must_use]
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A duration in whole milliseconds, as stored.
#[must_use]
pub fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Whether a connection handed back may be pooled again: not while it is
/// inside a transaction, which every later user would run in (on SQLite,
/// every later `BEGIN IMMEDIATE` would fail: "attempted to call
/// `begin_with` at non-zero transaction depth"). A transaction dropped
/// uncommitted queues its rollback; the ping runs it. Still inside
/// afterwards means the rollback failed: on SQLite, because SQLite had
/// already rolled the transaction back itself (it may after `SQLITE_FULL`,
/// `SQLITE_IOERR` or `SQLITE_BUSY`), and sqlx counts it as open for good.
/// That connection is closed, and the pool opens a fresh one when needed.
///
/// sqlx's own check on release (a ping) only closes connections that no
/// longer answer; this is why the pool has this hook.
async fn released_outside_transaction(connection: &mut AnyConnection) -> Result<bool, sqlx::Error> {
    if !connection.is_in_transaction() {
        return Ok(true);
    }
    connection.ping().await?;
    if connection.is_in_transaction() {
        tracing::warn!(
            "database connection still inside a transaction after its rollback, closed instead of pooled"
        );
        return Ok(false);
    }
    Ok(true)
}

/// Writes the probe's row.
async fn upsert_probe(connection: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO nebula_write_probe (id, written_at) VALUES (1, $1)
         ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at",
    )
    .bind(now_ms())
    .execute(connection)
    .await
    .map(drop)
}

/// Whether `error` says a table does not exist (PostgreSQL's 42P01,
/// SQLite's "no such table").
fn is_missing_table(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|error| {
        error.code().as_deref() == Some("42P01") || error.message().starts_with("no such table")
    })
}

/// Runs `session` on a new connection.
async fn configure(connection: &mut AnyConnection, session: String) -> Result<(), sqlx::Error> {
    connection.execute(session.as_str()).await.map(drop)
}

/// The limit the engines and the pool enforce: a tenth below the database
/// timeout, so that theirs fires first and the outer one is the backstop.
#[must_use]
pub fn engine_limit(timeout: Duration) -> Duration {
    timeout.saturating_sub(timeout / 10)
}

/// What every new connection is told, so that the engine itself enforces
/// the database timeout.
fn session_settings(backend: Backend, limit: Duration) -> String {
    let timeout_ms = duration_ms(limit);
    match backend {
        Backend::Sqlite => format!(
            "PRAGMA busy_timeout = {timeout_ms}; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
        ),
        Backend::Postgres => format!(
            "SET statement_timeout = {timeout_ms}; SET lock_timeout = {timeout_ms}; SET idle_in_transaction_session_timeout = {timeout_ms};"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(5);

    /// A SQLite database in a temporary folder, with a pool of `connections`.
    fn sqlite(folder: &tempfile::TempDir, connections: u32, query: &str) -> Database {
        sqlite_with_timeout(folder, connections, query, TIMEOUT)
    }

    fn sqlite_with_timeout(
        folder: &tempfile::TempDir,
        connections: u32,
        query: &str,
        timeout: Duration,
    ) -> Database {
        let settings = Settings {
            url: DatabaseUrl::new(format!(
                "sqlite://{}/test.db?{query}",
                folder.path().display()
            )),
            max_connections: connections,
            ..Settings::with_url("sqlite://unused")
        };
        Database::open(&settings, timeout).expect("the pool is set up")
    }

    async fn execute(database: &Database, sql: &'static str) -> Result<(), DbError> {
        database
            .run("test", async {
                sqlx::raw_sql(sql).execute(database.pool()).await.map(drop)
            })
            .await
    }

    /// A write transaction that SQLite ended by itself (it may, after
    /// `SQLITE_FULL`, `SQLITE_IOERR` or `SQLITE_BUSY`) and that is then
    /// dropped: sqlx's rollback fails ("no transaction is active") and
    /// sqlx keeps counting the transaction as open, so that connection,
    /// pooled again, would refuse every later `BEGIN IMMEDIATE`. It is
    /// closed instead, and the next write transaction starts.
    #[tokio::test]
    async fn a_transaction_sqlite_ended_itself_does_not_stay_on_the_pooled_connection() {
        let folder = tempfile::tempdir().expect("temporary folder");
        // One connection: the next transaction would get the same one.
        let database = sqlite(&folder, 1, "mode=rwc");
        execute(&database, "CREATE TABLE t (v BIGINT)")
            .await
            .unwrap();
        for round in 0..3 {
            let mut transaction = database.begin_write().await.unwrap_or_else(|error| {
                panic!("round {round}: a write transaction starts: {error}")
            });
            sqlx::query("INSERT INTO t (v) VALUES (1)")
                .execute(&mut *transaction)
                .await
                .unwrap();
            // What SQLite does on its own after some errors.
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut *transaction)
                .await
                .unwrap();
            drop(transaction);
        }
        let mut transaction = database
            .begin_write()
            .await
            .expect("a write transaction starts");
        sqlx::query("INSERT INTO t (v) VALUES (2)")
            .execute(&mut *transaction)
            .await
            .unwrap();
        transaction.commit().await.unwrap();
        let stored: Vec<i64> = sqlx::query_scalar("SELECT v FROM t")
            .fetch_all(database.pool())
            .await
            .unwrap();
        assert_eq!(
            stored,
            [2],
            "the rolled-back rows are gone, the committed one is kept"
        );
    }

    /// A transaction dropped mid-way (its future cancelled by a timeout, or
    /// an error returned with `?`) is rolled back before its connection
    /// serves anyone else.
    #[tokio::test]
    async fn a_dropped_transaction_is_rolled_back_before_its_connection_is_reused() {
        let folder = tempfile::tempdir().expect("temporary folder");
        let database = sqlite(&folder, 1, "mode=rwc");
        execute(&database, "CREATE TABLE t (v BIGINT)")
            .await
            .unwrap();
        let mut transaction = database.begin_write().await.unwrap();
        sqlx::query("INSERT INTO t (v) VALUES (1)")
            .execute(&mut *transaction)
            .await
            .unwrap();
        drop(transaction);
        let mut transaction = database
            .begin_write()
            .await
            .expect("a write transaction starts");
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(&mut *transaction)
            .await
            .unwrap();
        assert_eq!(count, 0);
    }

    /// A database out of room (SQLite's page limit stands in for a full
    /// disk: the same `SQLITE_FULL`) is a write fault: transient, named,
    /// and in force after reads succeed, not a plain failure. (What ends it,
    /// a probe write on a fresh connection, is in the binary tests, on a
    /// volume that really fills: the page limit is this connection's own.)
    #[tokio::test]
    async fn a_full_database_is_a_write_fault_that_reads_do_not_end() {
        let folder = tempfile::tempdir().expect("temporary folder");
        let database = sqlite(&folder, 1, "mode=rwc");
        execute(&database, "CREATE TABLE t (v TEXT)").await.unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(database.pool())
            .await
            .unwrap();
        // On the pool's one connection: no room for another page.
        sqlx::raw_sql(&format!("PRAGMA max_page_count = {pages}"))
            .execute(database.pool())
            .await
            .unwrap();
        let full = execute(
            &database,
            "INSERT INTO t (v) SELECT hex(randomblob(2000)) FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)",
        )
        .await
        .expect_err("no room left");
        assert!(
            matches!(
                full,
                DbError::Unavailable {
                    fault: Fault::DiskFull,
                    ..
                }
            ),
            "{full:?}"
        );
        assert!(full.is_transient());
        assert_eq!(full.kind(), "disk_full");
        assert_eq!(database.faults().write_fault(), Some(Fault::DiskFull));

        // Reads still work, and do not end the fault.
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(database.pool())
            .await
            .unwrap();
        assert_eq!(rows, 0);
        assert_eq!(database.faults().write_fault(), Some(Fault::DiskFull));
    }

    /// A database opened read-only refuses writes with a read-only fault;
    /// reads work.
    #[tokio::test]
    async fn a_read_only_database_is_a_read_only_fault() {
        let folder = tempfile::tempdir().expect("temporary folder");
        let writable = sqlite(&folder, 1, "mode=rwc");
        execute(
            &writable,
            "CREATE TABLE t (v BIGINT); INSERT INTO t VALUES (1)",
        )
        .await
        .unwrap();
        writable.pool().close().await;
        let read_only = sqlite(&folder, 1, "mode=ro");
        let refused = execute(&read_only, "INSERT INTO t VALUES (2)")
            .await
            .expect_err("a read-only database refuses writes");
        assert_eq!(refused.kind(), "read_only", "{refused:?}");
        assert!(refused.is_transient());
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(read_only.pool())
            .await
            .unwrap();
        assert_eq!(rows, 1);
    }

    /// SQLite's write lock held by another connection past `busy_timeout`
    /// is a `locked` fault (503), not a timeout (504): nothing was
    /// written, so the request is safe to retry.
    #[tokio::test]
    async fn a_write_lock_held_elsewhere_is_a_locked_fault() {
        let folder = tempfile::tempdir().expect("temporary folder");
        // busy_timeout is a tenth below the timeout: room for SQLite's
        // answer to come before the call's own deadline.
        let database = sqlite_with_timeout(&folder, 2, "mode=rwc", Duration::from_secs(1));
        execute(&database, "CREATE TABLE t (v BIGINT)")
            .await
            .unwrap();
        let holder = database.begin_write().await.unwrap();
        let locked = execute(&database, "INSERT INTO t VALUES (1)")
            .await
            .expect_err("the lock is held");
        assert_eq!(locked.kind(), "locked", "{locked:?}");
        assert!(locked.is_transient());
        drop(holder);
    }
}
