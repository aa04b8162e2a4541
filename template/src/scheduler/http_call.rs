//! The example scheduled action: a GET to a configured URL.

use std::time::Duration;

use reqwest::{Client, Url, header::HeaderMap};
use tracing::Instrument;

use super::Action;
use nebula_runtime::{tasks::BoxError, trace_context};

/// Builds the client every job shares. Its limits come from
/// `timeouts.http_client_ms`, for the connect and for the whole call.
///
/// # Errors
/// When the client cannot be built.
pub fn client(timeout: Duration) -> Result<Client, reqwest::Error> {
    Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
}

/// Checks that `url` is one this build can call.
///
/// # Errors
/// A message saying what is wrong with the URL.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|error| format!("is not a valid URL ({error})"))?;
    if parsed.scheme() != "http" {
        return Err(format!(
            "must be an http:// URL, got {}:// (this build has no TLS; enable a TLS feature of reqwest for https)",
            parsed.scheme()
        ));
    }
    Ok(parsed)
}

/// Calls one URL; a 2xx answer is success. The call carries the run's
/// period as `Idempotency-Key` (`job/period start`), the same when another
/// replica runs the period again, so the target can do its work once.
#[derive(Debug, Clone)]
pub struct HttpCall {
    client: Client,
    url: Url,
}

impl HttpCall {
    /// # Errors
    /// When `url` is not a valid `http://` URL.
    pub fn new(client: Client, url: &str) -> Result<Self, BoxError> {
        Ok(Self {
            client,
            url: parse_url(url)?,
        })
    }
}

impl Action for HttpCall {
    async fn run(&self, key: &str) -> Result<(), BoxError> {
        let span = tracing::debug_span!("external.call", url.full = %self.url);
        // The target sees the call as part of this run's trace.
        let mut headers = HeaderMap::new();
        trace_context::inject(&mut headers);
        let response = self
            .client
            .get(self.url.clone())
            .headers(headers)
            .header("idempotency-key", key)
            .send()
            .instrument(span)
            .await?;
        response.error_for_status()?;
        Ok(())
    }
}
