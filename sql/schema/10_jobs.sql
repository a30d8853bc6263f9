-- The public job row: the errands.jobs view and the helpers that build its rows.

COMMENT ON TYPE errands.job_spec IS
    'One job for errands.add_jobs: NULL fields take add_job''s defaults.';

-- The public job row. Its columns are spelled here and once more, in the same
-- order, by errands._job_row below, which every function returning jobs uses to
-- build its rows from an errands._jobs row. PostgreSQL checks at CREATE time that
-- _job_row's ROW(...) matches this view's columns (count and types), and
-- tests_sql/016_job_row.sql that both give the same values; the Python Job
-- dataclass has the same fields in the same order (tests_py/test_job_row.py).
-- Adding a column: append it here and to _job_row's ROW(...), and to Job.
--
-- state is one of (first that applies): running (locked by a worker), waiting
-- (for jobs it depends on: 25_flows.sql), failed (no attempts left), retrying (failed at least once, attempts left), scheduled
-- (run_at in the future), pending (ready to run). A completed job leaves this
-- view (for errands.finished_jobs, 15_history.sql, or deleted: retention 0).
CREATE OR REPLACE VIEW errands.jobs AS
SELECT j.id,
       q.queue_name,
       t.identifier AS task_identifier,
       j.payload,
       j.priority::integer AS priority,
       j.run_at,
       j.attempts::integer AS attempts,
       j.max_attempts::integer AS max_attempts,
       j.last_error,
       j.created_at,
       j.updated_at,
       j.key,
       j.locked_at,
       j.locked_by,
       j.revision,
       j.flags,
       j.timeout,
       CASE WHEN j.locked_at IS NOT NULL THEN 'running'
            WHEN j.waiting_for IS NOT NULL THEN 'waiting'
            WHEN j.attempts >= j.max_attempts THEN 'failed'
            WHEN j.attempts > 0 THEN 'retrying'
            WHEN j.run_at > now() THEN 'scheduled'
            ELSE 'pending' END AS state,
       j.traceparent,
       j.errors
FROM errands._jobs j
JOIN errands._tasks t ON t.id = j.task_id
LEFT JOIN errands._queues q ON q.id = j.job_queue_id;
COMMENT ON VIEW errands.jobs IS
    'Read-only view of every job that has not finished (finished jobs are in errands.finished_jobs for their retention). state: running, waiting (for jobs it depends on), failed (no attempts left), retrying, scheduled or pending. traceparent: the W3C trace context of the span that enqueued the job (errands.set_traceparent), or NULL. errors: the last 20 failed tries, oldest first, as a JSON array of {"attempt", "started_at", "failed_at", "worker", "error"} (NULL: it never failed).';

-- errors (the job's failed tries, oldest first) with one more entry, keeping
-- the last 20: a job that fails forever does not grow without bound. Each error
-- text is cut at 4,000 characters (last_error keeps the whole last one).
-- Written only on the failure paths; one expression, so the planner inlines it.
CREATE OR REPLACE FUNCTION errands._add_error(errors jsonb, attempt integer,
                                             started_at timestamptz, worker text,
                                             message text)
RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN jsonb_array_length(coalesce(errors, '[]')) >= 20 THEN errors - 0
                ELSE coalesce(errors, '[]') END
           || jsonb_build_array(jsonb_build_object(
                  'attempt', attempt, 'started_at', started_at, 'failed_at', now(),
                  'worker', worker, 'error', left(message, 4000)))
$$;

-- The errands.jobs row of job j whose queue and task are named queue_name and
-- task_identifier. A SQL function of one expression: the planner inlines it, so
-- `SELECT (errands._job_row(x::errands._jobs, ...)).*` costs what spelling the
-- columns out would. (The view cannot call it: a view's readers would need
-- EXECUTE on it.)
CREATE OR REPLACE FUNCTION errands._job_row(j errands._jobs, queue_name text,
                                            task_identifier text)
RETURNS errands.jobs
LANGUAGE sql STABLE AS $$
    SELECT ROW(j.id, queue_name, task_identifier, j.payload, j.priority::integer, j.run_at,
               j.attempts::integer, j.max_attempts::integer, j.last_error, j.created_at,
               j.updated_at, j.key, j.locked_at, j.locked_by, j.revision, j.flags, j.timeout,
               CASE WHEN j.locked_at IS NOT NULL THEN 'running'
                    WHEN j.waiting_for IS NOT NULL THEN 'waiting'
                    WHEN j.attempts >= j.max_attempts THEN 'failed'
                    WHEN j.attempts > 0 THEN 'retrying'
                    WHEN j.run_at > now() THEN 'scheduled'
                    ELSE 'pending' END,
               j.traceparent, j.errors)::errands.jobs
$$;

-- One job row as the public view shows it, the task and queue names looked up.
-- (PL/pgSQL, not SQL: a SQL function that is not inlined is planned again on
-- every call, PL/pgSQL caches its plans.)
CREATE OR REPLACE FUNCTION errands._job_view(j errands._jobs) RETURNS errands.jobs
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN errands._job_row(
        j,
        (SELECT q.queue_name FROM errands._queues q WHERE q.id = j.job_queue_id),
        (SELECT t.identifier FROM errands._tasks t WHERE t.id = j.task_id));
END
$$;

-- Flags are stored as a set: {"a": true, "b": true}; none (NULL or empty) is NULL.
CREATE OR REPLACE FUNCTION errands._flags(flags text[]) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN cardinality(flags) > 0
                THEN (SELECT jsonb_object_agg(f, true) FROM unnest(flags) f) END
$$;

-- A text value quoted for an error message, shortened when long.
CREATE OR REPLACE FUNCTION errands._describe(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN value IS NULL THEN 'NULL'
        WHEN length(value) > 40
            THEN format('%s... (%s characters)', quote_literal(left(value, 40)), length(value))
        ELSE format('%s (%s characters)', quote_literal(value), length(value))
    END
$$;
