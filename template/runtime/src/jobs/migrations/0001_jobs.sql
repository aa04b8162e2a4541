-- The durable job queue. One row per accepted job, from intake to its
-- outcome; finished rows are deleted after worker.retention_ms.
-- Portable between SQLite and PostgreSQL: times are milliseconds since the
-- Unix epoch, integers BIGINT.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    -- The client's Idempotency-Key header, if it sent one.
    idempotency_key TEXT UNIQUE,
    -- The job request, as JSON.
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    -- Attempts started (a claim counts one; a release at shutdown gives it back).
    attempts BIGINT NOT NULL DEFAULT 0,
    -- Times an expired lease was taken back from a lost worker.
    rescues BIGINT NOT NULL DEFAULT 0,
    -- Fencing token: raised by every claim and every rescue, never lowered.
    -- A write-back counts only under the token its claim returned.
    token BIGINT NOT NULL DEFAULT 0,
    -- When the job may next be claimed (a retry waits for its backoff).
    run_at BIGINT NOT NULL,
    -- While running: when the lease ends unless a heartbeat extends it.
    lease_until BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT
);

CREATE INDEX jobs_due ON jobs (state, run_at);
CREATE INDEX jobs_lease ON jobs (state, lease_until);
CREATE INDEX jobs_finished ON jobs (finished_at);
