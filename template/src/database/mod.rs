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
//! SQL text is shared between the engines: `$1` placeholders, integers as
//! `BIGINT`, times as milliseconds since the Unix epoch.

mod migrations;
mod settings;
mod supervisor;

use std::{
    future::Future,
    io,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use sqlx::{
    Any, AnyConnection, AnyPool, Executor, Transaction,
    any::{AnyConnectOptions, AnyPoolOptions},
    error::ErrorKind,
};
use tracing::Instrument;

pub use self::{
    migrations::{MigrateCommandError, Migration, MigrationError, migrate, migrate_command},
    settings::{Backend, DEFAULT_URL, DatabaseUrl, Settings},
    supervisor::{Connected, Started, Supervised, jittered, start, supervise},
};
use crate::settings::duration_ms;

/// A handle on the pool; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    timeout: Duration,
}

/// Why a database call did not succeed. Each names the operation, for the
/// caller's log and answer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Over the database timeout: the call, a statement or a lock wait.
    #[error("database operation `{operation}` timed out after {timeout_ms} ms")]
    Timeout {
        operation: &'static str,
        timeout_ms: u64,
    },
    /// The database cannot be reached or is shutting down, or no pooled
    /// connection came free in time.
    #[error("database unavailable during `{operation}`: {source}")]
    Unavailable {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Any other failure: a constraint, bad SQL, a decoding error.
    #[error("database operation `{operation}` failed: {source}")]
    Failed {
        operation: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

impl DbError {
    /// Whether a client may retry later: the database is slow or away, as
    /// opposed to refusing the request itself.
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

    /// The `error.kind` of log lines and metrics.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Timeout { .. } => "timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Failed { .. } => "failed",
        }
    }

    fn classify(operation: &'static str, timeout: Duration, source: sqlx::Error) -> Self {
        match Cause::of(&source) {
            Cause::Timeout => Self::Timeout {
                operation,
                timeout_ms: duration_ms(timeout),
            },
            Cause::Unavailable => Self::Unavailable { operation, source },
            Cause::Refused => Self::Failed { operation, source },
        }
    }
}

/// What an error from sqlx says about the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A wait ran out: for a lock, a statement.
    Timeout,
    /// The database cannot be reached, or is starting or shutting down, or
    /// no pooled connection came free in time (the pool retries an
    /// unreachable server until then).
    Unavailable,
    /// The database answered and refused: a constraint, bad SQL, a type.
    Refused,
}

impl Cause {
    fn of(source: &sqlx::Error) -> Self {
        match source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Self::Unavailable,
            sqlx::Error::Database(error) => match error.code().as_deref() {
                // SQLite: busy or locked past busy_timeout (the primary
                // codes and their extended forms). PostgreSQL:
                // statement_timeout (57014), lock_timeout (55P03).
                Some("5" | "6" | "261" | "262" | "517" | "773" | "57014" | "55P03") => {
                    Self::Timeout
                }
                // PostgreSQL: shutting down, starting up, connection lost;
                // a deadlock or serialization failure, which a retry
                // resolves.
                Some(code)
                    if code.starts_with("57P")
                        || code.starts_with("08")
                        || code == "40P01"
                        || code == "40001" =>
                {
                    Self::Unavailable
                }
                _ => Self::Refused,
            },
            _ => Self::Refused,
        }
    }
}

/// Whether `source` says the database was slow or away (worth trying
/// again later), rather than refusing the statement.
#[must_use]
pub fn is_transient(source: &sqlx::Error) -> bool {
    Cause::of(source) != Cause::Refused
}

/// Why the pool could not be set up. Nothing has been connected yet.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("database.url is not a supported database URL: {url}")]
    Unsupported { url: DatabaseUrl },
    #[error("database.url {url} cannot be parsed")]
    Url {
        url: DatabaseUrl,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the data folder {folder} for database.url")]
    DataFolder {
        folder: String,
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
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(limit)
            .after_connect(move |connection, _| Box::pin(configure(connection, session.clone())))
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            backend,
            timeout,
        })
    }

    #[must_use]
    pub const fn backend(&self) -> Backend {
        self.backend
    }

    #[must_use]
    pub const fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Runs one store operation under the database timeout, in a `db.query`
    /// span. A failure is logged with its `db.operation` and returned as a
    /// [`DbError`] naming it.
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
        async {
            let result = match tokio::time::timeout(self.timeout, call).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(source)) => DbError::classify(operation, self.timeout, source),
                Err(_elapsed) => DbError::Timeout {
                    operation,
                    timeout_ms: duration_ms(self.timeout),
                },
            };
            tracing::warn!(
                db.operation = operation,
                error.kind = result.kind(),
                error = %result,
                "database call failed"
            );
            Err(result)
        }
        .instrument(span)
        .await
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` on SQLite (the write
    /// lock up front), `BEGIN` on PostgreSQL. Dropping it uncommitted rolls
    /// it back.
    ///
    /// # Errors
    /// When no connection or lock is available in time.
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
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
