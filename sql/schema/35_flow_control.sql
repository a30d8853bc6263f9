-- Flow control (issue 13): concurrency limits, strict sliding-window rate limits
-- and pauses per named queue and per task, enforced by errands.get_jobs.
--
-- What the user set is a row of errands._queue_limits / errands._task_limits,
-- keyed by an exact name or a pattern ending in '*' (a prefix: 'tenant:*'
-- matches 'tenant:42'). Each field resolves separately: the most specific row
-- with that field set wins (an exact name beats any pattern, a longer prefix a
-- shorter one); a queue or task is paused when any matching row is paused. The
-- resolved values are copied onto each errands._queues / errands._tasks row
-- when the row is created (errands._ensure_tasks_and_queues) and when a limit
-- changes, so a fetch reads one row per queue or task and a new tenant's queue
-- needs no setup call: it is limited on its own, with its own count.
--
-- Counting. A named queue counts its locked jobs in _queues.running (always:
-- every fetch and release of a queued job already wrote the queue row). A task
-- counts them in _tasks.running only while it has a concurrency limit, so an
-- unlimited task costs nothing; setting a task limit recounts its locked jobs
-- under an EXCLUSIVE lock on errands._jobs, which waits for fetches and outcomes
-- in flight and holds new ones back until the limit is committed. A job counts
-- from the fetch that locks it until the statement that writes its outcome,
-- hands it back or rescues it (each of those releases its slots in one marked
-- statement). Rate limits keep the start times of the last rate_limit starts
-- (starts), recorded with clock_timestamp() while the queue or task row is
-- locked: in any window of rate_period at most rate_limit jobs are taken.

-- Whether a limit name is a valid pattern and whether it matches a name.
CREATE OR REPLACE FUNCTION errands._limit_matches(pattern text, name text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN right(pattern, 1) = '*'
                THEN starts_with(name, left(pattern, -1))
                ELSE name = pattern END
$$;

-- Specificity of a matching pattern: an exact name first, then longer prefixes.
CREATE OR REPLACE FUNCTION errands._limit_rank(pattern text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN right(pattern, 1) = '*' THEN length(pattern) ELSE 1000000 END
$$;

-- The limits that apply to a queue name (concurrency 1 when none is set).
CREATE OR REPLACE FUNCTION errands._queue_limit_values(name text,
    OUT concurrency integer, OUT rate_limit integer, OUT rate_period interval, OUT paused boolean)
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT l.concurrency FROM errands._queue_limits l
                     WHERE l.concurrency IS NOT NULL AND errands._limit_matches(l.pattern, name)
                     ORDER BY errands._limit_rank(l.pattern) DESC LIMIT 1), 1),
           r.rate_limit, r.rate_period,
           EXISTS (SELECT 1 FROM errands._queue_limits l
                   WHERE l.paused AND errands._limit_matches(l.pattern, name))
    FROM (SELECT NULL) one
    LEFT JOIN LATERAL (SELECT l.rate_limit, l.rate_period FROM errands._queue_limits l
                       WHERE l.rate_limit IS NOT NULL AND errands._limit_matches(l.pattern, name)
                       ORDER BY errands._limit_rank(l.pattern) DESC LIMIT 1) r ON true
$$;

-- The limits that apply to a task identifier (no concurrency limit when none is set).
CREATE OR REPLACE FUNCTION errands._task_limit_values(name text,
    OUT concurrency integer, OUT rate_limit integer, OUT rate_period interval, OUT paused boolean)
LANGUAGE sql STABLE AS $$
    SELECT (SELECT l.concurrency FROM errands._task_limits l
            WHERE l.concurrency IS NOT NULL AND errands._limit_matches(l.pattern, name)
            ORDER BY errands._limit_rank(l.pattern) DESC LIMIT 1),
           r.rate_limit, r.rate_period,
           EXISTS (SELECT 1 FROM errands._task_limits l
                   WHERE l.paused AND errands._limit_matches(l.pattern, name))
    FROM (SELECT NULL) one
    LEFT JOIN LATERAL (SELECT l.rate_limit, l.rate_period FROM errands._task_limits l
                       WHERE l.rate_limit IS NOT NULL AND errands._limit_matches(l.pattern, name)
                       ORDER BY errands._limit_rank(l.pattern) DESC LIMIT 1) r ON true
$$;

-- starts with n more starts at "at", keeping the newest keep of them.
CREATE OR REPLACE FUNCTION errands._record_starts(starts timestamptz[], n bigint,
                                                  keep integer, at timestamptz)
RETURNS timestamptz[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_agg(s.t ORDER BY s.t) FROM (
        SELECT a.t FROM (SELECT unnest(starts) UNION ALL
                         SELECT at FROM generate_series(1, n)) a(t)
        ORDER BY a.t DESC LIMIT keep
    ) s
$$;

-- How many more jobs a rate limit lets start at "at".
CREATE OR REPLACE FUNCTION errands._rate_room(starts timestamptz[], rate_limit integer,
                                              rate_period interval, at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN rate_limit IS NULL THEN NULL
                ELSE greatest(0, rate_limit - (SELECT count(*)::integer FROM unnest(starts) s
                                               WHERE s > at - rate_period)) END
$$;

-- Whether any task has a concurrency limit (false: completing a job skips the
-- task-slot update entirely). Folded into plans like _history_on().
CREATE OR REPLACE FUNCTION errands._define_task_limits_on() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM errands._define_constant('_task_limits_on', 'boolean',
        EXISTS (SELECT 1 FROM errands._task_limits l WHERE l.concurrency IS NOT NULL)::text);
END
$$;
DO $task_limits$ BEGIN PERFORM errands._define_task_limits_on(); END $task_limits$;

-- Releases the slots of released jobs (one array element per job; NULL queue or
-- task elements are ignored) and wakes the workers when a slot freed that a
-- worker may be waiting for: any slot of a task with a concurrency limit, and a
-- slot of a full queue whose concurrency is above 1 (a serial queue's next job
-- is fetched by the worker that ran its last one, as before flow control).
-- Used by worker_complete_jobs (task slots) and where a job is released outside
-- the worker outcome functions, which do the same in one statement.
--
-- Why every freed task slot and not only one of a full task: two jobs of a full
-- task ending in separate transactions free two slots but the second release
-- no longer sees the task full; a worker woken by the first may have fetched
-- before the second, so the second slot stayed empty until a poll (issue 13:
-- 77-90 % of the limit). A task's jobs have no worker of their own that would
-- fetch the next one at once (a queued job does: Producer.slot_freed).
CREATE OR REPLACE FUNCTION errands._release_slots(queue_ids integer[], task_ids integer[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_wake boolean;
BEGIN
    -- Several queues: their rows in id order first, as add_jobs locks them (queue
    -- heads, 32_queue_heads.sql), so that the two cannot deadlock.
    IF cardinality(queue_ids) > 1 THEN
        PERFORM FROM errands._queues q WHERE q.id = ANY(queue_ids)
        ORDER BY q.id FOR NO KEY UPDATE;
    END IF;
    WITH freed AS (
        UPDATE errands._queues q
        SET running = greatest(0, q.running - r.n),
            locked_at = CASE WHEN q.running - r.n >= q.concurrency THEN q.locked_at END,
            locked_by = CASE WHEN q.running - r.n >= q.concurrency THEN q.locked_by END
        FROM (SELECT u.id, count(*)::integer AS n FROM unnest(queue_ids) u(id)
              WHERE u.id IS NOT NULL GROUP BY 1) r
        WHERE q.id = r.id
        RETURNING q.concurrency > 1 AND q.running + r.n >= q.concurrency AS was_full
    )
    SELECT coalesce(bool_or(freed.was_full), false) INTO v_wake FROM freed;
    IF errands._task_limits_on() THEN
        -- Otherwise no task has a concurrency limit: nothing counts task slots.
        WITH freed AS (
            UPDATE errands._tasks t SET running = greatest(0, t.running - r.n)
            FROM (SELECT u.id, count(*)::integer AS n FROM unnest(task_ids) u(id)
                  WHERE u.id IS NOT NULL GROUP BY 1) r
            WHERE t.id = r.id AND t.concurrency IS NOT NULL
            RETURNING t.id
        )
        SELECT v_wake OR EXISTS (SELECT 1 FROM freed) INTO v_wake;
    END IF;
    IF v_wake THEN
        PERFORM errands._notify();  -- folded into one per transaction
    END IF;
END
$$;

-- Checks a name or pattern and the limit values; raises 22023 naming the bad one.
CREATE OR REPLACE FUNCTION errands._check_limit(what text, name text, concurrency integer,
                                                rate_limit integer, rate_period interval)
RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF name IS NULL OR length(name) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'errands: % must be 1 to 128 characters, got %', what,
            errands._describe(name) USING ERRCODE = '22023';
    END IF;
    IF strpos(left(name, -1), '*') > 0 OR name = '*' THEN
        RAISE EXCEPTION 'errands: % % is not a name or a pattern: ''*'' may only end a non-empty prefix (''tenant:*'')',
            what, quote_literal(name) USING ERRCODE = '22023';
    END IF;
    IF concurrency < 1 THEN
        RAISE EXCEPTION 'errands: concurrency must be at least 1 (NULL: no limit), got %', concurrency
            USING ERRCODE = '22023';
    END IF;
    IF rate_limit < 1 THEN
        RAISE EXCEPTION 'errands: rate_limit must be at least 1 (NULL: no limit), got %', rate_limit
            USING ERRCODE = '22023';
    END IF;
    IF rate_period <= interval '0' OR NOT isfinite(rate_period) THEN
        RAISE EXCEPTION 'errands: rate_period must be a finite interval > 0, got %', rate_period
            USING ERRCODE = '22023';
    END IF;
    IF (rate_limit IS NULL) <> (rate_period IS NULL) THEN
        RAISE EXCEPTION 'errands: rate_limit and rate_period go together, got rate_limit % and rate_period %',
            coalesce(rate_limit::text, 'NULL'), coalesce(rate_period::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
END
$$;

-- Copies the resolved limits onto the queue rows a pattern matches.
CREATE OR REPLACE FUNCTION errands._apply_queue_limits(pattern text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE errands._queues q
    SET concurrency = v.concurrency, rate_limit = v.rate_limit, rate_period = v.rate_period,
        paused = v.paused,
        starts = CASE WHEN v.rate_limit IS NOT NULL THEN q.starts END,
        locked_at = CASE WHEN q.running >= v.concurrency THEN coalesce(q.locked_at, now()) END,
        locked_by = CASE WHEN q.running >= v.concurrency THEN q.locked_by END
    FROM errands._queues q2
    CROSS JOIN LATERAL errands._queue_limit_values(q2.queue_name) v
    WHERE q2.id = q.id AND errands._limit_matches(_apply_queue_limits.pattern, q2.queue_name);
END
$$;

-- Copies the resolved limits onto the task rows a pattern matches and recounts
-- their running jobs. The caller holds errands._jobs in EXCLUSIVE mode, so no
-- fetch or outcome is in flight and the count is exact.
CREATE OR REPLACE FUNCTION errands._apply_task_limits(pattern text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH matched AS (
        SELECT t.id, v.* FROM errands._tasks t
        CROSS JOIN LATERAL errands._task_limit_values(t.identifier) v
        WHERE errands._limit_matches(_apply_task_limits.pattern, t.identifier)
    ), counts AS (
        SELECT j.task_id, count(*)::integer AS n FROM errands._jobs j
        WHERE j.locked_at IS NOT NULL
          AND j.task_id IN (SELECT m.id FROM matched m WHERE m.concurrency IS NOT NULL)
        GROUP BY 1
    )
    UPDATE errands._tasks t
    SET concurrency = m.concurrency, rate_limit = m.rate_limit, rate_period = m.rate_period,
        paused = m.paused,
        starts = CASE WHEN m.rate_limit IS NOT NULL THEN t.starts END,
        running = CASE WHEN m.concurrency IS NOT NULL THEN coalesce(c.n, 0) ELSE 0 END
    FROM matched m LEFT JOIN counts c ON c.task_id = m.id
    WHERE t.id = m.id;
    PERFORM errands._define_task_limits_on();
END
$$;

-- Writes one limits row (kind: 'queue' or 'task'): the given fields replace the
-- row's; a row with nothing left set is deleted. Then the matching rows follow.
CREATE OR REPLACE FUNCTION errands._set_limits(kind text, name text, set_limits boolean,
    concurrency integer, rate_limit integer, rate_period interval, paused boolean)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF kind = 'queue' THEN
        PERFORM errands._check_limit('queue_name', name, concurrency, rate_limit, rate_period);
        -- Serialises limit changes with the creation of new queues (which
        -- resolves their limits under a SHARE lock of this table).
        LOCK TABLE errands._queue_limits IN SHARE ROW EXCLUSIVE MODE;
        INSERT INTO errands._queue_limits AS l (pattern, concurrency, rate_limit, rate_period, paused)
        VALUES (name, _set_limits.concurrency, _set_limits.rate_limit, _set_limits.rate_period,
                coalesce(_set_limits.paused, false))
        ON CONFLICT (pattern) DO UPDATE
        SET concurrency = CASE WHEN set_limits THEN EXCLUDED.concurrency ELSE l.concurrency END,
            rate_limit = CASE WHEN set_limits THEN EXCLUDED.rate_limit ELSE l.rate_limit END,
            rate_period = CASE WHEN set_limits THEN EXCLUDED.rate_period ELSE l.rate_period END,
            paused = coalesce(_set_limits.paused, l.paused),
            updated_at = now();
        DELETE FROM errands._queue_limits l
        WHERE l.pattern = name AND l.concurrency IS NULL AND l.rate_limit IS NULL AND NOT l.paused;
        PERFORM errands._apply_queue_limits(name);
    ELSE
        PERFORM errands._check_limit('task_identifier', name, concurrency, rate_limit, rate_period);
        LOCK TABLE errands._task_limits IN SHARE ROW EXCLUSIVE MODE;
        -- Waits for the fetches and outcomes in flight (all of them write
        -- errands._jobs) and holds new ones until commit: the recount is exact.
        LOCK TABLE errands._jobs IN EXCLUSIVE MODE;
        INSERT INTO errands._task_limits AS l (pattern, concurrency, rate_limit, rate_period, paused)
        VALUES (name, _set_limits.concurrency, _set_limits.rate_limit, _set_limits.rate_period,
                coalesce(_set_limits.paused, false))
        ON CONFLICT (pattern) DO UPDATE
        SET concurrency = CASE WHEN set_limits THEN EXCLUDED.concurrency ELSE l.concurrency END,
            rate_limit = CASE WHEN set_limits THEN EXCLUDED.rate_limit ELSE l.rate_limit END,
            rate_period = CASE WHEN set_limits THEN EXCLUDED.rate_period ELSE l.rate_period END,
            paused = coalesce(_set_limits.paused, l.paused),
            updated_at = now();
        DELETE FROM errands._task_limits l
        WHERE l.pattern = name AND l.concurrency IS NULL AND l.rate_limit IS NULL AND NOT l.paused;
        PERFORM errands._apply_task_limits(name);
    END IF;
    -- A raised limit or a resume frees work at once, not at the next poll.
    PERFORM errands._notify();
END
$$;

CREATE OR REPLACE FUNCTION errands.set_queue_limits(queue_name text, concurrency integer DEFAULT NULL,
                                                    rate_limit integer DEFAULT NULL,
                                                    rate_period interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM errands._set_limits('queue', set_queue_limits.queue_name, true,
        set_queue_limits.concurrency, set_queue_limits.rate_limit, set_queue_limits.rate_period, NULL);
END
$$;
COMMENT ON FUNCTION errands.set_queue_limits(text, integer, integer, interval) IS
'Flow control. A named queue (or every queue matching a pattern such as
''tenant:*'', each on its own) runs at most concurrency jobs at once across all
workers and starts at most rate_limit jobs in any window of rate_period. NULL
removes that setting (concurrency then falls back to a matching pattern, else 1:
a serial queue). Takes effect on the next fetch.';

CREATE OR REPLACE FUNCTION errands.set_task_limits(task_identifier text, concurrency integer DEFAULT NULL,
                                                   rate_limit integer DEFAULT NULL,
                                                   rate_period interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM errands._set_limits('task', set_task_limits.task_identifier, true,
        set_task_limits.concurrency, set_task_limits.rate_limit, set_task_limits.rate_period, NULL);
END
$$;
COMMENT ON FUNCTION errands.set_task_limits(text, integer, integer, interval) IS
'Flow control. All jobs of a task (or of every task matching a pattern such as
''sync_*'', each on its own), whatever their queue, run at most concurrency at
once across all workers and start at most rate_limit in any window of
rate_period. NULL removes that setting (no limit unless a pattern sets one).
Briefly holds back fetches and outcomes while it recounts the running jobs.';

CREATE OR REPLACE FUNCTION errands.pause_queue(queue_name text) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM errands._set_limits('queue', pause_queue.queue_name, false, NULL, NULL, NULL, true);
END
$$;
COMMENT ON FUNCTION errands.pause_queue(text) IS
'Flow control. No worker starts a job of this queue (or of the queues matching a
pattern) until resume_queue; running jobs finish.';

CREATE OR REPLACE FUNCTION errands.resume_queue(queue_name text) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM errands._set_limits('queue', resume_queue.queue_name, false, NULL, NULL, NULL, false);
END
$$;
COMMENT ON FUNCTION errands.resume_queue(text) IS
'Flow control. Lifts pause_queue(queue_name) (the same name or pattern) and wakes
the workers at once. A queue stays paused while another matching pattern is.';

CREATE OR REPLACE FUNCTION errands.pause_task(task_identifier text) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM errands._set_limits('task', pause_task.task_identifier, false, NULL, NULL, NULL, true);
END
$$;
COMMENT ON FUNCTION errands.pause_task(text) IS
'Flow control. No worker starts a job of this task (or of the tasks matching a
pattern), in any queue, until resume_task; running jobs finish.';

CREATE OR REPLACE FUNCTION errands.resume_task(task_identifier text) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM errands._set_limits('task', resume_task.task_identifier, false, NULL, NULL, NULL, false);
END
$$;
COMMENT ON FUNCTION errands.resume_task(text) IS
'Flow control. Lifts pause_task(task_identifier) (the same name or pattern) and
wakes the workers at once.';

CREATE OR REPLACE VIEW errands.limits AS
SELECT 'queue'::text AS kind, l.pattern AS name, l.concurrency, l.rate_limit, l.rate_period,
       l.paused, l.updated_at
FROM errands._queue_limits l
UNION ALL
SELECT 'task', l.pattern, l.concurrency, l.rate_limit, l.rate_period, l.paused, l.updated_at
FROM errands._task_limits l;
COMMENT ON VIEW errands.limits IS
'Flow control: the limits and pauses as set (set_queue_limits, set_task_limits,
pause_*), one row per name or pattern. kind: queue or task.';

CREATE OR REPLACE VIEW errands.queues AS
SELECT q.queue_name, q.concurrency, q.rate_limit, q.rate_period, q.paused, q.running,
       (SELECT count(*) FROM errands._jobs j
        WHERE j.job_queue_id = q.id AND j.is_available AND j.run_at <= now()) AS backlog
FROM errands._queues q;
COMMENT ON VIEW errands.queues IS
'Flow control: each named queue with the limits that apply to it (resolved from
names and patterns), running (its jobs locked now) and backlog (its jobs due and
waiting).';

CREATE OR REPLACE VIEW errands.task_limits AS
SELECT t.identifier AS task_identifier, t.concurrency, t.rate_limit, t.rate_period, t.paused,
       CASE WHEN t.concurrency IS NOT NULL THEN t.running END AS running
FROM errands._tasks t
WHERE t.concurrency IS NOT NULL OR t.rate_limit IS NOT NULL OR t.paused;
COMMENT ON VIEW errands.task_limits IS
'Flow control: each task a limit or pause applies to, with the resolved limits and
its running jobs (counted while it has a concurrency limit).';

-- When held-back work may start: the earliest moment a rate window that is
-- exhausted now reopens. A worker whose fetch came back short asks this and
-- sleeps until then (bounded by its poll interval) instead of a whole poll:
-- nothing else marks the moment (a freed concurrency slot or a resume is
-- NOTIFYed). Bounded cost: the tasks by their unique index, the rate-limited
-- queues by a partial index (0027), one index probe for each exhausted one.
CREATE OR REPLACE FUNCTION errands.next_start_at(task_identifiers text[])
RETURNS timestamptz
LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_at timestamptz;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM errands._queue_limits l WHERE l.rate_limit IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM errands._task_limits l WHERE l.rate_limit IS NOT NULL) THEN
        RETURN NULL;  -- no rate limit anywhere: nothing will reopen
    END IF;
    -- The start that must leave the window for one more to fit: the
    -- rate_limit-th newest (starts is sorted, and may hold more than rate_limit
    -- entries right after the limit was lowered).
    SELECT min(r.at) INTO v_at FROM (
        SELECT t.starts[cardinality(t.starts) - t.rate_limit + 1] + t.rate_period AS at
        FROM errands._tasks t
        WHERE t.identifier = ANY(next_start_at.task_identifiers)
          AND t.rate_limit IS NOT NULL AND NOT t.paused
          AND errands._rate_room(t.starts, t.rate_limit, t.rate_period, v_now) = 0
        UNION ALL
        -- A queue with room and jobs due: now. A fetch skips a queue whose row
        -- another fetch holds (SKIP LOCKED), so two racing fetches can both
        -- come back short with room left; nothing else would announce it.
        SELECT CASE WHEN errands._rate_room(q.starts, q.rate_limit, q.rate_period, v_now) = 0
                    THEN q.starts[cardinality(q.starts) - q.rate_limit + 1] + q.rate_period
                    ELSE v_now END
        FROM errands._queues q
        WHERE q.rate_limit IS NOT NULL AND NOT q.paused
          AND (errands._rate_room(q.starts, q.rate_limit, q.rate_period, v_now) = 0
               OR (q.locked_at IS NULL
                   AND EXISTS (SELECT 1 FROM errands._jobs j
                               WHERE j.job_queue_id = q.id AND j.is_available
                                 AND j.run_at <= v_now)))
          AND EXISTS (SELECT 1 FROM errands._jobs j
                      WHERE j.job_queue_id = q.id AND j.is_available)
    ) r;
    RETURN coalesce(v_at, 'infinity');
END
$$;
COMMENT ON FUNCTION errands.next_start_at(text[]) IS
'Worker API (flow control). The earliest time a rate window that holds work back
now reopens: of a task in task_identifiers, or of a named queue with jobs
waiting (now: a rate-limited queue has room and jobs due). ''infinity'' when rate
limits exist but none holds work back now; NULL when no rate limit is set at all. Workers call it when a fetch came back short
and sleep until then rather than until their next poll.';
