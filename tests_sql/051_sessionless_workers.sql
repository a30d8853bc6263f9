-- Workers without a session lock (PgBouncer transaction pooling):
-- register_worker(..., session_lock => false) is never declared dead for want of
-- an advisory lock, only by heartbeat timeout; the view shows it alive/hung.
BEGIN;
SELECT plan(11);

SELECT has_function('errands', 'register_worker', ARRAY['text', 'text', 'integer', 'boolean'],
                    'register_worker(text, text, integer, boolean) exists');
SELECT has_function('errands', 'register_worker', ARRAY['text', 'text', 'integer'],
                    'register_worker(text, text, integer) still exists');

SELECT errands.add_job('w51', '{"n": 1}', queue_name := 'q51', job_key := 'nolock1');
SELECT errands.add_job('w51', '{"n": 2}', job_key := 'locked1');

SELECT lives_ok($$SELECT errands.register_worker('w-nolock', 'host-a', 201, false)$$,
                'register_worker with session_lock => false');
SELECT errands.register_worker('w-locked', 'host-b', 202);   -- holds no lock: dead
SELECT throws_ok($$SELECT errands.register_worker('w-x', NULL, NULL, NULL)$$, '22023',
                 'errands: session_lock must be true or false, got NULL',
                 'session_lock NULL is refused');
SELECT is((SELECT array_agg((id, session_lock)::text ORDER BY id) FROM errands._workers),
          ARRAY['(w-locked,t)', '(w-nolock,f)'], 'session_lock is stored; the 3-argument form means true');

UPDATE errands._jobs SET attempts = 1, locked_at = now(),
       locked_by = CASE key WHEN 'nolock1' THEN 'w-nolock' ELSE 'w-locked' END;
UPDATE errands._queues SET locked_at = now(), locked_by = 'w-nolock' WHERE queue_name = 'q51';

SELECT is((SELECT array_agg((id, state, session_lock)::text ORDER BY id) FROM errands.workers),
          ARRAY['(w-locked,dead,t)', '(w-nolock,alive,f)'],
          'errands.workers: a sessionless worker is alive without a lock');
-- Past the grace (errands._rescue_grace(), 1.5 s) rescue_workers gives a lockless
-- worker to re-take its lock (both rows, so the sessionless one is spared by
-- session_lock alone).
UPDATE errands._workers SET last_heartbeat = now() - interval '1.6 seconds';
SELECT is(errands.rescue_workers(), 1, 'rescue_workers: only the locking worker without its lock');
SELECT is((SELECT locked_by FROM errands._jobs WHERE key = 'nolock1'), 'w-nolock',
          'the sessionless worker keeps its job');

UPDATE errands._workers SET last_heartbeat = now() - interval '31 seconds' WHERE id = 'w-nolock';
SELECT is((SELECT state FROM errands.workers WHERE id = 'w-nolock'), 'hung',
          'a stale heartbeat: hung');
SELECT is(errands.rescue_workers(), 1, 'heartbeat timeout: the sessionless worker is rescued');
SELECT is((SELECT (locked_by, (SELECT locked_by FROM errands._queues WHERE queue_name = 'q51'))::text
           FROM errands._jobs WHERE key = 'nolock1'), '(,)', 'its job and queue are unlocked');

SELECT * FROM finish();
ROLLBACK;
