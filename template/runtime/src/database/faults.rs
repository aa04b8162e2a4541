//! The faults a database meets in production and recovers from by itself: a
//! volume that fills, a file or filesystem that turns read-only, a lock
//! held by another process, a connection killed by a failover or a timeout,
//! a serialization failure. Each is transient: callers answer 503 with
//! `Retry-After`, never 500, and nothing needs a restart once it clears.
//!
//! [`Faults`] keeps what the service knows now, so that a fault is logged
//! once when it starts and once when it ends instead of once per request:
//! - a *write fault* (disk full, read-only, locked, an I/O error) stays in
//!   force until a background probe's write succeeds
//!   ([`Faults::probe_wrote`]; `Database::probe_write`).
//!   Reads still work meanwhile, so the replica stays ready: on a shared
//!   volume or database every replica has the fault, and none should leave
//!   the load balancer for it. It shows in `/readyz`'s body and in the
//!   [`WRITE_FAULT`] gauge, and writes are refused at once while it lasts;
//! - a *passing fault* (unreachable, connection lost, conflict) belongs to
//!   one call; the next call that succeeds ends it. An unreachable database
//!   also closes the readiness gate, as before ([`super::supervise`]).
//!
//! A failure is news only if its call started after the last fault ended:
//! the calls that were already waiting when a fault ended (a write lock's
//! waiters, whose `busy_timeout` runs out as it is released) fail late,
//! and would otherwise start it again at once ([`CallStart`]).
//!
//! A read-only fault also retires the pooled connections opened before it
//! starts and before it ends ([`Faults::is_retired`]; the health check
//! closes them before each probe too): SQLite opens a file it cannot write
//! read-only and keeps it so after the volume turns writable again, and a
//! PostgreSQL session stays on the standby it reached. Fresh connections
//! see the database as it is now.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{error::DatabaseError, sqlite::SqliteError};

/// Gauge, by `fault`: 1 while that write fault is in force, else 0.
pub const WRITE_FAULT: &str = "nebula_database_write_fault";

/// A condition of the database that fails calls for a while and then clears
/// by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// It cannot be reached or cannot serve now (starting, shutting down,
    /// out of memory or connections), or no pooled connection came free in
    /// time.
    Unreachable,
    /// A connection was killed or reset mid-call (a failover, a restart,
    /// `pg_terminate_backend`, an idle-in-transaction timeout); the pool
    /// opens a fresh one.
    ConnectionLost,
    /// Two transactions conflicted (a serialization failure or a deadlock)
    /// and this one was rolled back.
    Conflict,
    /// The disk holding the database is full.
    DiskFull,
    /// The database, its file or its filesystem refuses writes (a volume
    /// remounted read-only, a standby after a failover).
    ReadOnly,
    /// Another connection or process held SQLite's write lock past
    /// `busy_timeout`. (A PostgreSQL `lock_timeout` is a timeout: 504.)
    Locked,
    /// The disk refused a read or a write: a failing device, or a
    /// filesystem remounted read-only under an open SQLite file.
    Io,
}

impl Fault {
    /// The write faults, in the order of their gauge series.
    pub const WRITE_FAULTS: [Self; 4] = [Self::DiskFull, Self::ReadOnly, Self::Locked, Self::Io];

    /// Its name in logs (`db.fault`, `error.kind`), metrics and `/readyz`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::ConnectionLost => "connection_lost",
            Self::Conflict => "conflict",
            Self::DiskFull => "disk_full",
            Self::ReadOnly => "read_only",
            Self::Locked => "locked",
            Self::Io => "io_error",
        }
    }

    /// Whether it is a state of the database's storage, which lasts until
    /// a write succeeds again, rather than a fault of one call.
    #[must_use]
    pub const fn is_write_fault(self) -> bool {
        matches!(
            self,
            Self::DiskFull | Self::ReadOnly | Self::Locked | Self::Io
        )
    }

    /// The fault an answer from the database names, if it names one.
    ///
    /// SQLite: the primary result code (the low byte of the extended code
    /// sqlx reports). PostgreSQL: the SQLSTATE.
    #[must_use]
    pub fn of_database_error(error: &dyn DatabaseError) -> Option<Self> {
        let code = error.code()?;
        if error.try_downcast_ref::<SqliteError>().is_some() {
            let extended = code.parse::<u32>().ok()?;
            return match extended & 0xff {
                // SQLITE_BUSY_SNAPSHOT: a read transaction that tried to
                // write after another connection's commit; a retry starts
                // from the new snapshot.
                5 if extended == 517 => Some(Self::Conflict),
                // SQLITE_BUSY, SQLITE_LOCKED (past busy_timeout), and
                // SQLITE_PROTOCOL (a lock protocol race in WAL).
                5 | 6 | 15 => Some(Self::Locked),
                // SQLITE_READONLY, with its extended forms (a file that
                // cannot be written, moved, or a read-only open).
                8 => Some(Self::ReadOnly),
                // SQLITE_IOERR.
                10 => Some(Self::Io),
                // SQLITE_FULL.
                13 => Some(Self::DiskFull),
                // SQLITE_CANTOPEN: the file or its folder went away or
                // cannot be opened now.
                14 => Some(Self::Unreachable),
                _ => None,
            };
        }
        match code.as_ref() {
            // disk_full: "could not extend file". (A full pg_wal volume
            // makes the server stop instead: connection_lost, unreachable.)
            "53100" => Some(Self::DiskFull),
            // read_only_sql_transaction: a standby, or
            // default_transaction_read_only after a failover.
            "25006" => Some(Self::ReadOnly),
            // insufficient_privilege, when it is the filesystem that
            // refused: "could not extend file ...: Read-only file system".
            "42501" if error.message().contains("Read-only file system") => Some(Self::ReadOnly),
            // io_error.
            "58030" => Some(Self::Io),
            // serialization_failure, deadlock_detected.
            "40001" | "40P01" => Some(Self::Conflict),
            // insufficient_resources, out_of_memory, too_many_connections,
            // configuration_limit_exceeded, cannot_connect_now (starting).
            code if code.starts_with("53") || code == "57P03" => Some(Self::Unreachable),
            // idle_in_transaction_session_timeout, transaction_timeout
            // (PostgreSQL 17): the session was ended.
            "25P03" | "25P04" => Some(Self::ConnectionLost),
            // admin_shutdown (pg_terminate_backend, a fast shutdown),
            // crash_shutdown, database_dropped; connection exceptions.
            code if code.starts_with("57P") || code.starts_with("08") => Some(Self::ConnectionLost),
            _ => None,
        }
    }

    const fn to_u8(self) -> u8 {
        match self {
            Self::Unreachable => 1,
            Self::ConnectionLost => 2,
            Self::Conflict => 3,
            Self::DiskFull => 4,
            Self::ReadOnly => 5,
            Self::Locked => 6,
            Self::Io => 7,
        }
    }

    const fn from_u8(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Unreachable),
            2 => Some(Self::ConnectionLost),
            3 => Some(Self::Conflict),
            4 => Some(Self::DiskFull),
            5 => Some(Self::ReadOnly),
            6 => Some(Self::Locked),
            7 => Some(Self::Io),
            _ => None,
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Slot value for "no fault".
const NONE: u8 = 0;

/// When a database call started, as [`Faults::met`] needs to know: how many
/// faults had ended by then.
#[derive(Debug, Clone, Copy)]
pub struct CallStart(u64);

/// What the service knows about the database's faults now; shared by every
/// clone of the database handle, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<State>);

#[derive(Debug)]
struct State {
    /// The write fault in force, or [`NONE`].
    write: AtomicU8,
    /// The last passing fault met since a call last succeeded, or [`NONE`].
    passing: AtomicU8,
    /// How many faults, of either kind, have ended.
    endings: AtomicU64,
    /// Connections opened at or before this many milliseconds after
    /// `origin` are closed instead of used (0: none).
    retired_until_ms: AtomicU64,
    origin: Instant,
}

impl Default for State {
    fn default() -> Self {
        Self {
            write: AtomicU8::new(NONE),
            passing: AtomicU8::new(NONE),
            endings: AtomicU64::new(0),
            retired_until_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }
}

impl Faults {
    /// Describes [`WRITE_FAULT`] and publishes every series of it, so that
    /// dashboards and alerts see them before the first fault.
    pub fn describe_metrics(&self) {
        metrics::describe_gauge!(
            WRITE_FAULT,
            "1 while the database refuses writes for this fault (disk_full, read_only, locked, io_error), else 0; reads still work"
        );
        self.publish();
    }

    /// The write fault in force: writes are refused until it clears.
    #[must_use]
    pub fn write_fault(&self) -> Option<Fault> {
        Fault::from_u8(self.0.write.load(Ordering::Relaxed))
    }

    /// Sets the [`WRITE_FAULT`] series from the state now. Called on each
    /// change, and by the health check on every round, which corrects a
    /// series that two changes at once left behind the state.
    pub fn publish(&self) {
        let now = self.write_fault();
        for fault in Fault::WRITE_FAULTS {
            let value = if now == Some(fault) { 1.0 } else { 0.0 };
            metrics::gauge!(WRITE_FAULT, "fault" => fault.as_str()).set(value);
        }
    }

    /// Whether a connection of this `age` was opened before the last
    /// read-only fault, or before the end of one: the pool closes it
    /// instead of using it.
    #[must_use]
    pub fn is_retired(&self, age: Duration) -> bool {
        let retired_until = self.0.retired_until_ms.load(Ordering::Relaxed);
        retired_until > 0 && self.now_ms().saturating_sub(millis(age)) <= retired_until
    }

    /// Retires every connection opened until now: the pool closes each
    /// instead of using it again.
    pub fn retire_connections(&self) {
        self.0
            .retired_until_ms
            .fetch_max(self.now_ms().max(1), Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        millis(self.0.origin.elapsed())
    }

    /// Taken when a call starts, for [`Faults::met`].
    #[must_use]
    pub fn call_start(&self) -> CallStart {
        CallStart(self.0.endings.load(Ordering::Relaxed))
    }

    /// Records that `operation`, a call that began at `started`, met
    /// `fault`. Logs at WARN when that changes what is known (a new fault,
    /// or another one), at DEBUG otherwise. A call that began before a
    /// fault ended changes nothing: it may have met the fault that ended,
    /// and if not, the next call meets its fault again.
    pub fn met(
        &self,
        fault: Fault,
        operation: &'static str,
        error: &dyn std::fmt::Display,
        started: CallStart,
    ) {
        if self.0.endings.load(Ordering::Relaxed) != started.0 {
            tracing::debug!(
                db.operation = operation,
                error.kind = fault.as_str(),
                %error,
                "database call failed; it began before a fault ended"
            );
            return;
        }
        let slot = if fault.is_write_fault() {
            &self.0.write
        } else {
            &self.0.passing
        };
        let before = Fault::from_u8(slot.swap(fault.to_u8(), Ordering::Relaxed));
        if before == Some(fault) {
            tracing::debug!(
                db.operation = operation,
                error.kind = fault.as_str(),
                %error,
                "database call failed"
            );
            return;
        }
        if fault.is_write_fault() {
            if fault == Fault::ReadOnly {
                // The connection that met it, and any other, may have been
                // opened read-only.
                self.retire_connections();
            }
            self.publish();
            tracing::warn!(
                db.fault = fault.as_str(),
                db.operation = operation,
                %error,
                "database refuses writes"
            );
        } else {
            tracing::warn!(
                db.fault = fault.as_str(),
                db.operation = operation,
                %error,
                "database fault"
            );
        }
    }

    /// Records that a call succeeded: a passing fault is over.
    pub fn succeeded(&self) {
        // A load first: the common case writes nothing.
        if self.0.passing.load(Ordering::Relaxed) == NONE {
            return;
        }
        if let Some(fault) = Fault::from_u8(self.0.passing.swap(NONE, Ordering::Relaxed)) {
            self.0.endings.fetch_add(1, Ordering::Relaxed);
            tracing::info!(db.fault = fault.as_str(), "database fault cleared");
        }
    }

    /// Records that a probe write, sent while `tested` was in force,
    /// committed: that fault is over, unless another one was met since.
    pub fn probe_wrote(&self, tested: Fault) {
        let ended = self.0.write.compare_exchange(
            tested.to_u8(),
            NONE,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        if ended.is_err() {
            return;
        }
        self.0.endings.fetch_add(1, Ordering::Relaxed);
        if tested == Fault::ReadOnly {
            // Connections opened while it lasted may be read-only.
            self.retire_connections();
        }
        self.publish();
        tracing::info!(db.fault = tested.as_str(), "database takes writes again");
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_fault_lasts_until_a_probe_write_succeeds() {
        let faults = Faults::default();
        faults.met(
            Fault::DiskFull,
            "insert",
            &"database or disk is full",
            faults.call_start(),
        );
        assert_eq!(faults.write_fault(), Some(Fault::DiskFull));
        // A read, or any other call, succeeding says nothing about writes.
        faults.succeeded();
        assert_eq!(faults.write_fault(), Some(Fault::DiskFull));
        faults.met(
            Fault::ReadOnly,
            "insert",
            &"attempt to write a readonly database",
            faults.call_start(),
        );
        assert_eq!(faults.write_fault(), Some(Fault::ReadOnly));
        // A probe sent while the disk was full ended after another fault
        // was met: it says nothing about that one.
        faults.probe_wrote(Fault::DiskFull);
        assert_eq!(faults.write_fault(), Some(Fault::ReadOnly));
        faults.probe_wrote(Fault::ReadOnly);
        assert_eq!(faults.write_fault(), None);
    }

    #[test]
    fn a_read_only_fault_retires_the_connections_opened_before_it() {
        let faults = Faults::default();
        let opened_long_ago = Duration::from_hours(1);
        assert!(
            !faults.is_retired(opened_long_ago),
            "no fault, none retired"
        );
        faults.met(
            Fault::DiskFull,
            "insert",
            &"database or disk is full",
            faults.call_start(),
        );
        assert!(
            !faults.is_retired(opened_long_ago),
            "only read-only retires"
        );
        faults.met(
            Fault::ReadOnly,
            "insert",
            &"attempt to write a readonly database",
            faults.call_start(),
        );
        assert!(faults.is_retired(opened_long_ago));
        // Past the millisecond of the fault, a new connection is usable.
        std::thread::sleep(Duration::from_millis(2));
        assert!(!faults.is_retired(Duration::ZERO));
    }

    #[test]
    fn a_call_that_began_before_a_fault_ended_does_not_start_it_again() {
        let faults = Faults::default();
        let waiting = faults.call_start();
        faults.met(
            Fault::Locked,
            "insert",
            &"database is locked",
            faults.call_start(),
        );
        faults.probe_wrote(Fault::Locked);
        // A write that waited for the lock all along gives up just after
        // it was released.
        faults.met(Fault::Locked, "insert", &"database is locked", waiting);
        assert_eq!(faults.write_fault(), None);
        // A call that begins now and meets it: the lock is held again.
        faults.met(
            Fault::Locked,
            "insert",
            &"database is locked",
            faults.call_start(),
        );
        assert_eq!(faults.write_fault(), Some(Fault::Locked));
    }

    #[test]
    fn a_passing_fault_never_refuses_writes() {
        let faults = Faults::default();
        faults.met(
            Fault::ConnectionLost,
            "insert",
            &"connection reset",
            faults.call_start(),
        );
        faults.met(
            Fault::Conflict,
            "insert",
            &"could not serialize access",
            faults.call_start(),
        );
        assert_eq!(faults.write_fault(), None);
    }
}
