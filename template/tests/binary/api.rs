//! The `api` binary under load: SIGTERM mid-load completes what was
//! started and refuses the rest, overload is shed with 503, and a request
//! that outlasts the grace ends the process with the deadline code.

use std::time::{Duration, Instant};

use serde_json::json;

#[path = "../shared/held_request.rs"]
mod held_request;

use self::held_request::hold_every_permit;
use crate::{
    load::{Load, balancer},
    support::{
        Answer, Counts, Launch, Process, answer, assert_deadline_exit,
        assert_overload_memory_bounded, client, deadline_summary, kib, runtime, serial, summary,
    },
};

use {{crate_name}}::Exit;

fn create_load(process: &Process, clients: usize, limit: usize) -> Load {
    let url = process.url("/v1/items");
    Load::start(clients, limit, move |http| {
        http.post(&url).json(&json!({"name": "load"}))
    })
}

/// Readiness turns 503 first, a stand-in load balancer stops sending, and
/// only then does the listener close: no request is lost, and every one
/// that reached the service got its full response.
#[test]
fn sigterm_mid_load_completes_started_requests_and_refuses_later_ones() {
    let _serial = serial();
    runtime().block_on(async {
        let process = Launch::default()
            .setting("SHUTDOWN__READINESS_DELAY_MS", 2_000)
            .setting("API__MAX_ITEMS", 1_000_000)
            .start()
            .await;
        let load = create_load(&process, 16, 1_000_000);
        let lb = balancer(process.url("/readyz"), load.stop.clone());

        load.wait_for_offers(1_000).await;
        process.signal("TERM");
        let tally = load.finish().await;
        lb.await.expect("balancer task");
        let late_url = process.url("/v1/items");
        let exited = process.exit().await;
        let late = answer(
            client()
                .post(late_url)
                .json(&json!({"name": "late"}))
                .send()
                .await,
        );

        summary(
            "sigterm-mid-load",
            Counts {
                offered: tally.offered(),
                accepted: tally.accepted.len(),
                completed: tally.accepted.len(),
                refused: tally.refused(),
                lost: tally.broken.len(),
            },
            exited.code,
            &format!("drain_ms={}", exited.waited.as_millis()),
        );
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        assert!(
            tally.broken.is_empty(),
            "requests without a usable answer: {:#?}",
            tally.broken
        );
        assert!(
            tally.accepted.iter().all(|body| body.contains("\"id\"")),
            "every 2xx carries the full item"
        );
        assert_eq!(late, Answer::Refused, "a request after exit");
    });
}

/// The same load without a readiness delay and without a balancer: the
/// listener closes while clients are still connecting. Connections that
/// were still in the kernel's accept queue are reset, which a client cannot
/// tell apart from a lost request. This measures how many; the delay in the
/// test above is what designs them away.
#[test]
fn without_a_readiness_delay_connections_in_the_accept_queue_are_reset() {
    let _serial = serial();
    runtime().block_on(async {
        let process = Launch::default()
            .setting("API__MAX_ITEMS", 1_000_000)
            .start()
            .await;
        let load = create_load(&process, 16, 1_000_000);
        load.wait_for_offers(1_000).await;
        process.signal("TERM");
        let exited = process.exit().await;
        // Clients stop on their own once every connection is refused.
        load.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let tally = load.finish().await;

        summary(
            "sigterm-without-readiness-delay",
            Counts {
                offered: tally.offered(),
                accepted: tally.accepted.len(),
                completed: tally.accepted.len(),
                refused: tally.refused(),
                lost: 0,
            },
            exited.code,
            &format!("reset_or_closed={}", tally.broken.len()),
        );
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        assert_eq!(
            tally.refused_without_retry_after, 0,
            "every 503 carries Retry-After"
        );
    });
}

/// Eight slow requests hold the eight permits; a flood of 2,000 more is
/// refused at once with 503 and `Retry-After`, memory stays bounded, and
/// the held requests still complete.
#[test]
fn overload_is_shed_with_503_and_memory_stays_bounded() {
    let _serial = serial();
    runtime().block_on(async {
        let process = Launch::default()
            .setting("HTTP__MAX_CONCURRENT_REQUESTS", 8)
            .start()
            .await;
        let idle_rss = process.rss_kib();
        let held = hold_every_permit(process.address, "/v1/items", r#"{"name": "held"}"#, 8).await;

        let load = create_load(&process, 32, 2_000);
        let (tally, peak_rss) = load.finish_watching_memory(&process, 2_000).await;

        let mut completed = 0;
        for request in held {
            let response = request.finish().await;
            assert!(
                response.starts_with("HTTP/1.1 201"),
                "a held request completes: {response}"
            );
            completed += 1;
        }
        process.signal("TERM");
        let exited = process.exit().await;

        summary(
            "overload",
            Counts {
                offered: tally.offered() + 8,
                accepted: tally.accepted.len() + 8,
                completed,
                refused: tally.refused(),
                lost: tally.broken.len(),
            },
            exited.code,
            &format!(
                "idle_rss_kib={} peak_rss_kib={}",
                kib(idle_rss),
                kib(peak_rss)
            ),
        );
        assert!(
            tally.accepted.is_empty(),
            "no request beyond the limit is served"
        );
        assert_eq!(
            tally.refused_with_retry_after, 2_000,
            "the excess gets 503 + Retry-After"
        );
        assert_overload_memory_bounded(peak_rss);
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
    });
}

#[test]
fn a_request_that_outlasts_the_grace_ends_the_process_with_the_deadline_code() {
    let _serial = serial();
    runtime().block_on(async {
        let grace = Duration::from_millis(500);
        let process = Launch::default()
            .setting("SHUTDOWN__GRACE_MS", grace.as_millis())
            .setting("HTTP__MAX_CONCURRENT_REQUESTS", 1)
            .start()
            .await;
        let held = hold_every_permit(process.address, "/v1/items", r#"{"name": "held"}"#, 1)
            .await
            .remove(0);

        let signalled = Instant::now();
        process.signal("TERM");
        let exited = process.exit().await;
        deadline_summary(&exited, signalled);
        assert_deadline_exit(&exited, signalled, grace);
        let response = held.finish().await;
        assert_eq!(
            exited
                .logs
                .with_message("drain deadline exceeded, cancelling remaining work")
                .len(),
            1
        );
        assert!(
            !response.starts_with("HTTP/1.1 201"),
            "the request was cut at the deadline: {response}"
        );
    });
}
