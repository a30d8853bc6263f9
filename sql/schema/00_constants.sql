-- Constants more than one function (and the Python worker) must agree on, each
-- defined once here. IMMUTABLE SQL functions of one expression: the planner
-- folds a call into the constant.

-- A lock older than this belongs to a worker presumed dead: admin functions
-- may touch the job (Graphile's 4 hours; heartbeats rescue far sooner).
CREATE OR REPLACE FUNCTION errands._stale_lock_age() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '4 hours' $$;

-- A worker whose last heartbeat is older than this is declared dead by
-- rescue_workers (the default of its heartbeat_timeout) and shown as hung by the
-- errands.workers view.
CREATE OR REPLACE FUNCTION errands._heartbeat_timeout() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '30 seconds' $$;

-- How long a worker that holds a session lock may go without a heartbeat before
-- rescue_workers acts on its missing advisory lock. A worker whose lock is being
-- re-taken (its LISTEN connection reconnecting) heartbeats much more often than
-- this, so a reconnect in progress is never mistaken for a death.
CREATE OR REPLACE FUNCTION errands._rescue_grace() RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT interval '1.5 seconds' $$;

-- The advisory lock key of a worker: pg_advisory_lock(errands._worker_lock_key(id)).
CREATE OR REPLACE FUNCTION errands._worker_lock_key(worker_id text) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT pg_catalog.hashtextextended(worker_id, 0)
$$;

-- Settings read on hot paths (the payload limit, the retention) are folded into
-- constant SQL functions rather than read from errands._settings on every call;
-- their setters regenerate them with this. Replacing a function makes every
-- session replan the cached plans that folded it.
CREATE OR REPLACE FUNCTION errands._define_constant(name text, type text, value text)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION errands.%I() RETURNS %s '
        'LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT %L::%s $f$',
        name, type, value, type);
END
$$;

-- Whether some task has a concurrency limit (false: releasing a job skips the
-- task-slot update). A placeholder here, for the functions defined before
-- 35_flow_control.sql, which redefines it from errands._task_limits.
CREATE OR REPLACE FUNCTION errands._task_limits_on() RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT false $$;
