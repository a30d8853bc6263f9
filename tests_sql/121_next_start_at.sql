-- Flow control: errands.next_start_at, when an exhausted rate window reopens
-- (the moment a worker whose fetch came back short sleeps until).
BEGIN;
SELECT plan(12);

CREATE FUNCTION pg_temp.fetched(tasks text[], n integer) RETURNS integer LANGUAGE sql AS
    $f$ SELECT count(*)::integer FROM errands.get_jobs('w1', tasks, n) $f$;
-- Start times of a queue or task, relative to now (a period of an hour: the
-- seconds a test takes do not matter).
CREATE FUNCTION pg_temp.set_queue_starts(q text, ago interval[]) RETURNS void LANGUAGE sql AS $f$
    UPDATE errands._queues SET starts = ARRAY(SELECT clock_timestamp() - a FROM unnest(ago) a
                                              ORDER BY 1)
    WHERE queue_name = q
$f$;

SELECT errands.add_job('plain', '{}');
SELECT errands.set_queue_limits('serial_q', 1);
SELECT is(errands.next_start_at('{plain}'), NULL,
          'no rate limit anywhere: NULL (a worker need not ask again soon)');

-- A queue rate limit: 3 per hour.
SELECT errands.set_queue_limits('rq', 10, 3, interval '1 hour');
SELECT errands.add_job('rt', json_build_object('i', i), 'rq') FROM generate_series(1, 5) i;
SELECT ok(errands.next_start_at('{rt}') <= clock_timestamp(),
          'room left and jobs due: now (a fetch that came back short lost a race for the queue)');
SELECT is(pg_temp.fetched('{rt}', 10), 3, 'setup: 3 jobs start');
SELECT is(errands.next_start_at('{rt}'),
          (SELECT starts[1] + interval '1 hour' FROM errands._queues WHERE queue_name = 'rq'),
          'the window is full: it reopens when the oldest of the 3 starts leaves it');
SELECT pg_temp.set_queue_starts('rq', ARRAY[interval '50 minutes', '20 minutes', '10 minutes']);
SELECT ok(errands.next_start_at('{rt}') BETWEEN clock_timestamp() + interval '9 minutes 59 seconds'
                                            AND clock_timestamp() + interval '10 minutes',
          'started 50, 20 and 10 minutes ago: it reopens in 10 minutes');
-- The answer holds: just before, no job starts; just after, exactly one.
SELECT pg_temp.set_queue_starts('rq', ARRAY[interval '59 minutes 59 seconds', '20 minutes', '10 minutes']);
SELECT is(pg_temp.fetched('{rt}', 10), 0, 'before that moment nothing starts');
SELECT pg_temp.set_queue_starts('rq', ARRAY[interval '60 minutes 1 second', '20 minutes', '10 minutes']);
SELECT is(pg_temp.fetched('{rt}', 10), 1, 'once it passed, exactly one more job starts');
-- Lowered to 2 per hour: the 2nd newest start must leave the window.
SELECT errands.set_queue_limits('rq', 10, 2, interval '1 hour');
SELECT pg_temp.set_queue_starts('rq', ARRAY[interval '40 minutes', '30 minutes', '10 minutes']);
SELECT ok(errands.next_start_at('{rt}') BETWEEN clock_timestamp() + interval '29 minutes 59 seconds'
                                            AND clock_timestamp() + interval '30 minutes',
          'a lowered limit: the window reopens when the rate_limit-th newest start leaves it');
-- Paused, or nothing waiting: nothing to wake for.
SELECT errands.pause_queue('rq');
SELECT is(errands.next_start_at('{rt}'), 'infinity', 'a paused queue: not waited for');
SELECT errands.resume_queue('rq');
DELETE FROM errands._jobs WHERE locked_at IS NULL;
SELECT is(errands.next_start_at('{rt}'), 'infinity', 'a full window but no job waiting: not waited for');
UPDATE errands._queues SET starts = NULL WHERE queue_name = 'rq';
SELECT is(errands.next_start_at('{rt}'), 'infinity', 'room but no job waiting: nothing to wait for');

-- A task rate limit: only for a worker of that task.
SELECT errands.set_task_limits('mail', NULL, 1, interval '1 hour');
SELECT errands.add_job('mail', '{}') FROM generate_series(1, 2);
SELECT pg_temp.fetched('{mail}', 10);
SELECT is(ARRAY[(errands.next_start_at('{mail}') - (SELECT starts[1] FROM errands._tasks
                                                   WHERE identifier = 'mail'))::text,
                errands.next_start_at('{plain}')::text],
          ARRAY['01:00:00', 'infinity'],
          'a task''s window: for the workers of that task only');

SELECT * FROM finish();
ROLLBACK;
