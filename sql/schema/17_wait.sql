-- Waiting for a job to finish (docs/waiting.md). A waiter:
--   1. LISTENs on the channel "errands:finished";
--   2. calls errands.watch_jobs(ids): marks the jobs watched (on the job row, so
--      the statement that finishes one sees it: no race), takes a lease, and
--      returns each job's state now;
--   3. if a state is final (completed, cancelled: read errands.finished_jobs;
--      failed: errands.jobs), it is done; else it waits for a notification whose
--      payload names the id (comma-separated ids), calling watch_jobs again on
--      each one and on a slow poll (which also renews the lease).
-- Jobs nobody watches pay no NOTIFY and, with retention 0 everywhere, nothing:
-- worker_complete_jobs leaves watched jobs to its history path. With history on,
-- each completion batch pays one probe of the (small) errands._job_waiters index.

-- The hook every path that finishes jobs calls once, after the statement that
-- finished them (a later statement, so it sees every watch committed before that
-- statement took the rows): one NOTIFY per call, naming the watched ones among
-- job_ids. Extra ids (jobs the call did not finish) only wake waiters that read
-- the state again and keep waiting.
-- No SET clauses: saving and restoring settings would cost every call more than
-- its one index probe.
CREATE OR REPLACE FUNCTION errands._jobs_finished(job_ids bigint[]) RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_watched bigint[];
BEGIN
    SELECT array_agg(w.job_id ORDER BY w.job_id) INTO v_watched
    FROM errands._job_waiters w WHERE w.job_id = ANY(_jobs_finished.job_ids);
    -- A NOTIFY payload holds under 8000 bytes: 300 ids of up to 20 characters each.
    WHILE v_watched IS NOT NULL AND cardinality(v_watched) > 0 LOOP
        PERFORM pg_notify('errands:finished', array_to_string(v_watched[1:300], ','));
        v_watched := v_watched[301:];
    END LOOP;
END
$$;
COMMENT ON FUNCTION errands._jobs_finished(bigint[]) IS
'Private hook of every path that finishes jobs (completion, failure for good,
cancellation): call it once, after the statement that finished them, with their
ids. Notifies "errands:finished" with the ids (comma-separated) of those a waiter
watches (errands.watch_jobs); does nothing for the others. The finishing statement
itself keeps a watched job''s finished row whatever its retention (condition
"OR j.watched" next to the retention test).';

CREATE OR REPLACE FUNCTION errands.watch_jobs(job_ids bigint[], lease interval DEFAULT interval '5 minutes')
RETURNS TABLE (id bigint, state text)
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown bigint;
BEGIN
    IF watch_jobs.job_ids IS NULL OR array_position(watch_jobs.job_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'errands: watch_jobs needs an array of job ids without NULL, got %',
            coalesce(watch_jobs.job_ids::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF watch_jobs.lease IS NULL OR NOT isfinite(watch_jobs.lease)
       OR watch_jobs.lease NOT BETWEEN interval '1 second' AND interval '1 day' THEN
        RAISE EXCEPTION 'errands: watch_jobs needs a lease between 1 second and 1 day, got %',
            coalesce(watch_jobs.lease::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    INSERT INTO errands._job_waiters AS w (job_id, expires_at)
    SELECT DISTINCT i, now() + watch_jobs.lease FROM unnest(watch_jobs.job_ids) AS i
    ON CONFLICT (job_id) DO UPDATE SET expires_at = greatest(w.expires_at, EXCLUDED.expires_at);
    -- Writing the row (even when already watched) takes its row lock: a statement
    -- finishing the job either ran first (this waits, then finds it finished
    -- below) or waits for this transaction and then sees watched and the lease.
    UPDATE errands._jobs j SET watched = true WHERE j.id = ANY(watch_jobs.job_ids);
    -- A new statement: it sees a finish that committed while the UPDATE waited.
    RETURN QUERY
    SELECT i.id, coalesce(
               (SELECT v.state FROM errands.jobs v WHERE v.id = i.id),
               (SELECT f.state FROM errands._finished_jobs f WHERE f.id = i.id))
    FROM unnest(watch_jobs.job_ids) WITH ORDINALITY AS i(id, n)
    ORDER BY i.n;
    SELECT i INTO v_unknown FROM unnest(watch_jobs.job_ids) AS i
    WHERE NOT EXISTS (SELECT FROM errands._jobs j WHERE j.id = i)
      AND NOT EXISTS (SELECT FROM errands._finished_jobs f WHERE f.id = i)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: no job % in errands.jobs or errands.finished_jobs (unknown, removed, or finished with retention 0 before it was watched)',
            v_unknown USING ERRCODE = 'P0002';
    END IF;
END
$$;
COMMENT ON FUNCTION errands.watch_jobs(bigint[], interval) IS
'Registers interest in the listed jobs and returns each one''s state now
(scheduled, pending, running, retrying, failed, completed or cancelled). From now
on, finishing a watched job notifies the channel "errands:finished" (payload: the
finished watched ids, comma-separated) and keeps its errands.finished_jobs row at
least until the lease ends, even with retention 0. LISTEN before calling it and
call it again on each notification or poll (that renews the lease). An id in
neither errands.jobs nor errands.finished_jobs fails the call (P0002, naming it;
nothing is watched). Granted by grant_read (and so grant_worker).';
