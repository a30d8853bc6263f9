-- Crashed-worker rescue: register_worker, heartbeat, rescue_workers (dead by a
-- released advisory lock or a stale heartbeat), unregister_worker.
-- A free lock proves death only errands._rescue_grace() (1.5 s) after the server
-- started (rescue_workers spares heartbeats older than the server): wait 2 s.
DO $$ BEGIN
    PERFORM pg_sleep(greatest(0, 2.0 - extract(epoch FROM clock_timestamp() - pg_postmaster_start_time())));
END $$;
BEGIN;
SELECT plan(25);

CREATE FUNCTION pg_temp.job_state(job_id bigint) RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT (attempts, locked_by)::text FROM errands._jobs WHERE id = job_id
$f$;
CREATE FUNCTION pg_temp.queue_lock(name text) RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT coalesce(q.locked_by, '(unlocked)') FROM errands._queues q WHERE q.queue_name = name
$f$;

SELECT has_table('errands', '_workers', 'errands._workers exists');
SELECT has_function('errands', 'rescue_workers', ARRAY['interval'], 'rescue_workers(interval) exists');

-- Three workers with one queued and one unqueued job each.
SELECT errands.add_job('w50', '{"n": 1}', queue_name := 'q_dead', job_key := 'dead1');
SELECT errands.add_job('w50', '{"n": 2}', job_key := 'dead2');
SELECT errands.add_job('w50', '{"n": 3}', queue_name := 'q_alive', job_key := 'alive1');
SELECT errands.add_job('w50', '{"n": 4}', job_key := 'alive2');
SELECT errands.add_job('w50', '{"n": 5}', queue_name := 'q_stale', job_key := 'stale1');
SELECT errands.add_job('w50', '{"n": 6}', job_key := 'stale2');
CREATE TEMP TABLE k AS SELECT key, id FROM errands._jobs;
CREATE FUNCTION pg_temp.id(name text) RETURNS bigint LANGUAGE sql STABLE AS
    $f$ SELECT id FROM k WHERE key = name $f$;

SELECT lives_ok($$SELECT errands.register_worker('w-dead', 'host-a', 101)$$, 'register_worker works');
SELECT errands.register_worker('w-alive', 'host-b', 102);
SELECT errands.register_worker('w-stale', 'host-c', 103);
SELECT is((SELECT (host, pid)::text FROM errands._workers WHERE id = 'w-dead'), '(host-a,101)',
          'register_worker stores host and pid');
SELECT lives_ok($$SELECT errands.register_worker('w-dead', 'host-a', 101)$$,
                'register_worker is an upsert');
SELECT is(errands.heartbeat('w-alive'), true, 'heartbeat of a registered worker: true');
SELECT is(errands.heartbeat('w-nobody'), false, 'heartbeat of an unknown worker: false');

-- w-alive holds its lock (in this very session); w-dead's lock is held by no one.
SELECT pg_advisory_lock(hashtextextended('w-alive', 0));
SELECT pg_advisory_lock(hashtextextended('w-stale', 0));

-- Lock the jobs as get_jobs would (attempts + 1), with old locks for w-alive.
UPDATE errands._jobs SET attempts = attempts + 1, locked_at = now() - interval '5 hours',
       locked_by = CASE WHEN key LIKE 'dead%' THEN 'w-dead'
                        WHEN key LIKE 'alive%' THEN 'w-alive' ELSE 'w-stale' END;
UPDATE errands._queues SET locked_at = now() - interval '5 hours',
       locked_by = CASE queue_name WHEN 'q_dead' THEN 'w-dead'
                                   WHEN 'q_alive' THEN 'w-alive' ELSE 'w-stale' END
WHERE queue_name IN ('q_dead', 'q_alive', 'q_stale');
UPDATE errands._jobs SET run_at = now() + interval '1 hour' WHERE key = 'dead2';

-- Lock free but heartbeat fresh (< errands._rescue_grace()): a live worker reconnecting.
SELECT is(errands.rescue_workers(), 0, 'a free lock with a heartbeat under 1.5 s old: no rescue');
-- Heartbeat from before the server started: the worker may still reconnect
-- (rescue_workers waits for heartbeat_timeout).
UPDATE errands._workers SET last_heartbeat = pg_postmaster_start_time() - interval '1 second'
WHERE id = 'w-dead';
SELECT is(errands.rescue_workers(now() - pg_postmaster_start_time() + interval '1 minute'), 0,
          'a free lock with a heartbeat from before the server started: no rescue (until the timeout)');
UPDATE errands._workers SET last_heartbeat = now() - interval '1.6 seconds' WHERE id = 'w-dead';
SELECT is(errands.rescue_workers(), 2, 'rescue_workers: the dead worker''s 2 jobs (its lock is free)');
SELECT is(pg_temp.job_state(pg_temp.id('dead1')), '(1,)', 'dead worker''s job unlocked, attempt kept');
SELECT is(pg_temp.job_state(pg_temp.id('dead2')), '(1,)', 'dead worker''s other job unlocked, attempt kept');
SELECT ok((SELECT bool_and(last_error LIKE '%worker w-dead died%') FROM errands._jobs
           WHERE key LIKE 'dead%'), 'last_error says the worker died');
SELECT ok((SELECT run_at <= now() FROM errands._jobs WHERE key = 'dead1'),
          'the rescued job is runnable at once (no backoff)');
SELECT ok((SELECT run_at > now() + interval '50 minutes' FROM errands._jobs WHERE key = 'dead2'),
          'a rescued job scheduled later keeps its run_at');
SELECT is(pg_temp.queue_lock('q_dead'), '(unlocked)', 'the dead worker''s queue is unlocked');
SELECT ok(NOT EXISTS (SELECT 1 FROM errands._workers WHERE id = 'w-dead'), 'the dead worker''s row is gone');

SELECT is(pg_temp.job_state(pg_temp.id('alive1')) || pg_temp.job_state(pg_temp.id('alive2')),
          '(1,w-alive)(1,w-alive)', 'a live worker''s jobs are untouched however old their lock');
SELECT is(pg_temp.queue_lock('q_alive'), 'w-alive', 'a live worker''s queue stays locked');

-- w-stale holds its lock but stopped heartbeating.
UPDATE errands._workers SET last_heartbeat = now() - interval '31 seconds' WHERE id = 'w-stale';
SELECT is(errands.rescue_workers(interval '1 minute'), 0, 'a heartbeat younger than the timeout: no rescue');
SELECT is(errands.rescue_workers(), 2, 'a heartbeat older than 30 s (default): its 2 jobs rescued');
SELECT is(pg_temp.job_state(pg_temp.id('stale1')) || pg_temp.queue_lock('q_stale'),
          '(1,)(unlocked)', 'stale worker: job and queue unlocked');
SELECT is(pg_temp.job_state(pg_temp.id('alive1')), '(1,w-alive)', 'the live worker is still untouched');

-- Clean exit.
SELECT is(errands.unregister_worker('w-alive'), 2, 'unregister_worker releases what is still locked');
SELECT ok(NOT EXISTS (SELECT 1 FROM errands._workers WHERE id = 'w-alive')
          AND pg_temp.queue_lock('q_alive') = '(unlocked)', 'unregister_worker: row gone, queue unlocked');

SELECT pg_advisory_unlock_all();
SELECT * FROM finish();
ROLLBACK;
