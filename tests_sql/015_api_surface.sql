-- The public SQL API: exact function signatures, comments on every public
-- function, the job_spec type and the read-only jobs view.
BEGIN;
SELECT plan(42);

-- Every public function with its exact argument types --------------------------------

SELECT has_function('errands', 'add_job',
    ARRAY['text', 'json', 'text', 'timestamptz', 'integer', 'text', 'integer', 'text[]', 'text', 'interval', 'bigint[]'],
    'errands.add_job(identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags, job_key_mode, timeout, depends_on) exists');
SELECT has_function('errands', 'add_jobs', ARRAY['errands.job_spec[]', 'boolean'],
    'errands.add_jobs(job_spec[], boolean) exists');
SELECT has_function('errands', 'remove_job', ARRAY['text'],
    'errands.remove_job(text) exists');
SELECT has_function('errands', 'complete_jobs', ARRAY['bigint[]'],
    'errands.complete_jobs(bigint[]) exists');
SELECT has_function('errands', 'permanently_fail_jobs', ARRAY['bigint[]', 'text'],
    'errands.permanently_fail_jobs(bigint[], text) exists');
SELECT has_function('errands', 'reschedule_jobs',
    ARRAY['bigint[]', 'timestamptz', 'integer', 'integer', 'integer'],
    'errands.reschedule_jobs(bigint[], timestamptz, integer, integer, integer) exists');
SELECT has_function('errands', 'force_unlock_workers', ARRAY['text[]'],
    'errands.force_unlock_workers(text[]) exists');
SELECT has_function('errands', 'get_jobs', ARRAY['text', 'text[]', 'integer', 'text[]'],
    'errands.get_jobs(text, text[], integer, text[]) exists');
SELECT has_function('errands', 'worker_complete_jobs', ARRAY['text', 'bigint[]', 'json[]'],
    'errands.worker_complete_jobs(text, bigint[], json[]) exists');
SELECT has_function('errands', 'worker_fail_jobs', ARRAY['text', 'bigint[]', 'text[]', 'json[]'],
    'errands.worker_fail_jobs(text, bigint[], text[], json[]) exists');
SELECT has_function('errands', 'worker_return_jobs', ARRAY['text', 'bigint[]'],
    'errands.worker_return_jobs(text, bigint[]) exists');
SELECT has_function('errands', 'worker_snooze_jobs', ARRAY['text', 'bigint[]', 'interval[]'],
    'errands.worker_snooze_jobs(text, bigint[], interval[]) exists');
SELECT has_function('errands', 'worker_fail_jobs_now', ARRAY['text', 'bigint[]', 'text[]'],
    'errands.worker_fail_jobs_now(text, bigint[], text[]) exists');
SELECT has_function('errands', 'worker_cancel_jobs', ARRAY['text', 'bigint[]', 'text[]'],
    'errands.worker_cancel_jobs(text, bigint[], text[]) exists');
SELECT has_function('errands', 'worker_cancel_requests', ARRAY['text'],
    'errands.worker_cancel_requests(text) exists');
SELECT has_function('errands', 'next_start_at', ARRAY['text[]'],
    'errands.next_start_at(text[]) exists');
SELECT has_function('errands', 'cancel_jobs', ARRAY['bigint[]'],
    'errands.cancel_jobs(bigint[]) exists');
SELECT has_function('errands', 'reset_locked', ARRAY['interval'],
    'errands.reset_locked(interval) exists');
SELECT has_function('errands', 'cleanup', ARRAY['text[]', 'text[]'],
    'errands.cleanup(text[], text[]) exists');
SELECT has_function('errands', 'try_lock_worker', ARRAY['text'],
    'errands.try_lock_worker(text) exists');
SELECT has_function('errands', 'set_max_payload_bytes', ARRAY['bigint'],
    'errands.set_max_payload_bytes(bigint) exists');
SELECT has_function('errands', 'grant_read', ARRAY['regrole'],
    'errands.grant_read(regrole) exists');
SELECT has_function('errands', 'import_graphile', ARRAY['text', 'boolean'],
    'errands.import_graphile(text, boolean) exists');
SELECT has_function('errands', 'set_retention', ARRAY['interval'],
    'errands.set_retention(interval) exists');
SELECT has_function('errands', 'set_task_retention', ARRAY['text', 'interval'],
    'errands.set_task_retention(text, interval) exists');
SELECT has_function('errands', 'prune_finished_jobs', ARRAY['integer'],
    'errands.prune_finished_jobs(integer) exists');
SELECT has_function('errands', 'watch_jobs', ARRAY['bigint[]', 'interval'],
    'errands.watch_jobs(bigint[], interval) exists');

-- Return types and strictness a caller relies on.
SELECT ok((SELECT prorettype = 'errands.jobs'::regtype AND NOT proretset FROM pg_proc
           WHERE oid = 'errands.add_job(text, json, text, timestamptz, integer, text, integer, text[], text, interval, bigint[])'::regprocedure),
          'add_job returns one errands.jobs row');
SELECT ok((SELECT prorettype = 'errands.jobs'::regtype AND proretset FROM pg_proc
           WHERE oid = 'errands.add_jobs(errands.job_spec[], boolean)'::regprocedure),
          'add_jobs returns a set of errands.jobs rows');
SELECT ok((SELECT prorettype = 'errands.jobs'::regtype AND NOT proretset FROM pg_proc
           WHERE oid = 'errands.remove_job(text)'::regprocedure),
          'remove_job returns one errands.jobs row');
SELECT isnt_strict('errands', 'add_job',
    ARRAY['text', 'json', 'text', 'timestamp with time zone', 'integer', 'text', 'integer', 'text[]', 'text', 'interval', 'bigint[]'],
    'add_job is not strict (NULL arguments take defaults; a NULL identifier is an error, not a silent NULL)');
SELECT is_strict('errands', 'remove_job', ARRAY['text'], 'remove_job is strict (remove_job(NULL) is NULL)');
SELECT ok((SELECT prorettype = 'boolean'::regtype AND proisstrict AND provolatile = 'v' FROM pg_proc
           WHERE oid = 'errands.try_lock_worker(text)'::regprocedure),
          'try_lock_worker returns boolean, is strict and volatile');

-- Every public function (name not starting with _) has a comment ----------------------

SELECT is(
    ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.pronamespace = 'errands'::regnamespace
            AND left(p.proname, 1) <> '_'
            AND coalesce(obj_description(p.oid, 'pg_proc'), '') = ''
          ORDER BY 1),
    '{}'::text[],
    'every public function in schema errands has a non-empty COMMENT (lists those without one)'
);
SELECT cmp_ok(
    (SELECT count(*)::int FROM pg_proc p
     WHERE p.pronamespace = 'errands'::regnamespace AND left(p.proname, 1) <> '_'),
    '>=', 13,
    'the comment check above saw at least the 13 public functions'
);

-- The job_spec type ------------------------------------------------------------------

SELECT has_composite('errands', 'job_spec', 'errands.job_spec is a composite type');
SELECT is(
    ARRAY(SELECT a.attname::text FROM pg_attribute a
          WHERE a.attrelid = (SELECT typrelid FROM pg_type WHERE oid = 'errands.job_spec'::regtype)
            AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum),
    ARRAY['identifier', 'payload', 'queue_name', 'run_at', 'max_attempts', 'job_key', 'priority', 'flags'],
    'errands.job_spec has the 8 attributes in order (identifier, payload, queue_name, run_at, max_attempts, job_key, priority, flags)'
);
SELECT is(
    ARRAY(SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
          WHERE a.attrelid = (SELECT typrelid FROM pg_type WHERE oid = 'errands.job_spec'::regtype)
            AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum),
    ARRAY['text', 'json', 'text', 'timestamp with time zone', 'integer', 'text', 'integer', 'text[]'],
    'errands.job_spec attribute types: text, json, text, timestamptz, integer, text, integer, text[]'
);

-- The jobs view is read-only -----------------------------------------------------------

SELECT has_view('errands', 'jobs', 'errands.jobs is a view');
SELECT throws_ok(
    $$INSERT INTO errands.jobs (id, task_identifier, payload) VALUES (1, 'x', '{}')$$,
    '55000', NULL,
    'INSERT into errands.jobs is refused'
);
CREATE TEMP TABLE one AS SELECT * FROM errands.add_job('api_task');
SELECT throws_ok(
    $$UPDATE errands.jobs SET priority = 1$$,
    '55000', NULL,
    'UPDATE of errands.jobs is refused'
);
SELECT throws_ok(
    $$DELETE FROM errands.jobs$$,
    '55000', NULL,
    'DELETE from errands.jobs is refused'
);

SELECT * FROM finish();
ROLLBACK;
