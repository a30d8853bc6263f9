-- Job dependencies and flows (issue 14).
--
-- A job that waits for others carries a counter, waiting_for: how many of the
-- jobs it depends on have not completed yet (NULL: not waiting). Completing a
-- dependency decrements it in the completing transaction; the job that reaches
-- 0 gets NULL and becomes fetchable then. is_available is redefined so that a
-- waiting job is outside both fetch indexes: get_jobs never walks it.
ALTER TABLE errands._jobs
    ADD COLUMN waiting_for integer
        CONSTRAINT jobs_waiting_for_positive CHECK (waiting_for > 0);
-- A generated column's expression cannot be altered (before PostgreSQL 17):
-- dropped and added again; the two fetch indexes go with it and are recreated
-- as in the baseline.
ALTER TABLE errands._jobs DROP COLUMN is_available;
ALTER TABLE errands._jobs
    ADD COLUMN is_available boolean NOT NULL
        GENERATED ALWAYS AS (locked_at IS NULL AND attempts < max_attempts
                             AND waiting_for IS NULL) STORED;
CREATE INDEX jobs_fetch_unqueued ON errands._jobs (task_id, priority, run_at, id)
    WHERE is_available AND job_queue_id IS NULL;
CREATE INDEX jobs_fetch_queued ON errands._jobs (job_queue_id, priority, run_at, id)
    WHERE is_available AND job_queue_id IS NOT NULL;

-- One row per (dependent job, job it depends on). resolved: the dependency no
-- longer counts in the dependent's waiting_for (it completed, or it failed for
-- good / was cancelled and the dependent runs anyway). parent_try: the edge
-- gates a job added by a running task (helpers.add_flow) on that task's try:
-- the try number of the dependency when the edge was made; a failed try cancels
-- the dependents it gated. No foreign keys (as for _jobs): the dependency moves
-- to errands._finished_jobs when it completes.
CREATE TABLE errands._job_dependencies (
    depends_on bigint NOT NULL,
    job_id bigint NOT NULL,
    run_anyway boolean NOT NULL DEFAULT false,
    parent_try smallint,
    resolved boolean NOT NULL DEFAULT false,
    PRIMARY KEY (depends_on, job_id)
);
-- dependency_results and a dependent's own bookkeeping look edges up by dependent.
CREATE INDEX job_dependencies_job_id ON errands._job_dependencies (job_id);
ALTER TABLE errands._job_dependencies ENABLE ROW LEVEL SECURITY;

-- A flow (errands.add_flow): its steps by name and the job each became.
CREATE TABLE errands._flows (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The running job that added the flow (helpers.add_flow), if any.
    parent_job_id bigint
);
CREATE TABLE errands._flow_steps (
    flow_id bigint NOT NULL REFERENCES errands._flows (id) ON DELETE CASCADE,
    step text NOT NULL,
    job_id bigint NOT NULL UNIQUE,
    ord integer NOT NULL,
    -- The flow's graph as given (the edges go when a step finishes).
    depends_on text[] NOT NULL DEFAULT '{}',
    run_anyway boolean NOT NULL DEFAULT false,
    PRIMARY KEY (flow_id, step)
);
ALTER TABLE errands._flows ENABLE ROW LEVEL SECURITY;
ALTER TABLE errands._flow_steps ENABLE ROW LEVEL SECURITY;

-- add_job takes depends_on (a changed signature).
DROP FUNCTION IF EXISTS errands.add_job(text, json, text, timestamptz, integer, text, integer,
                                        text[], text, interval);
