-- Waiting for jobs: errands.watch_jobs (registration, lease, states, bad input),
-- watched jobs kept in errands.finished_jobs whatever their retention (worker
-- and admin completion, the history and no-history paths), pruning that respects
-- live leases, failure for good. The NOTIFY itself is only delivered at commit:
-- tests_py/test_wait.py checks it from a second session.
BEGIN;
SELECT plan(32);
\ir include/jobs_by_name.sql

------------------------------------------------------------------------------
-- Registration and states
------------------------------------------------------------------------------
INSERT INTO j VALUES ('a', (errands.add_job('w_task', '{"n": 1}')).id),
                     ('b', (errands.add_job('w_task', run_at := now() + interval '1 hour')).id),
                     ('c', (errands.add_job('w_task')).id);
SELECT is(ARRAY(SELECT (id, state)::text FROM errands.watch_jobs(pg_temp.ids('b', 'a'))),
          ARRAY[(pg_temp.id('b'), 'scheduled')::text, (pg_temp.id('a'), 'pending')::text],
          'watch_jobs returns each job''s state, in the order asked');
SELECT is((SELECT array_agg(watched ORDER BY id) FROM errands._jobs WHERE id = ANY(pg_temp.ids('a', 'b', 'c'))),
          ARRAY[true, true, false], 'the watched jobs are marked, the others not');
SELECT ok((SELECT expires_at BETWEEN now() + interval '4 minutes 59 seconds' AND now() + interval '5 minutes'
           FROM errands._job_waiters WHERE job_id = pg_temp.id('a')),
          'the default lease is 5 minutes');
SELECT is((SELECT state FROM errands.watch_jobs(pg_temp.ids('a'), interval '1 second')), 'pending',
          'watching again works');
SELECT ok((SELECT expires_at > now() + interval '4 minutes' FROM errands._job_waiters WHERE job_id = pg_temp.id('a')),
          'a shorter lease never shortens a live one (another waiter may hold it)');
SELECT is(pg_temp.error_of($$SELECT * FROM errands.watch_jobs(ARRAY[-5::bigint])$$),
          'P0002: errands: no job -5 in errands.jobs or errands.finished_jobs (unknown, removed, or finished with retention 0 before it was watched)',
          'an unknown id: P0002 naming it');
SELECT is(pg_temp.error_of(format('SELECT * FROM errands.watch_jobs(ARRAY[%s, -6])', pg_temp.id('c'))),
          'P0002: errands: no job -6 in errands.jobs or errands.finished_jobs (unknown, removed, or finished with retention 0 before it was watched)',
          'one unknown id among known ones fails the call');
SELECT ok(NOT (SELECT watched FROM errands._jobs WHERE id = pg_temp.id('c'))
          AND NOT EXISTS (SELECT FROM errands._job_waiters WHERE job_id IN (pg_temp.id('c'), -6)),
          'the failed call watched nothing');
SELECT is(pg_temp.error_of($$SELECT * FROM errands.watch_jobs(NULL)$$),
          '22023: errands: watch_jobs needs an array of job ids without NULL, got NULL', 'NULL ids: 22023');
SELECT is(pg_temp.error_of($$SELECT * FROM errands.watch_jobs(ARRAY[1, NULL]::bigint[])$$),
          '22023: errands: watch_jobs needs an array of job ids without NULL, got {1,NULL}', 'a NULL id: 22023');
SELECT is(pg_temp.error_of(format('SELECT * FROM errands.watch_jobs(ARRAY[%s], interval ''2 days'')', pg_temp.id('c'))),
          '22023: errands: watch_jobs needs a lease between 1 second and 1 day, got 2 days', 'a lease over 1 day: 22023');
SELECT is(pg_temp.error_of(format('SELECT * FROM errands.watch_jobs(ARRAY[%s], interval ''0'')', pg_temp.id('c'))),
          '22023: errands: watch_jobs needs a lease between 1 second and 1 day, got 00:00:00', 'a lease of 0: 22023');

------------------------------------------------------------------------------
-- Retention 0 (the no-history path): a watched job is kept, the others not
------------------------------------------------------------------------------
SELECT is(errands._history_on(), false, 'setup: history is off');
UPDATE errands._jobs SET run_at = now() WHERE id = pg_temp.id('b');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{w_task}', 10))),
          pg_temp.sorted(pg_temp.ids('a', 'b', 'c')), 'setup: w1 fetches a, b, c');
SELECT is((SELECT state FROM errands.watch_jobs(pg_temp.ids('a'))), 'running', 'a fetched job is running');
SELECT is(pg_temp.sorted(ARRAY(SELECT errands.worker_complete_jobs('w1', pg_temp.ids('a', 'b', 'c'),
                                   ARRAY['{"r": "a"}'::json, NULL, '{"r": "c"}'::json]))),
          pg_temp.sorted(pg_temp.ids('a', 'b', 'c')), 'all three complete');
SELECT is(ARRAY(SELECT (id, state, result::text, payload::text, attempts)::text FROM errands.finished_jobs
                WHERE id = ANY(pg_temp.ids('a', 'b', 'c')) ORDER BY id),
          ARRAY[(pg_temp.id('a'), 'completed', '{"r": "a"}', '{"n": 1}', 1)::text,
                (pg_temp.id('b'), 'completed', NULL, '{}', 1)::text],
          'retention 0: the watched a and b are kept with their results, the unwatched c is not');
SELECT is(ARRAY(SELECT (id, state)::text FROM errands.watch_jobs(pg_temp.ids('a'))),
          ARRAY[(pg_temp.id('a'), 'completed')::text], 'watch_jobs of a finished job: completed');

------------------------------------------------------------------------------
-- Pruning keeps a watched finished row while its lease lasts
------------------------------------------------------------------------------
UPDATE errands._job_waiters SET expires_at = now() - interval '1 second' WHERE job_id = pg_temp.id('b');
UPDATE errands._finished_jobs SET finished_at = now() - interval '1 minute' WHERE id = ANY(pg_temp.ids('a', 'b'));
SELECT is(errands.prune_finished_jobs(), 1, 'prune deletes b (retention 0, lease over), not a (lease live)');
SELECT is(ARRAY(SELECT id FROM errands.finished_jobs WHERE id = ANY(pg_temp.ids('a', 'b'))), pg_temp.ids('a'),
          'a is still there for its waiter');
SELECT ok(NOT EXISTS (SELECT FROM errands._job_waiters WHERE job_id = pg_temp.id('b'))
          AND EXISTS (SELECT FROM errands._job_waiters WHERE job_id = pg_temp.id('a')),
          'prune removed the expired lease only');

------------------------------------------------------------------------------
-- History on (another task keeps history), admin completion, failure for good
------------------------------------------------------------------------------
SELECT is(errands.set_task_retention('w_other', interval '1 day'), interval '1 day', 'setup: history on');
INSERT INTO j VALUES ('d', (errands.add_job('w_task')).id),
                     ('e', (errands.add_job('w_task')).id),
                     ('f', (errands.add_job('w_task', max_attempts := 1)).id);
SELECT is((SELECT count(*)::int FROM errands.watch_jobs(pg_temp.ids('d', 'e', 'f'))), 3, 'setup: d, e, f watched');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{w_task}', 1))), pg_temp.ids('d'),
          'setup: w1 fetches d');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w1', pg_temp.ids('d'), ARRAY['7'::json])), pg_temp.ids('d'),
          'history path: d completes');
SELECT is((SELECT (state, result::text)::text FROM errands.finished_jobs WHERE id = pg_temp.id('d')),
          '(completed,7)', 'history path: the watched d is kept although its task''s retention is 0');
SELECT is((SELECT (id, state)::text FROM errands.complete_jobs(pg_temp.ids('e'))),
          (pg_temp.id('e'), 'pending')::text, 'complete_jobs completes e');
SELECT is((SELECT state FROM errands.finished_jobs WHERE id = pg_temp.id('e')), 'completed',
          'complete_jobs keeps the watched e');
SELECT set_eq($$SELECT id FROM errands.get_jobs('w1', '{w_task}', 1)$$, ARRAY[pg_temp.id('f')], 'setup: w1 fetches f');
SELECT is((SELECT state FROM errands.jobs WHERE id = pg_temp.id('f')), 'running', 'setup: f is running');
SELECT is((SELECT (id, state)::text FROM errands.worker_fail_jobs('w1', pg_temp.ids('f'), ARRAY['boom'])),
          (pg_temp.id('f'), 'failed')::text, 'f fails for good');
SELECT is((SELECT (id, state)::text FROM errands.watch_jobs(pg_temp.ids('f'))), (pg_temp.id('f'), 'failed')::text,
          'a job with no attempts left: watch_jobs says failed (it stays in errands.jobs)');

SELECT * FROM finish();
ROLLBACK;
