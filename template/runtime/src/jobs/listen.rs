//! PostgreSQL `LISTEN`: intake on any replica sends a notification with
//! its commit ([`super::store::NEW_JOBS_CHANNEL`]), and this task wakes
//! the local dispatcher, so a job committed elsewhere starts without
//! waiting for the poll. A lost connection is reconnected with jittered
//! backoff; meanwhile polling still finds every job.

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::NEW_JOBS_CHANNEL;
use crate::{
    database::{DatabaseUrl, jittered},
    settings::duration_ms,
    tasks::TaskResult,
};

const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// Forwards notifications to `wake` until the drain starts.
pub async fn forward_notifications(
    url: DatabaseUrl,
    wake: Arc<Notify>,
    draining: CancellationToken,
) -> TaskResult {
    let mut retry = FIRST_RETRY;
    loop {
        let failure = tokio::select! {
            biased;
            () = draining.cancelled() => return Ok(()),
            failure = listen(&url, &wake) => failure,
        };
        let wait = jittered(retry);
        tracing::warn!(
            error = %failure,
            retry_in_ms = duration_ms(wait),
            "job notifications lost, polling meanwhile"
        );
        tokio::select! {
            biased;
            () = draining.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {}
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// Listens until the connection fails; returns why.
async fn listen(url: &DatabaseUrl, wake: &Notify) -> sqlx::Error {
    let mut listener = match PgListener::connect(url.expose()).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(NEW_JOBS_CHANNEL).await {
        return error;
    }
    // Jobs may have been committed while we were not listening.
    wake.notify_one();
    loop {
        match listener.try_recv().await {
            // A job was committed; or (`None`) the connection dropped and
            // the next call reconnects, and what was sent meanwhile is
            // lost: either way, look for due jobs now.
            Ok(_) => wake.notify_one(),
            Err(error) => return error,
        }
    }
}
