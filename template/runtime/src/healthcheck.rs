//! The `healthcheck` command: asks the service running on this host whether
//! it is alive, for a container runtime's health check. Small images have
//! no shell and no curl, so the binary checks itself.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use axum::http::StatusCode;
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

use crate::settings::{HttpSettings, duration_ms};

/// The liveness endpoint the check asks.
pub const PATH: &str = "/healthz";

/// How long the check waits for the answer. Shorter than the image's
/// `HEALTHCHECK --timeout`, so that a slow service gets this command's
/// message instead of being killed without one; a test holds the two
/// together.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Why the health check failed: what went wrong, and on which address.
#[derive(Debug, thiserror::Error)]
pub enum HealthcheckError {
    /// No full answer came within [`TIMEOUT`].
    #[error("no answer from {address} within {timeout_ms} ms")]
    TimedOut {
        /// The address the check asked.
        address: SocketAddr,
        /// The deadline that ran out, in milliseconds.
        timeout_ms: u64,
    },
    /// Nothing accepted the connection: the service is down or listens elsewhere.
    #[error("cannot connect to {address} (is the service running, and is http.listen right?)")]
    Unreachable {
        /// The address the check asked.
        address: SocketAddr,
        /// Why the connection failed.
        #[source]
        source: io::Error,
    },
    /// The connection broke while sending the request or reading the answer.
    #[error("the exchange with {address} failed")]
    Exchange {
        /// The address the check asked.
        address: SocketAddr,
        /// The I/O error that broke it.
        #[source]
        source: io::Error,
    },
    /// The service took the connection but closed it without a status line.
    #[error("{address} closed the connection without answering")]
    Closed {
        /// The address the check asked.
        address: SocketAddr,
    },
    /// Something answered, but not with an HTTP/1 status line.
    #[error("{address} did not answer in HTTP/1: {status_line:?}")]
    NotHttp {
        /// The address the check asked.
        address: SocketAddr,
        /// The first line received, to show what answered instead.
        status_line: String,
    },
    /// The service answered with a status other than 200.
    #[error("GET {PATH} on {address} answered {status}")]
    Unhealthy {
        /// The address the check asked.
        address: SocketAddr,
        /// The status it answered.
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
pub async fn check(http: &HttpSettings) -> Result<(), HealthcheckError> {
    let address = local_address(http.listen);
    tokio::time::timeout(TIMEOUT, get_healthz(address))
        .await
        .unwrap_or(Err(HealthcheckError::TimedOut {
            address,
            timeout_ms: duration_ms(TIMEOUT),
        }))
}

/// The longest status line read: `HTTP/1.1 200 OK` and a long reason.
const STATUS_LINE_LIMIT: u64 = 256;

async fn get_healthz(address: SocketAddr) -> Result<(), HealthcheckError> {
    let mut stream = TcpStream::connect(address)
        .await
        .map_err(|source| HealthcheckError::Unreachable { address, source })?;
    let exchange = |source| HealthcheckError::Exchange { address, source };
    let request = format!("GET {PATH} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(exchange)?;
    let mut status_line = String::new();
    BufReader::new(stream.take(STATUS_LINE_LIMIT))
        .read_line(&mut status_line)
        .await
        .map_err(exchange)?;
    match status(&status_line) {
        Some(StatusCode::OK) => Ok(()),
        Some(status) => Err(HealthcheckError::Unhealthy { address, status }),
        None if status_line.is_empty() => Err(HealthcheckError::Closed { address }),
        None => Err(HealthcheckError::NotHttp {
            address,
            status_line,
        }),
    }
}

/// The status of a line such as `HTTP/1.1 200 OK`.
fn status(status_line: &str) -> Option<StatusCode> {
    let mut parts = status_line.split(' ');
    let version = parts.next()?;
    let code = parts.next()?.trim_end();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    StatusCode::from_bytes(code.as_bytes()).ok()
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

    /// Checks a one-connection server that answers `answer` (and nothing
    /// when it is `None`).
    async fn check_against(answer: Option<&'static str>) -> Result<(), HealthcheckError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = vec![0; 1024];
            let read = stream.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..read]).into_owned();
            if let Some(answer) = answer {
                stream.write_all(answer.as_bytes()).await.unwrap();
            } else {
                std::future::pending::<()>().await;
            }
            request
        });
        let mut http = HttpSettings::on_port(0);
        http.listen = address;
        let result = check(&http).await;
        if answer.is_some() {
            let request = server.await.unwrap();
            assert!(
                request.starts_with("GET /healthz HTTP/1.1\r\n"),
                "{request}"
            );
        }
        result
    }

    #[tokio::test]
    async fn a_200_passes_and_any_other_status_fails_naming_it() {
        check_against(Some("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"))
            .await
            .unwrap();
        let error = check_against(Some("HTTP/1.1 503 Service Unavailable\r\n\r\n"))
            .await
            .unwrap_err();
        assert!(
            matches!(error, HealthcheckError::Unhealthy { status, .. } if status == 503),
            "{error:?}"
        );
        assert!(error.to_string().contains("answered 503"), "{error}");
    }

    #[tokio::test]
    async fn an_answer_that_is_not_http_fails_quoting_it() {
        let error = check_against(Some("SSH-2.0-OpenSSH_9.6\r\n"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("SSH-2.0-OpenSSH_9.6"), "{error}");
        assert!(
            check_against(Some("")).await.is_err(),
            "a closed connection fails"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_that_never_answers_fails_at_the_timeout() {
        let error = check_against(None).await.unwrap_err();
        assert!(
            matches!(
                error,
                HealthcheckError::TimedOut {
                    timeout_ms: 2000,
                    ..
                }
            ),
            "{error:?}"
        );
    }
}
