-- The dashboard's SQL: grant_dashboard gives exactly what the pages (and, when not
-- read-only, the actions) need; remove_jobs, run_cron_now, dashboard_counts,
-- dashboard_chart and dashboard_cron.
BEGIN;
SELECT plan(47);

CREATE ROLE errands_t140_ro NOLOGIN;
CREATE ROLE errands_t140_rw NOLOGIN;
CREATE ROLE errands_t140_web NOLOGIN;
SELECT errands.grant_dashboard('errands_t140_ro');
SELECT errands.grant_dashboard('errands_t140_rw', read_only := false);
SELECT errands.grant_enqueue('errands_t140_web');

SELECT errands.add_job('d_task', '{"secret": "s1"}', job_key := 'd:1');
SELECT errands.add_job('d_task', '{"secret": "s2"}', queue_name := 'd_q');
SELECT errands.add_job('d_fail', '{"n": 3}', max_attempts := 1);
SELECT errands.worker_fail_jobs('w140', ARRAY(SELECT id FROM errands.get_jobs('w140', ARRAY['d_fail'])),
                                ARRAY['boom']);
SELECT errands.set_crontab('*/5 * * * * d_cron ?id=every5' || chr(10) || '0 4 * * * d_cron2', 'default');

-- What each role can do -------------------------------------------------------------

SELECT is(
    ARRAY(SELECT c.oid::regclass::text FROM pg_class c
          WHERE c.relnamespace = 'errands'::regnamespace
            AND has_table_privilege('errands_t140_ro', c.oid, 'SELECT, INSERT, UPDATE, DELETE')
          ORDER BY 1),
    ARRAY['errands.finished_jobs', 'errands.flow_steps', 'errands.jobs', 'errands.limits',
          'errands.queues', 'errands.task_limits'],
    'read-only dashboard: SELECT on the public views, never a private table');
SELECT is(
    ARRAY(SELECT c.oid::regclass::text FROM pg_class c
          WHERE c.relnamespace = 'errands'::regnamespace
            AND has_table_privilege('errands_t140_rw', c.oid, 'INSERT, UPDATE, DELETE')
          ORDER BY 1),
    '{}'::text[], 'dashboard with actions: still no write on any table or view');
SELECT is(
    ARRAY(SELECT p.proname::text FROM pg_proc p
          WHERE p.pronamespace = 'errands'::regnamespace
            AND has_function_privilege('errands_t140_ro', p.oid, 'EXECUTE')
          ORDER BY 1),
    ARRAY['dashboard_chart', 'dashboard_counts', 'dashboard_cron', 'dashboard_durations', 'dashboard_job_ids',
          'dashboard_workers', 'job_counts', 'oldest_ready_run_at', 'worker_counts'],
    'read-only dashboard: EXECUTE on the six dashboard functions and the three of /metrics only');
SELECT is(
    ARRAY(SELECT p.proname::text FROM pg_proc p
          WHERE p.pronamespace = 'errands'::regnamespace
            AND has_function_privilege('errands_t140_rw', p.oid, 'EXECUTE')
          ORDER BY 1),
    ARRAY['cancel_jobs', 'dashboard_chart', 'dashboard_counts', 'dashboard_cron', 'dashboard_durations', 'dashboard_job_ids', 'dashboard_workers',
          'job_counts', 'oldest_ready_run_at', 'pause_queue',
          'pause_task', 'remove_jobs', 'reschedule_jobs', 'resume_queue', 'resume_task',
          'run_cron_now', 'set_queue_limits', 'set_task_limits', 'worker_counts'],
    'dashboard with actions: the read functions plus exactly the action functions');
SELECT throws_ok($$SELECT errands.grant_dashboard(NULL)$$, '22023',
                 'errands: grant_dashboard needs a role, got NULL', 'grant_dashboard(NULL) raises 22023');
SELECT throws_ok($$SELECT errands.grant_dashboard('errands_t140_ro', NULL)$$, '22023',
                 'errands: grant_dashboard needs read_only true or false, got NULL',
                 'grant_dashboard(role, NULL) raises 22023');
SELECT throws_ok($$SELECT errands.grant_dashboard('errands_t140_nobody')$$, '42704', NULL,
                 'grant_dashboard of an unknown role: undefined object');

SET LOCAL ROLE errands_t140_ro;
SELECT is((SELECT count(*)::int FROM errands.jobs), 3, 'read-only role reads errands.jobs');
SELECT is((SELECT payload::text FROM errands.jobs WHERE key = 'd:1'), '{"secret": "s1"}',
          'read-only role reads payloads');
SELECT lives_ok($$SELECT * FROM errands.dashboard_workers()$$, 'read-only role: dashboard_workers');
SELECT lives_ok($$SELECT * FROM errands.dashboard_counts()$$, 'read-only role: dashboard_counts');
SELECT is((SELECT sum(jobs)::int FROM errands.job_counts()), 3,
          'read-only role: job_counts (the /metrics gauges) counts the three jobs');
SELECT lives_ok($$SELECT errands.oldest_ready_run_at(), (SELECT count(*) FROM errands.worker_counts())$$,
                'read-only role: oldest_ready_run_at and worker_counts (/metrics)');
SELECT lives_ok($$SELECT * FROM errands.dashboard_durations(now() - interval '1 hour', interval '5 minutes')$$,
                'read-only role: dashboard_durations');
SELECT lives_ok($$SELECT * FROM errands.dashboard_chart(now() - interval '1 hour', interval '5 minutes')$$,
                'read-only role: dashboard_chart');
SELECT is((SELECT count(*)::int FROM errands.dashboard_cron()), 2, 'read-only role: dashboard_cron');
SELECT throws_ok($$SELECT errands.cancel_jobs(ARRAY[1::bigint])$$, '42501', NULL,
                 'read-only role: cancel_jobs is denied');
SELECT throws_ok($$SELECT errands.reschedule_jobs(ARRAY[1::bigint], now())$$, '42501', NULL,
                 'read-only role: reschedule_jobs is denied');
SELECT throws_ok($$SELECT errands.remove_jobs(ARRAY[1::bigint])$$, '42501', NULL,
                 'read-only role: remove_jobs is denied');
SELECT throws_ok($$SELECT errands.pause_queue('d_q')$$, '42501', NULL,
                 'read-only role: pause_queue is denied');
SELECT throws_ok($$SELECT errands.run_cron_now('every5')$$, '42501', NULL,
                 'read-only role: run_cron_now is denied');
SELECT throws_ok($$SELECT * FROM errands._jobs$$, '42501', NULL,
                 'read-only role: the private table errands._jobs is denied');
SELECT throws_ok($$SELECT errands.get_jobs('w', ARRAY['d_task'])$$, '42501', NULL,
                 'read-only role: get_jobs is denied');
RESET ROLE;

SET LOCAL ROLE errands_t140_web;
SELECT throws_ok($$SELECT * FROM errands.jobs$$, '42501', NULL,
                 'an enqueue role still cannot read payloads (errands.jobs)');
SELECT throws_ok($$SELECT * FROM errands.dashboard_counts()$$, '42501', NULL,
                 'an enqueue role cannot call dashboard_counts');
RESET ROLE;

-- The actions, as the read-write role ----------------------------------------------------

SET LOCAL ROLE errands_t140_rw;
SELECT is((SELECT array_agg(x) FROM errands.remove_jobs(
              ARRAY(SELECT id FROM errands.jobs WHERE key = 'd:1')) x),
          ARRAY(SELECT id FROM errands.jobs WHERE key = 'd:1'),
          'remove_jobs returns the ids it deleted');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE key = 'd:1'), 0, 'remove_jobs deleted the job');
SELECT is((SELECT count(*)::int FROM errands.finished_jobs), 0, 'remove_jobs keeps no history');
SELECT ok(errands.run_cron_now('every5') > 0, 'run_cron_now returns the new job id');
SELECT is((SELECT (payload->'_cron'->>'manual') FROM errands.jobs WHERE task_identifier = 'd_cron'),
          'true', 'run_cron_now: the job is due now, marked manual');
SELECT lives_ok($$SELECT errands.pause_queue('d_q')$$, 'read-write role: pause_queue');
SELECT lives_ok($$SELECT errands.set_queue_limits('d_q', 2, NULL, NULL)$$, 'read-write role: set_queue_limits');
RESET ROLE;

SELECT throws_ok($$SELECT errands.run_cron_now('nope')$$, '22023', NULL,
                 'run_cron_now of an unknown item raises 22023');
SELECT throws_ok($$SELECT errands.remove_jobs(NULL)$$, '22023', NULL, 'remove_jobs(NULL) raises 22023');
SELECT is((SELECT count(*)::int FROM errands.remove_jobs(
              ARRAY(SELECT id FROM errands.get_jobs('w140', ARRAY['d_task'], 10))) x), 0,
          'remove_jobs leaves running jobs alone');

-- Counts and charts ---------------------------------------------------------------------

SELECT is((SELECT jobs::int FROM errands.dashboard_counts()
           WHERE state = 'failed' AND task_identifier = 'd_fail' AND NOT estimated),
          1, 'dashboard_counts: exact on a small table');
SELECT (errands.add_job('d_many', json_build_object('i', i))).id FROM generate_series(1, 3) i;
SELECT count(*) FROM errands.get_jobs('w140b', ARRAY['d_many'], 2);
SELECT is(ARRAY(SELECT state || '/' || task_identifier || '/' || jobs || '/' || estimated
                FROM errands.dashboard_counts(0) WHERE state IN ('running', 'failed') ORDER BY 1),
          ARRAY['failed/d_fail/1/false', 'running/d_many/2/false'],
          'dashboard_counts(0) (a big table): running and failed counted exactly');
SELECT is(ARRAY(SELECT state || '/' || task_identifier || '/' || jobs || '/' || estimated
                FROM errands.job_counts(0) WHERE state IN ('running', 'failed') ORDER BY 1),
          ARRAY['failed/d_fail/1/false', 'running/d_many/2/false'],
          'job_counts(0) (/metrics on a big table): running and failed counted exactly');
SELECT is((SELECT bool_and(estimated) FROM errands.dashboard_counts(0) WHERE state = 'pending'), true,
          'dashboard_counts(0): pending estimated from a sample');
SELECT is((SELECT sum(failed)::int FROM errands.dashboard_chart(now() - interval '1 hour', interval '5 minutes')),
          1, 'dashboard_chart counts the failure of the last hour');
SELECT throws_ok($$SELECT * FROM errands.dashboard_chart(now() - interval '1 hour', interval '0')$$,
                 '22023', NULL, 'dashboard_chart with a zero bucket raises 22023');

-- dashboard_job_ids: the same jobs as the view's filter, in order, with cursor and bound.
SELECT errands.add_job('ids', json_build_object('i', i, 'tag', i % 2), run_at := now() - i * interval '1 minute')
FROM generate_series(1, 6) i;
SELECT is(ARRAY(SELECT errands.dashboard_job_ids('{"task": "ids", "payload": {"tag": 1}}')),
          ARRAY(SELECT id FROM errands.jobs WHERE task_identifier = 'ids'
                AND payload::jsonb @> '{"tag": 1}' ORDER BY id DESC),
          'dashboard_job_ids: task and payload filter, newest first');
SELECT is(ARRAY(SELECT errands.dashboard_job_ids('{"task": "ids"}', 'run_at', false, NULL, NULL, NULL, 2)),
          ARRAY(SELECT id FROM errands.jobs WHERE task_identifier = 'ids' ORDER BY run_at, id LIMIT 2),
          'dashboard_job_ids: sorted by run_at, at most n');
SELECT is(ARRAY(SELECT errands.dashboard_job_ids('{"task": "ids", "state": "pending"}', 'run_at', false,
              (SELECT run_at::text FROM errands.jobs WHERE task_identifier = 'ids' ORDER BY run_at, id LIMIT 1),
              (SELECT id FROM errands.jobs WHERE task_identifier = 'ids' ORDER BY run_at, id LIMIT 1), NULL, 2)),
          ARRAY(SELECT id FROM errands.jobs WHERE task_identifier = 'ids' ORDER BY run_at, id OFFSET 1 LIMIT 2),
          'dashboard_job_ids: the keyset cursor goes on after the last row');
SELECT throws_ok($$SELECT errands.dashboard_job_ids('{"nope": 1}')$$, '22023', NULL,
                 'dashboard_job_ids: an unknown filter field raises 22023');
SELECT throws_ok($$SELECT errands.dashboard_job_ids('{}', 'payload')$$, '22023', NULL,
                 'dashboard_job_ids: an unknown sort raises 22023');
SELECT throws_ok($$SELECT errands.dashboard_job_ids('{"state": "completed"}')$$, '22023', NULL,
                 'dashboard_job_ids: a finished state raises 22023 (finished jobs are in errands.finished_jobs)');

SELECT * FROM finish();
ROLLBACK;
