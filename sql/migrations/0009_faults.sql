-- Surviving faults.
--
-- rescue_workers: a worker whose advisory lock no session holds is declared dead
-- only when (a) its heartbeat is older than 1.5 s -- a live worker whose LISTEN
-- connection (which holds the lock) is reconnecting heartbeats every 0.25 s
-- until it has the lock again -- and (b) it has heartbeated since the server
-- started: after a PostgreSQL restart every lock is gone, and a worker that has
-- not reconnected yet is not known dead; it is then rescued only by the
-- heartbeat timeout. The rest is 0007's function unchanged.

CREATE OR REPLACE FUNCTION errands.rescue_workers(heartbeat_timeout interval DEFAULT interval '30 seconds')
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_dead text[];
    v_count integer := 0;
BEGIN
    -- Skip rows another rescue is handling; a worker just registering is
    -- visible only once its transaction committed (and its lock is held).
    WITH dead AS (
        SELECT w.id FROM errands._workers w
        WHERE (w.last_heartbeat < now() - interval '1.5 seconds'
               AND w.last_heartbeat >= pg_catalog.pg_postmaster_start_time()
               AND NOT errands._worker_lock_held(w.id))
           OR w.last_heartbeat < now() - coalesce(rescue_workers.heartbeat_timeout, interval '30 seconds')
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM errands._workers w USING dead WHERE w.id = dead.id
        RETURNING w.id
    )
    SELECT array_agg(gone.id) INTO v_dead FROM gone;
    IF v_dead IS NOT NULL THEN
        v_count := errands._release_workers(v_dead, 'died');
    END IF;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION errands.rescue_workers(interval) IS
'Worker API (every live worker calls it every few seconds; also fit for pg_cron).
Declares dead each registered worker whose advisory lock no session holds (its
process or connection is gone) and whose last heartbeat is older than 1.5 s but
newer than the server''s start (after a restart, workers get until
heartbeat_timeout to reconnect), or whose last heartbeat is older than
heartbeat_timeout; deletes its row, and makes the jobs it had locked runnable at
once (run_at = greatest(run_at, now()), the interrupted try counted, last_error
says the worker died) and unlocks its queues. Returns the number of jobs rescued.';

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA errands FROM PUBLIC;
