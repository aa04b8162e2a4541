//! Migrations embedded in the binary, applied at start-up (unless
//! `database.migrate_on_start` is off) and by the `migrate` command.
//!
//! Concurrent starts of several replicas do not race: on PostgreSQL the
//! migrator holds an advisory lock while it works; on SQLite each migration
//! is one write transaction, so a second process waits for the first and
//! then fails on what the first created, or with a timeout: it looks again
//! at once, and the start-up loop retries a timeout, until it finds the
//! migrations applied. Migrations run under the database timeout like
//! every other call: give the `migrate` step a longer
//! `timeouts.database_ms` for a migration that rewrites a large table.

use futures_util::future::BoxFuture;
use sqlx::{
    error::BoxDynError,
    migrate::{MigrateError, MigrationSource, MigrationType, Migrator},
};

use super::{Backend, Database, DbError};

/// One migration: a version, a short description and its SQL, written to
/// run on both engines.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Orders the migrations and records which are applied: never change or reuse one.
    pub version: i64,
    /// What the migration does, kept beside its version in the database.
    pub description: &'static str,
    /// The statements to run, written for both SQLite and PostgreSQL.
    pub sql: &'static str,
}

/// Why the migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A database call around the migrations failed, timed out or met a fault.
    #[error(transparent)]
    Database(#[from] DbError),
    /// The migrator refused: a migration failed, or disagrees with what was applied before.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] MigrateError),
}

impl MigrationError {
    /// Whether trying again later may succeed (the database was away or
    /// busy), as opposed to a migration that is wrong for this database.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database(error) => error.is_transient(),
            // A migration the database refuses (bad SQL, a conflict with
            // the schema) is not retried: only a database away or busy is.
            Self::Migrate(
                MigrateError::Execute(source) | MigrateError::ExecuteMigration(source, _),
            ) => super::is_transient(source),
            Self::Migrate(_) => false,
        }
    }
}

/// Why the `migrate` command failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateCommandError {
    /// The database of `database.url` could not be opened.
    #[error(transparent)]
    Open(#[from] super::OpenError),
    /// The migrations could not be applied.
    #[error(transparent)]
    Migrate(#[from] MigrationError),
}

/// The `migrate` command: applies the service's migrations to
/// `database.url` and returns.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn migrate_command<S: crate::Service>(
    settings: &crate::Settings<S>,
) -> Result<(), MigrateCommandError> {
    let database = Database::open(&settings.database, settings.timeouts.database())?;
    migrate(&database, S::MIGRATIONS).await?;
    tracing::info!(database.url = %settings.database.url, "database migrated");
    Ok(())
}

#[derive(Debug)]
struct Embedded(&'static [Migration]);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<sqlx::migrate::Migration>, BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|migration| {
                sqlx::migrate::Migration::new(
                    migration.version,
                    migration.description.into(),
                    MigrationType::Simple,
                    migration.sql.into(),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// Applies the `migrations` that are not applied yet.
///
/// # Errors
/// When the database cannot be reached in time, or a migration fails or
/// disagrees with what was applied before.
pub async fn migrate(
    database: &Database,
    migrations: &'static [Migration],
) -> Result<(), MigrationError> {
    if database.backend() == Backend::Sqlite {
        // Persistent in the file; set before the first table is written.
        database
            .run("set_journal_mode", async {
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(database.pool())
                    .await
                    .map(drop)
            })
            .await?;
    }
    let migrator = Migrator::new(Embedded(migrations))
        .await
        .map_err(MigrationError::Migrate)?;
    // On SQLite nothing serialises migrators: another replica may apply a
    // migration between our look at the applied ones and our run of it
    // ("table already exists"). Running again looks again; each failed
    // round means one more migration was applied elsewhere, so a migration
    // that is wrong still fails within one round more than there are
    // migrations.
    let rounds = match database.backend() {
        Backend::Sqlite => migrations.len() + 1,
        Backend::Postgres => 1,
    };
    let mut round = 1;
    loop {
        match run_on_own_connection(database, &migrator).await? {
            Ok(()) => break,
            Err(_) if round < rounds => round += 1,
            Err(error) => return Err(MigrationError::Migrate(error)),
        }
    }
    make_probe_table(database).await;
    Ok(())
}

/// Makes the health check's probe table ([`super::PROBE_TABLE`]) here,
/// where the role that migrates may create tables. Not a migration of the
/// service's own: it belongs to the machinery. Best effort: on a database
/// that cannot be written now the probe makes it once it can.
async fn make_probe_table(database: &Database) {
    let made = database
        .run("make_probe_table", async {
            sqlx::query(super::PROBE_TABLE)
                .execute(database.pool())
                .await
                .map(drop)
        })
        .await;
    if let Err(error) = made {
        tracing::debug!(%error, "probe table not made now; the probe makes it when needed");
    }
}

/// One run of `migrator`, on a connection of its own that is closed
/// afterwards rather than pooled: on PostgreSQL the migrator holds a
/// session advisory lock, and a run cut by the timeout must not leave it
/// held on a pooled connection, where it would block every other replica.
async fn run_on_own_connection(
    database: &Database,
    migrator: &Migrator,
) -> Result<Result<(), MigrateError>, DbError> {
    database
        .run("migrate", async {
            let mut connection = database.pool().acquire().await?;
            connection.close_on_drop();
            Ok(migrator.run_direct(&mut *connection).await)
        })
        .await
}
