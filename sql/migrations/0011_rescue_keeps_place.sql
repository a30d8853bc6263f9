-- A rescued job keeps its place in the queue.
--
-- 0007's _release_workers set run_at = greatest(run_at, now()) on a dead worker's
-- jobs. get_jobs takes jobs in priority, run_at, id order, so with a backlog a
-- rescued job went to the back of it: under `make chaos` (50,000 jobs) the jobs of
-- a SIGKILLed worker were unlocked within 0.55 s (p50) but started again only
-- after 10.5 s (p50; max 25.8 s), against the 5 s target. A locked job's run_at is
-- never in the future (get_jobs takes only due jobs), so keeping it puts the job
-- back where it was: next start p50 0.60 s, max 3.09 s in the same run.
-- Only that assignment differs from 0007.
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

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA errands FROM PUBLIC;
