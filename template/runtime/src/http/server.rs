//! The HTTP/1.1 server: one task per connection, a bound on open
//! connections, a deadline for reading a request head, and a drain that
//! neither waits for clients that send nothing nor resets clients the kernel
//! already accepted.
//!
//! When the drain starts (`stop_accepting`):
//! - connections still in the listener's accept queue are taken (closing
//!   the listener would reset them);
//! - an idle keep-alive connection is closed at once;
//! - a connection with a request in progress finishes it, answers with
//!   `Connection: close`, and closes;
//! - a connection that has not sent a complete request head holds no
//!   accepted work: it gets [`HEAD_WAIT`] for a head already on its way
//!   (then that one request is served), and is closed otherwise.
//!
//! At the drain deadline (`abandon`) every connection is dropped: its
//! request is cancelled and logged as abandoned by the request middleware.

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use crate::settings::HttpSettings;

/// Counter of connections closed at once because `http.max_connections`
/// were open.
pub const CONNECTIONS_REFUSED: &str = "nebula_http_connections_refused_total";

/// How long a connection without a complete request head has, once the
/// drain starts, to send one. A client that has just connected sends its
/// head right after the handshake: closing its connection before the head
/// arrives would leave it without an answer for a request it did send. One
/// round trip covers that; a client slower than this is not sending.
const HEAD_WAIT: Duration = Duration::from_millis(100);

/// Pause after the OS refuses an `accept` (out of file descriptors, say),
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Describes the server's series for `/metrics`.
pub fn describe_metrics() {
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed on arrival because http.max_connections were open"
    );
}

/// Serves `app` on `listener` until `stop_accepting` fires, then drains
/// (see the module docs) and returns once every connection has closed, or
/// at once when `abandon` fires. Nothing here ends the server early: a
/// failed `accept` is logged and retried, a failed connection is its
/// client's problem.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    stop_accepting: CancellationToken,
    abandon: CancellationToken,
) {
    let server = Server::new(app, settings, stop_accepting.clone());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stop_accepting.cancelled() => break,
            // Finished connections are reaped as they end, so the set holds
            // only open ones.
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => server.admit(stream, &mut connections),
                Err(error) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    take_queued(listener, &server, &mut connections);
    tokio::select! {
        () = async { while connections.join_next().await.is_some() {} } => {}
        () = abandon.cancelled() => {
            let open = connections.len();
            if open > 0 {
                tracing::warn!(connections = open, "drain deadline: closing open connections");
            }
            connections.shutdown().await;
        }
    }
}

/// Admits the connections still in the listener's accept queue, then closes
/// the listener. The kernel completed their handshakes before the drain
/// started; closing the listener with them queued would reset them. The
/// queue is asked of the socket itself: the runtime's readiness flag can lag
/// behind it. A failure here costs the queued connections only.
fn take_queued(listener: TcpListener, server: &Server, connections: &mut JoinSet<()>) {
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, "cannot take the queued connections");
            return;
        }
    };
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => server.admit(stream, connections),
                    Err(error) => tracing::debug!(%error, "cannot serve a queued connection"),
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
            Err(error) => {
                tracing::warn!(%error, "taking the queued connections failed");
                return;
            }
        }
    }
}

/// What every connection shares.
struct Server {
    app: Router,
    http1: http1::Builder,
    permits: Arc<Semaphore>,
    draining: CancellationToken,
}

impl Server {
    fn new(app: Router, settings: &HttpSettings, draining: CancellationToken) -> Self {
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(settings.header_read_timeout())
            .max_header_size(settings.max_header_bytes);
        Self {
            app,
            http1,
            permits: Arc::new(Semaphore::new(settings.max_connections)),
            draining,
        }
    }

    /// Serves `stream` on a task of its own, or closes it at once when
    /// `http.max_connections` are open.
    fn admit(&self, stream: TcpStream, connections: &mut JoinSet<()>) {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            metrics::counter!(CONNECTIONS_REFUSED).increment(1);
            tracing::debug!("connection refused, http.max_connections are open");
            return;
        };
        let connection = Connection {
            stream,
            app: self.app.clone(),
            http1: self.http1.clone(),
            draining: self.draining.clone(),
            _permit: permit,
        };
        connections.spawn(connection.serve());
    }
}

struct Connection {
    stream: TcpStream,
    app: Router,
    http1: http1::Builder,
    draining: CancellationToken,
    /// Held while the connection is open.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self) {
        let first_request = Arc::new(FirstRequest::default());
        let app = TowerToHyperService::new(self.app);
        let seen = Arc::clone(&first_request);
        let service = service_fn(move |request: hyper::Request<Incoming>| {
            seen.arrived();
            hyper::service::Service::call(&app, request)
        });
        let connection = self
            .http1
            .serve_connection(TokioIo::new(self.stream), service);
        let mut connection = std::pin::pin!(connection);

        tokio::select! {
            biased;
            result = connection.as_mut() => return log_end(result),
            () = self.draining.cancelled() => {}
        }
        if !first_request.has_arrived() {
            // No complete head yet. hyper would close the connection now,
            // but its head is most likely on its way: the client connected
            // just before the drain. Wait `HEAD_WAIT` for it.
            tokio::select! {
                biased;
                result = connection.as_mut() => return log_end(result),
                () = first_request.wait() => {}
                () = tokio::time::sleep(HEAD_WAIT) => return,
            }
        }
        // Idle keep-alive connections close now; a request in progress is
        // answered with `Connection: close`, then the connection closes.
        connection.as_mut().graceful_shutdown();
        log_end(connection.await);
    }
}

/// Whether a connection has sent a complete request head yet.
#[derive(Default)]
struct FirstRequest {
    arrived: AtomicBool,
    notify: Notify,
}

impl FirstRequest {
    /// Called for every request; only the first one costs a wake-up.
    fn arrived(&self) {
        if !self.arrived.swap(true, Ordering::Relaxed) {
            // Keeps a permit when nobody waits yet: `wait` cannot miss it.
            self.notify.notify_one();
        }
    }

    fn has_arrived(&self) -> bool {
        self.arrived.load(Ordering::Relaxed)
    }

    async fn wait(&self) {
        if !self.has_arrived() {
            self.notify.notified().await;
        }
    }
}

/// A connection that ends with an error is the client's concern (it went
/// away, or sent something that is not HTTP); worth a debug line only.
fn log_end(result: hyper::Result<()>) {
    if let Err(error) = result {
        tracing::debug!(%error, "connection ended with an error");
    }
}
