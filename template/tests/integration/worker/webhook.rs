//! The example `webhook` kind against a local target: delivery with the job
//! id as `Idempotency-Key`, retries of 5xx answers and timeouts, 4xx answers
//! failing at once, and the destination checks at intake and at connect.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::{Value, json};

use nebula_runtime::testing::start;

use super::{quick, submit, until_state};
use {{crate_name}}::Settings;

/// What the target answers, request by request; 200 once the script ends.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answers: the caller's timeout ends the call.
    Hold,
}

/// One request the target received.
#[derive(Debug, Clone)]
struct Delivery {
    idempotency_key: String,
    content_type: String,
    body: Value,
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    received: Vec<Delivery>,
}

/// A webhook target on 127.0.0.1:0.
struct Target {
    url: String,
    script: Arc<Mutex<Script>>,
}

impl Target {
    async fn start(replies: &[Reply]) -> Self {
        let script = Arc::new(Mutex::new(Script {
            replies: replies.iter().copied().collect(),
            received: Vec::new(),
        }));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, script }
    }

    fn received(&self) -> Vec<Delivery> {
        let script = self.script.lock().unwrap_or_else(PoisonError::into_inner);
        script.received.clone()
    }
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let reply = {
        let mut script = script.lock().unwrap_or_else(PoisonError::into_inner);
        script.received.push(Delivery {
            idempotency_key: header("idempotency-key"),
            content_type: header("content-type"),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        script.replies.pop_front().unwrap_or(Reply::Status(200))
    };
    match reply {
        Reply::Status(status) => StatusCode::from_u16(status).unwrap(),
        Reply::Hold => std::future::pending().await,
    }
}

/// Settings that let webhooks reach the local target.
fn reaching_loopback() -> Settings {
    let mut settings = quick();
    settings.service.kinds.webhook.allowed_hosts = vec!["127.0.0.1".to_owned()];
    settings.service.kinds.webhook.allow_private_networks = true;
    settings
}

fn webhook(url: &str, payload: &Value) -> Value {
    json!({"kind": "webhook", "args": {"url": url, "payload": payload}})
}

#[tokio::test]
async fn a_webhook_is_delivered_once_with_the_job_id_as_idempotency_key() {
    let target = Target::start(&[]).await;
    let service = start(reaching_loopback()).await;
    let payload = json!({"order": 17, "items": ["a", "b"]});
    let id = submit(&service, &webhook(&target.url, &payload))
        .await
        .unwrap();
    let done = until_state(&service, &id, "succeeded").await;
    assert_eq!(done["attempts"], 1);
    service.stop().await.unwrap();
    let received = target.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].idempotency_key, id);
    assert_eq!(received[0].content_type, "application/json");
    assert_eq!(received[0].body, payload);
}

#[tokio::test]
async fn server_errors_throttling_and_timeouts_are_retried_with_the_same_key() {
    let replies = [
        Reply::Status(503),
        Reply::Status(429),
        Reply::Status(408),
        Reply::Hold,
    ];
    let target = Target::start(&replies).await;
    let mut settings = reaching_loopback();
    // The held call ends at the outbound limit, the 10 s rule made short.
    settings.timeouts.http_client_ms = 300;
    let service = start(settings).await;
    let id = submit(&service, &webhook(&target.url, &json!({"n": 1})))
        .await
        .unwrap();
    let done = until_state(&service, &id, "succeeded").await;
    assert_eq!(done["attempts"], 5, "{done}");
    service.stop().await.unwrap();
    let keys: Vec<String> = target
        .received()
        .into_iter()
        .map(|delivery| delivery.idempotency_key)
        .collect();
    assert_eq!(keys, vec![id; 5]);
}

#[tokio::test]
async fn a_client_error_or_a_redirect_fails_the_job_without_a_retry() {
    let target = Target::start(&[Reply::Status(422), Reply::Status(301)]).await;
    let service = start(reaching_loopback()).await;
    for answer in ["422 Unprocessable Entity", "301 Moved Permanently"] {
        let id = submit(&service, &webhook(&target.url, &json!({})))
            .await
            .unwrap();
        let failed = until_state(&service, &id, "failed").await;
        assert_eq!(failed["attempts"], 1, "{failed}");
        assert_eq!(
            failed["last_error"],
            format!("attempt 1 failed: the target answered {answer}")
        );
    }
    service.stop().await.unwrap();
    assert_eq!(target.received().len(), 2);
}

#[tokio::test]
async fn destinations_outside_the_allowlist_are_refused_at_intake() {
    let mut settings = quick();
    settings.service.kinds.webhook.allowed_hosts = vec!["*.example.com".to_owned()];
    let service = start(settings).await;
    assert_eq!(
        service
            .refused("/jobs", &webhook("https://example.org/in", &json!({})), 400)
            .await,
        "args of job kind \"webhook\": url host example.org is not among the allowed hosts"
    );
    assert_eq!(
        service
            .refused(
                "/jobs",
                &webhook("http://169.254.169.254/latest", &json!({})),
                400
            )
            .await,
        "args of job kind \"webhook\": url address 169.254.169.254 is internal (loopback, private, link-local or reserved), which is not allowed"
    );
    let without_payload = service
        .refused(
            "/jobs",
            &json!({"kind": "webhook", "args": {"url": "https://hooks.example.com/"}}),
            400,
        )
        .await;
    assert!(
        without_payload.contains("missing field `payload`"),
        "{without_payload}"
    );
    service.stop().await.unwrap();
}

/// An allowed name that resolves to loopback is refused when the call
/// connects, attempt after attempt, and the job fails saying why.
#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_not_called() {
    let target = Target::start(&[]).await;
    let mut settings = quick();
    settings.service.kinds.webhook.allowed_hosts = vec!["localhost".to_owned()];
    settings.service.max_attempts = 2;
    let service = start(settings).await;
    // A token in the URL stays out of what the job reports.
    let url = target.url.replace("127.0.0.1", "localhost") + "?token=s3cret";
    let id = submit(&service, &webhook(&url, &json!({}))).await.unwrap();
    let failed = until_state(&service, &id, "failed").await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(!error.contains("s3cret"), "{error}");
    assert!(
        error.contains("localhost resolves only to internal addresses (loopback, private, link-local or reserved)"),
        "{error}"
    );
    service.stop().await.unwrap();
    assert!(target.received().is_empty());
}
