//! The `api` binary under load: SIGTERM mid-load completes what was
//! started and refuses the rest, overload is shed with 503, and a request
//! that outlasts the grace ends the process with the deadline code. Its
//! items outlive the process, and a database outage gives 503s with
//! `Retry-After` until the database is back.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use nebula_checks::held_request::{HeldRequest, hold_every_permit};
use tokio::net::TcpStream;

use nebula_runtime::{
    Exit,
    testing::{
        Answer, Engine, TestDatabase, answer,
        metrics::{sample, series},
        process::unpooled_client as client,
    },
};

use crate::{
    load::{Load, assert_overload_memory_bounded, balancer, kib, rss_kib},
    outage::{Outage, POSTGRES_CTL_VAR, control_server, wait_for_status},
    proxy,
    support::{
        Counts, Process, assert_deadline_exit, deadline_summary, launch, runtime, serial, summary,
    },
};
fn create_load(process: &Process, clients: usize, limit: usize) -> Load {
    let url = process.url("/v1/items");
    Load::start(clients, limit, move |http| {
        // Names are unique: a second item with a name in use gets 409.
        let name = format!("load-{}", uuid::Uuid::new_v4());
        http.post(&url).json(&json!({ "name": name }))
    })
}

/// What the fault tests ([`crate::faults`]) write on this type: items.
pub mod writes {
    use std::{collections::HashSet, sync::Arc};

    use serde_json::Value;

    use crate::{
        load::{Load, Tally},
        support::{Launch, Process},
    };
    use nebula_runtime::testing::{
        TestDatabase,
        process::{Logs, unpooled_client as client},
    };

    /// The table the writes go to.
    pub const TABLE: &str = "items";

    pub fn launch(database: &Arc<TestDatabase>) -> Launch {
        crate::support::launch().database(database.clone())
    }

    pub fn load(process: &Process, clients: usize) -> Load {
        super::create_load(process, clients, usize::MAX)
    }

    /// The status of a read: the first page of the list.
    pub async fn read_status(process: &Process, _accepted: &[String]) -> u16 {
        client()
            .get(process.url("/v1/items?limit=1"))
            .send()
            .await
            .expect("GET /v1/items answers")
            .status()
            .as_u16()
    }

    /// The created items that are not stored.
    pub async fn settle(_process: &Process, database: &TestDatabase, tally: &Tally) -> Vec<String> {
        let mut connection = database.connect().await;
        let stored: HashSet<String> = sqlx::query_scalar("SELECT id FROM items")
            .fetch_all(&mut connection)
            .await
            .expect("items are readable")
            .into_iter()
            .collect();
        tally
            .accepted
            .iter()
            .map(|body| {
                let item: Value = serde_json::from_str(body).expect("201 body is JSON");
                item["id"].as_str().expect("201 body has an id").to_owned()
            })
            .filter(|id| !stored.contains(id))
            .map(|id| format!("item {id} was created (201) but is not stored"))
            .collect()
    }

    /// Nothing more to check once the process exited: an item is kept or
    /// not, which [`settle`] checked.
    #[expect(clippy::unused_async, reason = "the same signature as the worker's")]
    pub async fn lost(_tally: &Tally, _database: &TestDatabase, _logs: &Logs) -> Vec<String> {
        Vec::new()
    }
}

/// Readiness turns 503 first, a stand-in load balancer stops sending, and
/// only then does the listener close: no request is lost, and every one
/// that reached the service got its full response.
#[test]
fn sigterm_mid_load_completes_started_requests_and_refuses_later_ones() {
    let _serial = serial();
    runtime().block_on(async {
        let process = launch()
            .setting("SHUTDOWN__READINESS_DELAY_MS", 2_000)
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
/// listener closes while clients are still connecting. Connections the
/// kernel had already accepted are taken from its queue and answered, not
/// reset: a reset leaves a client unable to tell whether its request ran.
#[test]
fn without_a_readiness_delay_queued_connections_are_answered_not_reset() {
    let _serial = serial();
    runtime().block_on(async {
        let process = launch().start().await;
        let load = create_load(&process, 16, 1_000_000);
        load.wait_for_offers(1_000).await;
        process.signal("TERM");
        let exited = process.exit().await;
        // Clients stop on their own once every connection is refused.
        load.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let tally = load.finish().await;
        let (resets, other): (Vec<&String>, Vec<&String>) = tally
            .broken
            .iter()
            .partition(|failure| failure.contains("ConnectionReset"));

        summary(
            "sigterm-without-readiness-delay",
            Counts {
                offered: tally.offered(),
                accepted: tally.accepted.len(),
                completed: tally.accepted.len(),
                refused: tally.refused(),
                lost: tally.broken.len(),
            },
            exited.code,
            &format!("reset={} closed_or_other={}", resets.len(), other.len()),
        );
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        // A handshake completed in the instant between the last look at the
        // queue and the close is still reset: scripts/resets saw 1 in 2 of
        // 40 shutdowns with 32 clients (the old server: about 24 each).
        assert!(resets.is_empty(), "connections reset: {resets:#?}");
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
        let process = launch()
            .setting("HTTP__MAX_CONCURRENT_REQUESTS", 8)
            .start()
            .await;
        let idle_rss = rss_kib(&process);
        let held = hold_every_permit(process.address, "/v1/items", "held", 8).await;

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
        let process = launch()
            .setting("SHUTDOWN__GRACE_MS", grace.as_millis())
            .setting("HTTP__MAX_CONCURRENT_REQUESTS", 1)
            .start()
            .await;
        let held = hold_every_permit(process.address, "/v1/items", "held", 1)
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
        assert_eq!(
            exited
                .logs
                .with_message("request abandoned at the drain deadline")
                .len(),
            1,
            "the cut request is logged"
        );
    });
}

/// The metrics listener serves through the drain, after the service's own
/// listener has closed.
#[test]
fn metrics_are_served_through_the_drain_after_the_listener_closes() {
    let _serial = serial();
    runtime().block_on(async {
        let grace = Duration::from_secs(3);
        let process = launch()
            .setting("SHUTDOWN__READINESS_DELAY_MS", 200)
            .setting("SHUTDOWN__GRACE_MS", grace.as_millis())
            .start()
            .await;
        // A create whose body never ends holds the drain open until the
        // deadline.
        let held = HeldRequest::start(process.address, "/v1/items", r#"{"name":"held"}"#).await;

        let signalled = Instant::now();
        process.signal("TERM");
        process
            .wait_for_event("the listener to close", |event| {
                event["phase"] == "listener_closed"
            })
            .await;
        let metrics = process.metrics().await;
        let phase = |name: &str| {
            sample(
                &metrics,
                &series("nebula_shutdown_phase_seconds", &[("phase", name)]),
            )
        };
        let closed = phase("listener_closed").expect("the listener_closed phase is recorded");
        assert!(
            (0.2..grace.as_secs_f64()).contains(&closed),
            "the listener closed {closed} s after the signal, after the 0.2 s readiness delay"
        );
        assert_eq!(phase("drained"), None, "the drain is still going");
        let service_port = TcpStream::connect(process.address).await;
        assert!(
            service_port.is_err(),
            "the service's own listener is closed while metrics are served"
        );

        let exited = process.exit().await;
        assert_deadline_exit(&exited, signalled, grace);
        drop(held);
        summary(
            "metrics-through-drain",
            Counts::default(),
            exited.code,
            &format!("listener_closed_s={closed:.3}"),
        );
    });
}

/// Creates an item on `process`; returns its id.
async fn create_item(process: &Process, name: &str) -> String {
    let created = client()
        .post(process.url("/v1/items"))
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("the item request is answered");
    assert_eq!(created.status(), 201);
    created.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

#[test]
fn items_outlive_a_killed_process_on_sqlite() {
    items_outlive_a_killed_process(Engine::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
fn items_outlive_a_killed_process_on_postgres() {
    items_outlive_a_killed_process(Engine::Postgres);
}

/// Every item answered 201 is there after SIGKILL and a new start.
fn items_outlive_a_killed_process(engine: Engine) {
    let _serial = serial();
    runtime().block_on(async {
        let database = TestDatabase::create(engine, "items_restart").await;
        let launch = launch().database(Arc::new(database));
        let process = launch.start().await;
        let mut ids = Vec::new();
        for n in 0..20 {
            ids.push(create_item(&process, &format!("kept {n}")).await);
        }
        process.signal("KILL");
        let killed = process.exit().await;
        assert_eq!(killed.code, None, "killed by the signal");

        let process = launch.start().await;
        for id in &ids {
            let read = client()
                .get(process.url(&format!("/v1/items/{id}")))
                .send()
                .await
                .expect("answered");
            assert_eq!(read.status(), 200, "item {id} after the restart");
        }
        let listed: Value = client()
            .get(process.url("/v1/items"))
            .send()
            .await
            .expect("answered")
            .json()
            .await
            .expect("JSON");
        assert_eq!(listed["items"].as_array().map(Vec::len), Some(ids.len()));
        process.signal("TERM");
        assert_eq!(
            process.exit().await.code,
            Some(i32::from(Exit::Clean.code()))
        );
    });
}

/// PostgreSQL goes away under a write load (the test cuts the connection
/// path) and comes back: readiness turns 503, item requests answer 503
/// with `Retry-After` (never a 500 or 504, never a hang), and once the
/// database is back the api is ready and creates items again.
#[test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
fn a_database_outage_mid_load_gives_503s_and_the_api_recovers() {
    database_outage(Outage::ConnectionsCut);
}

/// The same with the server itself stopped and started again; needs
/// `NEBULA_TEST_POSTGRES_CTL`.
#[test]
#[ignore = "needs PostgreSQL and a program that restarts it: set NEBULA_TEST_POSTGRES_URL and NEBULA_TEST_POSTGRES_CTL, and run with --include-ignored"]
fn a_postgres_restart_mid_load_gives_503s_and_the_api_recovers() {
    database_outage(Outage::ServerRestart);
}

fn database_outage(outage: Outage) {
    let _serial = serial();
    runtime().block_on(async {
        let control = match outage {
            Outage::ServerRestart => {
                let program = std::env::var(POSTGRES_CTL_VAR).unwrap_or_else(|_| {
                    panic!(
                        "set {POSTGRES_CTL_VAR} to a program that stops and starts the test server"
                    )
                });
                Some(program)
            }
            Outage::ConnectionsCut => None,
        };
        let database = TestDatabase::create(Engine::Postgres, "items_outage").await;
        let url = database.url.expose();
        let mut relay = proxy::Relay::start(proxy::server_address(url));
        let target = match outage {
            Outage::ConnectionsCut => {
                TestDatabase::postgres_at(&database, proxy::through(url, relay.address))
            }
            Outage::ServerRestart => TestDatabase::postgres_at(&database, url.to_owned()),
        };
        let process = launch()
            .database(Arc::new(target))
            .setting("TIMEOUTS__DATABASE_MS", 500)
            .setting("DATABASE__HEALTH_CHECK_INTERVAL_MS", 200)
            .start()
            .await;
        let kept = create_item(&process, "before the outage").await;
        let load = create_load(&process, 8, 1_000_000);
        load.wait_for_offers(200).await;

        match &control {
            Some(program) => control_server(program, "stop").await,
            None => relay.cut(),
        }
        let readyz = process.url("/readyz");
        let not_ready = wait_for_status(&readyz, 503).await;
        for path in ["/v1/items".to_owned(), format!("/v1/items/{kept}")] {
            let during = client().get(process.url(&path)).send().await;
            let during = during.expect("the api answers during the outage");
            assert_eq!(during.status(), 503, "{path}");
            assert_eq!(during.headers()["retry-after"], "1", "{path}");
        }

        match &control {
            Some(program) => control_server(program, "start").await,
            None => relay.restore(),
        }
        let ready_again = wait_for_status(&readyz, 200).await;
        create_item(&process, "after the outage").await;
        load.stop.store(true, Ordering::SeqCst);
        let tally = load.finish().await;
        let read = client()
            .get(process.url(&format!("/v1/items/{kept}")))
            .send()
            .await
            .expect("answered");
        assert_eq!(read.status(), 200);
        process.signal("TERM");
        let exited = process.exit().await;
        summary(
            match outage {
                Outage::ConnectionsCut => "items-database-outage",
                Outage::ServerRestart => "items-postgres-restart",
            },
            Counts {
                offered: tally.offered(),
                accepted: tally.accepted.len(),
                completed: tally.accepted.len(),
                refused: tally.refused(),
                lost: tally.broken.len(),
            },
            exited.code,
            &format!(
                "not_ready_after_ms={} ready_again_after_ms={}",
                not_ready.as_millis(),
                ready_again.as_millis()
            ),
        );
        assert!(
            tally.broken.is_empty(),
            "answers other than 2xx/503: {:?}",
            tally.broken
        );
        assert_eq!(tally.refused_without_retry_after, 0);
        assert!(tally.refused_with_retry_after > 0, "the outage was seen");
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
    });
}
