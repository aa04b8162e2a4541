//! Typed settings, loaded in layers and validated before anything starts.
//!
//! Precedence, lowest first: the built-in defaults ([`Settings::default`],
//! from the service's [`Service`] constants), the config file, environment
//! variables named `{PREFIX}_SECTION__KEY` ([`Service::ENV_PREFIX`]), then
//! command-line flags (and `RUST_LOG` for `log.level`). Every layer is
//! checked against the known keys and every value is range-checked, so a
//! typo or a bad value stops start-up with a message that names the key and
//! the layer it came from, instead of being ignored or replaced by a
//! default.
//!
//! The runtime's sections (`log`, `http`, `metrics`, `timeouts`,
//! `shutdown`, `database`) sit beside the service's own, a [`Section`]
//! under the name of its kind (`[api]`, `[worker]`, `[scheduler]`).

mod layers;
mod serde_impl;

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use self::layers::{Origin, SettingsError, env_var_for};
use crate::{
    Service, database, prometheus,
    telemetry::{LogFormat, LogSettings},
    timeouts::{self, Timeouts},
};

/// Config file read when `--config` is not given. It is optional: without it
/// the built-in defaults apply.
pub const DEFAULT_CONFIG_FILE: &str = "config/default.toml";

/// The service's own settings section, `[<kind>]`.
pub trait Section:
    Serialize + DeserializeOwned + Default + Clone + PartialEq + fmt::Debug + Send + Sync + 'static
{
    /// Records every out-of-range value in `problems`, under its dotted key
    /// (`api.max_page_size`).
    fn validate(&self, problems: &mut Problems);

    /// Dotted keys of lists that an environment variable may set, as
    /// comma-separated values (`worker.kinds.webhook.allowed_hosts`); other lists
    /// can be set in the file only.
    const ENVIRONMENT_LISTS: &'static [&'static str] = &[];
}

/// A section without settings, for a service (or a worker's kinds) that
/// has none: an empty table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

impl Section for NoSettings {
    fn validate(&self, _problems: &mut Problems) {}
}

/// Everything a service can be configured with.
pub struct Settings<S: Service> {
    /// `[log]`.
    pub log: LogSettings,
    /// `[http]`.
    pub http: HttpSettings,
    /// `[metrics]`.
    pub metrics: prometheus::Settings,
    /// `[timeouts]`: the Nebula timeout rules, as the service names them
    /// ([`Service::TIMEOUTS`]) unless overridden.
    pub timeouts: Timeouts,
    /// `[tokio]`: the threads of the Tokio runtime the binary builds.
    pub tokio: TokioSettings,
    /// `[shutdown]`.
    pub shutdown: ShutdownSettings,
    /// `[database]`.
    pub database: database::Settings,
    /// The service's own section, `[<kind>]`.
    pub service: S::Settings,
}

/// What the command line can override, on top of every other layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// A config file that must exist; without it [`DEFAULT_CONFIG_FILE`] is
    /// read if present.
    pub config_file: Option<PathBuf>,
    /// `--listen`: `http.listen`.
    pub listen: Option<SocketAddr>,
    /// `--log-format`: `log.format`.
    pub log_format: Option<LogFormat>,
}

impl<S: Service> Default for Settings<S> {
    fn default() -> Self {
        Self {
            log: LogSettings::default(),
            http: HttpSettings::on_port(S::DEFAULT_PORT),
            metrics: prometheus::Settings::default(),
            timeouts: S::TIMEOUTS,
            tokio: TokioSettings::default(),
            shutdown: ShutdownSettings::default(),
            database: database::Settings::with_url(S::DEFAULT_DATABASE_URL),
            service: S::Settings::default(),
        }
    }
}

// Clone, PartialEq and Debug are written out: derived, they would require
// the service's marker type `S` to implement them too.
impl<S: Service> Clone for Settings<S> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            http: self.http.clone(),
            metrics: self.metrics.clone(),
            timeouts: self.timeouts.clone(),
            tokio: self.tokio.clone(),
            shutdown: self.shutdown.clone(),
            database: self.database.clone(),
            service: self.service.clone(),
        }
    }
}

impl<S: Service> PartialEq for Settings<S> {
    fn eq(&self, other: &Self) -> bool {
        self.log == other.log
            && self.http == other.http
            && self.metrics == other.metrics
            && self.timeouts == other.timeouts
            && self.tokio == other.tokio
            && self.shutdown == other.shutdown
            && self.database == other.database
            && self.service == other.service
    }
}

impl<S: Service> fmt::Debug for Settings<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("log", &self.log)
            .field("http", &self.http)
            .field("metrics", &self.metrics)
            .field("timeouts", &self.timeouts)
            .field("tokio", &self.tokio)
            .field("shutdown", &self.shutdown)
            .field("database", &self.database)
            .field(S::KIND, &self.service)
            .finish()
    }
}

impl<S: Service> Settings<S> {
    /// Loads the settings from every layer, reading the process environment.
    ///
    /// # Errors
    /// A [`SettingsError`] naming the key, the layer it came from and what
    /// would be valid.
    pub fn load(overrides: &Overrides) -> Result<Self, SettingsError> {
        layers::load(overrides, std::env::vars())
    }

    /// Loads the settings with `env` standing in for the process environment,
    /// so tests never have to mutate it.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_with_env(
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        layers::load(overrides, env)
    }

    /// The two listeners need two ports (port 0 picks a free one for each).
    fn validate_ports(&self, problems: &mut Problems) {
        let port = self.metrics.listen.port();
        if port != 0 && port == self.http.listen.port() {
            problems.add(
                "metrics.listen",
                format!("must use another port than http.listen ({port})"),
            );
        }
    }

    /// Collects every out-of-range value, so one start-up reports them all.
    pub fn validate(&self, problems: &mut Problems) {
        self.log.validate(problems);
        self.http.validate(problems);
        self.validate_ports(problems);
        self.timeouts.validate(problems);
        self.tokio.validate(problems);
        self.shutdown.validate(problems);
        self.database.validate(problems);
        self.service.validate(problems);
        S::check_settings(self, problems);
    }
}

/// The `[http]` settings: the service's listener and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address the HTTP server binds. Port 0 picks any free port.
    pub listen: SocketAddr,
    /// Requests handled at once; more are refused with 503 and `Retry-After`
    /// instead of queueing without bound.
    pub max_concurrent_requests: usize,
    /// Seconds a refused client is asked to wait (`Retry-After`).
    pub retry_after_secs: u64,
    /// Connections open at once, idle keep-alive ones included. Beyond it a
    /// new connection is closed on arrival, so a flood of clients cannot
    /// take every file descriptor the process has.
    pub max_connections: usize,
    /// Time a client has to send a complete request head, from the start of
    /// the connection or the end of its previous response: also how long an
    /// idle keep-alive connection stays open. A slower client is
    /// disconnected. Longer than the idle timeout of the balancers in front
    /// (60 s on most), or they reuse connections this service is closing.
    pub header_read_timeout_ms: u64,
    /// Largest request head (request line and headers); a larger one is
    /// answered 431.
    pub max_header_bytes: usize,
    /// Largest request body a handler reads; a larger one is answered 413.
    pub max_body_bytes: usize,
}

impl HttpSettings {
    /// The defaults, listening on `port` of the loopback interface.
    #[must_use]
    pub fn on_port(port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            max_concurrent_requests: 512,
            retry_after_secs: 1,
            max_connections: 1024,
            header_read_timeout_ms: 65_000,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }

    /// Records every out-of-range value in `problems`.
    pub fn validate(&self, problems: &mut Problems) {
        problems.require_capacity(
            "http.max_concurrent_requests",
            self.max_concurrent_requests,
            1_000_000,
        );
        problems.require_positive("http.retry_after_secs", self.retry_after_secs);
        problems.require_capacity("http.max_connections", self.max_connections, 1_000_000);
        problems.require_positive("http.header_read_timeout_ms", self.header_read_timeout_ms);
        // Below 1 KiB ordinary browsers' heads would be refused; hyper's
        // read buffer caps a head at about 400 KiB whatever is set here.
        if !(1024..=65_536).contains(&self.max_header_bytes) {
            problems.add("http.max_header_bytes", "must be between 1024 and 65536");
        }
        problems.require_capacity("http.max_body_bytes", self.max_body_bytes, 1 << 30);
    }

    /// [`HttpSettings::header_read_timeout_ms`] as a duration.
    #[must_use]
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }
}

/// The `[tokio]` settings: the threads of the runtime the binary builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokioSettings {
    /// Threads that run tasks; 0 lets Tokio take one per CPU the process
    /// may use.
    pub worker_threads: usize,
    /// Most threads for blocking work at once; more calls wait for one.
    pub max_blocking_threads: usize,
}

impl Default for TokioSettings {
    fn default() -> Self {
        Self {
            worker_threads: 0,
            // Tokio's own default.
            max_blocking_threads: 512,
        }
    }
}

impl TokioSettings {
    /// Records every out-of-range value in `problems`.
    pub fn validate(&self, problems: &mut Problems) {
        if self.worker_threads > 1_024 {
            problems.add(
                "tokio.worker_threads",
                "must be between 0 (one per CPU) and 1024",
            );
        }
        problems.require_capacity(
            "tokio.max_blocking_threads",
            self.max_blocking_threads,
            10_000,
        );
    }
}

/// The `[shutdown]` settings: how long the drain may take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    /// How long accepted work may take to finish once shutdown starts. What
    /// is still running then is cancelled and the exit code says so.
    pub grace_ms: u64,
    /// How long readiness reports 503 before the listener closes, so a load
    /// balancer stops routing here before connections are refused.
    pub readiness_delay_ms: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace_ms: duration_ms(timeouts::SHUTDOWN_GRACE),
            readiness_delay_ms: 0,
        }
    }
}

impl ShutdownSettings {
    /// [`ShutdownSettings::grace_ms`] as a duration.
    #[must_use]
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }

    /// [`ShutdownSettings::readiness_delay_ms`] as a duration.
    #[must_use]
    pub fn readiness_delay(&self) -> Duration {
        Duration::from_millis(self.readiness_delay_ms)
    }

    /// Records every out-of-range value in `problems`.
    pub fn validate(&self, problems: &mut Problems) {
        problems.require_positive("shutdown.grace_ms", self.grace_ms);
        if self.readiness_delay_ms >= self.grace_ms {
            problems.add(
                "shutdown.readiness_delay_ms",
                format!(
                    "must be shorter than shutdown.grace_ms ({} ms), or no time is left to drain",
                    self.grace_ms
                ),
            );
        }
    }
}

/// Out-of-range values found by validation, each with its dotted key.
#[derive(Debug, Default)]
pub struct Problems(Vec<(String, String)>);

impl Problems {
    /// Records that `key` holds an invalid value; `reason` says what is valid.
    pub fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push((key.into(), reason.into()));
    }

    /// Records a problem unless `value` is at least 1.
    pub fn require_positive(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.add(key, "must be at least 1");
        }
    }

    /// Records a problem unless `value` is within `1..=max`. Capacities
    /// have a ceiling: a bound in the millions is no bound at all, and the
    /// Tokio primitives behind them panic far above it.
    pub fn require_capacity(&mut self, key: &str, value: usize, max: usize) {
        if value == 0 || value > max {
            self.add(key, format!("must be between 1 and {max}"));
        }
    }

    /// Each problem found: its dotted key and what would be valid.
    #[must_use]
    pub fn into_inner(self) -> Vec<(String, String)> {
        self.0
    }
}

/// A duration as whole milliseconds, the unit every `*_ms` setting uses.
#[must_use]
pub fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_service::TestService;

    fn load(
        env: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<Settings<TestService>, SettingsError> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Settings::load_with_env(overrides, env)
    }

    fn no_file() -> Overrides {
        Overrides {
            config_file: None,
            ..Overrides::default()
        }
    }

    fn env_var(key: &str) -> String {
        format!("{}_{key}", TestService::ENV_PREFIX)
    }

    #[test]
    fn the_defaults_are_valid_and_come_from_the_service() {
        let settings = Settings::<TestService>::default();
        let mut problems = Problems::default();
        settings.validate(&mut problems);
        let problems = problems.into_inner();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(settings.http.listen.port(), TestService::DEFAULT_PORT);
        assert_eq!(
            settings.database.url.expose(),
            TestService::DEFAULT_DATABASE_URL
        );
        assert_eq!(settings.timeouts, TestService::TIMEOUTS);
    }

    #[test]
    fn the_services_section_is_read_under_its_kind_and_checked() {
        let settings = load(&[(&env_var("TEST__SIZE"), "7")], &no_file()).unwrap();
        assert_eq!(settings.service.size, 7);

        let variable = env_var("TEST__SIZE");
        let error = load(&[(&variable, "11")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("test.size"), "{error}");
        assert!(error.contains(&variable), "{error}");
        assert!(error.contains("at most 10"), "{error}");

        let variable = env_var("TEST__SIZE");
        let error = load(&[(&variable, "many")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("test.size"), "the key path is kept: {error}");

        let variable = env_var("TEST__SIZES");
        let error = load(&[(&variable, "1")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("test.sizes"), "{error}");
        assert!(error.contains("size"), "lists the valid keys: {error}");
    }

    #[test]
    fn the_tokio_threads_are_bounded() {
        let variable = env_var("TOKIO__MAX_BLOCKING_THREADS");
        let error = load(&[(&variable, "0")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("tokio.max_blocking_threads"), "{error}");
        assert!(error.contains(&variable), "{error}");
        let error = load(&[(&env_var("TOKIO__WORKER_THREADS"), "5000")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("tokio.worker_threads"), "{error}");
        let settings = load(&[(&env_var("TOKIO__WORKER_THREADS"), "2")], &no_file()).unwrap();
        assert_eq!(settings.tokio.worker_threads, 2);
    }

    #[test]
    fn the_settings_print_and_read_back_the_same() {
        let mut settings = Settings::<TestService>::default();
        settings.service.size = 3;
        let text = toml::to_string(&settings).unwrap();
        assert!(text.contains("[test]"), "{text}");
        let read: Settings<TestService> = toml::from_str(&text).unwrap();
        assert_eq!(read, settings);
    }

    #[test]
    fn a_file_read_whole_needs_every_section_and_no_other() {
        let text = toml::to_string(&Settings::<TestService>::default()).unwrap();
        let without_tokio = text.replace("[tokio]", "[tokio_gone]");
        let error = toml::from_str::<Settings<TestService>>(&without_tokio)
            .unwrap_err()
            .to_string();
        assert!(error.contains("tokio_gone"), "{error}");
        assert!(
            error.contains("test"),
            "lists the service's section: {error}"
        );
        let (head, _) = text.split_once("[test]").unwrap();
        let error = toml::from_str::<Settings<TestService>>(head)
            .unwrap_err()
            .to_string();
        assert!(error.contains("missing field `test`"), "{error}");
    }

    #[test]
    fn environment_overrides_defaults_and_flags_override_environment() {
        let settings = load(&[(&env_var("HTTP__LISTEN"), "127.0.0.1:9000")], &no_file()).unwrap();
        assert_eq!(settings.http.listen, "127.0.0.1:9000".parse().unwrap());

        let flags = Overrides {
            listen: Some("127.0.0.1:9001".parse().unwrap()),
            ..no_file()
        };
        let settings = load(&[(&env_var("HTTP__LISTEN"), "127.0.0.1:9000")], &flags).unwrap();
        assert_eq!(settings.http.listen, "127.0.0.1:9001".parse().unwrap());
    }

    #[test]
    fn a_list_named_by_the_section_is_read_from_comma_separated_values() {
        let settings = load(
            &[(&env_var("TEST__NAMES"), "a.example,10.0.0.7")],
            &no_file(),
        )
        .unwrap();
        assert_eq!(settings.service.names, ["a.example", "10.0.0.7"]);
        let one = load(&[(&env_var("TEST__NAMES"), "a.example")], &no_file()).unwrap();
        assert_eq!(one.service.names, ["a.example"]);
        let spaced = load(
            &[(&env_var("TEST__NAMES"), " a.example , b.example,")],
            &no_file(),
        )
        .unwrap();
        assert_eq!(spaced.service.names, ["a.example", "b.example"]);
        // A bad item names the list's variable.
        let error = load(&[(&env_var("TEST__NAMES"), "ok,not ok")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!(
                "(from environment variable {})",
                env_var("TEST__NAMES")
            )),
            "{error}"
        );
        // Other values keep their commas.
        let level = load(&[(&env_var("LOG__LEVEL"), "info,sqlx=warn")], &no_file()).unwrap();
        assert_eq!(level.log.level, "info,sqlx=warn");
    }

    #[test]
    fn rust_log_replaces_the_configured_level() {
        let settings = load(&[("RUST_LOG", "warn")], &no_file()).unwrap();
        assert_eq!(settings.log.level, "warn");
    }

    #[test]
    fn unknown_environment_key_names_the_variable() {
        let variable = env_var("HTTP__LISTNE");
        let error = load(&[(&variable, "x")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("http.listne"), "{error}");
        assert!(error.contains(&variable), "{error}");
        assert!(
            error.contains("listen"),
            "should list the valid keys: {error}"
        );
    }

    #[test]
    fn the_metrics_listener_needs_a_port_of_its_own() {
        let variable = env_var("METRICS__LISTEN");
        let clash = format!("0.0.0.0:{}", TestService::DEFAULT_PORT);
        let error = load(&[(&variable, &clash)], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("metrics.listen"), "{error}");
        assert!(error.contains(&variable), "{error}");
        assert!(error.contains("http.listen"), "{error}");

        let both_free = [
            (env_var("HTTP__LISTEN"), "127.0.0.1:0"),
            (env_var("METRICS__LISTEN"), "127.0.0.1:0"),
        ];
        let both_free: Vec<_> = both_free.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert!(load(&both_free, &no_file()).is_ok(), "port 0 twice is fine");
    }

    #[test]
    fn wrong_type_names_key_and_origin() {
        let variable = env_var("SHUTDOWN__GRACE_MS");
        let error = load(&[(&variable, "soon")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("shutdown.grace_ms"), "{error}");
        assert!(error.contains(&variable), "{error}");
    }

    #[test]
    fn out_of_range_value_names_key_origin_and_valid_range() {
        let variable = env_var("HTTP__MAX_CONCURRENT_REQUESTS");
        let error = load(&[(&variable, "0")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("http.max_concurrent_requests"), "{error}");
        assert!(error.contains(&variable), "{error}");
        assert!(error.contains("between 1 and"), "{error}");
    }

    #[test]
    fn a_misspelt_level_is_an_error_not_silence() {
        for level in ["inof", "warning", "", "info,my_crate=loud"] {
            let error = load(&[("RUST_LOG", level)], &no_file())
                .unwrap_err()
                .to_string();
            assert!(error.contains("log.level"), "{level:?}: {error}");
        }
        let settings = load(&[("RUST_LOG", "warn,my_crate=debug")], &no_file()).unwrap();
        assert_eq!(settings.log.level, "warn,my_crate=debug");
    }

    #[test]
    fn variables_that_only_share_the_prefix_are_ignored_but_typos_are_not() {
        let kubernetes = [
            (env_var("SERVICE_HOST"), "10.0.0.1"),
            (env_var("PORT"), "tcp://10.0.0.1:80"),
        ];
        let env: Vec<(&str, &str)> = kubernetes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert!(load(&env, &no_file()).is_ok());

        let typo = env_var("HTTP_LISTEN");
        let error = load(&[(&typo, "127.0.0.1:1")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains(&typo), "{error}");
        assert!(
            error.contains(&env_var("HTTP__LISTEN")),
            "suggests the right name: {error}"
        );
    }

    #[test]
    fn invalid_rust_log_is_reported_as_rust_log() {
        let error = load(&[("RUST_LOG", "info,=nonsense=")], &no_file())
            .unwrap_err()
            .to_string();
        assert!(error.contains("RUST_LOG"), "{error}");
    }

    #[test]
    fn missing_explicit_config_file_is_an_error() {
        let overrides = Overrides {
            config_file: Some(PathBuf::from("does/not/exist.toml")),
            ..Overrides::default()
        };
        let error = load(&[], &overrides).unwrap_err().to_string();
        assert!(error.contains("does/not/exist.toml"), "{error}");
    }
}
