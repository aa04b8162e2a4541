//! What a service is to the runtime ([`Service`]), and its lifecycle: bind,
//! run until asked to stop, then drain in phases within a deadline.
//!
//! Drain phases, in order:
//! 1. readiness turns to 503 and intake refuses new work;
//! 2. after `shutdown.readiness_delay_ms` the listener closes;
//! 3. accepted work finishes, until `shutdown.grace_ms` after the start;
//! 4. at the deadline what is left is cancelled (and logged), the tasks get a
//!    short margin to record that, and the service returns.
//!
//! A forced shutdown (second signal) returns at once from any phase.
//!
//! The metrics listener is not part of the drain: it serves through every
//! phase, so the drain can be watched, and stops once the drain is over.

use std::{io, net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use tokio::{net::TcpListener, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    database::Migration,
    exit::Exit,
    http, prometheus,
    readiness::Readiness,
    settings::{Problems, Section, Settings, duration_ms},
    shutdown::Shutdown,
    tasks::{BoxError, Context, TaskFailure, Tasks},
    timeouts::Timeouts,
};

/// A service, as the runtime knows it: who it is, its defaults, its own
/// settings section and migrations, and how it starts. A generated service
/// implements it once, on a type of its own, in its `lib.rs`.
pub trait Service: Sized + Send + Sync + 'static {
    /// Its kind (`api`, `worker`, `scheduler`): the name of its settings
    /// section, the `service.kind` of its logs, the `kind` label of
    /// `nebula_service_info`.
    const KIND: &'static str;
    /// Its package name: the binary's name in `--help`.
    const NAME: &'static str;
    /// Its package version: `--version`, and the `version` label of
    /// `nebula_service_info`.
    const VERSION: &'static str;
    /// Its one-line description, for `--help`.
    const DESCRIPTION: &'static str;
    /// Prefix of the environment variables that set its settings:
    /// `{ENV_PREFIX}_SECTION__KEY`.
    const ENV_PREFIX: &'static str;
    /// The port of its default `http.listen`.
    const DEFAULT_PORT: u16;
    /// Its default `database.url`.
    const DEFAULT_DATABASE_URL: &'static str;
    /// The Nebula timeout rules as this service names them; `[timeouts]`
    /// overrides them per deployment, and the runtime enforces them.
    const TIMEOUTS: Timeouts;
    /// Its database migrations, in lists: the engines' it runs
    /// (`jobs::MIGRATIONS`, `scheduling::MIGRATIONS`), then its own, with
    /// versions from [`FIRST_SERVICE_VERSION`]. The runtime applies them
    /// as one history, in version order.
    ///
    /// [`FIRST_SERVICE_VERSION`]: crate::database::FIRST_SERVICE_VERSION
    const MIGRATIONS: &'static [&'static [Migration]];

    /// Its own settings section, `[<KIND>]`.
    type Settings: Section;

    /// Sets the service up: opens what it needs, spawns its subsystems in
    /// `context.tasks`, and returns its routes, which the runtime serves
    /// behind its request layer.
    ///
    /// # Errors
    /// When it cannot start; the binary exits 1 with the error (78 when it
    /// is a [`SettingsError`](crate::settings::SettingsError)).
    fn start(context: &mut Context<'_, Self>) -> Result<Router, BoxError>;

    /// Checks what only the service's code knows about its settings (that
    /// each scheduled job's action is registered, say), recording each
    /// problem under its dotted key as [`Section::validate`] does: the
    /// loader reports them with where the value came from, before anything
    /// starts, and `--check-config` with them. The default checks nothing.
    fn check_settings(_settings: &Settings<Self>, _problems: &mut Problems) {}
}

/// Time that cancelled work gets, after the deadline, to log its outcome.
pub const CANCEL_MARGIN: Duration = Duration::from_millis(500);

/// Gauge of the seconds from the shutdown signal to the end of each drain
/// phase (`listener_closed`, then `drained` or `deadline`). The metrics
/// listener stays open until the drain has ended, so scrapes see
/// `listener_closed` through the drain and `deadline` during the cancel
/// margin; `drained` is set just before the listener closes, so in practice
/// only the drain's log line shows it to anyone outside the process.
pub const SHUTDOWN_PHASE: &str = "nebula_shutdown_phase_seconds";

/// Describes the drain's series for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_gauge!(
        SHUTDOWN_PHASE,
        metrics::Unit::Seconds,
        "Seconds from the shutdown signal to the end of each drain phase"
    );
}

/// How the service stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every accepted piece of work finished.
    Drained,
    /// The grace ran out and the rest was cancelled.
    DeadlineExceeded,
    /// Shutdown was forced before the drain finished.
    Forced,
}

impl Stopped {
    /// The exit code that says how it stopped.
    #[must_use]
    pub const fn exit(self) -> Exit {
        match self {
            Self::Drained => Exit::Clean,
            Self::DeadlineExceeded => Exit::DeadlineExceeded,
            Self::Forced => Exit::Forced,
        }
    }
}

/// Why a service could not run, or stopped failing.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A listener could not be bound.
    #[error("cannot listen on {address} (check {key} and that the port is free)")]
    Bind {
        /// The setting that gave the address.
        key: &'static str,
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// SIGTERM or SIGINT could not be handled.
    #[error("cannot install the signal handlers")]
    Signals(#[source] io::Error),
    /// The metrics recorder could not be installed.
    #[error(transparent)]
    Metrics(#[from] prometheus::RecorderError),
    /// [`Service::start`] failed.
    #[error("cannot start the service")]
    Start(#[source] BoxError),
    /// A subsystem failed, panicked or ended early.
    #[error(transparent)]
    Task(#[from] TaskFailure),
}

impl RunError {
    /// The exit code for this failure: 78 when the service's start found a
    /// setting it cannot use (a [`SettingsError`]), 1 otherwise.
    ///
    /// [`SettingsError`]: crate::settings::SettingsError
    #[must_use]
    pub fn exit(&self) -> Exit {
        match self {
            Self::Start(source) if source.is::<crate::settings::SettingsError>() => {
                Exit::ConfigError
            }
            _ => Exit::RuntimeFailure,
        }
    }
}

/// A service bound to its listen addresses, not yet running.
pub struct BoundService<S: Service> {
    settings: Settings<S>,
    listener: TcpListener,
    address: SocketAddr,
    metrics_listener: TcpListener,
    metrics_address: SocketAddr,
    metrics: Arc<prometheus::Registry>,
}

/// Binds `requested`; the error names the setting `key` it came from.
async fn bind_listener(
    key: &'static str,
    requested: SocketAddr,
) -> Result<(TcpListener, SocketAddr), RunError> {
    let bind_error = |source| RunError::Bind {
        key,
        address: requested,
        source,
    };
    let listener = TcpListener::bind(requested).await.map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    Ok((listener, address))
}

impl<S: Service> BoundService<S> {
    /// Installs the metrics recorder and binds the HTTP and metrics
    /// listeners, so their addresses (port 0 included) are known before the
    /// service runs.
    ///
    /// # Errors
    /// When an address cannot be bound, or another metrics recorder is
    /// installed.
    pub async fn bind(settings: Settings<S>) -> Result<Self, RunError> {
        let metrics = prometheus::recorder()?;
        let (listener, address) = bind_listener("http.listen", settings.http.listen).await?;
        let (metrics_listener, metrics_address) =
            bind_listener("metrics.listen", settings.metrics.listen).await?;
        Ok(Self {
            settings,
            listener,
            address,
            metrics_listener,
            metrics_address,
            metrics,
        })
    }

    /// The address the HTTP listener is bound to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The address the metrics listener is bound to.
    #[must_use]
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_address
    }

    /// Runs until `shutdown` is requested (or a subsystem fails), then drains.
    /// Metrics are served until the drain has ended.
    ///
    /// # Errors
    /// When the service cannot start, or a subsystem failed or panicked.
    pub async fn run(self, shutdown: Shutdown) -> Result<Stopped, RunError> {
        let Self {
            settings,
            listener,
            address,
            metrics_listener,
            metrics_address,
            metrics,
        } = self;
        let draining = shutdown.drain_token();
        let abandon = CancellationToken::new();
        let stop_accepting = CancellationToken::new();
        let mut tasks = Tasks::default();
        let mut gates = Vec::new();
        let mut degradations = Vec::new();

        let routes = S::start(&mut Context {
            settings: &settings,
            draining: draining.clone(),
            abandon: abandon.clone(),
            tasks: &mut tasks,
            gates: &mut gates,
            degradations: &mut degradations,
        })
        .map_err(RunError::Start)?;
        prometheus::describe_service(S::KIND, S::VERSION);
        describe_metrics();
        // Outside the supervised tasks, which the drain waits for: it is
        // stopped below, once the drain has ended.
        let metrics_server = prometheus::MetricsServer::start(metrics_listener, metrics);
        let app = http::router(
            routes,
            &settings,
            Readiness::new(draining, gates, degradations),
            &abandon,
        );
        let server_stop = stop_accepting.clone();
        let server_abandon = abandon.clone();
        let http_settings = settings.http.clone();
        tasks.spawn("http server", async move {
            http::serve(listener, app, &http_settings, server_stop, server_abandon).await;
            Ok(())
        });
        tracing::info!(
            %address,
            metrics.address = %metrics_address,
            service.kind = S::KIND,
            "ready"
        );

        let mut failures = Vec::new();
        tokio::select! {
            biased;
            () = shutdown.requested() => {}
            Some((name, result)) = tasks.join_next() => {
                let failure = result.err().unwrap_or(TaskFailure::EndedEarly { name });
                tracing::error!(error = %failure, "subsystem stopped, shutting down");
                failures.push(failure);
                shutdown.request();
            }
        }

        let drain = Drain {
            shutdown: &shutdown,
            settings: &settings.shutdown,
            stop_accepting: &stop_accepting,
            abandon: &abandon,
        };
        let stopped = drain.run(&mut tasks, &mut failures).await;
        if stopped == Stopped::Forced {
            drop(metrics_server);
        } else {
            metrics_server.stop(CANCEL_MARGIN).await;
        }
        match failures.into_iter().next() {
            Some(failure) => Err(failure.into()),
            None => Ok(stopped),
        }
    }
}

struct Drain<'a> {
    shutdown: &'a Shutdown,
    settings: &'a crate::settings::ShutdownSettings,
    stop_accepting: &'a CancellationToken,
    abandon: &'a CancellationToken,
}

impl Drain<'_> {
    async fn run(&self, tasks: &mut Tasks, failures: &mut Vec<TaskFailure>) -> Stopped {
        let started = Instant::now();
        let grace = self.settings.grace();
        let deadline = started + grace;
        tracing::info!(
            phase = "readiness",
            grace_ms = duration_ms(grace),
            "shutdown started, not ready"
        );

        tokio::select! {
            biased;
            () = self.shutdown.forced() => return Stopped::Forced,
            () = tokio::time::sleep(self.settings.readiness_delay()) => {}
        }
        self.stop_accepting.cancel();
        // Recorded outside the log macros: they skip their arguments when
        // the event is filtered out.
        let closed_ms = record_phase("listener_closed", started);
        tracing::info!(
            phase = "listener_closed",
            duration_ms = closed_ms,
            "listener closed, finishing accepted work"
        );

        match self.wait_for_tasks(tasks, deadline, failures).await {
            Waited::AllEnded => {
                let drained_ms = record_phase("drained", started);
                tracing::info!(
                    phase = "drained",
                    duration_ms = drained_ms,
                    "drain complete"
                );
                return Stopped::Drained;
            }
            Waited::Forced => return Stopped::Forced,
            Waited::DeadlinePassed => {}
        }

        let deadline_ms = record_phase("deadline", started);
        tracing::warn!(
            phase = "deadline",
            duration_ms = deadline_ms,
            still_running = ?tasks.running(),
            "drain deadline exceeded, cancelling remaining work"
        );
        self.abandon.cancel();
        match self
            .wait_for_tasks(tasks, deadline + CANCEL_MARGIN, failures)
            .await
        {
            Waited::AllEnded => {}
            Waited::Forced => return Stopped::Forced,
            Waited::DeadlinePassed => {
                tracing::error!(abandoned = ?tasks.running(), "tasks ignored cancellation, aborting them");
                tasks.abort_all();
            }
        }
        Stopped::DeadlineExceeded
    }

    /// Waits for every task to end, recording failures, until `deadline`.
    async fn wait_for_tasks(
        &self,
        tasks: &mut Tasks,
        deadline: Instant,
        failures: &mut Vec<TaskFailure>,
    ) -> Waited {
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.forced() => return Waited::Forced,
                () = tokio::time::sleep_until(deadline) => return Waited::DeadlinePassed,
                next = tasks.join_next() => match next {
                    None => return Waited::AllEnded,
                    Some((_, Ok(()))) => {}
                    Some((_, Err(failure))) => {
                        tracing::error!(error = %failure, "subsystem failed during the drain");
                        failures.push(failure);
                    }
                },
            }
        }
    }
}

enum Waited {
    AllEnded,
    DeadlinePassed,
    Forced,
}

/// Records the end of a drain phase in [`SHUTDOWN_PHASE`] and returns the
/// milliseconds since the drain `started`, for the log line.
fn record_phase(phase: &'static str, started: Instant) -> u64 {
    let elapsed = started.elapsed();
    metrics::gauge!(SHUTDOWN_PHASE, "phase" => phase).set(elapsed.as_secs_f64());
    duration_ms(elapsed)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::test_service::TestService;

    /// The one test in this crate that drains a service, so that it alone
    /// writes [`SHUTDOWN_PHASE`] to the process-wide recorder.
    #[tokio::test(start_paused = true)]
    async fn the_drain_records_when_each_phase_ended() {
        let mut settings = Settings::<TestService>::default();
        settings.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings.shutdown.readiness_delay_ms = 2_000;
        let data = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/service.db?mode=rwc", data.path().display());
        settings.database.url = crate::database::DatabaseUrl::new(url);
        let service = BoundService::bind(settings).await.unwrap();
        let shutdown = Shutdown::new();
        shutdown.request();

        assert_eq!(service.run(shutdown).await.unwrap(), Stopped::Drained);

        let text = prometheus::recorder().unwrap().render();
        let phase = |name: &str| {
            let series = [SHUTDOWN_PHASE, "{phase=\"", name, "\"} "].concat();
            text.lines()
                .find_map(|line| line.strip_prefix(&series)?.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {series}in:\n{text}"))
        };
        // Paused time: the readiness delay is exact, and nothing was left to
        // wait for once the listener closed.
        assert!((phase("listener_closed") - 2.0).abs() < f64::EPSILON);
        assert!((phase("drained") - 2.0).abs() < f64::EPSILON);
    }
}
