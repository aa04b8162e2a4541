//! Scheduler replicas sharing one database, as real processes: each period
//! of a job is called once across them; a replica killed (SIGKILL) mid-run costs
//! its period as documented (recorded lost, or run again by the other);
//! a replica stopped (SIGSTOP) past its lease cannot record its late result. Each
//! runs on SQLite (two processes on one file) and on PostgreSQL when
//! `NEBULA_TEST_POSTGRES_URL` is set.
//!
//! Targets here count each call by its `Idempotency-Key` (`job/period`).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use axum::{Router, http::HeaderMap, routing::get};
use sqlx::Row;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};

use crate::{
    config_errors::config_file,
    support::{Counts, Launch, Process, WAIT_LIMIT, launch, runtime, serial, summary},
};

use nebula_runtime::{
    Exit,
    testing::{Engine, TestDatabase},
};

/// Arrivals a target keeps until a test reads them.
const ARRIVALS_KEPT: usize = 1024;

/// A target that records each call's key. Calls that arrive while `hold`
/// is set wait until it is cleared.
struct Target {
    url: String,
    keys: Arc<Mutex<Vec<String>>>,
    arrivals: mpsc::Receiver<String>,
    hold: watch::Sender<bool>,
}

impl Target {
    async fn start() -> Self {
        let keys = Arc::new(Mutex::new(Vec::new()));
        // Far more calls than any test here makes; a full channel would
        // only drop arrivals, never hold a call.
        let (arrived, arrivals) = mpsc::channel(ARRIVALS_KEPT);
        let (hold, hold_updates) = watch::channel(false);
        let recorded = keys.clone();
        let app = Router::new().route(
            "/hook",
            get(move |headers: HeaderMap| {
                let recorded = recorded.clone();
                let arrived = arrived.clone();
                let mut hold_updates = hold_updates.clone();
                async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|key| key.to_str().ok())
                        .unwrap_or("none")
                        .to_owned();
                    recorded
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(key.clone());
                    let _ = arrived.try_send(key);
                    if *hold_updates.borrow_and_update() {
                        let _ = hold_updates.wait_for(|hold| !*hold).await;
                    }
                    "done"
                }
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("target binds");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            keys,
            arrivals,
            hold,
        }
    }

    async fn next_arrival(&mut self) -> String {
        tokio::time::timeout(WAIT_LIMIT, self.arrivals.recv())
            .await
            .expect("a call arrives")
            .expect("the target runs")
    }

    /// Calls per period, by period start.
    fn calls(&self) -> BTreeMap<i64, usize> {
        let mut calls = BTreeMap::new();
        for key in self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let period = key
                .strip_prefix("hook/")
                .and_then(|period| period.parse().ok())
                .unwrap_or_else(|| panic!("a call without a period key: {key}"));
            *calls.entry(period).or_insert(0) += 1;
        }
        calls
    }
}

/// Periods between the first and the last called that nobody called.
fn missed(calls: &BTreeMap<i64, usize>, every_ms: i64) -> Vec<i64> {
    let (Some(first), Some(last)) = (calls.keys().next(), calls.keys().next_back()) else {
        return Vec::new();
    };
    (*first..=*last)
        .step_by(usize::try_from(every_ms).expect("a positive period"))
        .filter(|period| !calls.contains_key(period))
        .collect()
}

/// A scheduler on `database` with one job, `hook`, calling `target`.
fn replica(database: &Arc<TestDatabase>, target: &Target, job: &str) -> Launch {
    let config = config_file(
        &format!("replica-{}", uuid::Uuid::new_v4().simple()),
        &format!(
            "[[scheduler.jobs]]\nname = \"hook\"\nurl = \"{}\"\n{job}",
            target.url
        ),
    );
    launch()
        .database(database.clone())
        .args(&["--config", &config])
}

async fn database(engine: Engine, test: &str) -> Arc<TestDatabase> {
    Arc::new(TestDatabase::create(engine, test).await)
}

async fn stop(process: Process) {
    process.signal("TERM");
    let exited = process.exit().await;
    assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
}

/// The stored state and attempt of one period.
async fn stored_run(database: &TestDatabase, period: i64) -> (String, i64, String) {
    let mut connection = database.connect().await;
    let row = sqlx::query(
        "SELECT state, attempt, replica FROM scheduled_runs WHERE job = 'hook' AND period_start = $1",
    )
    .bind(period)
    .fetch_one(&mut connection)
    .await
    .expect("the period is stored");
    (row.get("state"), row.get("attempt"), row.get("replica"))
}

/// The process whose name the `replica` column holds (`host:pid`).
fn holder<'a>(replicas: &'a [Process], replica: &str) -> &'a Process {
    replicas
        .iter()
        .find(|process| replica.ends_with(&format!(":{}", process.pid())))
        .unwrap_or_else(|| panic!("no process is {replica}"))
}

#[test]
fn two_replicas_call_each_period_once_on_sqlite() {
    two_replicas_call_each_period_once(Engine::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
fn two_replicas_call_each_period_once_on_postgres() {
    two_replicas_call_each_period_once(Engine::Postgres);
}

fn two_replicas_call_each_period_once(engine: Engine) {
    let _serial = serial();
    runtime().block_on(async {
        let database = database(engine, "two_schedulers").await;
        let every_ms = 500;
        let mut target = Target::start().await;
        let job = format!("every_ms = {every_ms}\ntimeout_ms = 1000\n");
        let first = replica(&database, &target, &job).start().await;
        let second = replica(&database, &target, &job).start().await;
        for _ in 0..12 {
            target.next_arrival().await;
        }
        stop(first).await;
        stop(second).await;

        let calls = target.calls();
        let twice: Vec<_> = calls.iter().filter(|(_, calls)| **calls > 1).collect();
        let missed = missed(&calls, every_ms);
        summary(
            &format!("two-schedulers-{engine:?}"),
            Counts {
                offered: calls.len(),
                accepted: calls.len(),
                completed: calls.values().sum(),
                ..Counts::default()
            },
            Some(0),
            &format!(
                "periods={} twice={} missed={}",
                calls.len(),
                twice.len(),
                missed.len()
            ),
        );
        assert!(twice.is_empty(), "periods called twice: {twice:?}");
        assert!(missed.is_empty(), "periods nobody called: {missed:?}");
    });
}

/// Kills the replica that holds the run of the period `target` is called
/// for next, after a few periods, while the target holds that call;
/// returns that period and the survivor.
async fn kill_the_holder_mid_run(
    database: &TestDatabase,
    target: &mut Target,
    replicas: Vec<Process>,
) -> (i64, Process) {
    for _ in 0..2 {
        target.next_arrival().await;
    }
    target.hold.send_replace(true);
    let key = target.next_arrival().await;
    let period: i64 = key.strip_prefix("hook/").unwrap().parse().unwrap();
    let (state, _, replica) = stored_run(database, period).await;
    assert_eq!(state, "running", "the target holds the call");
    let killed = holder(&replicas, &replica).pid();
    holder(&replicas, &replica).signal("KILL");
    target.hold.send_replace(false);
    let survivor = replicas
        .into_iter()
        .find(|process| process.pid() != killed)
        .expect("two replicas");
    (period, survivor)
}

#[test]
fn a_killed_replicas_period_is_recorded_lost_at_most_once_on_sqlite() {
    a_killed_replicas_period_is_handled(Engine::Sqlite, "at_most_once");
}

#[test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
fn a_killed_replicas_period_is_recorded_lost_at_most_once_on_postgres() {
    a_killed_replicas_period_is_handled(Engine::Postgres, "at_most_once");
}

#[test]
fn a_killed_replicas_period_runs_again_at_least_once_on_sqlite() {
    a_killed_replicas_period_is_handled(Engine::Sqlite, "at_least_once");
}

#[test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
fn a_killed_replicas_period_runs_again_at_least_once_on_postgres() {
    a_killed_replicas_period_is_handled(Engine::Postgres, "at_least_once");
}

/// Periods of 1.5 s and a lease of 1.2 s (a 300 ms timeout plus three
/// 300 ms database timeouts): the lease runs out before the next period,
/// so the survivor misses nothing else.
fn a_killed_replicas_period_is_handled(engine: Engine, delivery: &str) {
    let _serial = serial();
    runtime().block_on(async {
        let database = database(engine, &format!("killed_{delivery}")).await;
        let every_ms = 1_500;
        let mut target = Target::start().await;
        let job = format!("every_ms = {every_ms}\ntimeout_ms = 300\ndelivery = \"{delivery}\"\n");
        let launch = |target: &Target| {
            replica(&database, target, &job).setting("TIMEOUTS__DATABASE_MS", 300)
        };
        let replicas = vec![launch(&target).start().await, launch(&target).start().await];
        let (killed_period, survivor) =
            kill_the_holder_mid_run(&database, &mut target, replicas).await;
        while target.next_arrival().await != format!("hook/{}", killed_period + 3 * every_ms) {}
        stop(survivor).await;

        let calls = target.calls();
        let twice: Vec<_> = calls.iter().filter(|(_, calls)| **calls > 1).collect();
        let missed = missed(&calls, every_ms);
        let (state, attempt, _) = stored_run(&database, killed_period).await;
        summary(
            &format!("scheduler-replica-killed-{delivery}-{engine:?}"),
            Counts {
                offered: calls.len(),
                accepted: calls.len(),
                completed: calls.values().sum(),
                lost: missed.len(),
                ..Counts::default()
            },
            Some(0),
            &format!(
                "killed_period_state={state} attempt={attempt} twice={}",
                twice.len()
            ),
        );
        assert!(missed.is_empty(), "periods nobody called: {missed:?}");
        if delivery == "at_most_once" {
            assert!(twice.is_empty(), "periods called twice: {twice:?}");
            assert_eq!((state.as_str(), attempt), ("lost", 1));
        } else {
            assert_eq!(
                twice,
                [(&killed_period, &2)],
                "the killed period runs again, once"
            );
            assert_eq!((state.as_str(), attempt), ("succeeded", 2));
        }
    });
}

#[test]
fn a_paused_replicas_late_result_is_refused_on_sqlite() {
    a_paused_replicas_late_result_is_refused(Engine::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
fn a_paused_replicas_late_result_is_refused_on_postgres() {
    a_paused_replicas_late_result_is_refused(Engine::Postgres);
}

/// The replica running a period is stopped (SIGSTOP) past its lease; the
/// other takes the period over and records it. Resumed, the first one's
/// result is refused by the fence and logged.
fn a_paused_replicas_late_result_is_refused(engine: Engine) {
    let _serial = serial();
    runtime().block_on(async {
        let database = database(engine, "paused_scheduler").await;
        let mut target = Target::start().await;
        // A lease of 3.9 s: a 3 s timeout, which the held call must not
        // reach before the test stops its replica, plus three 300 ms
        // database timeouts.
        let job = "every_ms = 5000\ntimeout_ms = 3000\ndelivery = \"at_least_once\"\n";
        let launch = || replica(&database, &target, job).setting("TIMEOUTS__DATABASE_MS", 300);
        let replicas = vec![launch().start().await, launch().start().await];
        target.next_arrival().await;
        target.hold.send_replace(true);
        let key = target.next_arrival().await;
        let period: i64 = key.strip_prefix("hook/").unwrap().parse().unwrap();
        let (_, _, replica) = stored_run(&database, period).await;
        let paused = holder(&replicas, &replica);
        paused.signal("STOP");
        // Its call is answered now, but it cannot read the answer; the
        // other replica's call for the period is not held.
        target.hold.send_replace(false);
        let deadline = tokio::time::Instant::now() + WAIT_LIMIT;
        while stored_run(&database, period).await.0 == "running" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the period is never taken over"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        paused.signal("CONT");
        let refused = paused
            .wait_for_event("the late result to be refused", |event| {
                event["message"]
                    .as_str()
                    .is_some_and(|message| message.starts_with("run result refused"))
            })
            .await;
        let (state, attempt, recorded_by) = stored_run(&database, period).await;
        for process in replicas {
            stop(process).await;
        }
        assert_eq!(refused["period_start_ms"], period);
        assert_eq!((state.as_str(), attempt), ("succeeded", 2));
        assert_ne!(recorded_by, replica, "the other replica recorded it");
        assert_eq!(target.calls()[&period], 2);
    });
}
