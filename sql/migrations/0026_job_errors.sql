-- Every failed try of a job (issue 15, the dashboard's job page): errors is a
-- JSON array of the last 20 failed tries, oldest first, each
-- {"attempt", "started_at", "failed_at", "worker", "error"}; NULL until the
-- first failure. It is written where last_error is (worker_fail_jobs,
-- reset_locked, rescue_workers, permanently_fail_jobs) and carried into history.
-- History also keeps the run_at of the last try (when it was due: for a retry,
-- the end of its backoff) and started_at, its start (the job's locked_at when it
-- finished; NULL when it finished without running, e.g. cancelled while
-- waiting): queue wait is started_at - run_at, run time finished_at - started_at.
ALTER TABLE errands._jobs ADD COLUMN errors jsonb;
-- The jobs no fetch index holds (running, failed for good, waiting for
-- dependencies): few on a healthy queue, so the dashboard counts them exactly
-- however big the backlog. Enqueueing writes no entry (a new job is available);
-- taking a job writes one (measured: bench/job_errors.py, docs/dashboard.md).
CREATE INDEX jobs_unavailable ON errands._jobs (task_id) WHERE NOT is_available;
ALTER TABLE errands._finished_jobs ADD COLUMN errors jsonb, ADD COLUMN run_at timestamptz,
    ADD COLUMN started_at timestamptz;
