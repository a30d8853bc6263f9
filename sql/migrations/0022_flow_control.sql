-- Flow control (issue 13): concurrency and rate limits and pauses per named queue
-- and per task, enforced by get_jobs.
--
-- What the user set lives in _queue_limits / _task_limits, one row per exact
-- name or pattern ('tenant:*': every name with that prefix, each counted on its
-- own). The resolved values are copied onto each _queues / _tasks row (when the
-- row is created and when a limit changes), so get_jobs reads one row per queue
-- or task and never matches patterns.
CREATE TABLE errands._queue_limits (
    pattern text PRIMARY KEY
        CONSTRAINT queue_limits_pattern_length CHECK (length(pattern) BETWEEN 1 AND 128),
    concurrency integer CONSTRAINT queue_limits_concurrency CHECK (concurrency >= 1),
    rate_limit integer CONSTRAINT queue_limits_rate_limit CHECK (rate_limit >= 1),
    rate_period interval CONSTRAINT queue_limits_rate_period CHECK (rate_period > interval '0'),
    paused boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT queue_limits_rate CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);
CREATE TABLE errands._task_limits (
    pattern text PRIMARY KEY
        CONSTRAINT task_limits_pattern_length CHECK (length(pattern) BETWEEN 1 AND 128),
    concurrency integer CONSTRAINT task_limits_concurrency CHECK (concurrency >= 1),
    rate_limit integer CONSTRAINT task_limits_rate_limit CHECK (rate_limit >= 1),
    rate_period interval CONSTRAINT task_limits_rate_period CHECK (rate_period > interval '0'),
    paused boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT task_limits_rate CHECK ((rate_limit IS NULL) = (rate_period IS NULL))
);
ALTER TABLE errands._queue_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE errands._task_limits ENABLE ROW LEVEL SECURITY;

-- A named queue: concurrency (default 1, Graphile's serial queue) and running,
-- the number of its jobs locked now; locked_at/locked_by are set while it is
-- full (running >= concurrency), so "locked_at IS NULL" still means "may start
-- a job". starts: the start times of its last rate_limit jobs (strict sliding
-- window).
ALTER TABLE errands._queues
    ADD COLUMN concurrency integer NOT NULL DEFAULT 1,
    ADD COLUMN running integer NOT NULL DEFAULT 0,
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    ADD COLUMN rate_limit integer,
    ADD COLUMN rate_period interval,
    ADD COLUMN starts timestamptz[];
-- A task: running is kept only while concurrency is set (a task without a limit
-- costs nothing on fetch and completion).
ALTER TABLE errands._tasks
    ADD COLUMN concurrency integer,
    ADD COLUMN running integer NOT NULL DEFAULT 0,
    ADD COLUMN paused boolean NOT NULL DEFAULT false,
    ADD COLUMN rate_limit integer,
    ADD COLUMN rate_period interval,
    ADD COLUMN starts timestamptz[];

-- Queues locked before this migration: one running job each.
UPDATE errands._queues q SET running = (SELECT count(*) FROM errands._jobs j
                                        WHERE j.job_queue_id = q.id AND j.locked_at IS NOT NULL)
WHERE q.locked_at IS NOT NULL;
