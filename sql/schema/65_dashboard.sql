-- (65_: after the workers view of 60_workers.sql, whose row type dashboard_workers returns.)
-- What the web dashboard (python_client/errands/dashboard) reads that the public
-- views cannot give cheaply: job counts (exact on a small table, estimated from
-- a block sample on a big one), the overview's charts and the crontab items with
-- their next run. Read-only; errands.grant_dashboard (70_roles.sql) grants them.

-- Rows of errands._jobs as the planner would estimate them now: reltuples per
-- page times the current number of pages (reltuples alone lags behind inserts).
CREATE OR REPLACE FUNCTION errands._jobs_estimate() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0
                THEN (c.reltuples / c.relpages
                      * (pg_catalog.pg_relation_size(c.oid)
                         / pg_catalog.current_setting('block_size')::bigint))::bigint
                ELSE -1 END
    FROM pg_catalog.pg_class c WHERE c.oid = 'errands._jobs'::regclass
$$;

-- Running, waiting and failed jobs (the ones no fetch index holds) by state, task
-- and queue, counted exactly through the partial index jobs_unavailable: they are
-- few, and a rare state must not vanish in a sample (40 running jobs showed as 0).
-- Grouped by ids first, the names joined to the groups (half the time). For
-- dashboard_counts and job_counts (65_metrics.sql) on a big table; plain SQL, so
-- inlined into their query.
CREATE OR REPLACE FUNCTION errands._unavailable_counts()
RETURNS TABLE (state text, task_identifier text, queue_name text, jobs bigint)
LANGUAGE sql STABLE AS $$
    SELECT g.state, t.identifier, q.queue_name, g.n
    FROM (SELECT CASE WHEN j.locked_at IS NOT NULL THEN 'running'
                      WHEN j.waiting_for IS NOT NULL THEN 'waiting'
                      ELSE 'failed' END AS state,
                 j.task_id, j.job_queue_id, count(*) AS n
          FROM errands._jobs j
          WHERE NOT j.is_available
          GROUP BY 1, 2, 3) g
    JOIN errands._tasks t ON t.id = g.task_id
    LEFT JOIN errands._queues q ON q.id = g.job_queue_id
$$;

CREATE OR REPLACE FUNCTION errands.dashboard_counts(exact_below bigint DEFAULT 100000)
RETURNS TABLE (state text, task_identifier text, queue_name text, jobs bigint, estimated boolean)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF exact_below IS NULL OR exact_below < 0 THEN
        RAISE EXCEPTION 'errands: dashboard_counts needs exact_below >= 0, got %',
            coalesce(exact_below::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- The counts /metrics serves too (65_metrics.sql), with a larger sample: the
    -- overview shows every task and queue, where a scrape sums them.
    RETURN QUERY
    SELECT c.state, c.task_identifier, c.queue_name, c.jobs, c.estimated
    FROM errands.job_counts(exact_below, 50000) c;
END
$$;
COMMENT ON FUNCTION errands.dashboard_counts(bigint) IS
'Dashboard: the unfinished jobs counted by state, task and queue. When errands._jobs
holds fewer than exact_below rows (planner estimate) the counts are exact
(estimated false). Otherwise running, waiting and failed jobs are still counted
exactly (estimated false), through the partial index jobs_unavailable, and
pending, scheduled and retrying ones come from a block sample of about 50,000
rows scaled to the estimated table size (estimated true): a rare combination of
those may be missing from the estimate.';

-- The window of a chart (dashboard_chart, dashboard_durations): since within the
-- last 7 days, buckets of at least 1 second, at most 1000 of them; raises 22023
-- naming fn and the values otherwise.
CREATE OR REPLACE FUNCTION errands._check_chart_window(fn text, since timestamptz, bucket interval)
RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF since IS NULL OR bucket IS NULL OR bucket < interval '1 second'
       OR since < now() - interval '7 days' OR extract(epoch FROM now() - since) / extract(epoch FROM bucket) > 1000 THEN
        RAISE EXCEPTION 'errands: % needs a since within 7 days and at most 1000 buckets of at least 1 second, got since %, bucket %',
            fn, coalesce(since::text, 'NULL'), coalesce(bucket::text, 'NULL') USING ERRCODE = '22023';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION errands.dashboard_chart(since timestamptz, bucket interval)
RETURNS TABLE (bucket_start timestamptz, completed bigint, cancelled bigint, failed bigint,
               wait_p50 float8, wait_max float8)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_est bigint := errands._jobs_estimate();
    v_pct float8 := 100.0;
BEGIN
    PERFORM errands._check_chart_window('dashboard_chart', since, bucket);
    IF v_est >= 100000 THEN
        v_pct := least(100.0, 100.0 * 50000 / v_est);
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH b AS (
            SELECT g AS s FROM generate_series($1, now(), $2) g
        ), h AS (
            -- History (kept when retention > 0): finished_at is indexed.
            SELECT $1 + $2 * floor(extract(epoch FROM f.finished_at - $1)
                                   / extract(epoch FROM $2)) AS s,
                   f.state,
                   extract(epoch FROM f.finished_at - f.created_at)::float8 AS wait
            FROM errands._finished_jobs f
            WHERE f.finished_at >= $1
        ), hb AS (
            SELECT h.s, count(*) FILTER (WHERE h.state = 'completed') AS completed,
                   count(*) FILTER (WHERE h.state = 'cancelled') AS cancelled,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY h.wait)
                       FILTER (WHERE h.state = 'completed') AS wait_p50,
                   max(h.wait) FILTER (WHERE h.state = 'completed') AS wait_max
            FROM h GROUP BY 1
        ), fb AS (
            -- Failed tries still in errands._jobs (retrying or failed), by the
            -- time of their last failure; sampled on a big table.
            SELECT $1 + $2 * floor(extract(epoch FROM j.updated_at - $1)
                                   / extract(epoch FROM $2)) AS s,
                   round(count(*) * 100.0 / %s)::bigint AS failed
            FROM errands._jobs j TABLESAMPLE SYSTEM (%s)
            WHERE j.updated_at >= $1 AND j.attempts > 0 AND j.locked_at IS NULL
              AND j.last_error IS NOT NULL
            GROUP BY 1
        )
        SELECT b.s, coalesce(hb.completed, 0), coalesce(hb.cancelled, 0),
               coalesce(fb.failed, 0), hb.wait_p50, hb.wait_max
        FROM b LEFT JOIN hb ON hb.s = b.s LEFT JOIN fb ON fb.s = b.s
        ORDER BY b.s$q$, v_pct, v_pct) USING since, bucket;
END
$$;
COMMENT ON FUNCTION errands.dashboard_chart(timestamptz, interval) IS
'Dashboard: per bucket of the given length since the given time (at most 7 days,
1000 buckets): jobs completed and cancelled (from errands.finished_jobs: zero when
retention is 0), jobs whose last try failed then and that are still in
errands.jobs (retrying or failed; estimated from a block sample on a big table),
and the median and maximum seconds from creation to completion of the completed
jobs (history does not keep start times: this is queue wait plus run time).';

-- The next minute after "after" at which a crontab item is due, within a year.
CREATE OR REPLACE FUNCTION errands._cron_next_run(i errands._crontab_items, after timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_tz text := coalesce(i.options->>'tz', 'UTC');
    v_after timestamptz := date_trunc('minute', after);
    v_day date := (v_after AT TIME ZONE v_tz)::date;
    v_m timestamptz;
BEGIN
    WHILE v_day <= (v_after AT TIME ZONE v_tz)::date + 366 LOOP
        IF errands._cron_wall_match(v_day::timestamp, '{0}', '{0}', i.days_of_month,
                                    i.months, i.days_of_week) THEN
            SELECT g INTO v_m FROM generate_series(
                greatest(v_day::timestamp AT TIME ZONE v_tz, v_after + interval '1 minute'),
                (v_day + 1)::timestamp AT TIME ZONE v_tz - interval '1 minute',
                interval '1 minute') g
            WHERE errands._cron_due(g, i.minutes, i.hours, i.days_of_month, i.months,
                                    i.days_of_week, v_tz)
            ORDER BY g LIMIT 1;
            IF v_m IS NOT NULL THEN
                RETURN v_m;
            END IF;
        END IF;
        v_day := v_day + 1;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION errands.dashboard_cron()
RETURNS TABLE (identifier text, source text, task text, options jsonb, payload jsonb,
               last_execution timestamptz, next_run timestamptz)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.id, i.source, i.task, i.options, i.payload, k.last_execution,
           errands._cron_next_run(i, now())
    FROM errands._crontab_items i
    LEFT JOIN errands._known_crontabs k ON k.identifier = i.id
    ORDER BY i.source, i.line_number
$$;
COMMENT ON FUNCTION errands.dashboard_cron() IS
'Dashboard: every stored crontab item (set_crontab) with its source, task,
options, payload, the minute cron_tick last scheduled (NULL: never) and its next
due minute within a year (NULL: none).';

-- Each worker's locked jobs. A function of its own: the scan it needs (there is
-- deliberately no index on locked_by) may then run in parallel, which the
-- parallel-unsafe liveness checks of the errands.workers view forbid in a query
-- that contains them.
CREATE OR REPLACE FUNCTION errands._locked_jobs_by_worker()
RETURNS TABLE (locked_by text, ids bigint[])
LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- A locked job is never available: the partial index jobs_unavailable holds
    -- it, so this reads the running and failed jobs, not the whole table.
    RETURN QUERY SELECT j.locked_by, array_agg(j.id ORDER BY j.id)
                 FROM errands._jobs j WHERE j.locked_by IS NOT NULL AND NOT j.is_available
                 GROUP BY j.locked_by;
END
$$;

CREATE OR REPLACE FUNCTION errands.dashboard_workers() RETURNS SETOF errands.workers
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    -- The view's running_job_ids is not read, so its own scan is planned away.
    SELECT w.id, w.host, w.pid, w.started_at, w.last_heartbeat, w.state,
           coalesce(r.ids, '{}'), w.session_lock
    FROM errands.workers w
    LEFT JOIN errands._locked_jobs_by_worker() r ON r.locked_by = w.id
    ORDER BY w.started_at DESC, w.id
$$;
COMMENT ON FUNCTION errands.dashboard_workers() IS
'Dashboard: the rows of the errands.workers view (alive, hung or dead, heartbeat,
running job ids), newest first, for a role that may not call the private
functions the view uses.';

-- The live-job lists and bulk actions of the dashboard select their ids here, on
-- errands._jobs itself: no join with the task table per row (the view's), so a
-- list sorted by run_at or attempts reads the table once and sorts only ids.
CREATE OR REPLACE FUNCTION errands.dashboard_job_ids(filter jsonb, sort text DEFAULT 'id',
                                                     descending boolean DEFAULT true,
                                                     after_value text DEFAULT NULL,
                                                     after_id bigint DEFAULT NULL,
                                                     id_bound bigint DEFAULT NULL,
                                                     n integer DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_where text := 'true';
    v_from text := 'errands._jobs j';
    v_op text := CASE WHEN descending THEN '<' ELSE '>' END;
    v_dir text := CASE WHEN descending THEN 'DESC' ELSE 'ASC' END;
    v_key text;
BEGIN
    IF filter IS NULL OR jsonb_typeof(filter) <> 'object' OR descending IS NULL
       OR sort IS NULL OR sort NOT IN ('id', 'run_at', 'attempts') OR n < 0 THEN
        RAISE EXCEPTION 'errands: dashboard_job_ids needs a filter object, sort id, run_at or attempts, descending and n >= 0, got filter %, sort %, n %',
            coalesce(left(filter::text, 200), 'NULL'), coalesce(quote_literal(sort), 'NULL'),
            coalesce(n::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    SELECT k INTO v_key FROM jsonb_object_keys(filter) k
    WHERE k NOT IN ('state', 'task', 'queue', 'key', 'error', 'payload', 'since', 'until')
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: dashboard_job_ids: unknown filter field %', quote_literal(v_key)
            USING ERRCODE = '22023';
    END IF;
    IF filter ? 'state' THEN
        IF filter->>'state' NOT IN ('running', 'waiting', 'failed', 'retrying', 'scheduled',
                                    'pending') THEN
            RAISE EXCEPTION 'errands: dashboard_job_ids: unknown state %',
                quote_literal(filter->>'state') USING ERRCODE = '22023';
        END IF;
        -- As the state column of errands.jobs (10_jobs.sql).
        v_where := v_where || format(' AND CASE WHEN j.locked_at IS NOT NULL THEN ''running''
            WHEN j.waiting_for IS NOT NULL THEN ''waiting''
            WHEN j.attempts >= j.max_attempts THEN ''failed''
            WHEN j.attempts > 0 THEN ''retrying''
            WHEN j.run_at > now() THEN ''scheduled''
            ELSE ''pending'' END = %L', filter->>'state');
        -- Running, waiting and failed jobs are the unavailable ones: read through
        -- the partial index jobs_unavailable, not the whole table.
        -- (OFFSET 0 keeps the planner from walking the primary key instead,
        -- hoping for an early match, when the rows sit at the far end.)
        IF filter->>'state' IN ('running', 'waiting', 'failed') THEN
            v_from := '(SELECT * FROM errands._jobs u WHERE NOT u.is_available OFFSET 0) j';
        END IF;
    END IF;
    IF filter ? 'task' THEN
        v_where := v_where || format(' AND j.task_id = (SELECT t.id FROM errands._tasks t
            WHERE t.identifier = %L)', filter->>'task');
    END IF;
    IF filter ? 'queue' THEN
        v_where := v_where || format(' AND j.job_queue_id = (SELECT q.id FROM errands._queues q
            WHERE q.queue_name = %L)', filter->>'queue');
    END IF;
    IF filter ? 'key' THEN
        v_where := v_where || format(' AND j.key = %L', filter->>'key');
    END IF;
    IF filter ? 'error' THEN
        v_where := v_where || format(' AND strpos(lower(j.last_error), lower(%L)) > 0',
                                     filter->>'error');
    END IF;
    IF filter ? 'payload' THEN
        v_where := v_where || format(' AND j.payload::jsonb @> %L::jsonb', filter->'payload');
    END IF;
    IF filter ? 'since' THEN
        v_where := v_where || format(' AND j.run_at >= %L::timestamptz', filter->>'since');
    END IF;
    IF filter ? 'until' THEN
        v_where := v_where || format(' AND j.run_at < %L::timestamptz', filter->>'until');
    END IF;
    IF after_id IS NOT NULL THEN
        v_where := v_where || CASE sort
            WHEN 'id' THEN format(' AND j.id %s %s', v_op, after_id)
            WHEN 'run_at' THEN format(' AND (j.run_at, j.id) %s (%L::timestamptz, %s)', v_op,
                                      after_value, after_id)
            ELSE format(' AND (j.attempts, j.id) %s (%L::integer, %s)', v_op, after_value,
                        after_id) END;
    END IF;
    IF id_bound IS NOT NULL THEN
        v_where := v_where || format(' AND j.id %s %s', CASE WHEN descending THEN '>=' ELSE '<=' END,
                                     id_bound);
    END IF;
    -- RETURN QUERY (not EXECUTE ... INTO) may run the scan in parallel.
    RETURN QUERY EXECUTE format('SELECT j.id FROM %s WHERE %s ORDER BY %s LIMIT %s',
                   v_from, v_where,
                   CASE WHEN sort = 'id' THEN format('j.id %s', v_dir)
                        ELSE format('j.%I %s, j.id %s', sort, v_dir, v_dir) END,
                   coalesce(n::text, 'ALL'));
END
$$;
COMMENT ON FUNCTION errands.dashboard_job_ids(jsonb, text, boolean, text, bigint, bigint, integer) IS
'Dashboard: the ids of the unfinished jobs matching filter (an object with any of
state, task, queue, key, error (text in last_error, any case), payload (a JSON value
the payload contains), since and until (bounds of run_at)), in order of sort (id,
run_at or attempts, then id; descending or not), after the keyset cursor
(after_value, after_id), within id_bound (ids >= it when descending, <= it
otherwise), at most n (NULL: all), one row each. Bad arguments raise 22023.';

-- Queue wait (run_at -> start of the try that completed) and run time (start ->
-- completion) of the jobs completed in each bucket, from history (kept when
-- retention > 0; finished_at is indexed): medians and maxima in seconds.
-- Completions recorded before history kept start times have none and are left out.
CREATE OR REPLACE FUNCTION errands.dashboard_durations(since timestamptz, bucket interval)
RETURNS TABLE (bucket_start timestamptz, wait_p50 float8, wait_max float8,
               run_p50 float8, run_max float8, jobs bigint)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM errands._check_chart_window('dashboard_durations', since, bucket);
    RETURN QUERY
    WITH b AS (
        SELECT g AS s FROM generate_series(since, now(), bucket) g
    ), h AS (
        SELECT since + bucket * floor(extract(epoch FROM f.finished_at - since)
                                      / extract(epoch FROM bucket)) AS s,
               greatest(0, extract(epoch FROM f.started_at - f.run_at))::float8 AS wait,
               extract(epoch FROM f.finished_at - f.started_at)::float8 AS run
        FROM errands._finished_jobs f
        WHERE f.finished_at >= since AND f.state = 'completed'
          AND f.started_at IS NOT NULL AND f.run_at IS NOT NULL
    ), hb AS (
        SELECT h.s, percentile_cont(0.5) WITHIN GROUP (ORDER BY h.wait) AS wait_p50,
               max(h.wait) AS wait_max,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY h.run) AS run_p50,
               max(h.run) AS run_max, count(*) AS jobs
        FROM h GROUP BY 1
    )
    SELECT b.s, hb.wait_p50, hb.wait_max, hb.run_p50, hb.run_max, coalesce(hb.jobs, 0)
    FROM b LEFT JOIN hb ON hb.s = b.s
    ORDER BY b.s;
END
$$;
COMMENT ON FUNCTION errands.dashboard_durations(timestamptz, interval) IS
'Dashboard: per bucket of the given length since the given time (at most 7 days,
1000 buckets), for the jobs completed then (errands.finished_jobs: none when
retention is 0): the median and maximum queue wait (run_at of the last try to
its start) and run time (start to completion) in seconds, and how many jobs.';
