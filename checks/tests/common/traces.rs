//! The `otel` feature against a real OTLP/HTTP receiver: the spans arrive
//! with the caller's trace and the request's attributes, and a collector
//! that never answers neither slows requests nor holds the exit.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
};
use prost::Message;
use tokio::net::TcpListener;

use crate::support::{Counts, Launch, Process, WAIT_LIMIT, launch, runtime, serial, summary};
use nebula_checks::project;
use nebula_runtime::{Exit, otel::FLUSH_TIMEOUT, testing::process::unpooled_client as client};

/// The trace id and parent span id a caller sends in `traceparent`.
pub const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The caller's `traceparent` header (sampled).
pub fn caller_traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

/// One span as the receiver got it: ids in lowercase hex, attributes as
/// text.
#[derive(Debug, Clone)]
pub struct Received {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: HashMap<String, String>,
    pub service_name: String,
}

/// An OTLP/HTTP receiver (protobuf, `POST /v1/traces`) that keeps every
/// span it is sent.
#[derive(Clone)]
pub struct Collector {
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Collector {
    pub async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(Arc::clone(&spans));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("collector binds");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { endpoint, spans }
    }

    /// Points the service's exporter here.
    pub fn export_from(&self, launch: Launch) -> Launch {
        launch.env("OTEL_EXPORTER_OTLP_ENDPOINT", &self.endpoint)
    }

    pub fn spans(&self) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (bounded) for a span that `matches`.
    pub async fn wait_for(&self, expected: &str, matches: impl Fn(&Received) -> bool) -> Received {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Some(span) = self.spans().into_iter().find(|span| matches(span)) {
                return span;
            }
            assert!(
                Instant::now() < deadline,
                "no span {expected} arrived within {WAIT_LIMIT:?}; received: {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits (bounded) for the `http.request` span of the request sent with
    /// `x-request-id: request_id`.
    pub async fn request_span(&self, request_id: &str) -> Received {
        self.wait_for(&format!("for request {request_id}"), |span| {
            span.attributes.get("request.id").map(String::as_str) == Some(request_id)
        })
        .await
    }
}

async fn receive(State(spans): State<Arc<Mutex<Vec<Received>>>>, body: Bytes) -> StatusCode {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let service_name = resource_spans
            .resource
            .map(|resource| attributes(&resource.attributes))
            .and_then(|mut attributes| attributes.remove("service.name"))
            .unwrap_or_default();
        for span in resource_spans
            .scope_spans
            .into_iter()
            .flat_map(|scope| scope.spans)
        {
            received.push(Received {
                name: span.name,
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: attributes(&span.attributes),
                service_name: service_name.clone(),
            });
        }
    }
    spans
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend(received);
    StatusCode::OK
}

fn attributes(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|pair| (pair.key.clone(), text(pair.value.as_ref())))
        .collect()
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(any_value::Value::StringValue(text)) => text.clone(),
        Some(any_value::Value::IntValue(number)) => number.to_string(),
        Some(any_value::Value::BoolValue(flag)) => flag.to_string(),
        Some(any_value::Value::DoubleValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// `GET /healthz` with a known request id, and with the caller's
/// `traceparent` when `traced`.
async fn healthz(process: &Process, request_id: &str, traced: bool) {
    let mut request = client()
        .get(process.url("/healthz"))
        .header("x-request-id", request_id);
    if traced {
        request = request.header("traceparent", caller_traceparent());
    }
    let response = request.send().await.expect("/healthz answers");
    assert_eq!(response.status(), 200);
}

#[test]
fn a_request_span_joins_the_callers_trace_with_its_attributes() {
    let _serial = serial();
    runtime().block_on(async {
        let collector = Collector::start().await;
        let process = collector.export_from(launch()).start().await;

        healthz(&process, "traced-request", true).await;
        // SIGTERM: the exit flushes the spans still batched.
        process.signal("TERM");
        let exited = process.exit().await;
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));

        let span = collector.request_span("traced-request").await;
        assert_eq!(span.name, "http.request");
        assert_eq!(span.trace_id, CALLER_TRACE, "the caller's trace");
        assert_eq!(span.parent_span_id, CALLER_SPAN, "the caller's span");
        assert_eq!(span.span_id.len(), 16, "a span id: {span:?}");
        assert_ne!(span.span_id, CALLER_SPAN, "a span of its own");
        assert_eq!(span.attributes["http.method"], "GET");
        assert_eq!(span.attributes["url.path"], "/healthz");
        assert_eq!(span.attributes["response.status"], "200");
        assert_eq!(span.service_name, project().name);
    });
}

/// Also: a service name given in `OTEL_RESOURCE_ATTRIBUTES` is kept.
#[test]
fn without_a_traceparent_a_request_starts_its_own_trace() {
    let _serial = serial();
    runtime().block_on(async {
        let collector = Collector::start().await;
        let process = collector
            .export_from(launch())
            .env(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test,service.name=named-in-attributes",
            )
            .start()
            .await;

        healthz(&process, "untraced-request", false).await;
        process.signal("TERM");
        process.exit().await;

        let span = collector.request_span("untraced-request").await;
        assert_eq!(span.parent_span_id, "", "a root span");
        assert_eq!(span.trace_id.len(), 32, "a trace id of its own: {span:?}");
        assert_ne!(span.trace_id, "0".repeat(32));
        assert_eq!(
            span.service_name, "named-in-attributes",
            "OTEL_RESOURCE_ATTRIBUTES names the service"
        );
    });
}

/// A collector that accepts connections and never answers: the requests
/// are served as usual, and the exit waits for the export no longer than
/// its flush limit, not the exporter's own timeout (set to ten minutes).
#[test]
fn a_collector_that_never_answers_holds_neither_requests_nor_the_exit() {
    let _serial = serial();
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("silent collector binds");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        // Batches leave every 100 ms: exports are stuck while requests
        // are served, not only at the exit.
        let process = launch()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "600000")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .start()
            .await;

        for round in 0..20 {
            healthz(&process, &format!("silent-{round}"), true).await;
        }
        let signalled = Instant::now();
        process.signal("TERM");
        let exited = process.exit().await;
        silent.abort();

        let sigterm_to_exit = exited.at - signalled;
        let served = Counts {
            offered: 20,
            accepted: 20,
            completed: 20,
            ..Counts::default()
        };
        summary(
            "silent-collector",
            served,
            exited.code,
            &format!("sigterm_to_exit_ms={}", sigterm_to_exit.as_millis()),
        );
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        // The flush limit, plus room for a loaded machine (measured here:
        // 2.0 s from SIGTERM to exit).
        let bound = FLUSH_TIMEOUT + Duration::from_secs(2);
        assert!(
            sigterm_to_exit < bound,
            "exit came {sigterm_to_exit:?} after SIGTERM; the flush is bounded at {FLUSH_TIMEOUT:?}"
        );
        assert!(
            exited.logs.with_message("panic").is_empty(),
            "{:#?}",
            exited.logs.all()
        );
    });
}

/// A collector that is not there (nothing listens on its port): requests
/// are served, the exit is clean, and the failed export is in the log.
#[test]
fn a_collector_that_is_away_is_logged_not_fatal() {
    let _serial = serial();
    runtime().block_on(async {
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("port to close binds");
        let endpoint = format!("http://{}", closed.local_addr().expect("address"));
        drop(closed);
        let process = launch()
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .start()
            .await;

        healthz(&process, "collector-away", true).await;
        let failure = process
            .wait_for_event("the failed export in the log", |event| {
                event["name"] == "BatchSpanProcessor.ExportError"
            })
            .await;
        assert_eq!(failure["level"], "ERROR");
        healthz(&process, "after-the-failure", true).await;
        process.signal("TERM");
        let exited = process.exit().await;
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
    });
}

/// Starts the service with `launch`, which must stop it at start with exit
/// 78 and an error that mentions each of `mentions`.
fn assert_refused_at_start(launch: &Launch, mentions: &[&str]) {
    let _serial = serial();
    runtime().block_on(async {
        let (status, _, stderr) = launch.run_to_exit().await;
        assert_eq!(
            status.code(),
            Some(i32::from(Exit::ConfigError.code())),
            "{stderr}"
        );
        for mention in mentions {
            assert!(
                stderr.contains(mention),
                "the error mentions {mention:?}: {stderr}"
            );
        }
    });
}

#[test]
fn a_protocol_this_build_lacks_stops_the_start_naming_the_accepted_one() {
    let launch = launch()
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
    assert_refused_at_start(
        &launch,
        &["OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "http/protobuf"],
    );
}

#[test]
fn otel_sdk_disabled_exports_nothing() {
    let _serial = serial();
    runtime().block_on(async {
        let collector = Collector::start().await;
        let process = collector
            .export_from(launch())
            .env("OTEL_SDK_DISABLED", "true")
            .start()
            .await;
        healthz(&process, "not-exported", true).await;
        process.signal("TERM");
        let exited = process.exit().await;
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        // An exporting process sends its last batch before it exits.
        assert!(collector.spans().is_empty(), "{:#?}", collector.spans());
    });
}

#[test]
fn a_malformed_endpoint_stops_the_start_naming_the_variable() {
    let launch = launch().env("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url");
    assert_refused_at_start(&launch, &["OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"]);
}
