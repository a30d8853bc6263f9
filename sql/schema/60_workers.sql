-- Crashed-worker rescue. Each live worker registers a row in errands._workers,
-- heartbeats it every few seconds, and holds a session-level advisory lock on
-- errands._worker_lock_key(worker_id) (taken by errands.try_lock_worker) on its
-- LISTEN connection for as long as it runs. errands.rescue_workers (called by every live worker every few seconds,
-- or from pg_cron) declares a worker dead when no session holds its advisory
-- lock (its process or connection died: detected at once) or when its last
-- heartbeat is older than heartbeat_timeout (it hangs), and makes the jobs it
-- had locked runnable again. A worker whose lock is held and whose heartbeat
-- is fresh is never touched, however long its jobs run. A worker without a
-- session of its own (behind a transaction-pooling PgBouncer) registers with
-- session_lock => false and is rescued by heartbeat timeout only.

-- Whether some session of this database holds a worker's advisory lock. The
-- bigint form of pg_advisory_lock shows in pg_locks as classid = high 32 bits,
-- objid = low 32 bits, objsubid = 1. Any session counts, including the caller's.
CREATE OR REPLACE FUNCTION errands._worker_lock_held(worker_id text) RETURNS boolean
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks l,
             LATERAL (SELECT errands._worker_lock_key(worker_id) AS k) key
        WHERE l.locktype = 'advisory'
          AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                            WHERE d.datname = pg_catalog.current_database())
          AND l.classid = ((key.k >> 32) & 4294967295)::oid
          AND l.objid = (key.k & 4294967295)::oid
          AND l.objsubid = 1
          AND l.granted
    )
$$;

-- Unlocks the jobs and queues locked by the given workers: a crashed try counts
-- as an attempt, the job is runnable at once (no backoff) and keeps its place in
-- the queue (a locked job's run_at is never in the future). Returns the job count.
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
                                j.locked_by, reason, j.locked_at),
            errors = errands._add_error(j.errors, j.attempts, j.locked_at, j.locked_by,
                format('errands: worker %s %s while running this job (locked since %s)',
                       j.locked_by, reason, j.locked_at))
        WHERE j.locked_at IS NOT NULL AND j.locked_by = ANY(worker_ids)
          AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots.
    ), slots AS (
        SELECT errands._release_slots(array_agg(jobs.job_queue_id), array_agg(jobs.task_id))
        FROM jobs
    )
    SELECT count(*)::integer INTO v_count FROM jobs, slots;
    -- A job whose cancellation was requested (even while the update above waited
    -- for its row: it rechecks cancel_reason) ends cancelled, never runs again.
    PERFORM errands._end_requested(ARRAY(
        SELECT j.id FROM errands._jobs j
        WHERE j.locked_by = ANY(worker_ids) AND j.cancel_reason IS NOT NULL));
    IF v_count > 0 THEN
        PERFORM pg_notify('errands:jobs', '');
    END IF;
    RETURN v_count;
END
$$;

-- The worker's advisory lock, taken through the API so that its key is computed
-- in one place. A session-level advisory lock belongs to the session, not to the
-- role running the function, so it outlives this SECURITY DEFINER call and stays
-- held until the caller's session ends or unlocks it.
CREATE OR REPLACE FUNCTION errands.try_lock_worker(worker_id text) RETURNS boolean
LANGUAGE sql VOLATILE STRICT SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT pg_catalog.pg_try_advisory_lock(errands._worker_lock_key(try_lock_worker.worker_id))
$$;
COMMENT ON FUNCTION errands.try_lock_worker(text) IS
'Worker API. Takes the session-level advisory lock of worker_id for the calling
session without waiting: true when this session holds it now (taken or already
held), false when another session holds it. A worker holds it on a connection that
lives as long as it does and registers with register_worker; rescue_workers
declares dead a registered worker whose lock no session holds.';

CREATE OR REPLACE FUNCTION errands.register_worker(worker_id text, host text, pid integer,
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
host, pid). session_lock => true: the worker holds its session-level advisory lock
(try_lock_worker) on a connection that lives as long as it does, and rescue_workers declares it dead as soon as no session holds that
lock. session_lock => false (a worker behind a transaction-pooling PgBouncer, which
cannot keep a session): it is declared dead only when its heartbeat is older than
rescue_workers'' heartbeat_timeout.';

-- The three-argument form registers a worker that holds a session lock.
CREATE OR REPLACE FUNCTION errands.register_worker(worker_id text, host text DEFAULT NULL,
                                                   pid integer DEFAULT NULL)
RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT errands.register_worker(register_worker.worker_id, register_worker.host,
                                   register_worker.pid, true)
$$;
COMMENT ON FUNCTION errands.register_worker(text, text, integer) IS
'Worker API. Records (or refreshes) a live worker: id, host, pid, started_at and
last_heartbeat = now(). The worker must also hold, for as long as it runs, its
session-level advisory lock (try_lock_worker) on a connection that lives as long as
it does; rescue_workers treats a worker whose
lock no session holds as dead.';

-- Roles that may register a worker may take its lock: after an upgrade that
-- added try_lock_worker, a role given grant_worker earlier keeps working.
DO $grant_try_lock_worker$
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
        EXECUTE format('GRANT EXECUTE ON FUNCTION errands.try_lock_worker(text) TO %I', v_role);
    END LOOP;
END
$grant_try_lock_worker$;

CREATE OR REPLACE FUNCTION errands.heartbeat(worker_id text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    WITH hb AS (
        UPDATE errands._workers w SET last_heartbeat = now()
        WHERE w.id = heartbeat.worker_id
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM hb)
$$;
COMMENT ON FUNCTION errands.heartbeat(text) IS
'Worker API. Sets the worker''s last_heartbeat to now(). Returns false when the
worker is not registered (it was declared dead: register again).';

-- The default of heartbeat_timeout is errands._heartbeat_timeout() (a default is
-- evaluated with the caller's privileges, so it is written out;
-- tests_sql/016_job_row.sql checks that the two agree).
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
        WHERE (w.session_lock
               AND w.last_heartbeat < now() - errands._rescue_grace()
               AND w.last_heartbeat >= pg_catalog.pg_postmaster_start_time()
               AND NOT errands._worker_lock_held(w.id))
           OR w.last_heartbeat < now() - coalesce(rescue_workers.heartbeat_timeout, errands._heartbeat_timeout())
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
advisory lock no session holds (its process or connection is gone) and whose last
heartbeat is older than 1.5 s but newer than the server''s start (after a restart,
workers get until heartbeat_timeout to reconnect), and each worker whose last
heartbeat is older than heartbeat_timeout; deletes its row, makes the jobs it had
locked runnable at once (keeping their place: run_at unchanged, the interrupted try
counted, last_error says the worker died; a job whose cancellation was requested
ends cancelled instead) and unlocks its queues. Returns the number of jobs made
runnable.';

CREATE OR REPLACE FUNCTION errands.unregister_worker(worker_id text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM errands._workers w WHERE w.id = unregister_worker.worker_id;
    RETURN errands._release_workers(ARRAY[unregister_worker.worker_id], 'exited');
END
$$;
COMMENT ON FUNCTION errands.unregister_worker(text) IS
'Worker API. A clean exit: deletes the worker''s row and releases any job or
queue it still has locked (normally none) as rescue_workers would. Returns the
number of jobs released.';

-- What `errands workers` shows: every registered worker, whether it is alive,
-- and the jobs it has locked.
CREATE OR REPLACE VIEW errands.workers AS
WITH running AS (
    SELECT j.locked_by, array_agg(j.id ORDER BY j.id) AS ids
    FROM errands._jobs j
    -- NOT is_available (implied by the lock): read through jobs_unavailable.
    WHERE j.locked_by IS NOT NULL AND NOT j.is_available
    GROUP BY j.locked_by
)
SELECT w.id,
       w.host,
       w.pid,
       w.started_at,
       w.last_heartbeat,
       CASE WHEN w.session_lock AND NOT errands._worker_lock_held(w.id) THEN 'dead'
            WHEN w.last_heartbeat < now() - errands._heartbeat_timeout() THEN 'hung'
            ELSE 'alive' END AS state,
       coalesce(r.ids, '{}') AS running_job_ids,
       w.session_lock
FROM errands._workers w
LEFT JOIN running r ON r.locked_by = w.id;
COMMENT ON VIEW errands.workers IS
    'Registered workers: state alive, hung (heartbeat older than 30 s) or dead (it holds a session lock (session_lock) and no session holds it any more; rescue_workers() will release its jobs), the ids of the jobs it has locked, and whether it holds a session lock (false: a worker behind a transaction-pooling PgBouncer, rescued by heartbeat timeout only).';
