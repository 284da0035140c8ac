-- Several brokers run due jobs from one table: a broker claims the jobs it
-- is about to run for a few seconds, and the others skip them. A claim
-- that runs out (its broker died or stalled) lets anyone take the job.
-- Claims only save work: a job run twice changes its records once, by
-- their versions.
ALTER TABLE jobs
    ADD COLUMN claimed_by text,
    ADD COLUMN claimed_until timestamptz;
