-- Cancelling: errands.cancel_jobs (not running: cancelled at once; running:
-- requested, then cancelled whatever the worker reports or when it is rescued),
-- errands.worker_cancel_jobs (errands.Cancel) and job_key_mode abort_replace.
BEGIN;
SELECT plan(45);
\ir include/jobs_by_name.sql
SELECT errands.set_retention(interval '1 hour');

-- A finished job's (state, last_error) as text, or '(absent)'.
CREATE FUNCTION pg_temp.finished(n text) RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT coalesce((SELECT (state, last_error)::text FROM errands.finished_jobs
                     WHERE id = pg_temp.id(n)), '(absent)') $f$;
CREATE FUNCTION pg_temp.view_state(n text) RETURNS text LANGUAGE sql STABLE AS
    $f$ SELECT coalesce((SELECT state FROM errands.jobs WHERE id = pg_temp.id(n)), '(gone)') $f$;
CREATE FUNCTION pg_temp.outcomes(VARIADIC ns text[]) RETURNS text[] LANGUAGE sql AS
    $f$ SELECT array_agg(c.outcome ORDER BY o.ord)
        FROM errands.cancel_jobs(pg_temp.ids(VARIADIC ns)) WITH ORDINALITY AS o(id, outcome, ord)
        JOIN LATERAL (SELECT o.outcome) c ON true $f$;

------------------------------------------------------------------------------
-- Jobs that are not running are cancelled at once.
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('pending', (errands.add_job('c')).id),
    ('scheduled', (errands.add_job('c', run_at := now() + interval '1 day')).id),
    ('retrying', (errands.add_job('c_r')).id),
    ('failed', (errands.add_job('c_f', max_attempts := 1)).id);
SELECT errands.get_jobs('w0', '{c_r,c_f}', 10);
SELECT errands.worker_fail_jobs('w0', pg_temp.ids('retrying', 'failed'), '{boom,boom}');
SELECT is(ARRAY[pg_temp.view_state('pending'), pg_temp.view_state('scheduled'),
                pg_temp.view_state('retrying'), pg_temp.view_state('failed')],
          '{pending,scheduled,retrying,failed}', 'setup: one job in each unfinished state but running');
SELECT is(pg_temp.outcomes('pending', 'scheduled', 'retrying', 'failed'),
          '{cancelled,cancelled,cancelled,cancelled}', 'cancel_jobs reports each of them cancelled');
SELECT is(ARRAY[pg_temp.view_state('pending'), pg_temp.view_state('scheduled'),
                pg_temp.view_state('retrying'), pg_temp.view_state('failed')],
          '{(gone),(gone),(gone),(gone)}', 'they are gone from errands.jobs');
SELECT is(ARRAY[pg_temp.finished('pending'), pg_temp.finished('failed')],
          '{"(cancelled,\"errands: cancelled by cancel_jobs\")","(cancelled,\"errands: cancelled by cancel_jobs\")"}',
          'and kept in errands.finished_jobs as cancelled, last_error naming the cancellation');
SELECT is((SELECT attempts FROM errands.finished_jobs WHERE id = pg_temp.id('retrying')), 1,
          'a cancelled job keeps its attempts');
SELECT is(pg_temp.outcomes('pending'), '{already_finished}', 'cancelling it again: already_finished');
SELECT is(ARRAY(SELECT outcome FROM errands.cancel_jobs(ARRAY[987654321, 987654321, NULL]::bigint[])),
          '{unknown}', 'an unknown id is reported once, a NULL id ignored');
SELECT throws_ok($$SELECT * FROM errands.cancel_jobs(NULL)$$, '22023',
                 'errands: cancel_jobs needs an array of job ids, got NULL', 'a NULL array is an error');

------------------------------------------------------------------------------
-- A running job: requested, then cancelled whatever its worker reports.
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('run_complete', (errands.add_job('r', queue_name := 'rq')).id),
    ('run_complete_next', (errands.add_job('r', queue_name := 'rq')).id),
    ('run_fail', (errands.add_job('r')).id),
    ('run_snooze', (errands.add_job('r')).id),
    ('run_return', (errands.add_job('r')).id),
    ('run_fail_now', (errands.add_job('r')).id),
    ('run_plain', (errands.add_job('r')).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w1', '{r}', 10))),
          pg_temp.sorted(pg_temp.ids('run_complete', 'run_fail', 'run_snooze', 'run_return',
                                     'run_fail_now', 'run_plain')),
          'setup: w1 runs six jobs, one the head of queue rq');
SELECT is(pg_temp.outcomes('run_complete', 'run_fail', 'run_snooze', 'run_return', 'run_fail_now'),
          '{cancel_requested,cancel_requested,cancel_requested,cancel_requested,cancel_requested}',
          'cancel_jobs of running jobs: cancel_requested');
SELECT is(pg_temp.view_state('run_complete'), 'running', 'a requested job stays running until its worker reports');
SELECT is(ARRAY(SELECT errands.worker_cancel_requests('w1')),
          pg_temp.sorted(pg_temp.ids('run_complete', 'run_fail', 'run_snooze', 'run_return', 'run_fail_now')),
          'worker_cancel_requests lists them for their worker');
SELECT is_empty($$SELECT errands.worker_cancel_requests('w2')$$, 'and nothing for another worker');
SELECT is(pg_temp.outcomes('run_complete'), '{cancel_requested}', 'requesting twice is harmless');
SELECT is((SELECT cancel_reason FROM errands._jobs WHERE id = pg_temp.id('run_complete')),
          'errands: cancelled by cancel_jobs while running', 'the reason is recorded once');

SELECT is(pg_temp.sorted(ARRAY(SELECT errands.worker_complete_jobs('w1', pg_temp.ids('run_complete', 'run_plain'),
                                                    ARRAY['{"r": 1}', '{"r": 2}']::json[]))),
          pg_temp.sorted(pg_temp.ids('run_complete', 'run_plain')), 'complete reports both jobs done');
SELECT is(pg_temp.finished('run_complete'),
          '(cancelled,"errands: cancelled by cancel_jobs while running")',
          'the requested job ended cancelled, not completed');
SELECT is((SELECT result::text FROM errands.finished_jobs WHERE id = pg_temp.id('run_complete')), NULL,
          'and its result is dropped');
SELECT is((SELECT (state, result::text)::text FROM errands.finished_jobs WHERE id = pg_temp.id('run_plain')),
          '(completed,"{""r"": 2}")', 'the other job of the batch completed with its result');
SELECT is(pg_temp.queue_lock('rq'), '(unlocked)', 'the named queue of the cancelled job is unlocked');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w2', '{r}', 10)), pg_temp.ids('run_complete_next'),
          'and its next job runs');

SELECT is_empty(format('SELECT * FROM errands.worker_fail_jobs(%L, %L, %L)', 'w1',
                       pg_temp.ids('run_fail'), '{boom}'),
                'fail of a requested job returns no failed job');
SELECT is(ARRAY[pg_temp.view_state('run_fail'), pg_temp.finished('run_fail')],
          '{(gone),"(cancelled,\"errands: cancelled by cancel_jobs while running\")"}',
          'it ended cancelled, not retrying');
SELECT is_empty(format('SELECT * FROM errands.worker_fail_jobs_now(%L, %L, %L)', 'w1',
                       pg_temp.ids('run_fail_now'), '{boom}'), 'fail-now of a requested job fails nothing');
SELECT is_empty(format('SELECT * FROM errands.worker_snooze_jobs(%L, %L, %L)', 'w1',
                       pg_temp.ids('run_snooze'), ARRAY[interval '1 min']), 'snooze of a requested job snoozes nothing');
SELECT is_empty(format('SELECT * FROM errands.worker_return_jobs(%L, %L)', 'w1',
                       pg_temp.ids('run_return')), 'return of a requested job returns nothing');
SELECT is(ARRAY[pg_temp.finished('run_fail_now'), pg_temp.finished('run_snooze'), pg_temp.finished('run_return')],
          ARRAY[pg_temp.finished('run_fail'), pg_temp.finished('run_fail'), pg_temp.finished('run_fail')],
          'each of them ended cancelled');

------------------------------------------------------------------------------
-- Cancel racing completion: whichever commits first decides.
------------------------------------------------------------------------------
INSERT INTO j VALUES ('race', (errands.add_job('race')).id);
SELECT errands.get_jobs('w3', '{race}');
SELECT errands.worker_complete_jobs('w3', pg_temp.ids('race'));
SELECT is(pg_temp.outcomes('race'), '{already_finished}', 'completion first: the cancel reports already_finished');
SELECT is(pg_temp.finished('race'), '(completed,)', 'and the job stays completed');

------------------------------------------------------------------------------
-- Rescue of a requested job ends it cancelled (never runs again).
------------------------------------------------------------------------------
INSERT INTO j VALUES ('rescued_a', (errands.add_job('resc')).id), ('rescued_b', (errands.add_job('resc')).id),
                     ('stale', (errands.add_job('resc2')).id);
SELECT errands.get_jobs('w4', '{resc}', 2);
SELECT errands.get_jobs('w5', '{resc2}');
SELECT errands.cancel_jobs(pg_temp.ids('rescued_a', 'stale'));
SELECT errands.force_unlock_workers(ARRAY['w4']);
SELECT is(ARRAY[pg_temp.view_state('rescued_a'), pg_temp.finished('rescued_a')],
          '{(gone),"(cancelled,\"errands: cancelled by cancel_jobs while running\")"}',
          'force_unlock_workers: the requested job ends cancelled');
SELECT is(pg_temp.view_state('rescued_b'), 'retrying', 'its unrequested sibling is runnable again (retrying: the try counted)');
UPDATE errands._jobs SET locked_at = now() - interval '5 hours' WHERE id = pg_temp.id('stale');
SELECT is(errands.reset_locked(), 1, 'reset_locked counts the stale requested job');
SELECT is(pg_temp.finished('stale'), pg_temp.finished('rescued_a'), 'and ends it cancelled');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w6', '{resc2}')$$, 'it never runs again');

-- A dead worker's rescue (rescue_workers and unregister_worker release its jobs).
INSERT INTO j VALUES ('dead', (errands.add_job('resc3')).id);
SELECT errands.get_jobs('w_dead', '{resc3}');
SELECT errands.cancel_jobs(pg_temp.ids('dead'));
SELECT is(errands.unregister_worker('w_dead'), 0, 'releasing a worker: its requested job is not made runnable');
SELECT is(pg_temp.finished('dead'), pg_temp.finished('rescued_a'), 'it ends cancelled');

------------------------------------------------------------------------------
-- abort_replace: the running keyed job is requested, a new job takes the key.
------------------------------------------------------------------------------
INSERT INTO j VALUES ('keyed_old', (errands.add_job('k', '{"v": 1}', job_key := 'ak')).id);
SELECT errands.get_jobs('w7', '{k}');
INSERT INTO j VALUES ('keyed_new',
    (errands.add_job('k', '{"v": 2}', job_key := 'ak', job_key_mode := 'abort_replace')).id);
SELECT isnt(pg_temp.id('keyed_new'), pg_temp.id('keyed_old'), 'abort_replace of a running job adds a new job');
SELECT is((SELECT cancel_reason FROM errands._jobs WHERE id = pg_temp.id('keyed_old')),
          'errands: cancelled by abort_replace of job key ak', 'and requests the running job''s cancellation');
SELECT errands.worker_complete_jobs('w7', pg_temp.ids('keyed_old'));
SELECT is(pg_temp.finished('keyed_old'), '(cancelled,"errands: cancelled by abort_replace of job key ak")',
          'the old job ends cancelled when its worker reports');
SELECT is((SELECT (key, payload::text)::text FROM errands.jobs WHERE id = pg_temp.id('keyed_new')),
          '(ak,"{""v"": 2}")', 'the new job holds the key');
SELECT is((errands.add_job('k', '{"v": 3}', job_key := 'ak', job_key_mode := 'abort_replace')).id,
          pg_temp.id('keyed_new'), 'abort_replace of a pending keyed job replaces it in place');

------------------------------------------------------------------------------
-- errands.Cancel from inside a task: worker_cancel_jobs.
------------------------------------------------------------------------------
INSERT INTO j VALUES ('inside', (errands.add_job('in', queue_name := 'iq')).id);
SELECT errands.get_jobs('w8', '{in}');
SELECT is_empty(format('SELECT errands.worker_cancel_jobs(%L, %L, %L)', 'w9', pg_temp.ids('inside'), '{no}'),
                'another worker cannot cancel it');
SELECT is(ARRAY(SELECT errands.worker_cancel_jobs('w8', pg_temp.ids('inside'), '{"not needed any more"}')),
          pg_temp.ids('inside'), 'its worker cancels it');
SELECT is(ARRAY[pg_temp.finished('inside'), pg_temp.queue_lock('iq')],
          '{"(cancelled,\"not needed any more\")",(unlocked)}',
          'it ends cancelled with the reason as last_error and its queue is unlocked');
SELECT throws_ok(format('SELECT errands.worker_cancel_jobs(%L, %L, %L)', 'w8', pg_temp.ids('inside'), '{}'),
                 '22023', NULL, 'one reason per job is required');

SELECT * FROM finish();
ROLLBACK;
