-- Database-wide figures for monitoring (errands.metrics_db renders them for
-- Prometheus): jobs by task, queue and state, the oldest job waiting to run,
-- workers by state. Each is cheap on a big table: no full scan per call.

-- Jobs by task, queue and state (the states of errands.jobs). Exact (one pass
-- over errands.jobs) while the table holds fewer than exact_below rows by the
-- planner's estimate; above that, estimated from a block sample of about
-- sample_rows rows scaled to the table's estimated size (estimated = true): a
-- scrape then reads a bounded number of pages whatever the backlog.
CREATE OR REPLACE FUNCTION errands.job_counts(exact_below bigint DEFAULT 100000,
                                              sample_rows integer DEFAULT 20000)
RETURNS TABLE (task_identifier text, queue_name text, state text, jobs bigint,
               estimated boolean)
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_pages double precision;
    v_rows double precision;
    v_percent double precision;
BEGIN
    IF exact_below IS NULL OR exact_below < 0 OR sample_rows IS NULL OR sample_rows < 1 THEN
        RAISE EXCEPTION 'errands: job_counts needs exact_below >= 0 and sample_rows >= 1, got % and %',
            coalesce(exact_below::text, 'NULL'), coalesce(sample_rows::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- The planner's estimate: rows per page at the last ANALYZE times the pages now.
    SELECT c.reltuples / greatest(c.relpages, 1)::double precision,
           pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::double precision
    INTO v_rows, v_pages
    FROM pg_catalog.pg_class c WHERE c.oid = 'errands._jobs'::regclass;
    -- Never analyzed (reltuples -1): assume 100 rows a page, which errs on the
    -- side of sampling.
    v_rows := CASE WHEN v_rows > 0 THEN v_rows ELSE 100 END * v_pages;
    IF v_rows < exact_below THEN
        RETURN QUERY
        SELECT j.task_identifier, j.queue_name, j.state, count(*), false
        FROM errands.jobs j
        GROUP BY 1, 2, 3;
        RETURN;
    END IF;
    v_percent := least(100, 100 * sample_rows / v_rows);
    -- Running, waiting and failed jobs: exact (65_dashboard.sql), estimated false.
    RETURN QUERY
    SELECT u.task_identifier, u.queue_name, u.state, u.jobs, false
    FROM errands._unavailable_counts() u;
    -- A view cannot be sampled: the rows of errands.jobs from the table, the
    -- state as errands._job_row computes it; only the available ones (pending,
    -- scheduled, retrying) are kept from the sample.
    RETURN QUERY
    WITH s AS (
        SELECT t.identifier AS task_identifier, q.queue_name,
               (errands._job_row(j, q.queue_name, t.identifier)).state AS state,
               count(*) AS n
        FROM errands._jobs j TABLESAMPLE SYSTEM (v_percent)
        JOIN errands._tasks t ON t.id = j.task_id
        LEFT JOIN errands._queues q ON q.id = j.job_queue_id
        GROUP BY 1, 2, 3
    )
    SELECT x.task_identifier, x.queue_name, x.state, x.n, true
    FROM (SELECT s.task_identifier, s.queue_name, s.state,
                 round(s.n * v_rows / greatest(sum(s.n) OVER (), 1))::bigint AS n
          FROM s) x
    WHERE x.state IN ('pending', 'scheduled', 'retrying');
END
$$;
COMMENT ON FUNCTION errands.job_counts(bigint, integer) IS
'Jobs of errands.jobs by task_identifier, queue_name and state. Exact while the
table holds fewer than exact_below rows (planner estimate); otherwise running,
waiting and failed jobs are still counted exactly (through the partial index
jobs_unavailable) and pending, scheduled and retrying ones estimated from a
block sample of about sample_rows rows scaled to the estimated table size
(estimated true).';

-- The run_at of the job that has waited longest among those ready to run (not
-- running, attempts left, not waiting for dependencies, run_at passed): NULL
-- when none. A skip scan of the two fetch indexes: one probe per (task,
-- priority) of plain jobs and per (queue, priority) of named-queue jobs that
-- have available jobs, not one per job.
CREATE OR REPLACE FUNCTION errands.oldest_ready_run_at() RETURNS timestamptz
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH RECURSIVE plain AS (
        (SELECT j.task_id, j.priority FROM errands._jobs j
         WHERE j.is_available AND j.job_queue_id IS NULL
         ORDER BY j.task_id, j.priority LIMIT 1)
        UNION ALL
        SELECT n.task_id, n.priority
        FROM plain p, LATERAL (
            SELECT j.task_id, j.priority FROM errands._jobs j
            WHERE j.is_available AND j.job_queue_id IS NULL
              AND (j.task_id, j.priority) > (p.task_id, p.priority)
            ORDER BY j.task_id, j.priority LIMIT 1) n
    ), queued AS (
        (SELECT j.job_queue_id, j.priority FROM errands._jobs j
         WHERE j.is_available AND j.job_queue_id IS NOT NULL
         ORDER BY j.job_queue_id, j.priority LIMIT 1)
        UNION ALL
        SELECT n.job_queue_id, n.priority
        FROM queued p, LATERAL (
            SELECT j.job_queue_id, j.priority FROM errands._jobs j
            WHERE j.is_available AND j.job_queue_id IS NOT NULL
              AND (j.job_queue_id, j.priority) > (p.job_queue_id, p.priority)
            ORDER BY j.job_queue_id, j.priority LIMIT 1) n
    ), heads AS (
        SELECT (SELECT j.run_at FROM errands._jobs j
                WHERE j.is_available AND j.job_queue_id IS NULL
                  AND j.task_id = p.task_id AND j.priority = p.priority
                ORDER BY j.run_at LIMIT 1) AS run_at
        FROM plain p
        UNION ALL
        SELECT (SELECT j.run_at FROM errands._jobs j
                WHERE j.is_available AND j.job_queue_id = p.job_queue_id
                  AND j.priority = p.priority
                ORDER BY j.run_at LIMIT 1)
        FROM queued p
    )
    SELECT min(h.run_at) FROM heads h WHERE h.run_at <= now()
$$;
COMMENT ON FUNCTION errands.oldest_ready_run_at() IS
'The run_at of the job that has waited longest among those ready to run now
(pending, or retrying with its backoff over: not running, attempts left, not
waiting for dependencies, run_at passed); NULL when there is none. Reads one
index entry per (task, priority) and (queue, priority) that has available jobs.';

-- Registered workers by the state errands.workers shows (alive, hung, dead).
CREATE OR REPLACE FUNCTION errands.worker_counts()
RETURNS TABLE (state text, workers bigint)
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT w.state, count(*) FROM errands.workers w GROUP BY w.state
$$;
COMMENT ON FUNCTION errands.worker_counts() IS
'Registered workers by state (alive, hung, dead, as errands.workers shows them).';
