-- errands.cleanup (DELETE_PERMAFAILED_JOBS, GC_JOB_QUEUES, GC_TASK_IDENTIFIERS)
-- and errands.reset_locked (rescuing jobs of dead workers).
BEGIN;
SELECT plan(39);
\ir include/jobs_by_name.sql

CREATE FUNCTION pg_temp.queues() RETURNS text[] LANGUAGE sql STABLE AS
    $f$ SELECT coalesce(array_agg(queue_name ORDER BY queue_name COLLATE "C"), '{}') FROM errands._queues $f$;
CREATE FUNCTION pg_temp.tasks() RETURNS text[] LANGUAGE sql STABLE AS
    $f$ SELECT coalesce(array_agg(identifier ORDER BY identifier COLLATE "C"), '{}') FROM errands._tasks $f$;
-- 'TASK=deleted,...' of a cleanup call, in result order.
CREATE FUNCTION pg_temp.cleanup_result(call text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    result text;
BEGIN
    EXECUTE format('SELECT string_agg(task || ''='' || deleted, '','' ORDER BY ord) FROM %s WITH ORDINALITY c(task, deleted, ord)',
                   call) INTO result;
    RETURN coalesce(result, '(no rows)');
END
$f$;

------------------------------------------------------------------------------
-- cleanup
------------------------------------------------------------------------------
SELECT is(pg_temp.queues() || pg_temp.tasks(), '{}'::text[], 'setup: the database has no queues or tasks yet');
INSERT INTO j VALUES
    ('live',        (errands.add_job('ct_live', queue_name := 'cq_live')).id),
    ('retrying',    (errands.add_job('ct_live', run_at := now() + interval '1 minute')).id),
    ('perm',        (errands.add_job('ct_perm', queue_name := 'cq_perm', max_attempts := 3)).id),
    ('perm_over',   (errands.add_job('ct_perm', max_attempts := 5)).id),
    ('perm_locked', (errands.add_job('ct_lockedperm', queue_name := 'cq_lockedperm', max_attempts := 2)).id);
UPDATE errands._jobs SET attempts = 2, last_error = 'again' WHERE id = pg_temp.id('retrying');
UPDATE errands._jobs SET attempts = 3, last_error = 'Failed forever' WHERE id = pg_temp.id('perm');
-- attempts above max_attempts (max_attempts lowered later): failed for good too.
UPDATE errands._jobs SET attempts = 7, last_error = 'Failed forever' WHERE id = pg_temp.id('perm_over');
-- On its last try right now: attempts = max_attempts but locked.
UPDATE errands._jobs SET attempts = 2, locked_by = 'w', locked_at = now() WHERE id = pg_temp.id('perm_locked');
UPDATE errands._queues SET locked_by = 'w', locked_at = now() WHERE queue_name = 'cq_lockedperm';
INSERT INTO errands._queues (queue_name) VALUES ('cq_empty');
INSERT INTO errands._queues (queue_name, locked_by, locked_at) VALUES ('cq_locked_empty', 'w', now());
INSERT INTO errands._tasks (identifier) VALUES ('ct_empty'), ('ct_keep');

SELECT is(pg_temp.cleanup_result('errands.cleanup()'), 'GC_JOB_QUEUES=1',
          'cleanup() defaults to GC_JOB_QUEUES alone');
SELECT is(pg_temp.queues(), '{cq_live,cq_locked_empty,cq_lockedperm,cq_perm}',
          'GC_JOB_QUEUES deletes only the queue with no jobs and no lock');
SELECT is(pg_temp.tasks(), '{ct_empty,ct_keep,ct_live,ct_lockedperm,ct_perm}', 'the default leaves tasks alone');
SELECT is((SELECT count(*)::int FROM errands._jobs), 5, 'and jobs');

SELECT is(pg_temp.cleanup_result($$errands.cleanup('{DELETE_PERMAFAILED_JOBS}')$$),
          'DELETE_PERMAFAILED_JOBS=2', 'DELETE_PERMAFAILED_JOBS reports 2 deleted jobs');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands._jobs)), pg_temp.sorted(pg_temp.ids('live', 'retrying', 'perm_locked')),
          'only the unlocked failed jobs are deleted; the locked one on its last try stays');
SELECT is(pg_temp.queues(), '{cq_live,cq_locked_empty,cq_lockedperm,cq_perm}', 'DELETE_PERMAFAILED_JOBS alone keeps queues');

SELECT is(pg_temp.cleanup_result($$errands.cleanup(ARRAY['GC_JOB_QUEUES'])$$), 'GC_JOB_QUEUES=1',
          'GC_JOB_QUEUES now deletes the queue whose jobs are gone');
SELECT is(pg_temp.queues(), '{cq_live,cq_locked_empty,cq_lockedperm}',
          'queues with jobs, or with a lock, are kept');

SELECT is(pg_temp.cleanup_result($$errands.cleanup('{GC_TASK_IDENTIFIERS}', '{ct_keep,ct_not_there}')$$),
          'GC_TASK_IDENTIFIERS=2', 'GC_TASK_IDENTIFIERS reports 2 deleted task identifiers');
SELECT is(pg_temp.tasks(), '{ct_keep,ct_live,ct_lockedperm}',
          'task identifiers without jobs are deleted except the keep list');
SELECT is(pg_temp.queues(), '{cq_live,cq_locked_empty,cq_lockedperm}', 'GC_TASK_IDENTIFIERS alone keeps queues');

-- All three at once: jobs go first, so their queue and task go too.
INSERT INTO j VALUES ('perm2', (errands.add_job('ct2', queue_name := 'cq2', max_attempts := 1)).id);
UPDATE errands._jobs SET attempts = 1 WHERE id = pg_temp.id('perm2');
SELECT is(pg_temp.cleanup_result($$errands.cleanup('{GC_TASK_IDENTIFIERS,GC_JOB_QUEUES,DELETE_PERMAFAILED_JOBS}')$$),
          'DELETE_PERMAFAILED_JOBS=1,GC_JOB_QUEUES=1,GC_TASK_IDENTIFIERS=2',
          'all three tasks: one row each, jobs deleted first (without a keep list ct_keep goes too)');
SELECT is(pg_temp.queues() || pg_temp.tasks(), '{cq_live,cq_locked_empty,cq_lockedperm,ct_live,ct_lockedperm}',
          'the failed job''s queue and task are gone with it');
SELECT is(pg_temp.cleanup_result($$errands.cleanup('{GC_TASK_IDENTIFIERS}', NULL)$$),
          'GC_TASK_IDENTIFIERS=0', 'a NULL keep list is an empty one');

SELECT matches(pg_temp.error_of($$SELECT errands.cleanup('{GC_JOB_QUEUES,DELETE_ALL_THE_THINGS}')$$),
               '^22023: .*DELETE_ALL_THE_THINGS', 'an unknown cleanup task raises 22023 naming it');
SELECT matches(pg_temp.error_of($$SELECT errands.cleanup('{gc_job_queues}')$$),
               '^22023: .*gc_job_queues', 'names are case-sensitive');
SELECT matches(pg_temp.error_of($$SELECT errands.cleanup(ARRAY[NULL]::text[])$$),
               '^22023: .*NULL', 'a NULL cleanup task raises 22023');
SELECT is(pg_temp.queues() || pg_temp.tasks(), '{cq_live,cq_locked_empty,cq_lockedperm,ct_live,ct_lockedperm}',
          'a rejected call deletes nothing');

------------------------------------------------------------------------------
-- reset_locked
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('alive',      (errands.add_job('rl', queue_name := 'rq_alive')).id),
    ('dead',       (errands.add_job('rl', run_at := now() - interval '5 hours')).id),
    ('dead_q',     (errands.add_job('rl', queue_name := 'rq_dead', run_at := now() - interval '5 hours')).id),
    ('dead_later', (errands.add_job('rl', run_at := now() - interval '5 hours')).id),
    ('young',      (errands.add_job('rl')).id),
    ('free',       (errands.add_job('rl', run_at := now() + interval '1 day')).id);
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('setup', '{rl}', 10))),
          pg_temp.sorted(pg_temp.ids('alive', 'dead', 'dead_q', 'dead_later', 'young')), 'setup: fetch five jobs');
UPDATE errands._jobs x SET locked_by = v.worker, locked_at = now() - v.age, attempts = 3, last_error = 'previous'
FROM (VALUES ('alive', 'alive-worker', interval '5 minutes'),
             ('dead', 'dead-worker-1', interval '4 hours 1 minute'),
             ('dead_q', 'dead-worker-2', interval '4 hours 1 minute'),
             ('dead_later', 'dead-worker-1', interval '4 hours 1 minute'),
             ('young', 'old-worker', interval '3 hours 59 minutes')) v(name, worker, age)
WHERE x.id = pg_temp.id(v.name);
-- An admin pushed this one's run_at into the future while it was running.
UPDATE errands._jobs SET run_at = now() + interval '2 hours' WHERE id = pg_temp.id('dead_later');
UPDATE errands._queues q SET locked_by = v.worker, locked_at = now() - v.age
FROM (VALUES ('rq_alive', 'alive-worker', interval '5 minutes'),
             ('rq_dead', 'dead-worker-2', interval '4 hours 1 minute')) v(queue, worker, age)
WHERE q.queue_name = v.queue;
-- A stale queue lock whose job is gone (e.g. deleted by complete_jobs).
INSERT INTO errands._queues (queue_name, locked_by, locked_at) VALUES ('rq_orphan', 'dead-worker-3', now() - interval '6 hours');

SELECT is(errands.reset_locked('4 hours'), 3, 'reset_locked(''4 hours'') returns the number of jobs it rescued');
SELECT is((SELECT (locked_by, locked_at = now() - interval '5 minutes', attempts, last_error)::text
           FROM errands._jobs WHERE id = pg_temp.id('alive')), '(alive-worker,t,3,previous)',
          'a job locked 5 minutes ago stays locked and untouched');
SELECT is((SELECT (locked_by, attempts)::text FROM errands._jobs WHERE id = pg_temp.id('young')), '(old-worker,3)',
          'a job locked 3h59m ago stays locked');
SELECT is((SELECT array_agg((locked_at, locked_by)::text ORDER BY id) FROM errands._jobs
           WHERE id = ANY(pg_temp.ids('dead', 'dead_q', 'dead_later'))), '{"(,)","(,)","(,)"}',
          'jobs locked 4h01m ago are unlocked');
SELECT is((SELECT run_at FROM errands._jobs WHERE id = pg_temp.id('dead')), now(),
          'a rescued job with a past run_at is runnable at once: run_at = now()');
SELECT is((SELECT run_at FROM errands._jobs WHERE id = pg_temp.id('dead_later')), now() + interval '2 hours',
          'a rescued job with a later run_at keeps it');
SELECT is((SELECT array_agg(attempts ORDER BY id) FROM errands._jobs WHERE id = ANY(pg_temp.ids('dead', 'dead_q', 'dead_later'))),
          '{3,3,3}'::smallint[], 'attempts are kept: the interrupted try counts');
SELECT matches((SELECT last_error FROM errands._jobs WHERE id = pg_temp.id('dead')), 'dead-worker-1',
               'last_error names the dead worker');
SELECT matches((SELECT last_error FROM errands._jobs WHERE id = pg_temp.id('dead_q')), 'dead-worker-2',
               'last_error names the dead worker of the queued job');
SELECT is(ARRAY[pg_temp.queue_lock('rq_dead'), pg_temp.queue_lock('rq_orphan'), pg_temp.queue_lock('rq_alive')],
          '{(unlocked),(unlocked),alive-worker}', 'stale queue locks are released, a fresh one is kept');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM errands.get_jobs('new-worker', '{rl}', 10))),
          pg_temp.sorted(pg_temp.ids('dead', 'dead_q')), 'the rescued due jobs, queued or not, are fetched at once');
SELECT is((SELECT array_agg(attempts ORDER BY id) FROM errands._jobs WHERE id = ANY(pg_temp.ids('dead', 'dead_q'))),
          '{4,4}'::smallint[], 'as their next attempt');
SELECT is(errands.reset_locked('4 hours'), 0, 'a second sweep finds nothing');

SELECT is(errands.reset_locked(), 0, 'the default age is 4 hours: a lock 3h59m old is kept');
UPDATE errands._jobs SET locked_at = now() - interval '4 hours 1 second' WHERE id = pg_temp.id('young');
SELECT is(errands.reset_locked(), 1, 'with the default age a lock 4h00m01s old is released');
SELECT is(errands.reset_locked('1 minute'), 1,
          'older_than is honoured: reset_locked(''1 minute'') rescues the 5-minute-old job, not the two just fetched');
SELECT is(pg_temp.queue_lock('rq_alive'), '(unlocked)', 'and the 5-minute-old queue lock');
SELECT is((SELECT array_agg(locked_by ORDER BY id) FROM errands._jobs WHERE locked_at IS NOT NULL OR locked_by IS NOT NULL),
          '{w,new-worker,new-worker}', 'only the jobs locked just now are still locked');

SELECT * FROM finish();
ROLLBACK;
