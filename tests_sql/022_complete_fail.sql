-- Worker API after a fetch: worker_complete_jobs, worker_fail_jobs (backoff,
-- replacement payloads, permanent failure) and worker_return_jobs. Each only
-- touches jobs locked by the calling worker.
BEGIN;
SELECT plan(55);
\ir include/jobs_by_name.sql

-- A job's (attempts, locked_by) as text, e.g. '(1,w1)' or '(0,)'.
CREATE FUNCTION pg_temp.state(n text) RETURNS text LANGUAGE sql STABLE AS
    $f$ SELECT (attempts, locked_by)::text FROM errands._jobs WHERE id = pg_temp.id(n) $f$;
CREATE FUNCTION pg_temp.delay(n text) RETURNS interval LANGUAGE sql STABLE AS
    $f$ SELECT run_at - now() FROM errands._jobs WHERE id = pg_temp.id(n) $f$;

------------------------------------------------------------------------------
-- worker_complete_jobs
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('c1', (errands.add_job('c', queue_name := 'cq')).id),
    ('c2', (errands.add_job('c')).id),
    ('c3', (errands.add_job('c')).id),
    ('c_pending', (errands.add_job('c', run_at := now() + interval '1 hour')).id),
    ('c_other', (errands.add_job('c_other_task')).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{c}', 10))),
          pg_temp.sorted(pg_temp.ids('c1', 'c2', 'c3')), 'setup: w1 fetches c1, c2, c3');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w2', '{c_other_task}', 10)), pg_temp.ids('c_other'),
          'setup: w2 fetches c_other');

SELECT is_empty(format('SELECT * FROM errands.worker_complete_jobs(%L, %L)', 'w2', pg_temp.ids('c1', 'c2')),
                'complete with another worker''s id returns no id');
SELECT is(ARRAY[pg_temp.state('c1'), pg_temp.state('c2')], '{"(1,w1)","(1,w1)"}',
          'and the jobs are still there, locked by w1');
SELECT is(pg_temp.queue_lock('cq'), 'w1', 'and their queue stays locked');

SELECT is(pg_temp.sorted(ARRAY(SELECT errands.worker_complete_jobs('w1',
              pg_temp.ids('c1', 'c2', 'c_pending', 'c_other') || 987654321::bigint))),
          pg_temp.sorted(pg_temp.ids('c1', 'c2')),
          'complete returns only the ids of jobs the worker had locked');
SELECT is((SELECT count(*)::int FROM errands._jobs WHERE id = ANY(pg_temp.ids('c1', 'c2'))), 0,
          'those jobs are deleted');
SELECT is(ARRAY[pg_temp.state('c_pending'), pg_temp.state('c_other'), pg_temp.state('c3')],
          '{"(0,)","(1,w2)","(1,w1)"}',
          'an unlocked job, another worker''s job and an unlisted job are left alone');
SELECT is(pg_temp.queue_lock('cq'), '(unlocked)', 'completing the queued job unlocks its queue');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w1', pg_temp.ids('c1'))), '{}'::bigint[],
          'completing an already completed job returns nothing');

------------------------------------------------------------------------------
-- worker_fail_jobs: backoff run_at = greatest(now(), run_at) + exp(least(attempts, 10)) s
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('f1',  (errands.add_job('f', '{"n":1}', 'fq', now() - interval '1 hour')).id),
    ('f2',  (errands.add_job('f', '{"n":2}', run_at := now() - interval '1 minute')).id),
    ('f10', (errands.add_job('f', '{"n":10}')).id),
    ('f12', (errands.add_job('f', '{"n":12}')).id),
    ('ffut', (errands.add_job('f', '{"n":"future"}')).id);
-- Attempts before the fetch (which adds 1): 0, 1, 9, 11, 2.
SELECT is(ARRAY(SELECT id FROM errands.reschedule_jobs(pg_temp.ids('f2'), attempts := 1))
          || ARRAY(SELECT id FROM errands.reschedule_jobs(pg_temp.ids('f10'), attempts := 9))
          || ARRAY(SELECT id FROM errands.reschedule_jobs(pg_temp.ids('f12'), attempts := 11))
          || ARRAY(SELECT id FROM errands.reschedule_jobs(pg_temp.ids('ffut'), attempts := 2)),
          pg_temp.ids('f2', 'f10', 'f12', 'ffut'), 'setup: attempts set with reschedule_jobs');
UPDATE errands._jobs SET updated_at = now() - interval '1 day' WHERE id = ANY(pg_temp.ids('f1', 'f2', 'f10', 'f12', 'ffut'));
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{f}', 10))),
          pg_temp.sorted(pg_temp.ids('f1', 'f2', 'f10', 'f12', 'ffut')), 'setup: w1 fetches them');
-- The job's run_at lies in the future (e.g. set by a clock-skewed worker): it is the base.
UPDATE errands._jobs SET run_at = now() + interval '1 hour' WHERE id = pg_temp.id('ffut');

SELECT is_empty(format('SELECT * FROM errands.worker_fail_jobs(%L, %L, %L)', 'w2', pg_temp.ids('f1'), '{nope}'),
                'fail by a worker that does not hold the lock returns nothing');
SELECT is((SELECT (attempts, locked_by, last_error, run_at = now() - interval '1 hour')::text
           FROM errands._jobs WHERE id = pg_temp.id('f1')), '(1,w1,,t)',
          'and changes nothing');
SELECT is(pg_temp.queue_lock('fq'), 'w1', 'and the queue stays locked');

CREATE TEMP TABLE failed AS
SELECT * FROM errands.worker_fail_jobs('w1', pg_temp.ids('ffut', 'f12', 'f10', 'f2', 'f1'),
                                       '{e-fut,e12,e10,e2,e1}') WITH ORDINALITY;
SELECT is(ARRAY(SELECT id FROM failed ORDER BY ordinality), pg_temp.sorted(pg_temp.ids('f1', 'f2', 'f10', 'f12', 'ffut')),
          'fail returns the failed jobs');
SELECT is(pg_temp.delay('f1'), interval '2.718282 seconds', 'attempts 1: run_at = now() + e^1 s = 2.718282 s');
SELECT is(pg_temp.delay('f2'), interval '7.389056 seconds', 'attempts 2: run_at = now() + e^2 s = 7.389056 s');
SELECT is(pg_temp.delay('f10'), interval '22026.465795 seconds', 'attempts 10: run_at = now() + e^10 s (06:07:06.465795)');
SELECT is(pg_temp.delay('f12'), interval '22026.465795 seconds', 'attempts 12: capped at e^10 s');
SELECT is(pg_temp.delay('ffut'), interval '1 hour 20.085537 seconds',
          'a run_at later than now() is the base: run_at + e^3 s');
SELECT is((SELECT array_agg(last_error ORDER BY id) FROM errands._jobs WHERE id = ANY(pg_temp.ids('f1', 'f2', 'f10', 'f12', 'ffut'))),
          (SELECT array_agg(m ORDER BY i) FROM unnest(pg_temp.ids('ffut', 'f12', 'f10', 'f2', 'f1'), '{e-fut,e12,e10,e2,e1}'::text[]) x(i, m)),
          'each job gets its own error message as last_error');
SELECT is((SELECT array_agg((attempts, locked_at, locked_by)::text ORDER BY id) FROM errands._jobs
           WHERE id = ANY(pg_temp.ids('f1', 'f2', 'f10', 'f12', 'ffut'))),
          (SELECT array_agg(x ORDER BY i) FROM unnest(pg_temp.ids('f1', 'f2', 'f10', 'f12', 'ffut'),
                                                        '{"(1,,)","(2,,)","(10,,)","(12,,)","(3,,)"}'::text[]) u(i, x)),
          'failed jobs are unlocked and keep the attempt the fetch counted');
SELECT is(pg_temp.queue_lock('fq'), '(unlocked)', 'failing the queued job unlocks its queue');
SELECT is((SELECT array_agg(payload::text ORDER BY id) FROM errands._jobs WHERE id = ANY(pg_temp.ids('f1', 'f2'))),
          '{"{\"n\":1}","{\"n\":2}"}',
          'without payloads the payloads are kept');
SELECT ok((SELECT bool_and(updated_at = now() - interval '1 day') FROM errands._jobs
           WHERE id = ANY(pg_temp.ids('f1', 'f2', 'f10', 'f12', 'ffut'))), 'fail does not touch updated_at');
SELECT is((SELECT (last_error, run_at - now(), attempts)::text FROM failed WHERE id = pg_temp.id('f1')),
          '(e1,00:00:02.718282,1)', 'the returned row shows the new last_error, run_at and attempts');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w1', '{f}', 10)$$, 'failed jobs back off: none is due now');

------------------------------------------------------------------------------
-- Replacement payloads (batch jobs that partly failed).
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('p1', (errands.add_job('p', '[1, 2, 3]')).id),
    ('p2', (errands.add_job('p', '["a", "b"]')).id),
    ('p3', (errands.add_job('p', '{"keep": true}')).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{p}', 10))),
          pg_temp.sorted(pg_temp.ids('p1', 'p2', 'p3')), 'setup: w1 fetches p1, p2, p3');
SELECT is(ARRAY(SELECT payload::text FROM errands.worker_fail_jobs('w1', pg_temp.ids('p1', 'p2'), '{partial,partial}',
                                                                    ARRAY['[1, 3]', NULL]::json[]) ORDER BY id),
          '{"[1, 3]","[\"a\", \"b\"]"}', 'fail returns the replaced payload, and the kept one for a NULL element');
SELECT is((SELECT payload::text FROM errands._jobs WHERE id = pg_temp.id('p1')), '[1, 3]',
          'a replacement payload replaces the job''s payload');
SELECT is((SELECT payload::text FROM errands._jobs WHERE id = pg_temp.id('p2')), '["a", "b"]',
          'a NULL replacement keeps the payload');
SELECT is(ARRAY(SELECT id FROM errands.worker_fail_jobs('w1', pg_temp.ids('p3'), '{whole}', NULL)), pg_temp.ids('p3'),
          'payloads NULL: fail without replacements');
SELECT is((SELECT (payload::text, last_error)::text FROM errands._jobs WHERE id = pg_temp.id('p3')),
          '("{""keep"": true}",whole)', 'the payload is kept');

------------------------------------------------------------------------------
-- The last attempt: failed, returned so the worker can tell.
------------------------------------------------------------------------------
INSERT INTO j VALUES ('last', (errands.add_job('l', '{"x":1}', max_attempts := 2)).id);
UPDATE errands._jobs SET attempts = 1, last_error = 'first try failed' WHERE id = pg_temp.id('last');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{l}')), pg_temp.ids('last'), 'setup: fetch its last try');
SELECT is((SELECT (attempts, max_attempts, last_error)::text
           FROM errands.worker_fail_jobs('w1', pg_temp.ids('last'), '{final}')),
          '(2,2,final)', 'fail of the last try returns the job with attempts = max_attempts');
SELECT ok((SELECT NOT is_available AND locked_at IS NULL FROM errands._jobs WHERE id = pg_temp.id('last')),
          'the job stays, unlocked and unavailable');
SELECT is((SELECT state FROM errands.jobs WHERE id = pg_temp.id('last')), 'failed',
          'its state is failed');
UPDATE errands._jobs SET run_at = now() - interval '1 day' WHERE id = pg_temp.id('last');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w1', '{l}', 10)$$,
                'a failed job is not fetched again, even when due');

------------------------------------------------------------------------------
-- Bad input.
------------------------------------------------------------------------------
SELECT matches(pg_temp.error_of(format('SELECT errands.worker_fail_jobs(%L, %L, %L)', 'w1', pg_temp.ids('f1', 'f2'), '{one}')),
               '^22023: ', 'fail with 2 ids and 1 message raises 22023');
SELECT matches(pg_temp.error_of(format('SELECT errands.worker_fail_jobs(%L, %L, %L)', 'w1', pg_temp.ids('f1'), '{one,two}')),
               '^22023: ', 'fail with 1 id and 2 messages raises 22023');
SELECT matches(pg_temp.error_of(format('SELECT errands.worker_fail_jobs(%L, %L, NULL)', 'w1', pg_temp.ids('f1'))),
               '^22023: ', 'fail with ids and NULL messages raises 22023');
SELECT matches(pg_temp.error_of(format('SELECT errands.worker_fail_jobs(%L, %L, %L, %L)', 'w1', pg_temp.ids('f1', 'f2'),
                                       '{one,two}', ARRAY['[]']::json[])),
               '^22023: ', 'fail with 2 ids and 1 payload raises 22023');
SELECT is(ARRAY(SELECT id FROM errands.worker_fail_jobs('w1', '{}', '{}')), '{}'::bigint[],
          'fail with no ids does nothing');

------------------------------------------------------------------------------
-- worker_return_jobs
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('r1', (errands.add_job('r', queue_name := 'rq', run_at := now() - interval '1 minute')).id),
    ('r2', (errands.add_job('r')).id),
    ('r0', (errands.add_job('r_manual')).id);
UPDATE errands._jobs SET last_error = 'earlier' WHERE id = pg_temp.id('r1');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{r}', 10))),
          pg_temp.sorted(pg_temp.ids('r1', 'r2')), 'setup: w1 fetches r1 and r2');
-- A locked job with attempts 0 (a manual lock).
UPDATE errands._jobs SET locked_by = 'w1', locked_at = now() WHERE id = pg_temp.id('r0');

SELECT is_empty(format('SELECT * FROM errands.worker_return_jobs(%L, %L)', 'w2', pg_temp.ids('r1', 'r2', 'r0')),
                'return by another worker returns nothing');
SELECT is(ARRAY[pg_temp.state('r1'), pg_temp.state('r2'), pg_temp.state('r0'), pg_temp.queue_lock('rq')],
          '{"(1,w1)","(1,w1)","(0,w1)",w1}', 'and changes nothing');
SELECT is(pg_temp.sorted(ARRAY(SELECT errands.worker_return_jobs('w1', pg_temp.ids('r1', 'r0')))),
          pg_temp.sorted(pg_temp.ids('r1', 'r0')), 'return by the owner returns the ids');
SELECT is(pg_temp.state('r1'), '(0,)', 'the job is unlocked with the attempt given back');
SELECT is(pg_temp.state('r0'), '(0,)', 'attempts never go below 0');
SELECT is(pg_temp.queue_lock('rq'), '(unlocked)', 'its queue is unlocked');
SELECT is((SELECT (run_at = now() - interval '1 minute', last_error)::text FROM errands._jobs WHERE id = pg_temp.id('r1')),
          '(t,earlier)', 'run_at and last_error are untouched');
SELECT is(pg_temp.state('r2'), '(1,w1)', 'an unlisted job stays locked');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w3', '{r}', 10)), pg_temp.ids('r1'),
          'the returned job can be fetched at once');
SELECT is(pg_temp.state('r1'), '(1,w3)', 'and it counts one attempt again');

SELECT * FROM finish();
ROLLBACK;
