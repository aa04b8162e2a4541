//! Helpers shared by the integration tests: start the service in-process,
//! talk to it, capture its log events, and wait for conditions with a bound.

use std::{
    cell::RefCell,
    future::Future,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, Once, PoisonError},
    time::Duration,
};

use serde_json::Value;
use tokio::task::JoinHandle;

use nebula_runtime::{RunError, Shutdown, Stopped};

use {{crate_name}}::{Service, Settings};

use crate::test_database::TestDatabase;

/// Upper bound on any single wait in these tests. Reaching it is a failure.
pub const WAIT_LIMIT: Duration = Duration::from_secs(20);

/// Default settings, listening on free loopback ports.
pub fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings
}

/// A service running in-process.
pub struct Running {
    pub address: SocketAddr,
    pub metrics_address: SocketAddr,
    pub shutdown: Shutdown,
    pub client: reqwest::Client,
    task: JoinHandle<Result<Stopped, RunError>>,

    /// The database folder given to a service started with the default
    /// URL; removed with the service.
    _data: Option<TestDatabase>,
}

/// Binds and starts the service. Returns once `/readyz` answers 200.
/// With the default `database.url`, the service gets a SQLite file in a
/// temporary folder of its own, so that tests never share a database or
/// write into the project.
pub async fn start(settings: Settings) -> Running {
    let running = start_unready(settings).await;
    eventually("the service to report ready", || async {
        let ready = running.get("/readyz").await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    running
}

/// Binds and starts the service without waiting for it to be ready.
pub async fn start_unready(settings: Settings) -> Running {
    install_subscriber();

    let mut settings = settings;
    let data = (settings.database.url == Settings::default().database.url).then(|| {
        let database = TestDatabase::sqlite();
        settings.database.url = database.url.clone();
        database
    });

    let service = Service::bind(settings).await.expect("service binds");
    let address = service.local_addr();
    let metrics_address = service.metrics_addr();
    let shutdown = Shutdown::new();
    let task = tokio::spawn(service.run(shutdown.clone()));
    Running {
        address,
        metrics_address,
        shutdown,
        client: reqwest::Client::new(),
        task,

        _data: data,
    }
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.client.get(self.url(path)).send().await
    }
{%- if service_type != "scheduler" %}

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.client.post(self.url(path)).json(body).send().await
    }
{%- endif %}

    /// The text of `GET /metrics` on the metrics listener.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_address);
        let response = self.client.get(url).send().await.expect("/metrics answers");
        assert_eq!(response.status(), 200, "/metrics status");
        response.text().await.expect("/metrics body")
    }

    /// Requests a drain and waits for the service to return.
    pub async fn stop(self) -> Result<Stopped, RunError> {
        self.shutdown.request();
        self.finished().await
    }

    /// Waits for the service to return (after a drain requested elsewhere).
    pub async fn finished(self) -> Result<Stopped, RunError> {
        tokio::time::timeout(WAIT_LIMIT, self.task)
            .await
            .expect("service should return within the wait limit")
            .expect("service task should not panic")
    }
}

/// The outcome of a request made while the service may be shutting down.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// No connection could be made: the listener is closed.
    Refused,
}

/// Turns a request result into an [`Answer`]; other transport errors fail.
pub fn answer(result: reqwest::Result<reqwest::Response>) -> Answer {
    match result {
        Ok(response) => Answer::Status(response.status().as_u16()),
        Err(error) if error.is_connect() => Answer::Refused,
        Err(error) => panic!("unexpected transport error: {error}"),
    }
}

/// Polls `check` until it returns `Some`, failing after [`WAIT_LIMIT`] with
/// `expected` in the message.
pub async fn eventually<T, F, Fut>(expected: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT_LIMIT:?} waiting for: {expected}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Log events captured as JSON objects, per test thread. Tests that read
/// logs use the default current-thread runtime, where every task of the
/// service runs on the test's thread.
///
/// One global subscriber serves every test, installed before any service
/// starts: with a subscriber per test (`set_default`), a span or event first
/// hit on another thread at the moment a test installs its own can have its
/// interest cached as "never", and silently go missing from that test.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    /// Where the calling thread's log lines go, if anywhere.
    static CAPTURING: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// Installs the global subscriber once; lines go to the calling thread's
/// [`Logs`], if it is capturing.
fn install_subscriber() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(|| ThreadCapture)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the integration tests");
    });
}

/// Stops the calling thread's capture when dropped.
pub struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURING.with(|capturing| capturing.borrow_mut().take());
    }
}

impl Logs {
    /// Captures every event of the calling thread until the guard drops.
    pub fn capture() -> (Self, CaptureGuard) {
        install_subscriber();
        let logs = Self::default();
        CAPTURING.with(|capturing| *capturing.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard)
    }

    /// Every captured event with the given message.
    pub fn events(&self, message: &str) -> Vec<Value> {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["message"] == message)
            .collect()
    }
}

/// The writer of the global subscriber: appends to the calling thread's
/// capture, or drops the line.
struct ThreadCapture;

impl io::Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURING.with(|capturing| {
            if let Some(logs) = capturing.borrow().as_ref() {
                logs.0
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
