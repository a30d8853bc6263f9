-- Cancelling jobs (issue 12). A job that is not running is cancelled at once:
-- deleted from errands._jobs and, when its task's retention is above 0, kept in
-- errands._finished_jobs with state 'cancelled' and the reason as last_error. A
-- running job gets its cancellation requested: errands._jobs.cancel_reason is
-- set and its worker is told on the channel 'errands:cancel'; whatever the
-- worker then reports (complete, fail, fail-now, snooze, return, cancel), or a
-- rescue of its dead worker, ends it cancelled.

-- The one statement that ends jobs cancelled. worker_id NULL: only jobs nobody
-- has locked; else only jobs that worker has locked (its queues are unlocked),
-- and with requested_only only those whose cancellation was requested. The
-- reason recorded is reasons[i] (NULL: none given), else the requested one.
-- With cascade, the jobs waiting for them (flows, 25_flows.sql) are cancelled
-- too; _cancel_dependents, which walks the graph level by level, passes false.
CREATE OR REPLACE FUNCTION errands._end_cancelled(worker_id text, job_ids bigint[],
                                                  reasons text[], requested_only boolean,
                                                  cascade boolean DEFAULT true)
RETURNS bigint[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids bigint[];
BEGIN
    WITH r AS (
        SELECT DISTINCT ON (r.id) r.id, r.reason
        FROM unnest(_end_cancelled.job_ids, _end_cancelled.reasons) AS r(id, reason)
        WHERE r.id IS NOT NULL
        ORDER BY r.id
    ), gone AS (
        DELETE FROM errands._jobs j USING r
        WHERE j.id = r.id
          AND CASE WHEN _end_cancelled.worker_id IS NULL THEN j.locked_at IS NULL
                   ELSE j.locked_by = _end_cancelled.worker_id END
          AND (NOT _end_cancelled.requested_only OR j.cancel_reason IS NOT NULL)
        RETURNING j.*, coalesce(r.reason, j.cancel_reason, 'errands: cancelled') AS reason
    -- Flow control (35_flow_control.sql): locked jobs free their queue and task slots.
    ), slots AS (
        SELECT errands._release_slots(array_agg(gone.job_queue_id), array_agg(gone.task_id))
        FROM gone WHERE gone.locked_at IS NOT NULL
    ), kept AS (
        INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                            attempts, max_attempts, last_error, key, created_at,
                                            state, result, errors, run_at, started_at)
        SELECT gone.id, q.queue_name, t.identifier, gone.payload, gone.priority, gone.attempts,
               gone.max_attempts, gone.reason, gone.key, gone.created_at, 'cancelled', NULL,
               gone.errors, gone.run_at, gone.locked_at
        FROM gone
        JOIN errands._tasks t ON t.id = gone.task_id
        LEFT JOIN errands._queues q ON q.id = gone.job_queue_id
        WHERE coalesce(t.retention, errands._retention()) > interval '0'
           OR gone.watched -- waiting (17_wait.sql): kept for its waiter
        ON CONFLICT (id) DO NOTHING
    )
    SELECT array_agg(gone.id ORDER BY gone.id) INTO v_ids FROM gone, slots;
    PERFORM errands._jobs_finished(v_ids); -- waiting hook (17_wait.sql)
    IF _end_cancelled.cascade AND v_ids IS NOT NULL THEN
        PERFORM errands._cancel_dependents(v_ids); -- flows (25_flows.sql)
    END IF;
    RETURN coalesce(v_ids, '{}');
END
$$;

-- Cancel these unlocked unfinished jobs now; returns the ids cancelled (a job a
-- worker locked meanwhile is left alone and missing from the result).
CREATE OR REPLACE FUNCTION errands._cancel_now(job_ids bigint[], reason text,
                                               cascade boolean DEFAULT true) RETURNS bigint[]
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    SELECT errands._end_cancelled(NULL, _cancel_now.job_ids,
                                  array_fill(_cancel_now.reason, ARRAY[coalesce(cardinality(_cancel_now.job_ids), 0)]),
                                  false, _cancel_now.cascade)
$$;

-- Requests the cancellation of the running jobs among job_ids (first reason
-- wins) and tells their workers; returns the ids requested.
CREATE OR REPLACE FUNCTION errands._request_cancel(job_ids bigint[], reason text) RETURNS bigint[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_ids bigint[] := '{}';
    v_row record;
BEGIN
    FOR v_row IN
        UPDATE errands._jobs j
        SET cancel_reason = coalesce(j.cancel_reason, _request_cancel.reason), updated_at = now()
        WHERE j.id = ANY(_request_cancel.job_ids) AND j.locked_at IS NOT NULL
        RETURNING j.id, j.locked_by
    LOOP
        v_ids := v_ids || v_row.id;
        PERFORM pg_notify('errands:cancel',
                          json_build_object('job_id', v_row.id, 'worker_id', v_row.locked_by)::text);
    END LOOP;
    RETURN v_ids;
END
$$;

CREATE OR REPLACE FUNCTION errands.cancel_jobs(job_ids bigint[])
RETURNS TABLE (id bigint, outcome text)
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now bigint[];
    v_requested bigint[];
BEGIN
    IF cancel_jobs.job_ids IS NULL THEN
        RAISE EXCEPTION 'errands: cancel_jobs needs an array of job ids, got NULL'
            USING ERRCODE = '22023';
    END IF;
    -- Lock the rows first (in id order: no deadlock between two cancel_jobs), so
    -- that each is judged on its latest version: a fetch, completion or failure
    -- in flight is waited for, and fetching (SKIP LOCKED) cannot take them now.
    PERFORM 1 FROM errands._jobs j WHERE j.id = ANY(cancel_jobs.job_ids) ORDER BY j.id FOR UPDATE;
    v_now := errands._cancel_now(cancel_jobs.job_ids, 'errands: cancelled by cancel_jobs');
    v_requested := errands._request_cancel(cancel_jobs.job_ids,
                                           'errands: cancelled by cancel_jobs while running');
    RETURN QUERY
    SELECT i.id,
           CASE WHEN i.id = ANY(v_now) THEN 'cancelled'
                WHEN i.id = ANY(v_requested) THEN 'cancel_requested'
                WHEN EXISTS (SELECT 1 FROM errands._finished_jobs f WHERE f.id = i.id)
                    THEN 'already_finished'
                ELSE 'unknown' END
    FROM (SELECT DISTINCT ON (x.id) x.id, x.ord
          FROM unnest(cancel_jobs.job_ids) WITH ORDINALITY AS x(id, ord)
          WHERE x.id IS NOT NULL
          ORDER BY x.id, x.ord) i
    ORDER BY i.ord;
END
$$;
COMMENT ON FUNCTION errands.cancel_jobs(bigint[]) IS
'Cancels the listed jobs and returns one row per distinct id, in input order, with
its outcome: cancelled (it was scheduled, pending, retrying or failed: it is
deleted now and kept in errands.finished_jobs with state cancelled when its
task''s retention is above 0), cancel_requested (it is running: its worker is
told on the channel errands:cancel and, whatever it reports next, the job ends
cancelled; a rescue of that worker ends it cancelled too), already_finished (in
errands.finished_jobs) or unknown (no such job, or finished and not kept).';

CREATE OR REPLACE FUNCTION errands.worker_cancel_jobs(worker_id text, job_ids bigint[],
                                                      reasons text[])
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(worker_cancel_jobs.job_ids) IS DISTINCT FROM cardinality(worker_cancel_jobs.reasons) THEN
        RAISE EXCEPTION 'errands: worker_cancel_jobs needs one reason (NULL: none) per job: % ids, % reasons',
            coalesce(cardinality(worker_cancel_jobs.job_ids)::text, 'NULL'),
            coalesce(cardinality(worker_cancel_jobs.reasons)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT unnest(errands._end_cancelled(worker_cancel_jobs.worker_id, worker_cancel_jobs.job_ids,
                                         worker_cancel_jobs.reasons, false));
END
$$;
COMMENT ON FUNCTION errands.worker_cancel_jobs(text, bigint[], text[]) IS
'Worker API. Cancels each listed job that worker_id has locked (the task raised
errands.Cancel): it ends cancelled, never retried, with its reason (NULL: the
requested one, else "errands: cancelled") as last_error; kept in
errands.finished_jobs when its task''s retention is above 0; its queue is
unlocked. Returns the ids cancelled: a missing id was no longer this worker''s.';

CREATE OR REPLACE FUNCTION errands.worker_cancel_requests(worker_id text)
RETURNS SETOF bigint
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT j.id FROM errands._jobs j
    WHERE j.locked_by = worker_cancel_requests.worker_id AND j.cancel_reason IS NOT NULL
    ORDER BY j.id
$$;
COMMENT ON FUNCTION errands.worker_cancel_requests(text) IS
'Worker API. The ids of the jobs worker_id has locked whose cancellation was
requested (the slow-poll fallback of the errands:cancel notifications).';

-- Ends cancelled those of job_ids whose cancellation was requested, whoever has
-- them locked (rescue of dead workers, stale locks); returns their ids.
CREATE OR REPLACE FUNCTION errands._end_requested(job_ids bigint[]) RETURNS bigint[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_all bigint[] := '{}';
    v_worker text;
    v_ids bigint[];
BEGIN
    FOR v_worker, v_ids IN
        SELECT j.locked_by, array_agg(j.id) FROM errands._jobs j
        WHERE j.id = ANY(_end_requested.job_ids) AND j.cancel_reason IS NOT NULL
          AND j.locked_by IS NOT NULL
        GROUP BY j.locked_by
    LOOP
        v_all := v_all || errands._end_cancelled(v_worker, v_ids, NULL, true);
    END LOOP;
    RETURN v_all;
END
$$;
