-- Proposed change (not a migration): a rescued job keeps its place in the queue.
--
-- errands._release_workers (migration 0007) sets run_at = greatest(run_at, now())
-- on the jobs of a dead worker. get_jobs takes jobs in priority, run_at, id order,
-- so with a backlog a rescued job goes to the back of it: under make chaos the
-- jobs of a SIGKILLed worker are unlocked within 0.7 s (p50) but start again only
-- after 26 s (p50; max 134 s), against the target of 5 s (p50 2 s). Keeping run_at
-- (a locked job's run_at is never in the future: get_jobs only takes due jobs)
-- puts it back where it was. Try it under chaos with
--   make chaos CHAOS_ARGS="--extra-sql chaos/sql/rescue_keeps_run_at.sql"
-- The only change from 0007 is the dropped `run_at = greatest(j.run_at, now())`.
CREATE OR REPLACE FUNCTION errands._release_workers(worker_ids text[], reason text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_count integer;
BEGIN
    WITH jobs AS (
        UPDATE errands._jobs j
        SET locked_at = NULL,
            locked_by = NULL,
            updated_at = now(),
            last_error = format('errands: worker %s %s while running this job (locked since %s)',
                                j.locked_by, reason, j.locked_at)
        WHERE j.locked_at IS NOT NULL AND j.locked_by = ANY(worker_ids)
        RETURNING j.id
    ), queues AS (
        UPDATE errands._queues q SET locked_at = NULL, locked_by = NULL
        WHERE q.locked_by = ANY(worker_ids)
    )
    SELECT count(*)::integer INTO v_count FROM jobs;
    IF v_count > 0 THEN
        PERFORM pg_notify('errands:jobs', '');
    END IF;
    RETURN v_count;
END
$$;
