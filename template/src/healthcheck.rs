//! The `healthcheck` command: asks the service running on this host whether
//! it is alive, for a container runtime's health check. Small images have
//! no shell and no curl, so the binary checks itself.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use axum::{
    body::Body,
    http::{self, Request, StatusCode, header},
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::settings::{Settings, duration_ms};

/// The liveness endpoint the check asks.
pub const PATH: &str = "/healthz";

/// How long the check waits for the answer. Shorter than the image's
/// `HEALTHCHECK --timeout`, so that a slow service gets this command's
/// message instead of being killed without one; a test holds the two
/// together.
pub const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    #[error("no answer from {address} within {timeout_ms} ms")]
    TimedOut {
        address: SocketAddr,
        timeout_ms: u64,
    },
    #[error("cannot connect to {address} (is the service running, and is http.listen right?)")]
    Unreachable {
        address: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot build the request for {address}")]
    Request {
        address: SocketAddr,
        #[source]
        source: http::Error,
    },
    #[error("the exchange with {address} failed")]
    Exchange {
        address: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("GET {PATH} on {address} answered {status}")]
    Unhealthy {
        address: SocketAddr,
        status: StatusCode,
    },
}

/// Where the service can be reached from this host: its listen address, with
/// an unspecified IP (`0.0.0.0`, `::`) replaced by loopback.
#[must_use]
pub fn local_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// Succeeds when `GET /healthz` on the configured address answers 200
/// within [`TIMEOUT`].
///
/// # Errors
/// A [`HealthcheckError`] saying what failed and where.
pub async fn check(settings: &Settings) -> Result<(), HealthcheckError> {
    let address = local_address(settings.http.listen);
    tokio::time::timeout(TIMEOUT, get_healthz(address))
        .await
        .unwrap_or(Err(HealthcheckError::TimedOut {
            address,
            timeout_ms: duration_ms(TIMEOUT),
        }))
}

async fn get_healthz(address: SocketAddr) -> Result<(), HealthcheckError> {
    let stream = TcpStream::connect(address)
        .await
        .map_err(|source| HealthcheckError::Unreachable { address, source })?;
    let exchange = |source| HealthcheckError::Exchange { address, source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(exchange)?;
    // The connection task moves the bytes; it ends with the process.
    tokio::spawn(connection);
    let request = Request::get(PATH)
        .header(header::HOST, address.to_string())
        .body(Body::empty())
        .map_err(|source| HealthcheckError::Request { address, source })?;
    let status = sender
        .send_request(request)
        .await
        .map_err(exchange)?
        .status();
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(HealthcheckError::Unhealthy { address, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_checked_on_loopback() {
        let cases = [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:9000", "[::1]:9000"),
            ("10.1.2.3:80", "10.1.2.3:80"),
        ];
        for (listen, expected) in cases {
            let listen: SocketAddr = listen.parse().unwrap();
            assert_eq!(local_address(listen), expected.parse().unwrap());
        }
    }
}
