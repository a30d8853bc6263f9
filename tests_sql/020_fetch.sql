-- errands.get_jobs: which jobs a fetch takes, in which order, and what it does to them.
-- Inside this transaction now() is constant, so "due" means run_at <= now().
BEGIN;
SELECT plan(49);
\ir include/jobs_by_name.sql

------------------------------------------------------------------------------
-- Bad input: SQLSTATE 22023 naming the field.
------------------------------------------------------------------------------
SELECT matches(pg_temp.error_of($$SELECT errands.get_jobs('', '{a}')$$),
               '^22023: .*worker_id', 'worker_id '''' is rejected with 22023 naming worker_id');
SELECT matches(pg_temp.error_of($$SELECT errands.get_jobs(NULL, '{a}')$$),
               '^22023: .*worker_id', 'worker_id NULL is rejected with 22023 naming worker_id');
SELECT matches(pg_temp.error_of($$SELECT errands.get_jobs('w', '{a}', 0)$$),
               '^22023: .*job_count', 'job_count 0 is rejected with 22023 naming job_count');
SELECT matches(pg_temp.error_of($$SELECT errands.get_jobs('w', '{a}', -3)$$),
               '^22023: .*job_count', 'job_count -3 is rejected with 22023 naming job_count');
SELECT matches(pg_temp.error_of($$SELECT errands.get_jobs('w', '{a}', NULL)$$),
               '^22023: .*job_count', 'job_count NULL is rejected with 22023 naming job_count');

------------------------------------------------------------------------------
-- Which jobs are fetched.
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('a_due',      (errands.add_job('a')).id),
    ('a_past',     (errands.add_job('a', run_at := now() - interval '1 minute')).id),
    ('a_future',   (errands.add_job('a', run_at := now() + interval '1 second')).id),
    ('a_failed',   (errands.add_job('a', run_at := now() - interval '1 hour', max_attempts := 3)).id),
    ('a_last_try', (errands.add_job('a', run_at := now() - interval '1 hour', max_attempts := 2)).id),
    ('a_locked',   (errands.add_job('a', run_at := now() - interval '1 hour')).id),
    ('a_stale',    (errands.add_job('a', run_at := now() - interval '1 day')).id),
    ('b_due',      (errands.add_job('b')).id),
    ('c_due',      (errands.add_job('c', run_at := now() - interval '1 hour')).id);
UPDATE errands._jobs SET attempts = 3, last_error = 'boom' WHERE id = pg_temp.id('a_failed');
UPDATE errands._jobs SET attempts = 1, last_error = 'once' WHERE id = pg_temp.id('a_last_try');
UPDATE errands._jobs SET attempts = 1, locked_by = 'other', locked_at = now() - interval '1 minute'
WHERE id = pg_temp.id('a_locked');
-- Fetch ignores stale locks (the sweep, reset_locked, clears them).
UPDATE errands._jobs SET attempts = 1, locked_by = 'dead', locked_at = now() - interval '5 hours'
WHERE id = pg_temp.id('a_stale');
CREATE TEMP TABLE before_fetch AS SELECT * FROM errands._jobs;

SELECT is_empty($$SELECT * FROM errands.get_jobs('w1', '{nosuch,alsonot}', 10)$$,
                'no job is fetched when none of the task identifiers is known');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w1', '{}', 10)$$,
                'no job is fetched for an empty task list');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w1', NULL, 10)$$,
                'no job is fetched for a NULL task list');
SELECT is((SELECT count(*)::int FROM errands._jobs x JOIN before_fetch b USING (id)
           WHERE (x.*)::text = (b.*)::text), 9,
          'fetches that find no known task leave every job untouched');

CREATE TEMP TABLE f1 AS
SELECT * FROM errands.get_jobs('w1', '{a,b,unknown_task}', 10) WITH ORDINALITY;

SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM f1)),
          pg_temp.sorted(pg_temp.ids('a_due', 'a_past', 'a_last_try', 'b_due')),
          'only due, unlocked jobs with attempts left of the listed tasks are fetched');
SELECT is(ARRAY(SELECT id FROM f1 ORDER BY ordinality),
          pg_temp.ids('a_last_try', 'a_past', 'a_due', 'b_due'),
          'the result comes in priority, run_at, id order');
SELECT is((SELECT array_agg(DISTINCT locked_by) FROM f1), '{w1}'::text[],
          'returned rows show locked_by = the worker');
SELECT ok((SELECT bool_and(locked_at = now()) FROM f1), 'returned rows show locked_at = now()');
SELECT is((SELECT array_agg(attempts ORDER BY ordinality) FROM f1), '{2,1,1,1}'::int[],
          'returned rows show attempts + 1');
SELECT is((SELECT array_agg(task_identifier ORDER BY ordinality) FROM f1), '{a,a,a,b}'::text[],
          'returned rows carry their task identifier');
SELECT is((SELECT array_agg(x.attempts::int || '/' || x.locked_by ORDER BY x.id)
           FROM errands._jobs x WHERE x.id IN (SELECT id FROM f1)),
          (SELECT array_agg((b.attempts + 1)::int || '/w1' ORDER BY b.id)
           FROM before_fetch b WHERE b.id IN (SELECT id FROM f1)),
          'the table rows of fetched jobs have attempts + 1 and locked_by = the worker');
SELECT ok((SELECT bool_and(x.locked_at = now()) FROM errands._jobs x WHERE x.id IN (SELECT id FROM f1)),
          'the table rows of fetched jobs have locked_at = now()');
SELECT is((SELECT attempts::int FROM errands._jobs WHERE id = pg_temp.id('a_last_try')), 2,
          'a job on its last try (attempts = max_attempts - 1) is fetched, reaching max_attempts');
SELECT is((SELECT count(*)::int FROM errands._jobs x JOIN before_fetch b USING (id)
           WHERE (x.*)::text = (b.*)::text AND x.id NOT IN (SELECT id FROM f1)), 5,
          'every job not fetched (future, failed, locked, stale-locked, unknown task) is untouched');
SELECT is((SELECT (attempts, locked_at, locked_by)::text FROM errands._jobs WHERE id = pg_temp.id('c_due')),
          '(0,,)', 'a due job of a task the worker does not list is not locked and keeps attempts 0');
SELECT is((SELECT (attempts, locked_by)::text FROM errands._jobs WHERE id = pg_temp.id('a_stale')),
          '(1,dead)', 'a stale-locked job is not fetched (left to reset_locked)');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w2', '{a,b}', 10)$$,
                'a second fetch finds nothing: the fetched jobs are locked');

-- Due means run_at <= now(): a job due exactly now is fetched, one a microsecond later is not.
INSERT INTO j VALUES
    ('d_now',   (errands.add_job('d', run_at := now())).id),
    ('d_later', (errands.add_job('d', run_at := now() + interval '1 microsecond')).id);
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{d}', 10)), pg_temp.ids('d_now'),
          'run_at = now() is due, run_at = now() + 1 microsecond is not');

------------------------------------------------------------------------------
-- Order: priority, run_at, id; job_count limits the batch.
------------------------------------------------------------------------------
INSERT INTO errands._tasks (identifier) VALUES ('o'), ('o2');
-- Explicit ids inserted out of order, so id order differs from the heap order.
INSERT INTO errands._jobs (id, task_id, priority, run_at)
SELECT v.id, t.id, v.priority, now() - v.age
FROM (VALUES
    (900007, 'o',  0, interval '1 hour'),
    (900003, 'o',  0, interval '1 hour'),
    (900009, 'o',  3, interval '1 day'),
    (900020, 'o2', 0, interval '1 hour'),
    (900001, 'o',  0, interval '1 hour'),
    (900002, 'o',  0, interval '0'),
    (900010, 'o', -5, interval '0'),
    (900000, 'o2', 0, interval '1 hour'),
    (900008, 'o',  0, interval '2 hours')
) v(id, task, priority, age)
JOIN errands._tasks t ON t.identifier = v.task;

SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{o2,o}', 3)), '{900010,900008,900000}'::bigint[],
          'job_count 3: the lowest priority number first, then the earliest run_at, then the lowest id');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{o,o2}', 1)), '{900001}'::bigint[],
          'job_count 1 returns one job: the lowest id among equal priority and run_at');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{o,o2}', 2)), '{900003,900007}'::bigint[],
          'job_count 2 returns the next two, in id order');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{o,o2}')), '{900020}'::bigint[],
          'the default job_count is 1; ties across tasks are also broken by id');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{o,o2}', 10)), '{900002,900009}'::bigint[],
          'job_count larger than the backlog returns the rest, later run_at and higher priority last');

-- Equal priority and run_at added in one add_jobs call (same now()): id order.
INSERT INTO j
SELECT 'eq' || r.ordinality, r.id
FROM errands.add_jobs(ARRAY(SELECT ROW('eq', json_build_object('n', g), NULL, NULL, NULL, NULL, NULL, NULL)::errands.job_spec
                            FROM generate_series(1, 20) g)) WITH ORDINALITY r;
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{eq}', 20)),
          ARRAY(SELECT id FROM j WHERE name LIKE 'eq%' ORDER BY id),
          'twenty jobs added together come out in id order');

------------------------------------------------------------------------------
-- Forbidden flags.
------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.add_flag_jobs(task text) RETURNS void LANGUAGE sql AS $f$
    INSERT INTO j
    SELECT task || ':' || v.n, (errands.add_job(task, flags := v.f)).id
    FROM (VALUES ('x', '{x}'::text[]), ('y', '{y}'), ('xz', '{x,z}'), ('null', NULL), ('empty', '{}')) v(n, f)
$f$;
SELECT pg_temp.add_flag_jobs(t) FROM unnest('{fl1,fl2,fl3,fl4,fl5}'::text[]) t \g /dev/null

SELECT is((SELECT flags FROM errands._jobs WHERE id = pg_temp.id('fl1:xz')), '{"x": true, "z": true}'::jsonb,
          'flags are stored as an object of trues');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{fl1}', 10, '{x}'))),
          pg_temp.sorted(pg_temp.ids('fl1:y', 'fl1:null', 'fl1:empty')),
          'forbidden {x}: jobs having flag x are skipped, others (and NULL/empty flags) run');
SELECT is((SELECT array_agg((attempts, locked_by)::text) FROM errands._jobs
           WHERE id = ANY(pg_temp.ids('fl1:x', 'fl1:xz'))), '{"(0,)","(0,)"}',
          'skipped jobs keep attempts 0 and stay unlocked');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{fl2}', 10, '{y,x}'))),
          pg_temp.sorted(pg_temp.ids('fl2:null', 'fl2:empty')),
          'forbidden {y,x}: a job having any forbidden flag is skipped');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{fl3}', 10, NULL))),
          pg_temp.sorted(pg_temp.ids('fl3:x', 'fl3:y', 'fl3:xz', 'fl3:null', 'fl3:empty')),
          'forbidden NULL: every job runs');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{fl4}', 10, '{}'))),
          pg_temp.sorted(pg_temp.ids('fl4:x', 'fl4:y', 'fl4:xz', 'fl4:null', 'fl4:empty')),
          'forbidden {} (empty): every job runs');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{fl5}', 10, '{unknown_flag}'))),
          pg_temp.sorted(pg_temp.ids('fl5:x', 'fl5:y', 'fl5:xz', 'fl5:null', 'fl5:empty')),
          'forbidden {unknown_flag}: every job runs');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{fl1,fl2}', 10, NULL)),
          pg_temp.ids('fl1:x', 'fl1:xz', 'fl2:x', 'fl2:y', 'fl2:xz'),
          'the skipped jobs run for a worker without forbidden flags');

-- A queued job with a forbidden flag is skipped too, and its queue is not locked.
INSERT INTO j VALUES ('fq', (errands.add_job('flq', queue_name := 'flagged_queue', flags := '{x}')).id);
SELECT is_empty($$SELECT * FROM errands.get_jobs('w1', '{flq}', 10, '{x}')$$,
                'a queued job with a forbidden flag is skipped');
SELECT is((SELECT (locked_at, locked_by)::text FROM errands._queues WHERE queue_name = 'flagged_queue'), '(,)',
          'its queue stays unlocked');
SELECT is((SELECT attempts::int FROM errands._jobs WHERE id = pg_temp.id('fq')), 0, 'and its attempts stay 0');

------------------------------------------------------------------------------
-- Unknown tasks: a backlog for a task nobody asks for is never touched.
------------------------------------------------------------------------------
INSERT INTO j
SELECT 'u' || g, (errands.add_job('unasked', run_at := now() - g * interval '1 minute')).id
FROM generate_series(1, 5) g;
INSERT INTO j VALUES ('k1', (errands.add_job('known', run_at := now() - interval '1 day', priority := 5)).id);
CREATE TEMP TABLE unasked_before AS SELECT * FROM errands._jobs x WHERE x.id IN (SELECT id FROM j WHERE name LIKE 'u_');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{known}', 10)), pg_temp.ids('k1'),
          'with a backlog of older, higher-priority jobs of an unasked task, the known task''s job is fetched');
SELECT is((SELECT count(*)::int FROM errands._jobs x JOIN unasked_before b USING (id)
           WHERE (x.*)::text = (b.*)::text), 5, 'the unasked task''s jobs are untouched');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w1', '{known}', 10)$$, 'and never fetched');

------------------------------------------------------------------------------
-- A fetch touches neither updated_at nor last_error, nor run_at or payload.
------------------------------------------------------------------------------
UPDATE errands._jobs SET updated_at = now() - interval '1 hour' WHERE id = pg_temp.id('a_due');
INSERT INTO j VALUES ('r1', (errands.add_job('r', '{"p": [1, 2]}', run_at := now() - interval '3 minutes')).id);
UPDATE errands._jobs SET updated_at = now() - interval '2 hours', last_error = 'earlier failure'
WHERE id = pg_temp.id('r1');
CREATE TEMP TABLE r_before AS SELECT * FROM errands._jobs WHERE id = pg_temp.id('r1');
CREATE TEMP TABLE fr AS SELECT * FROM errands.get_jobs('w9', '{r}', 1);
SELECT is((SELECT (x.updated_at, x.last_error, x.run_at, x.payload::text, x.created_at, x.priority)::text
           FROM errands._jobs x WHERE x.id = pg_temp.id('r1')),
          (SELECT (b.updated_at, b.last_error, b.run_at, b.payload::text, b.created_at, b.priority)::text
           FROM r_before b),
          'fetch leaves updated_at, last_error, run_at, payload, created_at and priority alone');
SELECT is((SELECT (payload::text, last_error, queue_name)::text FROM fr), '("{""p"": [1, 2]}","earlier failure",)',
          'the returned row carries the payload verbatim and the previous last_error');

------------------------------------------------------------------------------
-- async_commit (the worker's fetch): a fetch of jobs without a queue and of
-- unlimited tasks commits without waiting for its WAL flush; one that took a
-- named queue's job or a limited task's waits (a lost slot count after a crash
-- would let a second job of a serial queue run); without it, every fetch waits.
------------------------------------------------------------------------------
SET LOCAL synchronous_commit = on;  -- the test cluster runs with it off
SELECT errands.add_job('async_plain');
SELECT errands.add_job('async_queued', queue_name := 'async_q');
SELECT errands.add_job('async_limited');
SELECT errands.set_task_limits('async_limited', 2);
SELECT ok((SELECT count(*) FROM errands.get_jobs('w_async', '{async_plain}', 1, NULL, false)) = 1
          AND current_setting('synchronous_commit') = 'on',
          'async_commit false: a fetch leaves synchronous_commit on');
SELECT errands.add_job('async_plain');
SELECT ok((SELECT count(*) FROM errands.get_jobs('w_async', '{async_queued}', 1, NULL, true)) = 1
          AND current_setting('synchronous_commit') = 'on',
          'async_commit true, a named queue''s job taken: synchronous_commit stays on');
SELECT ok((SELECT count(*) FROM errands.get_jobs('w_async', '{async_limited}', 1, NULL, true)) = 1
          AND current_setting('synchronous_commit') = 'on',
          'async_commit true, a limited task''s job taken: synchronous_commit stays on');
SELECT ok((SELECT count(*) FROM errands.get_jobs('w_async', '{async_plain}', 1, NULL, true)) = 1
          AND current_setting('synchronous_commit') = 'off',
          'async_commit true, plain jobs only: synchronous_commit off for the rest of the transaction');

SELECT * FROM finish();
ROLLBACK;
