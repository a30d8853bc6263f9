-- Finished-job history (issue 12). Completed (and, later, cancelled) jobs move
-- from errands._jobs to this table when their task's retention is above 0, so
-- errands._jobs, the fetch path and its indexes stay as they were. Queue and
-- task are kept by name: cleanup() may delete the queue/task rows meanwhile.
CREATE TABLE errands._finished_jobs (
    id bigint PRIMARY KEY,
    queue_name text,
    task_identifier text NOT NULL,
    payload json NOT NULL,
    priority smallint NOT NULL,
    attempts smallint NOT NULL,
    max_attempts smallint NOT NULL,
    last_error text,
    key text,
    created_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL
        CONSTRAINT finished_jobs_state CHECK (state IN ('completed', 'cancelled')),
    result json
);
-- Pruning walks the oldest rows first.
CREATE INDEX finished_jobs_finished_at ON errands._finished_jobs (finished_at);
ALTER TABLE errands._finished_jobs ENABLE ROW LEVEL SECURITY;

-- How long finished jobs are kept: for all tasks, and per task (NULL: the global).
ALTER TABLE errands._settings
    ADD COLUMN retention interval NOT NULL DEFAULT interval '0'
        CONSTRAINT settings_retention_not_negative CHECK (retention >= interval '0');
ALTER TABLE errands._tasks
    ADD COLUMN retention interval
        CONSTRAINT tasks_retention_not_negative CHECK (retention >= interval '0');

-- worker_complete_jobs takes the tasks' results (a changed signature).
DROP FUNCTION IF EXISTS errands.worker_complete_jobs(text, bigint[]);
