-- Recurring jobs (cron): crontab parser, stored schedule per source, the tick
-- that enqueues due jobs, and a next-runs preview.
--
-- Time zone rule (tz option, default UTC; PostgreSQL's time zone database):
-- every UTC minute m is mapped to its local wall-clock minute L(m) and fires
-- when L(m) matches the item.  Local minutes skipped by a spring-forward gap
-- fire once, at the first UTC minute after the gap (local 03:00 for a skipped
-- 02:30).  Local minutes repeated by a fall-back fire only on their first
-- occurrence.  So a matching local time fires exactly once per local day.

-- Raise the 22023 "bad crontab" error used by the parser helpers.
CREATE OR REPLACE FUNCTION errands._cron_bad(problem text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RAISE EXCEPTION '%', problem USING ERRCODE = '22023';
END
$$;

-- One field of a cron line as the sorted set of values it allows.
-- names: value names (lower case) for lo, lo + 1, ...; NULL when none.
CREATE OR REPLACE FUNCTION errands._cron_field(spec text, field text, lo integer, hi integer, names text[])
RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_part text;
    v_base text;
    v_step integer;
    v_a integer;
    v_b integer;
    v_tok text;
    v_val integer;
    v_vals integer[] := '{}';
    v_ends integer[];
    v_i integer;
BEGIN
    FOREACH v_part IN ARRAY string_to_array(spec, ',') LOOP
        IF v_part = '' THEN
            PERFORM errands._cron_bad(format('%s field %s has an empty list item', field, quote_literal(spec)));
        END IF;
        v_step := 1;
        v_base := v_part;
        IF v_part LIKE '%/%' THEN
            IF v_part ~ '/.*/' THEN
                PERFORM errands._cron_bad(format('%s field item %s has more than one /', field, quote_literal(v_part)));
            END IF;
            v_base := split_part(v_part, '/', 1);
            v_tok := split_part(v_part, '/', 2);
            IF v_tok !~ '^[0-9]{1,6}$' THEN
                PERFORM errands._cron_bad(format('%s field: bad step %s in %s', field, quote_literal(v_tok), quote_literal(v_part)));
            END IF;
            v_step := v_tok::integer;
            IF v_step = 0 THEN
                PERFORM errands._cron_bad(format('%s field: zero step in %s', field, quote_literal(v_part)));
            END IF;
        END IF;
        IF v_base = '*' THEN
            v_a := lo;
            v_b := CASE WHEN field = 'day of week' THEN 6 ELSE hi END;
        ELSE
            IF v_base ~ '^[^-]+-[^-]+$' THEN
                v_tok := v_base;
            ELSIF v_base ~ '-' OR v_base = '' THEN
                PERFORM errands._cron_bad(format('%s field: bad range %s', field, quote_literal(v_part)));
            END IF;
            v_ends := '{}';
            FOREACH v_tok IN ARRAY string_to_array(v_base, '-') LOOP
                IF v_tok ~ '^[0-9]{1,6}$' THEN
                    v_val := v_tok::integer;
                ELSE
                    v_i := array_position(names, lower(v_tok));
                    IF v_i IS NULL THEN
                        PERFORM errands._cron_bad(format('%s field: bad value %s', field, quote_literal(v_tok)));
                    END IF;
                    v_val := lo + v_i - 1;
                END IF;
                IF v_val NOT BETWEEN lo AND hi THEN
                    PERFORM errands._cron_bad(format('%s value %s out of range %s-%s', field, v_val, lo, hi));
                END IF;
                v_ends := v_ends || v_val;
            END LOOP;
            v_a := v_ends[1];
            IF cardinality(v_ends) = 2 THEN
                v_b := v_ends[2];
            ELSIF v_step > 1 THEN
                v_b := hi;  -- N/S means N-max/S
            ELSE
                v_b := v_a;
            END IF;
            IF v_a > v_b AND v_b = 0 AND field = 'day of week' THEN
                v_b := 7;  -- sat-sun, 5-0: Sunday ends a weekday range as 7
            END IF;
            IF v_a > v_b THEN
                PERFORM errands._cron_bad(format('%s field: range %s is backwards', field, quote_literal(v_base)));
            END IF;
        END IF;
        v_vals := v_vals || ARRAY(SELECT generate_series(v_a, v_b, v_step));
    END LOOP;
    IF field = 'day of week' THEN
        v_vals := array_replace(v_vals, 7, 0);
    END IF;
    RETURN ARRAY(SELECT DISTINCT v FROM unnest(v_vals) v ORDER BY v);
END
$$;

-- A fill period like 1d, 4w3d2h1m, 30s as an interval (NULL if malformed).
CREATE OR REPLACE FUNCTION errands._cron_period(spec text) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN spec ~ '^([0-9]{1,6}w)?([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$'
                     AND spec <> ''
           THEN make_interval(
                    weeks => coalesce(substring(spec FROM '([0-9]+)w')::int, 0),
                    days => coalesce(substring(spec FROM '([0-9]+)d')::int, 0),
                    hours => coalesce(substring(spec FROM '([0-9]+)h')::int, 0),
                    mins => coalesce(substring(spec FROM '([0-9]+)m')::int, 0),
                    secs => coalesce(substring(spec FROM '([0-9]+)s')::int, 0))
           END
$$;

-- The ?a=b&c=d options of a line as a normalised jsonb object.
CREATE OR REPLACE FUNCTION errands._cron_options(spec text, task text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_opts jsonb := '{}';
    v_pair text;
    v_key text;
    v_val text;
BEGIN
    IF spec IS NOT NULL AND spec <> '' THEN
        FOREACH v_pair IN ARRAY string_to_array(spec, '&') LOOP
            IF v_pair !~ '^[^=]+=[^=]*$' THEN
                PERFORM errands._cron_bad(format('bad option %s (expected key=value)', quote_literal(v_pair)));
            END IF;
            v_key := split_part(v_pair, '=', 1);
            v_val := split_part(v_pair, '=', 2);
            IF v_key NOT IN ('id', 'fill', 'max', 'queue', 'priority', 'jobKey', 'jobKeyMode', 'tz') THEN
                PERFORM errands._cron_bad(format('bad option key %s (expected id, fill, max, queue, priority, jobKey, jobKeyMode or tz)',
                                                 quote_literal(v_key)));
            END IF;
            IF v_opts ? v_key THEN
                PERFORM errands._cron_bad(format('option %s given twice', quote_literal(v_key)));
            END IF;
            IF v_val = '' THEN
                PERFORM errands._cron_bad(format('option %s has an empty value', quote_literal(v_key)));
            END IF;
            CASE v_key
            WHEN 'fill' THEN
                IF errands._cron_period(v_val) IS NULL THEN
                    PERFORM errands._cron_bad(format('bad fill period %s (expected e.g. 1d or 4w3d2h1m)', quote_literal(v_val)));
                END IF;
            WHEN 'max' THEN
                IF v_val !~ '^[0-9]{1,5}$' OR v_val::int NOT BETWEEN 1 AND 32767 THEN
                    PERFORM errands._cron_bad(format('bad max %s (expected 1-32767)', quote_literal(v_val)));
                END IF;
            WHEN 'priority' THEN
                IF v_val !~ '^-?[0-9]{1,5}$' OR v_val::int NOT BETWEEN -32768 AND 32767 THEN
                    PERFORM errands._cron_bad(format('bad priority %s (expected -32768-32767)', quote_literal(v_val)));
                END IF;
            WHEN 'jobKeyMode' THEN
                IF v_val NOT IN ('replace', 'preserve_run_at') THEN
                    PERFORM errands._cron_bad(format('bad jobKeyMode %s (expected replace or preserve_run_at)', quote_literal(v_val)));
                END IF;
            WHEN 'tz' THEN
                BEGIN
                    PERFORM now() AT TIME ZONE v_val;
                EXCEPTION WHEN invalid_parameter_value THEN
                    PERFORM errands._cron_bad(format('unknown time zone %s', quote_literal(v_val)));
                END;
            ELSE
                IF length(v_val) > 128 AND v_key <> 'jobKey' OR length(v_val) > 512 THEN
                    PERFORM errands._cron_bad(format('option %s value is too long', quote_literal(v_key)));
                END IF;
            END CASE;
            v_opts := v_opts || jsonb_build_object(v_key, v_val);
        END LOOP;
    END IF;
    RETURN jsonb_build_object('id', task, 'tz', 'UTC') || v_opts;
END
$$;

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
COMMENT ON FUNCTION errands.parse_crontab(text) IS
'Parses a crontab (Graphile Worker format plus A-B/N steps, month and weekday
names, @hourly/@daily/@weekly/@monthly/@yearly and the tz option): one row per
item with its id, task, the allowed minutes, hours, days of month, months and
days of week (0-6, Sunday = 0), options (jsonb: id, tz and the given ones) and
payload. Raises SQLSTATE 22023 naming the line number, the problem and the line.';

-- Does the local wall-clock time l match the fields?  Classic cron: when both
-- day of month and day of week are restricted, either may match.
CREATE OR REPLACE FUNCTION errands._cron_wall_match(l timestamp, minutes integer[], hours integer[],
                                          doms integer[], months integer[], dows integer[])
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT extract(minute FROM l)::int = ANY(minutes)
       AND extract(hour FROM l)::int = ANY(hours)
       AND extract(month FROM l)::int = ANY(months)
       AND CASE WHEN cardinality(doms) < 31 AND cardinality(dows) < 7
                THEN extract(day FROM l)::int = ANY(doms) OR extract(dow FROM l)::int = ANY(dows)
                ELSE extract(day FROM l)::int = ANY(doms) AND extract(dow FROM l)::int = ANY(dows)
           END
$$;

-- Is the UTC minute m due for the fields in time zone tz (rule at the top)?
CREATE OR REPLACE FUNCTION errands._cron_due(m timestamptz, minutes integer[], hours integer[],
                                  doms integer[], months integer[], dows integer[], tz text)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT (errands._cron_wall_match(l, minutes, hours, doms, months, dows)
            AND NOT (d > interval '0' AND (m - d) AT TIME ZONE tz = l))
        OR (l - p > interval '1 minute'
            AND EXISTS (SELECT 1 FROM generate_series(p + interval '1 minute', l - interval '1 minute',
                                                      interval '1 minute') g
                        WHERE errands._cron_wall_match(g, minutes, hours, doms, months, dows)))
    FROM (SELECT m AT TIME ZONE tz AS l,
                 (m - interval '1 minute') AT TIME ZONE tz AS p,
                 ((m - interval '6 hours') AT TIME ZONE tz - (m - interval '6 hours') AT TIME ZONE 'UTC')
                 - (m AT TIME ZONE tz - m AT TIME ZONE 'UTC') AS d) x
$$;

CREATE OR REPLACE FUNCTION errands.set_crontab(crontab text, source text DEFAULT 'default')
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_source text := set_crontab.source;
    v_clash record;
    v_count integer;
BEGIN
    IF v_source IS NULL OR length(v_source) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'errands: invalid crontab source %', errands._describe(v_source)
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('errands:set_crontab'));
    CREATE TEMP TABLE IF NOT EXISTS pg_temp._errands_crontab_new
        (LIKE errands._crontab_items) ON COMMIT DROP;
    DELETE FROM pg_temp._errands_crontab_new;
    INSERT INTO pg_temp._errands_crontab_new
    SELECT p.id, v_source, p.line_number, p.task, p.minutes, p.hours, p.days_of_month,
           p.months, p.days_of_week, p.options, p.payload
    FROM errands.parse_crontab(crontab) p;
    SELECT n.id, i.source INTO v_clash
    FROM pg_temp._errands_crontab_new n JOIN errands._crontab_items i USING (id)
    WHERE i.source <> v_source LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: crontab id % is already used by source %',
            quote_literal(v_clash.id), quote_literal(v_clash.source) USING ERRCODE = '22023';
    END IF;
    DELETE FROM errands._crontab_items i
    WHERE i.source = v_source
      AND NOT EXISTS (SELECT 1 FROM pg_temp._errands_crontab_new n WHERE n.id = i.id);
    INSERT INTO errands._crontab_items AS i
    SELECT * FROM pg_temp._errands_crontab_new
    ON CONFLICT (id) DO UPDATE
    SET line_number = excluded.line_number, task = excluded.task, minutes = excluded.minutes,
        hours = excluded.hours, days_of_month = excluded.days_of_month, months = excluded.months,
        days_of_week = excluded.days_of_week, options = excluded.options, payload = excluded.payload
    WHERE (i.line_number, i.task, i.minutes, i.hours, i.days_of_month, i.months, i.days_of_week,
           i.options, i.payload)
          IS DISTINCT FROM
          (excluded.line_number, excluded.task, excluded.minutes, excluded.hours,
           excluded.days_of_month, excluded.months, excluded.days_of_week, excluded.options,
           excluded.payload);
    SELECT count(*) INTO v_count FROM pg_temp._errands_crontab_new;
    DROP TABLE pg_temp._errands_crontab_new;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION errands.set_crontab(text, text) IS
'Makes the stored schedule of one source (default ''default'') exactly the
items of the crontab text: adds, updates and removes items; other sources are
untouched. Raises 22023 on a bad crontab or an id another source uses. Returns
the number of items.';

CREATE OR REPLACE FUNCTION errands.cron_tick(now timestamptz DEFAULT now())
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := date_trunc('minute', cron_tick.now);
    v_item errands._crontab_items;
    v_known errands._known_crontabs;
    v_lo timestamptz;
    v_m timestamptz;
    v_count integer := 0;
BEGIN
    IF v_now IS NULL OR NOT isfinite(v_now) THEN
        RAISE EXCEPTION 'errands: invalid cron_tick time %', coalesce(cron_tick.now::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    FOR v_item IN SELECT * FROM errands._crontab_items ORDER BY id LOOP
        INSERT INTO errands._known_crontabs (identifier, known_since, last_execution)
        VALUES (v_item.id, v_now, NULL)
        ON CONFLICT (identifier) DO NOTHING;
        SELECT * INTO v_known FROM errands._known_crontabs
        WHERE identifier = v_item.id FOR UPDATE;
        -- A clock that goes backwards (or a repeated tick) schedules nothing.
        CONTINUE WHEN v_known.last_execution >= v_now;
        v_lo := greatest(v_known.last_execution,
                         v_known.known_since - interval '1 minute',
                         v_now - greatest(coalesce(errands._cron_period(v_item.options->>'fill'),
                                                   interval '0'),
                                          interval '1 minute'));
        FOR v_m IN
            SELECT g FROM generate_series(v_lo + interval '1 minute', v_now, interval '1 minute') g
            WHERE errands._cron_due(g, v_item.minutes, v_item.hours, v_item.days_of_month,
                                    v_item.months, v_item.days_of_week, v_item.options->>'tz')
            ORDER BY g
        LOOP
            PERFORM errands.add_job(
                identifier => v_item.task,
                payload => (v_item.payload || jsonb_build_object('_cron', jsonb_build_object(
                    'ts', to_char(v_m AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                    'backfilled', v_m < v_now)))::json,
                queue_name => v_item.options->>'queue',
                run_at => v_m,
                max_attempts => (v_item.options->>'max')::integer,
                job_key => v_item.options->>'jobKey',
                priority => (v_item.options->>'priority')::integer,
                job_key_mode => coalesce(v_item.options->>'jobKeyMode', 'replace'));
            v_count := v_count + 1;
        END LOOP;
        UPDATE errands._known_crontabs SET last_execution = v_now WHERE identifier = v_item.id;
    END LOOP;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION errands.cron_tick(timestamptz) IS
'Enqueues the due jobs of every stored crontab item for the minutes in
(last execution, now]: run_at is the scheduled minute and the payload gets
_cron: {ts, backfilled}. Items never backfill more than their fill period (only
the current minute without fill) nor before they were first seen. Safe to call
concurrently and repeatedly (one job per item and minute; a clock going back
schedules nothing). Returns the number of jobs enqueued.';

CREATE OR REPLACE FUNCTION errands.cron_next_runs(crontab text, after timestamptz DEFAULT now(),
                                       n integer DEFAULT 5)
RETURNS TABLE (id text, task text, run_at timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_item record;
    v_tz text;
    v_day date;
    v_found integer;
    v_m timestamptz;
    v_after timestamptz := date_trunc('minute', cron_next_runs.after);
BEGIN
    IF v_after IS NULL OR NOT isfinite(v_after) OR n IS NULL OR n NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'errands: invalid cron_next_runs arguments (after %, n %)',
            coalesce(cron_next_runs.after::text, 'NULL'), coalesce(n::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    FOR v_item IN SELECT * FROM errands.parse_crontab(crontab) ORDER BY line_number LOOP
        v_tz := v_item.options->>'tz';
        v_found := 0;
        v_day := (v_after AT TIME ZONE v_tz)::date;
        -- Day by day (at most 50 years), minute by minute within matching days.
        WHILE v_found < n AND v_day < (v_after AT TIME ZONE v_tz)::date + 18300 LOOP
            IF errands._cron_wall_match(v_day::timestamp, '{0}', '{0}', v_item.days_of_month,
                                        v_item.months, v_item.days_of_week) THEN
                FOR v_m IN
                    SELECT g FROM generate_series(
                        greatest(v_day::timestamp AT TIME ZONE v_tz, v_after + interval '1 minute'),
                        (v_day + 1)::timestamp AT TIME ZONE v_tz - interval '1 minute',
                        interval '1 minute') g
                    WHERE errands._cron_due(g, v_item.minutes, v_item.hours, v_item.days_of_month,
                                            v_item.months, v_item.days_of_week, v_tz)
                    ORDER BY g LIMIT n - v_found
                LOOP
                    id := v_item.id;
                    task := v_item.task;
                    run_at := v_m;
                    v_found := v_found + 1;
                    RETURN NEXT;
                END LOOP;
            END IF;
            v_day := v_day + 1;
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON FUNCTION errands.cron_next_runs(text, timestamptz, integer) IS
'Previews a crontab: for each item (in file order) its next n (default 5) run
times after the given time, as cron_tick would schedule them. Raises 22023 on a
bad crontab like parse_crontab.';

CREATE OR REPLACE FUNCTION errands.run_cron_now(identifier text) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_item errands._crontab_items;
BEGIN
    SELECT * INTO v_item FROM errands._crontab_items i WHERE i.id = run_cron_now.identifier;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'errands: no crontab item %', errands._describe(run_cron_now.identifier)
            USING ERRCODE = '22023';
    END IF;
    -- The job cron_tick would add, due now; its schedule (last_execution) is untouched.
    RETURN (errands.add_job(
        identifier => v_item.task,
        payload => (v_item.payload || jsonb_build_object('_cron', jsonb_build_object(
            'ts', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
            'backfilled', false, 'manual', true)))::json,
        queue_name => v_item.options->>'queue',
        max_attempts => (v_item.options->>'max')::integer,
        job_key => v_item.options->>'jobKey',
        priority => (v_item.options->>'priority')::integer,
        job_key_mode => coalesce(v_item.options->>'jobKeyMode', 'replace'))).id;
END
$$;
COMMENT ON FUNCTION errands.run_cron_now(text) IS
'Adds the job of the stored crontab item with this id now (as cron_tick would for a
due minute, with _cron.manual true in the payload), without changing its schedule.
Returns the job id. Raises 22023 for an unknown id.';
