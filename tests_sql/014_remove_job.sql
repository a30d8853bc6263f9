-- errands.remove_job: pending jobs are deleted, running jobs lose their key and
-- will not retry, unknown or NULL keys give NULL, stale locks do not protect.
BEGIN;
SELECT plan(27);

CREATE FUNCTION pg_temp.start(p_task text) RETURNS bigint
LANGUAGE sql AS $$ SELECT id FROM errands.get_jobs('worker-a', ARRAY[p_task], 1) $$;

-- Pending job: deleted and returned ---------------------------------------------------

CREATE TEMP TABLE pending AS
SELECT * FROM errands.add_job('rm_pending', '{"v": 1}', job_key := 'rm:pending',
                              run_at := now() + interval '1 hour');
CREATE TEMP TABLE pending_removed AS SELECT * FROM errands.remove_job('rm:pending');
SELECT is((SELECT id FROM pending_removed), (SELECT id FROM pending), 'remove_job returns the pending job');
SELECT ok((SELECT key = 'rm:pending' AND payload::text = '{"v": 1}' AND task_identifier = 'rm_pending'
           FROM pending_removed),
          'the returned row is the job as it was (key, payload, task)');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE id = (SELECT id FROM pending)), 0,
          'the pending job is deleted');
SELECT ok(errands.remove_job('rm:pending') IS NULL, 'removing the same key again returns NULL');

-- A due job and a job waiting to retry are deleted too.
CREATE TEMP TABLE due AS SELECT * FROM errands.add_job('rm_due', job_key := 'rm:due');
SELECT is((errands.remove_job('rm:due')).id, (SELECT id FROM due), 'remove_job deletes a due job');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'rm_due'), 0, 'the due job is gone');

CREATE TEMP TABLE retrying AS SELECT * FROM errands.add_job('rm_retry', job_key := 'rm:retry');
SELECT ok((SELECT attempts = 1 AND last_error = 'boom'
           FROM errands.worker_fail_jobs('worker-a', ARRAY[pg_temp.start('rm_retry')], ARRAY['boom'])),
          'setup: the keyed job failed once and waits to retry');
SELECT is((errands.remove_job('rm:retry')).id, (SELECT id FROM retrying),
          'remove_job deletes a job waiting to retry');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'rm_retry'), 0,
          'the retrying job is gone and will not run');

-- A failed job is deleted.
CREATE TEMP TABLE failed AS SELECT * FROM errands.add_job('rm_failed', job_key := 'rm:failed', max_attempts := 1);
SELECT ok((SELECT attempts = max_attempts
           FROM errands.worker_fail_jobs('worker-a', ARRAY[pg_temp.start('rm_failed')], ARRAY['boom'])),
          'setup: the keyed job failed for good');
SELECT is((errands.remove_job('rm:failed')).id, (SELECT id FROM failed),
          'remove_job deletes a failed job');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'rm_failed'), 0,
          'the failed job is gone');

-- Running job: kept, loses its key, will not retry -------------------------------------

CREATE TEMP TABLE running AS
SELECT * FROM errands.add_job('rm_running', '{"v": 1}', job_key := 'rm:running', max_attempts := 5);
SELECT is(pg_temp.start('rm_running'), (SELECT id FROM running), 'setup: the keyed job is running');
CREATE TEMP TABLE running_removed AS SELECT * FROM errands.remove_job('rm:running');
SELECT is((SELECT id FROM running_removed), (SELECT id FROM running), 'remove_job returns the running job');
SELECT ok((SELECT key IS NULL AND attempts = 5 AND max_attempts = 5 AND locked_by = 'worker-a'
           FROM running_removed),
          'the returned running job has no key and attempts = max_attempts, and is still locked');
SELECT ok((SELECT key IS NULL AND attempts = max_attempts AND locked_by = 'worker-a'
                  AND payload::text = '{"v": 1}'
           FROM errands.jobs WHERE id = (SELECT id FROM running)),
          'the running job is not deleted: it stays locked without key, attempts = max_attempts');
CREATE TEMP TABLE reused AS SELECT * FROM errands.add_job('rm_running', '{"v": 2}', job_key := 'rm:running');
SELECT ok((SELECT r.id <> o.id AND r.revision = 0 AND r.key = 'rm:running' FROM reused r, running o),
          'the key is free again: add_job inserts a new job with it');
SELECT ok((SELECT attempts >= max_attempts AND last_error = 'boom'
           FROM errands.worker_fail_jobs('worker-a', ARRAY[(SELECT id FROM running)], ARRAY['boom'])),
          'when the removed running job fails it is failed');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('worker-a', ARRAY['rm_running'], 10)),
          ARRAY[(SELECT id FROM reused)],
          'only the new job runs; the removed one is never retried');

-- Unknown and NULL keys ---------------------------------------------------------------

SELECT ok(errands.remove_job('rm:unknown') IS NULL, 'an unknown key returns NULL (an all-NULL row)');
SELECT is((SELECT id FROM errands.remove_job('rm:unknown')), NULL, 'an unknown key returns no job id');
SELECT ok(errands.remove_job(NULL) IS NULL, 'remove_job(NULL) returns NULL');

-- Locks: older than 4 hours do not protect; younger do ---------------------------------

CREATE TEMP TABLE stale AS SELECT * FROM errands.add_job('rm_stale', job_key := 'rm:stale');
SELECT is(pg_temp.start('rm_stale'), (SELECT id FROM stale), 'setup: the keyed job is running');
UPDATE errands._jobs SET locked_at = now() - interval '5 hours' WHERE id = (SELECT id FROM stale);
SELECT is((errands.remove_job('rm:stale')).id, (SELECT id FROM stale),
          'remove_job returns a job whose lock is 5 hours old');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'rm_stale'), 0,
          'a job whose lock is older than 4 hours is deleted');

CREATE TEMP TABLE recent AS SELECT * FROM errands.add_job('rm_recent', job_key := 'rm:recent');
SELECT is(pg_temp.start('rm_recent'), (SELECT id FROM recent), 'setup: the keyed job is running');
UPDATE errands._jobs SET locked_at = now() - interval '3 hours' WHERE id = (SELECT id FROM recent);
CREATE TEMP TABLE recent_removed AS SELECT * FROM errands.remove_job('rm:recent');
SELECT ok((SELECT key IS NULL AND attempts = max_attempts AND locked_by = 'worker-a'
           FROM errands.jobs WHERE id = (SELECT id FROM recent)),
          'a job whose lock is 3 hours old is treated as running: kept, without key, no retry');

SELECT * FROM finish();
ROLLBACK;
