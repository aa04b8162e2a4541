//! The HTTP edge against clients that misbehave, over raw TCP: clients that
//! send nothing, half a head or sit idle cannot hold the drain; a slow head
//! is cut at `http.header_read_timeout_ms`; connections beyond
//! `http.max_connections` are closed on arrival; a head over
//! `http.max_header_bytes` gets 431.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::{Counts, Process, WAIT_LIMIT, launch, runtime, serial, summary};

use nebula_runtime::{Exit, testing::metrics::count};

const HEAD: &str = "GET /healthz HTTP/1.1\r\nHost: test\r\n";

/// Opens a connection to `process` and writes `bytes` on it.
async fn connect_and_send(process: &Process, bytes: &str) -> TcpStream {
    let mut stream = TcpStream::connect(process.address).await.expect("connects");
    stream.write_all(bytes.as_bytes()).await.expect("writes");
    stream
}

/// Reads one response (head and `Content-Length` body) and returns it;
/// `None` when the server closes the connection first.
async fn read_response(stream: &mut TcpStream) -> Option<String> {
    let mut received = Vec::new();
    let mut chunk = [0; 4096];
    let read = async {
        loop {
            let text = String::from_utf8_lossy(&received).into_owned();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let length = text[..head_end]
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if received.len() >= head_end + 4 + length {
                    return Some(text);
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(count) => received.extend_from_slice(&chunk[..count]),
            }
        }
    };
    tokio::time::timeout(WAIT_LIMIT, read)
        .await
        .expect("a response or a close within the wait limit")
}

/// Waits (bounded) until the server closes `stream`; returns what it sent
/// before closing.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = async {
        // A reset counts as closed as well.
        let _ = stream.read_to_end(&mut received).await;
    };
    tokio::time::timeout(WAIT_LIMIT, read)
        .await
        .expect("the server closes the connection within the wait limit");
    String::from_utf8_lossy(&received).into_owned()
}

/// Sends `GET /healthz` on new connections until one is answered (a
/// connection may be refused while earlier ones are still closing).
async fn served_connection(process: &Process) -> TcpStream {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let mut stream = connect_and_send(process, &format!("{HEAD}\r\n")).await;
        if let Some(response) = read_response(&mut stream).await {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            return stream;
        }
        assert!(Instant::now() < deadline, "no connection was served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends SIGTERM and checks the drain ends with a clean exit.
async fn stops_cleanly(process: Process) {
    process.signal("TERM");
    assert_eq!(
        process.exit().await.code,
        Some(i32::from(Exit::Clean.code()))
    );
}

#[test]
fn clients_that_send_nothing_half_a_head_or_sit_idle_do_not_hold_the_drain() {
    let _serial = serial();
    runtime().block_on(async {
        // The default grace (25 s): a held drain would end in the deadline code.
        let process = launch().start().await;
        let mut silent = connect_and_send(&process, "").await;
        let mut half_head = connect_and_send(&process, HEAD).await;
        let mut idle = served_connection(&process).await;

        let signalled = Instant::now();
        process.signal("TERM");
        let exited = process.exit().await;
        let sigterm_to_exit = exited.at - signalled;

        summary(
            "slow-clients-drain",
            Counts::default(),
            exited.code,
            &format!("sigterm_to_exit_ms={}", sigterm_to_exit.as_millis()),
        );
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        // No readiness delay is set: the drain owes these clients nothing.
        assert!(
            sigterm_to_exit < Duration::from_secs(1),
            "exit came {sigterm_to_exit:?} after SIGTERM"
        );
        for stream in [&mut silent, &mut half_head, &mut idle] {
            assert_eq!(
                read_until_closed(stream).await,
                "",
                "closed without an answer"
            );
        }
    });
}

#[test]
fn a_head_slower_than_the_header_read_timeout_is_disconnected() {
    let _serial = serial();
    runtime().block_on(async {
        let process = launch()
            .setting("HTTP__HEADER_READ_TIMEOUT_MS", 300)
            .start()
            .await;
        let sent = Instant::now();
        let mut slow = connect_and_send(&process, HEAD).await;

        assert_eq!(read_until_closed(&mut slow).await, "");
        // Ten times the setting: the default (65 s) would not be this quick.
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "closed {:?} after the half head",
            sent.elapsed()
        );
        // The service goes on serving others.
        served_connection(&process).await;
        stops_cleanly(process).await;
    });
}

#[test]
fn connections_beyond_max_connections_are_closed_on_arrival() {
    let _serial = serial();
    runtime().block_on(async {
        let process = launch().setting("HTTP__MAX_CONNECTIONS", 2).start().await;
        let first = served_connection(&process).await;
        let _second = served_connection(&process).await;

        let mut third = connect_and_send(&process, &format!("{HEAD}\r\n")).await;
        assert_eq!(
            read_until_closed(&mut third).await,
            "",
            "refused unanswered"
        );
        let refused = count(
            &process.metrics().await,
            "nebula_http_connections_refused_total",
        );
        assert!(refused >= 1, "refusals are counted: {refused}");

        // A connection that closes frees its place.
        drop(first);
        served_connection(&process).await;
        stops_cleanly(process).await;
    });
}

#[test]
fn a_head_over_max_header_bytes_gets_431() {
    let _serial = serial();
    runtime().block_on(async {
        let process = launch()
            .setting("HTTP__MAX_HEADER_BYTES", 1024)
            .start()
            .await;
        let with_filler = |bytes: usize| format!("{HEAD}x-filler: {}\r\n\r\n", "a".repeat(bytes));

        let mut small = connect_and_send(&process, &with_filler(500)).await;
        let mut large = connect_and_send(&process, &with_filler(2_000)).await;
        let small = read_response(&mut small).await.expect("an answer");
        let large = read_response(&mut large).await.expect("an answer");

        assert!(small.starts_with("HTTP/1.1 200"), "{small}");
        assert!(large.starts_with("HTTP/1.1 431"), "{large}");
        stops_cleanly(process).await;
    });
}
