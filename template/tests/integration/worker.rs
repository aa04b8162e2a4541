//! The `worker` type: intake, the bounded queue, retries, and the drain.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::support::{Answer, Logs, Running, answer, eventually, settings, start};

use {{crate_name}}::Stopped;

/// Submits a job; returns its id when accepted, or the refusal.
async fn submit(service: &Running, job: &Value) -> Result<String, Answer> {
    match service.post_json("/jobs", job).await {
        Ok(response) if response.status() == 202 => {
            let body: Value = response.json().await.unwrap();
            Ok(body["id"].as_str().unwrap().to_owned())
        }
        other => Err(answer(other)),
    }
}

/// `job finished` events by job id, with their outcome.
fn finished(logs: &Logs) -> HashMap<String, Vec<String>> {
    let mut outcomes: HashMap<String, Vec<String>> = HashMap::new();
    for event in logs.events("job finished") {
        let id = event["job.id"].as_str().unwrap().to_owned();
        outcomes
            .entry(id)
            .or_default()
            .push(event["outcome"].as_str().unwrap().to_owned());
    }
    outcomes
}

fn assert_each_finished_once(logs: &Logs, accepted: &[String], outcome: &str) {
    let finished = finished(logs);
    for id in accepted {
        assert_eq!(
            finished.get(id).map(Vec::as_slice),
            Some([outcome.to_owned()].as_slice()),
            "job {id} should finish exactly once as {outcome}; all: {finished:?}"
        );
    }
    assert_eq!(
        finished.len(),
        accepted.len(),
        "no job finishes that was not accepted"
    );
}

#[tokio::test]
async fn accepted_jobs_run_and_finish_exactly_once() {
    let (logs, _guard) = Logs::capture();
    let service = start(settings()).await;

    let mut accepted = Vec::new();
    for _ in 0..5 {
        accepted.push(
            submit(&service, &json!({"cpu_rounds": 1000}))
                .await
                .unwrap(),
        );
    }
    eventually("5 jobs to finish", || async {
        (finished(&logs).len() == 5).then_some(())
    })
    .await;

    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
    assert_each_finished_once(&logs, &accepted, "succeeded");
}

#[tokio::test]
async fn failed_attempts_are_retried() {
    let (logs, _guard) = Logs::capture();
    let mut settings = settings();
    settings.worker.backoff_initial_ms = 1;
    let service = start(settings).await;

    let id = submit(&service, &json!({"fail_attempts": 2}))
        .await
        .unwrap();
    let event = eventually("the job to finish", || async {
        logs.events("job finished").into_iter().next()
    })
    .await;
    assert_eq!(event["job.id"], id.as_str());
    assert_eq!(event["outcome"], "succeeded");
    assert_eq!(event["attempts"], 3);

    service.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_jobs_are_refused_with_a_json_error() {
    let service = start(settings()).await;

    let unknown_field = service
        .post_json("/jobs", &json!({"sleep": 1}))
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 422);
    let too_heavy = service
        .post_json("/jobs", &json!({"cpu_rounds": u32::MAX}))
        .await
        .unwrap();
    assert_eq!(too_heavy.status(), 422);
    assert!(too_heavy.json::<Value>().await.unwrap()["error"].is_string());

    service.stop().await.unwrap();
}

/// One worker and room for one queued job, and jobs that outlast the test:
/// while the worker is busy the queue fills and further jobs are refused
/// with 503 and `Retry-After`. Every accepted job still ends in exactly one
/// `job finished` event, here as `abandoned` at the drain deadline.
#[tokio::test]
async fn a_full_queue_refuses_jobs_and_accepted_ones_still_finish_once() {
    let (logs, _guard) = Logs::capture();
    let mut settings = settings();
    settings.worker.workers = 1;
    settings.worker.queue_capacity = 1;
    settings.shutdown.grace_ms = 300;
    let service = start(settings).await;

    let endless = json!({"duration_ms": 600_000});
    let mut accepted = Vec::new();
    let mut refusals = Vec::new();
    for _ in 0..3 {
        match service.post_json("/jobs", &endless).await.unwrap() {
            response if response.status() == 202 => {
                let body: Value = response.json().await.unwrap();
                accepted.push(body["id"].as_str().unwrap().to_owned());
            }
            response => refusals.push(response),
        }
    }
    // The worker holds at most one job and the queue one more.
    assert!(!refusals.is_empty(), "three jobs cannot all fit");
    for refusal in &refusals {
        assert_eq!(refusal.status(), 503);
        assert_eq!(refusal.headers()["retry-after"], "1");
    }

    assert_eq!(service.stop().await.unwrap(), Stopped::DeadlineExceeded);
    assert_each_finished_once(&logs, &accepted, "abandoned");
}

#[tokio::test]
async fn the_drain_finishes_accepted_jobs_and_refuses_new_ones() {
    let (logs, _guard) = Logs::capture();
    let mut settings = settings();
    settings.worker.workers = 1;
    let service = start(settings).await;

    let mut accepted = Vec::new();
    for _ in 0..3 {
        accepted.push(
            submit(&service, &json!({"duration_ms": 200}))
                .await
                .unwrap(),
        );
    }
    service.shutdown.request();
    let late = submit(&service, &json!({})).await;
    assert!(
        matches!(late, Err(Answer::Status(503) | Answer::Refused)),
        "a job offered after the drain started: {late:?}"
    );

    assert_eq!(service.finished().await.unwrap(), Stopped::Drained);
    assert_each_finished_once(&logs, &accepted, "succeeded");
}
#[tokio::test]
async fn jobs_left_at_the_deadline_are_abandoned_and_logged() {
    let (logs, _guard) = Logs::capture();
    let mut settings = settings();
    settings.worker.workers = 1;
    settings.shutdown.grace_ms = 300;
    let service = start(settings).await;

    let long = json!({"duration_ms": 600_000});
    let accepted = vec![
        submit(&service, &long).await.unwrap(),
        submit(&service, &long).await.unwrap(),
    ];

    assert_eq!(service.stop().await.unwrap(), Stopped::DeadlineExceeded);
    assert_each_finished_once(&logs, &accepted, "abandoned");
}
