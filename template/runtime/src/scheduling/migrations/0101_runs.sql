-- One row per period of a job that a replica claimed: the claim itself
-- (the primary key makes a period claimable once), then the run's outcome
-- and history. Rows are deleted after scheduler.history_retention_ms.
-- Portable between SQLite and PostgreSQL: times are milliseconds since the
-- Unix epoch, integers BIGINT.
CREATE TABLE scheduled_runs (
    job TEXT NOT NULL,
    -- The period's start: a multiple of the job's every_ms.
    period_start BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (
        state IN ('running', 'succeeded', 'failed', 'timed_out', 'cancelled', 'lost')
    ),
    -- The replica that holds, or last held, the run.
    replica TEXT NOT NULL,
    -- Runs of this period started: 1, then one more per takeover.
    attempt BIGINT NOT NULL DEFAULT 1,
    -- Fencing token: raised by every takeover. A write-back counts only
    -- under the token its claim returned.
    token BIGINT NOT NULL DEFAULT 1,
    -- While running: when the holder is presumed dead.
    lease_until BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    duration_ms BIGINT,
    error TEXT,
    PRIMARY KEY (job, period_start)
);

-- At most one run of a job at a time across every replica: a claim while
-- another run of the job is still held conflicts, like a claim of a period
-- already taken.
CREATE UNIQUE INDEX scheduled_runs_one_running_per_job
    ON scheduled_runs (job) WHERE state = 'running';
