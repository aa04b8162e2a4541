//! Shutdown requests: signals in, one cancellation token out.
//!
//! The first SIGTERM or SIGINT (Ctrl-C off Unix) requests a graceful drain;
//! a second one forces the process out at once. Tests request shutdown on the
//! [`Shutdown`] handle directly instead of sending signals.

use std::convert::Infallible;

use tokio_util::sync::CancellationToken;

/// Shared handle that asks the service to stop. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    force: CancellationToken,
}

impl Shutdown {
    /// A handle on which no shutdown was requested yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the graceful drain: stop taking work, finish what was accepted.
    pub fn request(&self) {
        self.drain.cancel();
    }

    /// Gives up on the drain: the service returns at once.
    pub fn force(&self) {
        self.drain.cancel();
        self.force.cancel();
    }

    /// Whether a drain was requested (or forced).
    #[must_use]
    pub fn is_requested(&self) -> bool {
        self.drain.is_cancelled()
    }

    /// Completes when the drain has been requested.
    pub async fn requested(&self) {
        self.drain.cancelled().await;
    }

    /// Completes when exit has been forced.
    pub async fn forced(&self) {
        self.force.cancelled().await;
    }

    /// A token cancelled when the drain starts, for code that stops taking work.
    #[must_use]
    pub fn drain_token(&self) -> CancellationToken {
        self.drain.child_token()
    }
}

/// The OS signals that stop the service, installed before the service
/// reports ready so that no early signal falls back to the default action.
pub struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    /// Registers the signal handlers. Must run inside the Tokio runtime.
    ///
    /// # Errors
    /// When the OS refuses to install a handler.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Turns the first signal into a drain request and the second into a
    /// forced exit. Never returns; run it beside the service.
    pub async fn forward_to(mut self, shutdown: Shutdown) -> Infallible {
        self.next().await;
        tracing::info!(phase = "drain", "shutdown signal received");
        shutdown.request();
        self.next().await;
        tracing::warn!(
            phase = "forced",
            "second shutdown signal received, exiting now"
        );
        shutdown.force();
        std::future::pending().await
    }

    #[cfg(unix)]
    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
