-- Enqueueing: add_jobs (the set-based core), add_job, remove_job, and their
-- private helpers.

CREATE OR REPLACE FUNCTION errands._notify() RETURNS void
LANGUAGE sql AS $$
    -- A constant payload: PostgreSQL folds identical notifications of one
    -- transaction into one, so a statement that adds many jobs wakes
    -- listeners once.
    SELECT pg_notify('errands:jobs', '')
$$;

-- Payload size limit: bytes of the payload's JSON text, kept in the one-row
-- table errands._settings (default 1 MiB; 0 turns the check off). Only the
-- schema owner, or a role it lets run errands.set_max_payload_bytes, can change
-- it: a caller's SET changes nothing.
--
-- add_job reads it through errands._max_payload_bytes(), a constant SQL function
-- (folded into the caller's plan) that _define_max_payload_bytes() regenerates
-- from the table, here at install and on every set_max_payload_bytes: reading the
-- table on each call cost ~2 us, 7% of add_job. Replacing the function makes
-- PostgreSQL replan cached plans that folded it, in every session.
CREATE OR REPLACE FUNCTION errands._define_max_payload_bytes() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM errands._define_constant('_max_payload_bytes', 'bigint',
        coalesce((SELECT s.max_payload_bytes FROM errands._settings s), 1048576)::text);
END
$$;
DO $max_payload_bytes$ BEGIN PERFORM errands._define_max_payload_bytes(); END $max_payload_bytes$;

CREATE OR REPLACE FUNCTION errands.set_max_payload_bytes(bytes bigint) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF bytes IS NULL OR bytes < 0 THEN
        RAISE EXCEPTION 'errands: max_payload_bytes must be 0 (no limit) or a positive number of bytes, got %',
            coalesce(bytes::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- The row lock serializes concurrent calls (two CREATE OR REPLACE of one
    -- function at once fail with 'tuple concurrently updated').
    UPDATE errands._settings s SET max_payload_bytes = bytes;
    IF NOT FOUND THEN
        INSERT INTO errands._settings (max_payload_bytes) VALUES (bytes);
    END IF;
    PERFORM errands._define_max_payload_bytes();
    RETURN bytes;
END
$$;
COMMENT ON FUNCTION errands.set_max_payload_bytes(bigint) IS
'Sets the largest payload (bytes of its JSON text) add_job and add_jobs accept, for
every role and session of the database; 0 turns the limit off (default 1048576,
1 MiB). Returns the new limit. Only the schema owner (or a superuser) may run it,
or a role the owner grants EXECUTE on it to; the setting
errands.max_payload_bytes of versions up to 16 is ignored.';

-- Whether the role calling the public API may read jobs (SELECT on the
-- errands.jobs view: grant_read, grant_worker, the owner). Inside a SECURITY
-- DEFINER function current_user is the function's owner, so the caller is the
-- session's role: the one SET ROLE chose (as PostgREST does per request), else
-- the session user. An application's own SECURITY DEFINER function in between
-- does not count: its owner's privileges never unlock payloads for a web role.
CREATE OR REPLACE FUNCTION errands._caller_reads_jobs() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT pg_catalog.has_table_privilege(
        CASE WHEN pg_catalog.current_setting('role') = 'none'
             THEN session_user::text
             ELSE pg_catalog.current_setting('role') END,
        'errands.jobs'::regclass, 'SELECT')
$$;

-- j with payload, last_error and errors replaced: what a caller that may not read jobs
-- gets back instead of another job's payload (payload NULL: not sent by it).
CREATE OR REPLACE FUNCTION errands._hide_payload(j errands.jobs, payload json) RETURNS errands.jobs
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    j.payload := _hide_payload.payload;
    j.last_error := NULL;
    j.errors := NULL; -- error messages, as last_error
    RETURN j;
END
$$;

-- Whether a spec breaks a rule of _validate_specs (NULL counts as fine, as in a
-- WHERE clause); max_payload_bytes NULL: no size limit. add_job checks its
-- scalar arguments with it (the planner inlines it) and pays for _validate_specs,
-- which names the bad field, only when one fails.
CREATE OR REPLACE FUNCTION errands._spec_is_bad(
    identifier text, queue_name text, job_key text, max_attempts integer,
    priority integer, flags text[], payload json, max_payload_bytes bigint
) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT identifier IS NULL
        OR length(identifier) NOT BETWEEN 1 AND 128
        OR length(queue_name) NOT BETWEEN 1 AND 128
        OR length(job_key) NOT BETWEEN 1 AND 512
        OR max_attempts NOT BETWEEN 1 AND 32767
        OR priority NOT BETWEEN -32768 AND 32767
        OR array_position(flags, NULL) IS NOT NULL
        OR octet_length(payload::text) > max_payload_bytes
$$;

-- Raise 22023 naming the first bad spec's bad field; return when all are fine.
CREATE OR REPLACE FUNCTION errands._validate_specs(specs errands.job_spec[]) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
    s record;
    v_where text;
    v_problem text;
    v_limit bigint := errands._max_payload_bytes();
BEGIN
    IF v_limit <= 0 THEN
        v_limit := NULL;
    END IF;
    SELECT u.*, u.ordinality AS ord,
           CASE WHEN v_limit IS NOT NULL THEN octet_length(u.payload::text) END AS payload_bytes
    INTO s
    FROM unnest(specs) WITH ORDINALITY u
    WHERE errands._spec_is_bad(u.identifier, u.queue_name, u.job_key, u.max_attempts,
                               u.priority, u.flags, u.payload, v_limit)
    ORDER BY u.ordinality
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_where := CASE WHEN cardinality(specs) > 1 THEN format(' (spec %s)', s.ord) ELSE '' END;
    v_problem := CASE
        WHEN s.identifier IS NULL THEN 'identifier must not be NULL'
        WHEN length(s.identifier) NOT BETWEEN 1 AND 128 THEN
            format('identifier must be 1 to 128 characters, got %s', errands._describe(s.identifier))
        WHEN length(s.queue_name) NOT BETWEEN 1 AND 128 THEN
            format('queue_name must be 1 to 128 characters, got %s', errands._describe(s.queue_name))
        WHEN length(s.job_key) NOT BETWEEN 1 AND 512 THEN
            format('job_key must be 1 to 512 characters, got %s', errands._describe(s.job_key))
        WHEN s.max_attempts NOT BETWEEN 1 AND 32767 THEN
            format('max_attempts must be between 1 and 32767, got %s', s.max_attempts)
        WHEN s.priority NOT BETWEEN -32768 AND 32767 THEN
            format('priority must be between -32768 and 32767, got %s', s.priority)
        WHEN array_position(s.flags, NULL) IS NOT NULL THEN
            format('flags must not contain NULL, got %s', s.flags)
        ELSE format('payload must be at most %s bytes (errands.set_max_payload_bytes), got %s bytes',
                    v_limit, s.payload_bytes)
    END;
    RAISE EXCEPTION 'errands: %', v_problem || v_where USING ERRCODE = '22023';
END
$$;

-- Create the task and queue rows a set of specs refers to. The specs are grouped
-- by (identifier, queue_name) first and only the distinct names are checked; the
-- INSERTs run only when a row is missing: even an INSERT of nothing costs ~0.1 ms.
CREATE OR REPLACE FUNCTION errands._ensure_tasks_and_queues(specs errands.job_spec[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_tasks text[];
    v_queues text[];
BEGIN
    SELECT array_agg(d.identifier),
           array_agg(d.queue_name) FILTER (WHERE d.queue_name IS NOT NULL)
    INTO v_tasks, v_queues
    FROM (SELECT s.identifier, s.queue_name FROM unnest(specs) s GROUP BY 1, 2) d;
    -- The INSERTs run only when a name is missing: even an INSERT of nothing
    -- costs ~0.1 ms.
    IF EXISTS (SELECT 1 FROM unnest(v_tasks) n(identifier)
               WHERE NOT EXISTS (SELECT 1 FROM errands._tasks t
                                 WHERE t.identifier = n.identifier)) THEN
        -- A new task takes the limits set for its name or a matching pattern
        -- (35_flow_control.sql); the SHARE lock waits for a limit change in flight.
        LOCK TABLE errands._task_limits IN SHARE MODE;
        INSERT INTO errands._tasks (identifier, concurrency, rate_limit, rate_period, paused)
        SELECT n.identifier, v.concurrency, v.rate_limit, v.rate_period, v.paused
        FROM (SELECT DISTINCT n.identifier FROM unnest(v_tasks) n(identifier)) n
        CROSS JOIN LATERAL errands._task_limit_values(n.identifier) v
        WHERE NOT EXISTS (SELECT 1 FROM errands._tasks t WHERE t.identifier = n.identifier)
        ON CONFLICT DO NOTHING;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(v_queues) n(queue_name)
               WHERE NOT EXISTS (SELECT 1 FROM errands._queues q
                                 WHERE q.queue_name = n.queue_name)) THEN
        LOCK TABLE errands._queue_limits IN SHARE MODE;
        INSERT INTO errands._queues (queue_name, concurrency, rate_limit, rate_period, paused)
        SELECT n.queue_name, v.concurrency, v.rate_limit, v.rate_period, v.paused
        FROM (SELECT DISTINCT n.queue_name FROM unnest(v_queues) n(queue_name)) n
        CROSS JOIN LATERAL errands._queue_limit_values(n.queue_name) v
        WHERE NOT EXISTS (SELECT 1 FROM errands._queues q WHERE q.queue_name = n.queue_name)
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;

-- Keyed specs go through the job-key decision table; the bulk path (no keys) is
-- one INSERT ... SELECT ... RETURNING whose rows are returned ordered by id, with
-- work_mem raised for the call so that the returned rows stay in memory.
CREATE OR REPLACE FUNCTION errands.add_jobs(
    specs errands.job_spec[],
    job_key_preserve_run_at boolean DEFAULT false
) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
-- Row estimates for big spec arrays are poor and push the plan over the JIT
-- thresholds: JIT made a 20,000-spec call take 1,340 ms instead of 678 ms.
SET jit = off
-- The returned rows are collected before the caller reads them: 100,000 jobs
-- (~20 MB) spilled to temporary files at the default 4 MB.
SET work_mem = '64MB'
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_keyed errands._keyed_spec[];
    v_pending text[];
    v_done text[];
    v_rounds int := 0;
    v_ords bigint[];
    v_ids bigint[];
BEGIN
    IF specs IS NULL OR cardinality(specs) = 0 THEN
        RETURN;
    END IF;
    PERFORM errands._validate_specs(specs);
    PERFORM errands._ensure_tasks_and_queues(specs);
    -- Queue heads (32_queue_heads.sql): jobs added to several named queues may
    -- update several queue rows, in spec order; lock them in id order first so
    -- that two such calls cannot deadlock on each other's rows.
    IF (SELECT min(s.queue_name) <> max(s.queue_name) FROM unnest(specs) s) THEN
        PERFORM FROM errands._queues q
        WHERE q.queue_name IN (SELECT s.queue_name FROM unnest(specs) s)
        ORDER BY q.id FOR NO KEY UPDATE;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM unnest(specs) s WHERE s.job_key IS NOT NULL) THEN
        -- Fast path, no keys: one INSERT, rows returned straight from it.
        IF EXISTS (SELECT 1 FROM unnest(specs) s WHERE coalesce(s.run_at, v_now) <= v_now) THEN
            PERFORM errands._notify();
        END IF;
        -- The identity default numbers the rows as the ordered SELECT feeds
        -- them, so ids follow input order and ORDER BY id returns them so.
        RETURN QUERY
        WITH ins AS (
            INSERT INTO errands._jobs (task_id, job_queue_id, payload, priority, run_at,
                                       max_attempts, flags, created_at, updated_at)
            SELECT t.id, q.id, coalesce(s.payload, '{}'::json),
                   coalesce(s.priority, 0), coalesce(s.run_at, v_now),
                   coalesce(s.max_attempts, 25),
                   -- skip the (not inlined) call for the usual flag-less job
                   CASE WHEN cardinality(s.flags) > 0 THEN errands._flags(s.flags) END,
                   v_now, v_now
            FROM unnest(specs) WITH ORDINALITY s
            JOIN errands._tasks t ON t.identifier = s.identifier
            LEFT JOIN errands._queues q ON q.queue_name = s.queue_name
            ORDER BY s.ordinality
            RETURNING *
        )
        SELECT (errands._job_row(ins::errands._jobs, q.queue_name, t.identifier)).*
        FROM ins
        JOIN errands._tasks t ON t.id = ins.task_id
        LEFT JOIN errands._queues q ON q.id = ins.job_queue_id
        ORDER BY ins.id;
        RETURN;
    END IF;

    -- Keyed specs: fold duplicates of a key into one (Graphile fails with
    -- 21000 on them).
    WITH k AS (
        SELECT s.*, s.ordinality AS ord FROM unnest(specs) WITH ORDINALITY s
        WHERE s.job_key IS NOT NULL
    ), g AS (
        SELECT k.job_key, max(k.ord) AS last_ord, count(*) AS n,
               max(k.ord) FILTER (WHERE k.payload IS NULL OR json_typeof(k.payload) <> 'array')
                   AS last_plain_ord
        FROM k GROUP BY k.job_key
    )
    SELECT array_agg(ROW(
               g.job_key, l.identifier, l.queue_name,
               CASE WHEN g.n = 1 OR g.last_plain_ord = g.last_ord
                    THEN coalesce(l.payload, '{}'::json)
                    ELSE coalesce((SELECT json_agg(e.value ORDER BY k2.ord, e.ordinality)
                                   FROM k k2, json_array_elements(k2.payload) WITH ORDINALITY e
                                   WHERE k2.job_key = g.job_key
                                     AND k2.ord > coalesce(g.last_plain_ord, 0)),
                                  '[]'::json)
               END,
               g.last_plain_ord IS NULL,
               coalesce(l.priority, 0), coalesce(l.run_at, v_now), coalesce(l.max_attempts, 25),
               errands._flags(l.flags), l.ord)::errands._keyed_spec ORDER BY g.job_key),
           array_agg(g.job_key ORDER BY g.job_key)
    INTO v_keyed, v_pending
    FROM g JOIN k l ON l.job_key = g.job_key AND l.ord = g.last_ord;

    -- Retry until every key is written: a keyed row can be locked by a worker
    -- or inserted by another session between our statements (Graphile's #580
    -- returns an all-NULL row then).
    LOOP
        v_rounds := v_rounds + 1;
        IF v_rounds > 100 THEN
            RAISE EXCEPTION 'errands: add_jobs could not settle job keys %', v_pending
                USING ERRCODE = '40001';
        END IF;
        -- Lock the existing rows in key order (no deadlock between two
        -- add_jobs calls); this waits for a fetch that is locking them.
        PERFORM 1 FROM errands._jobs j WHERE j.key = ANY(v_pending) ORDER BY j.key FOR UPDATE;
        -- A running or permanently failed job gives up its key and never
        -- retries; a new job takes the key.
        UPDATE errands._jobs j
        SET key = NULL, attempts = j.max_attempts, updated_at = v_now
        WHERE j.key = ANY(v_pending) AND NOT j.is_available;

        WITH todo AS (
            SELECT k.*, t.id AS task_id, q.id AS queue_id
            FROM unnest(v_keyed) k
            JOIN errands._tasks t ON t.identifier = k.identifier
            LEFT JOIN errands._queues q ON q.queue_name = k.queue_name
            WHERE k.key = ANY(v_pending)
        ), upd AS (
            UPDATE errands._jobs j
            SET task_id = todo.task_id,
                job_queue_id = todo.queue_id,
                payload = CASE WHEN todo.merge AND json_typeof(j.payload) = 'array'
                               THEN (j.payload::jsonb || todo.payload::jsonb)::json
                               ELSE todo.payload END,
                priority = todo.priority,
                max_attempts = todo.max_attempts,
                flags = todo.flags,
                run_at = CASE WHEN job_key_preserve_run_at AND j.attempts = 0
                              THEN j.run_at ELSE todo.run_at END,
                attempts = 0,
                last_error = NULL,
                errors = NULL,
                timeout = NULL,
                revision = j.revision + 1,
                updated_at = v_now
            FROM todo
            WHERE j.key = todo.key AND j.is_available
            RETURNING j.key
        ), ins AS (
            INSERT INTO errands._jobs (task_id, job_queue_id, payload, priority, run_at,
                                       max_attempts, flags, key, created_at, updated_at)
            SELECT todo.task_id, todo.queue_id, todo.payload, todo.priority, todo.run_at,
                   todo.max_attempts, todo.flags, todo.key, v_now, v_now
            FROM todo
            WHERE NOT EXISTS (SELECT 1 FROM errands._jobs j WHERE j.key = todo.key)
            ORDER BY todo.ord
            ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING
            RETURNING key
        )
        SELECT array_agg(x.key) INTO v_done
        FROM (SELECT upd.key FROM upd UNION ALL SELECT ins.key FROM ins) x;

        v_pending := ARRAY(SELECT p FROM unnest(v_pending) p
                           WHERE p <> ALL (coalesce(v_done, '{}'::text[])));
        EXIT WHEN cardinality(v_pending) = 0;
    END LOOP;

    -- Specs without a key.
    WITH src AS MATERIALIZED (
        SELECT nextval('errands._jobs_id_seq'::regclass) AS id, s.ordinality AS ord,
               s.payload, s.priority, s.run_at, s.max_attempts, s.flags,
               t.id AS task_id, q.id AS queue_id
        FROM unnest(specs) WITH ORDINALITY s
        JOIN errands._tasks t ON t.identifier = s.identifier
        LEFT JOIN errands._queues q ON q.queue_name = s.queue_name
        WHERE s.job_key IS NULL
        ORDER BY s.ordinality
    ), ins AS (
        INSERT INTO errands._jobs (id, task_id, job_queue_id, payload, priority, run_at,
                                   max_attempts, flags, created_at, updated_at)
        SELECT src.id, src.task_id, src.queue_id, coalesce(src.payload, '{}'::json),
               coalesce(src.priority, 0), coalesce(src.run_at, v_now),
               coalesce(src.max_attempts, 25),
                   -- skip the (not inlined) call for the usual flag-less job
                   CASE WHEN cardinality(src.flags) > 0 THEN errands._flags(src.flags) END,
                   v_now, v_now
        FROM src
        RETURNING id
    )
    SELECT array_agg(src.ord), array_agg(src.id) INTO v_ords, v_ids
    FROM src JOIN ins ON ins.id = src.id;

    -- One row per spec, in input order; specs sharing a key share the row.
    SELECT array_agg(coalesce(u.id, j.id) ORDER BY s.ordinality) INTO v_ids
    FROM unnest(specs) WITH ORDINALITY s
    LEFT JOIN unnest(v_ords, v_ids) u(ord, id) ON u.ord = s.ordinality
    LEFT JOIN errands._jobs j ON j.key = s.job_key;

    IF EXISTS (SELECT 1 FROM unnest(v_ids) x(id) JOIN errands._jobs j ON j.id = x.id
               WHERE j.run_at <= v_now AND j.is_available) THEN
        PERFORM errands._notify();
    END IF;

    -- Only an array payload merged into an existing job's can differ from what
    -- this call wrote: without one (the usual case) nothing needs hiding.
    IF NOT EXISTS (SELECT 1 FROM unnest(v_keyed) k WHERE k.merge)
       OR errands._caller_reads_jobs() THEN
        RETURN QUERY
        SELECT v.* FROM unnest(v_ids) WITH ORDINALITY x(id, ord)
        JOIN errands.jobs v ON v.id = x.id
        ORDER BY x.ord;
        RETURN;
    END IF;
    -- A caller that may not read jobs gets a keyed job's payload back only when
    -- it is what this call wrote (not when its array was merged into an
    -- existing job's): payload NULL otherwise.
    -- The rows are read as above (MATERIALIZED: the extra joins must not change
    -- that plan), then masked; LATERAL: (f(v)).* would call f once per column.
    RETURN QUERY
    WITH r AS MATERIALIZED (
        SELECT v AS job, x.ord FROM unnest(v_ids) WITH ORDINALITY x(id, ord)
        JOIN errands.jobs v ON v.id = x.id
    )
    SELECT h.*
    FROM r
    JOIN unnest(specs) WITH ORDINALITY s ON s.ordinality = r.ord
    LEFT JOIN unnest(v_keyed) k ON k.key = s.job_key
    CROSS JOIN LATERAL errands._hide_payload(
        r.job, CASE WHEN s.job_key IS NULL OR (r.job).payload::text = k.payload::text
                    THEN (r.job).payload END) h
    ORDER BY r.ord;
END
$$;
COMMENT ON FUNCTION errands.add_jobs(errands.job_spec[], boolean) IS
'Adds many jobs in one statement and returns one row per spec, in input order.
Specs with a job_key follow add_job''s replace mode (preserve_run_at when
job_key_preserve_run_at is true); specs sharing a key in one call fold into one
job (the later spec wins; array payloads concatenate). Notifies errands:jobs once
when a job is runnable now. A caller that may not read jobs (no SELECT on
errands.jobs) gets payload NULL for a keyed job whose payload is not the one this
call wrote.';

-- With a job key add_job goes through add_jobs (the job-key decision table lives
-- there); without one it is a single INSERT whose arguments are checked on the
-- scalars first (_spec_is_bad), and whose row is built from the inserted row and
-- the arguments (no lookup of the task and queue names).
CREATE OR REPLACE FUNCTION errands.add_job(
    identifier text,
    payload json DEFAULT NULL,
    queue_name text DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    job_key text DEFAULT NULL,
    priority integer DEFAULT NULL,
    flags text[] DEFAULT NULL,
    job_key_mode text DEFAULT 'replace',
    timeout interval DEFAULT NULL,
    depends_on bigint[] DEFAULT NULL
) RETURNS errands.jobs
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_mode text := coalesce(add_job.job_key_mode, 'replace');
    v_result errands.jobs;
    v_row errands._jobs;
    v_now timestamptz := now();
    v_task_id integer;
    v_queue_id integer;
    v_limit bigint;
BEGIN
    IF v_mode NOT IN ('replace', 'preserve_run_at', 'unsafe_dedupe', 'abort_replace') THEN
        RAISE EXCEPTION 'errands: invalid job_key_mode %; expected replace, preserve_run_at, unsafe_dedupe or abort_replace',
            quote_literal(v_mode) USING ERRCODE = '22023';
    END IF;
    IF add_job.timeout <= interval '0' THEN
        RAISE EXCEPTION 'errands: timeout must be positive, got %', add_job.timeout
            USING ERRCODE = '22023';
    END IF;
    IF add_job.job_key IS NOT NULL AND v_mode = 'abort_replace' THEN
        -- Graphile's #546: the running job holding the key gets its cancellation
        -- requested. Its row stays locked by this transaction, so no fetch can
        -- take it between the request and add_jobs giving its key away.
        PERFORM errands._request_cancel(ARRAY(
            SELECT j.id FROM errands._jobs j WHERE j.key = add_job.job_key FOR UPDATE),
            format('errands: cancelled by abort_replace of job key %s', add_job.job_key));
    END IF;
    -- Flows (25_flows.sql): a job that waits for others.
    IF cardinality(add_job.depends_on) > 0 THEN
        RETURN errands._add_dependent_job(add_job.identifier, add_job.payload, add_job.queue_name,
            add_job.run_at, add_job.max_attempts, add_job.job_key, add_job.priority,
            add_job.flags, v_mode, add_job.timeout, add_job.depends_on);
    END IF;
    IF add_job.job_key IS NOT NULL AND v_mode <> 'unsafe_dedupe' THEN
        -- The job-key decision table lives in add_jobs (which clears timeout
        -- on a replace, like every attribute it is not given).
        SELECT * INTO v_result
        FROM errands.add_jobs(ARRAY[ROW(add_job.identifier, add_job.payload,
                                         add_job.queue_name, add_job.run_at,
                                         add_job.max_attempts, add_job.job_key,
                                         add_job.priority, add_job.flags)::errands.job_spec],
                              v_mode = 'preserve_run_at');
        IF add_job.timeout IS NOT NULL THEN
            UPDATE errands._jobs j SET timeout = add_job.timeout
            WHERE j.id = v_result.id
            RETURNING j.* INTO v_row;
            -- add_jobs decided what payload the caller may see.
            RETURN errands._hide_payload(errands._job_view(v_row), v_result.payload);
        END IF;
        RETURN v_result;
    END IF;

    -- No key: one plain INSERT (the common case, kept short). unsafe_dedupe:
    -- a job with this key, in any state, absorbs the call.
    -- _validate_specs' conditions on the scalars: only a call that fails them
    -- pays for the spec array and the query that names the problem.
    v_limit := errands._max_payload_bytes();
    IF errands._spec_is_bad(add_job.identifier, add_job.queue_name, add_job.job_key,
                            add_job.max_attempts, add_job.priority, add_job.flags,
                            add_job.payload, CASE WHEN v_limit > 0 THEN v_limit END)
    THEN
        PERFORM errands._validate_specs(ARRAY[ROW(add_job.identifier, add_job.payload,
            add_job.queue_name, add_job.run_at, add_job.max_attempts, add_job.job_key,
            add_job.priority, add_job.flags)::errands.job_spec]);
    END IF;
    -- Look the task and queue up first; only a missing one costs an INSERT.
    SELECT t.id INTO v_task_id FROM errands._tasks t WHERE t.identifier = add_job.identifier;
    IF add_job.queue_name IS NOT NULL THEN
        SELECT q.id INTO v_queue_id FROM errands._queues q WHERE q.queue_name = add_job.queue_name;
    END IF;
    IF v_task_id IS NULL OR (add_job.queue_name IS NOT NULL AND v_queue_id IS NULL) THEN
        PERFORM errands._ensure_tasks_and_queues(ARRAY[ROW(add_job.identifier, NULL,
            add_job.queue_name, NULL, NULL, NULL, NULL, NULL)::errands.job_spec]);
        SELECT t.id INTO v_task_id FROM errands._tasks t WHERE t.identifier = add_job.identifier;
        SELECT q.id INTO v_queue_id FROM errands._queues q WHERE q.queue_name = add_job.queue_name;
    END IF;
    INSERT INTO errands._jobs AS j (task_id, job_queue_id, payload, priority, run_at,
                                    max_attempts, flags, key, created_at, updated_at, timeout)
    VALUES (v_task_id, v_queue_id,
            coalesce(add_job.payload, '{}'::json), coalesce(add_job.priority, 0),
            coalesce(add_job.run_at, v_now), coalesce(add_job.max_attempts, 25),
            CASE WHEN cardinality(add_job.flags) > 0 THEN errands._flags(add_job.flags) END,
            add_job.job_key, v_now, v_now, add_job.timeout)
    ON CONFLICT (key) WHERE key IS NOT NULL DO UPDATE SET revision = j.revision + 1, updated_at = v_now
    RETURNING j.* INTO v_row;
    IF v_row.revision = 0 AND v_row.run_at <= v_now THEN
        PERFORM errands._notify();
    END IF;
    IF v_row.revision > 0 AND NOT errands._caller_reads_jobs() THEN
        -- unsafe_dedupe found an existing job: not this caller's payload.
        RETURN errands._hide_payload(errands._job_view(v_row), NULL);
    END IF;
    IF v_row.task_id = v_task_id AND v_row.job_queue_id IS NOT DISTINCT FROM v_queue_id THEN
        -- Our task and queue (not another job's, as an unsafe_dedupe match may
        -- be): the names are the arguments, no lookup needed.
        RETURN errands._job_row(v_row, add_job.queue_name, add_job.identifier);
    END IF;
    RETURN errands._job_view(v_row);
END
$$;
COMMENT ON FUNCTION errands.add_job(text, json, text, timestamptz, integer, text, integer, text[], text, interval, bigint[]) IS
'Adds one job (Graphile Worker''s add_job). Defaults: payload {}, run_at now(),
max_attempts 25, priority 0. With a job_key, job_key_mode decides: replace
updates a pending job with the key in place (every attribute, attempts reset,
revision + 1), preserve_run_at does the same but keeps run_at of a job that has
not been tried, unsafe_dedupe only bumps revision of any job holding the key,
abort_replace is replace that also requests the cancellation of a running job
holding the key (errands.cancel_jobs). A running or permanently failed job with
the key loses it and a new job is inserted. Array payloads of the same key concatenate (batch jobs). timeout
(errands only, positive): each try of this job may run that long (overrides the
task''s timeout). A caller that may not read jobs (no SELECT on errands.jobs)
never gets another job''s payload back: payload and last_error are NULL when
unsafe_dedupe found an existing job or a batch payload was merged. depends_on
(errands only; not with a job_key): ids of jobs this one waits for (state
waiting) until each has completed; each must be unfinished, or completed and
still in errands.finished_jobs (22023 otherwise, naming it).';

CREATE OR REPLACE FUNCTION errands.remove_job(job_key text) RETURNS errands.jobs
LANGUAGE plpgsql STRICT
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row errands._jobs;
BEGIN
    -- FOR UPDATE waits for a fetch that is locking the job right now.
    SELECT * INTO v_row FROM errands._jobs j WHERE j.key = remove_job.job_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_row.locked_at IS NULL OR v_row.locked_at < now() - errands._stale_lock_age() THEN
        DELETE FROM errands._jobs j WHERE j.id = v_row.id;
        -- Flow control: a job removed under a stale lock frees its slots.
        IF v_row.locked_at IS NOT NULL THEN
            PERFORM errands._release_slots(ARRAY[v_row.job_queue_id], ARRAY[v_row.task_id]);
        END IF;
        -- Flows (25_flows.sql): what waited for it will not run.
        PERFORM errands._cancel_dependents(ARRAY[v_row.id], 'was removed');
    ELSE
        -- Running: it cannot be stopped, so it loses its key and will not retry.
        UPDATE errands._jobs j
        SET key = NULL, attempts = j.max_attempts, updated_at = now()
        WHERE j.id = v_row.id
        RETURNING j.* INTO v_row;
    END IF;
    IF errands._caller_reads_jobs() THEN
        RETURN errands._job_view(v_row);
    END IF;
    RETURN errands._hide_payload(errands._job_view(v_row), NULL);
END
$$;
COMMENT ON FUNCTION errands.remove_job(text) IS
'Deletes the job holding job_key when it is not running and returns it. A running
job instead loses its key and gets attempts = max_attempts, so it will not be
retried. Returns NULL when no job has the key. A caller that may not read jobs
(no SELECT on errands.jobs) gets the row with payload and last_error NULL. Jobs
waiting for a deleted job (depends_on, flows) are cancelled, recursively.';

-- OpenTelemetry (issue 15): the trace context of the span that enqueued jobs.
-- errands.tracing calls it in the statement that adds the jobs (a CTE around
-- add_job / add_jobs, so no extra round trip); any SQL client may do the same
-- after add_job. A job that is running keeps the context its try started with.
CREATE OR REPLACE FUNCTION errands.set_traceparent(job_ids bigint[], traceparent text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    IF set_traceparent.traceparent IS NULL
       OR set_traceparent.traceparent !~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
    THEN
        RAISE EXCEPTION 'errands: traceparent must be a W3C traceparent (version-trace_id-parent_id-flags in lowercase hex, 55 characters), got %',
            errands._describe(set_traceparent.traceparent) USING ERRCODE = '22023';
    END IF;
    UPDATE errands._jobs j SET traceparent = set_traceparent.traceparent
    WHERE j.id = ANY (set_traceparent.job_ids) AND j.locked_at IS NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION errands.set_traceparent(bigint[], text) IS
'Stores a W3C traceparent (the enqueuing span''s trace context) with the given jobs
that are not running; a worker with tracing enabled continues that trace when it
runs them. Returns the number of jobs changed. errands.tracing calls it with
add_job/add_jobs in one statement.';

-- Roles made with grant_enqueue before set_traceparent existed get it too (a
-- traced Python enqueue calls it).
DO $grant_set_traceparent$
DECLARE
    v_role name;
BEGIN
    FOR v_role IN
        SELECT DISTINCT r.rolname
        FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a, pg_catalog.pg_roles r
        WHERE p.oid = 'errands.add_jobs(errands.job_spec[], boolean)'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee = r.oid AND a.grantee <> p.proowner
        ORDER BY 1
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION errands.set_traceparent(bigint[], text) TO %I',
                       v_role);
    END LOOP;
END
$grant_set_traceparent$;
