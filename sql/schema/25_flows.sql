-- Job dependencies and flows (issue 14): add_job(..., depends_on), add_flow,
-- dependency_results, cancel_flow, the errands.flow_steps view, and the hooks
-- the outcome functions call.
--
-- Bookkeeping: errands._job_dependencies holds one edge per (dependent, job it
-- depends on); a waiting job's errands._jobs.waiting_for counts its unresolved
-- edges and is decremented by the transaction that completes a dependency (no
-- scan, no poller). The job whose counter reaches 0 gets waiting_for NULL: it is
-- fetchable from then on (is_available includes waiting_for IS NULL) and
-- errands:jobs is notified in that same transaction. Two transactions completing
-- the last two dependencies of a job both update its row: the second waits for
-- the first's row lock and decrements the value the first committed, so the job
-- is released exactly once.
--
-- Failure: a dependency that failed for good stays in errands.jobs as failed
-- and reschedule_jobs can revive it, so its dependents keep waiting (the flow
-- pauses and goes on after a retry) and only run-anyway dependents go on. When
-- a dependency is cancelled (cancel_flow, or the cancel functions), its
-- dependents are cancelled, recursively, with a last_error naming the cause;
-- run-anyway dependents go on.

-- Resolves the unresolved edges from the jobs in dep_ids (only those of
-- run-anyway dependents when only_run_anyway), decrements their dependents'
-- counters and notifies when one became runnable now.
CREATE OR REPLACE FUNCTION errands._resolve_dependencies(dep_ids bigint[], only_run_anyway boolean)
RETURNS void
LANGUAGE plpgsql
-- Index scans only (see errands._complete_dependencies).
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    v_now_runnable boolean;
    v_jobs bigint[];
    v_counts integer[];
BEGIN
    -- Arrays between the statements (not one statement of CTEs): a join with a
    -- CTE's rows was planned as a scan of errands._jobs.
    WITH r AS (
        UPDATE errands._job_dependencies d SET resolved = true
        WHERE d.depends_on = ANY(dep_ids) AND NOT d.resolved
          AND (d.run_anyway OR NOT only_run_anyway)
        RETURNING d.job_id
    )
    SELECT array_agg(c.job_id ORDER BY c.job_id), array_agg(c.n ORDER BY c.job_id)
    INTO v_jobs, v_counts
    FROM (SELECT r.job_id, count(*)::integer AS n FROM r GROUP BY r.job_id) c;
    IF v_jobs IS NULL THEN
        RETURN;
    END IF;
    -- Dependents are updated in id order: two transactions releasing
    -- overlapping sets of jobs take the row locks in one order (no deadlock).
    WITH released AS (
        UPDATE errands._jobs j
        SET waiting_for = nullif(j.waiting_for - v_counts[array_position(v_jobs, j.id)], 0),
            updated_at = now()
        WHERE j.id = ANY(v_jobs) AND j.waiting_for IS NOT NULL
        RETURNING j.waiting_for, j.run_at
    )
    SELECT bool_or(released.waiting_for IS NULL AND released.run_at <= now())
    INTO v_now_runnable FROM released;
    IF v_now_runnable THEN
        PERFORM errands._notify();
    END IF;
END
$$;

-- Cancels the waiting dependents of the jobs in job_ids (which were cancelled or
-- given up), recursively, through errands._cancel_now; run-anyway dependents go
-- on instead. why completes each first-level last_error ('errands: cancelled
-- because job N it depends on <why>'). Returns the ids cancelled.
CREATE OR REPLACE FUNCTION errands._cancel_dependents(job_ids bigint[],
                                                      why text DEFAULT 'was cancelled')
RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_frontier bigint[] := job_ids;
    v_next bigint[];
    v_all bigint[] := '{}';
    v_why text := coalesce(why, 'was cancelled');
    r record;
BEGIN
    WHILE cardinality(v_frontier) > 0 LOOP
        PERFORM errands._resolve_dependencies(v_frontier, true);
        v_next := '{}';
        FOR r IN
            SELECT d.depends_on AS cause, array_agg(d.job_id ORDER BY d.job_id) AS ids
            FROM errands._job_dependencies d
            WHERE d.depends_on = ANY(v_frontier) AND NOT d.resolved AND NOT d.run_anyway
            GROUP BY d.depends_on ORDER BY d.depends_on
        LOOP
            v_next := v_next || errands._cancel_now(r.ids,
                format('errands: cancelled because job %s it depends on %s', r.cause, v_why), false);
        END LOOP;
        UPDATE errands._job_dependencies d SET resolved = true
        WHERE d.depends_on = ANY(v_frontier) AND NOT d.resolved;
        -- A cancelled job's own edges are of no more use.
        DELETE FROM errands._job_dependencies d WHERE d.job_id = ANY(v_next);
        v_all := v_all || v_next;
        v_frontier := v_next;
        v_why := 'was cancelled';
    END LOOP;
    RETURN v_all;
END
$$;

-- Hook of worker_complete_jobs (worker_id: the caller) and complete_jobs
-- (worker_id NULL: unlocked or stale-locked jobs), run before their DELETE. For
-- the listed jobs the caller is about to complete that have dependents waiting:
-- locks them (so the caller's DELETE completes exactly these), keeps them in
-- errands._finished_jobs with their result whatever the retention (their
-- dependents read it), and releases the dependents. A result over the payload
-- limit fails its job instead (worker_fail_jobs), as the history path does.
-- Also drops the edges of the listed jobs that are themselves dependents.
CREATE OR REPLACE FUNCTION errands._complete_dependencies(worker_id text, job_ids bigint[],
                                                          results json[])
RETURNS void
LANGUAGE plpgsql
-- Every statement looks errands._job_dependencies and errands._jobs up by key
-- (= ANY(array): one index scan); without statistics on the young edge table the
-- planner chose sequential scans of both (10,000 edges: 5 ms per completion
-- instead of 0.3). Plans made once, index scans only.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    v_ids bigint[];
    v_limit bigint;
    v_big_ids bigint[];
    v_big_errors text[];
    v_stale bigint[];
BEGIN
    -- The usual job: nobody depends on it, it depends on nobody, and no one is
    -- making a job depend on it right now. (_add_dependencies locks a dependency
    -- FOR KEY SHARE before writing its edge: while that transaction is open its
    -- edge is invisible here, but the lock shows as the row's xmax. Such a row
    -- takes the path below, whose FOR UPDATE waits for that transaction, and whose
    -- later statements see its edge. An xmax equal to the row's xmin is the lock
    -- of the fetch that wrote this version (get_jobs locks, then updates: the new
    -- version keeps its own lock as xmax), long committed: not a live one. A
    -- MultiXactId numerically equal to xmin would pass too: the callers'
    -- _check_late_dependents after their DELETE catches that case.)
    IF NOT EXISTS (SELECT 1 FROM errands._job_dependencies d WHERE d.depends_on = ANY(job_ids))
       AND NOT EXISTS (SELECT 1 FROM errands._job_dependencies d WHERE d.job_id = ANY(job_ids))
       AND NOT EXISTS (SELECT 1 FROM errands._jobs j
                       WHERE j.id = ANY(job_ids) AND j.xmax <> '0'::xid AND j.xmax <> j.xmin)
    THEN
        RETURN;
    END IF;
    -- A job whose cancellation was requested ends cancelled (35_cancel.sql): the
    -- jobs waiting for it are cancelled, not released.
    PERFORM errands._cancel_dependents(ARRAY(
        SELECT j.id FROM errands._jobs j
        WHERE j.id = ANY(job_ids) AND j.cancel_reason IS NOT NULL
          AND j.locked_by = _complete_dependencies.worker_id));
    SELECT array_agg(s.id) INTO v_ids FROM (
        SELECT j.id FROM errands._jobs j
        WHERE j.id = ANY(job_ids)
          AND (j.cancel_reason IS NULL OR _complete_dependencies.worker_id IS NULL)
          AND CASE WHEN _complete_dependencies.worker_id IS NULL
                   THEN j.locked_at IS NULL OR j.locked_at < now() - errands._stale_lock_age()
                   ELSE j.locked_by = _complete_dependencies.worker_id END
        ORDER BY j.id
        FOR UPDATE
    ) s;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    v_limit := errands._max_payload_bytes();
    IF results IS NOT NULL AND v_limit > 0 AND worker_id IS NOT NULL THEN
        SELECT array_agg(r.id), array_agg(format(
                   'errands: the task''s result is %s bytes of JSON, over the limit of %s bytes (errands.set_max_payload_bytes)',
                   octet_length(r.result::text), v_limit))
        INTO v_big_ids, v_big_errors
        FROM unnest(job_ids, results) AS r(id, result)
        WHERE r.id = ANY(v_ids) AND octet_length(r.result::text) > v_limit
          AND EXISTS (SELECT 1 FROM errands._job_dependencies d
                      WHERE d.depends_on = r.id AND NOT d.resolved);
        IF v_big_ids IS NOT NULL THEN
            PERFORM errands.worker_fail_jobs(worker_id, v_big_ids, v_big_errors);
            v_ids := ARRAY(SELECT u FROM unnest(v_ids) u WHERE u <> ALL(v_big_ids));
        END IF;
    END IF;
    -- Kept for the dependents (whatever the retention): pruned once none waits.
    INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                        attempts, max_attempts, last_error, key, created_at,
                                        state, result, errors, run_at, started_at)
    SELECT j.id, q.queue_name, t.identifier, j.payload, j.priority, j.attempts,
           j.max_attempts, j.last_error, j.key, j.created_at, 'completed', r.result,
           j.errors, j.run_at, j.locked_at
    -- Driven by the ids (one index probe of errands._jobs each): a join of
    -- errands._jobs with unnest() was planned as a nested loop over both.
    FROM unnest(job_ids, coalesce(results, array_fill(NULL::json, ARRAY[cardinality(job_ids)])))
         AS r(id, result)
    JOIN errands._jobs j ON j.id = r.id
    JOIN errands._tasks t ON t.id = j.task_id
    LEFT JOIN errands._queues q ON q.id = j.job_queue_id
    WHERE r.id = ANY(v_ids)
      AND EXISTS (SELECT 1 FROM errands._job_dependencies d WHERE d.depends_on = j.id)
    ON CONFLICT (id) DO NOTHING;
    -- Jobs a running task added (helpers.add_flow) in an earlier try of it: that
    -- try failed or its worker died, so they are cancelled, not released.
    SELECT array_agg(d.job_id) INTO v_stale
    FROM errands._job_dependencies d JOIN errands._jobs j ON j.id = d.depends_on
    WHERE d.depends_on = ANY(v_ids) AND j.id = ANY(v_ids)
      AND NOT d.resolved AND d.parent_try IS NOT NULL AND d.parent_try <> j.attempts;
    IF v_stale IS NOT NULL THEN
        PERFORM errands._cancel_now(v_stale,
            'errands: cancelled because the try of the job that added it did not complete');
        UPDATE errands._job_dependencies d SET resolved = true
        WHERE d.depends_on = ANY(v_ids) AND d.job_id = ANY(v_stale);
    END IF;
    PERFORM errands._resolve_dependencies(v_ids, false);
    DELETE FROM errands._job_dependencies d WHERE d.job_id = ANY(v_ids);
END
$$;

-- Run by the completions after their DELETE: an unresolved edge to a job that
-- is no longer in errands._jobs would leave its dependent waiting forever. It can
-- only come from a dependency added while _complete_dependencies' fast path was
-- deciding (see there): the DELETE waited for that transaction's FOR KEY SHARE,
-- so this later statement sees its edge. The whole completion then fails with
-- 40001 and changes nothing; its retry (the worker retries 40001 at once) takes
-- the dependents' path.
CREATE OR REPLACE FUNCTION errands._check_late_dependents(job_ids bigint[]) RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    v_id bigint;
BEGIN
    SELECT d.depends_on INTO v_id FROM errands._job_dependencies d
    WHERE d.depends_on = ANY(job_ids) AND NOT d.resolved
      AND NOT EXISTS (SELECT 1 FROM errands._jobs j WHERE j.id = d.depends_on)
    LIMIT 1;
    IF v_id IS NOT NULL THEN
        RAISE EXCEPTION 'errands: job % became a dependency of another job while it completed; retry the completion', v_id
            USING ERRCODE = '40001';
    END IF;
END
$$;

-- Hook of worker_fail_jobs, run after it: jobs that a failed try of one of the
-- listed jobs added (helpers.add_flow) are cancelled; the run-anyway dependents
-- of the listed jobs that failed for good go on.
CREATE OR REPLACE FUNCTION errands._dependencies_failed(job_ids bigint[]) RETURNS void
LANGUAGE plpgsql
-- Every statement looks errands._job_dependencies and errands._jobs up by key
-- (= ANY(array): one index scan); without statistics on the young edge table the
-- planner chose sequential scans of both (10,000 edges: 5 ms per completion
-- instead of 0.3). Plans made once, index scans only.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    v_gated bigint[];
    v_failed bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM errands._job_dependencies d
                   WHERE d.depends_on = ANY(job_ids) AND NOT d.resolved) THEN
        RETURN;
    END IF;
    SELECT array_agg(d.job_id) INTO v_gated
    FROM errands._job_dependencies d JOIN errands._jobs j ON j.id = d.depends_on
    WHERE d.depends_on = ANY(job_ids) AND j.id = ANY(job_ids)
      AND NOT d.resolved AND d.parent_try IS NOT NULL AND j.locked_at IS NULL;
    IF v_gated IS NOT NULL THEN
        PERFORM errands._cancel_now(v_gated,
            'errands: cancelled because the try of the job that added it failed');
        UPDATE errands._job_dependencies d SET resolved = true
        WHERE d.depends_on = ANY(job_ids) AND d.job_id = ANY(v_gated);
    END IF;
    SELECT array_agg(j.id) INTO v_failed FROM errands._jobs j
    WHERE j.id = ANY(job_ids) AND j.locked_at IS NULL AND j.attempts >= j.max_attempts;
    IF v_failed IS NOT NULL THEN
        PERFORM errands._resolve_dependencies(v_failed, true);
    END IF;
END
$$;

-- Makes job_id wait for the jobs in depends_on: checks and locks them, writes
-- the edges and sets the job's counter. A dependency must be unfinished or
-- completed and still in errands._finished_jobs (22023 otherwise, naming it).
-- Locking the unfinished ones (FOR KEY SHARE) makes a concurrent completion of
-- one wait for this transaction, so that it sees the new edge.
CREATE OR REPLACE FUNCTION errands._add_dependencies(job_id bigint, depends_on bigint[],
                                                     run_anyway boolean DEFAULT false,
                                                     parent_try smallint DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_deps bigint[];
    v_live bigint[];
    v_bad bigint;
    v_bad_state text;
    v_waiting integer;
BEGIN
    IF array_position(depends_on, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'errands: depends_on must not contain NULL, got %', depends_on
            USING ERRCODE = '22023';
    END IF;
    v_deps := ARRAY(SELECT DISTINCT u FROM unnest(depends_on) u ORDER BY u);
    SELECT array_agg(s.id) INTO v_live FROM (
        SELECT j.id FROM errands._jobs j WHERE j.id = ANY(v_deps) ORDER BY j.id FOR KEY SHARE
    ) s;
    v_live := coalesce(v_live, '{}');
    SELECT u, f.state INTO v_bad, v_bad_state
    FROM unnest(v_deps) u LEFT JOIN errands._finished_jobs f ON f.id = u
    WHERE u <> ALL(v_live) AND f.state IS DISTINCT FROM 'completed'
    ORDER BY u LIMIT 1;
    IF FOUND THEN
        IF v_bad_state IS NULL THEN
            RAISE EXCEPTION 'errands: depends_on: job % does not exist (or finished and was pruned)',
                v_bad USING ERRCODE = '22023';
        END IF;
        RAISE EXCEPTION 'errands: depends_on: job % was %', v_bad, v_bad_state
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO errands._job_dependencies (depends_on, job_id, run_anyway, parent_try, resolved)
    SELECT u, _add_dependencies.job_id, coalesce(_add_dependencies.run_anyway, false),
           _add_dependencies.parent_try, u <> ALL(v_live)
    FROM unnest(v_deps) u;
    v_waiting := cardinality(v_live);
    IF v_waiting > 0 THEN
        UPDATE errands._jobs j SET waiting_for = v_waiting WHERE j.id = _add_dependencies.job_id;
    END IF;
    RETURN v_waiting;
END
$$;

-- add_job with depends_on (add_job calls it): the job is added by add_job and,
-- before anyone else can see it, made to wait.
CREATE OR REPLACE FUNCTION errands._add_dependent_job(
    identifier text, payload json, queue_name text, run_at timestamptz, max_attempts integer,
    job_key text, priority integer, flags text[], job_key_mode text, timeout interval,
    depends_on bigint[]
) RETURNS errands.jobs
LANGUAGE plpgsql AS $$
DECLARE
    v_job errands.jobs;
BEGIN
    IF job_key IS NOT NULL THEN
        RAISE EXCEPTION 'errands: depends_on cannot be combined with job_key (got job_key %)',
            errands._describe(job_key) USING ERRCODE = '22023';
    END IF;
    v_job := errands.add_job(identifier, payload, queue_name, run_at, max_attempts, NULL,
                             priority, flags, job_key_mode, timeout);
    IF errands._add_dependencies(v_job.id, depends_on) > 0 THEN
        RETURN errands._job_view((SELECT j FROM errands._jobs j WHERE j.id = v_job.id));
    END IF;
    RETURN v_job;
END
$$;

-- The fields a flow step may have (anything else is refused, naming it).
CREATE OR REPLACE FUNCTION errands._flow_step_fields() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY['name', 'task', 'payload', 'queue', 'run_at', 'max_attempts', 'key',
                 'priority', 'flags', 'timeout', 'depends_on', 'run_anyway']
$$;

-- The first problem of a flow's shape (NULL: none), naming the step: fields and
-- their JSON types, names, duplicates, unknown dependencies.
CREATE OR REPLACE FUNCTION errands._flow_shape_problem(steps jsonb) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_problem text;
BEGIN
    SELECT p INTO v_problem FROM (
        SELECT s.ord, CASE
            WHEN jsonb_typeof(s.step) <> 'object' THEN
                format('flow step %s must be an object, got %s', s.ord, s.step)
            WHEN jsonb_typeof(s.step -> 'name') IS DISTINCT FROM 'string'
                 OR length(s.step ->> 'name') NOT BETWEEN 1 AND 128 THEN
                format('flow step %s needs a "name" of 1 to 128 characters, got %s', s.ord,
                       coalesce((s.step -> 'name')::text, 'none'))
            WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(s.step) k
                         WHERE k <> ALL(errands._flow_step_fields())) THEN
                format('flow step %s: unknown field %s (expected %s)',
                       quote_literal(s.step ->> 'name'),
                       (SELECT quote_literal(k) FROM jsonb_object_keys(s.step) k
                        WHERE k <> ALL(errands._flow_step_fields()) ORDER BY k LIMIT 1),
                       array_to_string(errands._flow_step_fields(), ', '))
            WHEN jsonb_typeof(s.step -> 'task') IS DISTINCT FROM 'string' THEN
                format('flow step %s needs a "task" (a string), got %s',
                       quote_literal(s.step ->> 'name'), coalesce((s.step -> 'task')::text, 'none'))
            ELSE (SELECT format('flow step %s: %s must be %s, got %s',
                                quote_literal(s.step ->> 'name'), f.field, f.kind,
                                s.step -> f.field)
                  FROM (VALUES ('queue', 'string', 'a string'), ('run_at', 'string', 'a timestamp string'),
                               ('max_attempts', 'number', 'a number'), ('key', 'string', 'a string'),
                               ('priority', 'number', 'a number'), ('flags', 'array', 'an array of strings'),
                               ('timeout', 'string', 'an interval string'),
                               ('depends_on', 'array', 'an array of step names'),
                               ('run_anyway', 'boolean', 'true or false')) f(field, type, kind)
                  WHERE s.step ? f.field AND jsonb_typeof(s.step -> f.field) NOT IN (f.type, 'null')
                  LIMIT 1)
        END AS p
        FROM jsonb_array_elements(steps) WITH ORDINALITY s(step, ord)
    ) x WHERE p IS NOT NULL ORDER BY x.ord LIMIT 1;
    IF v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    SELECT format('flow step %s appears %s times (step names must be unique)',
                  quote_literal(n), count(*))
    INTO v_problem
    FROM jsonb_array_elements(steps) WITH ORDINALITY s(step, ord), LATERAL (SELECT s.step ->> 'name') x(n)
    GROUP BY n HAVING count(*) > 1 ORDER BY min(s.ord) LIMIT 1;
    IF v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    SELECT CASE WHEN jsonb_typeof(d.value) <> 'string'
                THEN format('flow step %s: depends_on must hold step names, got %s',
                            quote_literal(s.step ->> 'name'), d.value)
                ELSE format('flow step %s depends on unknown step %s',
                            quote_literal(s.step ->> 'name'), quote_literal(d.value #>> '{}')) END
    INTO v_problem
    FROM jsonb_array_elements(steps) WITH ORDINALITY s(step, ord),
         jsonb_array_elements(CASE WHEN jsonb_typeof(s.step -> 'depends_on') = 'array'
                                   THEN s.step -> 'depends_on' ELSE '[]' END) WITH ORDINALITY d(value, dord)
    WHERE jsonb_typeof(d.value) <> 'string'
       OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(steps) o
                      WHERE o ->> 'name' = d.value #>> '{}')
    ORDER BY s.ord, d.dord LIMIT 1;
    RETURN v_problem;
END
$$;

-- A step on a cycle of the graph given as edges (child[i] depends on
-- parent[i], step numbers 1..n), or NULL when it has none (Kahn's algorithm:
-- O(steps + edges)).
CREATE OR REPLACE FUNCTION errands._flow_cycle_step(n integer, child integer[], parent integer[])
RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_indeg integer[] := array_fill(0, ARRAY[n]);
    v_first integer[] := array_fill(0, ARRAY[n + 1]);
    v_kids integer[];
    v_queue integer[];
    v_head integer := 1;
    v_len integer := 0;
    v_p integer;
    v_c integer;
    v_seen integer[];
    i integer;
BEGIN
    -- Children grouped by parent: v_kids[v_first[p] .. v_first[p + 1] - 1].
    SELECT coalesce(array_agg(e.c ORDER BY e.p), '{}') INTO v_kids
    FROM unnest(child, parent) e(c, p);
    FOR i IN 1 .. coalesce(cardinality(child), 0) LOOP
        v_indeg[child[i]] := v_indeg[child[i]] + 1;
        v_first[parent[i] + 1] := v_first[parent[i] + 1] + 1;
    END LOOP;
    v_first[1] := 1;
    FOR i IN 2 .. n + 1 LOOP
        v_first[i] := v_first[i] + v_first[i - 1];
    END LOOP;
    v_queue := array_fill(0, ARRAY[n]);
    FOR i IN 1 .. n LOOP
        IF v_indeg[i] = 0 THEN
            v_len := v_len + 1;
            v_queue[v_len] := i;
        END IF;
    END LOOP;
    WHILE v_head <= v_len LOOP
        v_p := v_queue[v_head];
        v_head := v_head + 1;
        FOR i IN v_first[v_p] .. v_first[v_p + 1] - 1 LOOP
            v_c := v_kids[i];
            v_indeg[v_c] := v_indeg[v_c] - 1;
            IF v_indeg[v_c] = 0 THEN
                v_len := v_len + 1;
                v_queue[v_len] := v_c;
            END IF;
        END LOOP;
    END LOOP;
    IF v_len = n THEN
        RETURN NULL;
    END IF;
    -- Every step left has a dependency left: walk up them until a step repeats;
    -- that step is on a cycle.
    v_c := (SELECT min(i2) FROM generate_subscripts(v_indeg, 1) i2 WHERE v_indeg[i2] > 0);
    v_seen := '{}';
    WHILE NOT v_c = ANY(v_seen) LOOP
        v_seen := v_seen || v_c;
        v_c := (SELECT min(e.p) FROM unnest(child, parent) e(c, p)
                WHERE e.c = v_c AND v_indeg[e.p] > 0);
    END LOOP;
    RETURN v_c;
END
$$;

CREATE OR REPLACE FUNCTION errands.add_flow(flow jsonb)
RETURNS TABLE (flow_id bigint, step text, job_id bigint)
LANGUAGE plpgsql
SET jit = off
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_steps jsonb := add_flow.flow -> 'steps';
    v_n integer;
    v_problem text;
    v_child integer[];
    v_parent integer[];
    v_cycle integer;
    v_parent_job bigint;
    v_parent_try smallint;
    v_ids bigint[];
    v_job errands.jobs;
    v_flow bigint;
    v_limit bigint;
    s record;
BEGIN
    IF jsonb_typeof(add_flow.flow) IS DISTINCT FROM 'object'
       OR jsonb_typeof(v_steps) IS DISTINCT FROM 'array' OR jsonb_array_length(v_steps) = 0 THEN
        RAISE EXCEPTION 'errands: a flow must be an object with a non-empty "steps" array, got %',
            coalesce(left(add_flow.flow::text, 200), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_object_keys(add_flow.flow) k WHERE k NOT IN ('steps', 'parent')) THEN
        RAISE EXCEPTION 'errands: unknown flow field %; expected steps, parent',
            (SELECT quote_literal(k) FROM jsonb_object_keys(add_flow.flow) k
             WHERE k NOT IN ('steps', 'parent') ORDER BY k LIMIT 1) USING ERRCODE = '22023';
    END IF;
    v_n := jsonb_array_length(v_steps);
    v_problem := errands._flow_shape_problem(v_steps);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'errands: %', v_problem USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(st.ord::integer), array_agg(o.ord::integer)
    INTO v_child, v_parent
    FROM jsonb_array_elements(v_steps) WITH ORDINALITY st(step, ord),
         jsonb_array_elements_text(coalesce(nullif(st.step -> 'depends_on', 'null'), '[]')) d(name)
    JOIN jsonb_array_elements(v_steps) WITH ORDINALITY o(step, ord) ON o.step ->> 'name' = d.name;
    v_cycle := errands._flow_cycle_step(v_n, v_child, v_parent);
    IF v_cycle IS NOT NULL THEN
        RAISE EXCEPTION 'errands: flow step % is on a dependency cycle',
            quote_literal(v_steps -> (v_cycle - 1) ->> 'name') USING ERRCODE = '22023';
    END IF;
    -- The job-level checks of add_job, up front, so that nothing is written
    -- when one step is bad.
    v_limit := errands._max_payload_bytes();
    FOR s IN
        SELECT x.ord, x.step ->> 'name' AS name,
               ROW(x.step ->> 'task', (x.step -> 'payload')::json, x.step ->> 'queue',
                   (x.step ->> 'run_at')::timestamptz, (x.step ->> 'max_attempts')::integer,
                   x.step ->> 'key', (x.step ->> 'priority')::integer,
                   ARRAY(SELECT jsonb_array_elements_text(coalesce(nullif(x.step -> 'flags', 'null'), '[]')))
               )::errands.job_spec AS spec,
               (x.step ->> 'timeout')::interval AS timeout
        FROM jsonb_array_elements(v_steps) WITH ORDINALITY x(step, ord)
        ORDER BY x.ord
    LOOP
        IF errands._spec_is_bad((s.spec).identifier, (s.spec).queue_name, (s.spec).job_key,
                                (s.spec).max_attempts, (s.spec).priority, (s.spec).flags,
                                (s.spec).payload, CASE WHEN v_limit > 0 THEN v_limit END)
           OR s.timeout <= interval '0' THEN
            BEGIN
                IF s.timeout <= interval '0' THEN
                    RAISE EXCEPTION 'errands: timeout must be positive, got %', s.timeout
                        USING ERRCODE = '22023';
                END IF;
                PERFORM errands._validate_specs(ARRAY[s.spec]);
            EXCEPTION WHEN invalid_parameter_value THEN
                RAISE EXCEPTION 'errands: flow step %: %', quote_literal(s.name),
                    substr(SQLERRM, length('errands: ') + 1) USING ERRCODE = '22023';
            END;
        END IF;
    END LOOP;
    IF add_flow.flow ? 'parent' THEN
        IF jsonb_typeof(add_flow.flow -> 'parent') IS DISTINCT FROM 'number' THEN
            RAISE EXCEPTION 'errands: a flow''s parent must be a job id, got %',
                add_flow.flow -> 'parent' USING ERRCODE = '22023';
        END IF;
        v_parent_job := (add_flow.flow ->> 'parent')::bigint;
        SELECT j.attempts INTO v_parent_try FROM errands._jobs j
        WHERE j.id = v_parent_job AND j.locked_at IS NOT NULL FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'errands: a flow''s parent must be a running job; job % is not running',
                v_parent_job USING ERRCODE = '22023';
        END IF;
    END IF;

    -- Write: the jobs, in step order, then the flow, its steps and the edges.
    v_ids := array_fill(NULL::bigint, ARRAY[v_n]);
    FOR s IN
        SELECT x.ord, x.step ->> 'name' AS name, x.step
        FROM jsonb_array_elements(v_steps) WITH ORDINALITY x(step, ord) ORDER BY x.ord
    LOOP
        v_job := errands.add_job(
            s.step ->> 'task', (s.step -> 'payload')::json, s.step ->> 'queue',
            (s.step ->> 'run_at')::timestamptz, (s.step ->> 'max_attempts')::integer,
            s.step ->> 'key', (s.step ->> 'priority')::integer,
            ARRAY(SELECT jsonb_array_elements_text(coalesce(nullif(s.step -> 'flags', 'null'), '[]'))),
            'unsafe_dedupe', (s.step ->> 'timeout')::interval);
        IF v_job.revision > 0 THEN
            RAISE EXCEPTION 'errands: flow step %: job key % is already used by job %',
                quote_literal(s.name), quote_literal(s.step ->> 'key'), v_job.id
                USING ERRCODE = '22023';
        END IF;
        v_ids[s.ord] := v_job.id;
    END LOOP;
    INSERT INTO errands._flows (parent_job_id) VALUES (v_parent_job) RETURNING id INTO v_flow;
    INSERT INTO errands._flow_steps (flow_id, step, job_id, ord, depends_on, run_anyway)
    SELECT v_flow, x.step ->> 'name', v_ids[x.ord], x.ord,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(nullif(x.step -> 'depends_on', 'null'), '[]'))),
           coalesce((x.step ->> 'run_anyway')::boolean, false)
    FROM jsonb_array_elements(v_steps) WITH ORDINALITY x(step, ord);
    INSERT INTO errands._job_dependencies (depends_on, job_id, run_anyway, parent_try)
    SELECT DISTINCT v_ids[e.p], v_ids[e.c],
           coalesce((v_steps -> (e.c - 1) ->> 'run_anyway')::boolean, false), NULL::smallint
    FROM unnest(v_child, v_parent) e(c, p);
    IF v_parent_job IS NOT NULL THEN
        -- Roots wait for the task that adds the flow to complete this try.
        INSERT INTO errands._job_dependencies (depends_on, job_id, parent_try)
        SELECT v_parent_job, v_ids[i], v_parent_try
        FROM generate_series(1, v_n) i
        WHERE i <> ALL(coalesce(v_child, '{}'));
    END IF;
    UPDATE errands._jobs j SET waiting_for = c.n
    FROM (SELECT d.job_id, count(*)::integer AS n FROM errands._job_dependencies d
          WHERE d.job_id = ANY(v_ids) GROUP BY d.job_id) c
    WHERE j.id = c.job_id;
    RETURN QUERY
    SELECT v_flow, x.step ->> 'name', v_ids[x.ord]
    FROM jsonb_array_elements(v_steps) WITH ORDINALITY x(step, ord) ORDER BY x.ord;
END
$$;
COMMENT ON FUNCTION errands.add_flow(jsonb) IS
'Adds a graph of jobs in one transaction: {"steps": [{"name": ..., "task": ...,
"payload", "queue", "run_at", "max_attempts", "key", "priority", "flags",
"timeout", "depends_on": [step names], "run_anyway": bool}, ...], "parent": job
id}. A step waits (state waiting) until every step it depends on has completed.
run_anyway: the step also goes on when a dependency fails for good or is
cancelled. parent (helpers.add_flow): a running job; the steps without
dependencies also wait for it to complete its current try, and are cancelled if
that try fails. Returns each step''s flow id, name and job id, in step order. An
empty flow, a bad field, a duplicate or unknown step name, a cycle or a key
already in use are refused (22023, naming the step), nothing written.';

CREATE OR REPLACE FUNCTION errands.dependency_results(job_id bigint) RETURNS jsonb
LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(coalesce(s.step, d.depends_on::text), f.result::jsonb
                                     ORDER BY d.depends_on), '{}'::jsonb)
    FROM errands._job_dependencies d
    JOIN errands._finished_jobs f ON f.id = d.depends_on AND f.state = 'completed'
    LEFT JOIN errands._flow_steps me ON me.job_id = d.job_id
    LEFT JOIN errands._flow_steps s ON s.job_id = d.depends_on AND s.flow_id = me.flow_id
    WHERE d.job_id = dependency_results.job_id AND d.parent_try IS NULL
$$;
COMMENT ON FUNCTION errands.dependency_results(bigint) IS
'The results of the jobs job_id depends on that completed, as one JSON object:
keyed by step name when both are steps of one flow, else by job id (as text);
{} when none. Kept in errands._finished_jobs, whatever the retention, until every
dependent has run.';

CREATE OR REPLACE FUNCTION errands.cancel_flow(flow_id bigint) RETURNS SETOF bigint
LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ids bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM errands._flows f WHERE f.id = cancel_flow.flow_id) THEN
        RAISE EXCEPTION 'errands: flow % does not exist', coalesce(cancel_flow.flow_id::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    v_ids := errands._cancel_now(
        ARRAY(SELECT s.job_id FROM errands._flow_steps s WHERE s.flow_id = cancel_flow.flow_id),
        format('errands: flow %s was cancelled', cancel_flow.flow_id), false);
    v_ids := v_ids || errands._cancel_dependents(v_ids);
    DELETE FROM errands._job_dependencies d WHERE d.job_id = ANY(v_ids);
    RETURN QUERY SELECT u FROM unnest(v_ids) u ORDER BY u;
END
$$;
COMMENT ON FUNCTION errands.cancel_flow(bigint) IS
'Cancels every unfinished step of a flow that is not running (a running step
finishes its try) and, recursively, the jobs that depend on them (run-anyway
ones go on). Returns the ids cancelled. Unknown flow: 22023.';

-- One row per flow step, with its job's state wherever the job is now.
CREATE OR REPLACE VIEW errands.flow_steps AS
SELECT s.flow_id,
       s.step,
       s.job_id,
       s.ord AS position,
       s.depends_on,
       s.run_anyway,
       coalesce(j.state, f.state) AS state,
       coalesce(j.task_identifier, f.task_identifier) AS task_identifier,
       coalesce(j.last_error, f.last_error) AS last_error
FROM errands._flow_steps s
LEFT JOIN errands.jobs j ON j.id = s.job_id
LEFT JOIN errands._finished_jobs f ON f.id = s.job_id;
COMMENT ON VIEW errands.flow_steps IS
    'Steps of the flows made by errands.add_flow: flow_id, step name, job_id, position in the flow, depends_on (step names, or job ids), the job''s state (NULL: finished and no longer kept), task_identifier and last_error.';

-- Roles granted before flows existed (grant_enqueue, grant_worker, grant_read
-- on an older version) keep their grant: add_job's new signature and add_flow
-- for enqueuers, dependency_results and cancel_flow for workers, the
-- flow_steps view for readers.
DO $grant_flows$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT DISTINCT ro.rolname, p.proname
        FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a, pg_catalog.pg_roles ro
        WHERE p.oid IN ('errands.add_jobs(errands.job_spec[], boolean)'::regprocedure,
                        -- granted by grant_worker only (and defined before this file)
                        'errands.prune_finished_jobs(integer)'::regprocedure)
          AND a.privilege_type = 'EXECUTE' AND a.grantee = ro.oid AND a.grantee <> p.proowner
        ORDER BY 1, 2
    LOOP
        IF r.proname = 'add_jobs' THEN
            EXECUTE format('GRANT EXECUTE ON FUNCTION errands.add_job(text, json, text, timestamptz, integer, text, integer, text[], text, interval, bigint[]), errands.add_flow(jsonb) TO %I',
                           r.rolname);
        ELSE
            EXECUTE format('GRANT EXECUTE ON FUNCTION errands.dependency_results(bigint), errands.cancel_flow(bigint) TO %I',
                           r.rolname);
        END IF;
    END LOOP;
    FOR r IN
        SELECT DISTINCT ro.rolname
        FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a, pg_catalog.pg_roles ro
        WHERE c.oid = 'errands.jobs'::regclass AND a.privilege_type = 'SELECT'
          AND a.grantee = ro.oid AND a.grantee <> c.relowner
        ORDER BY 1
    LOOP
        EXECUTE format('GRANT SELECT ON errands.flow_steps TO %I', r.rolname);
    END LOOP;
END
$grant_flows$;
