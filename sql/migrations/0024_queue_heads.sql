-- Fetch cost flat in the number of named queues (issue 17).
--
-- Each named queue keeps its head on its row: the key (priority, run_at, id)
-- of the job a fetch would look at first, kept by the triggers of
-- sql/schema/32_queue_heads.sql wherever a job of the queue is added, taken,
-- released, changed or deleted. queues_ready indexes the queues that may start
-- a job (not full, not paused) by that key, so get_jobs walks queue heads in
-- job order and stops after job_count of them, instead of probing every queue.
ALTER TABLE errands._queues
    ADD COLUMN head_priority smallint,
    ADD COLUMN head_run_at timestamptz,
    ADD COLUMN head_id bigint;
CREATE INDEX queues_ready ON errands._queues (head_priority, head_run_at, head_id)
    WHERE head_id IS NOT NULL AND locked_at IS NULL AND NOT paused;

-- The heads of the queues that exist: the best due job, else the earliest one
-- (32_queue_heads.sql says why).
UPDATE errands._queues q
SET head_priority = h.priority, head_run_at = h.run_at, head_id = h.id
FROM (SELECT DISTINCT ON (j.job_queue_id) j.job_queue_id, j.priority, j.run_at, j.id
      FROM errands._jobs j
      WHERE j.job_queue_id IS NOT NULL AND j.is_available
      ORDER BY j.job_queue_id, j.run_at > now(),
               CASE WHEN j.run_at > now() THEN j.run_at END, j.priority, j.run_at, j.id) h
WHERE h.job_queue_id = q.id;
