-- Administration (Graphile Worker's WorkerUtils functions) and cleanup.
-- complete/fail/reschedule leave running jobs alone unless their lock is stale.

CREATE OR REPLACE FUNCTION errands.complete_jobs(job_ids bigint[]) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Flows (25_flows.sql): jobs others wait for keep their result; dependents released.
    PERFORM errands._complete_dependencies(NULL, complete_jobs.job_ids, NULL);
    RETURN QUERY
    WITH d AS (
        DELETE FROM errands._jobs j
        WHERE j.id = ANY(complete_jobs.job_ids)
          AND (j.locked_at IS NULL OR j.locked_at < now() - errands._stale_lock_age())
        RETURNING j
    -- Flow control: a job deleted under a stale lock frees its slots.
    ), slots AS (
        SELECT errands._release_slots(array_agg((d.j).job_queue_id), array_agg((d.j).task_id))
        FROM d WHERE (d.j).locked_at IS NOT NULL
    ), kept AS (
        INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                            attempts, max_attempts, last_error, key, created_at,
                                            state, result, errors, run_at, started_at)
        SELECT (d.j).id, q.queue_name, t.identifier, (d.j).payload, (d.j).priority,
               (d.j).attempts, (d.j).max_attempts, (d.j).last_error, (d.j).key,
               (d.j).created_at, 'completed', NULL, (d.j).errors, (d.j).run_at,
               (d.j).locked_at
        FROM d
        JOIN errands._tasks t ON t.id = (d.j).task_id
        LEFT JOIN errands._queues q ON q.id = (d.j).job_queue_id
        WHERE coalesce(t.retention, errands._retention()) > interval '0'
           OR (d.j).watched -- waiting (17_wait.sql): kept for its waiter
        ON CONFLICT (id) DO NOTHING
    )
    SELECT v.* FROM d, LATERAL errands._job_view(d.j) v, slots ORDER BY v.id;
    PERFORM errands._check_late_dependents(complete_jobs.job_ids); -- flows (25_flows.sql)
    PERFORM errands._jobs_finished(complete_jobs.job_ids); -- waiting hook (17_wait.sql)
END
$$;
COMMENT ON FUNCTION errands.complete_jobs(bigint[]) IS
'Marks the listed jobs as completed and returns them: they move to
errands.finished_jobs (result NULL) when their task''s retention is above 0 or a
waiter watches them (errands.watch_jobs), else are deleted. Running jobs are skipped unless their lock is stale (older than 4
hours).';

CREATE OR REPLACE FUNCTION errands.permanently_fail_jobs(job_ids bigint[], error_message text DEFAULT NULL)
RETURNS SETOF errands.jobs
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY
    WITH u AS (
        UPDATE errands._jobs j
        SET last_error = coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed'),
            -- Not a try of its own: start and worker are a stale lock's, else NULL.
            errors = errands._add_error(j.errors, j.attempts, j.locked_at, j.locked_by,
                coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed')),
            attempts = j.max_attempts,
            updated_at = now()
        WHERE j.id = ANY(permanently_fail_jobs.job_ids)
          AND (j.locked_at IS NULL OR j.locked_at < now() - errands._stale_lock_age())
        RETURNING j
    )
    SELECT v.* FROM u, LATERAL errands._job_view(u.j) v ORDER BY v.id;
    -- Failed for good, as by a worker: run-anyway dependents go on (25_flows.sql)
    -- and waiters hear of it (17_wait.sql).
    PERFORM errands._dependencies_failed(permanently_fail_jobs.job_ids);
    PERFORM errands._jobs_finished(permanently_fail_jobs.job_ids);
END
$$;
COMMENT ON FUNCTION errands.permanently_fail_jobs(bigint[], text) IS
'Fails the listed jobs for good (attempts = max_attempts, last_error = the message
or "Manually marked as failed") and returns them. Running jobs are skipped unless
their lock is stale.';

CREATE OR REPLACE FUNCTION errands.reschedule_jobs(
    job_ids bigint[],
    run_at timestamptz DEFAULT NULL,
    priority integer DEFAULT NULL,
    attempts integer DEFAULT NULL,
    max_attempts integer DEFAULT NULL
) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF reschedule_jobs.priority NOT BETWEEN -32768 AND 32767 THEN
        RAISE EXCEPTION 'errands: priority must be between -32768 and 32767, got %',
            reschedule_jobs.priority USING ERRCODE = '22023';
    END IF;
    IF reschedule_jobs.attempts NOT BETWEEN 0 AND 32767 THEN
        RAISE EXCEPTION 'errands: attempts must be between 0 and 32767, got %',
            reschedule_jobs.attempts USING ERRCODE = '22023';
    END IF;
    IF reschedule_jobs.max_attempts NOT BETWEEN 1 AND 32767 THEN
        RAISE EXCEPTION 'errands: max_attempts must be between 1 and 32767, got %',
            reschedule_jobs.max_attempts USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH u AS (
        UPDATE errands._jobs j
        SET run_at = coalesce(reschedule_jobs.run_at, j.run_at),
            priority = coalesce(reschedule_jobs.priority, j.priority),
            attempts = coalesce(reschedule_jobs.attempts, j.attempts),
            max_attempts = coalesce(reschedule_jobs.max_attempts, j.max_attempts),
            updated_at = now()
        WHERE j.id = ANY(reschedule_jobs.job_ids)
          AND (j.locked_at IS NULL OR j.locked_at < now() - errands._stale_lock_age())
        RETURNING j
    )
    SELECT v.* FROM u, LATERAL errands._job_view(u.j) v ORDER BY v.id;
    IF EXISTS (SELECT 1 FROM errands._jobs j
               WHERE j.id = ANY(reschedule_jobs.job_ids) AND j.is_available
                 AND j.run_at <= now()) THEN
        PERFORM errands._notify();
    END IF;
END
$$;
COMMENT ON FUNCTION errands.reschedule_jobs(bigint[], timestamptz, integer, integer, integer) IS
'Changes run_at, priority, attempts and/or max_attempts (each NULL argument leaves
its column alone) of the listed jobs and returns them. Running jobs are skipped
unless their lock is stale. last_error is kept.';

CREATE OR REPLACE FUNCTION errands.remove_jobs(job_ids bigint[]) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_gone bigint[];
BEGIN
    IF remove_jobs.job_ids IS NULL THEN
        RAISE EXCEPTION 'errands: remove_jobs needs an array of job ids, got NULL'
            USING ERRCODE = '22023';
    END IF;
    -- Running jobs stay (cancel them instead): their worker would report on a
    -- row that is gone and their queue and task slots would need releasing.
    WITH gone AS (
        DELETE FROM errands._jobs j
        WHERE j.id = ANY(remove_jobs.job_ids) AND j.locked_at IS NULL
        RETURNING j.id
    )
    SELECT array_agg(gone.id ORDER BY gone.id) INTO v_gone FROM gone;
    -- As cleanup's DELETE_PERMAFAILED_JOBS: what waited for them will not run,
    -- and waiters (17_wait.sql) hear that they are gone.
    PERFORM errands._cancel_dependents(v_gone, 'was removed');
    PERFORM errands._jobs_finished(v_gone);
    RETURN QUERY SELECT unnest(coalesce(v_gone, '{}'));
END
$$;
COMMENT ON FUNCTION errands.remove_jobs(bigint[]) IS
'Deletes the listed jobs that are not running (nothing is kept in history) and
returns their ids; jobs waiting for them (workflows) are cancelled. Running jobs
are left alone: cancel them with cancel_jobs. NULL: 22023.';

CREATE OR REPLACE FUNCTION errands.force_unlock_workers(worker_ids text[]) RETURNS void
LANGUAGE sql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH jobs AS (
        UPDATE errands._jobs j SET locked_at = NULL, locked_by = NULL
        WHERE j.locked_by = ANY(worker_ids) AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots.
    ), slots AS (
        SELECT errands._release_slots(array_agg(jobs.job_queue_id), array_agg(jobs.task_id))
        FROM jobs
    )
    SELECT FROM slots;
    -- A job whose cancellation was requested (even while the update above waited
    -- for its row: it rechecks cancel_reason) ends cancelled, never runs again.
    SELECT errands._end_requested(ARRAY(
        SELECT j.id FROM errands._jobs j
        WHERE j.locked_by = ANY(worker_ids) AND j.cancel_reason IS NOT NULL));
    -- A queue lock of theirs no locked job accounts for is released outright.
    UPDATE errands._queues q SET running = 0, locked_at = NULL, locked_by = NULL
    WHERE q.locked_by = ANY(worker_ids)
      AND NOT EXISTS (SELECT 1 FROM errands._jobs j
                      WHERE j.job_queue_id = q.id AND j.locked_at IS NOT NULL);
$$;
COMMENT ON FUNCTION errands.force_unlock_workers(text[]) IS
'Unlocks every job and queue locked by the listed workers (use it for workers you
know are dead). attempts is unchanged, so the interrupted try counts; a job whose
cancellation was requested ends cancelled instead.';

CREATE OR REPLACE FUNCTION errands.cleanup(
    tasks text[] DEFAULT ARRAY['GC_JOB_QUEUES'],
    task_identifiers_to_keep text[] DEFAULT '{}'
) RETURNS TABLE (task text, deleted bigint)
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_task text;
    v_count bigint;
    v_gone bigint[];
BEGIN
    SELECT t INTO v_task FROM unnest(cleanup.tasks) t
    WHERE t IS NULL OR t NOT IN ('DELETE_PERMAFAILED_JOBS', 'GC_JOB_QUEUES', 'GC_TASK_IDENTIFIERS')
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: unknown cleanup task %; expected DELETE_PERMAFAILED_JOBS, GC_JOB_QUEUES or GC_TASK_IDENTIFIERS',
            coalesce(quote_literal(v_task), 'NULL') USING ERRCODE = '22023';
    END IF;
    -- Jobs first, so the garbage collection below sees their rows gone.
    IF 'DELETE_PERMAFAILED_JOBS' = ANY(cleanup.tasks) THEN
        WITH gone AS (
            DELETE FROM errands._jobs j WHERE j.locked_at IS NULL AND j.attempts >= j.max_attempts
            RETURNING j.id
        )
        SELECT array_agg(gone.id) INTO v_gone FROM gone;
        v_count := coalesce(cardinality(v_gone), 0);
        -- Flows (25_flows.sql): what waited for them will not run.
        PERFORM errands._cancel_dependents(v_gone, 'failed and was deleted by cleanup');
        task := 'DELETE_PERMAFAILED_JOBS'; deleted := v_count; RETURN NEXT;
    END IF;
    IF 'GC_JOB_QUEUES' = ANY(cleanup.tasks) THEN
        DELETE FROM errands._queues q
        WHERE q.locked_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM errands._jobs j WHERE j.job_queue_id = q.id);
        GET DIAGNOSTICS v_count = ROW_COUNT;
        task := 'GC_JOB_QUEUES'; deleted := v_count; RETURN NEXT;
    END IF;
    IF 'GC_TASK_IDENTIFIERS' = ANY(cleanup.tasks) THEN
        DELETE FROM errands._tasks t
        WHERE t.identifier <> ALL (coalesce(cleanup.task_identifiers_to_keep, '{}'))
          AND NOT EXISTS (SELECT 1 FROM errands._jobs j WHERE j.task_id = t.id);
        GET DIAGNOSTICS v_count = ROW_COUNT;
        task := 'GC_TASK_IDENTIFIERS'; deleted := v_count; RETURN NEXT;
    END IF;
END
$$;
COMMENT ON FUNCTION errands.cleanup(text[], text[]) IS
'Housekeeping; returns a row per task run with the number of rows deleted.
DELETE_PERMAFAILED_JOBS deletes permanently failed jobs (and cancels the jobs
waiting for them, recursively); GC_JOB_QUEUES deletes
unlocked queues no job uses; GC_TASK_IDENTIFIERS deletes task identifiers no job
uses except task_identifiers_to_keep (pass the ones running workers know).';
