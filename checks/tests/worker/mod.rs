//! The `worker` binary: SIGTERM mid-load loses no accepted job, overload is
//! refused instead of buffered, the deadline releases what runs, a
//! panicking job is retried, and the metrics agree. The durability tests
//! (crashes, replicas, pauses, outages) are in [`durability`].

mod durability;
mod traced_jobs;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sqlx::Connection;

use nebula_runtime::{
    Exit,
    testing::{
        Answer, TestDatabase, answer,
        metrics::{count, series},
        process::{Logs, unpooled_client as client},
    },
};

use crate::{
    config_errors::{case, check},
    load::{Load, Tally, assert_overload_memory_bounded, balancer, kib, rss_kib},
    support::{
        Counts, Launch, Process, WAIT_LIMIT, assert_deadline_exit, bare, launch, runtime, serial,
        summary,
    },
};
use nebula_checks::project;

/// The default launch with the `diagnostic.sleep` kind registered: the
/// job these tests submit.
fn diagnostic() -> Launch {
    launch().setting("WORKER__DIAGNOSTIC_JOBS", true)
}

/// A `diagnostic.sleep` job with `args`.
fn sleep_job(args: Value) -> Value {
    let mut job = json!({"kind": "diagnostic.sleep"});
    job["args"] = args;
    job
}

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

/// The id in a `POST /jobs` answer, which must be a 202.
async fn accepted_id(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.expect("JSON")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// A job as the database holds it.
#[derive(Debug, Clone)]
struct Stored {
    state: String,
    attempts: i64,
    rescues: i64,
}

/// Every job in `database`, by id.
async fn stored_jobs(database: &TestDatabase) -> HashMap<String, Stored> {
    let mut connection = database.connect().await;
    let rows: Vec<(String, String, i64, i64)> =
        sqlx::query_as("SELECT id, state, attempts, rescues FROM jobs")
            .fetch_all(&mut connection)
            .await
            .expect("jobs are readable");
    connection.close().await.ok();
    rows.into_iter()
        .map(|(id, state, attempts, rescues)| {
            (
                id,
                Stored {
                    state,
                    attempts,
                    rescues,
                },
            )
        })
        .collect()
}

/// Waits (bounded) until every job in `ids` has an outcome in `database`.
async fn until_finished(database: &TestDatabase, ids: &[String]) -> HashMap<String, Stored> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let stored = stored_jobs(database).await;
        let open = ids
            .iter()
            .filter(|id| {
                !stored
                    .get(*id)
                    .is_some_and(|job| job.state == "succeeded" || job.state == "failed")
            })
            .count();
        if open == 0 {
            return stored;
        }
        assert!(
            Instant::now() < deadline,
            "{open} of {} jobs still without an outcome after {WAIT_LIMIT:?}",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `job finished` events of every process, by job id, with their outcomes.
fn finished_events(logs: &[&Logs]) -> HashMap<String, Vec<String>> {
    let mut finished: HashMap<String, Vec<String>> = HashMap::new();
    for event in logs
        .iter()
        .flat_map(|logs| logs.with_message("job finished"))
    {
        let id = event["job.id"].as_str().unwrap_or_default().to_owned();
        let outcome = event["outcome"].as_str().unwrap_or_default().to_owned();
        finished.entry(id).or_default().push(outcome);
    }
    finished
}

/// The accepted jobs that did not end well: not `succeeded` in the
/// database, or logged as finished more than once. `logged_once` also
/// requires exactly one `job finished` event (a SIGKILL can cut the event
/// of an outcome already committed, so crash tests do not ask for it).
fn lost_jobs(
    accepted: &[String],
    stored: &HashMap<String, Stored>,
    events: &HashMap<String, Vec<String>>,
    logged_once: bool,
) -> Vec<String> {
    let mut lost = Vec::new();
    for id in accepted {
        let state = stored.get(id).map(|job| job.state.as_str());
        let logged = events.get(id).map_or(0, Vec::len);
        if state != Some("succeeded") || logged > 1 || (logged_once && logged != 1) {
            lost.push(format!(
                "job {id}: stored as {state:?}, logged finished {logged} times: {:?}",
                events.get(id)
            ));
        }
    }
    lost
}

/// What the fault tests ([`crate::faults`]) write on this type: jobs, run
/// with short leases so that a job whose outcome could not be written is
/// rescued soon.
pub mod writes {
    use std::sync::Arc;

    use serde_json::json;

    use super::{
        accepted_ids, finished_events, lost_jobs, sleep_job, stored_jobs, submit_load,
        until_finished,
    };
    use nebula_runtime::testing::{
        TestDatabase,
        process::{Logs, unpooled_client as client},
    };

    use crate::{
        load::{Load, Tally},
        support::{Launch, Process},
    };
    /// The table the writes go to.
    pub const TABLE: &str = "jobs";

    pub fn launch(database: &Arc<TestDatabase>) -> Launch {
        super::durability::durable(database)
    }

    pub fn load(process: &Process, clients: usize) -> Load {
        submit_load(
            process,
            clients,
            usize::MAX,
            sleep_job(json!({"duration_ms": 5})),
        )
    }

    /// The status of a read: the first accepted job's.
    pub async fn read_status(process: &Process, accepted: &[String]) -> u16 {
        let tally = Tally {
            accepted: accepted.to_vec(),
            ..Tally::default()
        };
        let id = accepted_ids(&tally)
            .into_iter()
            .next()
            .expect("a job was accepted");
        client()
            .get(process.url(&format!("/jobs/{id}")))
            .send()
            .await
            .expect("GET /jobs/{id} answers")
            .status()
            .as_u16()
    }

    /// Waits (bounded) until every accepted job has its outcome.
    pub async fn settle(_process: &Process, database: &TestDatabase, tally: &Tally) -> Vec<String> {
        until_finished(database, &accepted_ids(tally)).await;
        Vec::new()
    }

    /// The accepted jobs without exactly one recorded outcome.
    pub async fn lost(tally: &Tally, database: &TestDatabase, logs: &Logs) -> Vec<String> {
        let accepted = accepted_ids(tally);
        let stored = stored_jobs(database).await;
        lost_jobs(&accepted, &stored, &finished_events(&[logs]), true)
    }
}

#[test]
fn sigterm_mid_load_loses_no_accepted_job() {
    let _serial = serial();
    runtime().block_on(async {
        let database = Arc::new(TestDatabase::sqlite());
        let launch = diagnostic()
            .database(database.clone())
            .setting("SHUTDOWN__READINESS_DELAY_MS", 2_000);
        let process = launch.start().await;
        let load = submit_load(
            &process,
            16,
            3_000,
            sleep_job(json!({"duration_ms": 1, "cpu_rounds": 1000})),
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
                .json(&sleep_job(json!({})))
                .send()
                .await,
        );
        let tally = load.finish().await;
        lb.await.expect("balancer task");
        let late_url = process.url("/jobs");
        let exited = process.exit().await;
        let late = answer(
            client()
                .post(late_url)
                .json(&sleep_job(json!({})))
                .send()
                .await,
        );

        // What was still queued at the drain runs at the next start.
        let accepted = accepted_ids(&tally);
        let restarted = launch.start().await;
        let stored = until_finished(&database, &accepted).await;
        restarted.signal("TERM");
        let restarted = restarted.exit().await;
        let events = finished_events(&[&exited.logs, &restarted.logs]);
        let mut lost = lost_jobs(&accepted, &stored, &events, true);
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
        assert_eq!(restarted.code, Some(i32::from(Exit::Clean.code())));
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
/// jobs) agree with the answers the clients got, once the depth has been
/// refreshed from the database (every second).
async fn assert_queue_metrics_match_what_clients_saw(process: &Process, tally: &Tally) {
    let accepted = u64::try_from(tally.accepted.len()).unwrap();
    let deadline = Instant::now() + WAIT_LIMIT;
    let metrics = loop {
        let metrics = process.metrics().await;
        // The two busy workers each took one accepted job out of the queue.
        if count(&metrics, "nebula_job_queue_depth") + 2 == accepted {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "queue depth never reached the {accepted} accepted jobs less the 2 started:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(count(&metrics, "nebula_job_queue_capacity"), 64);
    let refused = series("nebula_jobs_refused_total", &[("reason", "full")]);
    assert_eq!(
        usize::try_from(count(&metrics, &refused)).unwrap(),
        tally.refused_with_retry_after,
        "every 503 is counted"
    );
}

/// Two workers busy with long jobs and room for 64 more: a flood of 5,000
/// offers gets at most 66 accepted and the rest refused with 503, memory
/// stays bounded; at the deadline the two running jobs are released, and
/// every accepted job is still queued in the database.
#[test]
fn overload_is_refused_not_buffered_and_the_deadline_releases_the_rest() {
    let _serial = serial();
    runtime().block_on(async {
        let grace = Duration::from_secs(1);
        let database = Arc::new(TestDatabase::sqlite());
        let process = diagnostic()
            .database(database.clone())
            .setting("WORKER__WORKERS", 2)
            .setting("WORKER__QUEUE_CAPACITY", 64)
            .setting("SHUTDOWN__GRACE_MS", grace.as_millis())
            .start()
            .await;
        let idle_rss = rss_kib(&process);

        let load = submit_load(
            &process,
            32,
            5_000,
            sleep_job(json!({"duration_ms": 600_000})),
        );
        let (tally, peak_rss) = load.finish_watching_memory(&process, 5_000).await;
        let accepted = accepted_ids(&tally);
        assert_queue_metrics_match_what_clients_saw(&process, &tally).await;

        let signalled = Instant::now();
        process.signal("TERM");
        let exited = process.exit().await;
        let sigterm_to_exit = exited.at - signalled;
        let stored = stored_jobs(&database).await;
        let mut lost: Vec<String> = accepted
            .iter()
            .filter(|id| stored.get(*id).is_none_or(|job| job.state != "queued"))
            .cloned()
            .collect();
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
        assert_deadline_exit(&exited, signalled, grace);
        assert!(lost.is_empty(), "not queued after the exit: {lost:#?}");
        let released = exited
            .logs
            .with_message("job cancelled at the drain deadline and released to the queue");
        assert_eq!(released.len(), 2, "the two running jobs are released");
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
        let process = diagnostic()
            .setting("WORKER__MAX_ATTEMPTS", 2)
            .setting("WORKER__BACKOFF_INITIAL_MS", 1)
            .setting("WORKER__BACKOFF_MAX_MS", 1)
            .setting("WORKER__POLL_INTERVAL_MS", 20)
            .start()
            .await;
        // Three succeed (one after a failed attempt), one fails both attempts.
        let jobs = [
            sleep_job(json!({})),
            sleep_job(json!({})),
            sleep_job(json!({"fail_attempts": 1})),
            sleep_job(json!({"fail_attempts": 2})),
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
        // Six attempts in all, each one claim.
        assert_eq!(count(&metrics, "nebula_jobs_claimed_total"), 6);

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
        let process = diagnostic()
            .setting("WORKER__BACKOFF_INITIAL_MS", 1)
            .setting("WORKER__POLL_INTERVAL_MS", 20)
            .start()
            .await;
        let response = client()
            .post(process.url("/jobs"))
            .json(&sleep_job(json!({"panic_attempts": 1})))
            .send()
            .await
            .expect("job submitted");
        let id = accepted_id(response).await;

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
fn bad_worker_and_database_settings_are_configuration_errors() {
    check(vec![
        case(
            "zero workers",
            diagnostic().setting("WORKER__WORKERS", 0),
            &["worker.workers", "between 1 and"],
        ),
        case(
            "zero queue capacity",
            diagnostic().setting("WORKER__QUEUE_CAPACITY", 0),
            &["worker.queue_capacity", "between 1 and"],
        ),
        case(
            "unsupported database",
            diagnostic().setting("DATABASE__URL", "mysql://app:hunter2@db/jobs"),
            &["database.url", "mysql://app:***@db/jobs", "postgres://"],
        ),
        case(
            "lease shorter than three heartbeats",
            diagnostic()
                .setting("WORKER__LEASE_MS", 1_000)
                .setting("WORKER__HEARTBEAT_MS", 500),
            &["worker.lease_ms", "3 times worker.heartbeat_ms"],
        ),
    ]);
}

/// `--check-config` and the `migrate` command never show the password,
/// and `migrate` prepares a database that a service with start-up
/// migration turned off then uses.
#[test]
fn migrate_prepares_the_database_and_no_output_shows_the_password() {
    let _serial = serial();
    runtime().block_on(async {
        let printed = tokio::process::Command::new(&project().binary)
            .env(
                project().var("DATABASE__URL"),
                "postgres://app:hunter2@127.0.0.1:1/jobs",
            )
            .arg("--check-config")
            .output()
            .await
            .expect("--check-config runs");
        let stdout = String::from_utf8_lossy(&printed.stdout);
        assert!(printed.status.success(), "{stdout}");
        assert!(
            stdout.contains("postgres://app:***@127.0.0.1:1/jobs"),
            "{stdout}"
        );
        assert!(!stdout.contains("hunter2"), "{stdout}");
        let (status, _, stderr) = bare()
            .setting("DATABASE__URL", "postgres://app:hunter2@127.0.0.1:1/jobs")
            .setting("TIMEOUTS__DATABASE_MS", 200)
            .args(&["migrate"])
            .run_to_exit()
            .await;
        assert!(!status.success(), "nothing listens on port 1");
        assert!(!stderr.contains("hunter2"), "{stderr}");

        let database = Arc::new(TestDatabase::sqlite());
        let migrate = diagnostic().database(database.clone()).args(&["migrate"]);
        let (status, _, stderr) = migrate.run_to_exit().await;
        assert!(status.success(), "migrate: {stderr}");
        let process = diagnostic()
            .database(database.clone())
            .setting("DATABASE__MIGRATE_ON_START", false)
            .start()
            .await;
        let response = client()
            .post(process.url("/jobs"))
            .json(&sleep_job(json!({})))
            .send()
            .await
            .expect("job submitted");
        assert_eq!(response.status(), 202);
        process.signal("TERM");
        assert_eq!(
            process.exit().await.code,
            Some(i32::from(Exit::Clean.code()))
        );
    });
}
