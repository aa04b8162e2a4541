//! Starting the binary, reading its JSON logs, signalling it, and timing its
//! exit. Every wait has a bound and fails with what was expected.

use std::{
    fmt,
    net::SocketAddr,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use nebula_runtime::{Exit, healthcheck, testing::TestDatabase};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

use {{crate_name}}::{ENV_PREFIX, SERVICE_KIND};

/// The binary under test, built by Cargo for these tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_{{project-name}}");

/// Upper bound on any single wait. Reaching it is a failure.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Runs one test at a time: they measure latency and memory, which other
/// tests' load would disturb on a small machine.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A multi-threaded runtime for the load generators.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime starts")
}

/// How to start the binary: JSON logs, a free loopback port, and settings
/// from environment variables only (the developer's own are removed).
#[derive(Debug, Clone)]
pub struct Launch {
    binary: PathBuf,
    env: Vec<(String, String)>,
    /// Start from an empty environment instead of this process's.
    only_given_env: bool,
    args: Vec<String>,
    dir: Option<PathBuf>,
    /// Run as this uid and gid (needs root).
    user: Option<(u32, u32)>,

    /// The database the process keeps its state in; shared by the clones of
    /// this launch (a restart, a replica), removed after the last.
    database: Option<Arc<TestDatabase>>,
}

impl Default for Launch {
    /// JSON logs, free loopback ports, and a SQLite database of its own in
    /// a temporary folder.
    fn default() -> Self {
        Self::bare()
            .args(&["--log-format", "json"])
            .setting("HTTP__LISTEN", "127.0.0.1:0")
            .setting("METRICS__LISTEN", "127.0.0.1:0")
            .database(Arc::new(TestDatabase::sqlite()))
    }
}

impl Launch {
    /// The binary with no arguments and no settings of its own.
    pub fn bare() -> Self {
        Self {
            binary: PathBuf::from(BINARY),
            env: Vec::new(),
            only_given_env: false,
            args: Vec::new(),
            dir: None,
            user: None,

            database: None,
        }
    }

    /// Keeps the state in `database` (`database.url`).
    pub fn database(mut self, database: Arc<TestDatabase>) -> Self {
        self = self.setting("DATABASE__URL", database.url.expose());
        self.database = Some(database);
        self
    }
{%- if deployment == "kubernetes" %}

    /// Runs this copy of the binary instead.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// Gives the process only the variables set here, as a container gets
    /// only its image's and its pod's.
    pub fn only_given_env(mut self) -> Self {
        self.only_given_env = true;
        self
    }

    /// Runs the process as `uid`:`gid`; the test must run as root.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }
{%- endif %}

    /// Sets `{ENV_PREFIX}_{key}`, e.g. `setting("SHUTDOWN__GRACE_MS", "500")`.
    /// A later value for the same key replaces an earlier one.
    pub fn setting(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.env
            .push((format!("{ENV_PREFIX}_{key}"), value.to_string()));
        self
    }

    /// Sets any environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the binary in `dir` instead of the package root (where
    /// `config/default.toml` would be read).
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Adds command-line arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|arg| (*arg).to_owned()));
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        if self.only_given_env {
            command.env_clear();
        }
        for (key, _) in std::env::vars() {
            // OTEL_* too: an exporter configured in the developer's shell
            // would change what the trace tests see.
            if key.starts_with(ENV_PREFIX) || key == "RUST_LOG" || key.starts_with("OTEL_") {
                command.env_remove(key);
            }
        }
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    /// Starts the service and waits until `/readyz` answers 200.
    pub async fn start(&self) -> Process {
        let process = self.start_unready().await;
        process.wait_until_ready().await;
        process
    }

    /// Starts the service and waits for its `ready` event: it listens, but
    /// may still wait for a dependency such as its database.
    pub async fn start_unready(&self) -> Process {
        let mut child = self.command().spawn().expect("binary starts");
        let pid = child.id().expect("child has a pid");
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Logs::default();
        let reader = tokio::spawn(logs.clone().collect(stderr));
        let mut process = Process {
            child,
            pid,
            logs,
            reader: Some(reader),
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_address: SocketAddr::from(([127, 0, 0, 1], 0)),

            _database: self.database.clone(),
        };
        let ready = process
            .wait_for_event("the ready event", |event| event["message"] == "ready")
            .await;
        let listening = |field: &str| -> SocketAddr {
            let address = ready[field]
                .as_str()
                .and_then(|address| address.parse().ok())
                .unwrap_or_else(|| panic!("ready event has an {field}: {ready}"));
            // A service listening on every interface is reached on loopback.
            healthcheck::local_address(address)
        };
        process.address = listening("address");
        process.metrics_address = listening("metrics.address");
        process
    }

    /// Runs the binary to its exit, for start-up failures: the exit status,
    /// how long it ran, and what it wrote to stderr.
    pub async fn run_to_exit(&self) -> (ExitStatus, Duration, String) {
        let started = Instant::now();
        let output = tokio::time::timeout(WAIT_LIMIT, self.command().output())
            .await
            .expect("binary exits within the wait limit")
            .expect("binary runs");
        (
            output.status,
            started.elapsed(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// The JSON events a process wrote to stderr; other lines are kept as
/// `{"raw": "..."}`.
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<Value>>>);

impl Logs {
    async fn collect(self, stderr: tokio::process::ChildStderr) {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let event =
                serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({ "raw": line }));
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(event);
        }
    }

    pub fn all(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn with_message(&self, message: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|event| event["message"] == message)
            .collect()
    }
}

/// A running service process. Killed if dropped before it exits.
pub struct Process {
    child: Child,
    pid: u32,
    pub logs: Logs,
    reader: Option<JoinHandle<()>>,
    pub address: SocketAddr,
    pub metrics_address: SocketAddr,

    /// Kept while the process runs, so its folder is not removed under it
    /// when the launch that made it is gone.
    _database: Option<Arc<TestDatabase>>,
}

/// How a process ended.
#[derive(Debug)]
pub struct Exited {
    pub code: Option<i32>,
    /// From the call to [`Process::exit`] to the exit.
    pub waited: Duration,
    /// When the exit was seen.
    pub at: Instant,
    /// Everything the process logged.
    pub logs: Logs,
}

impl Process {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The text of `GET /metrics` on the metrics listener.
    pub async fn metrics(&self) -> String {
        let response = client()
            .get(format!("http://{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("/metrics answers");
        assert_eq!(response.status(), 200, "/metrics status");
        response.text().await.expect("/metrics body")
    }

    /// Sends a signal (`"TERM"`, `"INT"`) with `kill`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid);
    }

    /// Waits for the first event matching `matches`.
    pub async fn wait_for_event(&self, expected: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Some(event) = self.logs.all().into_iter().find(|event| matches(event)) {
                return event;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT_LIMIT:?} waiting for {expected}; logs: {:#?}",
                self.logs.all()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (bounded) until `GET /readyz` answers 200.
    pub async fn wait_until_ready(&self) {
        let deadline = Instant::now() + WAIT_LIMIT;
        let url = self.url("/readyz");
        while !matches!(answer(client().get(&url).send().await), Answer::Status(200)) {
            assert!(
                Instant::now() < deadline,
                "not ready after {WAIT_LIMIT:?}; logs: {:#?}",
                self.logs.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit, and for its last log lines.
    pub async fn exit(mut self) -> Exited {
        let started = Instant::now();
        let status = tokio::time::timeout(WAIT_LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "process should exit within {WAIT_LIMIT:?}; logs: {:#?}",
                    self.logs.all()
                )
            })
            .expect("wait succeeds");
        let at = Instant::now();
        let waited = at - started;
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(WAIT_LIMIT, reader).await;
        }
        Exited {
            code: status.code(),
            waited,
            at,
            logs: self.logs.clone(),
        }
    }
}

/// Checks an exit at the drain deadline: the deadline code, no sooner than
/// the grace after the signal and no later than 2 s past it (the cancel
/// margin plus room for a loaded machine), and no ERROR logged: the
/// deadline is a normal way to stop, and what it cuts is logged at WARN.
pub fn assert_deadline_exit(exited: &Exited, signalled: Instant, grace: Duration) {
    let sigterm_to_exit = exited.at - signalled;
    assert_eq!(exited.code, Some(i32::from(Exit::DeadlineExceeded.code())));
    assert!(
        sigterm_to_exit >= grace && sigterm_to_exit < grace + Duration::from_secs(2),
        "exit came {sigterm_to_exit:?} after SIGTERM; the grace is {grace:?}"
    );
    let errors: Vec<Value> = exited
        .logs
        .all()
        .into_iter()
        .filter(|event| event["level"] == "ERROR")
        .collect();
    assert!(errors.is_empty(), "a deadline exit logged: {errors:#?}");
}
{%- if service_type != "worker" %}

/// The summary of a scenario with one piece of work cut at the deadline.
pub fn deadline_summary(exited: &Exited, signalled: Instant) {
    let sigterm_to_exit = exited.at - signalled;
    summary(
        "drain-deadline",
        Counts {
            offered: 1,
            accepted: 1,
            ..Counts::default()
        },
        exited.code,
        &format!("sigterm_to_exit_ms={}", sigterm_to_exit.as_millis()),
    );
}
{%- endif %}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// The connection was refused: nothing was sent.
    Refused,
    /// Any other transport failure: the request may or may not have been
    /// handled, so it counts as lost.
    Broken(String),
}

pub fn answer(result: reqwest::Result<reqwest::Response>) -> Answer {
    match result {
        Ok(response) => Answer::Status(response.status().as_u16()),
        Err(error) if error.is_connect() => Answer::Refused,
        Err(error) => Answer::Broken(format!("{error:?}")),
    }
}

/// A client that opens a new connection per request, as many load
/// balancers do toward a draining backend, so refused connections show.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client builds")
}

/// What happened to the work offered in a scenario. Printed as one
/// `summary:` line, which the template's harness collects.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub offered: usize,
    pub accepted: usize,
    pub completed: usize,
    pub refused: usize,
    pub lost: usize,
}

#[expect(
    clippy::print_stdout,
    reason = "the summary line is what these tests report"
)]
pub fn summary(scenario: &str, counts: Counts, exit: Option<i32>, extra: &str) {
    let Counts {
        offered,
        accepted,
        completed,
        refused,
        lost,
    } = counts;
    let exit = exit.map_or_else(|| "signal".to_owned(), |code| code.to_string());
    println!(
        "summary: type={SERVICE_KIND} scenario={scenario} offered={offered} accepted={accepted} completed={completed} refused={refused} lost={lost} exit={exit} {extra}"
    );
}
