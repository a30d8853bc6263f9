-- Workers without a session of their own (PgBouncer in transaction pooling mode,
-- `errands worker --no-listen`). Such a worker cannot hold the session-level
-- advisory lock of 0007_workers.sql: in transaction pooling every transaction may
-- run on another server connection, so a session lock would stay behind on a
-- connection other clients then use. It registers with session_lock => false,
-- heartbeats as usual, and is declared dead only when its heartbeat is older than
-- rescue_workers' heartbeat_timeout.
--
-- Also: parse_crontab refuses every payload jsonb cannot take with 22023 (below).

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

-- rescue_workers as 0009_faults.sql left it, with the lock rule applied only to
-- workers that hold a session lock.
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
               AND w.last_heartbeat < now() - interval '1.5 seconds'
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
Declares dead each registered worker that holds a session lock (session_lock) whose
advisory lock no session holds (its process or connection is gone) and whose last
heartbeat is older than 1.5 s but newer than the server''s start (after a restart,
workers get until heartbeat_timeout to reconnect), and each worker whose last
heartbeat is older than heartbeat_timeout; deletes its row, makes the jobs it had
locked runnable at once (keeping their place: run_at unchanged, the interrupted try
counted, last_error says the worker died) and unlocks its queues. Returns the
number of jobs rescued.';

-- The view as 0010_fetch_batches.sql left it (one pass over the locked jobs), with
-- the session_lock column and the lock rule applied only to such workers.
CREATE OR REPLACE VIEW errands.workers AS
WITH running AS (
    SELECT j.locked_by, array_agg(j.id ORDER BY j.id) AS ids
    FROM errands._jobs j
    WHERE j.locked_by IS NOT NULL
    GROUP BY j.locked_by
)
SELECT w.id,
       w.host,
       w.pid,
       w.started_at,
       w.last_heartbeat,
       CASE WHEN w.session_lock AND NOT errands._worker_lock_held(w.id) THEN 'dead'
            WHEN w.last_heartbeat < now() - interval '30 seconds' THEN 'hung'
            ELSE 'alive' END AS state,
       coalesce(r.ids, '{}') AS running_job_ids,
       w.session_lock
FROM errands._workers w
LEFT JOIN running r ON r.locked_by = w.id;
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

-- parse_crontab: a payload jsonb cannot hold (a \u0000 escape: 22P05) or nested
-- deeper than max_stack_depth allows (54001) is a bad crontab line too (22023
-- naming the line), like any other invalid JSON payload (found by
-- tests_py/test_hostile_crontab.py). Otherwise unchanged from 0005_cron.sql (with the
-- SECURITY DEFINER and search_path 0006_security.sql gave it: CREATE OR REPLACE
-- drops them).
CREATE OR REPLACE FUNCTION errands.parse_crontab(crontab text)
RETURNS TABLE (line_number integer, id text, task text, minutes integer[], hours integer[],
               days_of_month integer[], months integer[], days_of_week integer[],
               options jsonb, payload jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_lines text[] := regexp_split_to_array(coalesce(crontab, ''), '\r?\n');
    v_n integer;
    v_line text;
    v_rest text;
    v_fields text[];
    v_m text[];
    v_opts text;
    v_msg text;
    v_ids text[] := '{}';
BEGIN
    IF crontab IS NULL THEN
        RAISE EXCEPTION 'errands: crontab is NULL' USING ERRCODE = '22023';
    END IF;
    FOR v_n IN 1 .. cardinality(v_lines) LOOP
        v_line := btrim(v_lines[v_n], E' \t');
        CONTINUE WHEN v_line = '' OR left(v_line, 1) = '#';
        BEGIN
            line_number := v_n;
            IF left(v_line, 1) = '@' THEN
                v_m := regexp_match(v_line, '^(@[a-z]+)(?:\s+(.*))?$');
                v_fields := CASE v_m[1]
                    WHEN '@yearly' THEN '{0,0,1,1,*}' WHEN '@annually' THEN '{0,0,1,1,*}'
                    WHEN '@monthly' THEN '{0,0,1,*,*}' WHEN '@weekly' THEN '{0,0,*,*,0}'
                    WHEN '@daily' THEN '{0,0,*,*,*}' WHEN '@midnight' THEN '{0,0,*,*,*}'
                    WHEN '@hourly' THEN '{0,*,*,*,*}' END;
                IF v_m IS NULL OR v_fields IS NULL THEN
                    PERFORM errands._cron_bad(format('unknown macro %s (expected @hourly, @daily, @weekly, @monthly or @yearly)',
                                                     quote_literal(split_part(v_line, ' ', 1))));
                END IF;
                v_rest := coalesce(v_m[2], '');
            ELSE
                v_m := regexp_match(v_line, '^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*))?$');
                IF v_m IS NULL THEN
                    PERFORM errands._cron_bad('too few fields (expected MIN HOUR DOM MONTH DOW task)');
                END IF;
                v_fields := v_m[1:5];
                v_rest := coalesce(v_m[6], '');
            END IF;
            -- task [?options] [{payload}]
            v_m := regexp_match(v_rest, '^(\S+)(?:\s+(\?\S*))?(?:\s+(.*))?$');
            IF v_m IS NULL THEN
                PERFORM errands._cron_bad('too few fields: no task identifier');
            END IF;
            task := v_m[1];
            IF left(task, 1) IN ('?', '{') OR length(task) > 128 THEN
                PERFORM errands._cron_bad(format('bad task identifier %s', errands._describe(task)));
            END IF;
            v_opts := substr(v_m[2], 2);
            IF v_m[3] IS NOT NULL AND left(v_m[3], 1) <> '{' THEN
                PERFORM errands._cron_bad(format('unexpected %s after the task identifier (expected ?options or a {json} payload)',
                                                 quote_literal(v_m[3])));
            END IF;
            BEGIN
                payload := coalesce(v_m[3], '{}')::jsonb;
            EXCEPTION WHEN invalid_text_representation OR untranslatable_character
                           OR statement_too_complex THEN
                PERFORM errands._cron_bad(format('invalid JSON payload %s', errands._describe(v_m[3])));
            END;
            IF jsonb_typeof(payload) <> 'object' THEN
                PERFORM errands._cron_bad('the payload must be a JSON object');
            END IF;
            minutes := errands._cron_field(v_fields[1], 'minute', 0, 59, NULL);
            hours := errands._cron_field(v_fields[2], 'hour', 0, 23, NULL);
            days_of_month := errands._cron_field(v_fields[3], 'day of month', 1, 31, NULL);
            months := errands._cron_field(v_fields[4], 'month', 1, 12,
                '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}');
            days_of_week := errands._cron_field(v_fields[5], 'day of week', 0, 7,
                '{sun,mon,tue,wed,thu,fri,sat}');
            options := errands._cron_options(v_opts, task);
            id := options->>'id';
            IF id = ANY(v_ids) THEN
                PERFORM errands._cron_bad(format('duplicate id %s (use ?id=... to tell items apart)', quote_literal(id)));
            END IF;
            v_ids := v_ids || id;
        EXCEPTION WHEN invalid_parameter_value THEN
            GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
            RAISE EXCEPTION 'errands: crontab line %: %: %', v_n, v_msg, quote_literal(v_line)
                USING ERRCODE = '22023';
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- Functions created above got the built-in PUBLIC grant: take it back.
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA errands FROM PUBLIC;
