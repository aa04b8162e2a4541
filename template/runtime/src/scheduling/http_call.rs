//! What a job with a `url` runs: a GET to that URL, through the runtime's
//! outbound client (TLS, the 10 s rule, trace context).

use crate::{
    outbound::{HttpClient, Method, Url, parse_http_url},
    tasks::BoxError,
};
use tracing::Instrument;

use super::Action;

/// Calls one URL; a 2xx answer is success. The call carries the run's
/// period as `Idempotency-Key` (`job/period start`), the same when another
/// replica runs the period again, so the target can do its work once.
#[derive(Debug, Clone)]
pub struct HttpCall {
    client: HttpClient,
    url: Url,
}

impl HttpCall {
    /// # Errors
    /// When `url` is not a valid `http://` or `https://` URL.
    pub fn new(client: HttpClient, url: &str) -> Result<Self, BoxError> {
        Ok(Self {
            client,
            url: parse_http_url(url)?,
        })
    }
}

impl Action for HttpCall {
    async fn run(&self, key: &str) -> Result<(), BoxError> {
        let span = tracing::debug_span!("external.call", url.full = %self.url);
        let response = async {
            // Built inside the span: the target sees the call as part of
            // this run's trace.
            self.client
                .request(Method::GET, self.url.clone())
                .header("idempotency-key", key)
                .send()
                .await
        }
        .instrument(span)
        .await?;
        response.error_for_status()?;
        Ok(())
    }
}
