//! Databases for tests: a SQLite file in a temporary folder always, and a
//! fresh PostgreSQL database when `NEBULA_TEST_POSTGRES_URL` names a server
//! (an admin URL, such as `postgres://postgres@127.0.0.1:5432/postgres`).
//! Each PostgreSQL test creates a database of its own on that server, so
//! tests never share state. Mark a test that needs PostgreSQL
//! `#[ignore = "needs PostgreSQL: ..."]` and run it with
//! `--include-ignored` where a server is given: without one it is reported
//! as ignored, not passed.

use std::path::Path;

use sqlx::{AnyConnection, Connection};
use tempfile::TempDir;

use crate::database::DatabaseUrl;

/// The variable naming the PostgreSQL server the tests may use.
pub const POSTGRES_URL_VAR: &str = "NEBULA_TEST_POSTGRES_URL";

/// Which engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A SQLite file.
    Sqlite,
    /// A database on the server of `NEBULA_TEST_POSTGRES_URL`.
    Postgres,
}

/// A database for one test; a SQLite one is removed when dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL, for `database.url`.
    pub url: DatabaseUrl,
    /// Its engine.
    pub engine: Engine,
    _folder: Option<TempDir>,
}

impl TestDatabase {
    /// A new database on `engine`.
    ///
    /// # Panics
    /// On PostgreSQL, when no server is given: the tests that need one are
    /// `#[ignore]`d, so that they are reported as ignored, not passed, where
    /// there is none; including them without a server is a mistake.
    pub async fn create(engine: Engine, test: &str) -> Self {
        match engine {
            Engine::Sqlite => Self::sqlite(),
            Engine::Postgres => Self::postgres(test).await,
        }
    }

    /// A SQLite file in a temporary folder, removed when dropped.
    ///
    /// # Panics
    /// When no temporary folder can be made.
    #[must_use]
    pub fn sqlite() -> Self {
        let folder = tempfile::tempdir().expect("temporary folder");
        Self {
            url: sqlite_url(folder.path()),
            engine: Engine::Sqlite,
            _folder: Some(folder),
        }
    }

    /// A SQLite file in `folder`, which the caller keeps and removes.
    #[must_use]
    pub fn sqlite_in(folder: &Path) -> Self {
        Self {
            url: sqlite_url(folder),
            engine: Engine::Sqlite,
            _folder: None,
        }
    }

    async fn postgres(test: &str) -> Self {
        let admin = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
            panic!("{test} needs PostgreSQL: set {POSTGRES_URL_VAR} to a server's admin URL")
        });
        sqlx::any::install_default_drivers();
        let name = format!("test_{:032x}", fastrand::u128(..));
        let mut connection = AnyConnection::connect(&admin)
            .await
            .unwrap_or_else(|error| panic!("{POSTGRES_URL_VAR} does not connect: {error}"));
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut connection)
            .await
            .expect("CREATE DATABASE");
        connection.close().await.ok();
        Self {
            url: DatabaseUrl::new(with_database(&admin, &name)),
            engine: Engine::Postgres,
            _folder: None,
        }
    }

    /// The same PostgreSQL database reached at `url` (through a relay);
    /// `database` keeps owning it.
    ///
    /// # Panics
    /// When `database` is not a PostgreSQL one.
    #[must_use]
    pub fn postgres_at(database: &Self, url: String) -> Self {
        assert_eq!(database.engine, Engine::Postgres);
        Self {
            url: DatabaseUrl::new(url),
            engine: Engine::Postgres,
            _folder: None,
        }
    }

    /// A direct connection, for a test that needs to look or lock.
    ///
    /// # Panics
    /// When the database does not connect.
    pub async fn connect(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(self.url.expose())
            .await
            .expect("test connection to the database")
    }
}

/// The URL of a SQLite file `test.db` in `folder`.
fn sqlite_url(folder: &Path) -> DatabaseUrl {
    DatabaseUrl::new(format!("sqlite://{}/test.db?mode=rwc", folder.display()))
}

/// `admin` with its database name replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin
        .split_once('?')
        .map_or((admin, None), |(base, query)| (base, Some(query)));
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}
