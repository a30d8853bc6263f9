-- Crashed-worker rescue. Each live worker registers a row in errands._workers,
-- heartbeats it every few seconds, and holds a session-level advisory lock on
-- errands._worker_lock_key(worker_id) on its LISTEN connection for as long as it
-- runs. errands.rescue_workers (called by every live worker every few seconds,
-- or from pg_cron) declares a worker dead when no session holds its advisory
-- lock (its process or connection died: detected at once) or when its last
-- heartbeat is older than heartbeat_timeout (it hangs), and makes the jobs it
-- had locked runnable again. A worker whose lock is held and whose heartbeat
-- is fresh is never touched, however long its jobs run.

CREATE TABLE errands._workers (
    id text PRIMARY KEY
        CONSTRAINT workers_id_length CHECK (length(id) BETWEEN 1 AND 512),
    host text,
    pid integer,
    started_at timestamptz NOT NULL DEFAULT now(),
    last_heartbeat timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE errands._workers ENABLE ROW LEVEL SECURITY;

-- The advisory lock key of a worker: pg_advisory_lock(errands._worker_lock_key(id)).
CREATE FUNCTION errands._worker_lock_key(worker_id text) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT pg_catalog.hashtextextended(worker_id, 0)
$$;

-- Whether some session of this database holds a worker's advisory lock. The
-- bigint form of pg_advisory_lock shows in pg_locks as classid = high 32 bits,
-- objid = low 32 bits, objsubid = 1. Any session counts, including the caller's.
CREATE FUNCTION errands._worker_lock_held(worker_id text) RETURNS boolean
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
-- as an attempt, the job is runnable at once (no backoff). Returns the job count.
CREATE FUNCTION errands._release_workers(worker_ids text[], reason text) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_count integer;
BEGIN
    WITH jobs AS (
        UPDATE errands._jobs j
        SET locked_at = NULL,
            locked_by = NULL,
            run_at = greatest(j.run_at, now()),
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

CREATE FUNCTION errands.register_worker(worker_id text, host text DEFAULT NULL, pid integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF register_worker.worker_id IS NULL OR register_worker.worker_id = '' THEN
        RAISE EXCEPTION 'errands: worker_id must not be empty' USING ERRCODE = '22023';
    END IF;
    INSERT INTO errands._workers AS w (id, host, pid, started_at, last_heartbeat)
    VALUES (register_worker.worker_id, register_worker.host, register_worker.pid, now(), now())
    ON CONFLICT (id) DO UPDATE
        SET host = EXCLUDED.host, pid = EXCLUDED.pid, last_heartbeat = now();
END
$$;
COMMENT ON FUNCTION errands.register_worker(text, text, integer) IS
'Worker API. Records (or refreshes) a live worker: id, host, pid, started_at and
last_heartbeat = now(). The worker must also hold, for as long as it runs, the
session-level advisory lock pg_advisory_lock(hashtextextended(worker_id, 0)) on a
connection that lives as long as it does; rescue_workers treats a worker whose
lock no session holds as dead.';

CREATE FUNCTION errands.heartbeat(worker_id text) RETURNS boolean
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

CREATE FUNCTION errands.rescue_workers(heartbeat_timeout interval DEFAULT interval '30 seconds')
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
        WHERE NOT errands._worker_lock_held(w.id)
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
process or connection is gone) or whose last heartbeat is older than
heartbeat_timeout, deletes its row, and makes the jobs it had locked runnable at
once (run_at = greatest(run_at, now()), the interrupted try counted, last_error
says the worker died) and unlocks its queues. Returns the number of jobs rescued.';

CREATE FUNCTION errands.unregister_worker(worker_id text) RETURNS integer
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

REVOKE ALL ON errands._workers FROM PUBLIC;
-- Functions created above got the built-in PUBLIC grant: take it back.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA errands FROM PUBLIC;
