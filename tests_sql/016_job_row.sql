-- The job row and its state: errands.jobs' state column takes each of its values
-- (running > failed > retrying > scheduled > pending), every function returning
-- jobs gives the same row as the view (they build it with errands._job_row), and
-- the constants defined once agree with the defaults written out in signatures.
BEGIN;
SELECT plan(24);

CREATE TEMP TABLE j (name text PRIMARY KEY, id bigint NOT NULL UNIQUE);
CREATE FUNCTION pg_temp.state(p_name text) RETURNS text LANGUAGE sql AS $$
    SELECT v.state FROM errands.jobs v JOIN j ON j.id = v.id WHERE j.name = p_name
$$;

-- Each state -------------------------------------------------------------------------

INSERT INTO j SELECT 'pending', id FROM errands.add_job('row_pending');
INSERT INTO j SELECT 'scheduled', id
FROM errands.add_job('row_scheduled', run_at := now() + interval '1 hour');
SELECT is(pg_temp.state('pending'), 'pending', 'a job ready to run is pending');
SELECT is(pg_temp.state('scheduled'), 'scheduled', 'a job whose run_at is in the future is scheduled');
SELECT is((SELECT state FROM errands.add_job('row_other', run_at := now() + interval '1 day')),
          'scheduled', 'add_job returns the state of the new job');

SELECT is((SELECT count(*)::int FROM errands.get_jobs('row_w', ARRAY['row_pending'])), 1,
          'fetch the pending job');
SELECT is(pg_temp.state('pending'), 'running', 'a job locked by a worker is running');

INSERT INTO j SELECT 'retrying', id FROM errands.add_job('row_retry', max_attempts := 3);
SELECT is((SELECT state FROM errands.get_jobs('row_w', ARRAY['row_retry'])), 'running',
          'get_jobs returns its jobs as running');
SELECT is((SELECT state FROM errands.worker_fail_jobs('row_w', ARRAY[(SELECT id FROM j WHERE name = 'retrying')], ARRAY['boom'])),
          'retrying', 'worker_fail_jobs returns a job with attempts left as retrying');
SELECT is(pg_temp.state('retrying'), 'retrying',
          'a job that failed with attempts left is retrying (its backoff run_at in the future: not scheduled)');
SELECT ok((SELECT run_at > now() FROM errands.jobs WHERE id = (SELECT id FROM j WHERE name = 'retrying')),
          '(that retrying job waits for its next try)');

INSERT INTO j SELECT 'failed', id FROM errands.add_job('row_fail', max_attempts := 1);
SELECT is((SELECT count(*)::int FROM errands.get_jobs('row_w', ARRAY['row_fail'])), 1, 'fetch the job with one attempt');
SELECT is((SELECT state FROM errands.worker_fail_jobs('row_w', ARRAY[(SELECT id FROM j WHERE name = 'failed')], ARRAY['boom'])),
          'failed', 'worker_fail_jobs returns a job without attempts left as failed');
SELECT is(pg_temp.state('failed'), 'failed', 'a job without attempts left is failed');

INSERT INTO j SELECT 'perm', id FROM errands.add_job('row_perm', run_at := now() + interval '1 hour');
SELECT is((SELECT state FROM errands.permanently_fail_jobs(ARRAY[(SELECT id FROM j WHERE name = 'perm')], 'no')),
          'failed', 'permanently_fail_jobs returns the job as failed');

INSERT INTO j SELECT 'keyed', id FROM errands.add_job('row_keyed', job_key := 'row:k');
SELECT is((SELECT state FROM errands.add_jobs(ARRAY[ROW('row_keyed', NULL, NULL, now() + interval '1 hour', NULL, 'row:k', NULL, NULL)::errands.job_spec])),
          'scheduled', 'add_jobs (keyed path) returns the state of the replaced job');
SELECT is((SELECT state FROM errands.add_jobs(ARRAY[ROW('row_bulk', NULL, 'row_q', NULL, NULL, NULL, NULL, NULL)::errands.job_spec])),
          'pending', 'add_jobs (bulk path) returns the state of the new job');

SELECT is(
    ARRAY(SELECT DISTINCT state FROM errands.jobs ORDER BY state),
    ARRAY['failed', 'pending', 'retrying', 'running', 'scheduled'],
    'the jobs above cover every state'
);

-- One row definition ---------------------------------------------------------------

SELECT is(
    ARRAY(SELECT v::text FROM errands.jobs v ORDER BY v.id),
    ARRAY(SELECT errands._job_view(x)::text FROM errands._jobs x ORDER BY x.id),
    'errands._job_view (built on _job_row) gives every job exactly the row the view shows'
);
SELECT is(
    ARRAY(SELECT v::text FROM errands.jobs v ORDER BY v.id),
    ARRAY(SELECT errands._job_row(x, q.queue_name, t.identifier)::text
          FROM errands._jobs x JOIN errands._tasks t ON t.id = x.task_id
          LEFT JOIN errands._queues q ON q.id = x.job_queue_id ORDER BY x.id),
    'errands._job_row and the view compute the same columns and state'
);
CREATE TEMP TABLE resched AS
SELECT r::text AS row FROM errands.reschedule_jobs(ARRAY[(SELECT id FROM j WHERE name = 'scheduled')], run_at := now()) r;
SELECT is(
    (SELECT row FROM resched),
    (SELECT v::text FROM errands.jobs v WHERE v.id = (SELECT id FROM j WHERE name = 'scheduled')),
    'reschedule_jobs returns the row the view shows (now pending)'
);
SELECT is(pg_temp.state('scheduled'), 'pending', 'a rescheduled job due now is pending');

-- Constants defined once -------------------------------------------------------------

SELECT is(pg_get_function_arguments('errands.reset_locked(interval)'::regprocedure),
          format('older_than interval DEFAULT %L::interval', errands._stale_lock_age()),
          'reset_locked''s default is the stale-lock age');
SELECT is(pg_get_function_arguments('errands.rescue_workers(interval)'::regprocedure),
          format('heartbeat_timeout interval DEFAULT %L::interval', errands._heartbeat_timeout()),
          'rescue_workers'' default is the heartbeat timeout');
SELECT ok(errands._rescue_grace() < errands._heartbeat_timeout(),
          'the lock-less rescue grace is shorter than the heartbeat timeout');
SELECT is(errands._worker_lock_key('w1'), hashtextextended('w1', 0),
          'a worker''s advisory-lock key is hashtextextended(worker_id, 0)');

SELECT * FROM finish();
ROLLBACK;
