//! The service's own binary as a child process: real signals, exit codes
//! and JSON logs on stderr, which in-process tests cannot show. Unix only,
//! since it sends signals with `kill`.

use std::{
    fmt,
    net::SocketAddr,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, ChildStderr, Command},
    task::JoinHandle,
};

use super::{Answer, TestDatabase, WAIT_LIMIT, answer};
use crate::healthcheck;

/// How to start the binary. [`Launch::new`] gives JSON logs, free loopback
/// ports and a SQLite database of its own; settings come from environment
/// variables only (the developer's own, and `RUST_LOG` and `OTEL_*`, are
/// removed).
#[derive(Debug, Clone)]
pub struct Launch {
    binary: PathBuf,
    env_prefix: String,
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

impl Launch {
    /// `binary` (a test's `env!("CARGO_BIN_EXE_<name>")`) with JSON logs,
    /// free loopback ports, and a SQLite database of its own in a
    /// temporary folder; `env_prefix` is the service's `ENV_PREFIX`.
    #[must_use]
    pub fn new(binary: impl Into<PathBuf>, env_prefix: &str) -> Self {
        Self::bare(binary, env_prefix)
            .args(&["--log-format", "json"])
            .setting("HTTP__LISTEN", "127.0.0.1:0")
            .setting("METRICS__LISTEN", "127.0.0.1:0")
            .database(Arc::new(TestDatabase::sqlite()))
    }

    /// `binary` with no arguments and no settings of its own.
    #[must_use]
    pub fn bare(binary: impl Into<PathBuf>, env_prefix: &str) -> Self {
        Self {
            binary: binary.into(),
            env_prefix: env_prefix.to_owned(),
            env: Vec::new(),
            only_given_env: false,
            args: Vec::new(),
            dir: None,
            user: None,
            database: None,
        }
    }

    /// Keeps the state in `database` (`database.url`).
    #[must_use]
    pub fn database(mut self, database: Arc<TestDatabase>) -> Self {
        self = self.setting("DATABASE__URL", database.url.expose());
        self.database = Some(database);
        self
    }

    /// Runs this copy of the binary instead.
    #[must_use]
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = path.into();
        self
    }

    /// Gives the process only the variables set here, as a container gets
    /// only its image's and its pod's.
    #[must_use]
    pub fn only_given_env(mut self) -> Self {
        self.only_given_env = true;
        self
    }

    /// Runs the process as `uid`:`gid`; the test must run as root.
    #[must_use]
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Sets `{ENV_PREFIX}_{key}`, e.g. `setting("SHUTDOWN__GRACE_MS", "500")`.
    /// A later value for the same key replaces an earlier one.
    #[must_use]
    pub fn setting(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.env
            .push((format!("{}_{key}", self.env_prefix), value.to_string()));
        self
    }

    /// Sets any environment variable.
    #[must_use]
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Runs the binary in `dir` instead of the package root (where
    /// `config/default.toml` would be read).
    #[must_use]
    pub fn in_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Adds command-line arguments.
    #[must_use]
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
            // would change what trace tests see.
            if key.starts_with(&self.env_prefix) || key == "RUST_LOG" || key.starts_with("OTEL_") {
                command.env_remove(key);
            }
        }
        if let Some((uid, gid)) = self.user {
            command.as_std_mut().uid(uid).gid(gid);
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
    ///
    /// # Panics
    /// As [`Launch::start_unready`], or when it is not ready within
    /// [`WAIT_LIMIT`].
    pub async fn start(&self) -> Process {
        let process = self.start_unready().await;
        process.wait_until_ready().await;
        process
    }

    /// Starts the service and waits for its `ready` event: it listens, but
    /// may still wait for a dependency such as its database.
    ///
    /// # Panics
    /// When the binary does not start, or logs no `ready` event within
    /// [`WAIT_LIMIT`].
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
    ///
    /// # Panics
    /// When it does not run, or does not exit within [`WAIT_LIMIT`].
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
    async fn collect(self, stderr: ChildStderr) {
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

    /// Every event so far.
    #[must_use]
    pub fn all(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every event so far with the given message.
    #[must_use]
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
    /// What it logged.
    pub logs: Logs,
    reader: Option<JoinHandle<()>>,
    /// Where its HTTP listener is.
    pub address: SocketAddr,
    /// Where its metrics listener is.
    pub metrics_address: SocketAddr,
    /// Kept while the process runs, so its folder is not removed under it
    /// when the launch that made it is gone.
    _database: Option<Arc<TestDatabase>>,
}

/// How a process ended.
#[derive(Debug)]
pub struct Exited {
    /// Its exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// From the call to [`Process::exit`] to the exit.
    pub waited: Duration,
    /// When the exit was seen.
    pub at: Instant,
    /// Everything the process logged.
    pub logs: Logs,
}

impl Process {
    /// The URL of `path` on its HTTP listener.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Its process id.
    #[must_use]
    pub const fn pid(&self) -> u32 {
        self.pid
    }

    /// The text of `GET /metrics` on the metrics listener.
    ///
    /// # Panics
    /// When it does not answer 200.
    pub async fn metrics(&self) -> String {
        let response = unpooled_client()
            .get(format!("http://{}/metrics", self.metrics_address))
            .send()
            .await
            .expect("/metrics answers");
        assert_eq!(response.status(), 200, "/metrics status");
        response.text().await.expect("/metrics body")
    }

    /// Sends a signal (`"TERM"`, `"INT"`, `"KILL"`, `"STOP"`) with `kill`.
    ///
    /// # Panics
    /// When `kill` fails.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid);
    }

    /// Waits for the first event matching `matches`.
    ///
    /// # Panics
    /// When none comes within [`WAIT_LIMIT`].
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

    /// Waits until `GET /readyz` answers 200.
    ///
    /// # Panics
    /// When it does not within [`WAIT_LIMIT`].
    pub async fn wait_until_ready(&self) {
        let deadline = Instant::now() + WAIT_LIMIT;
        let url = self.url("/readyz");
        let client = unpooled_client();
        while answer(client.get(&url).send().await) != Answer::Status(200) {
            assert!(
                Instant::now() < deadline,
                "not ready after {WAIT_LIMIT:?}; logs: {:#?}",
                self.logs.all()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the process to exit, and for its last log lines.
    ///
    /// # Panics
    /// When it does not exit within [`WAIT_LIMIT`].
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

/// A client that opens a new connection per request, as many load
/// balancers do toward a draining backend, so refused connections show.
///
/// # Panics
/// When the client cannot be built.
#[must_use]
pub fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client builds")
}
