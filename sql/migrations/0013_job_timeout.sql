-- Per-job timeout: a job may carry its own limit for each try, which overrides
-- the task's @task(timeout=...) (the worker fails a try that runs longer with
-- TaskTimeout, like the task-level limit).
--
-- Stored in errands._jobs.timeout and shown as the last column of errands.jobs.
-- Set by add_job's new trailing parameter `timeout interval DEFAULT NULL`: calls
-- written for Graphile Worker's add_job are unaffected. add_jobs cannot set it
-- (Graphile's job_spec type stays as it is: adding a field would break every
-- ROW(...)::job_spec cast written for it); replacing a keyed job through add_jobs
-- clears it like any attribute the spec leaves out.
--
-- The functions below that list errands.jobs' columns one by one are restated
-- with the new column (their bodies otherwise unchanged from the migration
-- named above each); CREATE OR REPLACE resets SECURITY DEFINER, search_path and
-- other SET clauses, so each restates them.

ALTER TABLE errands._jobs ADD COLUMN timeout interval
    CONSTRAINT jobs_timeout_positive CHECK (timeout > interval '0');

-- Also (add_job and add_jobs are restated below anyway): job keys are unique
-- through a partial index. The UNIQUE constraint indexed every job, keyless
-- ones included, so each insert and each lock (an UPDATE that cannot be HOT)
-- wrote an entry for a NULL key nobody looks up. The ON CONFLICT clauses name
-- the index predicate so the partial index is their arbiter.
ALTER TABLE errands._jobs DROP CONSTRAINT _jobs_key_key;
CREATE UNIQUE INDEX jobs_key ON errands._jobs (key) WHERE key IS NOT NULL;

CREATE OR REPLACE VIEW errands.jobs AS
SELECT j.id,
       q.queue_name,
       t.identifier AS task_identifier,
       j.payload,
       j.priority::integer AS priority,
       j.run_at,
       j.attempts::integer AS attempts,
       j.max_attempts::integer AS max_attempts,
       j.last_error,
       j.created_at,
       j.updated_at,
       j.key,
       j.locked_at,
       j.locked_by,
       j.revision,
       j.flags,
       j.timeout
FROM errands._jobs j
JOIN errands._tasks t ON t.id = j.task_id
LEFT JOIN errands._queues q ON q.id = j.job_queue_id;

-- 0002_add_jobs.sql
CREATE OR REPLACE FUNCTION errands._job_view(j errands._jobs) RETURNS errands.jobs
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v errands.jobs;
BEGIN
    SELECT j.id,
           (SELECT q.queue_name FROM errands._queues q WHERE q.id = j.job_queue_id),
           (SELECT t.identifier FROM errands._tasks t WHERE t.id = j.task_id),
           j.payload, j.priority::integer, j.run_at, j.attempts::integer,
           j.max_attempts::integer, j.last_error, j.created_at, j.updated_at, j.key,
           j.locked_at, j.locked_by, j.revision, j.flags, j.timeout
    INTO v;
    RETURN v;
END
$$;

-- 0002_add_jobs.sql (SECURITY DEFINER and search_path from 0006_security.sql)
CREATE OR REPLACE FUNCTION errands.add_jobs(
    specs errands.job_spec[],
    job_key_preserve_run_at boolean DEFAULT false
) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
-- Row estimates for big spec arrays are poor and push the plan over the JIT
-- thresholds: JIT made a 20,000-spec call take 1,340 ms instead of 678 ms.
SET jit = off
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

    IF NOT EXISTS (SELECT 1 FROM unnest(specs) s WHERE s.job_key IS NOT NULL) THEN
        -- Fast path, no keys: one INSERT, rows returned straight from it.
        IF EXISTS (SELECT 1 FROM unnest(specs) s WHERE coalesce(s.run_at, v_now) <= v_now) THEN
            PERFORM errands._notify();
        END IF;
        RETURN QUERY
        WITH src AS MATERIALIZED (
            -- nextval runs after the sort, so ids follow input order.
            SELECT nextval('errands._jobs_id_seq'::regclass) AS id, s.ordinality AS ord,
                   s.identifier, s.queue_name, s.payload, s.priority, s.run_at,
                   s.max_attempts, s.flags, t.id AS task_id, q.id AS queue_id
            FROM unnest(specs) WITH ORDINALITY s
            JOIN errands._tasks t ON t.identifier = s.identifier
            LEFT JOIN errands._queues q ON q.queue_name = s.queue_name
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
            RETURNING *
        )
        SELECT ins.id, src.queue_name, src.identifier, ins.payload, ins.priority::integer,
               ins.run_at, ins.attempts::integer, ins.max_attempts::integer, ins.last_error,
               ins.created_at, ins.updated_at, ins.key, ins.locked_at, ins.locked_by,
               ins.revision, ins.flags, ins.timeout
        FROM ins JOIN src ON src.id = ins.id
        ORDER BY src.ord;
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

    RETURN QUERY
    SELECT v.* FROM unnest(v_ids) WITH ORDINALITY x(id, ord)
    JOIN errands.jobs v ON v.id = x.id
    ORDER BY x.ord;
END
$$;

-- add_job (0002_add_jobs.sql) with the trailing timeout parameter. The old
-- signature is renamed first so that the roles allowed to call it can be
-- allowed to call the new one, then dropped (two add_job functions that differ
-- only by a defaulted parameter would make every call without it ambiguous).
ALTER FUNCTION errands.add_job(text, json, text, timestamptz, integer, text, integer, text[], text)
    RENAME TO _add_job_0002;
CREATE FUNCTION errands.add_job(
    identifier text,
    payload json DEFAULT NULL,
    queue_name text DEFAULT NULL,
    run_at timestamptz DEFAULT NULL,
    max_attempts integer DEFAULT NULL,
    job_key text DEFAULT NULL,
    priority integer DEFAULT NULL,
    flags text[] DEFAULT NULL,
    job_key_mode text DEFAULT 'replace',
    timeout interval DEFAULT NULL
) RETURNS errands.jobs
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_spec errands.job_spec := ROW(add_job.identifier, add_job.payload, add_job.queue_name,
                                   add_job.run_at, add_job.max_attempts, add_job.job_key,
                                   add_job.priority, add_job.flags);
    v_mode text := coalesce(add_job.job_key_mode, 'replace');
    v_result errands.jobs;
    v_row errands._jobs;
    v_now timestamptz := now();
    v_task_id integer;
    v_queue_id integer;
BEGIN
    IF v_mode NOT IN ('replace', 'preserve_run_at', 'unsafe_dedupe') THEN
        RAISE EXCEPTION 'errands: invalid job_key_mode %; expected replace, preserve_run_at or unsafe_dedupe',
            quote_literal(v_mode) USING ERRCODE = '22023';
    END IF;
    IF add_job.timeout <= interval '0' THEN
        RAISE EXCEPTION 'errands: timeout must be positive, got %', add_job.timeout
            USING ERRCODE = '22023';
    END IF;
    IF add_job.job_key IS NOT NULL AND v_mode <> 'unsafe_dedupe' THEN
        -- The job-key decision table lives in add_jobs (which clears timeout
        -- on a replace, like every attribute it is not given).
        SELECT * INTO v_result
        FROM errands.add_jobs(ARRAY[v_spec], v_mode = 'preserve_run_at');
        IF add_job.timeout IS NOT NULL THEN
            UPDATE errands._jobs j SET timeout = add_job.timeout
            WHERE j.id = v_result.id
            RETURNING j.* INTO v_row;
            RETURN errands._job_view(v_row);
        END IF;
        RETURN v_result;
    END IF;

    -- No key: one plain INSERT (the common case, kept short). unsafe_dedupe:
    -- a job with this key, in any state, absorbs the call.
    PERFORM errands._validate_specs(ARRAY[v_spec]);
    -- Look the task and queue up first; only a missing one costs an INSERT.
    SELECT t.id INTO v_task_id FROM errands._tasks t WHERE t.identifier = add_job.identifier;
    IF add_job.queue_name IS NOT NULL THEN
        SELECT q.id INTO v_queue_id FROM errands._queues q WHERE q.queue_name = add_job.queue_name;
    END IF;
    IF v_task_id IS NULL OR (add_job.queue_name IS NOT NULL AND v_queue_id IS NULL) THEN
        PERFORM errands._ensure_tasks_and_queues(ARRAY[v_spec]);
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
    RETURN errands._job_view(v_row);
END
$$;

COMMENT ON FUNCTION errands.add_job(text, json, text, timestamptz, integer, text, integer, text[], text, interval) IS
'Adds one job (Graphile Worker''s add_job). Defaults: payload {}, run_at now(),
max_attempts 25, priority 0. With a job_key, job_key_mode decides: replace
updates a pending job with the key in place (every attribute, attempts reset,
revision + 1), preserve_run_at does the same but keeps run_at of a job that has
not been tried, unsafe_dedupe only bumps revision of any job holding the key.
A running or permanently failed job with the key loses it and a new job is
inserted. Array payloads of the same key concatenate (batch jobs). timeout
(errands only, positive): each try of this job may run that long (overrides the
task''s timeout).';

DO $grant$
DECLARE
    v_role name;
BEGIN
    FOR v_role IN
        SELECT DISTINCT r.rolname
        FROM pg_catalog.pg_proc p,
             LATERAL pg_catalog.aclexplode(p.proacl) a
             JOIN pg_catalog.pg_roles r ON r.oid = a.grantee
        WHERE p.oid = 'errands._add_job_0002(text, json, text, timestamptz, integer, text, integer, text[], text)'::regprocedure
          AND a.privilege_type = 'EXECUTE'
          AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION errands.add_job(text, json, text, timestamptz, integer, text, integer, text[], text, interval) TO %I',
                       v_role);
    END LOOP;
END
$grant$;
DROP FUNCTION errands._add_job_0002(text, json, text, timestamptz, integer, text, integer, text[], text);

-- 0006_security.sql: the new add_job signature
CREATE OR REPLACE FUNCTION errands.grant_enqueue(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_fn text;
    v_name name := (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = grant_enqueue.role);
BEGIN
    IF v_name IS NULL THEN
        RAISE EXCEPTION 'errands: grant_enqueue needs a role, got NULL' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA errands TO %I', v_name);
    FOREACH v_fn IN ARRAY ARRAY[
        'errands.add_job(text, json, text, timestamptz, integer, text, integer, text[], text, interval)',
        'errands.add_jobs(errands.job_spec[], boolean)',
        'errands.remove_job(text)'
    ] LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I',
                       v_fn::regprocedure, v_name);
    END LOOP;
END
$$;

-- 0004_worker.sql (SECURITY DEFINER and search_path from 0006_security.sql)
CREATE OR REPLACE FUNCTION errands.worker_fail_jobs(
    worker_id text,
    job_ids bigint[],
    error_messages text[],
    payloads json[] DEFAULT NULL
) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(worker_fail_jobs.job_ids) IS DISTINCT FROM cardinality(worker_fail_jobs.error_messages)
       OR (worker_fail_jobs.payloads IS NOT NULL
           AND cardinality(worker_fail_jobs.payloads) <> cardinality(worker_fail_jobs.job_ids)) THEN
        RAISE EXCEPTION 'errands: worker_fail_jobs needs one error message (and payload, if any) per job: % ids, % messages, % payloads',
            cardinality(worker_fail_jobs.job_ids), cardinality(worker_fail_jobs.error_messages),
            coalesce(cardinality(worker_fail_jobs.payloads)::text, 'no')
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH f AS (
        SELECT * FROM unnest(worker_fail_jobs.job_ids, worker_fail_jobs.error_messages,
                             worker_fail_jobs.payloads) AS f(id, message, payload)
    ), failed AS (
        UPDATE errands._jobs j
        SET last_error = f.message,
            -- Exponential backoff: e^attempts seconds, capped at e^10 (~6 h).
            run_at = greatest(now(), j.run_at) + exp(least(j.attempts, 10)) * interval '1 second',
            locked_at = NULL,
            locked_by = NULL,
            payload = coalesce(f.payload, j.payload)
        FROM f
        WHERE j.id = f.id AND j.locked_by = worker_fail_jobs.worker_id
        RETURNING j.*
    ), unlocked AS (
        UPDATE errands._queues q SET locked_at = NULL, locked_by = NULL
        WHERE q.id IN (SELECT failed.job_queue_id FROM failed)
          AND q.locked_by = worker_fail_jobs.worker_id
    )
    SELECT failed.id, q.queue_name, t.identifier, failed.payload, failed.priority::integer,
           failed.run_at, failed.attempts::integer, failed.max_attempts::integer,
           failed.last_error, failed.created_at, failed.updated_at, failed.key,
           failed.locked_at, failed.locked_by, failed.revision, failed.flags, failed.timeout
    FROM failed
    JOIN errands._tasks t ON t.id = failed.task_id
    LEFT JOIN errands._queues q ON q.id = failed.job_queue_id
    ORDER BY failed.id;
END
$$;

-- 0010_fetch_batches.sql
CREATE OR REPLACE FUNCTION errands.get_jobs(
    worker_id text,
    task_identifiers text[],
    job_count integer DEFAULT 1,
    forbidden_flags text[] DEFAULT NULL
) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
-- CREATE OR REPLACE resets these attributes: restate what 0006 set.
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Planning the candidate query costs ~1 ms, several times its execution for a
-- small batch, and PL/pgSQL kept re-planning it (custom plans). Its generic
-- plan is the same index walk, but its cost estimate (unknown LIMIT) crossed
-- jit_above_cost: JIT compilation took ~68 ms per call. Plan once, no JIT.
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    v_task_ids integer[];
    v_forbidden text[] := CASE WHEN cardinality(get_jobs.forbidden_flags) > 0
                               THEN get_jobs.forbidden_flags END;
    v_now timestamptz := now();
    v_ids bigint[];          -- jobs taken
    v_heads bigint[];        -- head jobs of named queues (then: those locked)
    v_head_queues integer[]; -- their queues (then: those locked)
BEGIN
    IF get_jobs.worker_id IS NULL OR get_jobs.worker_id = '' THEN
        RAISE EXCEPTION 'errands: worker_id must not be empty, got %',
            errands._describe(get_jobs.worker_id) USING ERRCODE = '22023';
    END IF;
    IF get_jobs.job_count IS NULL OR get_jobs.job_count < 1 THEN
        RAISE EXCEPTION 'errands: job_count must be at least 1, got %',
            coalesce(get_jobs.job_count::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(t.id) INTO v_task_ids
    FROM errands._tasks t WHERE t.identifier = ANY(get_jobs.task_identifiers);
    IF v_task_ids IS NULL THEN
        RETURN;
    END IF;

    -- 1. The best job_count candidates: jobs without a queue (row-locked as they
    --    are read, SKIP LOCKED) and the head job of each unlocked named queue.
    SELECT array_agg(c.id) FILTER (WHERE c.job_queue_id IS NULL),
           array_agg(c.id) FILTER (WHERE c.job_queue_id IS NOT NULL),
           array_agg(c.job_queue_id) FILTER (WHERE c.job_queue_id IS NOT NULL)
    INTO v_ids, v_heads, v_head_queues
    FROM (
        SELECT u.id, u.job_queue_id, u.priority, u.run_at
        FROM unnest(v_task_ids) AS tid(task_id)
        CROSS JOIN LATERAL (
            -- One index probe per distinct priority of the task (a loose index
            -- scan); with the priority fixed, run_at <= now ends the range scan,
            -- so future-scheduled jobs are never walked.
            WITH RECURSIVE prio(p) AS (
                SELECT min(j.priority) FROM errands._jobs j
                WHERE j.task_id = tid.task_id AND j.is_available AND j.job_queue_id IS NULL
                UNION ALL
                SELECT (SELECT min(j.priority) FROM errands._jobs j
                        WHERE j.task_id = tid.task_id AND j.is_available
                          AND j.job_queue_id IS NULL AND j.priority > prio.p)
                FROM prio WHERE prio.p IS NOT NULL
            )
            SELECT d.id, d.job_queue_id, d.priority, d.run_at
            FROM prio CROSS JOIN LATERAL (
                SELECT j.id, j.job_queue_id, j.priority, j.run_at
                FROM errands._jobs j
                WHERE j.task_id = tid.task_id AND j.priority = prio.p
                  AND j.is_available AND j.job_queue_id IS NULL
                  AND j.run_at <= v_now
                  AND (v_forbidden IS NULL OR j.flags IS NULL OR NOT j.flags ?| v_forbidden)
                ORDER BY j.run_at, j.id
                LIMIT get_jobs.job_count
                FOR UPDATE SKIP LOCKED
            ) d
            ORDER BY d.priority, d.run_at, d.id
            LIMIT get_jobs.job_count
        ) u
        UNION ALL
        -- Named queues: only the head job of a queue nothing else runs from;
        -- never two jobs of one queue in a batch (Graphile's #621).
        SELECT h.id, h.job_queue_id, h.priority, h.run_at
        FROM errands._queues q
        CROSS JOIN LATERAL (
            SELECT j.id, j.job_queue_id, j.priority, j.run_at
            FROM errands._jobs j
            WHERE j.job_queue_id = q.id
              AND j.is_available AND j.run_at <= v_now
              AND j.task_id = ANY(v_task_ids)
              AND (v_forbidden IS NULL OR j.flags IS NULL OR NOT j.flags ?| v_forbidden)
            ORDER BY j.priority, j.run_at, j.id
            LIMIT 1
        ) h
        WHERE q.locked_at IS NULL
        ORDER BY 3, 4, 1
        LIMIT get_jobs.job_count
    ) c;

    -- 2. Queue heads: lock their queues (one another fetch holds is skipped; one
    --    locked since our snapshot fails the locked_at recheck), then the jobs.
    IF v_heads IS NOT NULL THEN
        SELECT array_agg(s.id) INTO v_head_queues FROM (
            SELECT q.id FROM errands._queues q
            WHERE q.id = ANY(v_head_queues) AND q.locked_at IS NULL
            FOR UPDATE SKIP LOCKED
        ) s;
        SELECT array_agg(s.id), array_agg(s.job_queue_id) INTO v_heads, v_head_queues FROM (
            SELECT j.id, j.job_queue_id FROM errands._jobs j
            WHERE j.id = ANY(v_heads) AND j.is_available
              AND j.job_queue_id = ANY(v_head_queues)
            FOR UPDATE SKIP LOCKED
        ) s;
        IF v_heads IS NOT NULL THEN
            v_ids := v_ids || v_heads;
            UPDATE errands._queues q
            SET locked_at = v_now, locked_by = get_jobs.worker_id
            WHERE q.id = ANY(v_head_queues);
        END IF;
    END IF;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- 3. Take them.
    RETURN QUERY
    WITH taken AS (
        UPDATE errands._jobs j
        SET attempts = j.attempts + 1, locked_at = v_now, locked_by = get_jobs.worker_id
        WHERE j.id = ANY(v_ids)
        RETURNING j.*
    )
    SELECT tk.id, q.queue_name, t.identifier, tk.payload, tk.priority::integer, tk.run_at,
           tk.attempts::integer, tk.max_attempts::integer, tk.last_error, tk.created_at,
           tk.updated_at, tk.key, tk.locked_at, tk.locked_by, tk.revision, tk.flags, tk.timeout
    FROM taken tk
    JOIN errands._tasks t ON t.id = tk.task_id
    LEFT JOIN errands._queues q ON q.id = tk.job_queue_id
    ORDER BY tk.priority, tk.run_at, tk.id;
END
$$;

REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA errands FROM PUBLIC;
