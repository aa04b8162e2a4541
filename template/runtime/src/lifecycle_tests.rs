//! What every service gets from the runtime, tested once on the runtime's
//! test service, in-process: probes, request ids, request metrics by route
//! template, the shutdown phases, and a panicking handler.

use axum::{Router, body::Body, http::Request, routing::get};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{
    Settings, Stopped, http,
    readiness::Readiness,
    test_service::TestService,
    testing::{
        self, Answer, Logs, TestDatabase, answer,
        metrics::{assert_all_prefixed, count, series},
        start,
    },
};

/// Test settings on a SQLite database of the test's own, kept alive
/// alongside.
fn settings() -> (Settings<TestService>, TestDatabase) {
    let database = TestDatabase::sqlite();
    let mut settings = testing::settings::<TestService>();
    settings.database.url = database.url.clone();
    (settings, database)
}

#[tokio::test]
async fn probes_answer_while_running() {
    let (settings, _database) = settings();
    let service = start(settings).await;

    let health = service.get("/healthz").await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );

    let ready = service.get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<serde_json::Value>().await.unwrap()["status"],
        "ready"
    );

    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_never_by_id_or_path() {
    let (settings, _database) = settings();
    let service = start(settings).await;
    for _ in 0..3 {
        assert_eq!(service.get("/healthz").await.unwrap().status(), 200);
    }
    let thing = service.get("/things/thing-7e41c0").await.unwrap();
    assert_eq!(thing.status(), 204);
    let unknown = service
        .client
        .get(service.url("/no-such-route/id-5c1f9a"))
        .header("x-request-id", "req-8d2e4b")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let metrics_url = format!("http://{}/metrics", service.metrics_address);
    let scrape = service.client.get(metrics_url).send().await.unwrap();
    assert_eq!(scrape.status(), 200);
    assert_eq!(
        scrape.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    drop(scrape);
    let text = service.metrics().await;
    let on_service_port = service.get("/metrics").await.unwrap();
    assert_eq!(
        on_service_port.status(),
        404,
        "metrics stay off the service's port"
    );
    assert_all_prefixed(&text);
    // Other tests in this process count into the same series: at least.
    let healthz = [("method", "GET"), ("route", "/healthz")];
    let answered = series(
        "nebula_http_requests_total",
        &[healthz[0], healthz[1], ("status", "200")],
    );
    assert!(count(&text, &answered) >= 3, "{answered}");
    let timed = series("nebula_http_request_duration_seconds_count", &healthz);
    assert!(count(&text, &timed) >= 3, "{timed}");
    let bucket = series(
        "nebula_http_request_duration_seconds_bucket",
        &[healthz[0], healthz[1], ("le", "+Inf")],
    );
    assert!(count(&text, &bucket) >= 3, "{bucket}");
    let unmatched = series(
        "nebula_http_requests_total",
        &[("method", "GET"), ("route", "unmatched"), ("status", "404")],
    );
    assert!(count(&text, &unmatched) >= 1, "{unmatched}");
    let templated = series(
        "nebula_http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/things/{id}"),
            ("status", "204"),
        ],
    );
    assert!(count(&text, &templated) >= 1, "{templated}");
    let info = series(
        "nebula_service_info",
        &[("kind", "test"), ("version", "0.0.1")],
    );
    assert_eq!(count(&text, &info), 1);
    for id in ["id-5c1f9a", "req-8d2e4b", "thing-7e41c0"] {
        assert!(!text.contains(id), "{id} became a label value:\n{text}");
    }

    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let (settings, _database) = settings();
    let service = start(settings).await;

    let given = service
        .client
        .get(service.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "abc-123");

    let generated = service.get("/healthz").await.unwrap();
    let id = generated.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID is generated when none is given: {id}");

    service.stop().await.unwrap();
}

#[tokio::test]
async fn readiness_turns_503_as_soon_as_the_drain_starts() {
    let (mut settings, _database) = settings();
    // Long enough that the listener is still open for the checks below.
    settings.shutdown.readiness_delay_ms = 60_000;
    settings.shutdown.grace_ms = 120_000;
    let service = start(settings).await;
    assert_eq!(answer(service.get("/readyz").await), Answer::Status(200));

    service.shutdown.request();
    assert_eq!(answer(service.get("/readyz").await), Answer::Status(503));
    assert_eq!(
        answer(service.get("/healthz").await),
        Answer::Status(200),
        "still alive while draining"
    );

    service.shutdown.force();
    assert_eq!(service.finished().await.unwrap(), Stopped::Forced);
}

#[tokio::test]
async fn the_listener_closes_after_the_readiness_delay() {
    let (mut settings, _database) = settings();
    settings.shutdown.readiness_delay_ms = 100;
    let service = start(settings).await;
    let address = service.address;

    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
    let after = reqwest::Client::new()
        .get(format!("http://{address}/healthz"))
        .send()
        .await;
    assert_eq!(
        answer(after),
        Answer::Refused,
        "the listener is closed once the service returns"
    );
}

#[tokio::test]
async fn a_drain_without_work_is_clean() {
    let (settings, _database) = settings();
    let service = start(settings).await;
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn a_forced_shutdown_returns_at_once_from_the_drain() {
    let (mut settings, _database) = settings();
    settings.shutdown.readiness_delay_ms = 60_000;
    settings.shutdown.grace_ms = 120_000;
    let service = start(settings).await;

    service.shutdown.request();
    service.shutdown.force();
    assert_eq!(service.finished().await.unwrap(), Stopped::Forced);
}

#[tokio::test]
async fn a_panicking_handler_fails_its_request_with_500_logged_with_the_request_id() {
    let (logs, _guard) = Logs::capture();
    let routes = Router::new().route(
        "/boom",
        get(|| async {
            let empty: Vec<u8> = Vec::new();
            // Indexing out of bounds stands in for any bug in a handler.
            empty[1].to_string()
        }),
    );
    let ready = Readiness::new(CancellationToken::new(), Vec::new(), Vec::new());
    let app = http::router(
        routes,
        &Settings::<TestService>::default(),
        ready,
        &CancellationToken::new(),
    );
    let request = || {
        Request::get("/boom")
            .header("x-request-id", "req-42")
            .body(Body::empty())
            .unwrap()
    };

    let response = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["x-request-id"], "req-42");
    let logged = logs.events("request handler panicked");
    assert_eq!(logged.len(), 1, "the panic is logged once");
    assert_eq!(logged[0]["span"]["request.id"], "req-42");

    let again = app.oneshot(request()).await.unwrap();
    assert_eq!(again.status(), 500, "the router keeps serving");
}
