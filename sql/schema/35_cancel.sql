-- Cancelling jobs. (Stand-in of the flows branch: only errands._cancel_now, with
-- the name, signature and meaning the cancel work defines; that work replaces
-- this file.)

-- Cancels the listed jobs that are unfinished and not running, now: each leaves
-- errands._jobs and is kept in errands._finished_jobs as cancelled (last_error =
-- reason) when its task's retention is above 0. Returns the ids cancelled.
CREATE OR REPLACE FUNCTION errands._cancel_now(job_ids bigint[], reason text) RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_ids bigint[];
BEGIN
    WITH gone AS (
        DELETE FROM errands._jobs j
        WHERE j.id = ANY(_cancel_now.job_ids) AND j.locked_at IS NULL
        RETURNING j.*
    ), kept AS (
        INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                            attempts, max_attempts, last_error, key, created_at,
                                            state, result)
        SELECT gone.id, q.queue_name, t.identifier, gone.payload, gone.priority, gone.attempts,
               gone.max_attempts, _cancel_now.reason, gone.key, gone.created_at, 'cancelled', NULL
        FROM gone
        JOIN errands._tasks t ON t.id = gone.task_id
        LEFT JOIN errands._queues q ON q.id = gone.job_queue_id
        WHERE coalesce(t.retention, errands._retention()) > interval '0'
        ON CONFLICT (id) DO NOTHING
    )
    SELECT array_agg(gone.id ORDER BY gone.id) INTO v_ids FROM gone;
    RETURN coalesce(v_ids, '{}');
END
$$;
