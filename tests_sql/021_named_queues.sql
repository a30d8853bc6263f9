-- Named queues: at most one running job per queue, including within one batch
-- fetch (Graphile's #621), and queue order priority, run_at, id.
BEGIN;
SELECT plan(68);
\ir include/jobs_by_name.sql

-- Names of the jobs of a fetch result, in result order.
CREATE FUNCTION pg_temp.names(a bigint[]) RETURNS text[] LANGUAGE sql STABLE AS $f$
    SELECT coalesce(array_agg(j.name ORDER BY x.ord), '{}')
    FROM unnest(a) WITH ORDINALITY x(id, ord) JOIN j USING (id)
$f$;

------------------------------------------------------------------------------
-- One queue of 5 due jobs plus 3 unqueued jobs; queue order s3, s2, s4, s1, s5.
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('s1', (errands.add_job('q', '{"s":1}', 'serial', now() - interval '10 minutes')).id),
    ('s2', (errands.add_job('q', '{"s":2}', 'serial', now() - interval '20 minutes')).id),
    ('s3', (errands.add_job('q', '{"s":3}', 'serial', now(), priority := -1)).id),
    ('s4', (errands.add_job('q', '{"s":4}', 'serial', now() - interval '20 minutes')).id),
    ('s5', (errands.add_job('q', '{"s":5}', 'serial', now() - interval '1 hour', priority := 1)).id),
    ('u1', (errands.add_job('q', '{"u":1}', run_at := now() - interval '5 minutes')).id),
    ('u2', (errands.add_job('q', '{"u":2}')).id),
    ('u3', (errands.add_job('q', '{"u":3}', priority := 2)).id);

CREATE TEMP TABLE f1 AS SELECT * FROM errands.get_jobs('w1', '{q}', 10) WITH ORDINALITY;
SELECT is((SELECT count(*)::int FROM f1), 4,
          'a batch of 10 over a queue of 5 plus 3 unqueued jobs returns 4 jobs (Graphile #621)');
SELECT is(ARRAY(SELECT id FROM f1 WHERE queue_name = 'serial'), pg_temp.ids('s3'),
          'exactly one job of the queue is in the batch: its head by priority, run_at, id');
SELECT is(pg_temp.sorted(ARRAY(SELECT id FROM f1 WHERE queue_name IS NULL)),
          pg_temp.sorted(pg_temp.ids('u1', 'u2', 'u3')), 'plus all 3 unqueued jobs');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM f1 ORDER BY ordinality)), '{s3,u1,u2,u3}',
          'the batch is ordered by priority, run_at, id across queued and unqueued jobs');
SELECT is(pg_temp.queue_lock('serial'), 'w1', 'the queue row is locked by the worker');
SELECT is((SELECT locked_at FROM errands._queues WHERE queue_name = 'serial'), now(),
          'the queue row''s locked_at is now()');
SELECT is((SELECT count(*)::int FROM errands._jobs
           WHERE id = ANY(pg_temp.ids('s1', 's2', 's4', 's5')) AND attempts = 0 AND locked_at IS NULL), 4,
          'the other jobs of the queue are untouched');

SELECT is_empty($$SELECT * FROM errands.get_jobs('w2', '{q}', 10)$$,
                'while the queue''s job runs, another worker gets no job of the queue');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w1', '{q}', 10)$$,
                'nor does the worker running it');

-- A locked queue blocks neither unqueued jobs nor other queues, even with a
-- new job that would otherwise be the queue's head.
INSERT INTO j VALUES
    ('s0', (errands.add_job('q', '{"s":0}', 'serial', now() - interval '1 day', priority := -100)).id),
    ('u4', (errands.add_job('q', '{"u":4}')).id),
    ('o1', (errands.add_job('q', '{"o":1}', 'other', now() - interval '1 minute')).id);
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w2', '{q}', 1))), '{o1}',
          'job_count 1 during the run: the locked queue''s head (priority -100) does not take the slot; another queue''s job does');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w2', '{q}', 10))), '{u4}',
          'a batch fetch during the run gets the unqueued job, not the serial one');
SELECT is(pg_temp.queue_lock('other'), 'w2', 'the other queue is locked by its worker');
SELECT is(pg_temp.queue_lock('serial'), 'w1', 'the serial queue is still locked by w1');

-- Completing by someone else does nothing.
SELECT is_empty(format('SELECT * FROM errands.worker_complete_jobs(%L, %L)', 'w2', pg_temp.ids('s3')),
                'another worker cannot complete the running job');
SELECT is(pg_temp.queue_lock('serial'), 'w1', 'and the queue stays locked');

-- complete -> the next job in the queue.
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w1', pg_temp.ids('s3'))), pg_temp.ids('s3'),
          'w1 completes its queued job');
SELECT is(pg_temp.queue_lock('serial'), '(unlocked)', 'completing unlocks the queue');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w2', '{q}', 10))), '{s0}',
          'after complete, the next fetch returns the queue''s new head (lowest priority number)');
SELECT is(pg_temp.queue_lock('serial'), 'w2', 'the queue is now locked by w2');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w2', pg_temp.ids('s0'))), pg_temp.ids('s0'),
          'w2 completes it');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w3', '{q}', 10))), '{s2}',
          'next: equal priority, earliest run_at, lowest id');

-- fail -> the next job in the queue.
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.worker_fail_jobs('w3', pg_temp.ids('s2'), '{oops}'))),
          '{s2}', 'w3 fails its queued job');
SELECT is(pg_temp.queue_lock('serial'), '(unlocked)', 'failing unlocks the queue');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w1', '{q}', 10))), '{s4}',
          'after fail (s2 now backs off), the next fetch returns the next job: same run_at, higher id');

-- return -> the same job again.
SELECT is(ARRAY(SELECT errands.worker_return_jobs('w1', pg_temp.ids('s4'))), pg_temp.ids('s4'),
          'w1 returns the job unstarted');
SELECT is(pg_temp.queue_lock('serial'), '(unlocked)', 'returning unlocks the queue');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w2', '{q}', 10))), '{s4}',
          'the returned job is the head again');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w2', pg_temp.ids('s4'))), pg_temp.ids('s4'), 'complete it');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w2', '{q}', 10))), '{s1}',
          'then the later run_at');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w2', pg_temp.ids('s1'))), pg_temp.ids('s1'), 'complete it');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w2', '{q}', 10))), '{s5}',
          'then the higher priority number, although its run_at is the earliest');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w2', pg_temp.ids('s5'))), pg_temp.ids('s5'), 'complete it');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w2', '{q}', 10)$$,
                'only the backing-off job remains: nothing to fetch');
SELECT is(pg_temp.queue_lock('serial'), '(unlocked)', 'and the queue is unlocked');

------------------------------------------------------------------------------
-- Several queues in one batch: one job each.
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('qa1', (errands.add_job('m', queue_name := 'qa', run_at := now() - interval '1 minute')).id),
    ('qa2', (errands.add_job('m', queue_name := 'qa', run_at := now() - interval '2 minutes')).id),
    ('qa3', (errands.add_job('m', queue_name := 'qa', run_at := now() - interval '2 minutes')).id),
    ('qb1', (errands.add_job('m', queue_name := 'qb', run_at := now())).id),
    ('qb2', (errands.add_job('m', queue_name := 'qb', run_at := now(), priority := -1)).id),
    ('qb3', (errands.add_job('m', queue_name := 'qb', run_at := now() - interval '1 day', priority := 1)).id),
    -- a queue whose only job is in the future, one whose only job failed for
    -- good, and one with a stale lock (only reset_locked frees it)
    ('qc1', (errands.add_job('m', queue_name := 'qc', run_at := now() + interval '1 minute')).id),
    ('qd1', (errands.add_job('m', queue_name := 'qd', max_attempts := 1)).id),
    ('qe1', (errands.add_job('m', queue_name := 'qe')).id);
UPDATE errands._jobs SET attempts = 1 WHERE id = pg_temp.id('qd1');
UPDATE errands._queues SET locked_by = 'dead', locked_at = now() - interval '5 hours' WHERE queue_name = 'qe';

SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w5', '{m}', 10))), '{qb2,qa2}',
          'two queues yield one job each (their heads) in one batch of 10');
SELECT is(ARRAY[pg_temp.queue_lock('qa'), pg_temp.queue_lock('qb')], '{w5,w5}', 'both queues are locked');
SELECT is(ARRAY[pg_temp.queue_lock('qc'), pg_temp.queue_lock('qd')], '{(unlocked),(unlocked)}',
          'queues from which nothing was fetched stay unlocked');
SELECT is(pg_temp.queue_lock('qe'), 'dead', 'a stale queue lock is not taken over by a fetch');

------------------------------------------------------------------------------
-- job_count cuts the merged list: a queue whose head is cut off is not locked.
------------------------------------------------------------------------------
INSERT INTO j VALUES
    ('pq1', (errands.add_job('p', queue_name := 'pq', priority := 0)).id),
    ('pu1', (errands.add_job('p', priority := -10)).id),
    ('pq2', (errands.add_job('p', queue_name := 'pq2', priority := -20)).id);
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w6', '{p}', 2))), '{pq2,pu1}',
          'job_count 2: the queued head with priority -20 and the unqueued -10 job win over the queued 0 job');
SELECT is(ARRAY[pg_temp.queue_lock('pq2'), pg_temp.queue_lock('pq')], '{w6,(unlocked)}',
          'only the queue whose job was taken is locked');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('w7', '{p}', 1))), '{pq1}',
          'the left-out queue''s job is fetched next');

------------------------------------------------------------------------------
-- Queue heads (32_queue_heads.sql): the job key each queue row keeps, right
-- after each kind of change. Due jobs first (by priority, run_at, id), then the
-- earliest future one.
------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.head(qname text) RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT CASE WHEN q.head_id IS NULL THEN '(none)'
                ELSE coalesce((SELECT j.name FROM j WHERE j.id = q.head_id), '(unnamed)') END
    FROM errands._queues q WHERE q.queue_name = qname
$f$;
-- Queues whose kept head is not the head chosen afresh.
CREATE FUNCTION pg_temp.wrong_heads() RETURNS text[] LANGUAGE sql STABLE AS $f$
    SELECT coalesce(array_agg(q.queue_name ORDER BY q.queue_name), '{}')
    FROM errands._queues q CROSS JOIN LATERAL errands._queue_head(q.id) h
    WHERE (q.head_priority, q.head_run_at, q.head_id) IS DISTINCT FROM (h.priority, h.run_at, h.id)
$f$;

INSERT INTO j VALUES ('h1', (errands.add_job('h', queue_name := 'hq', run_at := now() - interval '10 minutes')).id);
SELECT is(pg_temp.head('hq'), 'h1', 'add_job to an empty queue: the job is the head');
INSERT INTO j VALUES ('h2', (errands.add_job('h', queue_name := 'hq', run_at := now() - interval '1 minute', priority := -1)).id);
SELECT is(pg_temp.head('hq'), 'h2', 'a due job of a better priority becomes the head');
INSERT INTO j VALUES ('h3', (errands.add_job('h', queue_name := 'hq', run_at := now() + interval '1 hour', priority := -5)).id);
SELECT is(pg_temp.head('hq'), 'h2', 'a future job does not displace a due head, whatever its priority');
INSERT INTO j VALUES ('h4', (errands.add_job('h', queue_name := 'hq', run_at := now() - interval '20 minutes', job_key := 'hk')).id);
SELECT is(pg_temp.head('hq'), 'h2', 'a worse due job does not displace the head');
SELECT is((errands.add_job('h', queue_name := 'hq', run_at := now() - interval '20 minutes',
                           priority := -2, job_key := 'hk')).id, pg_temp.id('h4'),
          'setup: a key replace updates the job in place');
SELECT is(pg_temp.head('hq'), 'h4', 'key replace with a better priority: the replaced job is the head');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('wh', '{h}', 5))), '{h4}',
          'the fetch takes the head');
SELECT is(pg_temp.head('hq'), 'h2', 'taking the head chooses the next one (the queue is locked meanwhile)');
SELECT is(ARRAY(SELECT id FROM errands.worker_fail_jobs('wh', pg_temp.ids('h4'), '{boom}')), pg_temp.ids('h4'),
          'setup: the try fails (retry in the future)');
SELECT is(pg_temp.head('hq'), 'h2', 'a failed job retried later does not displace a due head');
SELECT is((errands.remove_job('hk')).id, pg_temp.id('h4'), 'setup: remove_job');
SELECT is(pg_temp.head('hq'), 'h2', 'removing a job that is not the head keeps the head');
SELECT is(ARRAY(SELECT id FROM errands.permanently_fail_jobs(pg_temp.ids('h2'), 'no')), pg_temp.ids('h2'),
          'setup: permanently_fail_jobs of the head');
SELECT is(pg_temp.head('hq'), 'h1', 'a head failed for good: the next due job');
SELECT is(ARRAY(SELECT id FROM errands.reschedule_jobs(pg_temp.ids('h1'), now() + interval '2 hours')),
          pg_temp.ids('h1'), 'setup: reschedule the head to the future');
SELECT is(pg_temp.head('hq'), 'h3', 'no due job left: the earliest future job (not the best priority)');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('wh', '{h}', 5))), '{}',
          'a queue whose head is in the future yields nothing');
SELECT is(ARRAY(SELECT id FROM errands.cancel_jobs(pg_temp.ids('h3'))), pg_temp.ids('h3'),
          'setup: cancel the head');
SELECT is(pg_temp.head('hq'), 'h1', 'a cancelled head: the next earliest');
SELECT is(ARRAY(SELECT id FROM errands.reschedule_jobs(pg_temp.ids('h2'), now() - interval '1 minute',
                                                       attempts := 0)),
          pg_temp.ids('h2'), 'setup: revive the failed job, due');
SELECT is(pg_temp.head('hq'), 'h2', 'a revived due job displaces a future head');
SELECT is(pg_temp.names(ARRAY(SELECT id FROM errands.get_jobs('wh', '{h}', 5))), '{h2}',
          'and is fetched');
UPDATE errands._jobs SET locked_at = now() - interval '5 hours' WHERE id = pg_temp.id('h2');
UPDATE errands._queues SET locked_at = now() - interval '5 hours' WHERE queue_name = 'hq';
SELECT is(pg_temp.head('hq'), 'h1', 'while it runs, the head is the next job');
SELECT cmp_ok(errands.reset_locked(), '>=', 1, 'setup: reset_locked rescues the stale job');
SELECT is(pg_temp.head('hq'), 'h2', 'a rescued due job is the head again');
SELECT is(pg_temp.wrong_heads(), '{}', 'every queue of this file keeps the head chosen afresh');

------------------------------------------------------------------------------
-- Invariant over all the above: no queue has two locked jobs, and a queue is
-- locked exactly while one of its jobs is (stale lock on qe aside).
------------------------------------------------------------------------------
SELECT is_empty($$
    SELECT q.queue_name
    FROM errands._queues q
    LEFT JOIN errands._jobs x ON x.job_queue_id = q.id AND x.locked_at IS NOT NULL
    WHERE q.queue_name <> 'qe'
    GROUP BY q.queue_name, q.locked_by
    HAVING count(x.id) > 1 OR (count(x.id) = 1) <> (q.locked_by IS NOT NULL)
        OR (count(x.id) = 1 AND max(x.locked_by) <> q.locked_by)
$$, 'every queue is locked by the worker of its one running job, or unlocked with none running');

SELECT * FROM finish();
ROLLBACK;
