-- Outcomes a task chooses (errands.Snooze, errands.Fail(retry=False)) through their
-- SQL counterparts worker_snooze_jobs and worker_fail_jobs_now. Like the other
-- worker functions, each touches only jobs the calling worker has locked.
BEGIN;
SELECT plan(28);
\ir include/jobs_by_name.sql

-- A job's (attempts, locked_by) as text, e.g. '(1,w1)' or '(0,)'.
CREATE FUNCTION pg_temp.state(n text) RETURNS text LANGUAGE sql STABLE AS
    $f$ SELECT (attempts, locked_by)::text FROM errands._jobs WHERE id = pg_temp.id(n) $f$;
CREATE FUNCTION pg_temp.view_state(n text) RETURNS text LANGUAGE sql STABLE AS
    $f$ SELECT state FROM errands.jobs WHERE id = pg_temp.id(n) $f$;
CREATE FUNCTION pg_temp.delay(n text) RETURNS interval LANGUAGE sql STABLE AS
    $f$ SELECT run_at - now() FROM errands._jobs WHERE id = pg_temp.id(n) $f$;

------------------------------------------------------------------------------
-- worker_snooze_jobs
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('s_keyed', (errands.add_job('s', '{"k": 1}', job_key := 'snooze-key')).id),
    ('s_queued', (errands.add_job('s', queue_name := 'sq')).id),
    ('s_queued_next', (errands.add_job('s', queue_name := 'sq')).id),
    ('s_zero', (errands.add_job('s')).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{s}', 10))),
          pg_temp.sorted(pg_temp.ids('s_keyed', 's_queued', 's_zero')),
          'setup: w1 fetches the keyed job, the head of queue sq and s_zero');
SELECT is(pg_temp.queue_lock('sq'), 'w1', 'setup: queue sq is locked by w1');

SELECT is_empty(format('SELECT * FROM errands.worker_snooze_jobs(%L, %L, %L)', 'w2',
                       pg_temp.ids('s_keyed', 's_queued'), ARRAY[interval '1 min', interval '1 min']),
                'snooze by another worker returns no id');
SELECT is(ARRAY[pg_temp.state('s_keyed'), pg_temp.state('s_queued')], '{"(1,w1)","(1,w1)"}',
          'and changes nothing: the jobs stay locked by w1 with their attempt');
SELECT is(pg_temp.queue_lock('sq'), 'w1', 'and the queue stays locked');

SELECT is(ARRAY(SELECT errands.worker_snooze_jobs('w1', pg_temp.ids('s_keyed', 's_queued') || 987654321::bigint,
                                                  ARRAY[interval '30 s', interval '1 hour', interval '1 s'])),
          pg_temp.ids('s_keyed', 's_queued'),
          'snooze returns the ids of the jobs the worker had locked (not an unknown id)');
SELECT is(ARRAY[pg_temp.state('s_keyed'), pg_temp.state('s_queued')], '{"(0,)","(0,)"}',
          'snoozed jobs are unlocked and the attempt is given back');
SELECT is(ARRAY[pg_temp.view_state('s_keyed'), pg_temp.view_state('s_queued')], '{scheduled,scheduled}',
          'snoozed jobs are scheduled');
SELECT is(ARRAY[pg_temp.delay('s_keyed'), pg_temp.delay('s_queued')], ARRAY[interval '30 s', interval '1 hour'],
          'run_at = now() + each job''s own delay');
SELECT is((SELECT (key, payload::text, last_error)::text FROM errands.jobs WHERE id = pg_temp.id('s_keyed')),
          '(snooze-key,"{""k"": 1}",)', 'a snoozed keyed job keeps its key and payload');
SELECT is(pg_temp.queue_lock('sq'), '(unlocked)', 'snooze in a named queue unlocks the queue');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w2', '{s}', 10)), pg_temp.ids('s_queued_next'),
          'the next job of that queue can run while the head sleeps');
SELECT is((errands.add_job('s', '{"k": 2}', job_key := 'snooze-key')).id, pg_temp.id('s_keyed'),
          'the key still names the snoozed job (add_job with it updates that job)');

SELECT is(ARRAY(SELECT errands.worker_snooze_jobs('w1', pg_temp.ids('s_zero'), ARRAY[interval '0'])),
          pg_temp.ids('s_zero'), 'a zero delay is accepted');
SELECT is(pg_temp.view_state('s_zero'), 'pending', 'and the job is runnable at once');

-- A job that already failed once keeps that try: only the snoozed try is given back.
INSERT INTO j VALUES ('s_retried', (errands.add_job('s2')).id);
SELECT errands.get_jobs('w1', '{s2}');
SELECT errands.worker_fail_jobs('w1', pg_temp.ids('s_retried'), ARRAY['first failure']);
UPDATE errands._jobs SET run_at = now() WHERE id = pg_temp.id('s_retried');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{s2}')), pg_temp.ids('s_retried'),
          'setup: a job that failed once runs again (attempt 2)');
SELECT errands.worker_snooze_jobs('w1', pg_temp.ids('s_retried'), ARRAY[interval '5 min']);
SELECT is((SELECT (attempts, last_error, state)::text FROM errands.jobs WHERE id = pg_temp.id('s_retried')),
          '(1,"first failure",retrying)', 'snoozing it keeps the earlier failed try and its error');

-- Bad input: 22023 naming the value, nothing changed.
INSERT INTO j VALUES ('s_bad', (errands.add_job('s3')).id);
SELECT errands.get_jobs('w1', '{s3}');
SELECT is(pg_temp.error_of(format('SELECT errands.worker_snooze_jobs(%L, %L, %L)', 'w1',
                                  pg_temp.ids('s_bad'), ARRAY[interval '-5 s'])),
          '22023: errands: a snooze delay must be finite and >= 0, got -00:00:05',
          'a negative delay is refused, naming it');
SELECT is(pg_temp.error_of(format('SELECT errands.worker_snooze_jobs(%L, %L, %L)', 'w1',
                                  pg_temp.ids('s_bad'), ARRAY[NULL::interval])),
          '22023: errands: a snooze delay must not be NULL', 'a NULL delay is refused');
SELECT is(pg_temp.error_of(format('SELECT errands.worker_snooze_jobs(%L, %L, %L)', 'w1',
                                  pg_temp.ids('s_bad'), ARRAY[interval '1 s', interval '2 s'])),
          '22023: errands: worker_snooze_jobs needs one delay per job: 1 ids, 2 delays',
          'one delay per job');
SELECT is(pg_temp.state('s_bad'), '(1,w1)', 'a refused snooze changed nothing');

------------------------------------------------------------------------------
-- worker_fail_jobs_now
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('f_queued', (errands.add_job('f', queue_name := 'fq', max_attempts := 5)).id),
    ('f_plain', (errands.add_job('f', max_attempts := 5)).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{f}', 10))),
          pg_temp.sorted(pg_temp.ids('f_queued', 'f_plain')), 'setup: w1 fetches both');
SELECT is_empty(format('SELECT * FROM errands.worker_fail_jobs_now(%L, %L, %L)', 'w2',
                       pg_temp.ids('f_queued'), ARRAY['nope']),
                'fail-now by another worker returns nothing');
SELECT is(pg_temp.state('f_queued'), '(1,w1)', 'and changes nothing');
SELECT is(ARRAY(SELECT (id, attempts, max_attempts, last_error)::text
                FROM errands.worker_fail_jobs_now('w1', pg_temp.ids('f_queued'), ARRAY['bad input'])),
          ARRAY[format('(%s,5,5,"bad input")', pg_temp.id('f_queued'))],
          'fail-now returns the job with attempts = max_attempts and the error');
SELECT is((SELECT (state, locked_by)::text FROM errands.jobs WHERE id = pg_temp.id('f_queued')),
          '(failed,)', 'the job is failed and unlocked after one try');
SELECT is(pg_temp.queue_lock('fq'), '(unlocked)', 'and its queue is unlocked');
SELECT is(pg_temp.error_of(format('SELECT errands.worker_fail_jobs_now(%L, %L, %L)', 'w1',
                                  pg_temp.ids('f_plain'), ARRAY['a', 'b'])),
          '22023: errands: worker_fail_jobs_now needs one error message per job: 1 ids, 2 messages',
          'one message per job');

SELECT * FROM finish();
ROLLBACK;
