-- Worker-facing functions: the only statements a worker runs against jobs.
-- Each takes the caller's worker id; complete, fail and return touch only jobs
-- that worker has locked, so a worker that lost its lock cannot clobber a job.

CREATE OR REPLACE FUNCTION errands.get_jobs(
    worker_id text,
    task_identifiers text[],
    job_count integer DEFAULT 1,
    forbidden_flags text[] DEFAULT NULL,
    async_commit boolean DEFAULT false
) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
-- Planning the candidate query costs ~1 ms, several times its execution for a
-- small batch, and PL/pgSQL kept re-planning it (custom plans). Its generic
-- plan is the same index walk, but its cost estimate (unknown LIMIT) crossed
-- jit_above_cost: JIT compilation took ~68 ms per call. Plan once, no JIT.
SET plan_cache_mode = force_generic_plan
SET jit = off
-- The walk over queues_ready must be an ordered index scan that stops after
-- job_count queues; the generic plan's estimate (every ready queue of a
-- priority, an unknown LIMIT) chose a bitmap or sequential scan and a sort of
-- all of them instead. Every other read here is an index scan anyway.
SET enable_bitmapscan = off
SET enable_seqscan = off
AS $$
DECLARE
    v_task_ids integer[];
    v_task_caps integer[];   -- per task: the most jobs this fetch may take of it
    v_limited integer[];     -- those of v_task_ids with a concurrency or rate limit
    v_forbidden text[] := CASE WHEN cardinality(get_jobs.forbidden_flags) > 0
                               THEN get_jobs.forbidden_flags END;
    v_now timestamptz := now();
    v_clock timestamptz;     -- start time recorded for rate limits
    v_ids bigint[];          -- jobs taken
    v_id_tasks integer[];    -- their tasks
    v_heads bigint[];        -- jobs of named queues (then: those locked)
    v_head_queues integer[]; -- their queues
    v_head_tasks integer[];  -- their tasks
    v_locked_queues integer[]; -- the queues of v_heads this fetch locked
BEGIN
    IF get_jobs.worker_id IS NULL OR get_jobs.worker_id = '' THEN
        RAISE EXCEPTION 'errands: worker_id must not be empty, got %',
            errands._describe(get_jobs.worker_id) USING ERRCODE = '22023';
    END IF;
    IF get_jobs.job_count IS NULL OR get_jobs.job_count < 1 THEN
        RAISE EXCEPTION 'errands: job_count must be at least 1, got %',
            coalesce(get_jobs.job_count::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- Paused tasks, and tasks at their concurrency or rate limit, are left out
    -- here: their waiting jobs are not read at all (flow control, 35_flow_control.sql).
    SELECT array_agg(t.id), array_agg(c.cap),
           array_agg(t.id) FILTER (WHERE t.concurrency IS NOT NULL OR t.rate_limit IS NOT NULL)
    INTO v_task_ids, v_task_caps, v_limited
    FROM errands._tasks t
    CROSS JOIN LATERAL (
        SELECT CASE WHEN t.concurrency IS NULL AND t.rate_limit IS NULL THEN get_jobs.job_count
                    ELSE least(get_jobs.job_count, t.concurrency - t.running,
                               errands._rate_room(t.starts, t.rate_limit, t.rate_period, v_now))
               END AS cap
    ) c
    WHERE t.identifier = ANY(get_jobs.task_identifiers) AND NOT t.paused AND c.cap > 0;
    IF v_task_ids IS NULL THEN
        RETURN;
    END IF;
    -- 1. The best job_count candidates: jobs without a queue (row-locked as they
    --    are read, SKIP LOCKED) and the first jobs of each named queue that may
    --    start one (not paused, not full: one for a serial queue).
    SELECT array_agg(c.id) FILTER (WHERE c.job_queue_id IS NULL),
           array_agg(c.task_id) FILTER (WHERE c.job_queue_id IS NULL),
           array_agg(c.id) FILTER (WHERE c.job_queue_id IS NOT NULL),
           array_agg(c.job_queue_id) FILTER (WHERE c.job_queue_id IS NOT NULL),
           array_agg(c.task_id) FILTER (WHERE c.job_queue_id IS NOT NULL)
    INTO v_ids, v_id_tasks, v_heads, v_head_queues, v_head_tasks
    FROM (
        SELECT u.id, u.job_queue_id, u.task_id, u.priority, u.run_at
        FROM unnest(v_task_ids, v_task_caps) AS tid(task_id, cap)
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
            SELECT d.id, d.job_queue_id, d.task_id, d.priority, d.run_at
            FROM prio CROSS JOIN LATERAL (
                SELECT j.id, j.job_queue_id, j.task_id, j.priority, j.run_at
                FROM errands._jobs j
                WHERE j.task_id = tid.task_id AND j.priority = prio.p
                  AND j.is_available AND j.job_queue_id IS NULL
                  AND j.run_at <= v_now
                  AND (v_forbidden IS NULL OR j.flags IS NULL OR NOT j.flags ?| v_forbidden)
                ORDER BY j.run_at, j.id
                LIMIT tid.cap
                FOR UPDATE SKIP LOCKED
            ) d
            ORDER BY d.priority, d.run_at, d.id
            LIMIT tid.cap
        ) u
        UNION ALL
        -- Named queues: the queues that may start a job (not full, not paused)
        -- walked by their due heads in job order, one priority at a time (a loose
        -- scan of queues_ready, 32_queue_heads.sql), until job_count jobs are
        -- found; each is probed for its best due jobs, never more than its free
        -- slots, so never two jobs of a serial queue in a batch (Graphile's #621).
        (SELECT h.id, h.job_queue_id, h.task_id, h.priority, h.run_at
        FROM (
            WITH RECURSIVE prio(p) AS (
                SELECT min(q.head_priority) FROM errands._queues q
                WHERE q.head_id IS NOT NULL AND q.locked_at IS NULL AND NOT q.paused
                UNION ALL
                SELECT (SELECT min(q.head_priority) FROM errands._queues q
                        WHERE q.head_id IS NOT NULL AND q.locked_at IS NULL AND NOT q.paused
                          AND q.head_priority > prio.p)
                FROM prio WHERE prio.p IS NOT NULL
            )
            SELECT r.id, r.concurrency, r.running, r.rate_limit, r.rate_period, r.starts
            FROM prio CROSS JOIN LATERAL (
                SELECT q.id, q.concurrency, q.running, q.rate_limit, q.rate_period, q.starts
                FROM errands._queues q
                WHERE q.head_id IS NOT NULL AND q.locked_at IS NULL AND NOT q.paused
                  AND q.head_priority = prio.p AND q.head_run_at <= v_now
                ORDER BY q.head_run_at, q.head_id
            ) r
        ) q
        CROSS JOIN LATERAL (
            SELECT j.id, j.job_queue_id, j.task_id, j.priority, j.run_at
            FROM errands._jobs j
            WHERE j.job_queue_id = q.id
              AND j.is_available AND j.run_at <= v_now
              AND j.task_id = ANY(v_task_ids)
              AND (v_forbidden IS NULL OR j.flags IS NULL OR NOT j.flags ?| v_forbidden)
            ORDER BY j.priority, j.run_at, j.id
            LIMIT CASE WHEN q.concurrency = 1 AND q.rate_limit IS NULL THEN 1
                       WHEN q.rate_limit IS NULL
                       THEN greatest(0, least(get_jobs.job_count, q.concurrency - q.running))
                       ELSE greatest(0, least(get_jobs.job_count, q.concurrency - q.running,
                                              errands._rate_room(q.starts, q.rate_limit,
                                                                 q.rate_period, v_now))) END
        ) h
        LIMIT get_jobs.job_count)
        ORDER BY 4, 5, 1
        LIMIT get_jobs.job_count
    ) c;

    -- 2. Limited tasks (flow control): lock their rows (in id order: fetches of
    --    one limited task take turns here, before any queue row is locked) and
    --    keep, per task, no more candidates than its free slots and rate allow.
    IF v_limited IS NOT NULL AND (v_id_tasks && v_limited OR v_head_tasks && v_limited) THEN
        PERFORM 1 FROM errands._tasks t
        WHERE t.id = ANY(v_limited) AND (t.id = ANY(v_id_tasks) OR t.id = ANY(v_head_tasks))
        ORDER BY t.id FOR UPDATE;
        v_clock := clock_timestamp();
        -- Kept in candidate order, which the queue step below relies on.
        SELECT array_agg(x.id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NULL),
               array_agg(x.task_id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NULL),
               array_agg(x.id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NOT NULL),
               array_agg(x.job_queue_id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NOT NULL),
               array_agg(x.task_id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NOT NULL)
        INTO v_ids, v_id_tasks, v_heads, v_head_queues, v_head_tasks
        FROM (
            SELECT j.id, j.job_queue_id, j.task_id, j.priority, j.run_at,
                   row_number() OVER (PARTITION BY j.task_id
                                      ORDER BY j.priority, j.run_at, j.id) AS rn
            FROM errands._jobs j
            WHERE j.id = ANY(v_ids) OR j.id = ANY(v_heads)
        ) x
        LEFT JOIN errands._tasks t ON t.id = x.task_id AND t.id = ANY(v_limited)
        WHERE t.id IS NULL
           OR (NOT t.paused
               AND x.rn <= coalesce(least(t.concurrency - t.running,
                                          errands._rate_room(t.starts, t.rate_limit,
                                                             t.rate_period, v_clock)), x.rn));
    END IF;

    -- 3. Queue heads: lock their queues (one another fetch holds is skipped),
    --    keep per queue no more jobs than its free slots and rate allow as of
    --    now, then lock the jobs and count them on their queues.
    IF v_heads IS NOT NULL THEN
        SELECT array_agg(s.id) INTO v_locked_queues FROM (
            SELECT q.id FROM errands._queues q
            WHERE q.id = ANY(v_head_queues) AND q.locked_at IS NULL AND NOT q.paused
            FOR UPDATE SKIP LOCKED
        ) s;
        IF v_locked_queues IS NOT NULL THEN
            v_clock := coalesce(v_clock, clock_timestamp());
            SELECT array_agg(s.id), array_agg(s.job_queue_id), array_agg(s.task_id)
            INTO v_heads, v_head_queues, v_head_tasks FROM (
                SELECT j.id, j.job_queue_id, j.task_id FROM errands._jobs j
                WHERE j.id IN (
                    SELECT h.id
                    FROM (SELECT h.id, h.queue_id,
                                 row_number() OVER (PARTITION BY h.queue_id ORDER BY h.ord) AS rn
                          FROM unnest(v_heads, v_head_queues) WITH ORDINALITY AS h(id, queue_id, ord)
                          WHERE h.queue_id = ANY(v_locked_queues)) h
                    JOIN errands._queues q ON q.id = h.queue_id
                    -- _rate_room is a function call per queue (its subquery keeps
                    -- it from being inlined): only queues with a rate limit pay it.
                    WHERE h.rn <= CASE WHEN q.rate_limit IS NULL THEN q.concurrency - q.running
                                       ELSE least(q.concurrency - q.running,
                                                  errands._rate_room(q.starts, q.rate_limit,
                                                                     q.rate_period, v_clock)) END)
                  AND j.is_available
                FOR UPDATE SKIP LOCKED
            ) s;
        ELSE
            v_heads := NULL;
        END IF;
        IF v_heads IS NOT NULL THEN
            v_ids := v_ids || v_heads;
            v_id_tasks := v_id_tasks || v_head_tasks;
            UPDATE errands._queues q
            SET running = q.running + n.n,
                locked_at = CASE WHEN q.running + n.n >= q.concurrency THEN v_now END,
                locked_by = CASE WHEN q.running + n.n >= q.concurrency THEN get_jobs.worker_id END,
                starts = CASE WHEN q.rate_limit IS NOT NULL
                              THEN errands._record_starts(q.starts, n.n, q.rate_limit, v_clock) END,
                -- Their next heads (32_queue_heads.sql: chosen as errands._queue_head
                -- does, the jobs taken now left out; a take fires no head trigger).
                head_priority = h.priority, head_run_at = h.run_at, head_id = h.id
            FROM (SELECT u.id, count(*)::integer AS n, array_agg(u.job) AS taken
                  FROM unnest(v_head_queues, v_heads) u(id, job) GROUP BY 1) n
            LEFT JOIN LATERAL (
                -- The queue's first job in (priority, run_at, id) order, when it is
                -- due, is its best due job: the head, found with one index probe
                -- (the usual case); LIMIT 1 then never starts the loose scan below.
                (SELECT f.priority, f.run_at, f.id
                 FROM (SELECT j.priority, j.run_at, j.id FROM errands._jobs j
                       WHERE j.job_queue_id = n.id AND j.is_available AND j.id <> ALL(n.taken)
                       ORDER BY j.priority, j.run_at, j.id
                       LIMIT 1) f
                 WHERE f.run_at <= v_now)
                UNION ALL
                (WITH RECURSIVE prio(p) AS (
                    SELECT min(j.priority) FROM errands._jobs j
                    WHERE j.job_queue_id = n.id AND j.is_available AND j.id <> ALL(n.taken)
                    UNION ALL
                    SELECT (SELECT min(j.priority) FROM errands._jobs j
                            WHERE j.job_queue_id = n.id AND j.is_available
                              AND j.id <> ALL(n.taken) AND j.priority > prio.p)
                    FROM prio WHERE prio.p IS NOT NULL
                )
                SELECT e.priority, e.run_at, e.id
                FROM prio CROSS JOIN LATERAL (
                    SELECT j.priority, j.run_at, j.id FROM errands._jobs j
                    WHERE j.job_queue_id = n.id AND j.is_available AND j.priority = prio.p
                      AND j.id <> ALL(n.taken)
                    ORDER BY j.run_at, j.id
                    LIMIT 1
                ) e
                ORDER BY e.run_at > v_now, CASE WHEN e.run_at > v_now THEN e.run_at END,
                         e.priority, e.run_at, e.id
                LIMIT 1)
                LIMIT 1
            ) h ON true
            WHERE q.id = n.id;
        END IF;
    END IF;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- 4. Count the limited tasks' jobs (their rows are locked since step 2).
    IF v_limited IS NOT NULL AND v_id_tasks && v_limited THEN
        UPDATE errands._tasks t
        SET running = CASE WHEN t.concurrency IS NOT NULL THEN t.running + n.n ELSE 0 END,
            starts = CASE WHEN t.rate_limit IS NOT NULL
                          THEN errands._record_starts(t.starts, n.n, t.rate_limit, v_clock) END
        FROM (SELECT u.id, count(*)::integer AS n FROM unnest(v_id_tasks) u(id)
              WHERE u.id = ANY(v_limited) GROUP BY 1) n
        WHERE t.id = n.id;
    END IF;

    -- The caller's transaction (the worker's: this call alone) may commit without
    -- waiting for its WAL flush: a fetch lost in a server crash leaves its jobs
    -- as they were, to be fetched and run again (at least once holds), and the
    -- completion, a synchronous commit, flushes the fetch's WAL before its own.
    -- Not when it took jobs of named queues or limited tasks: a lost slot count
    -- would let a serial queue or a limit run a second job beside the first.
    -- Saves a flush wait on the add->start path (docs/worker.md).
    IF get_jobs.async_commit AND v_heads IS NULL
       AND NOT coalesce(v_id_tasks && v_limited, false) THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    -- 5. Take them.
    RETURN QUERY
    WITH taken AS (
        UPDATE errands._jobs j
        SET attempts = j.attempts + 1, locked_at = v_now, locked_by = get_jobs.worker_id
        WHERE j.id = ANY(v_ids)
        RETURNING j.*
    )
    SELECT (errands._job_row(tk::errands._jobs, q.queue_name, t.identifier)).*
    FROM taken tk
    JOIN errands._tasks t ON t.id = tk.task_id
    LEFT JOIN errands._queues q ON q.id = tk.job_queue_id
    ORDER BY tk.priority, tk.run_at, tk.id;
END
$$;
COMMENT ON FUNCTION errands.get_jobs(text, text[], integer, text[], boolean) IS
'Worker API. Locks and returns up to job_count runnable jobs (due, not running,
attempts left, task in task_identifiers, no forbidden flag) in priority, run_at,
id order, with attempts + 1 and locked_by = worker_id. A named queue yields no
more jobs than its free slots (concurrency, default 1: its head job, and none
while one of its jobs runs). Flow control: paused queues and tasks yield
nothing; concurrency and rate limits of queues and tasks hold for all workers.
async_commit: when the fetch took only jobs without a queue and of tasks
without limits, the calling transaction commits without waiting for its WAL
flush (SET LOCAL synchronous_commit = off; a fetch lost in a crash only means
its jobs run again).';

-- Completing and returning jobs are PL/pgSQL, not SQL: a SQL function that is not
-- inlined plans its statement on every call (~0.8 ms for a DELETE that takes
-- ~0.08 ms); PL/pgSQL plans once per session.
CREATE OR REPLACE FUNCTION errands.worker_complete_jobs(worker_id text, job_ids bigint[],
                                                        results json[] DEFAULT NULL)
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    v_ids bigint[] := worker_complete_jobs.job_ids;
    v_results json[] := worker_complete_jobs.results;
    v_limit bigint := errands._max_payload_bytes();
    v_big_ids bigint[];
    v_big_errors text[];
    v_done bigint[];
    v_done_queues integer[];
    v_done_tasks integer[];
BEGIN
    IF v_results IS NOT NULL AND cardinality(v_results) <> cardinality(v_ids) THEN
        RAISE EXCEPTION 'errands: worker_complete_jobs needs one result (NULL: none) per job: % ids, % results',
            cardinality(v_ids), cardinality(v_results) USING ERRCODE = '22023';
    END IF;
    -- Flows (25_flows.sql): jobs others wait for keep their result; dependents released.
    PERFORM errands._complete_dependencies(worker_complete_jobs.worker_id, v_ids, v_results);
    -- No task keeps history (retention 0 everywhere): delete. A job a waiter
    -- watches (17_wait.sql) is left to the history path below, which keeps it
    -- and notifies; so the jobs nobody watches pay nothing more than this.
    IF NOT errands._history_on() THEN
        WITH done AS (
            DELETE FROM errands._jobs j
            WHERE j.id = ANY(v_ids)
              AND j.locked_by = worker_complete_jobs.worker_id
              AND NOT j.watched
            RETURNING j.id, j.job_queue_id, j.task_id
        )
        SELECT array_agg(done.id),
               array_agg(done.job_queue_id) FILTER (WHERE done.job_queue_id IS NOT NULL),
               array_agg(done.task_id)
        INTO v_done, v_done_queues, v_done_tasks FROM done;
        PERFORM errands._check_late_dependents(v_done); -- flows (25_flows.sql)
        -- Flow control (35_flow_control.sql): the completed jobs free their queue
        -- slots (a queue below its concurrency is unlocked) and, while some task
        -- has a concurrency limit, their task slots. After the DELETE, whose lock
        -- waits for a limit change in flight; a separate statement, run only when
        -- needed: an UPDATE in the DELETE's statement cost ~15 % of this call.
        IF v_done_queues IS NOT NULL OR errands._task_limits_on() THEN
            -- (_release_slots ignores task ids while no task has a limit.)
            PERFORM errands._release_slots(v_done_queues, v_done_tasks);
        END IF;
        RETURN QUERY SELECT unnest(v_done);
        -- The others (watched, or no longer this worker's) take the path below.
        IF coalesce(cardinality(v_done), 0) = cardinality(v_ids) THEN
            RETURN;
        END IF;
    END IF;
    -- A result over the payload size limit fails its job (worker_fail_jobs) with
    -- an error naming the size, rather than being lost.
    IF v_results IS NOT NULL AND v_limit > 0 THEN
        SELECT array_agg(r.id), array_agg(format(
                   'errands: the task''s result is %s bytes of JSON, over the limit of %s bytes (errands.set_max_payload_bytes)',
                   octet_length(r.result::text), v_limit))
        INTO v_big_ids, v_big_errors
        FROM unnest(v_ids, v_results) AS r(id, result)
        WHERE octet_length(r.result::text) > v_limit;
        IF v_big_ids IS NOT NULL THEN
            PERFORM errands.worker_fail_jobs(worker_complete_jobs.worker_id, v_big_ids, v_big_errors);
            SELECT array_agg(r.id), array_agg(r.result) INTO v_ids, v_results
            FROM unnest(v_ids, v_results) AS r(id, result)
            WHERE r.id <> ALL(v_big_ids);
        END IF;
    END IF;
    RETURN QUERY
    WITH done AS (
        DELETE FROM errands._jobs j
        WHERE j.id = ANY(v_ids)
          AND j.locked_by = worker_complete_jobs.worker_id
        RETURNING j.*
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(done.job_queue_id), array_agg(done.task_id))
        FROM done
    ), kept AS (
        INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                            attempts, max_attempts, last_error, key, created_at,
                                            state, result, errors, run_at, started_at)
        SELECT done.id, q.queue_name, t.identifier, done.payload, done.priority, done.attempts,
               done.max_attempts,
               -- A job whose cancellation was requested ends cancelled, result dropped.
               coalesce(done.cancel_reason, done.last_error), done.key, done.created_at,
               CASE WHEN done.cancel_reason IS NULL THEN 'completed' ELSE 'cancelled' END,
               CASE WHEN done.cancel_reason IS NULL THEN r.result END,
               done.errors, done.run_at, done.locked_at
        FROM done
        JOIN errands._tasks t ON t.id = done.task_id
        LEFT JOIN unnest(v_ids, v_results) AS r(id, result) ON r.id = done.id
        LEFT JOIN errands._queues q ON q.id = done.job_queue_id
        WHERE coalesce(t.retention, errands._retention()) > interval '0'
           OR done.watched -- waiting (17_wait.sql): kept for its waiter
        ON CONFLICT (id) DO NOTHING
    )
    SELECT done.id FROM done, slots;
    PERFORM errands._check_late_dependents(v_ids); -- flows (25_flows.sql)
    PERFORM errands._jobs_finished(v_ids); -- waiting hook (17_wait.sql)
END
$$;
COMMENT ON FUNCTION errands.worker_complete_jobs(text, bigint[], json[]) IS
'Worker API. Completes the listed jobs that worker_id has locked (it finished
them): each moves to errands.finished_jobs with its result (results[i] for
job_ids[i]; NULL: none) when its task''s retention is above 0 or a waiter
watches it (errands.watch_jobs: then "errands:finished" is notified), else is deleted;
their queues are unlocked. A result whose JSON text exceeds the payload size
limit fails its job instead (as worker_fail_jobs, error naming the size).
Returns the ids it completed: a job missing from the result was no longer this
worker''s (its lock was taken away, or its result was too big) and may run again.
A job whose cancellation was requested (errands.cancel_jobs) ends cancelled
instead, its result dropped (its id is returned too).';

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
            errors = errands._add_error(j.errors, j.attempts, j.locked_at,
                                        worker_fail_jobs.worker_id, f.message),
            -- Exponential backoff: e^attempts seconds, capped at e^10 (~6 h).
            run_at = greatest(now(), j.run_at) + exp(least(j.attempts, 10)) * interval '1 second',
            locked_at = NULL,
            locked_by = NULL,
            payload = coalesce(f.payload, j.payload)
        FROM f
        WHERE j.id = f.id AND j.locked_by = worker_fail_jobs.worker_id
          AND j.cancel_reason IS NULL
        RETURNING j.*
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(failed.job_queue_id), array_agg(failed.task_id))
        FROM failed
    )
    SELECT (errands._job_row(failed::errands._jobs, q.queue_name, t.identifier)).*
    FROM failed
    CROSS JOIN slots
    JOIN errands._tasks t ON t.id = failed.task_id
    LEFT JOIN errands._queues q ON q.id = failed.job_queue_id
    ORDER BY failed.id;
    -- A job whose cancellation was requested (even while this ran: the update
    -- above rechecks cancel_reason on the row it waited for) ends cancelled.
    PERFORM errands._end_cancelled(worker_fail_jobs.worker_id, worker_fail_jobs.job_ids, NULL, true);
    -- Flows (25_flows.sql): what a failed try added is cancelled; run-anyway dependents go on.
    PERFORM errands._dependencies_failed(worker_fail_jobs.job_ids);
    -- Waiting hook (17_wait.sql): a job that failed for good ends its waits (a
    -- waiter woken by a retried job reads its state and keeps waiting).
    PERFORM errands._jobs_finished(worker_fail_jobs.job_ids);
END
$$;
COMMENT ON FUNCTION errands.worker_fail_jobs(text, bigint[], text[], json[]) IS
'Worker API. Records a failed try of each listed job that worker_id has locked:
last_error = its message (and an entry in errors: attempt, start, failure time,
worker, message; the last 20 kept), run_at = greatest(now(), run_at) + exp(least(attempts,
10)) seconds, lock and queue released; a non-NULL payload replaces the job''s
(batch jobs keep only their failed items). Returns the failed jobs; those with
attempts >= max_attempts will not run again. A job whose cancellation was
requested ends cancelled instead (and is not returned).';

-- Snooze: the task asked to run again later (errands.Snooze); the try is not
-- an attempt. last_error is kept: a snooze is not a failure.
CREATE OR REPLACE FUNCTION errands.worker_snooze_jobs(
    worker_id text,
    job_ids bigint[],
    delays interval[]
) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_bad interval;
BEGIN
    IF cardinality(worker_snooze_jobs.job_ids) IS DISTINCT FROM cardinality(worker_snooze_jobs.delays) THEN
        RAISE EXCEPTION 'errands: worker_snooze_jobs needs one delay per job: % ids, % delays',
            coalesce(cardinality(worker_snooze_jobs.job_ids)::text, 'NULL'),
            coalesce(cardinality(worker_snooze_jobs.delays)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT FROM unnest(worker_snooze_jobs.delays) d WHERE d IS NULL) THEN
        RAISE EXCEPTION 'errands: a snooze delay must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT d INTO v_bad FROM unnest(worker_snooze_jobs.delays) d
    WHERE NOT isfinite(d) OR d < interval '0' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: a snooze delay must be finite and >= 0, got %', v_bad
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH s AS (
        SELECT * FROM unnest(worker_snooze_jobs.job_ids, worker_snooze_jobs.delays) AS s(id, delay)
    ), snoozed AS (
        UPDATE errands._jobs j
        SET attempts = greatest(0, j.attempts - 1),
            run_at = now() + s.delay,
            locked_at = NULL,
            locked_by = NULL
        FROM s
        WHERE j.id = s.id AND j.locked_by = worker_snooze_jobs.worker_id
          AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(snoozed.job_queue_id), array_agg(snoozed.task_id))
        FROM snoozed
    )
    SELECT snoozed.id FROM snoozed, slots ORDER BY snoozed.id;
    -- A job whose cancellation was requested ends cancelled instead.
    PERFORM errands._end_cancelled(worker_snooze_jobs.worker_id, worker_snooze_jobs.job_ids, NULL, true);
END
$$;
COMMENT ON FUNCTION errands.worker_snooze_jobs(text, bigint[], interval[]) IS
'Worker API. Snoozes each listed job that worker_id has locked (the task raised
errands.Snooze): run_at = now() + its delay, the attempt this try took is given
back, lock and queue released, key, payload and last_error kept. Each delay must
be finite and >= 0 (22023 otherwise, nothing changed). Returns the ids snoozed: a
missing id was no longer this worker''s, or its cancellation was requested (it
ended cancelled).';

-- Failing for good: the task raised errands.Fail(retry=False).
CREATE OR REPLACE FUNCTION errands.worker_fail_jobs_now(
    worker_id text,
    job_ids bigint[],
    error_messages text[]
) RETURNS SETOF errands.jobs
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF cardinality(worker_fail_jobs_now.job_ids) IS DISTINCT FROM cardinality(worker_fail_jobs_now.error_messages) THEN
        RAISE EXCEPTION 'errands: worker_fail_jobs_now needs one error message per job: % ids, % messages',
            coalesce(cardinality(worker_fail_jobs_now.job_ids)::text, 'NULL'),
            coalesce(cardinality(worker_fail_jobs_now.error_messages)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- No attempts left, then an ordinary failed try: worker_fail_jobs records the
    -- error, releases the lock and the queue, and returns the rows.
    UPDATE errands._jobs j
    SET attempts = greatest(j.attempts, j.max_attempts)
    WHERE j.id = ANY(worker_fail_jobs_now.job_ids)
      AND j.locked_by = worker_fail_jobs_now.worker_id;
    RETURN QUERY
    SELECT * FROM errands.worker_fail_jobs(worker_fail_jobs_now.worker_id,
                                           worker_fail_jobs_now.job_ids,
                                           worker_fail_jobs_now.error_messages);
END
$$;
COMMENT ON FUNCTION errands.worker_fail_jobs_now(text, bigint[], text[]) IS
'Worker API. Fails each listed job that worker_id has locked for good, without a
retry (the task raised errands.Fail(retry=False)): last_error = its message,
attempts = max_attempts (state failed), lock and queue released. reschedule_jobs
can revive it. Returns the failed jobs; a missing id was no longer this worker''s.';

CREATE OR REPLACE FUNCTION errands.worker_return_jobs(worker_id text, job_ids bigint[])
RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    RETURN QUERY
    WITH returned AS (
        UPDATE errands._jobs j
        SET attempts = greatest(0, j.attempts - 1), locked_at = NULL, locked_by = NULL
        WHERE j.id = ANY(worker_return_jobs.job_ids)
          AND j.locked_by = worker_return_jobs.worker_id
          AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(returned.job_queue_id), array_agg(returned.task_id))
        FROM returned
    )
    SELECT returned.id FROM returned, slots;
    -- A job whose cancellation was requested ends cancelled instead.
    PERFORM errands._end_cancelled(worker_return_jobs.worker_id, worker_return_jobs.job_ids, NULL, true);
END
$$;
COMMENT ON FUNCTION errands.worker_return_jobs(text, bigint[]) IS
'Worker API. Hands back jobs worker_id fetched but never started (shutdown): the
lock is released and the attempt it took is given back. Returns their ids. A job
whose cancellation was requested ends cancelled instead (and is not returned).';

-- The default of older_than is errands._stale_lock_age(), written out (a default
-- is evaluated with the caller's privileges; tests_sql/016_job_row.sql checks it).
CREATE OR REPLACE FUNCTION errands.reset_locked(older_than interval DEFAULT interval '4 hours')
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_cancelled integer;
    v_count integer;
BEGIN
    -- A stale queue lock no locked job of the queue accounts for (its job was
    -- deleted meanwhile) is released outright.
    UPDATE errands._queues q SET running = 0, locked_at = NULL, locked_by = NULL
    WHERE q.locked_at < now() - reset_locked.older_than
      AND NOT EXISTS (SELECT 1 FROM errands._jobs j
                      WHERE j.job_queue_id = q.id AND j.locked_at IS NOT NULL);
    WITH jobs AS (
        UPDATE errands._jobs j
        SET locked_at = NULL,
            locked_by = NULL,
            run_at = greatest(j.run_at, now()),
            last_error = format('errands: lock held by %s since %s expired; the worker is presumed dead',
                                j.locked_by, j.locked_at),
            errors = errands._add_error(j.errors, j.attempts, j.locked_at, j.locked_by,
                format('errands: lock held by %s since %s expired; the worker is presumed dead',
                       j.locked_by, j.locked_at))
        WHERE j.locked_at < now() - reset_locked.older_than AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(jobs.job_queue_id), array_agg(jobs.task_id))
        FROM jobs
    )
    SELECT count(*)::integer INTO v_count FROM jobs, slots;
    -- A job whose cancellation was requested (even while the update above waited
    -- for its row: it rechecks cancel_reason) ends cancelled, never runs again.
    v_cancelled := cardinality(errands._end_requested(ARRAY(
        SELECT j.id FROM errands._jobs j
        WHERE j.locked_at < now() - reset_locked.older_than AND j.cancel_reason IS NOT NULL)));
    RETURN v_count + v_cancelled;
END
$$;
COMMENT ON FUNCTION errands.reset_locked(interval) IS
'Rescues jobs whose lock is older than older_than (their worker died): they become
runnable at once with the interrupted try counted (a job whose cancellation was
requested ends cancelled instead), and their queue and task slots are freed.
Returns the number of jobs rescued.';
