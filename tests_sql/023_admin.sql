-- Admin functions (Graphile's WorkerUtils): complete_jobs, permanently_fail_jobs,
-- reschedule_jobs, force_unlock_workers. The first three skip running jobs
-- unless their lock is more than 4 hours old.
BEGIN;
SELECT plan(52);
\ir include/jobs_by_name.sql

-- Graphile's "selection of jobs": five jobs an hour in the future; one failed
-- for good ('Failed forever'), two regular ones, one locked by 'test' now and
-- one left untouched. Named <prefix>:failed, :regular1, :locked, :regular2, :untouched.
-- updated_at is set a day back so that changes to it show.
CREATE FUNCTION pg_temp.selection(prefix text) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
    n text;
    i int := 0;
BEGIN
    FOREACH n IN ARRAY ARRAY['failed', 'regular1', 'locked', 'regular2', 'untouched'] LOOP
        i := i + 1;
        INSERT INTO j VALUES (prefix || ':' || n,
            (errands.add_job('job3', json_build_object('a', i), run_at := now() + interval '1 hour')).id);
    END LOOP;
    UPDATE errands._jobs SET locked_by = 'test', locked_at = now() WHERE id = pg_temp.id(prefix || ':locked');
    UPDATE errands._jobs SET attempts = max_attempts, last_error = 'Failed forever'
    WHERE id = pg_temp.id(prefix || ':failed');
    UPDATE errands._jobs SET updated_at = now() - interval '1 day'
    WHERE id IN (SELECT id FROM j WHERE name LIKE prefix || ':%');
END
$f$;
-- The four ids Graphile's tests pass: failed, regular1, locked, regular2.
CREATE FUNCTION pg_temp.four(prefix text) RETURNS bigint[] LANGUAGE sql STABLE AS
    $f$ SELECT pg_temp.ids(prefix || ':failed', prefix || ':regular1', prefix || ':locked', prefix || ':regular2') $f$;
-- Snapshot of a job row as text (or NULL when the job is gone).
CREATE FUNCTION pg_temp.row_of(n text) RETURNS text LANGUAGE sql STABLE AS
    $f$ SELECT (x.*)::text FROM errands._jobs x WHERE x.id = pg_temp.id(n) $f$;

------------------------------------------------------------------------------
-- complete_jobs
------------------------------------------------------------------------------
SELECT pg_temp.selection('c') \g /dev/null
CREATE TEMP TABLE snap AS SELECT j.name, pg_temp.row_of(j.name) AS r FROM j;
CREATE TEMP TABLE done AS SELECT * FROM errands.complete_jobs(pg_temp.four('c'));
SELECT is(ARRAY(SELECT id FROM done), pg_temp.sorted(pg_temp.ids('c:failed', 'c:regular1', 'c:regular2')),
          'complete_jobs returns the failed and both regular jobs, not the locked one');
SELECT is((SELECT array_agg((task_identifier, payload::text, last_error, attempts)::text ORDER BY id) FROM done),
          '{"(job3,\"{\"\"a\"\" : 1}\",\"Failed forever\",25)","(job3,\"{\"\"a\"\" : 2}\",,0)","(job3,\"{\"\"a\"\" : 4}\",,0)"}',
          'it returns the deleted rows as they were');
SELECT is((SELECT count(*)::int FROM errands._jobs WHERE id = ANY(pg_temp.ids('c:failed', 'c:regular1', 'c:regular2'))), 0,
          'those three are deleted');
SELECT is(ARRAY[pg_temp.row_of('c:locked'), pg_temp.row_of('c:untouched')],
          ARRAY[(SELECT r FROM snap WHERE name = 'c:locked'), (SELECT r FROM snap WHERE name = 'c:untouched')],
          'the locked and the unlisted jobs are unchanged');
SELECT is(ARRAY(SELECT id FROM errands.complete_jobs(pg_temp.four('c'))), '{}'::bigint[],
          'completing them again returns nothing');

------------------------------------------------------------------------------
-- permanently_fail_jobs
------------------------------------------------------------------------------
SELECT pg_temp.selection('p') \g /dev/null
CREATE TEMP TABLE pf AS SELECT * FROM errands.permanently_fail_jobs(pg_temp.four('p'));
SELECT is(ARRAY(SELECT id FROM pf), pg_temp.sorted(pg_temp.ids('p:failed', 'p:regular1', 'p:regular2')),
          'permanently_fail_jobs returns 3 rows, skipping the locked job');
SELECT is((SELECT array_agg(DISTINCT last_error) FROM pf), '{"Manually marked as failed"}',
          'the default message is ''Manually marked as failed''');
SELECT ok((SELECT bool_and(attempts = max_attempts) FROM pf), 'the returned rows have attempts = max_attempts');
SELECT is((SELECT array_agg((attempts = max_attempts AND NOT is_available AND last_error = 'Manually marked as failed'
                             AND updated_at = now())::text ORDER BY id)
           FROM errands._jobs WHERE id = ANY(pg_temp.ids('p:failed', 'p:regular1', 'p:regular2'))),
          '{true,true,true}', 'the table rows are failed for good with updated_at = now()');
SELECT is((SELECT array_agg(state ORDER BY id) FROM errands.jobs
           WHERE id = ANY(pg_temp.ids('p:failed', 'p:regular1', 'p:regular2', 'p:locked'))),
          '{failed,failed,running,failed}', 'their state is failed; the skipped locked job is running');
SELECT is((SELECT (attempts, last_error, locked_by)::text FROM errands._jobs WHERE id = pg_temp.id('p:locked')),
          '(0,,test)', 'the locked job is skipped');
SELECT is((SELECT (attempts, last_error)::text FROM errands._jobs WHERE id = pg_temp.id('p:untouched')),
          '(0,)', 'the unlisted job is untouched');
SELECT is((SELECT array_agg((last_error, attempts, max_attempts)::text ORDER BY id)
           FROM errands.permanently_fail_jobs(pg_temp.ids('p:untouched'), 'Gave up on it')),
          '{"(\"Gave up on it\",25,25)"}', 'a given message is used as last_error');
UPDATE errands._jobs SET run_at = now() - interval '1 minute' WHERE id IN (SELECT id FROM j WHERE name LIKE 'p:%');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w', '{job3}', 10)$$,
                'failed jobs are not fetched (and the locked one is running)');

------------------------------------------------------------------------------
-- reschedule_jobs
------------------------------------------------------------------------------
SELECT pg_temp.selection('r') \g /dev/null
CREATE TEMP TABLE rs AS
SELECT * FROM errands.reschedule_jobs(pg_temp.four('r'), run_at := now() + interval '1 day', attempts := 1);
SELECT is(ARRAY(SELECT id FROM rs), pg_temp.sorted(pg_temp.ids('r:failed', 'r:regular1', 'r:regular2')),
          'reschedule_jobs returns 3 rows, skipping the locked job');
SELECT is((SELECT array_agg((run_at = now() + interval '1 day' AND attempts = 1 AND priority = 0
                             AND max_attempts = 25 AND updated_at = now())::text ORDER BY id)
           FROM errands._jobs WHERE id = ANY(pg_temp.ids('r:failed', 'r:regular1', 'r:regular2'))),
          '{true,true,true}', 'run_at and attempts change, priority and max_attempts do not, updated_at = now()');
SELECT is((SELECT last_error FROM errands._jobs WHERE id = pg_temp.id('r:failed')), 'Failed forever',
          'the failed job keeps its last_error');
SELECT is((SELECT (attempts, run_at = now() + interval '1 hour', locked_by)::text FROM errands._jobs
           WHERE id = pg_temp.id('r:locked')), '(0,t,test)', 'the locked job is skipped');
SELECT is((SELECT (attempts, run_at = now() + interval '1 hour')::text FROM errands._jobs
           WHERE id = pg_temp.id('r:untouched')), '(0,t)', 'the unlisted job is untouched');
SELECT is((SELECT (run_at, attempts, priority, max_attempts, last_error)::text FROM rs WHERE id = pg_temp.id('r:failed')),
          (SELECT (now() + interval '1 day', 1, 0, 25, 'Failed forever'::text)::text),
          'the returned rows show the new values');

-- Each argument alone; 0 is a value, not "unchanged".
UPDATE errands._jobs SET priority = 5, attempts = 3 WHERE id = pg_temp.id('r:regular1');
CREATE TEMP TABLE r1_before AS SELECT * FROM errands._jobs WHERE id = pg_temp.id('r:regular1');
SELECT is((SELECT priority FROM errands.reschedule_jobs(pg_temp.ids('r:regular1'), priority := 0)), 0,
          'priority 0 is applied');
SELECT is((SELECT attempts FROM errands.reschedule_jobs(pg_temp.ids('r:regular1'), attempts := 0)), 0,
          'attempts 0 is applied');
SELECT is((SELECT max_attempts FROM errands.reschedule_jobs(pg_temp.ids('r:regular1'), max_attempts := 7)), 7,
          'max_attempts is applied');
SELECT is((SELECT (x.run_at, x.payload::text, x.last_error, x.key, x.flags, x.task_id, x.job_queue_id)::text
           FROM errands._jobs x WHERE x.id = pg_temp.id('r:regular1')),
          (SELECT (b.run_at, b.payload::text, b.last_error, b.key, b.flags, b.task_id, b.job_queue_id)::text FROM r1_before b),
          'arguments left NULL leave their columns alone');
SELECT is((SELECT priority FROM errands.reschedule_jobs(pg_temp.ids('r:regular1'), priority := -32768)), -32768,
          'priority -32768 is in range');
SELECT is((SELECT (run_at = now() - interval '1 minute', priority, attempts, max_attempts)::text
           FROM errands.reschedule_jobs(pg_temp.ids('r:regular1'), run_at := now() - interval '1 minute')),
          '(t,-32768,0,7)', 'run_at alone: only run_at changes');
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w', '{job3}', 10)), pg_temp.ids('r:regular1'),
          'a job rescheduled into the past is fetched');

-- Out of range: 22023 naming the argument.
SELECT matches(pg_temp.error_of($$SELECT errands.reschedule_jobs('{1}', priority := 32768)$$),
               '^22023: .*priority', 'priority 32768 raises 22023 naming priority');
SELECT matches(pg_temp.error_of($$SELECT errands.reschedule_jobs('{1}', priority := -32769)$$),
               '^22023: .*priority', 'priority -32769 raises 22023 naming priority');
SELECT matches(pg_temp.error_of($$SELECT errands.reschedule_jobs('{1}', attempts := -1)$$),
               '^22023: .*attempts', 'attempts -1 raises 22023 naming attempts');
SELECT matches(pg_temp.error_of($$SELECT errands.reschedule_jobs('{1}', attempts := 32768)$$),
               '^22023: .*attempts', 'attempts 32768 raises 22023 naming attempts');
SELECT matches(pg_temp.error_of($$SELECT errands.reschedule_jobs('{1}', max_attempts := 0)$$),
               '^22023: .*max_attempts', 'max_attempts 0 raises 22023 naming max_attempts');
SELECT matches(pg_temp.error_of($$SELECT errands.reschedule_jobs('{1}', max_attempts := 32768)$$),
               '^22023: .*max_attempts', 'max_attempts 32768 raises 22023 naming max_attempts');

------------------------------------------------------------------------------
-- A lock older than 4 hours does not protect a job from the admin functions.
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('stale_c', (errands.add_job('s', queue_name := 'stale_queue')).id),
    ('stale_p', (errands.add_job('s')).id),
    ('stale_r', (errands.add_job('s')).id),
    ('young',   (errands.add_job('s')).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('dead-worker', '{s}', 10))),
          pg_temp.sorted(pg_temp.ids('stale_c', 'stale_p', 'stale_r', 'young')), 'setup: a worker fetches four jobs');
UPDATE errands._jobs SET locked_at = now() - interval '4 hours 1 minute'
WHERE id = ANY(pg_temp.ids('stale_c', 'stale_p', 'stale_r'));
UPDATE errands._queues SET locked_at = now() - interval '4 hours 1 minute' WHERE queue_name = 'stale_queue';
UPDATE errands._jobs SET locked_at = now() - interval '3 hours 59 minutes' WHERE id = pg_temp.id('young');

SELECT is(ARRAY(SELECT id FROM errands.complete_jobs(pg_temp.ids('stale_c', 'young'))), pg_temp.ids('stale_c'),
          'complete_jobs deletes a job locked 4h01m ago, not one locked 3h59m ago');
SELECT is(pg_temp.queue_lock('stale_queue'), '(unlocked)',
          'complete_jobs frees the stale job''s queue slot (flow control counts it no more)');
SELECT is(ARRAY(SELECT id FROM errands.permanently_fail_jobs(pg_temp.ids('stale_p', 'young'))), pg_temp.ids('stale_p'),
          'permanently_fail_jobs fails a job locked 4h01m ago, not one locked 3h59m ago');
SELECT is((SELECT (attempts = max_attempts, last_error)::text FROM errands._jobs WHERE id = pg_temp.id('stale_p')),
          '(t,"Manually marked as failed")', 'the stale-locked job is failed for good');
SELECT is(ARRAY(SELECT id FROM errands.reschedule_jobs(pg_temp.ids('stale_r', 'young'), priority := 9)), pg_temp.ids('stale_r'),
          'reschedule_jobs changes a job locked 4h01m ago, not one locked 3h59m ago');
SELECT is((SELECT priority::int FROM errands._jobs WHERE id = pg_temp.id('stale_r')), 9, 'the stale-locked job is rescheduled');
SELECT is((SELECT (priority, attempts, last_error, locked_by)::text FROM errands._jobs WHERE id = pg_temp.id('young')),
          '(0,1,,dead-worker)', 'the job locked 3h59m ago is untouched');

------------------------------------------------------------------------------
-- force_unlock_workers: 10 jobs locked by 3 different workers or none.
------------------------------------------------------------------------------
INSERT INTO j
SELECT 'fu' || g, (errands.add_job('fu', json_build_object('g', g),
                                   CASE WHEN g IN (1, 4, 7, 9) THEN 'fuq' || g END)).id
FROM generate_series(1, 10) g;
UPDATE errands._jobs x SET locked_by = w.worker, locked_at = now() - interval '1 minute', attempts = 1
FROM (VALUES (1, 'pool-a'), (2, 'pool-a'), (3, 'pool-a'), (4, 'pool-b'), (5, 'pool-b'), (6, 'pool-b'),
             (7, 'pool-c'), (8, 'pool-c')) w(g, worker)
WHERE x.id = pg_temp.id('fu' || w.g);
UPDATE errands._queues q SET locked_by = w.worker, locked_at = now() - interval '1 minute'
FROM (VALUES ('fuq1', 'pool-a'), ('fuq4', 'pool-b'), ('fuq7', 'pool-c')) w(queue, worker)
WHERE q.queue_name = w.queue;
-- A queue locked by pool-a without a job (e.g. a lock the worker was about to release).
INSERT INTO errands._queues (queue_name, locked_by, locked_at) VALUES ('fu_empty', 'pool-a', now());

SELECT lives_ok($$SELECT errands.force_unlock_workers('{pool-a,pool-c,pool-never-seen}')$$,
                'force_unlock_workers runs');
SELECT is((SELECT array_agg(coalesce(x.locked_by, '-') ORDER BY j.name::text COLLATE "C")
           FROM j JOIN errands._jobs x USING (id) WHERE j.name LIKE 'fu%'),
          '{-,-,-,-,pool-b,pool-b,pool-b,-,-,-}',
          'jobs of the unlocked workers are unlocked; pool-b''s stay locked (fu1, fu10, fu2, ..., fu9)');
SELECT is((SELECT count(*)::int FROM errands._jobs WHERE locked_by IS NULL AND locked_at IS NOT NULL
           AND id IN (SELECT id FROM j WHERE name LIKE 'fu%')), 0, 'locked_at is cleared with locked_by');
SELECT is((SELECT array_agg(attempts ORDER BY id) FROM errands._jobs WHERE id IN (SELECT id FROM j WHERE name LIKE 'fu%')),
          '{1,1,1,1,1,1,1,1,0,0}'::smallint[], 'attempts are unchanged');
SELECT is(ARRAY[pg_temp.queue_lock('fuq1'), pg_temp.queue_lock('fuq4'), pg_temp.queue_lock('fuq7'),
                pg_temp.queue_lock('fuq9'), pg_temp.queue_lock('fu_empty')],
          '{(unlocked),pool-b,(unlocked),(unlocked),(unlocked)}',
          'queues of the unlocked workers are unlocked; pool-b''s stays locked');
SELECT is((SELECT (locked_by, locked_at = now() - interval '1 minute')::text FROM errands._jobs WHERE id = pg_temp.id('fu4')),
          '(pool-b,t)', 'pool-b''s lock is exactly as it was');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('w', '{fu}', 10))),
          pg_temp.sorted(pg_temp.ids('fu1', 'fu2', 'fu3', 'fu7', 'fu8', 'fu9', 'fu10')),
          'the unlocked jobs can be fetched again, pool-b''s cannot');
SELECT is(ARRAY(SELECT attempts FROM errands._jobs WHERE id = pg_temp.id('fu1')), '{2}'::smallint[],
          'the interrupted try counted: the next try is attempt 2');

------------------------------------------------------------------------------
-- Empty and NULL id lists.
------------------------------------------------------------------------------
SELECT is_empty($$SELECT * FROM errands.complete_jobs('{}')$$, 'complete_jobs of no ids returns nothing');
SELECT is_empty($$SELECT * FROM errands.permanently_fail_jobs(NULL)$$, 'permanently_fail_jobs of NULL returns nothing');
SELECT is_empty($$SELECT * FROM errands.reschedule_jobs('{}', priority := 1)$$, 'reschedule_jobs of no ids returns nothing');

SELECT * FROM finish();
ROLLBACK;
