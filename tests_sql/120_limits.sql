-- Flow control: queue and task concurrency limits, strict rate limits, patterns,
-- pauses, and the release of slots by every outcome and rescue.
BEGIN;
SELECT plan(68);
\ir include/jobs_by_name.sql

-- Names of the jobs of a fetch, sorted.
CREATE FUNCTION pg_temp.fetch(worker text, tasks text[], n integer) RETURNS text[]
LANGUAGE sql AS $f$
    SELECT coalesce(array_agg(j.name ORDER BY j.name), '{}')
    FROM errands.get_jobs(worker, tasks, n) g JOIN j USING (id)
$f$;
CREATE FUNCTION pg_temp.running(q text) RETURNS integer LANGUAGE sql STABLE AS
    $f$ SELECT running FROM errands._queues WHERE queue_name = q $f$;
CREATE FUNCTION pg_temp.task_running(t text) RETURNS integer LANGUAGE sql STABLE AS
    $f$ SELECT running FROM errands._tasks WHERE identifier = t $f$;

------------------------------------------------------------------------------
-- Queue concurrency
------------------------------------------------------------------------------
SELECT lives_ok($$SELECT errands.set_queue_limits('cq', 3)$$, 'set_queue_limits before the queue exists');
INSERT INTO j SELECT 'c' || i, (errands.add_job('qc', json_build_object('i', i), 'cq',
                                                now() - (10 - i) * interval '1 minute')).id
FROM generate_series(1, 5) i;
SELECT is(pg_temp.fetch('w1', '{qc}', 10), '{c1,c2,c3}',
          'concurrency 3: one batch takes the first 3 jobs of the queue, in queue order');
SELECT is((SELECT (concurrency, running, backlog)::text FROM errands.queues WHERE queue_name = 'cq'),
          '(3,3,2)', 'errands.queues shows the limit, 3 running and a backlog of 2');
SELECT is(pg_temp.queue_lock('cq'), 'w1', 'a full queue is locked (by the worker that filled it)');
SELECT is(pg_temp.fetch('w2', '{qc}', 10), '{}', 'a full queue yields nothing to another worker');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('w1', pg_temp.ids('c1'))), pg_temp.ids('c1'),
          'complete one');
SELECT is(pg_temp.queue_lock('cq'), '(unlocked)', 'a queue below its limit is unlocked');
SELECT is(pg_temp.fetch('w2', '{qc}', 10), '{c4}', 'its slot is free: exactly one more job starts');
-- Lower the limit while 3 run.
SELECT errands.set_queue_limits('cq', 1);
SELECT is(pg_temp.fetch('w3', '{qc}', 10), '{}', 'limit lowered to 1 while 3 run: nothing starts');
SELECT errands.worker_complete_jobs('w1', pg_temp.ids('c2', 'c3'));
SELECT is(pg_temp.fetch('w3', '{qc}', 10), '{}', 'still 1 running (c4): nothing starts');
SELECT errands.worker_fail_jobs('w2', pg_temp.ids('c4'), '{boom}');
UPDATE errands._jobs SET run_at = now() - interval '1 hour' WHERE id = pg_temp.id('c4');
SELECT is(pg_temp.fetch('w3', '{qc}', 10), '{c4}', 'a failed try frees the slot; the retry is the head');
SELECT errands.worker_snooze_jobs('w3', pg_temp.ids('c4'), ARRAY[interval '1 hour']);
SELECT is(pg_temp.running('cq'), 0, 'a snooze frees the slot');
SELECT is(pg_temp.fetch('w3', '{qc}', 10), '{c5}', 'and the next job starts');
SELECT errands.worker_return_jobs('w3', pg_temp.ids('c5'));
SELECT is(pg_temp.running('cq'), 0, 'a job handed back frees the slot');
-- NULL removes the limit: back to a serial queue.
SELECT errands.set_queue_limits('cq', NULL);
SELECT is((SELECT concurrency FROM errands._queues WHERE queue_name = 'cq'), 1,
          'concurrency NULL: the default 1 (serial queue)');
SELECT is((SELECT count(*)::int FROM errands.limits WHERE name = 'cq'), 0,
          'a limits row with nothing set is deleted');

------------------------------------------------------------------------------
-- Patterns: one limit per tenant queue, without setup per tenant
------------------------------------------------------------------------------
SELECT errands.add_job('qt', '{}', 'tenant:old');
SELECT errands.set_queue_limits('tenant:*', 2);
INSERT INTO j SELECT 't' || i || '_' || k, (errands.add_job('qt', '{}', 'tenant:' || i)).id
FROM generate_series(1, 2) i, generate_series(1, 3) k;
SELECT is((SELECT array_agg(concurrency ORDER BY queue_name) FROM errands._queues
           WHERE queue_name LIKE 'tenant:%'), '{2,2,2}',
          'the pattern applies to queues created before and after it');
SELECT is(pg_temp.fetch('w1', '{qt}', 20), '{t1_1,t1_2,t2_1,t2_2}', 'two jobs of each new tenant start');
SELECT is((SELECT array_agg(running ORDER BY queue_name) FROM errands._queues
           WHERE queue_name LIKE 'tenant:%'), '{2,2,1}',
          'each tenant counts on its own: 2 + 2 running, plus the old tenant''s one job');
SELECT errands.set_queue_limits('tenant:1', 5);
SELECT is((SELECT array_agg(concurrency ORDER BY queue_name) FROM errands._queues
           WHERE queue_name LIKE 'tenant:%'), '{5,2,2}', 'an exact name beats the pattern');
SELECT is(pg_temp.fetch('w1', '{qt}', 20), '{t1_3}', 'tenant:1 may now run its third job');

------------------------------------------------------------------------------
-- Queue rate limit (strict sliding window)
------------------------------------------------------------------------------
SELECT errands.set_queue_limits('rq', 10, 3, interval '1 hour');
INSERT INTO j SELECT 'r' || i, (errands.add_job('qr', '{}', 'rq', priority := i)).id
FROM generate_series(1, 5) i;
SELECT is(pg_temp.fetch('w1', '{qr}', 10), '{r1,r2,r3}', 'rate 3 per hour: 3 start, by priority');
SELECT errands.worker_complete_jobs('w1', pg_temp.ids('r1', 'r2', 'r3'));
SELECT is(pg_temp.fetch('w1', '{qr}', 10), '{}', 'finished or not, no 4th start within the hour');
UPDATE errands._queues SET starts = ARRAY[clock_timestamp() - interval '61 minutes',
                                          clock_timestamp() - interval '59 minutes',
                                          clock_timestamp() - interval '59 minutes']
WHERE queue_name = 'rq';
SELECT is(pg_temp.fetch('w1', '{qr}', 10), '{r4}', 'one start left the window: exactly one more');
SELECT is(cardinality((SELECT starts FROM errands._queues WHERE queue_name = 'rq')), 3,
          'only the last rate_limit start times are kept');

------------------------------------------------------------------------------
-- Task concurrency, across queues and unqueued jobs, and priorities
------------------------------------------------------------------------------
INSERT INTO j VALUES ('k1', (errands.add_job('tk', '{}', priority := 1)).id),
                     ('k2', (errands.add_job('tk', '{}', priority := -1)).id),
                     ('k3', (errands.add_job('tk', '{}', 'tkq', priority := 0)).id),
                     ('k4', (errands.add_job('tk', '{}')).id),
                     ('kb', (errands.add_job('tk', '[1, 2, 3]', priority := 5)).id);
SELECT is(pg_temp.fetch('w1', '{tk}', 1), '{k2}', 'setup: one job of tk runs before its limit');
SELECT errands.set_task_limits('tk', 2);
SELECT is(pg_temp.task_running('tk'), 1, 'setting a task limit counts the job already running');
SELECT is(pg_temp.fetch('w2', '{tk}', 10), '{k3}',
          'task concurrency 2: one more starts, the best by priority (a queued one)');
SELECT is(pg_temp.fetch('w3', '{tk}', 10), '{}', 'the task is full');
SELECT errands.worker_complete_jobs('w1', pg_temp.ids('k2'));
SELECT errands.worker_fail_jobs_now('w2', pg_temp.ids('k3'), '{no}');
SELECT is(pg_temp.task_running('tk'), 0, 'complete and fail-now free the task slots');
SELECT is(pg_temp.fetch('w3', '{tk}', 10), '{k1,k4}', 'two start again');
-- Rescue of a dead worker's job frees its slot.
SELECT errands.force_unlock_workers('{w3}');
SELECT is(pg_temp.task_running('tk'), 0, 'force_unlock_workers frees the slots');
SELECT is(pg_temp.fetch('w4', '{tk}', 10), '{k1,k4}', 'the rescued jobs start again');
UPDATE errands._jobs SET locked_at = now() - interval '5 hours' WHERE id = pg_temp.id('k1');
SELECT is(errands.reset_locked(), 1, 'reset_locked rescues the stale job');
SELECT is(pg_temp.task_running('tk'), 1, 'and frees its slot only');
SELECT is(pg_temp.fetch('w4', '{tk}', 10), '{k1}', 'a batch job counts as one job like any other');
SELECT errands.worker_complete_jobs('w4', pg_temp.ids('k1', 'k4'));
SELECT is(pg_temp.fetch('w4', '{tk}', 10), '{kb}', 'the batch job starts');
SELECT errands.set_task_limits('tk', NULL);
SELECT is((SELECT (concurrency, running)::text FROM errands._tasks WHERE identifier = 'tk'), '(,0)',
          'NULL removes the task limit (and its count)');

------------------------------------------------------------------------------
-- Task rate limit, task patterns, keys
------------------------------------------------------------------------------
SELECT errands.set_task_limits('mail_*', NULL, 2, interval '1 minute');
INSERT INTO j SELECT 'm' || i, (errands.add_job('mail_send', '{}', job_key := 'mk' || i)).id
FROM generate_series(1, 4) i;
SELECT is(pg_temp.fetch('w1', '{mail_send}', 10), '{m1,m2}', 'a task pattern: rate 2 per minute');
SELECT is((errands.add_job('mail_send', '{"new": true}', job_key := 'mk3')).id, pg_temp.id('m3'),
          'a waiting job held back by a limit is still replaced by its key');
SELECT is(pg_temp.fetch('w1', '{mail_send}', 10), '{}', 'no third start within the minute');

------------------------------------------------------------------------------
-- Pauses
------------------------------------------------------------------------------
INSERT INTO j VALUES ('p1', (errands.add_job('pq_task', '{}', 'pq')).id),
                     ('p2', (errands.add_job('pt', '{}')).id),
                     ('p3', (errands.add_job('pt', '{}', 'other_q')).id);
SELECT errands.pause_queue('pq');
SELECT errands.pause_task('pt');
SELECT is(pg_temp.fetch('w1', '{pq_task,pt}', 10), '{}', 'paused queue and task: nothing starts');
SELECT is((SELECT paused FROM errands.queues WHERE queue_name = 'pq'), true, 'errands.queues shows the pause');
SELECT is((SELECT paused FROM errands.task_limits WHERE task_identifier = 'pt'), true,
          'errands.task_limits shows the pause');
SELECT errands.resume_queue('pq');
SELECT is(pg_temp.fetch('w1', '{pq_task,pt}', 10), '{p1}', 'resume_queue: its job starts');
SELECT errands.resume_task('pt');
SELECT is(pg_temp.fetch('w1', '{pq_task,pt}', 10), '{p2,p3}', 'resume_task: its jobs start, in any queue');
SELECT is((SELECT count(*)::int FROM errands.limits WHERE name IN ('pq', 'pt')), 0,
          'resumed with nothing else set: no limits row left');

------------------------------------------------------------------------------
-- Rescue of a dead worker (rescue_workers' release) and completion with history
------------------------------------------------------------------------------
SELECT errands.set_queue_limits('hq', 2);
SELECT errands.set_task_limits('ht', 1);
INSERT INTO j VALUES ('h1', (errands.add_job('ht', '{}', 'hq')).id),
                     ('h2', (errands.add_job('hq_other', '{}', 'hq')).id);
SELECT is(pg_temp.fetch('dead', '{ht,hq_other}', 10), '{h1,h2}', 'setup: a worker takes both');
SELECT errands._release_workers(ARRAY['dead'], 'died');
SELECT is((pg_temp.running('hq'), pg_temp.task_running('ht'))::text, '(0,0)',
          'the rescue of a dead worker frees its queue and task slots');
SELECT errands.set_retention('1 hour');
SELECT is(pg_temp.fetch('w5', '{ht,hq_other}', 10), '{h1,h2}', 'the rescued jobs start again');
SELECT errands.worker_complete_jobs('w5', pg_temp.ids('h1', 'h2'), ARRAY['{"r": 1}', NULL]::json[]);
SELECT is((pg_temp.running('hq'), pg_temp.task_running('ht'))::text, '(0,0)',
          'completing with history kept frees the slots too');
SELECT errands.set_retention('0');

------------------------------------------------------------------------------
-- Queue heads (32_queue_heads.sql) under flow control, task filters and flags
------------------------------------------------------------------------------
CREATE FUNCTION pg_temp.head(qname text) RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT CASE WHEN q.head_id IS NULL THEN '(none)'
                ELSE coalesce((SELECT j.name FROM j WHERE j.id = q.head_id), '(unnamed)') END
    FROM errands._queues q WHERE q.queue_name = qname
$f$;
CREATE FUNCTION pg_temp.wrong_heads() RETURNS text[] LANGUAGE sql STABLE AS $f$
    SELECT coalesce(array_agg(q.queue_name ORDER BY q.queue_name), '{}')
    FROM errands._queues q CROSS JOIN LATERAL errands._queue_head(q.id) h
    WHERE (q.head_priority, q.head_run_at, q.head_id) IS DISTINCT FROM (h.priority, h.run_at, h.id)
$f$;
SELECT errands.set_queue_limits('hc', 2);
INSERT INTO j SELECT 'x' || i, (errands.add_job('hx', json_build_object('i', i), 'hc',
                                                now() - (10 - i) * interval '1 minute')).id
FROM generate_series(1, 4) i;
SELECT is(pg_temp.fetch('w1', '{hx}', 10), '{x1,x2}', 'concurrency 2: two jobs of the queue in one batch');
SELECT is((pg_temp.head('hc'), pg_temp.queue_lock('hc'))::text, '(x3,w1)',
          'the full queue keeps its next head while it is locked');
SELECT errands.worker_complete_jobs('w1', pg_temp.ids('x1'));
SELECT is(pg_temp.fetch('w2', '{hx}', 10), '{x3}', 'a freed slot: the kept head starts');
SELECT is(pg_temp.head('hc'), 'x4', 'and the head moves on');
SELECT errands.pause_queue('hc');
SELECT errands.worker_complete_jobs('w1', pg_temp.ids('x2'));
SELECT is((pg_temp.fetch('w2', '{hx}', 10), pg_temp.head('hc'))::text, '({},x4)',
          'paused with a free slot: nothing starts, the head is kept');
SELECT errands.resume_queue('hc');
SELECT is(pg_temp.fetch('w2', '{hx}', 10), '{x4}', 'resumed: the head starts');
SELECT is(pg_temp.head('hc'), '(none)', 'no job left to start: no head');
-- A head whose task the worker does not serve, or which has a forbidden flag:
-- the queue is walked further for one it may take.
INSERT INTO j VALUES
    ('f1', (errands.add_job('fa', '{}', 'hf', priority := -1)).id),
    ('f2', (errands.add_job('fb', '{}', 'hf')).id),
    ('g1', (errands.add_job('fg', '{}', 'hg', priority := -1, flags := '{x}')).id),
    ('g2', (errands.add_job('fg', '{}', 'hg')).id);
SELECT is((pg_temp.head('hf'), pg_temp.head('hg'))::text, '(f1,g1)', 'setup: heads by priority');
SELECT is(pg_temp.fetch('w3', '{fb}', 10), '{f2}', 'a head of another task: the queue''s job of this task starts');
SELECT is((SELECT coalesce(array_agg(j.name), '{}') FROM errands.get_jobs('w3', '{fg}', 10, '{x}') g JOIN j USING (id)),
          '{g2}', 'a head with a forbidden flag: the queue''s next job starts');
SELECT is(pg_temp.wrong_heads(), '{}', 'every queue of this file keeps the head chosen afresh');

------------------------------------------------------------------------------
-- Bad input: 22023 naming the value, nothing changed
------------------------------------------------------------------------------
SELECT is(pg_temp.error_of($$SELECT errands.set_queue_limits('bad', 0)$$),
          '22023: errands: concurrency must be at least 1 (NULL: no limit), got 0', 'concurrency 0');
SELECT is(pg_temp.error_of($$SELECT errands.set_task_limits('bad', NULL, 5)$$),
          '22023: errands: rate_limit and rate_period go together, got rate_limit 5 and rate_period NULL',
          'a rate limit without a period');
SELECT is(pg_temp.error_of($$SELECT errands.set_queue_limits('bad', NULL, 5, interval '-1 second')$$),
          '22023: errands: rate_period must be a finite interval > 0, got -00:00:01', 'a negative period');
SELECT is(pg_temp.error_of($$SELECT errands.pause_queue('a*b')$$),
          '22023: errands: queue_name ''a*b'' is not a name or a pattern: ''*'' may only end a non-empty prefix (''tenant:*'')',
          'a star inside a name');
SELECT is(pg_temp.error_of($$SELECT errands.pause_task(NULL)$$),
          '22023: errands: task_identifier must be 1 to 128 characters, got NULL', 'a NULL name');
SELECT is((SELECT count(*)::int FROM errands.limits WHERE name IN ('bad', 'a*b')), 0,
          'rejected calls change nothing');

SELECT * FROM finish();
ROLLBACK;
