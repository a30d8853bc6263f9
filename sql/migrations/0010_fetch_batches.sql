-- get_jobs for large batches (the worker's local queue asks for hundreds of jobs).
--
-- 0004 chose, locked and updated the jobs in one statement whose later steps
-- joined the candidates back to _jobs with IN (subquery); for a batch of 500 the
-- planner switched to hash joins over a sequential scan of the whole table
-- (67 ms for 500 jobs out of 30,000; it grows with the table). Here the steps
-- carry ids in arrays, so each is an index probe per id whatever the batch size.

CREATE OR REPLACE FUNCTION errands.get_jobs(
    worker_id text,
    task_identifiers text[],
    job_count integer DEFAULT 1,
    forbidden_flags text[] DEFAULT NULL
) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
-- CREATE OR REPLACE resets these attributes: restate what 0006 set.
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Planning the candidate query costs ~1 ms, several times its execution for a
-- small batch, and PL/pgSQL kept re-planning it (custom plans). Its generic
-- plan is the same index walk, but its cost estimate (unknown LIMIT) crossed
-- jit_above_cost: JIT compilation took ~68 ms per call. Plan once, no JIT.
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    v_task_ids integer[];
    v_forbidden text[] := CASE WHEN cardinality(get_jobs.forbidden_flags) > 0
                               THEN get_jobs.forbidden_flags END;
    v_now timestamptz := now();
    v_ids bigint[];          -- jobs taken
    v_heads bigint[];        -- head jobs of named queues (then: those locked)
    v_head_queues integer[]; -- their queues (then: those locked)
BEGIN
    IF get_jobs.worker_id IS NULL OR get_jobs.worker_id = '' THEN
        RAISE EXCEPTION 'errands: worker_id must not be empty, got %',
            errands._describe(get_jobs.worker_id) USING ERRCODE = '22023';
    END IF;
    IF get_jobs.job_count IS NULL OR get_jobs.job_count < 1 THEN
        RAISE EXCEPTION 'errands: job_count must be at least 1, got %',
            coalesce(get_jobs.job_count::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(t.id) INTO v_task_ids
    FROM errands._tasks t WHERE t.identifier = ANY(get_jobs.task_identifiers);
    IF v_task_ids IS NULL THEN
        RETURN;
    END IF;

    -- 1. The best job_count candidates: jobs without a queue (row-locked as they
    --    are read, SKIP LOCKED) and the head job of each unlocked named queue.
    SELECT array_agg(c.id) FILTER (WHERE c.job_queue_id IS NULL),
           array_agg(c.id) FILTER (WHERE c.job_queue_id IS NOT NULL),
           array_agg(c.job_queue_id) FILTER (WHERE c.job_queue_id IS NOT NULL)
    INTO v_ids, v_heads, v_head_queues
    FROM (
        SELECT u.id, u.job_queue_id, u.priority, u.run_at
        FROM unnest(v_task_ids) AS tid(task_id)
        CROSS JOIN LATERAL (
            -- One index probe per distinct priority of the task (a loose index
            -- scan); with the priority fixed, run_at <= now ends the range scan,
            -- so future-scheduled jobs are never walked.
            WITH RECURSIVE prio(p) AS (
                SELECT min(j.priority) FROM errands._jobs j
                WHERE j.task_id = tid.task_id AND j.is_available AND j.job_queue_id IS NULL
                UNION ALL
                SELECT (SELECT min(j.priority) FROM errands._jobs j
                        WHERE j.task_id = tid.task_id AND j.is_available
                          AND j.job_queue_id IS NULL AND j.priority > prio.p)
                FROM prio WHERE prio.p IS NOT NULL
            )
            SELECT d.id, d.job_queue_id, d.priority, d.run_at
            FROM prio CROSS JOIN LATERAL (
                SELECT j.id, j.job_queue_id, j.priority, j.run_at
                FROM errands._jobs j
                WHERE j.task_id = tid.task_id AND j.priority = prio.p
                  AND j.is_available AND j.job_queue_id IS NULL
                  AND j.run_at <= v_now
                  AND (v_forbidden IS NULL OR j.flags IS NULL OR NOT j.flags ?| v_forbidden)
                ORDER BY j.run_at, j.id
                LIMIT get_jobs.job_count
                FOR UPDATE SKIP LOCKED
            ) d
            ORDER BY d.priority, d.run_at, d.id
            LIMIT get_jobs.job_count
        ) u
        UNION ALL
        -- Named queues: only the head job of a queue nothing else runs from;
        -- never two jobs of one queue in a batch (Graphile's #621).
        SELECT h.id, h.job_queue_id, h.priority, h.run_at
        FROM errands._queues q
        CROSS JOIN LATERAL (
            SELECT j.id, j.job_queue_id, j.priority, j.run_at
            FROM errands._jobs j
            WHERE j.job_queue_id = q.id
              AND j.is_available AND j.run_at <= v_now
              AND j.task_id = ANY(v_task_ids)
              AND (v_forbidden IS NULL OR j.flags IS NULL OR NOT j.flags ?| v_forbidden)
            ORDER BY j.priority, j.run_at, j.id
            LIMIT 1
        ) h
        WHERE q.locked_at IS NULL
        ORDER BY 3, 4, 1
        LIMIT get_jobs.job_count
    ) c;

    -- 2. Queue heads: lock their queues (one another fetch holds is skipped; one
    --    locked since our snapshot fails the locked_at recheck), then the jobs.
    IF v_heads IS NOT NULL THEN
        SELECT array_agg(s.id) INTO v_head_queues FROM (
            SELECT q.id FROM errands._queues q
            WHERE q.id = ANY(v_head_queues) AND q.locked_at IS NULL
            FOR UPDATE SKIP LOCKED
        ) s;
        SELECT array_agg(s.id), array_agg(s.job_queue_id) INTO v_heads, v_head_queues FROM (
            SELECT j.id, j.job_queue_id FROM errands._jobs j
            WHERE j.id = ANY(v_heads) AND j.is_available
              AND j.job_queue_id = ANY(v_head_queues)
            FOR UPDATE SKIP LOCKED
        ) s;
        IF v_heads IS NOT NULL THEN
            v_ids := v_ids || v_heads;
            UPDATE errands._queues q
            SET locked_at = v_now, locked_by = get_jobs.worker_id
            WHERE q.id = ANY(v_head_queues);
        END IF;
    END IF;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- 3. Take them.
    RETURN QUERY
    WITH taken AS (
        UPDATE errands._jobs j
        SET attempts = j.attempts + 1, locked_at = v_now, locked_by = get_jobs.worker_id
        WHERE j.id = ANY(v_ids)
        RETURNING j.*
    )
    SELECT tk.id, q.queue_name, t.identifier, tk.payload, tk.priority::integer, tk.run_at,
           tk.attempts::integer, tk.max_attempts::integer, tk.last_error, tk.created_at,
           tk.updated_at, tk.key, tk.locked_at, tk.locked_by, tk.revision, tk.flags
    FROM taken tk
    JOIN errands._tasks t ON t.id = tk.task_id
    LEFT JOIN errands._queues q ON q.id = tk.job_queue_id
    ORDER BY tk.priority, tk.run_at, tk.id;
END
$$;
COMMENT ON FUNCTION errands.get_jobs(text, text[], integer, text[]) IS
'Worker API. Locks and returns up to job_count runnable jobs (due, not running,
attempts left, task in task_identifiers, no forbidden flag) in priority, run_at,
id order, with attempts + 1 and locked_by = worker_id. A named queue yields at
most its head job, and none while one of its jobs runs.';

-- Taking a job is an UPDATE that cannot be HOT (is_available, in the fetch
-- indexes' predicates, changes), so it inserts into every index whose predicate
-- the locked row meets. jobs_locked was one of them, for lookups that are rare
-- (rescuing a dead worker, the stale-lock sweep, listing workers) and are fine
-- with one sequential scan. Without it (and with the key index made partial, not
-- done here), the UPDATE took 33 instead of 48 us per job in a batch of 500.
DROP INDEX errands.jobs_locked;

-- (The workers view, which looked each worker's jobs up by locked_by, is
-- replaced in 0012_sessionless_workers.sql by one pass over the locked jobs.)

-- Completing and returning jobs: 0004 wrote them in LANGUAGE sql, which (not
-- being inlinable) plans its statement on every call: ~0.8 ms for a DELETE
-- that takes ~0.08 ms. PL/pgSQL plans once per session.
CREATE OR REPLACE FUNCTION errands.worker_complete_jobs(worker_id text, job_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    RETURN QUERY
    WITH done AS (
        DELETE FROM errands._jobs j
        WHERE j.id = ANY(worker_complete_jobs.job_ids)
          AND j.locked_by = worker_complete_jobs.worker_id
        RETURNING j.id, j.job_queue_id
    ), unlocked AS (
        UPDATE errands._queues q SET locked_at = NULL, locked_by = NULL
        WHERE q.id IN (SELECT done.job_queue_id FROM done)
          AND q.locked_by = worker_complete_jobs.worker_id
    )
    SELECT done.id FROM done;
END
$$;

CREATE OR REPLACE FUNCTION errands.worker_return_jobs(worker_id text, job_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    RETURN QUERY
    WITH returned AS (
        UPDATE errands._jobs j
        SET attempts = greatest(0, j.attempts - 1), locked_at = NULL, locked_by = NULL
        WHERE j.id = ANY(worker_return_jobs.job_ids)
          AND j.locked_by = worker_return_jobs.worker_id
        RETURNING j.id, j.job_queue_id
    ), unlocked AS (
        UPDATE errands._queues q SET locked_at = NULL, locked_by = NULL
        WHERE q.id IN (SELECT returned.job_queue_id FROM returned)
          AND q.locked_by = worker_return_jobs.worker_id
    )
    SELECT returned.id FROM returned;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA errands FROM PUBLIC;
