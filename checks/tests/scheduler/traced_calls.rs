//! With the `otel` feature, the scheduler's outbound calls carry the run's
//! trace context (`traceparent`), and the run's span reaches the collector.

use axum::{Router, http::HeaderMap, routing::get};
use tokio::{net::TcpListener, sync::mpsc};

use crate::{
    config_errors::config_file,
    support::{WAIT_LIMIT, launch, runtime, serial},
    traces::Collector,
};

#[test]
fn an_outbound_call_carries_the_runs_trace() {
    let _serial = serial();
    runtime().block_on(async {
        let collector = Collector::start().await;
        let (sender, mut traceparents) = mpsc::channel(16);
        let app = Router::new().route(
            "/hook",
            get(move |headers: HeaderMap| {
                let sender = sender.clone();
                async move {
                    let traceparent = headers
                        .get("traceparent")
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let _ = sender.try_send(traceparent);
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("target binds");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let config = config_file(
            "traced-calls",
            &format!("[[scheduler.jobs]]\nname = \"hook\"\nevery_ms = 100\ntimeout_ms = 5000\nurl = \"{url}\"\n"),
        );
        let process = collector
            .export_from(launch().args(&["--config", &config]))
            .start()
            .await;

        let traceparent = tokio::time::timeout(WAIT_LIMIT, traceparents.recv())
            .await
            .expect("the first run calls the target")
            .expect("the target is up")
            .expect("the call carries a traceparent");
        process.signal("TERM");
        process.exit().await;

        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "a W3C traceparent: {traceparent}");
        let (trace_id, span_id) = (parts[1], parts[2]);
        let run = collector
            .wait_for("for the run that made the call", |span| span.span_id == span_id)
            .await;
        assert_eq!(run.name, "job.execute");
        assert_eq!(run.trace_id, trace_id);
        assert_eq!(run.attributes["job.name"], "hook");
    });
}
