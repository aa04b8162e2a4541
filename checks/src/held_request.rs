//! Requests held in flight, for the `api` tests of load shedding and drain:
//! the headers and half of the body are sent, the rest waits.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Upper bound on the waits here. Reaching it is a failure.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// A request held in flight until [`HeldRequest::finish`].
pub struct HeldRequest {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl HeldRequest {
    /// Sends `POST path` with a JSON `body`, all but its last half.
    pub async fn start(address: SocketAddr, path: &str, body: &str) -> Self {
        let mut stream = TcpStream::connect(address).await.expect("connects");
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let split = body.len() / 2;
        stream.write_all(head.as_bytes()).await.expect("head sent");
        stream
            .write_all(&body.as_bytes()[..split])
            .await
            .expect("part of the body sent");
        Self {
            stream,
            rest: body.as_bytes()[split..].to_vec(),
        }
    }

    /// Whether the service already answered (it refused the request, which
    /// then never reached a handler) or closed the connection.
    pub fn was_answered(&self) -> bool {
        let mut byte = [0_u8; 1];
        !matches!(
            self.stream.try_read(&mut byte),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock
        )
    }

    /// Sends the rest of the body and returns the raw response (empty if
    /// the connection was closed without one).
    pub async fn finish(mut self) -> String {
        let _ = self.stream.write_all(&self.rest).await;
        let mut response = Vec::new();
        let _ = tokio::time::timeout(WAIT_LIMIT, self.stream.read_to_end(&mut response)).await;
        String::from_utf8_lossy(&response).into_owned()
    }
}

/// Holds every one of the service's `permits` concurrency permits with a
/// `POST path` in flight, each creating an item of its own (names are
/// unique: `name-` and a fresh id), and returns those requests.
///
/// A probe answered 503 proves every permit is taken. A held request that
/// arrives while a probe holds a permit is refused instead; then all are
/// sent again.
pub async fn hold_every_permit(
    address: SocketAddr,
    path: &str,
    name: &str,
    permits: usize,
) -> Vec<HeldRequest> {
    let body = || {
        let name = format!("{name}-{}", uuid::Uuid::new_v4().simple());
        serde_json::json!({ "name": name }).to_string()
    };
    let deadline = Instant::now() + WAIT_LIMIT;
    let probe = reqwest::Client::new();
    let url = format!("http://{address}{path}");
    loop {
        let mut held = Vec::new();
        for _ in 0..permits {
            held.push(HeldRequest::start(address, path, &body()).await);
        }
        loop {
            assert!(
                Instant::now() < deadline,
                "the held requests never took every permit"
            );
            if held.iter().any(HeldRequest::was_answered) {
                break;
            }
            let response = probe
                .post(&url)
                .header("content-type", "application/json")
                .body(body())
                .send()
                .await
                .expect("probe answered");
            let refused = response.status() == 503;
            if refused && !held.iter().any(HeldRequest::was_answered) {
                assert_eq!(
                    response.headers()["retry-after"],
                    "1",
                    "a shed request carries Retry-After"
                );
                return held;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
