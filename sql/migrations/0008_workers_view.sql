-- What `errands workers` shows: every registered worker, whether it is alive,
-- and the jobs it has locked.

CREATE VIEW errands.workers AS
SELECT w.id,
       w.host,
       w.pid,
       w.started_at,
       w.last_heartbeat,
       CASE WHEN NOT errands._worker_lock_held(w.id) THEN 'dead'
            WHEN w.last_heartbeat < now() - interval '30 seconds' THEN 'hung'
            ELSE 'alive' END AS state,
       coalesce((SELECT array_agg(j.id ORDER BY j.id) FROM errands._jobs j
                 WHERE j.locked_by = w.id), '{}') AS running_job_ids
FROM errands._workers w;
COMMENT ON VIEW errands.workers IS
    'Registered workers: state alive, hung (heartbeat older than 30 s) or dead (no session holds its lock; rescue_workers() will release its jobs), and the ids of the jobs it has locked.';
REVOKE ALL ON errands.workers FROM PUBLIC;
