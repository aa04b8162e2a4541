-- Job kinds: each job names the kind that runs it, and keeps the attempt
-- limit it was accepted with. `payload` holds the kind's arguments.
-- Jobs queued before kinds existed were the example job, whose arguments
-- are those of `diagnostic.sleep`; their attempt limit stays NULL, which
-- means worker.max_attempts. No default: every new job names its kind.
-- Replicas of a release before this one cannot share the table with it:
-- stop them before this migration runs (README, "Jobs").
ALTER TABLE jobs ADD COLUMN kind TEXT;
UPDATE jobs SET kind = 'diagnostic.sleep';
ALTER TABLE jobs ADD COLUMN max_attempts BIGINT;
