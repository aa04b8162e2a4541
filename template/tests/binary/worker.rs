//! The `worker` binary under load: SIGTERM mid-load loses no accepted job,
//! overload is refused instead of buffered, the deadline abandons what is
//! left and says so, and a panicking job is retried.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    config_errors::{case, check},
    load::{Load, Tally, balancer},
    metrics_text::{count, series},
    support::{
        Answer, Counts, Launch, Logs, Process, answer, assert_deadline_exit,
        assert_overload_memory_bounded, client, kib, runtime, serial, summary,
    },
};

use {{crate_name}}::Exit;

/// Starts clients that submit `job` to `/jobs`.
fn submit_load(process: &Process, clients: usize, limit: usize, job: Value) -> Load {
    let url = process.url("/jobs");
    Load::start(clients, limit, move |http| http.post(&url).json(&job))
}

/// Ids of the accepted jobs, from the 202 bodies.
fn accepted_ids(tally: &Tally) -> Vec<String> {
    tally
        .accepted
        .iter()
        .map(|body| {
            let body: Value = serde_json::from_str(body).expect("202 body is JSON");
            body["id"].as_str().expect("202 body has an id").to_owned()
        })
        .collect()
}

/// The accepted jobs that did not end in exactly one `job finished` event
/// with an allowed outcome (lost, or run twice), each with what happened.
/// Fails if a job finished that was never accepted.
fn lost_jobs(logs: &Logs, accepted: &[String], allowed: &[&str]) -> Vec<String> {
    let mut finished: HashMap<String, Vec<String>> = HashMap::new();
    for event in logs.with_message("job finished") {
        let id = event["job.id"].as_str().unwrap_or_default().to_owned();
        let outcome = event["outcome"].as_str().unwrap_or_default().to_owned();
        finished.entry(id).or_default().push(outcome);
    }
    let mut lost = Vec::new();
    for id in accepted {
        match finished.remove(id).as_deref() {
            Some([outcome]) if allowed.contains(&outcome.as_str()) => {}
            other => lost.push(format!(
                "job {id} finished as {other:?}, expected once as one of {allowed:?}"
            )),
        }
    }
    assert!(
        finished.is_empty(),
        "jobs finished that were never accepted: {finished:?}"
    );
    lost
}

#[test]
fn sigterm_mid_load_loses_no_accepted_job() {
    let _serial = serial();
    runtime().block_on(async {
        let process = Launch::default()
            .setting("SHUTDOWN__READINESS_DELAY_MS", 2_000)
            .start()
            .await;
        let load = submit_load(
            &process,
            16,
            3_000,
            json!({"duration_ms": 1, "cpu_rounds": 1000}),
        );
        let lb = balancer(process.url("/readyz"), load.stop.clone());

        load.wait_for_offers(1_500).await;
        process.signal("TERM");
        process
            .wait_for_event("the drain to start", |event| event["phase"] == "readiness")
            .await;
        let after_signal = answer(
            client()
                .post(process.url("/jobs"))
                .json(&json!({}))
                .send()
                .await,
        );
        let tally = load.finish().await;
        lb.await.expect("balancer task");
        let late_url = process.url("/jobs");
        let exited = process.exit().await;
        let late = answer(client().post(late_url).json(&json!({})).send().await);

        let accepted = accepted_ids(&tally);
        let mut lost = lost_jobs(&exited.logs, &accepted, &["succeeded"]);
        lost.extend(tally.broken.iter().cloned());
        summary(
            "sigterm-mid-load",
            Counts {
                offered: tally.offered(),
                accepted: accepted.len(),
                completed: accepted.len().saturating_sub(lost.len()),
                refused: tally.refused(),
                lost: lost.len(),
            },
            exited.code,
            &format!("drain_ms={}", exited.waited.as_millis()),
        );
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        assert!(lost.is_empty(), "lost work: {lost:#?}");
        assert!(
            matches!(after_signal, Answer::Status(503) | Answer::Refused),
            "an offer after the drain started got {after_signal:?}"
        );
        assert_eq!(late, Answer::Refused, "an offer after exit");
        assert_eq!(
            tally.refused_without_retry_after, 0,
            "every 503 carries Retry-After"
        );
    });
}

/// The queue series after a flood (capacity 64, 2 workers busy with long
/// jobs) agree with the answers the clients got.
fn assert_queue_metrics_match_what_clients_saw(metrics: &str, tally: &Tally) {
    assert_eq!(count(metrics, "nebula_job_queue_capacity"), 64);
    // Each busy worker took one accepted job out of the queue.
    let waiting = count(metrics, "nebula_job_queue_depth");
    let accepted = u64::try_from(tally.accepted.len()).unwrap();
    assert!(
        waiting <= 64 && waiting <= accepted && waiting + 2 >= accepted,
        "queue depth {waiting}: the {accepted} accepted jobs less the (up to 2) started"
    );
    let refused = series("nebula_jobs_refused_total", &[("reason", "full")]);
    assert_eq!(
        usize::try_from(count(metrics, &refused)).unwrap(),
        tally.refused_with_retry_after,
        "every 503 is counted"
    );
}

/// Two workers busy with long jobs and room for 64 more: a flood of 5,000
/// offers gets at most 66 accepted and the rest refused with 503, memory
/// stays bounded, and at the deadline every accepted job is abandoned,
/// logged, and the exit code says so.
#[test]
fn overload_is_refused_not_buffered_and_the_deadline_abandons_the_rest() {
    let _serial = serial();
    runtime().block_on(async {
        let grace = Duration::from_secs(1);
        let process = Launch::default()
            .setting("WORKER__WORKERS", 2)
            .setting("WORKER__QUEUE_CAPACITY", 64)
            .setting("SHUTDOWN__GRACE_MS", grace.as_millis())
            .start()
            .await;
        let idle_rss = process.rss_kib();

        let load = submit_load(&process, 32, 5_000, json!({"duration_ms": 600_000}));
        let (tally, peak_rss) = load.finish_watching_memory(&process, 5_000).await;
        let accepted = accepted_ids(&tally);
        let metrics = process.metrics().await;

        let signalled = Instant::now();
        process.signal("TERM");
        let exited = process.exit().await;
        let sigterm_to_exit = exited.at - signalled;
        let mut lost = lost_jobs(&exited.logs, &accepted, &["abandoned"]);
        lost.extend(tally.broken.iter().cloned());
        summary(
            "overload",
            Counts {
                offered: tally.offered(),
                accepted: accepted.len(),
                completed: 0,
                refused: tally.refused(),
                lost: lost.len(),
            },
            exited.code,
            &format!(
                "idle_rss_kib={} peak_rss_kib={} sigterm_to_exit_ms={}",
                kib(idle_rss),
                kib(peak_rss),
                sigterm_to_exit.as_millis()
            ),
        );
        assert!(
            (64..=66).contains(&accepted.len()),
            "accepted {} jobs; the queue (64) plus the busy workers (2) bound it",
            accepted.len()
        );
        assert_eq!(
            tally.refused_with_retry_after,
            5_000 - accepted.len(),
            "the excess gets 503 + Retry-After"
        );
        assert_overload_memory_bounded(peak_rss);
        assert_queue_metrics_match_what_clients_saw(&metrics, &tally);
        assert_deadline_exit(&exited, signalled, grace);
        assert!(lost.is_empty(), "lost work: {lost:#?}");
        assert_eq!(
            exited
                .logs
                .with_message("drain deadline exceeded, cancelling remaining work")
                .len(),
            1
        );
    });
}

#[test]
fn job_outcomes_failed_attempts_and_durations_are_counted() {
    let _serial = serial();
    runtime().block_on(async {
        let process = Launch::default()
            .setting("WORKER__MAX_ATTEMPTS", 2)
            .setting("WORKER__BACKOFF_INITIAL_MS", 1)
            .setting("WORKER__BACKOFF_MAX_MS", 1)
            .start()
            .await;
        // Three succeed (one after a failed attempt), one fails both attempts.
        let jobs = [
            json!({}),
            json!({}),
            json!({"fail_attempts": 1}),
            json!({"fail_attempts": 2}),
        ];
        for job in &jobs {
            let response = client()
                .post(process.url("/jobs"))
                .json(job)
                .send()
                .await
                .expect("job submitted");
            assert_eq!(response.status(), 202);
        }
        let finished = |event: &Value| event["message"] == "job finished";
        process
            .wait_for_event("every job to finish", |_| {
                process
                    .logs
                    .all()
                    .iter()
                    .filter(|event| finished(event))
                    .count()
                    == jobs.len()
            })
            .await;

        let metrics = process.metrics().await;
        let by_outcome =
            |name: &str, outcome: &str| count(&metrics, &series(name, &[("outcome", outcome)]));
        assert_eq!(by_outcome("nebula_jobs_total", "succeeded"), 3);
        assert_eq!(by_outcome("nebula_jobs_total", "failed"), 1);
        assert_eq!(
            by_outcome("nebula_job_duration_seconds_count", "succeeded"),
            3
        );
        assert_eq!(by_outcome("nebula_job_duration_seconds_count", "failed"), 1);
        let errors = series("nebula_job_attempt_failures_total", &[("kind", "error")]);
        assert_eq!(count(&metrics, &errors), 3);
        assert_eq!(count(&metrics, "nebula_job_queue_depth"), 0);

        process.signal("TERM");
        let exited = process.exit().await;
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        summary(
            "job-metrics",
            Counts {
                offered: jobs.len(),
                accepted: jobs.len(),
                completed: jobs.len(),
                ..Counts::default()
            },
            exited.code,
            "",
        );
    });
}

#[test]
fn a_panicking_job_is_logged_with_its_id_and_retried() {
    let _serial = serial();
    runtime().block_on(async {
        let process = Launch::default()
            .setting("WORKER__BACKOFF_INITIAL_MS", 1)
            .start()
            .await;
        let response = client()
            .post(process.url("/jobs"))
            .json(&json!({"panic_attempts": 1}))
            .send()
            .await
            .expect("job submitted");
        assert_eq!(response.status(), 202);
        let id = response.json::<Value>().await.expect("JSON")["id"]
            .as_str()
            .expect("id")
            .to_owned();

        let finished = process
            .wait_for_event("the job to finish", |event| {
                event["message"] == "job finished"
            })
            .await;
        assert_eq!(finished["job.id"], id.as_str());
        assert_eq!(finished["outcome"], "succeeded");
        assert_eq!(finished["attempts"], 2);
        let panic = process
            .wait_for_event("the panic to be logged", |event| {
                event["message"] == "panic"
            })
            .await;
        assert_eq!(
            panic["span"]["job.id"],
            id.as_str(),
            "the panic is logged with the job id: {panic}"
        );

        process.signal("TERM");
        let exited = process.exit().await;
        assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
        summary(
            "panicking-job",
            Counts {
                offered: 1,
                accepted: 1,
                completed: 1,
                ..Counts::default()
            },
            exited.code,
            "",
        );
    });
}

#[test]
fn zero_workers_or_queue_capacity_is_a_configuration_error() {
    check(vec![
        case(
            "zero workers",
            Launch::default().setting("WORKER__WORKERS", 0),
            &["worker.workers", "between 1 and"],
        ),
        case(
            "zero queue capacity",
            Launch::default().setting("WORKER__QUEUE_CAPACITY", 0),
            &["worker.queue_capacity", "between 1 and"],
        ),
    ]);
}
