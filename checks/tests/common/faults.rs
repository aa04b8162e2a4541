//! The database's own faults, met by a running service under load: a full
//! disk, a file it cannot write, a write lock held by another process, and
//! PostgreSQL connections killed mid-transaction. While each lasts, writes
//! are answered 503 with `Retry-After` (never 500), reads still work, the
//! process stays up and ready, and the fault is logged once rather than
//! once per request. Each test ends with the fault cleared and the service
//! taking writes again without a restart, and everything it acknowledged
//! stored (for the worker: every 202-accepted job with exactly one recorded
//! outcome).
//!
//! The SQLite tests put the database on a tmpfs they mount, which needs
//! root: they are `#[ignore]`d, and the template's CI runs them as root
//! (`cargo test --test binary -- --ignored faults::`).

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use serde_json::Value;
use sqlx::Connection;
use tempfile::TempDir;

use crate::{
    load::{Load, Tally},
    support::{Counts, Process, WAIT_LIMIT, runtime, serial, summary},
};

use crate::writes;

use nebula_runtime::{
    Exit,
    testing::{
        Answer, Engine, TestDatabase, answer,
        metrics::{sample, series},
        process::{Logs, unpooled_client as client},
    },
};

/// A tmpfs mounted on a temporary folder for one test; unmounted on drop.
struct Tmpfs {
    folder: TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let folder = tempfile::tempdir().expect("temporary folder");
        let tmpfs = Self { folder };
        tmpfs.mount_command(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]);
        tmpfs
    }

    fn path(&self) -> &Path {
        self.folder.path()
    }

    /// Remounts it read-only, or writable again.
    fn remount(&self, read_only: bool) {
        let options = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        self.mount_command(&["-o", options]);
    }

    fn mount_command(&self, args: &[&str]) {
        let output = Command::new("mount")
            .args(args)
            .arg(self.path())
            .output()
            .expect("`mount` runs");
        assert!(
            output.status.success(),
            "mount {args:?} {} failed (it needs root): {}",
            self.path().display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Fills the filesystem of `folder` with a file until no room is left;
/// returns the file.
fn fill(folder: &Path) -> PathBuf {
    let path = folder.join("filler");
    let mut file = fs::File::create(&path).expect("filler file");
    let chunk = vec![0_u8; 64 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
            Err(error) => panic!("filling {}: {error}", path.display()),
        }
    }
    // The last bytes of a partial page.
    while file.write(&[0]).is_ok_and(|written| written == 1) {}
    path
}

/// `/readyz`'s status and body.
async fn readyz(process: &Process) -> (u16, Value) {
    let response = client()
        .get(process.url("/readyz"))
        .send()
        .await
        .expect("/readyz answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("/readyz body is JSON"))
}

/// Waits (bounded) until `/readyz` names `fault` as the database's write
/// fault (`None`: names none); asserts it stays 200 meanwhile.
async fn until_write_fault(process: &Process, fault: Option<&str>) {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let (status, body) = readyz(process).await;
        assert_eq!(
            status, 200,
            "a write fault leaves the replica ready: {body}"
        );
        if body["degraded"]["database_writes"].as_str() == fault {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never named {fault:?} as the write fault: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `nebula_database_write_fault` sample for `fault`.
async fn write_fault_gauge(process: &Process, fault: &str) -> Option<f64> {
    let text = process.metrics().await;
    sample(
        &text,
        &series("nebula_database_write_fault", &[("fault", fault)]),
    )
}

/// The fault's log lines: one when it started, naming `fault`, and one
/// when it ended, however many requests it refused meanwhile. Read from an
/// exited process's logs: a running one may not have written the last
/// line yet when `/readyz` already shows the fault ended.
fn assert_logged_once(logs: &Logs, fault: &str) {
    let started = logs.with_message("database refuses writes");
    let ended = logs.with_message("database takes writes again");
    assert_eq!(started.len(), 1, "one start logged: {started:#?}");
    assert_eq!(started[0]["db.fault"], fault, "{started:#?}");
    assert_eq!(ended.len(), 1, "one end logged: {ended:#?}");
    assert_eq!(ended[0]["db.fault"], fault, "{ended:#?}");
}

/// Checks what clients saw while a fault came and went: 2xx or 503 with
/// `Retry-After`, nothing else.
fn assert_only_accepted_or_retryable(tally: &Tally) {
    assert!(
        tally.broken.is_empty(),
        "answers other than 2xx or 503: {:?}",
        tally.broken
    );
    assert_eq!(
        tally.refused_without_retry_after, 0,
        "every 503 has Retry-After"
    );
}

/// Ends the test: the service takes writes again without a restart, every
/// acknowledged write is kept, and it exits cleanly. Returns the exited
/// process's logs, all of them read.
async fn assert_whole_again(
    process: Process,
    database: &TestDatabase,
    load: Load,
    scenario: &str,
) -> Logs {
    let accepted_before = load.accepted();
    load.wait_for_accepted(accepted_before + 20).await;
    load.stop.store(true, Ordering::SeqCst);
    let tally = load.finish().await;
    assert_only_accepted_or_retryable(&tally);
    let unsettled = writes::settle(&process, database, &tally).await;
    process.signal("TERM");
    let exited = process.exit().await;
    let mut lost = unsettled;
    lost.extend(writes::lost(&tally, database, &exited.logs).await);
    summary(
        scenario,
        Counts {
            offered: tally.offered(),
            accepted: tally.accepted.len(),
            completed: tally.accepted.len() - lost.len(),
            refused: tally.refused(),
            lost: lost.len(),
        },
        exited.code,
        "",
    );
    assert!(lost.is_empty(), "lost work: {lost:#?}");
    assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));
    exited.logs
}

/// The SQLite file's volume fills up while clients write: writes get 503
/// with `Retry-After` and the fault shows in `/readyz` and the gauge; once
/// room is freed the service takes writes again by itself.
#[test]
#[ignore = "mounts a tmpfs (needs root); the template's CI runs it"]
fn tmpfs_sqlite_on_a_full_disk_answers_503_and_heals_when_room_is_freed() {
    let _serial = serial();
    runtime().block_on(async {
        let volume = Tmpfs::mount("16m");
        let database = Arc::new(TestDatabase::sqlite_in(volume.path()));
        let process = writes::launch(&database)
            .setting("DATABASE__HEALTH_CHECK_INTERVAL_MS", 100)
            .start()
            .await;
        let load = writes::load(&process, 8);
        load.wait_for_accepted(100).await;

        let filler = fill(volume.path());
        until_write_fault(&process, Some("disk_full")).await;
        assert_eq!(write_fault_gauge(&process, "disk_full").await, Some(1.0));
        let refused_before = load.refused_with_retry_after();
        load.wait_for_refusals(refused_before + 100).await;
        assert_eq!(
            answer(client().get(process.url("/healthz")).send().await),
            Answer::Status(200)
        );
        assert_eq!(
            writes::read_status(&process, &load.accepted_bodies()).await,
            200,
            "reads work on a full disk"
        );

        fs::remove_file(&filler).expect("the filler is removed");
        until_write_fault(&process, None).await;
        assert_eq!(write_fault_gauge(&process, "disk_full").await, Some(0.0));
        let logs = assert_whole_again(process, &database, load, "sqlite-disk-full").await;
        assert_logged_once(&logs, "disk_full");
    });
}

/// The SQLite file sits on a volume mounted read-only before the service
/// starts: it starts, is ready, serves reads, and answers writes with 503;
/// once the volume is writable again, writes work without a restart.
#[test]
#[ignore = "mounts a tmpfs (needs root); the template's CI runs it"]
fn tmpfs_sqlite_that_cannot_be_written_from_the_start_serves_reads_and_heals() {
    let _serial = serial();
    runtime().block_on(async {
        let volume = Tmpfs::mount("16m");
        let database = Arc::new(TestDatabase::sqlite_in(volume.path()));
        let launch = writes::launch(&database).setting("DATABASE__HEALTH_CHECK_INTERVAL_MS", 100);
        // A first run creates the schema and stores some work, and ends
        // as a process does when its node is lost. SQLite's `-wal` and
        // `-shm` files stay, as they do whenever the volume turns
        // read-only under a running service: a WAL database closed
        // cleanly cannot be opened on a read-only volume at all (SQLite
        // needs to create them), and the service stays unready instead.
        let first = launch.start().await;
        let load = writes::load(&first, 4);
        load.wait_for_accepted(20).await;
        load.stop.store(true, Ordering::SeqCst);
        let stored = load.finish().await;
        assert!(writes::settle(&first, &database, &stored).await.is_empty());
        first.signal("KILL");
        first.exit().await;

        volume.remount(true);
        let process = launch.start().await;
        let load = writes::load(&process, 4);
        until_write_fault(&process, Some("read_only")).await;
        load.wait_for_refusals(50).await;
        assert_eq!(load.accepted(), 0, "nothing is acknowledged unstored");
        assert_eq!(
            writes::read_status(&process, &stored.accepted).await,
            200,
            "reads work on a read-only volume"
        );

        volume.remount(false);
        until_write_fault(&process, None).await;
        let logs = assert_whole_again(process, &database, load, "sqlite-read-only").await;
        assert_logged_once(&logs, "read_only");
    });
}

/// Another process takes SQLite's write lock and holds it past
/// `busy_timeout` while clients write: writes get 503 with `Retry-After`,
/// the `locked` fault is logged once and shown in `/readyz`, and once the
/// lock is released writes work again.
#[test]
fn sqlite_write_lock_held_by_another_process_answers_503_until_released() {
    let _serial = serial();
    runtime().block_on(async {
        let database = Arc::new(TestDatabase::sqlite());
        let process = writes::launch(&database)
            // busy_timeout is a tenth below it: room enough for the lock's
            // answer to come before the call's own deadline (504).
            .setting("TIMEOUTS__DATABASE_MS", 2_000)
            .setting("DATABASE__HEALTH_CHECK_INTERVAL_MS", 100)
            .start()
            .await;
        let load = writes::load(&process, 8);
        load.wait_for_accepted(50).await;

        let mut holder = database.connect().await;
        sqlx::raw_sql("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .expect("the test takes the write lock");
        until_write_fault(&process, Some("locked")).await;
        let refused_before = load.refused_with_retry_after();
        load.wait_for_refusals(refused_before + 50).await;
        assert_eq!(
            writes::read_status(&process, &load.accepted_bodies()).await,
            200,
            "reads work while another process holds the write lock"
        );
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut holder)
            .await
            .expect("the lock is released");
        holder.close().await.ok();

        until_write_fault(&process, None).await;
        let logs = assert_whole_again(process, &database, load, "sqlite-locked").await;
        assert_logged_once(&logs, "locked");
    });
}

/// PostgreSQL ends the service's sessions mid-load (`pg_terminate_backend`,
/// as a failover or `idle_in_transaction_session_timeout` does), one of
/// them inside a write transaction (the worker's intake batch; the api's
/// INSERT, its own transaction), held there by a lock the test takes:
/// clients get 503 with `Retry-After`, never 500, the connection killed in
/// its transaction does not come back to the pool, and writes go on.
#[test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
fn postgres_sessions_terminated_mid_load_answer_503_and_writes_go_on() {
    let _serial = serial();
    runtime().block_on(async {
        let database = TestDatabase::create(Engine::Postgres, "terminated").await;
        let database = Arc::new(database);
        let process = writes::launch(&database).start().await;
        let load = writes::load(&process, 8);
        load.wait_for_accepted(50).await;

        let mut admin = database.connect().await;
        // Writes now wait for this lock inside their transactions; reads
        // do not.
        sqlx::raw_sql(&format!(
            "BEGIN; LOCK TABLE {} IN EXCLUSIVE MODE",
            writes::TABLE
        ))
        .execute(&mut admin)
        .await
        .expect("the test locks the table");
        let mut observer = database.connect().await;
        let waiting = until_a_write_waits(&mut observer).await;
        let refused_before = load.refused_with_retry_after();
        let terminated: Vec<(i32, bool)> = sqlx::query_as(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> $1",
        )
        .bind(admin_pid(&mut admin).await)
        .fetch_all(&mut observer)
        .await
        .expect("the service's sessions are terminated");
        assert!(
            terminated.contains(&(waiting, true)),
            "the session waiting in its write ({waiting}) was ended: {terminated:?}"
        );
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut admin)
            .await
            .expect("the lock is released");
        admin.close().await.ok();
        observer.close().await.ok();
        // The write that was killed mid-transaction was refused, not lost.
        load.wait_for_refusals(refused_before + 1).await;
        let fault = process
            .wait_for_event("the lost connection to be logged", |event| {
                event["message"] == "database fault" && event["db.fault"] == "connection_lost"
            })
            .await;
        assert_eq!(fault["level"], "WARN");

        assert_whole_again(process, &database, load, "postgres-terminated").await;
    });
}

/// Waits (bounded) until one of the service's sessions waits for the
/// test's lock inside a write transaction; returns its pid.
async fn until_a_write_waits(observer: &mut sqlx::AnyConnection) -> i32 {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND wait_event_type = 'Lock' AND xact_start IS NOT NULL
               AND query ILIKE 'INSERT%'
             LIMIT 1",
        )
        .fetch_optional(&mut *observer)
        .await
        .expect("pg_stat_activity is readable");
        if let Some(pid) = waiting {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no write of the service waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn admin_pid(admin: &mut sqlx::AnyConnection) -> i32 {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(admin)
        .await
        .expect("pg_backend_pid")
}
