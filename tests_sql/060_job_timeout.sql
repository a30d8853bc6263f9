-- Per-job timeout: add_job's trailing timeout parameter, stored
-- on the job, shown by errands.jobs and returned by get_jobs.
BEGIN;
SELECT plan(10);

SELECT is((errands.add_job('t60', timeout => interval '30 seconds')).timeout, interval '30 seconds',
          'add_job stores a job''s timeout');
SELECT is((SELECT timeout FROM errands.jobs WHERE task_identifier = 't60'), interval '30 seconds',
          'errands.jobs shows it');
SELECT is((SELECT timeout FROM errands.get_jobs('w60', ARRAY['t60'], 5)), interval '30 seconds',
          'get_jobs returns it');

SELECT throws_ok($$SELECT errands.add_job('t60b', timeout => interval '0 seconds')$$, '22023',
                 'errands: timeout must be positive, got 00:00:00', 'a zero timeout is refused');
SELECT throws_ok($$SELECT errands.add_job('t60b', timeout => interval '-1 second')$$, '22023', NULL,
                 'a negative timeout is refused');
SELECT is((SELECT count(*) FROM errands.jobs WHERE task_identifier = 't60b'), 0::bigint,
          'a refused add_job writes nothing');

SELECT is((errands.add_job('t60', job_key => 'k60', timeout => interval '5 seconds')).timeout,
          interval '5 seconds', 'a keyed job gets its timeout');
SELECT is((errands.add_job('t60', job_key => 'k60', timeout => interval '7 seconds')).timeout,
          interval '7 seconds', 'replacing it through add_job replaces the timeout');
SELECT is((SELECT timeout FROM errands.add_jobs(
              ARRAY[ROW('t60', NULL, NULL, NULL, NULL, 'k60', NULL, NULL)::errands.job_spec])),
          NULL::interval, 'replacing it through add_jobs (which cannot set one) clears it');
SELECT is((SELECT timeout FROM errands.add_jobs(
              ARRAY[ROW('t60', NULL, NULL, NULL, NULL, NULL, NULL, NULL)::errands.job_spec])),
          NULL::interval, 'add_jobs adds jobs without a timeout');

SELECT * FROM finish();
ROLLBACK;
