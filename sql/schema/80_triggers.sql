-- Triggers: errands.job_trigger(), a generic trigger function that enqueues a
-- job from its arguments, and errands.check_job_triggers(), which checks those
-- arguments when the trigger is created rather than when it first fires.
--
-- Arguments: the task identifier, then options as name=value:
--   queue_name=NAME  priority=INT  max_attempts=INT  run_in=INTERVAL
--   timeout=INTERVAL  flags=A,B  job_key=TEMPLATE  job_key_mode=MODE  batch=BOOL
-- A job_key template such as 'user:{user_id}' takes {column} from the row
-- (NEW, or OLD on DELETE), as the row's JSON shows the value.
--
-- job_trigger runs as the role doing the INSERT/UPDATE/DELETE (SECURITY
-- INVOKER), which therefore needs errands.grant_enqueue. Run as the schema
-- owner it would serialise the row as that owner: a cast to json or text on a
-- column type, written by whoever owns the type, would run with the owner's
-- rights. As the invoker, the trigger gives nobody more than their own grant.

-- The options of a job_trigger call, checked, as jsonb; raises 22023 naming
-- the bad argument. level: 'ROW' or 'STATEMENT'; new_table, old_table: the
-- trigger's transition table names (statement level). Pure: reads the
-- arguments and the table's columns only.
CREATE OR REPLACE FUNCTION errands._job_trigger_options(
    args text[], relid oid, level text, new_table name, old_table name
) RETURNS jsonb
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_opt jsonb;
    v_arg text;
    v_name text;
    v_value text;
    v_int bigint;
    v_interval interval;
    v_parts text[];
    v_rest text;
    v_open int;
    v_close int;
    v_col text;
    v_statement boolean := level = 'STATEMENT';
    v_seen text[] := '{}';
    v_where text := format('errands.job_trigger on %s: ', relid::regclass);
BEGIN
    -- TG_ARGV counts from 0: renumber from 1.
    args := ARRAY(SELECT unnest(args));
    IF args IS NULL OR cardinality(args) = 0 OR length(args[1]) NOT BETWEEN 1 AND 128
       OR strpos(args[1], '=') > 0 THEN
        RAISE EXCEPTION '%the first argument must be the task identifier (1 to 128 characters, no =), got %',
            v_where, errands._describe(args[1]) USING ERRCODE = '22023';
    END IF;
    v_opt := jsonb_build_object('identifier', args[1], 'batch', false);
    FOREACH v_arg IN ARRAY args[2:] LOOP
        IF v_arg IS NULL OR strpos(v_arg, '=') = 0 THEN
            RAISE EXCEPTION '%option % is not name=value', v_where, errands._describe(v_arg)
                USING ERRCODE = '22023';
        END IF;
        v_name := btrim(split_part(v_arg, '=', 1));
        v_value := substr(v_arg, strpos(v_arg, '=') + 1);
        IF v_name = ANY (v_seen) THEN
            RAISE EXCEPTION '%option % is given twice', v_where, v_name USING ERRCODE = '22023';
        END IF;
        v_seen := v_seen || v_name;
        CASE v_name
        WHEN 'queue_name' THEN
            IF length(v_value) NOT BETWEEN 1 AND 128 THEN
                RAISE EXCEPTION '%queue_name must be 1 to 128 characters, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object('queue_name', v_value);
        WHEN 'priority', 'max_attempts' THEN
            v_int := CASE WHEN v_value ~ '^\s*[+-]?[0-9]{1,9}\s*$' THEN v_value::bigint END;
            IF v_int IS NULL
               OR v_name = 'priority' AND v_int NOT BETWEEN -32768 AND 32767
               OR v_name = 'max_attempts' AND v_int NOT BETWEEN 1 AND 32767 THEN
                RAISE EXCEPTION '% must be a whole number %, got %', v_where || v_name,
                    CASE v_name WHEN 'priority' THEN 'between -32768 and 32767'
                                ELSE 'between 1 and 32767' END,
                    errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object(v_name, v_int);
        WHEN 'run_in', 'timeout' THEN
            BEGIN
                v_interval := v_value::interval;
            EXCEPTION WHEN OTHERS THEN
                v_interval := NULL;
            END;
            IF v_interval IS NULL OR v_name = 'run_in' AND v_interval < interval '0'
               OR v_name = 'timeout' AND v_interval <= interval '0' THEN
                RAISE EXCEPTION '% must be % interval, got %', v_where || v_name,
                    CASE v_name WHEN 'run_in' THEN 'a non-negative' ELSE 'a positive' END,
                    errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object(v_name, v_interval::text);
        WHEN 'flags' THEN
            v_parts := ARRAY(SELECT btrim(f) FROM unnest(string_to_array(v_value, ',')) f);
            IF cardinality(v_parts) = 0 OR '' = ANY (v_parts) THEN
                RAISE EXCEPTION '%flags must be names separated by commas, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object('flags', to_jsonb(v_parts));
        WHEN 'job_key_mode' THEN
            IF v_value NOT IN ('replace', 'preserve_run_at', 'unsafe_dedupe') THEN
                RAISE EXCEPTION '%job_key_mode must be replace, preserve_run_at or unsafe_dedupe, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object('job_key_mode', v_value);
        WHEN 'batch' THEN
            IF lower(v_value) NOT IN ('true', 'false', 'on', 'off') THEN
                RAISE EXCEPTION '%batch must be true or false, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object('batch', lower(v_value) IN ('true', 'on'));
        WHEN 'job_key' THEN
            -- Parts alternate literal text and column names: 'user:{id}' is
            -- {"user:", "id", ""}.
            IF length(v_value) NOT BETWEEN 1 AND 512 THEN
                RAISE EXCEPTION '%job_key must be 1 to 512 characters, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_parts := '{}';
            v_rest := v_value;
            LOOP
                v_open := strpos(v_rest, '{');
                v_close := strpos(v_rest, '}');
                EXIT WHEN v_open = 0 AND v_close = 0;
                IF v_open = 0 OR v_close > 0 AND v_close < v_open THEN
                    RAISE EXCEPTION '%job_key % has a } without its {',
                        v_where, errands._describe(v_value) USING ERRCODE = '22023';
                END IF;
                v_close := strpos(substr(v_rest, v_open + 1), '}');
                v_col := substr(v_rest, v_open + 1, greatest(v_close - 1, 0));
                IF v_close = 0 OR v_col = '' OR strpos(v_col, '{') > 0 THEN
                    RAISE EXCEPTION '%job_key % needs {column} with a column name between the braces',
                        v_where, errands._describe(v_value) USING ERRCODE = '22023';
                END IF;
                IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                               WHERE a.attrelid = relid AND a.attname = v_col
                                 AND a.attnum > 0 AND NOT a.attisdropped) THEN
                    RAISE EXCEPTION '%job_key % names column %, which % does not have',
                        v_where, errands._describe(v_value), quote_ident(v_col), relid::regclass
                        USING ERRCODE = '22023';
                END IF;
                v_parts := v_parts || ARRAY[left(v_rest, v_open - 1), v_col];
                v_rest := substr(v_rest, v_open + length(v_col) + 2);
            END LOOP;
            v_opt := v_opt || jsonb_build_object('job_key', v_value,
                                                 'key_parts', to_jsonb(v_parts || v_rest));
        ELSE
            RAISE EXCEPTION '%unknown option %; expected queue_name, priority, max_attempts, run_in, timeout, flags, job_key, job_key_mode or batch',
                v_where, errands._describe(v_name) USING ERRCODE = '22023';
        END CASE;
    END LOOP;

    IF v_opt ? 'job_key_mode' AND NOT v_opt ? 'job_key' THEN
        RAISE EXCEPTION '%job_key_mode needs a job_key', v_where USING ERRCODE = '22023';
    END IF;
    IF NOT v_statement THEN
        IF (v_opt ->> 'batch')::boolean THEN
            RAISE EXCEPTION '%batch=true needs a FOR EACH STATEMENT trigger', v_where
                USING ERRCODE = '22023';
        END IF;
    ELSIF (v_opt ->> 'batch')::boolean THEN
        IF jsonb_array_length(v_opt -> 'key_parts') > 1 THEN
            RAISE EXCEPTION '%job_key % of a batch=true trigger cannot name a column (one job holds many rows)',
                v_where, errands._describe(v_opt ->> 'job_key') USING ERRCODE = '22023';
        END IF;
    ELSE
        -- One job per row: rows come from the transition table; add_jobs
        -- has neither timeout nor unsafe_dedupe.
        IF new_table IS NULL AND old_table IS NULL THEN
            RAISE EXCEPTION '%a FOR EACH STATEMENT trigger needs REFERENCING NEW TABLE (or OLD TABLE for DELETE) to add one job per row, or batch=true',
                v_where USING ERRCODE = '22023';
        END IF;
        -- add_jobs (one job per row) has no timeout; batch=true uses add_job.
        IF v_opt ? 'timeout' THEN
            RAISE EXCEPTION '%timeout needs a FOR EACH ROW trigger or batch=true', v_where
                USING ERRCODE = '22023';
        END IF;
        IF v_opt ->> 'job_key_mode' = 'unsafe_dedupe' THEN
            RAISE EXCEPTION '%job_key_mode unsafe_dedupe needs a FOR EACH ROW trigger or batch=true',
                v_where USING ERRCODE = '22023';
        END IF;
    END IF;
    RETURN v_opt;
END
$$;

CREATE OR REPLACE FUNCTION errands.job_trigger() RETURNS trigger
LANGUAGE plpgsql
-- Runs as the role doing the DML (see the top of this file).
SECURITY INVOKER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_new_table name;
    v_old_table name;
    v_opt jsonb;
    v_row jsonb;
    v_key text;
    v_parts text[];
    v_value text;
    v_run_at timestamptz;
    v_flags text[];
    v_payload json;
    v_rows_table name;
    v_key_sql text := 'NULL::text';
    v_join text;
    v_specs errands.job_spec[];
    i int;
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        SELECT t.tgnewtable, t.tgoldtable INTO v_new_table, v_old_table
        FROM pg_catalog.pg_trigger t WHERE t.tgrelid = TG_RELID AND t.tgname = TG_NAME;
    END IF;
    v_opt := errands._job_trigger_options(TG_ARGV, TG_RELID, TG_LEVEL, v_new_table, v_old_table);
    v_run_at := now() + (v_opt ->> 'run_in')::interval;
    v_flags := ARRAY(SELECT jsonb_array_elements_text(v_opt -> 'flags'));
    v_parts := ARRAY(SELECT jsonb_array_elements_text(v_opt -> 'key_parts'));

    IF TG_LEVEL = 'ROW' THEN
        v_row := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
        IF v_parts IS NOT NULL AND cardinality(v_parts) > 0 THEN
            v_key := v_parts[1];
            FOR i IN 2 .. cardinality(v_parts) BY 2 LOOP
                v_value := v_row ->> v_parts[i];
                IF v_value IS NULL THEN
                    RAISE EXCEPTION 'errands.job_trigger on %: job_key % needs column %, which is NULL',
                        TG_RELID::regclass, quote_literal(v_opt ->> 'job_key'),
                        quote_ident(v_parts[i]) USING ERRCODE = '22023';
                END IF;
                v_key := v_key || v_value || v_parts[i + 1];
            END LOOP;
        END IF;
        PERFORM errands.add_job(
            v_opt ->> 'identifier',
            json_build_object('op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
                              'new', CASE WHEN TG_OP <> 'DELETE' THEN to_json(NEW) END,
                              'old', CASE WHEN TG_OP <> 'INSERT' THEN to_json(OLD) END),
            queue_name => v_opt ->> 'queue_name',
            run_at => v_run_at,
            max_attempts => (v_opt ->> 'max_attempts')::integer,
            job_key => v_key,
            priority => (v_opt ->> 'priority')::integer,
            flags => nullif(v_flags, '{}'),
            job_key_mode => v_opt ->> 'job_key_mode',
            timeout => (v_opt ->> 'timeout')::interval);
        IF TG_WHEN IN ('BEFORE', 'INSTEAD OF') THEN
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END IF;
        RETURN NULL;
    END IF;

    IF (v_opt ->> 'batch')::boolean THEN
        -- One job for the statement: the rows as arrays (none without a
        -- transition table); a statement that touched no row adds nothing.
        IF v_new_table IS NOT NULL OR v_old_table IS NOT NULL THEN
            EXECUTE format('SELECT json_build_object(''op'', $1, ''schema'', $2, ''table'', $3, '
                           '''new'', %s, ''old'', %s)',
                           CASE WHEN v_new_table IS NULL THEN 'NULL::json'
                                ELSE format('(SELECT json_agg(r) FROM %I r)', v_new_table) END,
                           CASE WHEN v_old_table IS NULL THEN 'NULL::json'
                                ELSE format('(SELECT json_agg(r) FROM %I r)', v_old_table) END)
            INTO v_payload USING TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME;
            IF v_payload ->> 'new' IS NULL AND v_payload ->> 'old' IS NULL THEN
                RETURN NULL;
            END IF;
        ELSE
            v_payload := json_build_object('op', TG_OP, 'schema', TG_TABLE_SCHEMA,
                                           'table', TG_TABLE_NAME, 'new', NULL, 'old', NULL);
        END IF;
        PERFORM errands.add_job(
            v_opt ->> 'identifier', v_payload,
            queue_name => v_opt ->> 'queue_name',
            run_at => v_run_at,
            max_attempts => (v_opt ->> 'max_attempts')::integer,
            job_key => v_opt ->> 'job_key',
            priority => (v_opt ->> 'priority')::integer,
            flags => nullif(v_flags, '{}'),
            job_key_mode => v_opt ->> 'job_key_mode',
            timeout => (v_opt ->> 'timeout')::interval);
        RETURN NULL;
    END IF;

    -- One job per row of the transition table (the new rows; the old ones on
    -- DELETE), all in one add_jobs call. On UPDATE with both transition tables
    -- and a primary key, each new row is paired with its old row by the key's
    -- text form (a row whose key changed gets old = null).
    v_rows_table := CASE WHEN TG_OP = 'DELETE' THEN v_old_table ELSE v_new_table END;
    IF v_rows_table IS NULL THEN
        RAISE EXCEPTION 'errands.job_trigger on %: a % statement needs REFERENCING % TABLE',
            TG_RELID::regclass, TG_OP, CASE WHEN TG_OP = 'DELETE' THEN 'OLD' ELSE 'NEW' END
            USING ERRCODE = '22023';
    END IF;
    IF TG_OP = 'UPDATE' AND v_old_table IS NOT NULL THEN
        SELECT format(' LEFT JOIN %I o ON %s', v_old_table,
                      string_agg(format('o.%1$I::text = r.%1$I::text', a.attname), ' AND '))
        INTO v_join
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = TG_RELID AND i.indisprimary
        HAVING count(*) > 0;
    END IF;
    IF cardinality(v_parts) > 0 THEN
        -- NULL when a column is NULL (|| propagates it); checked below.
        v_key_sql := quote_literal(v_parts[1]);
        FOR i IN 2 .. cardinality(v_parts) BY 2 LOOP
            v_key_sql := format('%s || (x.j ->> %L) || %L', v_key_sql, v_parts[i], v_parts[i + 1]);
        END LOOP;
    END IF;
    EXECUTE format(
        'SELECT array_agg(ROW($1, json_build_object(''op'', $2, ''schema'', $3, ''table'', $4, '
        '''new'', %s, ''old'', %s), $5, $6, $7, %s, $8, $9)::errands.job_spec) '
        'FROM (SELECT to_json(r) AS row, %s AS old_row, %s AS j FROM %I r%s) x',
        CASE WHEN TG_OP = 'DELETE' THEN 'NULL::json' ELSE 'x.row' END,
        CASE WHEN TG_OP = 'DELETE' THEN 'x.row' ELSE 'x.old_row' END,
        v_key_sql,
        CASE WHEN v_join IS NOT NULL THEN 'to_json(o)' ELSE 'NULL::json' END,
        CASE WHEN cardinality(v_parts) > 0 THEN 'to_jsonb(r)' ELSE 'NULL::jsonb' END,
        v_rows_table, coalesce(v_join, ''))
    INTO v_specs
    USING v_opt ->> 'identifier', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME,
          v_opt ->> 'queue_name', v_run_at, (v_opt ->> 'max_attempts')::integer,
          (v_opt ->> 'priority')::integer, nullif(v_flags, '{}');
    IF cardinality(v_parts) > 0
       AND EXISTS (SELECT 1 FROM unnest(v_specs) s WHERE s.job_key IS NULL) THEN
        RAISE EXCEPTION 'errands.job_trigger on %: job_key % needs columns %, one of which is NULL in a row',
            TG_RELID::regclass, quote_literal(v_opt ->> 'job_key'),
            array_to_string(ARRAY(SELECT quote_ident(v_parts[g])
                                  FROM generate_series(2, cardinality(v_parts), 2) g), ', ')
            USING ERRCODE = '22023';
    END IF;
    PERFORM errands.add_jobs(v_specs, v_opt ->> 'job_key_mode' = 'preserve_run_at');
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION errands.job_trigger() IS
'Trigger function that enqueues a job: errands.job_trigger(task, ''name=value'', ...).
Options: queue_name, priority, max_attempts, run_in (interval: run_at = now() +
run_in), timeout, flags (a,b), job_key (template, {column} from the row),
job_key_mode (replace, preserve_run_at, unsafe_dedupe), batch (statement level).
Payload: {"op", "schema", "table", "new", "old"} with the row(s). FOR EACH ROW:
one job per row; FOR EACH STATEMENT with REFERENCING NEW/OLD TABLE: one job per
row through one add_jobs call (an UPDATE''s old row paired by primary key), or with batch=true one job holding the rows as
arrays. Runs as the role doing the DML, which needs errands.grant_enqueue.
Bad arguments raise 22023; errands.check_job_triggers finds them at CREATE time.';

-- Checks the arguments of every job_trigger trigger (on one table, or all) and
-- returns how many it checked; raises 22023 on the first bad one.
CREATE OR REPLACE FUNCTION errands.check_job_triggers(on_table regclass DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
    v_args text[];
    v_bytes bytea;
    v_cut int;
    v_count int := 0;
BEGIN
    FOR t IN
        SELECT tg.tgrelid, tg.tgname, tg.tgtype, tg.tgnargs, tg.tgargs,
               tg.tgnewtable, tg.tgoldtable
        FROM pg_trigger tg
        WHERE tg.tgfoid = 'errands.job_trigger()'::regprocedure
          AND (on_table IS NULL OR tg.tgrelid = on_table)
        ORDER BY tg.tgrelid, tg.tgname
    LOOP
        -- tgargs: the arguments, each followed by a zero byte.
        v_args := '{}';
        v_bytes := t.tgargs;
        FOR i IN 1 .. t.tgnargs LOOP
            v_cut := position('\x00'::bytea IN v_bytes);
            v_args := v_args || convert_from(substr(v_bytes, 1, v_cut - 1), 'UTF8');
            v_bytes := substr(v_bytes, v_cut + 1);
        END LOOP;
        BEGIN
            PERFORM errands._job_trigger_options(
                v_args, t.tgrelid,
                CASE WHEN t.tgtype & 1 = 1 THEN 'ROW' ELSE 'STATEMENT' END,
                t.tgnewtable, t.tgoldtable);
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE EXCEPTION 'errands.job_trigger: trigger % on %: %', quote_ident(t.tgname),
                t.tgrelid::regclass,
                replace(SQLERRM, format('errands.job_trigger on %s: ', t.tgrelid::regclass), '')
                USING ERRCODE = '22023';
        END;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION errands.check_job_triggers(regclass) IS
'Checks the arguments of every trigger that calls errands.job_trigger (on_table''s
only when given) and returns how many it checked; raises 22023 naming the
trigger, the table and the bad option on the first bad one. Call it right after
CREATE TRIGGER, in the same migration, so a typo fails the migration rather
than the first INSERT.';

-- Roles made with grant_enqueue before job_trigger existed: the trigger, which
-- runs as them, calls _job_trigger_options.
DO $grant_trigger_options$
DECLARE
    v_role name;
BEGIN
    FOR v_role IN
        SELECT DISTINCT r.rolname
        FROM pg_catalog.pg_proc p, aclexplode(p.proacl) a, pg_catalog.pg_roles r
        WHERE p.oid = 'errands.add_jobs(errands.job_spec[], boolean)'::regprocedure
          AND a.privilege_type = 'EXECUTE' AND a.grantee = r.oid AND a.grantee <> p.proowner
        ORDER BY 1
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION errands._job_trigger_options(text[], oid, text, name, name) TO %I',
                       v_role);
    END LOOP;
END
$grant_trigger_options$;
