-- Finished-job history: worker_complete_jobs and complete_jobs move completed
-- jobs to errands.finished_jobs per retention (global and per task), results and
-- their size limit, bounded pruning, remove_job of a finished job, role access.
BEGIN;
SELECT plan(37);
\ir include/jobs_by_name.sql

CREATE FUNCTION pg_temp.finished(n text) RETURNS text LANGUAGE sql STABLE AS
    $f$ SELECT (state, result::text, attempts, task_identifier, queue_name)::text
        FROM errands.finished_jobs WHERE id = pg_temp.id(n) $f$;

------------------------------------------------------------------------------
-- Defaults and settings
------------------------------------------------------------------------------
SELECT is((SELECT retention FROM errands._settings), interval '0', 'default global retention is 0 (history off)');
SELECT is(errands.set_retention(interval '0'), interval '0', 'set_retention(0) returns 0');
SELECT is(errands._history_on(), false, 'retention 0 everywhere: history off (plain DELETE path)');
SELECT is(pg_temp.error_of($$SELECT errands.set_retention(interval '-1 second')$$),
          '22023: errands: retention must be 0 (delete at completion) or a positive interval, got -00:00:01',
          'set_retention of a negative interval: 22023 naming it');
SELECT is(pg_temp.error_of($$SELECT errands.set_retention(NULL)$$),
          '22023: errands: retention must be 0 (delete at completion) or a positive interval, got NULL',
          'set_retention(NULL): 22023');
SELECT is(pg_temp.error_of($$SELECT errands.set_task_retention('h_t', interval '-1 day')$$),
          '22023: errands: retention must be NULL (the global), 0 (delete at completion) or a positive interval, got -1 days',
          'set_task_retention of a negative interval: 22023 naming it');
SELECT is(pg_temp.error_of($$SELECT errands.set_task_retention('', interval '1 day')$$),
          '22023: errands: set_task_retention needs a task identifier of 1 to 128 characters, got ''''',
          'set_task_retention of an empty identifier: 22023');
SELECT is((SELECT retention FROM errands._settings), interval '0', 'bad input changed nothing');

------------------------------------------------------------------------------
-- Retention 0: completion deletes (today's behaviour)
------------------------------------------------------------------------------
INSERT INTO j VALUES ('r0', (errands.add_job('h_none')).id);
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{h_none}', 10)), pg_temp.ids('r0'), 'setup: w1 fetches r0');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w1', pg_temp.ids('r0'), ARRAY['{"a": 1}'::json])),
          pg_temp.ids('r0'), 'retention 0: worker_complete_jobs completes r0');
SELECT ok(NOT EXISTS (SELECT 1 FROM errands._jobs WHERE id = pg_temp.id('r0'))
          AND NOT EXISTS (SELECT 1 FROM errands._finished_jobs WHERE id = pg_temp.id('r0')),
          'retention 0: r0 is deleted, not kept');

------------------------------------------------------------------------------
-- Per-task retention while the global is 0
------------------------------------------------------------------------------
SELECT is(errands.set_task_retention('h_kept', interval '1 day'), interval '1 day', 'set_task_retention returns it');
SELECT is(errands._history_on(), true, 'one task keeps history: history on');
INSERT INTO j VALUES ('k1', (errands.add_job('h_kept', '{"p": 1}', queue_name := 'hq', job_key := 'hk1')).id),
                     ('k2', (errands.add_job('h_kept')).id),
                     ('n1', (errands.add_job('h_none')).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{h_kept,h_none}', 10))),
          pg_temp.sorted(pg_temp.ids('k1', 'k2', 'n1')), 'setup: w1 fetches k1, k2, n1');
SELECT is(pg_temp.sorted(ARRAY(SELECT errands.worker_complete_jobs('w1', pg_temp.ids('k1', 'k2', 'n1'),
                                   ARRAY['{"answer": 42}'::json, NULL, '"x"'::json]))),
          pg_temp.sorted(pg_temp.ids('k1', 'k2', 'n1')), 'all three complete');
SELECT is(pg_temp.finished('k1'), '(completed,"{""answer"": 42}",1,h_kept,hq)',
          'k1 is in finished_jobs with its result, task and queue');
SELECT is(pg_temp.finished('k2'), '(completed,,1,h_kept,)', 'k2 kept with a NULL result');
SELECT is(pg_temp.finished('n1'), NULL, 'n1 (task without retention, global 0) is not kept');
SELECT is((SELECT (payload::text, key, finished_at = now()) FROM errands.finished_jobs WHERE id = pg_temp.id('k1')),
          ('{"p": 1}'::text, 'hk1'::text, true), 'k1 keeps payload and key; finished_at = now()');
SELECT is((SELECT locked_by FROM errands._queues WHERE queue_name = 'hq'), NULL, 'k1''s queue is unlocked');
SELECT is_empty($$SELECT * FROM errands.jobs WHERE task_identifier = 'h_kept'$$, 'errands.jobs no longer shows them');
SELECT is(errands.remove_job('hk1'), NULL, 'remove_job of a finished job''s key is a no-op (NULL)');
SELECT is(pg_temp.finished('k1'), '(completed,"{""answer"": 42}",1,h_kept,hq)', 'and k1 stays in history');

------------------------------------------------------------------------------
-- Global retention; task override 0; results over the size limit
------------------------------------------------------------------------------
SELECT errands.set_retention(interval '1 hour');
SELECT errands.set_task_retention('h_none', interval '0');
SELECT errands.set_max_payload_bytes(20);
INSERT INTO j VALUES ('g1', (errands.add_job('h_glob')).id),
                     ('big', (errands.add_job('h_glob')).id),
                     ('z1', (errands.add_job('h_none')).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w2', '{h_glob,h_none}', 10))),
          pg_temp.sorted(pg_temp.ids('g1', 'big', 'z1')), 'setup: w2 fetches g1, big, z1');
SELECT is(pg_temp.sorted(ARRAY(SELECT errands.worker_complete_jobs('w2', pg_temp.ids('g1', 'big', 'z1'),
                                   ARRAY['[1, 2]'::json, '"this result is too long"'::json, NULL]))),
          pg_temp.sorted(pg_temp.ids('g1', 'z1')), 'the job with an oversized result is not completed');
SELECT is(pg_temp.finished('g1'), '(completed,"[1, 2]",1,h_glob,)', 'global retention keeps g1');
SELECT is(pg_temp.finished('z1'), NULL, 'task retention 0 overrides the global: z1 deleted');
SELECT is((SELECT (last_error, locked_by IS NULL, attempts)::text FROM errands._jobs WHERE id = pg_temp.id('big')),
          '("errands: the task''s result is 25 bytes of JSON, over the limit of 20 bytes (errands.set_max_payload_bytes)",t,1)',
          'the oversized result fails its job with an error naming the size');
SELECT errands.set_max_payload_bytes(1048576);
SELECT is(pg_temp.error_of(format('SELECT errands.worker_complete_jobs(%L, %L, %L)', 'w2', pg_temp.ids('big'), '{}'::json[])),
          '22023: errands: worker_complete_jobs needs one result (NULL: none) per job: 1 ids, 0 results',
          'results of the wrong length: 22023');

------------------------------------------------------------------------------
-- Admin complete_jobs records history with a NULL result
------------------------------------------------------------------------------
SELECT is(ARRAY(SELECT id FROM errands.complete_jobs(pg_temp.ids('big'))), pg_temp.ids('big'),
          'complete_jobs completes big');
SELECT is(pg_temp.finished('big'), '(completed,,1,h_glob,)', 'complete_jobs kept it with a NULL result');

------------------------------------------------------------------------------
-- Pruning in bounded steps, by each task's retention
------------------------------------------------------------------------------
INSERT INTO errands._finished_jobs (id, task_identifier, payload, priority, attempts, max_attempts,
                                    created_at, finished_at, state)
SELECT -i, CASE WHEN i <= 5 THEN 'h_glob' ELSE 'h_kept' END, '{}', 0, 1, 25, now(),
       now() - interval '2 hours', 'completed'
FROM generate_series(1, 8) i;
SELECT is(errands.prune_finished_jobs(3), 3, 'prune_finished_jobs(3) deletes 3 expired rows');
SELECT is(errands.prune_finished_jobs(3), 2, 'the next call deletes the last 2 expired h_glob rows');
SELECT is(errands.prune_finished_jobs(), 0, 'then nothing: h_kept rows (1 day) and recent rows stay');
SELECT is((SELECT count(*)::int FROM errands._finished_jobs WHERE id < 0), 3, 'the three h_kept rows remain');
SELECT is(pg_temp.error_of($$SELECT errands.prune_finished_jobs(0)$$),
          '22023: errands: prune_finished_jobs needs max_rows >= 1, got 0', 'prune_finished_jobs(0): 22023');

-- cleanup keeps working with history present.
SELECT lives_ok($$SELECT errands.cleanup(ARRAY['GC_TASK_IDENTIFIERS', 'GC_JOB_QUEUES'])$$, 'cleanup works');

SELECT * FROM finish();
ROLLBACK;
