-- Workers without a session of their own (PgBouncer in transaction pooling mode,
-- `errands worker --no-listen`). Such a worker cannot hold the session-level
-- advisory lock of 0007_workers.sql: in transaction pooling every transaction may
-- run on another server connection, so a session lock would stay behind on a
-- connection other clients then use. It registers with session_lock => false,
-- heartbeats as usual, and is declared dead only when its heartbeat is older than
-- rescue_workers' heartbeat_timeout.

ALTER TABLE errands._workers ADD COLUMN session_lock boolean NOT NULL DEFAULT true;

CREATE FUNCTION errands.register_worker(worker_id text, host text, pid integer,
                                        session_lock boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF register_worker.worker_id IS NULL OR register_worker.worker_id = '' THEN
        RAISE EXCEPTION 'errands: worker_id must not be empty' USING ERRCODE = '22023';
    END IF;
    IF register_worker.session_lock IS NULL THEN
        RAISE EXCEPTION 'errands: session_lock must be true or false, got NULL'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO errands._workers AS w (id, host, pid, started_at, last_heartbeat, session_lock)
    VALUES (register_worker.worker_id, register_worker.host, register_worker.pid, now(), now(),
            register_worker.session_lock)
    ON CONFLICT (id) DO UPDATE
        SET host = EXCLUDED.host, pid = EXCLUDED.pid, last_heartbeat = now(),
            session_lock = EXCLUDED.session_lock;
END
$$;
COMMENT ON FUNCTION errands.register_worker(text, text, integer, boolean) IS
'Worker API. Records (or refreshes) a live worker like register_worker(worker_id,
host, pid). session_lock => true: the worker holds the session-level advisory lock
pg_advisory_lock(hashtextextended(worker_id, 0)) on a connection that lives as long
as it does, and rescue_workers declares it dead as soon as no session holds that
lock. session_lock => false (a worker behind a transaction-pooling PgBouncer, which
cannot keep a session): it is declared dead only when its heartbeat is older than
rescue_workers'' heartbeat_timeout.';

CREATE OR REPLACE FUNCTION errands.register_worker(worker_id text, host text DEFAULT NULL,
                                                   pid integer DEFAULT NULL)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT errands.register_worker(register_worker.worker_id, register_worker.host,
                                   register_worker.pid, true)
$$;

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
        WHERE (w.session_lock AND NOT errands._worker_lock_held(w.id))
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
Declares dead each registered worker that holds a session lock (session_lock) whose
advisory lock no session holds (its process or connection is gone), and each worker
whose last heartbeat is older than heartbeat_timeout; deletes its row, and makes the
jobs it had locked runnable at once (run_at = greatest(run_at, now()), the
interrupted try counted, last_error says the worker died) and unlocks its queues.
Returns the number of jobs rescued.';

CREATE OR REPLACE VIEW errands.workers AS
SELECT w.id,
       w.host,
       w.pid,
       w.started_at,
       w.last_heartbeat,
       CASE WHEN w.session_lock AND NOT errands._worker_lock_held(w.id) THEN 'dead'
            WHEN w.last_heartbeat < now() - interval '30 seconds' THEN 'hung'
            ELSE 'alive' END AS state,
       coalesce((SELECT array_agg(j.id ORDER BY j.id) FROM errands._jobs j
                 WHERE j.locked_by = w.id), '{}') AS running_job_ids,
       w.session_lock
FROM errands._workers w;
COMMENT ON VIEW errands.workers IS
    'Registered workers: state alive, hung (heartbeat older than 30 s) or dead (it holds a session lock (session_lock) and no session holds it any more; rescue_workers() will release its jobs), the ids of the jobs it has locked, and whether it holds a session lock (false: a worker behind a transaction-pooling PgBouncer, rescued by heartbeat timeout only).';

-- Roles given the worker functions by grant_worker before this migration get the
-- new register_worker too.
DO $grant$
DECLARE
    v_role name;
BEGIN
    FOR v_role IN
        SELECT DISTINCT r.rolname
        FROM pg_catalog.pg_proc p,
             LATERAL pg_catalog.aclexplode(p.proacl) a
             JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE p.oid = 'errands.register_worker(text, text, integer)'::regprocedure
          AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION errands.register_worker(text, text, integer, boolean) TO %I',
                       v_role);
    END LOOP;
END
$grant$;

-- Functions created above got the built-in PUBLIC grant: take it back.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA errands FROM PUBLIC;
