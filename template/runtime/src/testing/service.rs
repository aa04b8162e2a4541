//! The service in-process, driven over real HTTP.

use std::{future::Future, net::SocketAddr, time::Duration};

use serde_json::Value;
use tokio::task::JoinHandle;

use super::{TestDatabase, logs};
use crate::{BoundService, RunError, Service, Settings, Shutdown, Stopped};

/// Upper bound on any single wait in tests. Reaching it is a failure.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Default settings, listening on free loopback ports.
#[must_use]
pub fn settings<S: Service>() -> Settings<S> {
    let mut settings = Settings::<S>::default();
    settings.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.metrics.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings
}

/// A service running in-process.
pub struct Running {
    /// Where its HTTP listener is.
    pub address: SocketAddr,
    /// Where its metrics listener is.
    pub metrics_address: SocketAddr,
    /// Requests its drain.
    pub shutdown: Shutdown,
    /// A client for it.
    pub client: reqwest::Client,
    task: JoinHandle<Result<Stopped, RunError>>,
    /// The database given to a service started with the default URL;
    /// removed with the service.
    _data: Option<TestDatabase>,
}

/// Binds and starts the service; returns once `/readyz` answers 200.
/// With the default `database.url`, the service gets a SQLite file in a
/// temporary folder of its own, so that tests never share a database or
/// write into the project.
///
/// # Panics
/// When the service does not bind, or is not ready within [`WAIT_LIMIT`].
pub async fn start<S: Service>(settings: Settings<S>) -> Running {
    let running = start_unready(settings).await;
    eventually("the service to report ready", || async {
        let ready = running.get("/readyz").await.ok()?;
        (ready.status() == 200).then_some(())
    })
    .await;
    running
}

/// Binds and starts the service without waiting for it to be ready.
///
/// # Panics
/// When the service does not bind.
pub async fn start_unready<S: Service>(mut settings: Settings<S>) -> Running {
    logs::install_subscriber();
    let data = (settings.database.url == Settings::<S>::default().database.url).then(|| {
        let database = TestDatabase::sqlite();
        settings.database.url = database.url.clone();
        database
    });
    let service = BoundService::bind(settings).await.expect("service binds");
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
    /// The URL of `path` on the service.
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// `GET path`.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.client.get(self.url(path)).send().await
    }

    /// `POST path` with `body` as JSON.
    ///
    /// # Errors
    /// When the request fails.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
    }

    /// POSTs `body` as JSON to `path`, which must refuse it with
    /// `status`; returns the answer's message (`{"error": "..."}`).
    ///
    /// # Panics
    /// When the request fails, another status comes back, or the body has
    /// no `error`.
    pub async fn refused(&self, path: &str, body: &Value, status: u16) -> String {
        let response = self.post_json(path, body).await.expect("answered");
        assert_eq!(response.status(), status, "POST {path} {body}");
        let answer: Value = response.json().await.expect("a JSON body");
        answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {answer}"))
            .to_owned()
    }

    /// The text of `GET /metrics` on the metrics listener.
    ///
    /// # Panics
    /// When it does not answer 200.
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_address);
        let response = self.client.get(url).send().await.expect("/metrics answers");
        assert_eq!(response.status(), 200, "/metrics status");
        response.text().await.expect("/metrics body")
    }

    /// Requests a drain and waits for the service to return.
    ///
    /// # Errors
    /// As the service's run.
    ///
    /// # Panics
    /// As [`Running::finished`].
    pub async fn stop(self) -> Result<Stopped, RunError> {
        self.shutdown.request();
        self.finished().await
    }

    /// Waits for the service to return (after a drain requested elsewhere).
    ///
    /// # Errors
    /// As the service's run.
    ///
    /// # Panics
    /// When it does not return within [`WAIT_LIMIT`], or panicked.
    pub async fn finished(self) -> Result<Stopped, RunError> {
        tokio::time::timeout(WAIT_LIMIT, self.task)
            .await
            .expect("service should return within the wait limit")
            .expect("service task should not panic")
    }
}

/// The outcome of a request made while the service may be shutting down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An answer with this status.
    Status(u16),
    /// No connection could be made: the listener is closed, nothing was sent.
    Refused,
    /// Any other transport failure: the request may or may not have been
    /// handled, so a test counts it as lost.
    Broken(String),
}

/// Turns a request's result into an [`Answer`].
#[must_use]
pub fn answer(result: reqwest::Result<reqwest::Response>) -> Answer {
    match result {
        Ok(response) => Answer::Status(response.status().as_u16()),
        Err(error) if error.is_connect() => Answer::Refused,
        Err(error) => Answer::Broken(format!("{error:?}")),
    }
}

/// Polls `check` until it returns `Some`, failing after [`WAIT_LIMIT`] with
/// `expected` in the message.
///
/// # Panics
/// When [`WAIT_LIMIT`] passes first.
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
