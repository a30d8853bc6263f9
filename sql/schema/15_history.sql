-- Finished-job history: the errands.finished_jobs view, retention settings and
-- pruning. errands.worker_complete_jobs (30_fetch.sql) and errands.complete_jobs
-- (40_admin.sql) move completed jobs into errands._finished_jobs.

CREATE OR REPLACE VIEW errands.finished_jobs AS
SELECT f.id,
       f.queue_name,
       f.task_identifier,
       f.payload,
       f.priority::integer AS priority,
       f.attempts::integer AS attempts,
       f.max_attempts::integer AS max_attempts,
       f.last_error,
       f.key,
       f.created_at,
       f.finished_at,
       f.state,
       f.result,
       f.errors,
       f.run_at,
       f.started_at
FROM errands._finished_jobs f;
COMMENT ON VIEW errands.finished_jobs IS
    'Read-only view of finished jobs kept for their retention (errands.set_retention, errands.set_task_retention). state: completed or cancelled; result: the task''s return value (NULL: none). errors: its failed tries, as errands.jobs.errors. run_at: when its last try was due; started_at: when that try started (NULL: it finished without running). Queue wait: started_at - run_at; run time: finished_at - started_at.';

-- Retention is read on every completion; like the payload limit (20_enqueue.sql)
-- it is folded into constant SQL functions that set_retention and
-- set_task_retention regenerate, so completing a job does not read a table:
-- _retention() is the global retention, _history_on() whether any task keeps
-- history at all (false: worker_complete_jobs takes the plain DELETE path).
CREATE OR REPLACE FUNCTION errands._define_retention() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_global interval := coalesce((SELECT s.retention FROM errands._settings s), interval '0');
BEGIN
    PERFORM errands._define_constant('_retention', 'interval', v_global::text);
    PERFORM errands._define_constant('_history_on', 'boolean',
        (v_global > interval '0'
         OR EXISTS (SELECT 1 FROM errands._tasks t WHERE t.retention > interval '0'))::text);
END
$$;
DO $retention$ BEGIN PERFORM errands._define_retention(); END $retention$;

CREATE OR REPLACE FUNCTION errands.set_retention(retention interval) RETURNS interval
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF set_retention.retention IS NULL OR set_retention.retention < interval '0' THEN
        RAISE EXCEPTION 'errands: retention must be 0 (delete at completion) or a positive interval, got %',
            coalesce(set_retention.retention::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- The row lock serializes concurrent calls (see set_max_payload_bytes).
    UPDATE errands._settings s SET retention = set_retention.retention;
    IF NOT FOUND THEN
        INSERT INTO errands._settings (retention) VALUES (set_retention.retention);
    END IF;
    PERFORM errands._define_retention();
    RETURN set_retention.retention;
END
$$;
COMMENT ON FUNCTION errands.set_retention(interval) IS
'Sets how long finished jobs stay in errands.finished_jobs for tasks without a
retention of their own (default 0: history off); 0 deletes jobs at completion (no
history, the cheapest path). Returns the new retention. Only the schema owner
(or a superuser) may run it, or a role the owner grants EXECUTE on it to.';

CREATE OR REPLACE FUNCTION errands.set_task_retention(task_identifier text, retention interval)
RETURNS interval
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF set_task_retention.task_identifier IS NULL
       OR length(set_task_retention.task_identifier) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'errands: set_task_retention needs a task identifier of 1 to 128 characters, got %',
            coalesce(quote_literal(set_task_retention.task_identifier), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF set_task_retention.retention < interval '0' THEN
        RAISE EXCEPTION 'errands: retention must be NULL (the global), 0 (delete at completion) or a positive interval, got %',
            set_task_retention.retention USING ERRCODE = '22023';
    END IF;
    -- Serialize with set_retention (both regenerate the same functions).
    PERFORM 1 FROM errands._settings s FOR UPDATE;
    INSERT INTO errands._tasks (identifier, retention)
    VALUES (set_task_retention.task_identifier, set_task_retention.retention)
    ON CONFLICT (identifier) DO UPDATE SET retention = EXCLUDED.retention;
    PERFORM errands._define_retention();
    RETURN set_task_retention.retention;
END
$$;
COMMENT ON FUNCTION errands.set_task_retention(text, interval) IS
'Sets how long finished jobs of one task stay in errands.finished_jobs, overriding
errands.set_retention; NULL uses the global retention again, 0 deletes the
task''s jobs at completion. Returns the retention. Only the schema owner (or a
superuser) may run it, or a role the owner grants EXECUTE on it to.';

-- Bounded steps: at most max_rows rows per call, taken with SKIP LOCKED by ctid,
-- so a call is short, never waits on another pruner, and touches only
-- errands._finished_jobs (fetching reads errands._jobs: never blocked).
CREATE OR REPLACE FUNCTION errands.prune_finished_jobs(max_rows integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_global interval := coalesce((SELECT s.retention FROM errands._settings s), interval '0');
    -- Nothing finished after now - (shortest retention in use) can be expired:
    -- the index on finished_at bounds the scan with it.
    v_min interval := least(v_global, (SELECT min(t.retention) FROM errands._tasks t));
    v_count integer;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'errands: prune_finished_jobs needs max_rows >= 1, got %',
            coalesce(max_rows::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    WITH expired AS (
        SELECT f.ctid
        FROM errands._finished_jobs f
        WHERE f.finished_at < v_now - v_min
          AND f.finished_at < v_now - coalesce(
                (SELECT t.retention FROM errands._tasks t WHERE t.identifier = f.task_identifier),
                v_global)
          -- Kept while a waiter's lease on it lasts (17_wait.sql).
          AND NOT EXISTS (SELECT FROM errands._job_waiters w
                          WHERE w.job_id = f.id AND w.expires_at > v_now)
          -- Flows (25_flows.sql): kept while a job that depends on it is unfinished.
          AND NOT EXISTS (SELECT 1 FROM errands._job_dependencies d JOIN errands._jobs w ON w.id = d.job_id
                          WHERE d.depends_on = f.id)
        ORDER BY f.finished_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM errands._finished_jobs f USING expired WHERE f.ctid = expired.ctid;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    -- Expired leases go too (their waiters gave up or went away).
    WITH expired AS (
        SELECT w.ctid FROM errands._job_waiters w
        WHERE w.expires_at <= v_now
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM errands._job_waiters w USING expired WHERE w.ctid = expired.ctid;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION errands.prune_finished_jobs(integer) IS
'Deletes up to max_rows finished jobs whose retention (their task''s, else the
global) has passed, oldest first, skipping rows another pruner holds and rows
a waiter still watches (errands.watch_jobs lease), and the expired leases. Returns how
many it deleted: call it again while that equals max_rows. Live workers call it
periodically; pg_cron can too (see docs/history.md).';
