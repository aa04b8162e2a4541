//! The `[database]` settings, and the URL that must never be shown whole.

use std::{fmt, path::PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::settings::Problems;

/// Which engine a URL selects. The same binary runs on either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded, one file, one host: several processes may share the file,
    /// machines may not.
    Sqlite,
    /// A server that replicas on several machines share.
    Postgres,
}

impl Backend {
    /// The engine's name, as logs give it in `database.backend`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A database URL. `Debug`, `Display` and `Serialize` (which
/// `--check-config` uses) show it with any password replaced by `***`, so
/// neither a log line nor a printed config leaks the credential.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps `url` as given; the settings' validation checks it, not this.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, password included: for the driver only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The engine the URL selects, if it is one this service supports.
    #[must_use]
    pub fn backend(&self) -> Option<Backend> {
        let scheme = self.0.split_once(':')?.0;
        match scheme {
            "sqlite" => Some(Backend::Sqlite),
            "postgres" | "postgresql" => Some(Backend::Postgres),
            _ => None,
        }
    }

    /// The file of a SQLite URL (`sqlite://data/x.db?mode=rwc` ->
    /// `data/x.db`); `None` for other engines and in-memory databases.
    #[must_use]
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let rest = self.0.strip_prefix("sqlite:")?;
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }

    /// The URL with its passwords shown as `***`: the user part's, and a
    /// `password=` query parameter's (both are accepted by the drivers).
    #[must_use]
    pub fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return self.0.clone();
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) if user_info.contains(':') => {
                let user = user_info
                    .split_once(':')
                    .map_or(user_info, |(user, _)| user);
                format!("{user}:***@{host}")
            }
            _ => authority.to_owned(),
        };
        format!("{scheme}://{authority}{}", redact_query_password(tail))
    }
}

/// `tail` (path, query, fragment) with the value of every `password=`
/// query parameter as `***`.
fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let (query, fragment) = query
        .split_once('#')
        .map_or((query, None), |(query, fragment)| (query, Some(fragment)));
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => parameter.to_owned(),
        })
        .collect();
    let fragment = fragment
        .map(|fragment| format!("#{fragment}"))
        .unwrap_or_default();
    format!("{path}?{}{fragment}", parameters.join("&"))
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// The `[database]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://PATH?mode=rwc` (embedded, the default) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (shared by replicas).
    pub url: DatabaseUrl,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// Apply the embedded migrations at start-up. Turn off when a separate
    /// step runs `migrate` before the service starts.
    pub migrate_on_start: bool,
    /// How often the background check asks the database whether it answers;
    /// readiness follows the last answer.
    pub health_check_interval_ms: u64,
}

impl Settings {
    /// The defaults, on the database at `url`.
    #[must_use]
    pub fn with_url(url: &str) -> Self {
        Self {
            url: DatabaseUrl::new(url),
            max_connections: 8,
            migrate_on_start: true,
            health_check_interval_ms: 1_000,
        }
    }
}

impl Settings {
    /// Records every out-of-range value in `problems`.
    pub fn validate(&self, problems: &mut Problems) {
        if self.url.backend().is_none() {
            problems.add(
                "database.url",
                format!(
                    "\"{}\" is not a supported database URL; use sqlite://PATH?mode=rwc or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                    self.url.redacted()
                ),
            );
        } else if self.url.backend() == Some(Backend::Sqlite) && self.url.sqlite_file().is_none() {
            problems.add(
                "database.url",
                "names no file; an in-memory database would lose every job at exit, use sqlite://PATH?mode=rwc",
            );
        }
        if self.max_connections == 0 || self.max_connections > 1_000 {
            problems.add("database.max_connections", "must be between 1 and 1000");
        }
        if !(100..=60_000).contains(&self.health_check_interval_ms) {
            problems.add(
                "database.health_check_interval_ms",
                "must be between 100 and 60000",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db.internal:5432/jobs?sslmode=require");
        let shown = url.redacted();
        assert_eq!(
            shown,
            "postgres://app:***@db.internal:5432/jobs?sslmode=require"
        );
        assert!(!format!("{url:?} {url}").contains("s3cret"));
        assert!(
            !toml::to_string(&Settings {
                url,
                ..Settings::with_url("sqlite://data/x.db?mode=rwc")
            })
            .unwrap()
            .contains("s3cret")
        );
    }

    #[test]
    fn a_password_in_the_query_is_never_shown() {
        let url = DatabaseUrl::new("postgres://app@db/jobs?sslmode=require&password=s3cret");
        assert_eq!(
            url.redacted(),
            "postgres://app@db/jobs?sslmode=require&password=***"
        );
        let both = DatabaseUrl::new("postgresql://app:one@db/jobs?PASSWORD=two#x");
        assert_eq!(
            both.redacted(),
            "postgresql://app:***@db/jobs?PASSWORD=***#x"
        );
    }

    #[test]
    fn urls_without_a_password_are_shown_as_they_are() {
        for url in ["postgres://app@db/jobs", "sqlite://data/x.db?mode=rwc"] {
            assert_eq!(DatabaseUrl::new(url).redacted(), url);
        }
    }

    #[test]
    fn the_scheme_selects_the_backend() {
        assert_eq!(
            DatabaseUrl::new("sqlite://data/x.db?mode=rwc").backend(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            DatabaseUrl::new("postgresql://h/db").backend(),
            Some(Backend::Postgres)
        );
        assert_eq!(DatabaseUrl::new("mysql://h/db").backend(), None);
    }

    #[test]
    fn the_sqlite_file_is_read_from_the_url() {
        let file = |url: &str| DatabaseUrl::new(url).sqlite_file();
        assert_eq!(
            file("sqlite://data/x.db?mode=rwc"),
            Some(PathBuf::from("data/x.db"))
        );
        assert_eq!(
            file("sqlite:///var/lib/x.db"),
            Some(PathBuf::from("/var/lib/x.db"))
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://h/db"), None);
    }
}
