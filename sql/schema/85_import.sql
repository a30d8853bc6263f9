-- Moving over from Graphile Worker: copy a Graphile Worker schema's jobs and
-- known crontab state into Errands (errands import-graphile is a thin wrapper).

-- The Graphile tables the import reads (0.13 and later; tested with 0.18).
CREATE OR REPLACE FUNCTION errands._graphile_tables() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['_private_jobs', '_private_tasks', '_private_job_queues',
                 '_private_known_crontabs']
$$;

-- Check that schema holds Graphile Worker's tables and that the caller sees all
-- their rows: they have row-level security with no policies, so a role that is
-- neither their owner nor a superuser (or BYPASSRLS) would read none and the
-- import would silently copy nothing.
CREATE OR REPLACE FUNCTION errands._graphile_check(schema text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_table text;
    v_rel regclass;
    v_owner text;
BEGIN
    IF schema IS NULL THEN
        RAISE EXCEPTION 'errands: import_graphile: schema must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF to_regnamespace(quote_ident(schema)) IS NULL THEN
        RAISE EXCEPTION 'errands: import_graphile: schema % does not exist', quote_literal(schema)
            USING ERRCODE = '3F000';
    END IF;
    FOREACH v_table IN ARRAY errands._graphile_tables() LOOP
        v_rel := to_regclass(format('%I.%I', schema, v_table));
        IF v_rel IS NULL THEN
            RAISE EXCEPTION 'errands: import_graphile: schema % has no table %: not a Graphile Worker 0.13 or later schema (start a Graphile Worker 0.16 or later once against it to migrate it)',
                quote_literal(schema), v_table
                USING ERRCODE = '42P01';
        END IF;
        SELECT r.rolname INTO v_owner
        FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner, pg_roles me
        WHERE c.oid = v_rel AND me.rolname = current_user
          AND c.relrowsecurity
          AND NOT (me.rolsuper OR me.rolbypassrls
                   OR (c.relowner = me.oid AND NOT c.relforcerowsecurity));
        IF FOUND THEN
            RAISE EXCEPTION 'errands: import_graphile: role % would not see the rows of % (row-level security): run the import as its owner % or a superuser',
                quote_ident(current_user), v_rel, quote_ident(v_owner)
                USING ERRCODE = '42501';
        END IF;
    END LOOP;
END
$$;

-- Why each outcome: pending, scheduled, retrying (failed before, attempts left)
-- and failed (no attempts left) are copied, as the state they have in Graphile
-- (the same rules as errands.jobs.state). already_imported: an earlier run
-- copied it. running: locked by a Graphile worker; skipped, because it is
-- running now and copying it would run it twice; once Graphile's workers are
-- stopped it is unlocked (failed) or gone (completed), and a new run copies
-- what is left. key_conflict: an Errands job already has its key.
CREATE OR REPLACE FUNCTION errands._graphile_source(schema text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format($q$
        SELECT j.id AS source_id, j.created_at, t.identifier, q.queue_name, j.payload,
               j.priority, j.run_at, j.attempts, j.max_attempts, j.last_error, j.key,
               j.revision, j.flags,
               CASE WHEN EXISTS (SELECT 1 FROM errands._graphile_imports m
                                 WHERE m.source_schema = %2$L AND m.source_id = j.id
                                   AND m.source_created_at = j.created_at)
                         THEN 'already_imported'
                    WHEN j.locked_at IS NOT NULL THEN 'running'
                    WHEN j.key IS NOT NULL
                         AND EXISTS (SELECT 1 FROM errands._jobs e WHERE e.key = j.key)
                         THEN 'key_conflict'
                    WHEN j.attempts >= j.max_attempts THEN 'failed'
                    WHEN j.attempts > 0 THEN 'retrying'
                    WHEN j.run_at > now() THEN 'scheduled'
                    ELSE 'pending' END AS outcome
        FROM %1$I._private_jobs j
        JOIN %1$I._private_tasks t ON t.id = j.task_id
        LEFT JOIN %1$I._private_job_queues q ON q.id = j.job_queue_id
    $q$, schema, schema)
$$;

CREATE OR REPLACE FUNCTION errands.import_graphile(
    schema text DEFAULT 'graphile_worker',
    dry_run boolean DEFAULT false
) RETURNS TABLE (item text, count bigint)
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_src text;
    v_counts jsonb;
    v_crontabs bigint;
    v_items CONSTANT text[] := ARRAY['pending', 'scheduled', 'retrying', 'failed', 'crontabs',
                                     'already_imported', 'running', 'key_conflict'];
    v_cron_changes CONSTANT text := $q$
        FROM %1$I._private_known_crontabs g
        LEFT JOIN errands._known_crontabs k ON k.identifier = g.identifier
        WHERE k.identifier IS NULL OR k.known_since > g.known_since
           OR g.last_execution > coalesce(k.last_execution, '-infinity')
    $q$;
BEGIN
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'errands: import_graphile: dry_run must not be NULL' USING ERRCODE = '22004';
    END IF;
    PERFORM errands._graphile_check(schema);
    -- Graphile workers and enqueuers wait until this transaction ends, and a
    -- concurrent import waits for this one: the counts below are what is written.
    EXECUTE format('LOCK TABLE %1$I._private_jobs, %1$I._private_known_crontabs IN SHARE ROW EXCLUSIVE MODE',
                   schema);
    v_src := errands._graphile_source(schema);
    EXECUTE format('SELECT coalesce(jsonb_object_agg(outcome, n), ''{}'') FROM (SELECT outcome, count(*) AS n FROM (%s) s GROUP BY outcome) c',
                   v_src) INTO v_counts;
    EXECUTE format('SELECT count(*) ' || v_cron_changes, schema) INTO v_crontabs;
    v_counts := v_counts || jsonb_build_object('crontabs', v_crontabs);

    IF NOT dry_run THEN
        v_src := format('SELECT * FROM (%s) s WHERE outcome IN (''pending'', ''scheduled'', ''retrying'', ''failed'')',
                        v_src);
        EXECUTE format('INSERT INTO errands._tasks (identifier) SELECT DISTINCT identifier FROM (%s) s
                        ON CONFLICT (identifier) DO NOTHING', v_src);
        EXECUTE format('INSERT INTO errands._queues (queue_name) SELECT DISTINCT queue_name FROM (%s) s
                        WHERE queue_name IS NOT NULL ON CONFLICT (queue_name) DO NOTHING', v_src);
        -- New queues and tasks take the limits set for their names or patterns.
        IF EXISTS (SELECT 1 FROM errands._queue_limits) THEN
            PERFORM errands._apply_queue_limits('*');
        END IF;
        IF EXISTS (SELECT 1 FROM errands._task_limits) THEN
            LOCK TABLE errands._jobs IN EXCLUSIVE MODE;
            PERFORM errands._apply_task_limits('*');
        END IF;
        -- Ids are drawn first so the mapping can pair each source job with its copy.
        EXECUTE format($q$
            WITH src AS MATERIALIZED (
                SELECT s.*, nextval(pg_get_serial_sequence('errands._jobs', 'id')) AS job_id
                FROM (%s) s
            ), copied AS (
                INSERT INTO errands._jobs (id, job_queue_id, task_id, payload, priority, run_at,
                                           attempts, max_attempts, last_error, created_at,
                                           key, revision, flags)
                SELECT src.job_id, q.id, t.id, src.payload, src.priority, src.run_at,
                       src.attempts, src.max_attempts, src.last_error, src.created_at,
                       src.key, src.revision, src.flags
                FROM src
                JOIN errands._tasks t ON t.identifier = src.identifier
                LEFT JOIN errands._queues q ON q.queue_name = src.queue_name
            )
            INSERT INTO errands._graphile_imports (source_schema, source_id, source_created_at, job_id)
            SELECT %L, src.source_id, src.created_at, src.job_id FROM src
        $q$, v_src, schema);
        EXECUTE format($q$
            INSERT INTO errands._known_crontabs AS k (identifier, known_since, last_execution)
            SELECT g.identifier, g.known_since, g.last_execution %s
            ON CONFLICT (identifier) DO UPDATE
            SET known_since = least(k.known_since, excluded.known_since),
                last_execution = greatest(k.last_execution, excluded.last_execution)
        $q$, format(v_cron_changes, schema));
        IF coalesce((v_counts->>'pending')::bigint, 0) + coalesce((v_counts->>'retrying')::bigint, 0) > 0 THEN
            PERFORM errands._notify();
        END IF;
    END IF;
    RETURN QUERY
        SELECT i, coalesce((v_counts->>i)::bigint, 0)
        FROM unnest(v_items) WITH ORDINALITY AS u(i, n) ORDER BY n;
END
$$;
COMMENT ON FUNCTION errands.import_graphile(text, boolean) IS
'Copies the jobs and known crontab state of a Graphile Worker (0.13 or later)
schema into Errands, in the caller''s transaction, and returns what it copied:
one row per item (pending, scheduled, retrying, failed: jobs copied in that
state; crontabs: known crontab rows added or moved forward; already_imported,
running, key_conflict: jobs skipped because an earlier run copied them, because
a Graphile worker is running them (stop Graphile''s workers and run it again), or
because an Errands job has their key). Idempotent: each copied job is
remembered in errands._graphile_imports. dry_run counts without writing.
Graphile''s tables are locked (SHARE ROW EXCLUSIVE) until the transaction ends.
Runs as its caller (not SECURITY DEFINER), who must see every row of the Graphile
tables (their owner or a superuser) and own the errands tables.';
