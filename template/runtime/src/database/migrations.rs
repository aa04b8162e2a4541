//! Migrations embedded in the binary, applied at start-up (unless
//! `database.migrate_on_start` is off) and by the `migrate` command.
//!
//! One history: a service's migrations come in lists (the engines' it runs,
//! then its own: [`crate::Service::MIGRATIONS`]), applied by one migrator in
//! version order and recorded in one table. Versions below
//! [`FIRST_SERVICE_VERSION`] are the runtime's (its engines' tables are
//! made first on a new database, so a service's migration may refer to
//! them); a service numbers its own from there, or by timestamp. A version
//! used twice stops the migration before anything runs.
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

/// The first version a service's own migrations may use; the runtime's
/// engines number theirs below it (the job engine 1 to 99, the scheduling
/// engine 101 to 199).
pub const FIRST_SERVICE_VERSION: i64 = 1000;

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
    /// Two migrations have the same version.
    #[error(
        "migrations \"{first}\" and \"{second}\" both have version {version}: give one another version (the runtime's engines use versions below {FIRST_SERVICE_VERSION})"
    )]
    VersionUsedTwice {
        /// The version.
        version: i64,
        /// One migration's description.
        first: &'static str,
        /// The other's.
        second: &'static str,
    },
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
            Self::Migrate(_) | Self::VersionUsedTwice { .. } => false,
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
struct Embedded(Vec<sqlx::migrate::Migration>);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<sqlx::migrate::Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

/// The migrations as sqlx runs them, their checksums computed.
fn resolved(migrations: &[Migration]) -> Vec<sqlx::migrate::Migration> {
    migrations
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
        .collect()
}

/// The migrations of `lists` as one history, in version order.
///
/// # Errors
/// When two have the same version.
fn history(lists: &[&'static [Migration]]) -> Result<Vec<Migration>, MigrationError> {
    let mut migrations: Vec<Migration> =
        lists.iter().flat_map(|list| list.iter().copied()).collect();
    migrations.sort_by_key(|migration| migration.version);
    if let Some(pair) = migrations
        .windows(2)
        .find(|pair| pair[0].version == pair[1].version)
    {
        return Err(MigrationError::VersionUsedTwice {
            version: pair[0].version,
            first: pair[0].description,
            second: pair[1].description,
        });
    }
    Ok(migrations)
}

/// Applies the migrations of `lists` that are not applied yet, as one
/// history in version order.
///
/// # Errors
/// When two migrations have the same version, the database cannot be
/// reached in time, or a migration fails or disagrees with what was
/// applied before.
pub async fn migrate(
    database: &Database,
    lists: &[&'static [Migration]],
) -> Result<(), MigrationError> {
    let migrations = resolved(&history(lists)?);
    let count = migrations.len();
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
    carry_renumbered(database, &migrations).await?;
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
        Backend::Sqlite => count + 1,
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

/// Moves the record of each migration that was renumbered (applied under
/// one version, now known under another, with the same description and
/// SQL) to its new version. Without it, sqlx would refuse the database for
/// the version it no longer knows: the runtime's range below 1000 moved the
/// scheduler's run table from 1 to 101 and the api's items from 1 to 1000.
/// Hand-written because sqlx has no notion of a renumbered migration; a
/// repeat by another replica matches no row.
async fn carry_renumbered(
    database: &Database,
    migrations: &[sqlx::migrate::Migration],
) -> Result<(), DbError> {
    let recorded = match database.backend() {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let tables: i64 = database
        .run("find_migration_records", async {
            sqlx::query_scalar(recorded)
                .fetch_one(database.pool())
                .await
        })
        .await?;
    if tables == 0 {
        return Ok(());
    }
    let applied: Vec<(i64, String, Vec<u8>)> = database
        .run("read_migration_records", async {
            sqlx::query_as("SELECT version, description, checksum FROM _sqlx_migrations")
                .fetch_all(database.pool())
                .await
        })
        .await?;
    let known = |version: i64| {
        migrations
            .iter()
            .any(|migration| migration.version == version)
    };
    let applied_at = |version: i64| applied.iter().any(|(applied, ..)| *applied == version);
    for (old, description, checksum) in &applied {
        if known(*old) {
            continue;
        }
        let Some(renumbered) = migrations.iter().find(|migration| {
            migration.description == description.as_str()
                && migration.checksum.as_ref() == checksum.as_slice()
                && !applied_at(migration.version)
        }) else {
            continue;
        };
        let new = renumbered.version;
        database
            .run("renumber_migration_record", async {
                sqlx::query("UPDATE _sqlx_migrations SET version = $1 WHERE version = $2")
                    .bind(new)
                    .bind(*old)
                    .execute(database.pool())
                    .await
                    .map(drop)
            })
            .await?;
        tracing::info!(
            migration.description = %description,
            from = old,
            to = new,
            "migration record moved to its new version"
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: &[Migration] = &[
        Migration {
            version: 2,
            description: "engine two",
            sql: "",
        },
        Migration {
            version: 1,
            description: "engine one",
            sql: "",
        },
    ];

    #[test]
    fn lists_make_one_history_in_version_order() {
        const OWN: &[Migration] = &[Migration {
            version: FIRST_SERVICE_VERSION,
            description: "own",
            sql: "",
        }];
        let order: Vec<i64> = history(&[OWN, ENGINE])
            .unwrap()
            .iter()
            .map(|migration| migration.version)
            .collect();
        assert_eq!(order, [1, 2, FIRST_SERVICE_VERSION]);
    }

    #[test]
    fn a_version_used_twice_is_refused_naming_both() {
        const CLASH: &[Migration] = &[Migration {
            version: 2,
            description: "own",
            sql: "",
        }];
        let error = history(&[ENGINE, CLASH]).unwrap_err();
        assert!(!error.is_transient());
        let message = error.to_string();
        assert!(
            message.starts_with("migrations \"engine two\" and \"own\" both have version 2"),
            "{message}"
        );
    }

    /// A database migrated when a migration had another version keeps
    /// its record: the migration is not run again, nor refused.
    async fn a_renumbered_migration_keeps_its_record(database: &Database) {
        const BEFORE: &[Migration] = &[Migration {
            version: 1,
            description: "items",
            sql: "CREATE TABLE items (id BIGINT)",
        }];
        const AFTER: &[Migration] = &[Migration {
            version: FIRST_SERVICE_VERSION,
            description: "items",
            sql: "CREATE TABLE items (id BIGINT)",
        }];
        migrate(database, &[BEFORE]).await.unwrap();
        migrate(database, &[AFTER]).await.unwrap();
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(database.pool())
            .await
            .unwrap();
        assert_eq!(versions, [FIRST_SERVICE_VERSION]);
    }

    #[tokio::test]
    async fn a_renumbered_migration_keeps_its_record_on_sqlite() {
        let folder = tempfile::tempdir().expect("temporary folder");
        let url = format!("sqlite://{}/test.db?mode=rwc", folder.path().display());
        a_renumbered_migration_keeps_its_record(&open(&url)).await;
    }

    #[cfg(feature = "testing")]
    #[tokio::test]
    #[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
    async fn a_renumbered_migration_keeps_its_record_on_postgres() {
        use crate::testing::{Engine, TestDatabase};
        let test = TestDatabase::create(Engine::Postgres, "renumbered").await;
        a_renumbered_migration_keeps_its_record(&open(test.url.expose())).await;
    }

    fn open(url: &str) -> Database {
        let settings = super::super::Settings {
            url: super::super::DatabaseUrl::new(url.to_owned()),
            ..super::super::Settings::with_url("sqlite://unused")
        };
        Database::open(&settings, std::time::Duration::from_secs(5)).unwrap()
    }
}
