-- Job kinds: each job names the kind that runs it, and keeps the attempt
-- limit it was accepted with. `payload` holds the kind's arguments.
-- Jobs queued before kinds existed were the example job, whose arguments
-- are those of `diagnostic.sleep`; their attempt limit stays NULL, which
-- means worker.max_attempts.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'diagnostic.sleep';
ALTER TABLE jobs ADD COLUMN max_attempts BIGINT;
