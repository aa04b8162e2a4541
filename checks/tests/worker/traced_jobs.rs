//! With the `otel` feature, a job runs inside the trace of the request that
//! submitted it, even when another process runs it after the first one
//! stopped: the trace context is stored with the job.

use std::time::Instant;

use serde_json::{Value, json};

use super::{diagnostic, sleep_job};
use crate::{
    support::{Process, WAIT_LIMIT, runtime, serial},
    traces::{CALLER_SPAN, CALLER_TRACE, Collector, caller_traceparent},
};
use nebula_runtime::testing::process::unpooled_client as client;

/// Waits (bounded) until the job has succeeded.
async fn until_succeeded(process: &Process, id: &str) {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let status: Value = client()
            .get(process.url(&format!("/jobs/{id}")))
            .send()
            .await
            .expect("job status answers")
            .json()
            .await
            .expect("JSON");
        if status["state"] == "succeeded" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} has not succeeded within {WAIT_LIMIT:?}: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[test]
fn a_job_run_by_another_process_joins_the_submitting_requests_trace() {
    let _serial = serial();
    runtime().block_on(async {
        let collector = Collector::start().await;
        // The job outlasts the first process's grace, so the drain hands it
        // back and the second process runs it.
        let launch = collector
            .export_from(diagnostic())
            .setting("SHUTDOWN__GRACE_MS", 300);
        let first = launch.start().await;
        let response = client()
            .post(first.url("/jobs"))
            .header("traceparent", caller_traceparent())
            .header("x-request-id", "submit-traced-job")
            .json(&sleep_job(json!({"duration_ms": 1_500})))
            .send()
            .await
            .expect("job submitted");
        let id = super::accepted_id(response).await;
        first.signal("TERM");
        first.exit().await;

        let second = launch
            .clone()
            .env("OTEL_SERVICE_NAME", "second-process")
            .start()
            .await;
        until_succeeded(&second, &id).await;
        second.signal("TERM");
        second.exit().await;

        let submit = collector.request_span("submit-traced-job").await;
        assert_eq!(submit.trace_id, CALLER_TRACE);
        assert_eq!(submit.parent_span_id, CALLER_SPAN);
        let execution = collector
            .wait_for("for the job's run in the second process", |span| {
                span.name == "job.execute"
                    && span.service_name == "second-process"
                    && span.attributes.get("job.id") == Some(&id)
            })
            .await;
        assert_eq!(execution.trace_id, CALLER_TRACE, "the request's trace");
        assert_eq!(
            execution.parent_span_id, submit.span_id,
            "a child of the request that submitted the job"
        );
    });
}
