//! The scheduling engine in-process: configured jobs call their URL or run
//! an action on schedule, failures are logged without stopping the
//! schedule, runs are recorded and fenced in the run table (SQLite, and
//! PostgreSQL when a server is given). A service of its own runs the
//! engine: [`SchedulerService`], with one action, `test.count`.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use axum::{Router, http::StatusCode, routing::get};
use serde_json::Value;
use tokio::{net::TcpListener, sync::mpsc};

use super::{Action, Actions, Delivery, JobSettings, MIGRATIONS, RunStore, runs::Claim};
use crate::{
    BoundService, RunError, Service, Shutdown, Stopped,
    database::{self, Database, Migration},
    exit::Exit,
    prometheus,
    settings::NoSettings,
    tasks::{BoxError, Context},
    testing::{
        Engine, Logs, TestDatabase, WAIT_LIMIT, eventually,
        metrics::{count, series},
        start,
    },
    timeouts::Timeouts,
};

/// A scheduler whose one action, `test.count`, counts its runs in
/// [`COUNTED`].
struct SchedulerService;

type Settings = crate::Settings<SchedulerService>;

/// Runs of `test.count`, across every test in the process.
static COUNTED: AtomicU64 = AtomicU64::new(0);

impl Service for SchedulerService {
    const KIND: &'static str = "scheduler";
    const NAME: &'static str = "scheduling-test";
    const VERSION: &'static str = "0.0.1";
    const DESCRIPTION: &'static str = "The scheduling engine's tests";
    const ENV_PREFIX: &'static str = "SCHEDULING_TEST";
    const DEFAULT_PORT: u16 = 8080;
    const DEFAULT_DATABASE_URL: &'static str = "sqlite://data/scheduling_test.db?mode=rwc";
    const TIMEOUTS: Timeouts = Timeouts::NEBULA;
    const MIGRATIONS: &'static [&'static [Migration]] = &[MIGRATIONS];
    type Settings = super::Settings<NoSettings>;

    fn start(context: &mut Context<'_, Self>) -> Result<Router, BoxError> {
        let mut actions = Actions::new();
        actions.register("test.count", Count);
        super::start(context, &actions)
    }
}

/// `test.count`: adds one to [`COUNTED`].
struct Count;

impl Action for Count {
    async fn run(&self, _key: &str) -> Result<(), BoxError> {
        COUNTED.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Default test settings, on free loopback ports, with no jobs.
fn settings() -> Settings {
    crate::testing::settings()
}

/// A local HTTP target that answers `status` and reports each call.
async fn target(status: StatusCode) -> (String, mpsc::Receiver<()>) {
    let (calls, received) = mpsc::channel(64);
    let app = Router::new().route(
        "/hook",
        get(move || {
            let calls = calls.clone();
            async move {
                let _ = calls.try_send(());
                status
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn job(url: String) -> JobSettings {
    JobSettings {
        name: "hook".to_owned(),
        every_ms: 50,
        timeout_ms: 5_000,
        url: Some(url),
        action: None,
        delivery: Delivery::AtMostOnce,
    }
}

#[tokio::test]
async fn jobs_call_their_url_on_schedule() {
    let (logs, _guard) = Logs::capture();
    let (url, mut calls) = target(StatusCode::OK).await;
    let mut settings = settings();
    settings.service.jobs = vec![job(url)];
    let service = start(settings).await;

    for call in 1..=3 {
        tokio::time::timeout(WAIT_LIMIT, calls.recv())
            .await
            .unwrap_or_else(|_| panic!("call {call} should arrive"));
    }
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);

    let runs = logs.events("run finished");
    assert!(runs.len() >= 3, "{runs:?}");
    assert!(
        runs.iter()
            .all(|run| run["job.name"] == "hook" && run["outcome"] == "succeeded")
    );
}

#[tokio::test]
async fn failed_runs_are_logged_and_the_schedule_goes_on() {
    let (logs, _guard) = Logs::capture();
    let (url, _calls) = target(StatusCode::INTERNAL_SERVER_ERROR).await;
    let mut settings = settings();
    settings.service.jobs = vec![job(url)];
    let service = start(settings).await;

    eventually("two failed runs", || async {
        let failed = logs
            .events("run finished")
            .into_iter()
            .filter(|run| run["outcome"] == "failed")
            .count();
        (failed >= 2).then_some(())
    })
    .await;
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn every_run_is_counted_and_timed_under_its_job_name() {
    let (logs, _guard) = Logs::capture();
    let (url, mut calls) = target(StatusCode::OK).await;
    let mut settings = settings();
    // A name no other test uses: the recorder is shared by the whole process.
    let name = "metrics-probe";
    settings.service.jobs = vec![JobSettings {
        name: name.to_owned(),
        ..job(url)
    }];
    let service = start(settings).await;
    for call in 1..=2 {
        tokio::time::timeout(WAIT_LIMIT, calls.recv())
            .await
            .unwrap_or_else(|_| panic!("call {call} should arrive"));
    }
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);

    let runs = logs
        .events("run finished")
        .iter()
        .filter(|run| run["job.name"] == name && run["outcome"] == "succeeded")
        .count();
    assert!(runs >= 2, "{runs} runs");
    let text = prometheus::recorder().unwrap().render();
    let labels = [("job", name), ("outcome", "succeeded")];
    let counted = series("nebula_scheduler_runs_total", &labels);
    assert_eq!(
        count(&text, &counted),
        u64::try_from(runs).unwrap(),
        "{counted}"
    );
    let timed = series("nebula_scheduler_run_duration_seconds_count", &labels);
    assert_eq!(
        count(&text, &timed),
        u64::try_from(runs).unwrap(),
        "{timed}"
    );
}

/// Settings that keep the runs in `database`, with one job calling `url`.
fn on(database: &TestDatabase, url: String) -> Settings {
    let mut settings = settings();
    settings.database.url = database.url.clone();
    settings.service.jobs = vec![job(url)];
    settings
}

#[tokio::test]
async fn runs_are_recorded_and_listed_newest_first_on_sqlite() {
    runs_are_recorded_and_listed_newest_first(Engine::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
async fn runs_are_recorded_and_listed_newest_first_on_postgres() {
    runs_are_recorded_and_listed_newest_first(Engine::Postgres).await;
}

async fn runs_are_recorded_and_listed_newest_first(engine: Engine) {
    let database = TestDatabase::create(engine, "run_history").await;
    let (url, mut calls) = target(StatusCode::OK).await;
    let service = start(on(&database, url.clone())).await;
    for call in 1..=4 {
        tokio::time::timeout(WAIT_LIMIT, calls.recv())
            .await
            .unwrap_or_else(|_| panic!("call {call} should arrive"));
    }
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
    // The history outlives the process; this one runs nothing meanwhile.
    let mut later = on(&database, url);
    later.service.jobs[0].every_ms = 3_600_000;
    let service = start(later).await;

    let listed: Value = service
        .get("/runs?job=hook&limit=3")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runs = listed["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3, "{listed}");
    let periods: Vec<i64> = runs
        .iter()
        .map(|run| run["period_start_ms"].as_i64().unwrap())
        .collect();
    assert!(
        periods.windows(2).all(|pair| pair[0] > pair[1]),
        "{periods:?}"
    );
    assert!(periods.iter().all(|period| period % 50 == 0), "{periods:?}");
    for run in runs {
        assert_eq!(run["job"], "hook");
        assert_eq!(run["state"], "succeeded", "{run}");
        assert_eq!(run["attempt"], 1);
        assert!(
            run["replica"]
                .as_str()
                .is_some_and(|replica| !replica.is_empty())
        );
        assert!(run["duration_ms"].as_i64().is_some(), "{run}");
    }
    for (query, status) in [
        ("?job=unknown", 404),
        ("?job=hook&limit=0", 400),
        ("?job=hook&limit=101", 400),
        ("", 400),
    ] {
        let answered = service.get(&format!("/runs{query}")).await.unwrap();
        assert_eq!(answered.status(), status, "{query}");
    }
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn finished_runs_are_pruned_after_the_retention() {
    let database = TestDatabase::sqlite();
    let (url, mut calls) = target(StatusCode::OK).await;
    let mut settings = on(&database, url);
    settings.service.history_retention_ms = 200;
    let service = start(settings).await;
    let mut seen = 0;
    while seen < 20 {
        tokio::time::timeout(WAIT_LIMIT, calls.recv())
            .await
            .expect("calls keep arriving");
        seen += 1;
    }
    let listed: Value = service
        .get("/runs?job=hook&limit=100")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kept = listed["runs"].as_array().unwrap().len();
    // 200 ms of 50 ms periods, and the runs since the last prune.
    assert!(kept < 10, "{kept} of {seen} runs kept");
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

/// The claim rules on the run table itself, as two replicas see it.
#[tokio::test]
async fn claims_fence_off_a_replica_whose_lease_ran_out_on_sqlite() {
    claims_fence_off_a_replica_whose_lease_ran_out(Engine::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
async fn claims_fence_off_a_replica_whose_lease_ran_out_on_postgres() {
    claims_fence_off_a_replica_whose_lease_ran_out(Engine::Postgres).await;
}

async fn claims_fence_off_a_replica_whose_lease_ran_out(engine: Engine) {
    let test_database = TestDatabase::create(engine, "run_claims").await;
    let mut settings = settings();
    settings.database.url = test_database.url.clone();
    let database = Database::open(&settings.database, Duration::from_secs(5)).unwrap();
    database::migrate(&database, &[MIGRATIONS]).await.unwrap();
    let a = RunStore::new(database.clone(), "a".to_owned());
    let b = RunStore::new(database, "b".to_owned());
    let long = Duration::from_mins(1);
    let ran = Duration::from_millis(5);

    // One claim per period; one running run per job.
    let Claim::Won(held) = a.claim("job", 1_000, long).await.unwrap() else {
        panic!("the first claim of a period wins");
    };
    let Claim::Taken(Some(running)) = b.claim("job", 1_000, long).await.unwrap() else {
        panic!("a period is claimed once");
    };
    assert_eq!((running.replica.as_str(), running.token), ("a", 1));
    assert!(matches!(
        b.claim("job", 2_000, long).await.unwrap(),
        Claim::Taken(Some(_))
    ));
    assert_eq!(
        b.take_over("job", &running, long).await.unwrap(),
        None,
        "the lease holds"
    );
    assert!(a.finish("job", held, "succeeded", ran, None).await.unwrap());
    assert!(
        a.finish("job", held, "succeeded", ran, None).await.unwrap(),
        "a repeat is harmless"
    );
    assert_eq!(
        b.claim("job", 1_000, long).await.unwrap(),
        Claim::Taken(None)
    );

    // A lease that ran out: taken over under a new token, and the first
    // holder's late write is refused.
    let Claim::Won(late) = a.claim("job", 2_000, Duration::ZERO).await.unwrap() else {
        panic!("the next period is free");
    };
    let Claim::Taken(Some(expired)) = b.claim("job", 3_000, long).await.unwrap() else {
        panic!("the expired run still holds the job");
    };
    let taken = b
        .take_over("job", &expired, long)
        .await
        .unwrap()
        .expect("taken over");
    assert_eq!(
        (taken.period_start, taken.token, taken.attempt),
        (2_000, 2, 2)
    );
    assert!(
        !a.finish("job", late, "succeeded", ran, None).await.unwrap(),
        "fenced"
    );
    assert!(
        b.finish("job", taken, "failed", ran, Some("boom"))
            .await
            .unwrap()
    );

    // Or recorded lost, and the holder's late write refused the same way.
    let Claim::Won(lost) = a.claim("job", 3_000, Duration::ZERO).await.unwrap() else {
        panic!("the next period is free");
    };
    let Claim::Taken(Some(expired)) = b.claim("job", 4_000, long).await.unwrap() else {
        panic!("the expired run still holds the job");
    };
    assert!(b.mark_lost("job", &expired).await.unwrap());
    assert!(
        !a.finish("job", lost, "succeeded", ran, None).await.unwrap(),
        "fenced"
    );

    let history = b.history("job", 10).await.unwrap();
    let rows: Vec<(i64, &str, &str, i64)> = history
        .iter()
        .map(|run| {
            (
                run.period_start_ms,
                run.state.as_str(),
                run.replica.as_str(),
                run.attempt,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (3_000, "lost", "a", 1),
            (2_000, "failed", "b", 2),
            (1_000, "succeeded", "a", 1)
        ]
    );
    assert_eq!(history[1].error.as_deref(), Some("boom"));
}

/// An `at_least_once` run cut at the drain deadline is given back
/// unrecorded; the next replica to look runs that period again, with the
/// same `Idempotency-Key`.
#[tokio::test]
async fn an_at_least_once_run_cut_at_the_deadline_runs_again_on_the_next_replica() {
    let database = TestDatabase::sqlite();
    let (keys, mut arrived) = mpsc::channel::<String>(16);
    let (release, released) = tokio::sync::watch::channel(false);
    let app = Router::new().route(
        "/hook",
        get(move |headers: axum::http::HeaderMap| {
            let keys = keys.clone();
            let mut released = released.clone();
            async move {
                let key = headers["idempotency-key"].to_str().unwrap().to_owned();
                let _ = keys.try_send(key);
                let _ = released.wait_for(|released| *released).await;
                "done"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut settings = on(&database, url);
    settings.service.jobs[0].delivery = Delivery::AtLeastOnce;
    settings.service.jobs[0].every_ms = 200;
    settings.shutdown.grace_ms = 200;

    let first = start(settings.clone()).await;
    let cut = tokio::time::timeout(WAIT_LIMIT, arrived.recv())
        .await
        .expect("the first run calls")
        .unwrap();
    assert_eq!(first.stop().await.unwrap(), Stopped::DeadlineExceeded);

    let second = start(settings).await;
    let again = tokio::time::timeout(WAIT_LIMIT, arrived.recv())
        .await
        .expect("the next replica calls")
        .unwrap();
    assert_eq!(again, cut, "the cut period runs again first");
    release.send_replace(true);
    let period: i64 = cut.strip_prefix("hook/").unwrap().parse().unwrap();
    eventually("the period to be recorded", || async {
        let listed: Value = second
            .get("/runs?job=hook&limit=100")
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        listed["runs"]
            .as_array()?
            .iter()
            .any(|run| {
                run["period_start_ms"] == period
                    && run["state"] == "succeeded"
                    && run["attempt"] == 2
            })
            .then_some(())
    })
    .await;
    assert_eq!(second.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn a_job_runs_the_action_it_names() {
    let (logs, _guard) = Logs::capture();
    let mut settings = settings();
    settings.service.jobs = vec![JobSettings {
        name: "counted".to_owned(),
        url: None,
        action: Some("test.count".to_owned()),
        ..job(String::new())
    }];
    let before = COUNTED.load(Ordering::Relaxed);
    let service = start(settings).await;
    eventually("two runs of the action", || async {
        let runs = logs
            .events("run finished")
            .into_iter()
            .filter(|run| run["job.name"] == "counted" && run["outcome"] == "succeeded")
            .count();
        (runs >= 2).then_some(())
    })
    .await;
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
    assert!(COUNTED.load(Ordering::Relaxed) >= before + 2);
}

#[tokio::test]
async fn a_job_naming_an_action_not_registered_stops_the_start_as_bad_configuration() {
    let mut settings = settings();
    settings.service.jobs = vec![JobSettings {
        name: "typo".to_owned(),
        url: None,
        action: Some("test.cuont".to_owned()),
        ..job(String::new())
    }];
    let service = BoundService::bind(settings).await.unwrap();
    let Err(error) = service.run(Shutdown::new()).await else {
        panic!("the start should fail");
    };
    assert!(matches!(error, RunError::Start(_)), "{error:?}");
    assert_eq!(error.exit(), Exit::ConfigError);
    let message = format!("{:#}", anyhow_like(&error));
    assert_eq!(
        message,
        "cannot start the service: invalid setting `scheduler.jobs[0].action` (from the settings the service started with): no action is named \"test.cuont\"; this service has: test.count"
    );
}

/// `error` and its causes, as the binary prints them.
fn anyhow_like(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
