-- Queue heads (issue 17): what lets errands.get_jobs read a bounded number of
-- named queues, however many exist and however much work is held back in them.
--
-- Each errands._queues row carries its head (head_priority, head_run_at,
-- head_id): a job of the queue that is available (not locked, attempts left,
-- not waiting for other jobs), chosen as
--   * its best due job by (priority, run_at, id) when one was due when the head
--     was chosen (now() of the choosing transaction), else
--   * its earliest job (run_at, then priority, id): the first to become due.
-- So a queue's head is due (head_run_at <= now) whenever any of its jobs is:
-- the queues_ready index (head key, only queues that are not full and not
-- paused) finds every queue that has work, in job order, and future-scheduled
-- heads sit after the due ones at their priority until they are due. get_jobs
-- then probes each queue it walks for its best due jobs (exactly as before), so
-- the head only decides which queues are looked at and in what order; a queue
-- whose better-priority job became due after its head was chosen is walked at
-- its older head's place (order across queues in one batch, never which job of
-- a queue runs first).
--
-- Upkeep: get_jobs chooses the next heads of the queues it takes jobs from (in
-- the UPDATE that counts them, under the queue row locks it holds); elsewhere,
-- triggers on errands._jobs, only for jobs of named queues that are or were
-- available (plain jobs evaluate the WHEN clause and nothing else):
--   * a job becomes available (added, released, rescued, rescheduled, moved):
--     it replaces the head when its key is better;
--   * the head stops being available (failed for good, deleted, cancelled,
--     rescheduled, moved): the head is chosen again: one index probe when the
--     queue's first job (by priority, run_at, id) is due, else a loose index
--     scan (one probe per distinct priority of the queue).
-- A job locked other than by get_jobs (an UPDATE by hand) leaves its queue's
-- head on it: a due key, so the queue is still walked, and the next fetch from
-- the queue chooses the head again.
-- Concurrency: choosing a head again reads the queue's jobs in a statement run
-- after taking the queue row FOR UPDATE; a job that becomes available takes the
-- row FOR KEY SHARE before comparing. The two modes conflict, so a head chosen
-- again sees every job committed by a transaction that compared, and a
-- comparison sees the head chosen by a transaction that committed; two
-- comparisons (KEY SHARE both) go on together and their UPDATEs re-check the
-- comparison against the newest row. A fetch holds its queues FOR UPDATE
-- already (get_jobs step 3) when it takes their jobs.

-- The head of a queue as chosen now (NULL: the queue has no available job).
CREATE OR REPLACE FUNCTION errands._queue_head(queue_id integer,
    OUT priority smallint, OUT run_at timestamptz, OUT id bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
BEGIN
    -- The queue's first job in (priority, run_at, id) order, when it is due, is
    -- its best due job: one index probe (jobs_fetch_queued), the usual case.
    SELECT j.priority, j.run_at, j.id INTO _queue_head.priority, _queue_head.run_at, _queue_head.id
    FROM errands._jobs j
    WHERE j.job_queue_id = _queue_head.queue_id AND j.is_available
    ORDER BY j.priority, j.run_at, j.id
    LIMIT 1;
    IF _queue_head.id IS NULL OR _queue_head.run_at <= now() THEN
        RETURN;
    END IF;
    -- Otherwise the first job of each distinct priority (one index probe per
    -- priority); of those, the best due one, else the earliest.
    WITH RECURSIVE prio(p) AS (
        SELECT min(j.priority) FROM errands._jobs j
        WHERE j.job_queue_id = _queue_head.queue_id AND j.is_available
        UNION ALL
        SELECT (SELECT min(j.priority) FROM errands._jobs j
                WHERE j.job_queue_id = _queue_head.queue_id AND j.is_available
                  AND j.priority > prio.p)
        FROM prio WHERE prio.p IS NOT NULL
    )
    SELECT e.priority, e.run_at, e.id INTO _queue_head.priority, _queue_head.run_at, _queue_head.id
    FROM prio CROSS JOIN LATERAL (
        SELECT j.priority, j.run_at, j.id FROM errands._jobs j
        WHERE j.job_queue_id = _queue_head.queue_id AND j.is_available AND j.priority = prio.p
        ORDER BY j.run_at, j.id
        LIMIT 1
    ) e
    ORDER BY e.run_at > now(), CASE WHEN e.run_at > now() THEN e.run_at END,
             e.priority, e.run_at, e.id
    LIMIT 1;
END
$$;

CREATE OR REPLACE FUNCTION errands._track_queue_head() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_head bigint;
    v_new errands._queues%ROWTYPE;
BEGIN
    -- An available job leaves: when it was the head, choose the head again.
    IF TG_OP <> 'INSERT' AND OLD.job_queue_id IS NOT NULL AND OLD.is_available THEN
        SELECT q.head_id INTO v_head FROM errands._queues q
        WHERE q.id = OLD.job_queue_id FOR UPDATE;
        IF v_head = OLD.id THEN
            SELECT h.priority, h.run_at, h.id
            INTO v_new.head_priority, v_new.head_run_at, v_new.head_id
            FROM errands._queue_head(OLD.job_queue_id) h;
            UPDATE errands._queues q
            SET head_priority = v_new.head_priority, head_run_at = v_new.head_run_at,
                head_id = v_new.head_id
            WHERE q.id = OLD.job_queue_id;
        END IF;
    END IF;
    -- An available job arrives: it becomes the head when its key is better
    -- (due before future; due ones by priority, run_at, id; future ones by
    -- run_at first). The comparison is in the UPDATE's WHERE: re-checked
    -- against the newest row when another comparison updated it meanwhile.
    IF TG_OP <> 'DELETE' AND NEW.job_queue_id IS NOT NULL AND NEW.is_available THEN
        PERFORM FROM errands._queues q WHERE q.id = NEW.job_queue_id FOR KEY SHARE;
        UPDATE errands._queues q
        SET head_priority = NEW.priority, head_run_at = NEW.run_at, head_id = NEW.id
        WHERE q.id = NEW.job_queue_id
          AND (q.head_id IS NULL
               OR (NEW.run_at > now(),
                   CASE WHEN NEW.run_at > now() THEN NEW.run_at ELSE '-infinity' END,
                   NEW.priority, NEW.run_at, NEW.id)
                < (q.head_run_at > now(),
                   CASE WHEN q.head_run_at > now() THEN q.head_run_at ELSE '-infinity' END,
                   q.head_priority, q.head_run_at, q.head_id));
    END IF;
    RETURN NULL;
END
$$;

-- TRUNCATE fires no row trigger: no job is left, so no queue has a head.
CREATE OR REPLACE FUNCTION errands._clear_queue_heads() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE errands._queues q SET head_priority = NULL, head_run_at = NULL, head_id = NULL
    WHERE q.head_id IS NOT NULL;
    RETURN NULL;
END
$$;

-- (DROP + CREATE: CREATE OR REPLACE TRIGGER needs PostgreSQL 14.)
DROP TRIGGER IF EXISTS _queue_head_insert ON errands._jobs;
CREATE TRIGGER _queue_head_insert AFTER INSERT ON errands._jobs
FOR EACH ROW WHEN (NEW.job_queue_id IS NOT NULL AND NEW.is_available)
EXECUTE FUNCTION errands._track_queue_head();
DROP TRIGGER IF EXISTS _queue_head_update ON errands._jobs;
CREATE TRIGGER _queue_head_update AFTER UPDATE ON errands._jobs
FOR EACH ROW WHEN (((OLD.job_queue_id IS NOT NULL AND OLD.is_available)
                    OR (NEW.job_queue_id IS NOT NULL AND NEW.is_available))
                   AND (OLD.job_queue_id, OLD.is_available, OLD.priority, OLD.run_at)
                       IS DISTINCT FROM (NEW.job_queue_id, NEW.is_available, NEW.priority, NEW.run_at)
                   -- a take: get_jobs chooses the next heads itself, set-based
                   AND NOT (OLD.locked_at IS NULL AND NEW.locked_at IS NOT NULL))
EXECUTE FUNCTION errands._track_queue_head();
DROP TRIGGER IF EXISTS _queue_head_delete ON errands._jobs;
CREATE TRIGGER _queue_head_delete AFTER DELETE ON errands._jobs
FOR EACH ROW WHEN (OLD.job_queue_id IS NOT NULL AND OLD.is_available)
EXECUTE FUNCTION errands._track_queue_head();
DROP TRIGGER IF EXISTS _queue_head_truncate ON errands._jobs;
CREATE TRIGGER _queue_head_truncate AFTER TRUNCATE ON errands._jobs
FOR EACH STATEMENT EXECUTE FUNCTION errands._clear_queue_heads();
