//! The example job kind, `webhook`: delivers a JSON payload to a URL with
//! POST. A model for kinds of your own, and a real one: keep it, change it
//! or remove its registration in [`super::kinds`].
//!
//! - Arguments: `{"url": "https://...", "payload": <any JSON>}`.
//! - The target gets `Idempotency-Key: <job id>`, the same in every attempt,
//!   so it can drop a repeat: a delivery may be made again after a crash.
//! - 2xx succeeds; 5xx, 408, 429, timeouts and connection failures are
//!   retried with backoff; any other answer fails the job at once.
//! - Clients of this service name the URL, so it must be on
//!   `worker.kinds.webhook.allowed_hosts`; loopback, private and link-local
//!   addresses are refused unless `worker.kinds.webhook.allow_private_networks`
//!   is true, both as literal addresses and as what a name resolves to.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use nebula_runtime::{
    jobs::{JobContext, JobError, JobKind},
    outbound::{BuildError, Destinations, HttpClient, Method, StatusCode},
    settings::Problems,
};

/// The `[worker.kinds.webhook]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Hosts a webhook may be delivered to (`*.example.com` for every name
    /// under a domain). Empty: every delivery is refused.
    pub allowed_hosts: Vec<String>,
    /// Allows loopback, private and link-local addresses.
    pub allow_private_networks: bool,
}

impl WebhookSettings {
    /// Checks the allowlist's entries.
    pub fn validate(&self, problems: &mut Problems) {
        for (index, host) in self.allowed_hosts.iter().enumerate() {
            let (wildcard, bare) = match host.strip_prefix("*.") {
                Some(domain) => (true, domain),
                None => (false, host.as_str()),
            };
            let malformed = bare.is_empty()
                || bare.contains(['/', ':', '*', ' ', '@'])
                // `*.com` would allow a whole top-level domain.
                || (wildcard && !bare.trim_end_matches('.').contains('.'));
            if malformed {
                problems.add(
                    format!("worker.kinds.webhook.allowed_hosts[{index}]"),
                    format!(
                        "\"{host}\" is not a host: give a name, a *.domain with at least two labels, or an IPv4 address (hooks.example.com, *.example.com, 10.0.0.7), without scheme, port or path"
                    ),
                );
            }
        }
    }
}

/// The `webhook` kind.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: HttpClient,
    destinations: Destinations,
}

impl Webhook {
    /// A kind whose calls end after `timeout` (the 10 s rule).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(settings: &WebhookSettings, timeout: Duration) -> Result<Self, BuildError> {
        let destinations = Destinations::new(
            settings.allowed_hosts.iter().cloned(),
            settings.allow_private_networks,
        );
        Ok(Self {
            client: HttpClient::guarded(timeout, &destinations)?,
            destinations,
        })
    }
}

/// The arguments of a `webhook` job.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookArgs {
    pub url: String,
    /// Sent as the body, as the client gave it.
    pub payload: Box<RawValue>,
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("the target answered {0}")]
    Status(StatusCode),
    /// Its causes follow in the job's `last_error` (a refused connection, a
    /// name that resolves nowhere).
    #[error("the call failed")]
    Call(#[source] nebula_runtime::outbound::Error),
}

impl JobKind for Webhook {
    const NAME: &'static str = "webhook";
    type Args = WebhookArgs;

    fn validate(&self, args: &WebhookArgs) -> Result<(), String> {
        self.destinations
            .check(&args.url)
            .map(drop)
            .map_err(|reason| format!("url {reason}"))
    }

    async fn run(&self, args: WebhookArgs, job: JobContext) -> Result<(), JobError> {
        // Checked again: the allowlist may have changed since intake.
        let url = self
            .destinations
            .check(&args.url)
            .map_err(|reason| JobError::permanent(format!("url {reason}")))?;
        let response = self
            .client
            .request(Method::POST, url)
            .header("content-type", "application/json")
            .header("idempotency-key", job.id.to_string())
            .body(args.payload.get().to_owned())
            .send()
            .await
            // The URL may carry a secret (a token in its query): it stays
            // out of `last_error` and the logs.
            .map_err(|error| DeliveryError::Call(error.without_url()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let failure = DeliveryError::Status(status);
        if status.is_server_error()
            || status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::TOO_MANY_REQUESTS
        {
            return Err(failure.into());
        }
        Err(JobError::permanent(failure))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use tokio::{net::TcpListener, time::Instant};
    use tokio_util::sync::CancellationToken;

    use super::{JobContext, JobKind, Webhook, WebhookSettings};
    use nebula_runtime::jobs::JobId;

    /// A kind allowed to call this machine, its calls cut after 10 s.
    fn local_webhook() -> Webhook {
        let settings = WebhookSettings {
            allowed_hosts: vec!["127.0.0.1".to_owned()],
            allow_private_networks: true,
        };
        Webhook::new(&settings, Duration::from_secs(10)).expect("the client builds")
    }

    fn attempt() -> JobContext {
        JobContext {
            id: JobId::new(),
            attempt: 1,
            cancelled: CancellationToken::new(),
        }
    }

    /// A target that takes the connection and never answers holds a
    /// delivery for the call's timeout (the 10 s rule), not longer, and
    /// the job is retried. On paused time the 10 s pass at once.
    #[tokio::test(start_paused = true)]
    async fn a_target_that_never_answers_is_cut_at_the_timeout_and_retried() {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let url = format!("http://{}/hook", target.local_addr().expect("address"));
        let silent = tokio::spawn(async move {
            let (connection, _) = target.accept().await.expect("accepts");
            std::future::pending::<()>().await;
            drop(connection);
        });
        let webhook = local_webhook();
        let args = serde_json::from_value(json!({"url": url, "payload": {"n": 1}})).expect("args");

        let started = Instant::now();
        let error = webhook
            .run(args, attempt())
            .await
            .expect_err("no answer is a failure");
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(!error.is_permanent(), "a timeout is retried: {error}");
        assert!(error.to_string().contains("timed out"), "{error}");
        silent.abort();
    }

    /// A URL off the allowlist fails for good, without a call: the
    /// allowlist may have changed since the job was accepted.
    #[tokio::test(start_paused = true)]
    async fn a_url_no_longer_allowed_fails_without_a_retry() {
        let args =
            serde_json::from_value(json!({"url": "https://elsewhere.example/", "payload": {}}))
                .expect("args");
        let error = local_webhook()
            .run(args, attempt())
            .await
            .expect_err("refused");
        assert!(error.is_permanent(), "{error}");
    }
}
