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
