-- The public job row: the errands.jobs view and the helpers that build its rows.

COMMENT ON TYPE errands.job_spec IS
    'One job for errands.add_jobs: NULL fields take add_job''s defaults.';

-- A lock older than this belongs to a worker presumed dead: admin functions
-- may touch the job (Graphile's 4 hours; heartbeats rescue far sooner).
CREATE OR REPLACE FUNCTION errands._stale_lock_age() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '4 hours' $$;

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
       j.timeout
FROM errands._jobs j
JOIN errands._tasks t ON t.id = j.task_id
LEFT JOIN errands._queues q ON q.id = j.job_queue_id;
COMMENT ON VIEW errands.jobs IS
    'Read-only view of every job that has not completed (completed jobs are deleted).';

-- One job row as the public view shows it, the task and queue names looked up.
CREATE OR REPLACE FUNCTION errands._job_view(j errands._jobs) RETURNS errands.jobs
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v errands.jobs;
BEGIN
    SELECT j.id,
           (SELECT q.queue_name FROM errands._queues q WHERE q.id = j.job_queue_id),
           (SELECT t.identifier FROM errands._tasks t WHERE t.id = j.task_id),
           j.payload, j.priority::integer, j.run_at, j.attempts::integer,
           j.max_attempts::integer, j.last_error, j.created_at, j.updated_at, j.key,
           j.locked_at, j.locked_by, j.revision, j.flags, j.timeout
    INTO v;
    RETURN v;
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
