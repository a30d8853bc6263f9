-- Job keys: the decision table of replace / preserve_run_at (reference section 2.1),
-- unsafe_dedupe, Graphile's mode sequence, and batch jobs (array payloads).
BEGIN;
SELECT plan(93);

-- Helpers ---------------------------------------------------------------------

-- A job as errands.jobs shows it (all-NULL when it does not exist).
CREATE FUNCTION pg_temp.job(p_id bigint) RETURNS errands.jobs
LANGUAGE sql AS $$ SELECT j.* FROM errands.jobs j WHERE j.id = p_id $$;

-- The job holding a key, and how many jobs hold it.
CREATE FUNCTION pg_temp.keyed(p_key text) RETURNS errands.jobs
LANGUAGE sql AS $$ SELECT j.* FROM errands.jobs j WHERE j.key = p_key $$;

-- Start one job of a task as worker-a (it is running afterwards); its id.
CREATE FUNCTION pg_temp.start(p_task text) RETURNS bigint
LANGUAGE sql AS $$ SELECT id FROM errands.get_jobs('worker-a', ARRAY[p_task], 1) $$;

-- worker-a reports the job failed with 'boom'.
CREATE FUNCTION pg_temp.fail(p_id bigint) RETURNS errands.jobs
LANGUAGE sql AS $$ SELECT * FROM errands.worker_fail_jobs('worker-a', ARRAY[p_id], ARRAY['boom']) $$;

-- Move created_at/updated_at a day back so "unchanged" and "bumped" show.
CREATE FUNCTION pg_temp.backdate(p_id bigint) RETURNS void
LANGUAGE sql AS $$
    UPDATE errands._jobs SET created_at = now() - interval '1 day',
                             updated_at = now() - interval '1 day'
    WHERE id = p_id
$$;

-- Decision table, run once per mode -------------------------------------------

-- No existing job: a new job with revision 0.  (2 tests)
CREATE FUNCTION pg_temp.no_existing(p_mode text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    r errands.jobs;
BEGIN
    r := errands.add_job('none_' || p_mode, '{"n": 1}', job_key := 'none:' || p_mode,
                         job_key_mode := p_mode);
    RETURN NEXT ok(r.id IS NOT NULL AND r.revision = 0 AND r.attempts = 0
                   AND r.key = 'none:' || p_mode AND r.payload::text = '{"n": 1}',
                   p_mode || ', no job with the key: a new job is inserted with revision 0');
    RETURN NEXT is((SELECT count(*)::int FROM errands.jobs WHERE key = 'none:' || p_mode), 1,
                   p_mode || ', no job with the key: exactly one job holds the key');
END
$$;

-- Existing job running: it loses the key and will not retry; a new job is
-- inserted.  (7 tests)
CREATE FUNCTION pg_temp.running(p_mode text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    k text := 'running:' || p_mode;
    task text := 'running_' || p_mode;
    old errands.jobs;
    new errands.jobs;
    after errands.jobs;
BEGIN
    old := errands.add_job(task, '{"v": 1}', job_key := k, max_attempts := 5);
    PERFORM pg_temp.backdate(old.id);
    RETURN NEXT is(pg_temp.start(task), old.id, p_mode || ', running: setup, worker-a runs the keyed job');
    new := errands.add_job(task, '{"v": 2}', job_key := k, job_key_mode := p_mode);
    RETURN NEXT ok(new.id <> old.id AND new.revision = 0 AND new.attempts = 0
                   AND new.key = k AND new.payload::text = '{"v": 2}' AND new.locked_at IS NULL,
                   p_mode || ', running: a new job is inserted with the key, revision 0 and the new payload');
    after := pg_temp.job(old.id);
    RETURN NEXT is(after.key, NULL, p_mode || ', running: the running job loses its key');
    RETURN NEXT ok(after.attempts = 5 AND after.max_attempts = 5,
                   p_mode || ', running: the running job gets attempts = max_attempts');
    RETURN NEXT ok(after.locked_by = 'worker-a' AND after.payload::text = '{"v": 1}'
                   AND after.updated_at = now(),
                   p_mode || ', running: the running job stays locked, keeps its payload, updated_at bumped');
    RETURN NEXT is((pg_temp.keyed(k)).id, new.id, p_mode || ', running: the key now names the new job');
    RETURN NEXT ok((SELECT f.attempts >= f.max_attempts FROM pg_temp.fail(old.id) f),
                   p_mode || ', running: when the old job then fails it is failed (no retry)');
END
$$;

-- Existing job failed: same as running.  (4 tests)
CREATE FUNCTION pg_temp.perma_failed(p_mode text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    k text := 'permafailed:' || p_mode;
    task text := 'permafailed_' || p_mode;
    old errands.jobs;
    new errands.jobs;
    after errands.jobs;
BEGIN
    old := errands.add_job(task, '{"v": 1}', job_key := k, max_attempts := 1);
    PERFORM pg_temp.start(task);
    RETURN NEXT ok((SELECT f.attempts = 1 AND f.max_attempts = 1 AND f.last_error = 'boom'
                    FROM pg_temp.fail(old.id) f),
                   p_mode || ', failed: setup, the keyed job failed for good');
    new := errands.add_job(task, '{"v": 2}', job_key := k, job_key_mode := p_mode);
    RETURN NEXT ok(new.id <> old.id AND new.revision = 0 AND new.attempts = 0
                   AND new.payload::text = '{"v": 2}' AND new.last_error IS NULL,
                   p_mode || ', failed: a new job is inserted with revision 0');
    after := pg_temp.job(old.id);
    RETURN NEXT ok(after.key IS NULL AND after.attempts = after.max_attempts
                   AND after.last_error = 'boom' AND after.payload::text = '{"v": 1}',
                   p_mode || ', failed: the old job loses its key, stays failed, keeps last_error');
    RETURN NEXT is((pg_temp.keyed(k)).id, new.id, p_mode || ', failed: the key now names the new job');
END
$$;

-- Existing job failed and waiting to retry: updated in place, every attribute
-- replaced (omitted ones reset to defaults), run_at too even in
-- preserve_run_at mode.  (9 tests)
CREATE FUNCTION pg_temp.retrying(p_mode text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    k text := 'retrying:' || p_mode;
    task text := 'retrying_' || p_mode;
    old errands.jobs;
    failed errands.jobs;
    new errands.jobs;
BEGIN
    old := errands.add_job(task, '{"v": 1}', queue_name := 'retry_q_' || p_mode,
                           max_attempts := 10, job_key := k, priority := 7, flags := ARRAY['x']);
    PERFORM pg_temp.backdate(old.id);
    PERFORM pg_temp.start(task);
    failed := pg_temp.fail(old.id);
    RETURN NEXT ok(failed.attempts = 1 AND failed.last_error = 'boom' AND failed.run_at > now()
                   AND failed.locked_at IS NULL,
                   p_mode || ', retrying: setup, the keyed job failed once and waits to retry');
    -- Another task, every optional argument omitted.
    new := errands.add_job('retrying_other_' || p_mode, job_key := k, job_key_mode := p_mode);
    RETURN NEXT ok(new.id = old.id AND new.created_at = now() - interval '1 day',
                   p_mode || ', retrying: the job is updated in place (same id, created_at unchanged)');
    RETURN NEXT ok(new.revision = 1 AND new.updated_at = now(),
                   p_mode || ', retrying: revision + 1 and updated_at bumped');
    RETURN NEXT ok(new.attempts = 0 AND new.last_error IS NULL,
                   p_mode || ', retrying: attempts reset to 0 and last_error cleared');
    RETURN NEXT is(new.run_at, now(),
                   p_mode || ', retrying: run_at is replaced (here by the default now())');
    RETURN NEXT is(new.task_identifier, 'retrying_other_' || p_mode,
                   p_mode || ', retrying: the task changes to the new call''s');
    RETURN NEXT ok(new.queue_name IS NULL AND new.priority = 0 AND new.max_attempts = 25
                   AND new.payload::text = '{}' AND new.flags IS NULL,
                   p_mode || ', retrying: omitted arguments reset queue, priority, max_attempts, payload, flags');
    RETURN NEXT is(new::text, pg_temp.job(old.id)::text,
                   p_mode || ', retrying: the returned row is the stored row');
    RETURN NEXT is(pg_temp.start('retrying_other_' || p_mode), old.id,
                   p_mode || ', retrying: the updated job runs at once');
END
$$;

-- Existing job never tried (attempts 0): updated in place; preserve_run_at
-- keeps run_at, replace replaces it.  (8 tests)
CREATE FUNCTION pg_temp.untried(p_mode text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    k text := 'untried:' || p_mode;
    old errands.jobs;
    new errands.jobs;
    again errands.jobs;
    want_run_at timestamptz;
BEGIN
    old := errands.add_job('untried_' || p_mode, '{"v": 1}', queue_name := 'untried_q',
                           run_at := now() + interval '1 hour', max_attempts := 10, job_key := k,
                           priority := 7, flags := ARRAY['x']);
    PERFORM pg_temp.backdate(old.id);
    new := errands.add_job('untried_other_' || p_mode, '{"v": 2}', job_key := k,
                           job_key_mode := p_mode);
    RETURN NEXT ok(new.id = old.id AND new.created_at = now() - interval '1 day'
                   AND new.revision = 1 AND new.updated_at = now(),
                   p_mode || ', untried: updated in place (same id and created_at, revision 1, updated_at bumped)');
    want_run_at := CASE p_mode WHEN 'preserve_run_at' THEN now() + interval '1 hour' ELSE now() END;
    RETURN NEXT is(new.run_at, want_run_at,
                   p_mode || CASE p_mode WHEN 'preserve_run_at'
                                  THEN ', untried, run_at omitted: the old run_at is kept'
                                  ELSE ', untried, run_at omitted: run_at is replaced by now()' END);
    RETURN NEXT ok(new.payload::text = '{"v": 2}' AND new.task_identifier = 'untried_other_' || p_mode,
                   p_mode || ', untried: payload and task replaced');
    RETURN NEXT ok(new.queue_name IS NULL AND new.priority = 0 AND new.max_attempts = 25
                   AND new.flags IS NULL AND new.attempts = 0,
                   p_mode || ', untried: omitted queue, priority, max_attempts, flags reset to defaults');
    RETURN NEXT is(new::text, pg_temp.job(old.id)::text,
                   p_mode || ', untried: the returned row is the stored row');
    -- Again, with an explicit run_at.
    again := errands.add_job('untried_other_' || p_mode, '{"v": 3}', queue_name := 'untried_q2',
                             run_at := now() + interval '2 hours', job_key := k, priority := -1,
                             job_key_mode := p_mode);
    want_run_at := CASE p_mode WHEN 'preserve_run_at' THEN want_run_at ELSE now() + interval '2 hours' END;
    RETURN NEXT is(again.run_at, want_run_at,
                   p_mode || CASE p_mode WHEN 'preserve_run_at'
                                  THEN ', untried, explicit run_at: run_at still kept'
                                  ELSE ', untried, explicit run_at: run_at replaced by the given one' END);
    RETURN NEXT ok(again.id = old.id AND again.revision = 2 AND again.payload::text = '{"v": 3}'
                   AND again.queue_name = 'untried_q2' AND again.priority = -1,
                   p_mode || ', untried: a second update gives revision 2 and the new attributes');
    RETURN NEXT is((SELECT count(*)::int FROM errands.jobs WHERE key = k), 1,
                   p_mode || ', untried: still exactly one job holds the key');
END
$$;

SELECT * FROM pg_temp.no_existing('replace');
SELECT * FROM pg_temp.no_existing('preserve_run_at');
SELECT * FROM pg_temp.running('replace');
SELECT * FROM pg_temp.running('preserve_run_at');
SELECT * FROM pg_temp.perma_failed('replace');
SELECT * FROM pg_temp.perma_failed('preserve_run_at');
SELECT * FROM pg_temp.retrying('replace');
SELECT * FROM pg_temp.retrying('preserve_run_at');
SELECT * FROM pg_temp.untried('replace');
SELECT * FROM pg_temp.untried('preserve_run_at');
-- 2 * (2 + 7 + 4 + 9 + 8) = 60 tests so far

-- A lock older than 4 hours still counts as locked: the key moves to a new job.
CREATE TEMP TABLE stale_old AS
SELECT * FROM errands.add_job('stale_task', '{"v": 1}', job_key := 'stale:1');
SELECT is(pg_temp.start('stale_task'), (SELECT id FROM stale_old), 'stale lock: setup, the keyed job is running');
UPDATE errands._jobs SET locked_at = now() - interval '5 hours' WHERE id = (SELECT id FROM stale_old);
CREATE TEMP TABLE stale_new AS
SELECT * FROM errands.add_job('stale_task', '{"v": 2}', job_key := 'stale:1');
SELECT ok((SELECT n.id <> o.id AND n.revision = 0 FROM stale_new n, stale_old o)
          AND (pg_temp.job((SELECT id FROM stale_old))).key IS NULL,
          'stale lock: the old job loses the key and a new job is inserted');

-- A NULL job_key_mode behaves like replace.
CREATE TEMP TABLE nullmode AS
SELECT * FROM errands.add_job('nullmode_task', '{"v": 1}', job_key := 'nullmode:1',
                              run_at := now() + interval '1 hour');
SELECT ok((SELECT j.id = n.id AND j.revision = 1 AND j.run_at = now() + interval '2 hours'
                  AND j.payload::text = '{"v": 2}'
           FROM errands.add_job('nullmode_task', '{"v": 2}', job_key := 'nullmode:1',
                                run_at := now() + interval '2 hours', job_key_mode := NULL) j,
                nullmode n),
          'a NULL job_key_mode behaves like replace (run_at replaced, revision 1)');

-- unsafe_dedupe ------------------------------------------------------------------

SELECT ok((SELECT revision = 0 AND key = 'dedupe:new' AND payload::text = '{"v": 1}'
           FROM errands.add_job('dedupe_task', '{"v": 1}', job_key := 'dedupe:new',
                                job_key_mode := 'unsafe_dedupe')),
          'unsafe_dedupe, no job with the key: a new job is inserted with revision 0');

-- Pending job: only revision and updated_at change.
CREATE TEMP TABLE dd_pending AS
SELECT * FROM errands.add_job('dedupe_task', '{"v": 1}', queue_name := 'dedupe_q',
                              run_at := now() + interval '1 hour', max_attempts := 3,
                              job_key := 'dedupe:pending', priority := 3, flags := ARRAY['x']);
UPDATE errands._jobs SET created_at = now() - interval '1 day', updated_at = now() - interval '1 day'
WHERE key = 'dedupe:pending';
CREATE TEMP TABLE dd_pending_2 AS
SELECT * FROM errands.add_job('dedupe_other', '{"v": 2}', queue_name := 'other_q',
                              run_at := now() + interval '2 hours', max_attempts := 9,
                              job_key := 'dedupe:pending', priority := 9, flags := ARRAY['y'],
                              job_key_mode := 'unsafe_dedupe');
SELECT is((SELECT id FROM dd_pending_2), (SELECT id FROM dd_pending),
          'unsafe_dedupe, pending: returns the existing job');
SELECT ok((SELECT revision = 1 AND updated_at = now() FROM dd_pending_2),
          'unsafe_dedupe, pending: revision + 1 and updated_at bumped');
SELECT ok((SELECT payload::text = '{"v": 1}' AND run_at = now() + interval '1 hour'
           FROM dd_pending_2),
          'unsafe_dedupe, pending: payload and run_at unchanged');
SELECT ok((SELECT task_identifier = 'dedupe_task' AND queue_name = 'dedupe_q' AND priority = 3
                  AND max_attempts = 3 AND flags = '{"x": true}'::jsonb
                  AND created_at = now() - interval '1 day'
           FROM dd_pending_2),
          'unsafe_dedupe, pending: task, queue, priority, max_attempts, flags, created_at unchanged');
SELECT is((SELECT d::text FROM dd_pending_2 d), (pg_temp.keyed('dedupe:pending'))::text,
          'unsafe_dedupe, pending: the returned row is the stored row');
SELECT is((SELECT revision FROM errands.add_job('dedupe_task', job_key := 'dedupe:pending',
                                                job_key_mode := 'unsafe_dedupe')), 2,
          'unsafe_dedupe, pending: a second call gives revision 2');

-- Running job: untouched apart from revision; no new job.
CREATE TEMP TABLE dd_running AS
SELECT * FROM errands.add_job('dedupe_running', '{"v": 1}', job_key := 'dedupe:running');
SELECT is(pg_temp.start('dedupe_running'), (SELECT id FROM dd_running),
          'unsafe_dedupe, running: setup, the keyed job is running');
CREATE TEMP TABLE dd_running_2 AS
SELECT * FROM errands.add_job('dedupe_running', '{"v": 2}', job_key := 'dedupe:running',
                              job_key_mode := 'unsafe_dedupe');
SELECT ok((SELECT n.id = o.id AND n.revision = 1 FROM dd_running_2 n, dd_running o),
          'unsafe_dedupe, running: returns the running job with revision + 1');
SELECT ok((SELECT key = 'dedupe:running' AND locked_by = 'worker-a' AND attempts = 1
                  AND max_attempts = 25 AND payload::text = '{"v": 1}'
           FROM errands.jobs WHERE id = (SELECT id FROM dd_running)),
          'unsafe_dedupe, running: the job keeps its key, lock, attempts and payload');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'dedupe_running'), 1,
          'unsafe_dedupe, running: no new job is inserted');

-- Failed job: untouched apart from revision; no new job.
CREATE TEMP TABLE dd_failed AS
SELECT * FROM errands.add_job('dedupe_failed', '{"v": 1}', job_key := 'dedupe:failed', max_attempts := 1);
SELECT ok((SELECT f.attempts = f.max_attempts
           FROM pg_temp.fail(pg_temp.start('dedupe_failed')) f),
          'unsafe_dedupe, failed: setup, the keyed job failed for good');
CREATE TEMP TABLE dd_failed_2 AS
SELECT * FROM errands.add_job('dedupe_failed', '{"v": 2}', job_key := 'dedupe:failed',
                              job_key_mode := 'unsafe_dedupe');
SELECT ok((SELECT n.id = o.id AND n.revision = 1 FROM dd_failed_2 n, dd_failed o),
          'unsafe_dedupe, failed: returns the failed job with revision + 1');
SELECT ok((SELECT key = 'dedupe:failed' AND attempts = 1 AND max_attempts = 1
                  AND last_error = 'boom' AND payload::text = '{"v": 1}'
           FROM errands.jobs WHERE id = (SELECT id FROM dd_failed)),
          'unsafe_dedupe, failed: the job keeps its key, attempts, last_error and payload');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'dedupe_failed'), 1,
          'unsafe_dedupe, failed: no new job is inserted');

-- NULL key: a plain insert every time.
SELECT is(
    (SELECT count(DISTINCT j.id)::int FROM (
        SELECT (errands.add_job('dedupe_nokey', job_key_mode := 'unsafe_dedupe')).id
        UNION ALL
        SELECT (errands.add_job('dedupe_nokey', job_key_mode := 'unsafe_dedupe')).id) j(id)),
    2,
    'unsafe_dedupe with a NULL job_key: two calls insert two jobs');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'dedupe_nokey' AND key IS NULL), 2,
          'unsafe_dedupe with a NULL job_key: both jobs exist without a key');

-- Graphile's sequence: replace -> preserve_run_at -> unsafe_dedupe -> replace.
CREATE TEMP TABLE seq (step int, id bigint, revision int, payload text, run_at timestamptz);
INSERT INTO seq SELECT 1, id, revision, payload::text, run_at
FROM errands.add_job('seq_task', '{"s": 1}', job_key := 'seq:1', run_at := now() + interval '1 hour',
                     job_key_mode := 'replace');
INSERT INTO seq SELECT 2, id, revision, payload::text, run_at
FROM errands.add_job('seq_task', '{"s": 2}', job_key := 'seq:1', run_at := now() + interval '2 hours',
                     job_key_mode := 'preserve_run_at');
INSERT INTO seq SELECT 3, id, revision, payload::text, run_at
FROM errands.add_job('seq_task', '{"s": 3}', job_key := 'seq:1', run_at := now() + interval '3 hours',
                     job_key_mode := 'unsafe_dedupe');
INSERT INTO seq SELECT 4, id, revision, payload::text, run_at
FROM errands.add_job('seq_task', '{"s": 4}', job_key := 'seq:1', run_at := now() + interval '4 hours',
                     job_key_mode := 'replace');
SELECT results_eq(
    $$SELECT step, revision, payload, run_at - now() FROM seq ORDER BY step$$,
    $$VALUES (1, 0, '{"s": 1}', interval '1 hour'),
             (2, 1, '{"s": 2}', interval '1 hour'),
             (3, 2, '{"s": 2}', interval '1 hour'),
             (4, 3, '{"s": 4}', interval '4 hours')$$,
    'replace (rev 0) -> preserve_run_at (rev 1, new payload, run_at kept) -> unsafe_dedupe (rev 2, unchanged) -> replace (rev 3, new payload and run_at)'
);
SELECT is((SELECT count(DISTINCT id)::int FROM seq), 1, 'the whole mode sequence works on one job (same id)');

-- Batch jobs: array payloads of one key concatenate -----------------------------

CREATE TEMP TABLE batch (step int, id bigint, revision int, payload jsonb);
INSERT INTO batch SELECT 1, id, revision, payload::jsonb FROM errands.add_job('batch_task', '[1]', job_key := 'batch:1');
INSERT INTO batch SELECT 2, id, revision, payload::jsonb FROM errands.add_job('batch_task', '[2, 3]', job_key := 'batch:1');
INSERT INTO batch SELECT 3, id, revision, payload::jsonb FROM errands.add_job('batch_task', '{"x": 1}', job_key := 'batch:1');
INSERT INTO batch SELECT 4, id, revision, payload::jsonb FROM errands.add_job('batch_task', '[4]', job_key := 'batch:1');
INSERT INTO batch SELECT 5, id, revision, payload::jsonb FROM errands.add_job('batch_task', job_key := 'batch:1');
SELECT is((SELECT payload FROM batch WHERE step = 2), '[1, 2, 3]'::jsonb, 'batch: [1] then [2,3] gives [1,2,3]');
SELECT is((SELECT payload FROM batch WHERE step = 3), '{"x": 1}'::jsonb, 'batch: an object payload replaces the array');
SELECT is((SELECT payload FROM batch WHERE step = 4), '[4]'::jsonb, 'batch: an array payload replaces the object');
SELECT is((SELECT payload FROM batch WHERE step = 5), '{}'::jsonb, 'batch: a call without payload gives {}');
SELECT ok((SELECT count(DISTINCT id) = 1 AND max(revision) = 4 FROM batch),
          'batch: every call updated the same job (revisions 0..4)');
SELECT is((SELECT payload::jsonb FROM errands.jobs WHERE key = 'batch:1'), '{}'::jsonb,
          'batch: the stored payload matches the last returned one');

-- Graphile's batchJobs test: 3 keyed calls with one-element arrays.
SELECT lives_ok($$
    SELECT errands.add_job('batch3', json_build_array(json_build_object('id', i)), job_key := 'batch3:key')
    FROM generate_series(1, 3) i
$$, 'batch: three keyed add_job calls with one-element arrays');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'batch3'), 1,
          'batch: the three calls make one job');
SELECT ok((SELECT payload::jsonb = '[{"id": 1}, {"id": 2}, {"id": 3}]' AND attempts = 0
                  AND queue_name IS NULL
           FROM errands.jobs WHERE task_identifier = 'batch3'),
          'batch: the job holds all three elements in call order, attempts 0, no queue');

-- A running batch is not extended: the new elements go to a new job.
CREATE TEMP TABLE batch_run AS SELECT * FROM errands.add_job('batch_run', '[1]', job_key := 'batch:run');
SELECT is(pg_temp.start('batch_run'), (SELECT id FROM batch_run), 'batch, running: setup, the batch job is running');
SELECT ok((SELECT j.id <> b.id AND j.payload::jsonb = '[2]'
           FROM errands.add_job('batch_run', '[2]', job_key := 'batch:run') j, batch_run b)
          AND (SELECT payload::jsonb = '[1]' FROM errands.jobs WHERE id = (SELECT id FROM batch_run)),
          'batch, running: new elements go to a new job; the running job keeps [1]');

SELECT * FROM finish();
ROLLBACK;
