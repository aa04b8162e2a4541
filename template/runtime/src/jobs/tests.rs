//! The job engine in-process, on SQLite and (when a server is given) on
//! PostgreSQL: intake commits before it answers, idempotency keys, the
//! bounded queue, durable retries, the fence, the drain, kinds, and a
//! database that is locked or away. A service of its own runs the engine:
//! [`JobsService`], with the `diagnostic.sleep` kind and [`Noop`].

use std::{collections::HashMap, time::Duration};

use axum::Router;
use serde::de::IgnoredAny;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use tokio::time::Instant;

use super::{JobContext, JobError, JobId, JobKind, Kinds, MIGRATIONS, NewJob, Store};
use crate::{
    BoundService, RunError, Service, Shutdown, Stopped,
    database::{self, Database, DatabaseUrl, Migration},
    settings::NoSettings,
    tasks::{BoxError, Context},
    testing::{
        Answer, Engine, Logs, Running, TestDatabase, answer, eventually, start, start_unready,
    },
    timeouts::Timeouts,
};

/// A worker that runs the engine with [`Noop`] (and `diagnostic.sleep`
/// when its settings say so).
struct JobsService;

type Settings = crate::Settings<JobsService>;

impl Service for JobsService {
    const KIND: &'static str = "worker";
    const NAME: &'static str = "jobs-test";
    const VERSION: &'static str = "0.0.1";
    const DESCRIPTION: &'static str = "The job engine's tests";
    const ENV_PREFIX: &'static str = "JOBS_TEST";
    const DEFAULT_PORT: u16 = 8080;
    const DEFAULT_DATABASE_URL: &'static str = "sqlite://data/jobs_test.db?mode=rwc";
    const TIMEOUTS: Timeouts = Timeouts::NEBULA;
    const MIGRATIONS: &'static [&'static [Migration]] = &[MIGRATIONS];
    type Settings = super::Settings<NoSettings>;

    fn start(context: &mut Context<'_, Self>) -> Result<Router, BoxError> {
        let mut kinds = Kinds::new();
        kinds.register(Noop);
        super::start(context, kinds)
    }
}

/// `test.noop`: succeeds at once.
struct Noop;

impl JobKind for Noop {
    const NAME: &'static str = "test.noop";
    type Args = IgnoredAny;

    async fn run(&self, _args: IgnoredAny, _job: JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Default test settings, on free loopback ports.
fn settings() -> Settings {
    crate::testing::settings()
}

/// Runs an `async fn(Engine)` scenario as two tests, `sqlite` and
/// `postgres`; the second is ignored unless included (it needs a server).
macro_rules! on_both_engines {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use crate::testing::Engine;

            #[tokio::test]
            async fn sqlite() {
                super::$scenario(Engine::Sqlite).await;
            }

            #[tokio::test]
            #[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
            async fn postgres() {
                super::$scenario(Engine::Postgres).await;
            }
        }
    )*};
}

on_both_engines!(
    accepted_jobs_run_and_finish_exactly_once,
    failed_attempts_are_retried_from_the_database,
    a_repeated_idempotency_key_creates_no_second_job,
    concurrent_requests_with_one_key_on_two_replicas_create_one_job,
    an_outcome_written_again_is_found_recorded,
    a_migration_the_database_refuses_is_not_retried,
    a_full_queue_refuses_jobs_with_503,
    the_drain_leaves_queued_jobs_for_the_next_start,
    jobs_cut_at_the_deadline_are_released_without_counting_the_attempt,
    a_rescued_job_is_fenced_off_from_its_first_worker,
    a_held_lock_fails_intake_at_the_database_timeout,
    finished_jobs_are_pruned_after_the_retention,
    a_stored_job_of_a_kind_no_longer_registered_fails_once,
    a_job_of_a_kind_this_replica_does_not_run_waits_for_one_that_does,
    a_job_queued_before_kinds_existed_runs_as_the_diagnostic_kind,
);

/// Settings for `database`, with short waits so that tests are quick.
fn on(database: &TestDatabase) -> Settings {
    let mut settings = diagnostic_settings();
    settings.database.url = database.url.clone();
    settings.service.poll_interval_ms = 20;
    settings.service.backoff_initial_ms = 1;
    settings.service.backoff_max_ms = 10;
    settings
}

/// The test settings with the `diagnostic.sleep` kind registered.
fn diagnostic_settings() -> Settings {
    let mut settings = settings();
    settings.service.diagnostic_jobs = true;
    settings
}

/// A `diagnostic.sleep` job with `args`.
fn sleep_job(args: Value) -> Value {
    let mut job = json!({"kind": "diagnostic.sleep"});
    job["args"] = args;
    job
}

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

/// `GET /jobs/{id}`.
async fn status(service: &Running, id: &str) -> Value {
    let response = service.get(&format!("/jobs/{id}")).await.unwrap();
    assert_eq!(response.status(), 200, "GET /jobs/{id}");
    response.json().await.unwrap()
}

/// Waits until job `id` is in `state`; returns its status.
async fn until_state(service: &Running, id: &str, state: &str) -> Value {
    eventually(&format!("job {id} to be {state}"), || async {
        let status = status(service, id).await;
        (status["state"] == state).then_some(status)
    })
    .await
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

async fn accepted_jobs_run_and_finish_exactly_once(engine: Engine) {
    let database = TestDatabase::create(engine, "accepted_jobs_run").await;
    let (logs, _guard) = Logs::capture();
    let service = start(on(&database)).await;

    let mut accepted = Vec::new();
    for _ in 0..5 {
        accepted.push(
            submit(&service, &sleep_job(json!({"cpu_rounds": 1000})))
                .await
                .unwrap(),
        );
    }
    for id in &accepted {
        let done = until_state(&service, id, "succeeded").await;
        assert_eq!(done["attempts"], 1);
        assert!(
            done["finished_at_ms"].as_i64().unwrap() >= done["created_at_ms"].as_i64().unwrap()
        );
    }
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
    let finished = finished(&logs);
    for id in &accepted {
        assert_eq!(finished[id], ["succeeded"], "job {id} finishes once");
    }
    assert_eq!(
        finished.len(),
        accepted.len(),
        "no job finishes that was not accepted"
    );
}

async fn failed_attempts_are_retried_from_the_database(engine: Engine) {
    let database = TestDatabase::create(engine, "failed_attempts").await;
    let (logs, _guard) = Logs::capture();
    let mut settings = on(&database);
    settings.service.max_attempts = 3;
    let service = start(settings).await;

    let recovers = submit(&service, &sleep_job(json!({"fail_attempts": 2})))
        .await
        .unwrap();
    let gives_up = submit(&service, &sleep_job(json!({"fail_attempts": 9})))
        .await
        .unwrap();
    let recovered = until_state(&service, &recovers, "succeeded").await;
    assert_eq!(recovered["attempts"], 3);
    assert_eq!(recovered["last_error"], Value::Null);
    let failed = until_state(&service, &gives_up, "failed").await;
    assert_eq!(failed["attempts"], 3);
    assert_eq!(
        failed["last_error"],
        "attempt 3 failed: asked to fail by fail_attempts"
    );

    service.stop().await.unwrap();
    let finished = finished(&logs);
    assert_eq!(finished[&recovers], ["succeeded"]);
    assert_eq!(finished[&gives_up], ["failed"]);
}

async fn a_repeated_idempotency_key_creates_no_second_job(engine: Engine) {
    let database = TestDatabase::create(engine, "idempotency_key").await;
    let service = start(on(&database)).await;
    let post = |key: &'static str| {
        service
            .client
            .post(service.url("/jobs"))
            .header("idempotency-key", key)
            .json(&sleep_job(json!({})))
            .send()
    };
    let first: Value = post("order-17").await.unwrap().json().await.unwrap();
    let repeat = post("order-17").await.unwrap();
    assert_eq!(repeat.status(), 202);
    let repeat: Value = repeat.json().await.unwrap();
    assert_eq!(
        repeat["id"], first["id"],
        "a repeat answers with the first job's id"
    );
    let other: Value = post("order-18").await.unwrap().json().await.unwrap();
    assert_ne!(other["id"], first["id"]);

    let mut connection = database.connect().await;
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(jobs, 2, "two keys, two jobs");
    connection.close().await.ok();

    let too_long = "k".repeat(201);
    let refused = service
        .client
        .post(service.url("/jobs"))
        .header("idempotency-key", too_long)
        .json(&sleep_job(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    service.stop().await.unwrap();
}

/// Two replicas on one database get the same key eight times at once:
/// every request is answered 202 with one id, and one job exists.
async fn concurrent_requests_with_one_key_on_two_replicas_create_one_job(engine: Engine) {
    let database = TestDatabase::create(engine, "idempotency_race").await;
    let replicas = [start(on(&database)).await, start(on(&database)).await];
    let requests = (0..8).map(|index| {
        let replica = &replicas[index % 2];
        replica
            .client
            .post(replica.url("/jobs"))
            .header("idempotency-key", "order-42")
            .json(&sleep_job(json!({})))
            .send()
    });
    let mut ids = Vec::new();
    for response in futures_util::future::join_all(requests).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 202);
        let body: Value = response.json().await.unwrap();
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1, "one id for every request: {ids:?}");

    let mut connection = database.connect().await;
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    connection.close().await.ok();
    assert_eq!(jobs, 1, "one key, one job");
    for replica in replicas {
        replica.stop().await.unwrap();
    }
}

/// An outcome write that timed out may still have committed, and its
/// retry must then find the outcome recorded rather than report the lease
/// lost (the worker logs `job finished` on that answer). Another outcome
/// cannot replace it.
async fn an_outcome_written_again_is_found_recorded(engine: Engine) {
    let database = TestDatabase::create(engine, "outcome_again").await;
    let settings = on(&database);
    database::migrate_command(&settings).await.unwrap();
    let store =
        Store::new(Database::open(&settings.database, settings.timeouts.database()).unwrap());
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let job = NewJob {
        id: JobId::new(),
        idempotency_key: None,
        kind: "diagnostic.sleep".to_owned(),
        args: "{}".to_owned(),
        max_attempts: 5,
        traceparent: Some(traceparent.to_owned()),
    };
    store.insert_batch(&[job]).await.unwrap();
    let claimed = store
        .claim(1, Duration::from_secs(30), &["diagnostic.sleep"])
        .await
        .unwrap()
        .pop()
        .expect("the job is claimed");
    assert_eq!(
        claimed.traceparent.as_deref(),
        Some(traceparent),
        "the submitting request's trace is stored with the job"
    );

    assert!(store.succeed(&claimed).await.unwrap());
    assert!(
        store.succeed(&claimed).await.unwrap(),
        "writing the same outcome again finds it recorded"
    );
    assert!(
        !store.fail(&claimed, "late").await.unwrap(),
        "a different outcome does not replace it"
    );
    let status = store
        .status(&claimed.id.to_string())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.state, "succeeded");
    assert_eq!(status.attempts, 1);
}

/// A migration the database refuses (here, bad SQL) is reported as such,
/// so start-up stops with its error instead of retrying it as if the
/// database were away.
async fn a_migration_the_database_refuses_is_not_retried(engine: Engine) {
    const REFUSED: &[Migration] = &[Migration {
        version: 1,
        description: "refused",
        sql: "CREATE TABLE (",
    }];
    let database = TestDatabase::create(engine, "refused_migration").await;
    let settings = on(&database);
    let opened = Database::open(&settings.database, settings.timeouts.database()).unwrap();
    let error = database::migrate(&opened, &[REFUSED]).await.unwrap_err();
    assert!(!error.is_transient(), "not worth retrying: {error}");
}

/// One worker busy with an endless job and room for one waiting job:
/// further jobs are refused with 503 and `Retry-After`.
async fn a_full_queue_refuses_jobs_with_503(engine: Engine) {
    let database = TestDatabase::create(engine, "full_queue").await;
    let mut settings = on(&database);
    settings.service.workers = 1;
    settings.service.queue_capacity = 1;
    settings.shutdown.grace_ms = 300;
    let service = start(settings).await;

    let endless = sleep_job(json!({"duration_ms": 600_000}));
    let running = submit(&service, &endless).await.unwrap();
    until_state(&service, &running, "running").await;
    // The claim frees its place at once, unless the queue's count, read
    // from the database every second, raced it: then within a refresh.
    let waiting = eventually(
        "the running job's place in the queue to be free",
        || async { submit(&service, &endless).await.ok() },
    )
    .await;
    let refused = service.post_json("/jobs", &endless).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(status(&service, &waiting).await["state"], "queued");

    assert_eq!(service.stop().await.unwrap(), Stopped::DeadlineExceeded);
}

/// Shutdown stops claiming and finishes what runs; what waits stays in
/// the database, and the next start runs it.
async fn the_drain_leaves_queued_jobs_for_the_next_start(engine: Engine) {
    let database = TestDatabase::create(engine, "drain_leaves_queued").await;
    let (logs, _guard) = Logs::capture();
    let mut settings = on(&database);
    settings.service.workers = 1;
    let service = start(settings.clone()).await;

    let first = submit(&service, &sleep_job(json!({"duration_ms": 300})))
        .await
        .unwrap();
    until_state(&service, &first, "running").await;
    let waiting = [
        submit(&service, &sleep_job(json!({}))).await.unwrap(),
        submit(&service, &sleep_job(json!({}))).await.unwrap(),
    ];
    service.shutdown.request();
    let late = submit(&service, &sleep_job(json!({}))).await;
    assert!(
        matches!(late, Err(Answer::Status(503) | Answer::Refused)),
        "a job offered after the drain started: {late:?}"
    );
    assert_eq!(service.finished().await.unwrap(), Stopped::Drained);
    assert_eq!(
        finished(&logs).get(&first).map(Vec::as_slice),
        Some(["succeeded".to_owned()].as_slice())
    );

    let restarted = start(settings).await;
    for id in &waiting {
        until_state(&restarted, id, "succeeded").await;
    }
    restarted.stop().await.unwrap();
}

async fn jobs_cut_at_the_deadline_are_released_without_counting_the_attempt(engine: Engine) {
    let database = TestDatabase::create(engine, "deadline_release").await;
    let (logs, _guard) = Logs::capture();
    let mut settings = on(&database);
    settings.service.workers = 1;
    settings.shutdown.grace_ms = 300;
    let service = start(settings.clone()).await;

    let long = submit(&service, &sleep_job(json!({"duration_ms": 600_000})))
        .await
        .unwrap();
    until_state(&service, &long, "running").await;
    assert_eq!(service.stop().await.unwrap(), Stopped::DeadlineExceeded);
    assert!(
        finished(&logs).is_empty(),
        "a released job has no outcome yet"
    );
    let released = logs.events("job cancelled at the drain deadline and released to the queue");
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["job.id"], long.as_str());

    let restarted = start(settings).await;
    let again = until_state(&restarted, &long, "running").await;
    assert_eq!(again["attempts"], 1, "the released attempt is not counted");
    assert_eq!(restarted.stop().await.unwrap(), Stopped::DeadlineExceeded);
}

/// A job's lease expires under it (the test ends it by hand, as a pause or
/// a partition would): the rescuer takes the job back and another worker
/// runs it, and the first worker's late completion is refused by the
/// fence. One outcome is recorded.
async fn a_rescued_job_is_fenced_off_from_its_first_worker(engine: Engine) {
    let database = TestDatabase::create(engine, "fence").await;
    let (logs, _guard) = Logs::capture();
    let mut settings = on(&database);
    settings.service.workers = 2;
    settings.service.rescue_interval_ms = 20;
    let service = start(settings).await;

    let id = submit(&service, &sleep_job(json!({"duration_ms": 500})))
        .await
        .unwrap();
    until_state(&service, &id, "running").await;
    let mut connection = database.connect().await;
    connection
        .execute(sqlx::query("UPDATE jobs SET lease_until = 0 WHERE id = $1").bind(id.as_str()))
        .await
        .unwrap();
    connection.close().await.ok();

    let done = until_state(&service, &id, "succeeded").await;
    assert_eq!(done["rescues"], 1);
    assert_eq!(done["attempts"], 2);
    let refused = logs.events("job lease lost before its outcome was written, nothing recorded");
    assert_eq!(
        refused.len(),
        1,
        "the first attempt's write is refused: {refused:?}"
    );
    assert_eq!(refused[0]["job.id"], id.as_str());
    service.stop().await.unwrap();
    assert_eq!(finished(&logs)[&id], ["succeeded"]);
}

/// Another connection holds the write lock: intake's commit and the
/// workers' claim wait for the database's limit and fail, and intake
/// answers 503 with `Retry-After`. On PostgreSQL the statement's
/// `lock_timeout` is a timeout, logged at each call; on SQLite the lock
/// held past `busy_timeout` is a `locked` write fault, logged once, in
/// `/readyz`'s body while it lasts (still ready), and writes are refused
/// at once until a probe write succeeds. Once the lock is gone, jobs are
/// accepted and run again.
async fn a_held_lock_fails_intake_at_the_database_timeout(engine: Engine) {
    let database = TestDatabase::create(engine, "held_lock").await;
    let (logs, _guard) = Logs::capture();
    let mut settings = on(&database);
    // The engines' limit is a tenth below it: room for SQLite's busy
    // answer to come before the call's own deadline.
    settings.timeouts.database_ms = 1_000;
    settings.database.health_check_interval_ms = 50;
    let service = start(settings).await;

    let mut holder = database.connect().await;
    let lock = match engine {
        Engine::Sqlite => "BEGIN IMMEDIATE",
        Engine::Postgres => "BEGIN; LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE",
    };
    sqlx::raw_sql(lock).execute(&mut holder).await.unwrap();
    let started = Instant::now();
    let refused = service
        .post_json("/jobs", &sleep_job(json!({})))
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let timeout = Duration::from_secs(1);
    // Ten times the timeout bounds the path, whether the write waited for
    // the lock or (SQLite) the workers' claim met it first and the write
    // was refused at once.
    assert!(waited < timeout * 10, "waited {waited:?}");
    let failed = |operation: &str, kind: &str| {
        logs.events("database call failed")
            .iter()
            .chain(logs.events("database refuses writes").iter())
            .any(|event| {
                event["db.operation"] == operation
                    && (event["error.kind"] == kind || event["db.fault"] == kind)
            })
    };
    match engine {
        Engine::Postgres => {
            // The engine gives up a tenth before the 1 s timeout.
            assert!(
                waited >= database::engine_limit(timeout),
                "waited {waited:?}"
            );
            assert!(
                failed("insert_jobs", "timeout"),
                "the timeout is logged with its operation"
            );
            // The idle workers poll meanwhile: their claim meets the lock
            // as well.
            eventually("the workers' claim to time out", || async {
                failed("claim_jobs", "timeout").then_some(())
            })
            .await;
        }
        Engine::Sqlite => {
            let fault = logs.events("database refuses writes");
            assert_eq!(fault.len(), 1, "logged once: {fault:?}");
            assert_eq!(fault[0]["db.fault"], "locked");
            let ready = service.get("/readyz").await.unwrap();
            assert_eq!(
                ready.status(),
                200,
                "a write fault leaves the replica ready"
            );
            let body: Value = ready.json().await.unwrap();
            assert_eq!(body["degraded"]["database_writes"], "locked", "{body}");
            // While the fault lasts, a write is refused without waiting.
            let started = Instant::now();
            let refused = service
                .post_json("/jobs", &sleep_job(json!({})))
                .await
                .unwrap();
            assert_eq!(refused.status(), 503);
            assert!(refused.headers().contains_key("retry-after"));
            assert!(
                started.elapsed() < database::engine_limit(timeout),
                "refused at once, not after the lock wait: {:?}",
                started.elapsed()
            );
            assert_eq!(
                logs.events("database refuses writes").len(),
                1,
                "still once"
            );
        }
    }
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    holder.close().await.ok();

    let accepted = eventually("intake to accept a job again", || async {
        submit(&service, &sleep_job(json!({}))).await.ok()
    })
    .await;
    until_state(&service, &accepted, "succeeded").await;
    if engine == Engine::Sqlite {
        assert_eq!(logs.events("database takes writes again").len(), 1);
        let ready: Value = service.get("/readyz").await.unwrap().json().await.unwrap();
        assert!(ready.get("degraded").is_none(), "{ready}");
    }
    service.stop().await.unwrap();
}

/// With a retention of 1 ms, the upkeep at the next start deletes the
/// finished job: the table stays bounded.
async fn finished_jobs_are_pruned_after_the_retention(engine: Engine) {
    let database = TestDatabase::create(engine, "retention").await;
    // The first run keeps the default retention, so that its own upkeep
    // cannot prune the job before the test has seen it succeed.
    let mut settings = on(&database);
    let service = start(settings.clone()).await;
    let id = submit(&service, &sleep_job(json!({}))).await.unwrap();
    until_state(&service, &id, "succeeded").await;
    service.stop().await.unwrap();

    settings.service.retention_ms = 1;
    let restarted = start(settings).await;
    eventually("the finished job to be pruned", || async {
        let response = restarted.get(&format!("/jobs/{id}")).await.ok()?;
        (response.status() == 404).then_some(())
    })
    .await;
    restarted.stop().await.unwrap();
}

/// An unknown kind and arguments its kind refuses get 400 naming the kind
/// or the field, and nothing is stored.
#[tokio::test]
async fn unknown_and_invalid_jobs_get_clear_answers() {
    let database = TestDatabase::create(Engine::Sqlite, "invalid_jobs").await;
    let service = start(on(&database)).await;
    assert_eq!(
        service
            .refused("/jobs", &json!({"kind": "report.nightly"}), 400)
            .await,
        "unknown job kind \"report.nightly\"; this service runs: diagnostic.sleep, test.noop"
    );
    let unknown_field = service
        .refused("/jobs", &sleep_job(json!({"sleep": 1})), 400)
        .await;
    assert!(
        unknown_field.starts_with(
            "args of job kind \"diagnostic.sleep\" do not decode: unknown field `sleep`"
        ),
        "{unknown_field}"
    );
    let wrong_type = service
        .refused("/jobs", &sleep_job(json!({"duration_ms": "5s"})), 400)
        .await;
    assert!(
        wrong_type.starts_with(
            "args of job kind \"diagnostic.sleep\" do not decode: invalid type: string \"5s\""
        ),
        "{wrong_type}"
    );
    assert_eq!(
        service
            .refused("/jobs", &sleep_job(json!({"cpu_rounds": u32::MAX})), 400)
            .await,
        "args of job kind \"diagnostic.sleep\": cpu_rounds must be at most 100000000"
    );
    let without_kind = service
        .post_json("/jobs", &json!({"args": {}}))
        .await
        .unwrap();
    assert_eq!(without_kind.status(), 422);
    assert!(
        without_kind
            .text()
            .await
            .unwrap()
            .contains("missing field `kind`")
    );
    for id in ["not-a-uuid", "6f1c1d6e-0b1a-4c59-9e59-0c5d2a9e6a11"] {
        let missing = service.get(&format!("/jobs/{id}")).await.unwrap();
        assert_eq!(missing.status(), 404, "GET /jobs/{id}");
    }
    service.stop().await.unwrap();
    let mut connection = database.connect().await;
    let jobs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "no refused job is stored");
}

/// Without `worker.diagnostic_jobs` the diagnostic kind is unknown.
#[tokio::test]
async fn the_diagnostic_kind_is_registered_only_when_asked_for() {
    let service = start(settings()).await;
    assert_eq!(
        service.refused("/jobs", &sleep_job(json!({})), 400).await,
        "unknown job kind \"diagnostic.sleep\"; this service runs: test.noop"
    );
    service.stop().await.unwrap();
}

/// Stores a queued job of `kind` directly, as another release's replica
/// would have; returns its id.
async fn store_job_of_kind(settings: &Settings, kind: &str) -> String {
    database::migrate_command(settings).await.unwrap();
    let store =
        Store::new(Database::open(&settings.database, settings.timeouts.database()).unwrap());
    let id = JobId::new();
    let job = NewJob {
        id,
        idempotency_key: None,
        kind: kind.to_owned(),
        args: "{}".to_owned(),
        max_attempts: 5,
        traceparent: None,
    };
    store.insert_batch(&[job]).await.unwrap();
    id.to_string()
}

/// A job stored under a kind no replica registers any more (renamed or
/// removed) is never claimed, and fails once the grace for another
/// replica to take it has passed, naming the kind: no crash, no retry.
async fn a_stored_job_of_a_kind_no_longer_registered_fails_once(engine: Engine) {
    let database = TestDatabase::create(engine, "retired_kind").await;
    let mut settings = on(&database);
    settings.service.unknown_kind_grace_ms = 0;
    let id = store_job_of_kind(&settings, "report.retired").await;
    let (logs, _guard) = Logs::capture();
    let service = start(settings).await;
    let failed = until_state(&service, &id, "failed").await;
    assert_eq!(failed["attempts"], 0, "{failed}");
    assert_eq!(failed["kind"], "report.retired");
    assert_eq!(
        failed["last_error"],
        "unknown job kind \"report.retired\"; this service runs: diagnostic.sleep, test.noop"
    );
    service.stop().await.unwrap();
    assert_eq!(finished(&logs)[&id], ["failed"]);
}

/// A rolling update that adds a kind: a replica that does not run the
/// kind leaves its jobs queued (it runs its own meanwhile), and a replica
/// that runs it takes them.
async fn a_job_of_a_kind_this_replica_does_not_run_waits_for_one_that_does(engine: Engine) {
    let database = TestDatabase::create(engine, "kind_rollout").await;
    let mut old = on(&database);
    old.service.diagnostic_jobs = false;
    let waiting = store_job_of_kind(&old, "diagnostic.sleep").await;
    // The old replica runs a kind of its own.
    let old = start(old).await;
    let own = submit(&old, &json!({"kind": "test.noop"})).await.unwrap();
    until_state(&old, &own, "succeeded").await;
    // Claims go oldest first: had the waiting job been claimable, it would
    // have been claimed no later than the noop job.
    let still = status(&old, &waiting).await;
    assert_eq!(still["state"], "queued", "{still}");
    assert_eq!(still["attempts"], 0, "{still}");
    old.stop().await.unwrap();
    let taken = {
        let replica = start(on(&database)).await;
        let done = until_state(&replica, &waiting, "succeeded").await;
        replica.stop().await.unwrap();
        done
    };
    assert_eq!(taken["attempts"], 1, "{taken}");
}

/// A job queued by a release before job kinds (the example job's
/// arguments, no kind) gets `diagnostic.sleep` from migration 0003, whose
/// arguments those are, and runs.
async fn a_job_queued_before_kinds_existed_runs_as_the_diagnostic_kind(engine: Engine) {
    let database = TestDatabase::create(engine, "before_kinds").await;
    let settings = on(&database);
    let before_kinds: &'static [Migration] = &MIGRATIONS[..2];
    let opened = Database::open(&settings.database, settings.timeouts.database()).unwrap();
    database::migrate(&opened, &[before_kinds]).await.unwrap();
    let id = JobId::new().to_string();
    let mut connection = database.connect().await;
    sqlx::query(
        "INSERT INTO jobs (id, payload, state, run_at, created_at, updated_at)
         VALUES ($1, '{\"duration_ms\": 1}', 'queued', 0, 0, 0)",
    )
    .bind(&id)
    .execute(&mut connection)
    .await
    .unwrap();
    connection.close().await.ok();
    let service = start(settings).await;
    let done = until_state(&service, &id, "succeeded").await;
    assert_eq!(done["kind"], "diagnostic.sleep", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    service.stop().await.unwrap();
}

/// A database that does not answer at start-up: the service runs, is not
/// ready, keeps retrying and says so; liveness stays 200 and intake
/// answers 503. (Port 1 on loopback refuses connections.)
#[tokio::test]
async fn a_database_down_at_start_leaves_the_service_alive_but_not_ready() {
    let (logs, _guard) = Logs::capture();
    let mut settings = diagnostic_settings();
    settings.database.url = DatabaseUrl::new("postgres://nebula:secret@127.0.0.1:1/jobs");
    settings.timeouts.database_ms = 200;
    let service = start_unready(settings).await;

    let retries = eventually("two failed connection attempts", || async {
        let failures = logs.events("database not available yet, not ready");
        (failures.len() >= 2).then_some(failures)
    })
    .await;
    assert!(
        retries
            .iter()
            .all(|event| !event.to_string().contains("secret")),
        "{retries:?}"
    );
    let ready = service.get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["waiting_for"], json!(["database"]));
    assert_eq!(service.get("/healthz").await.unwrap().status(), 200);
    let refused = service
        .post_json("/jobs", &sleep_job(json!({})))
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

/// A service of another kind than `worker` that starts the engine.
struct Misnamed;

impl Service for Misnamed {
    const KIND: &'static str = "jobs";
    const NAME: &'static str = "misnamed";
    const VERSION: &'static str = "0.0.1";
    const DESCRIPTION: &'static str = "A service whose section is not [worker]";
    const ENV_PREFIX: &'static str = "MISNAMED";
    const DEFAULT_PORT: u16 = 8080;
    const DEFAULT_DATABASE_URL: &'static str = "sqlite://data/misnamed.db?mode=rwc";
    const TIMEOUTS: Timeouts = Timeouts::NEBULA;
    const MIGRATIONS: &'static [&'static [Migration]] = &[MIGRATIONS];
    type Settings = super::Settings<NoSettings>;

    fn start(context: &mut Context<'_, Self>) -> Result<Router, BoxError> {
        super::start(context, Kinds::new())
    }
}

/// The engine's errors name `worker.*` keys, so it refuses to run in a
/// service whose section has another name.
#[tokio::test]
async fn the_engine_runs_only_in_a_service_of_kind_worker() {
    let service = BoundService::bind(crate::testing::settings::<Misnamed>())
        .await
        .unwrap();
    let Err(RunError::Start(error)) = service.run(Shutdown::new()).await else {
        panic!("the start should fail");
    };
    assert_eq!(
        error.to_string(),
        "the job engine runs in a service of kind worker, not jobs"
    );
}
