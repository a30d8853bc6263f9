-- Job dependencies and flows (25_flows.sql): add_job(depends_on), add_flow,
-- dependency_results, failure and cancel propagation, run-anyway steps, bad
-- flows. The concurrent release is in tests_py/test_flows.py (two sessions).
BEGIN;
SELECT plan(69);
\ir include/jobs_by_name.sql

-- Fetch the job of task t as worker w and complete it with result r; returns its id.
CREATE FUNCTION pg_temp.run(t text, r json DEFAULT NULL, w text DEFAULT 'w') RETURNS bigint
LANGUAGE plpgsql AS $f$
DECLARE v bigint;
BEGIN
    SELECT id INTO v FROM errands.get_jobs(w, ARRAY[t]);
    IF v IS NULL THEN RETURN NULL; END IF;
    PERFORM errands.worker_complete_jobs(w, ARRAY[v], ARRAY[r]);
    RETURN v;
END
$f$;
CREATE FUNCTION pg_temp.state(n text) RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT coalesce((SELECT state FROM errands.jobs WHERE id = pg_temp.id(n)),
                    (SELECT state FROM errands.finished_jobs WHERE id = pg_temp.id(n)), 'gone')
$f$;
CREATE FUNCTION pg_temp.states(VARIADIC ns text[]) RETURNS text[] LANGUAGE sql STABLE AS
    $f$ SELECT array_agg(pg_temp.state(n) ORDER BY o) FROM unnest(ns) WITH ORDINALITY u(n, o) $f$;
-- Add a flow, recording its steps in j as prefix || step name.
CREATE FUNCTION pg_temp.flow(prefix text, f jsonb) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE v bigint;
BEGIN
    INSERT INTO j SELECT prefix || a.step, a.job_id FROM errands.add_flow(f) a;
    SELECT s.flow_id INTO v FROM errands._flow_steps s WHERE s.job_id = (SELECT max(id) FROM j);
    RETURN v;
END
$f$;
CREATE FUNCTION pg_temp.counts() RETURNS text LANGUAGE sql STABLE AS $f$
    SELECT format('%s jobs, %s flows, %s edges', (SELECT count(*) FROM errands._jobs),
                  (SELECT count(*) FROM errands._flows), (SELECT count(*) FROM errands._job_dependencies))
$f$;

------------------------------------------------------------------------------
-- add_job(..., depends_on)
------------------------------------------------------------------------------
INSERT INTO j VALUES ('a', (errands.add_job('t_a')).id);
INSERT INTO j VALUES ('b', (errands.add_job('t_b', depends_on => ARRAY[pg_temp.id('a')])).id);
SELECT is(pg_temp.state('b'), 'waiting', 'a job with an unfinished dependency is waiting');
SELECT is((SELECT is_available FROM errands._jobs WHERE id = pg_temp.id('b')), false,
          'a waiting job is outside the fetch indexes (is_available false)');
SELECT is_empty($$SELECT * FROM errands.get_jobs('w', '{t_b}')$$, 'get_jobs does not fetch a waiting job');
SELECT is(pg_temp.run('t_a', '{"x": 1}'), pg_temp.id('a'), 'setup: a runs and completes');
-- (One transaction: now() does not move; age the row as time would.)
UPDATE errands._finished_jobs SET finished_at = finished_at - interval '1 s';
SELECT is(pg_temp.state('b'), 'pending', 'completing its dependency makes it pending in that transaction');
SELECT is((SELECT (state, result::text) FROM errands.finished_jobs WHERE id = pg_temp.id('a'))::text,
          '(completed,"{""x"": 1}")', 'with retention 0, a job with a dependent keeps its result');
SELECT is(errands.prune_finished_jobs(), 0, 'and pruning keeps it while the dependent is unfinished');
SELECT is(errands.dependency_results(pg_temp.id('b')), jsonb_build_object(pg_temp.id('a')::text, '{"x": 1}'::jsonb),
          'dependency_results: keyed by job id outside a flow');
SELECT is(pg_temp.run('t_b'), pg_temp.id('b'), 'the dependent runs');
SELECT is(errands.prune_finished_jobs(), 1, 'once it has run, the kept result is pruned (retention 0)');

SELECT is(pg_temp.error_of($$SELECT errands.add_job('t_x', depends_on => ARRAY[987654321::bigint])$$),
          '22023: errands: depends_on: job 987654321 does not exist (or finished and was pruned)',
          'a dependency on an unknown job is refused, naming it');
SELECT is(pg_temp.error_of(format('SELECT errands.add_job(%L, depends_on => ARRAY[%s::bigint])', 't_x', pg_temp.id('a'))),
          format('22023: errands: depends_on: job %s does not exist (or finished and was pruned)', pg_temp.id('a')),
          'a dependency on a pruned job is refused');
SELECT is(pg_temp.error_of($$SELECT errands.add_job('t_x', depends_on => ARRAY[NULL::bigint])$$),
          '22023: errands: depends_on must not contain NULL, got {NULL}', 'a NULL dependency is refused');
INSERT INTO j VALUES ('c', (errands.add_job('t_c')).id);
SELECT is(pg_temp.error_of(format('SELECT errands.add_job(%L, job_key => %L, depends_on => ARRAY[%s::bigint])',
                                  't_x', 'k1', pg_temp.id('c'))),
          '22023: errands: depends_on cannot be combined with job_key (got job_key ''k1'' (2 characters))',
          'depends_on with a job key is refused');
SELECT is((SELECT count(*) FROM errands._jobs WHERE task_id = (SELECT id FROM errands._tasks WHERE identifier = 't_x')),
          0::bigint, 'refused calls wrote nothing');

SELECT errands.set_task_retention('t_kept', interval '1 day');
INSERT INTO j VALUES ('k', (errands.add_job('t_kept')).id);
SELECT pg_temp.run('t_kept', '"done"');
INSERT INTO j VALUES ('after_k', (errands.add_job('t_after', depends_on => ARRAY[pg_temp.id('k'), pg_temp.id('k')])).id);
SELECT is(pg_temp.state('after_k'), 'pending', 'a dependency that already completed (still kept) is satisfied');
SELECT is(errands.dependency_results(pg_temp.id('after_k')), jsonb_build_object(pg_temp.id('k')::text, '"done"'::jsonb),
          'and its result is there');

------------------------------------------------------------------------------
-- Diamond: a -> (b, c) -> d
------------------------------------------------------------------------------
SELECT pg_temp.flow('d_', '{"steps": [
    {"name": "a", "task": "d_a", "payload": {"n": 1}},
    {"name": "b", "task": "d_b", "depends_on": ["a"]},
    {"name": "c", "task": "d_c", "depends_on": ["a"]},
    {"name": "d", "task": "d_d", "depends_on": ["b", "c"], "priority": 5}]}');
SELECT is(pg_temp.states('d_a', 'd_b', 'd_c', 'd_d'), '{pending,waiting,waiting,waiting}',
          'diamond: only the root is pending');
SELECT is((SELECT (payload::text, priority)::text FROM errands.jobs WHERE id = pg_temp.id('d_d')),
          '({},5)', 'steps take their job fields (priority) and defaults (payload {})');
SELECT pg_temp.run('d_a', '"A"');
SELECT is(pg_temp.states('d_b', 'd_c', 'd_d'), '{pending,pending,waiting}', 'diamond: a done, b and c pending');
SELECT pg_temp.run('d_b', '"B"');
SELECT is(pg_temp.state('d_d'), 'waiting', 'diamond: d still waits for c');
SELECT pg_temp.run('d_c', '"C"');
SELECT is(pg_temp.state('d_d'), 'pending', 'diamond: d pending once b and c completed');
SELECT is(errands.dependency_results(pg_temp.id('d_d')), '{"b": "B", "c": "C"}'::jsonb,
          'dependency_results: keyed by step name in a flow');
SELECT is(ARRAY(SELECT (step, depends_on, state)::text FROM errands.flow_steps
                WHERE flow_id = (SELECT flow_id FROM errands._flow_steps WHERE job_id = pg_temp.id('d_d'))
                ORDER BY position),
          '{"(a,{},completed)","(b,{a},completed)","(c,{a},completed)","(d,\"{b,c}\",pending)"}',
          'errands.flow_steps shows the graph and the states');

------------------------------------------------------------------------------
-- Chain of 100 steps: exactly one runnable at a time
------------------------------------------------------------------------------
SELECT pg_temp.flow('ch_', jsonb_build_object('steps', (
    SELECT jsonb_agg(jsonb_build_object('name', 's' || i, 'task', 'chain')
                     || CASE WHEN i > 1 THEN jsonb_build_object('depends_on', jsonb_build_array('s' || (i - 1)))
                             ELSE '{}' END ORDER BY i)
    FROM generate_series(1, 100) i)));
CREATE TEMP TABLE chain_runs AS SELECT 0 AS fetched, 0 AS misordered;
DO $$
DECLARE v bigint[];
BEGIN
    FOR i IN 1 .. 100 LOOP
        v := ARRAY(SELECT id FROM errands.get_jobs('w', '{chain}', 10));
        UPDATE chain_runs SET fetched = fetched + cardinality(v),
                              misordered = misordered + (v IS DISTINCT FROM ARRAY[pg_temp.id('ch_s' || i)])::int;
        PERFORM errands.worker_complete_jobs('w', v, NULL);
    END LOOP;
END $$;
SELECT is((SELECT (fetched, misordered)::text FROM chain_runs), '(100,0)',
          'chain of 100: each fetch returns exactly the next step');
SELECT is(pg_temp.state('ch_s100'), 'gone', 'chain: the last step completed');

------------------------------------------------------------------------------
-- Fan-in of 1000
------------------------------------------------------------------------------
SELECT pg_temp.flow('fi_', jsonb_build_object('steps',
    (SELECT jsonb_agg(jsonb_build_object('name', 'c' || i, 'task', 'fan_child', 'payload', jsonb_build_object('i', i)))
     FROM generate_series(1, 1000) i)
    || jsonb_build_array(jsonb_build_object('name', 'join', 'task', 'fan_join',
         'depends_on', (SELECT jsonb_agg('c' || i) FROM generate_series(1, 1000) i)))));
SELECT is((SELECT waiting_for FROM errands._jobs WHERE id = pg_temp.id('fi_join')), 1000,
          'fan-in: the continuation counts 1000 dependencies');
DO $$
DECLARE v bigint[];
BEGIN
    LOOP
        v := ARRAY(SELECT id FROM errands.get_jobs('w', '{fan_child}', 300));
        EXIT WHEN cardinality(v) = 0;
        PERFORM errands.worker_complete_jobs('w', v,
            ARRAY(SELECT to_json(x) FROM unnest(v) x));
    END LOOP;
END $$;
SELECT is(pg_temp.state('fi_join'), 'pending', 'fan-in: pending once all 1000 completed (in batches)');
SELECT is((SELECT count(*) FROM jsonb_object_keys(errands.dependency_results(pg_temp.id('fi_join')))),
          1000::bigint, 'fan-in: dependency_results holds the 1000 results');

------------------------------------------------------------------------------
-- Failure: a dependency that fails for good pauses its dependents; run-anyway goes on
------------------------------------------------------------------------------
SELECT pg_temp.flow('f_', '{"steps": [
    {"name": "x", "task": "f_x", "max_attempts": 1},
    {"name": "y", "task": "f_y", "depends_on": ["x"]},
    {"name": "z", "task": "f_z", "depends_on": ["y"]},
    {"name": "cleanup", "task": "f_cleanup", "depends_on": ["x"], "run_anyway": true}]}');
SELECT errands.worker_fail_jobs('w', ARRAY(SELECT id FROM errands.get_jobs('w', '{f_x}')), ARRAY['boom']);
SELECT is(pg_temp.states('f_x', 'f_y', 'f_z', 'f_cleanup'), '{failed,waiting,waiting,pending}',
          'a step failed for good: its dependents wait (the flow pauses), the run-anyway step goes on');
SELECT is(pg_temp.run('f_cleanup'), pg_temp.id('f_cleanup'), 'the run-anyway step runs');
SELECT errands.reschedule_jobs(pg_temp.ids('f_x'), run_at => now(), attempts => 0);
SELECT is(pg_temp.run('f_x', '"fixed"'), pg_temp.id('f_x'), 'retrying the failed step (reschedule_jobs) runs it');
SELECT is(pg_temp.states('f_y', 'f_z'), '{pending,waiting}', 'and the flow goes on');
SELECT pg_temp.run('f_y');
SELECT is(pg_temp.run('f_z'), pg_temp.id('f_z'), 'to its last step');

------------------------------------------------------------------------------
-- Cancel propagation (errands._cancel_now + errands._cancel_dependents)
------------------------------------------------------------------------------
SELECT errands.set_task_retention(t, interval '1 day') FROM unnest('{c_p,c_q,c_r,c_cleanup}'::text[]) t;
SELECT pg_temp.flow('c_', '{"steps": [
    {"name": "p", "task": "c_p"},
    {"name": "q", "task": "c_q", "depends_on": ["p"]},
    {"name": "r", "task": "c_r", "depends_on": ["q"]},
    {"name": "cleanup", "task": "c_cleanup", "depends_on": ["q"], "run_anyway": true}]}');
SELECT is(errands._cancel_now(pg_temp.ids('c_p'), 'by hand'), pg_temp.ids('c_p'),
          'cancelling a step (its dependents are cancelled with it, recursively)');
SELECT is(pg_temp.states('c_p', 'c_q', 'c_r', 'c_cleanup'), '{cancelled,cancelled,cancelled,pending}',
          'they are cancelled; the run-anyway step of a cancelled dependency goes on');
SELECT is((SELECT array_agg(last_error ORDER BY id) FROM errands.finished_jobs WHERE id = ANY(pg_temp.ids('c_q', 'c_r'))),
          ARRAY[format('errands: cancelled because job %s it depends on was cancelled', pg_temp.id('c_p')),
                format('errands: cancelled because job %s it depends on was cancelled', pg_temp.id('c_q'))],
          'each last_error names the job that caused it');
SELECT is(pg_temp.error_of(format('SELECT errands.add_job(%L, depends_on => ARRAY[%s::bigint])', 't_x', pg_temp.id('c_p'))),
          format('22023: errands: depends_on: job %s was cancelled', pg_temp.id('c_p')),
          'a dependency on a cancelled job is refused');

-- A dependency removed (remove_job) or deleted by cleanup: its dependents are cancelled.
INSERT INTO j VALUES ('rk', (errands.add_job('t_rk', job_key => 'rk')).id);
INSERT INTO j VALUES ('rk_dep', (errands.add_job('t_rk_dep', depends_on => ARRAY[pg_temp.id('rk')])).id);
SELECT errands.remove_job('rk');
SELECT is(pg_temp.state('rk_dep'), 'gone', 'remove_job of a dependency cancels its dependent');
INSERT INTO j VALUES ('pf', (errands.add_job('t_pf', max_attempts => 1)).id);
INSERT INTO j VALUES ('pf_dep', (errands.add_job('t_pf_dep', depends_on => ARRAY[pg_temp.id('pf')])).id);
SELECT errands.permanently_fail_jobs(pg_temp.ids('pf'));
SELECT is(pg_temp.state('pf_dep'), 'waiting', 'a dependency failed by hand: the dependent waits');
SELECT pg_temp.flow('pf_', '{"steps": [
    {"name": "x", "task": "pf_x"},
    {"name": "y", "task": "pf_y", "depends_on": ["x"]},
    {"name": "cleanup", "task": "pf_cleanup", "depends_on": ["x"], "run_anyway": true}]}');
SELECT errands.permanently_fail_jobs(pg_temp.ids('pf_x'));
SELECT is(pg_temp.states('pf_y', 'pf_cleanup'), '{waiting,pending}',
          'a flow step failed by hand (permanently_fail_jobs): dependents wait, the run-anyway step goes on');
SELECT errands.cleanup('{DELETE_PERMAFAILED_JOBS}');
SELECT is(pg_temp.state('pf_dep'), 'gone', 'cleanup deleting the failed dependency cancels the dependent');

-- cancel_flow: every step not running, and what depends on them.
SELECT pg_temp.flow('cf_', '{"steps": [
    {"name": "r1", "task": "cf_r1"}, {"name": "r2", "task": "cf_r2"},
    {"name": "m", "task": "cf_m", "depends_on": ["r1", "r2"]}]}');
SELECT errands.get_jobs('w', '{cf_r1}');
SELECT is(ARRAY(SELECT errands.cancel_flow((SELECT flow_id FROM errands._flow_steps WHERE job_id = pg_temp.id('cf_m'))))::bigint[],
          pg_temp.sorted(pg_temp.ids('cf_r2', 'cf_m')), 'cancel_flow cancels the steps not running');
SELECT is(pg_temp.states('cf_r1', 'cf_r2', 'cf_m'), '{running,gone,gone}', 'the running step finishes its try');
SELECT is(pg_temp.error_of('SELECT errands.cancel_flow(987654321)'), '22023: errands: flow 987654321 does not exist',
          'cancel_flow of an unknown flow is refused');

------------------------------------------------------------------------------
-- Fan-out from a running task (parent): gated on the task's try
------------------------------------------------------------------------------
INSERT INTO j VALUES ('par', (errands.add_job('t_par', max_attempts => 3)).id);
SELECT errands.get_jobs('w', '{t_par}');
SELECT pg_temp.flow('g1_', jsonb_build_object('parent', pg_temp.id('par'), 'steps', '[
    {"name": "kid", "task": "g_kid"}, {"name": "join", "task": "g_join", "depends_on": ["kid"]}]'::jsonb));
SELECT is(pg_temp.states('g1_kid', 'g1_join'), '{waiting,waiting}', 'a flow added by a running task waits for its try');
SELECT errands.worker_fail_jobs('w', pg_temp.ids('par'), ARRAY['try 1 failed']);
SELECT is(pg_temp.states('g1_kid', 'g1_join'), '{gone,gone}', 'the try fails: what it added is cancelled');
UPDATE errands._jobs SET run_at = now() WHERE id = pg_temp.id('par');
SELECT errands.get_jobs('w', '{t_par}');
SELECT pg_temp.flow('g2_', jsonb_build_object('parent', pg_temp.id('par'), 'steps', '[
    {"name": "kid", "task": "g_kid"}, {"name": "join", "task": "g_join", "depends_on": ["kid"]}]'::jsonb));
SELECT errands.worker_complete_jobs('w', pg_temp.ids('par'));
SELECT is(pg_temp.states('g2_kid', 'g2_join'), '{pending,waiting}', 'the try completes: its flow goes on');
SELECT is(errands.dependency_results(pg_temp.id('g2_kid')), '{}'::jsonb,
          'the parent is not among a step''s dependency results');
SELECT is(pg_temp.error_of(format('SELECT errands.add_flow(%L)', jsonb_build_object('parent', pg_temp.id('g2_kid'),
                                  'steps', '[{"name": "a", "task": "t"}]'::jsonb))),
          format('22023: errands: a flow''s parent must be a running job; job %s is not running', pg_temp.id('g2_kid')),
          'a parent that is not running is refused');

------------------------------------------------------------------------------
-- A completion never leaves an edge to a job it removed (_check_late_dependents)
------------------------------------------------------------------------------
-- The edge a concurrent add_job(depends_on) wrote while the completion's fast path
-- looked (made here by hand: the job is gone, its edge unresolved) fails the
-- completion with 40001, changing nothing, so that its retry sees the edge.
SELECT id AS late_dep FROM errands.add_job('t_late') \gset
SELECT id AS late_other FROM errands.add_job('t_late') \gset
SELECT count(*) FROM errands.get_jobs('w_late', ARRAY['t_late'], 2);
SELECT id AS late_next FROM errands.add_job('t_late_next') \gset
INSERT INTO errands._job_dependencies (depends_on, job_id, run_anyway, resolved)
VALUES (-:late_dep, :late_next, false, false);
SELECT throws_ok(format('SELECT errands._check_late_dependents(ARRAY[%s, %s]::bigint[])', -:late_dep, :late_other),
                 '40001', format('errands: job %s became a dependency of another job while it completed; retry the completion', -:late_dep),
                 'an unresolved edge to a job no longer in _jobs: 40001 naming the job');
SELECT lives_ok(format('SELECT errands._check_late_dependents(ARRAY[%s, %s]::bigint[])', :late_dep, :late_other),
                'no such edge (jobs still in _jobs, or none): nothing raised');
DELETE FROM errands._job_dependencies WHERE depends_on = -:late_dep;
-- Fetched jobs (their row keeps the fetch's own lock as xmax) complete on the
-- fast path: deleted, nothing kept, with or without results.
SELECT is((SELECT count(*) FROM errands._jobs WHERE id IN (:late_dep, :late_other) AND xmax = xmin), 2::bigint,
          'a fetched job''s row carries the fetch''s lock as xmax = xmin');
SELECT set_eq(format('SELECT errands.worker_complete_jobs(''w_late'', ARRAY[%s, %s]::bigint[])', :late_dep, :late_other),
              ARRAY[:late_dep, :late_other]::bigint[], 'fetched jobs complete');
SELECT is((SELECT count(*) FROM errands._jobs WHERE id IN (:late_dep, :late_other))
          + (SELECT count(*) FROM errands._finished_jobs WHERE id IN (:late_dep, :late_other)), 0::bigint,
          'and are gone (no dependents, no retention)');

------------------------------------------------------------------------------
-- Bad flows: refused naming the step, nothing written
------------------------------------------------------------------------------
SELECT errands.add_job('t_keyed', job_key => 'k1');
CREATE TEMP TABLE before AS SELECT pg_temp.counts() AS c;
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": []}')$$),
          '22023: errands: a flow must be an object with a non-empty "steps" array, got {"steps": []}', 'an empty flow');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('[1]')$$),
          '22023: errands: a flow must be an object with a non-empty "steps" array, got [1]', 'a flow that is not an object');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "a", "task": "t"}], "step": 1}')$$),
          '22023: errands: unknown flow field ''step''; expected steps, parent', 'an unknown flow field');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "a", "task": "t", "depends_on": ["c"]},
    {"name": "b", "task": "t", "depends_on": ["a"]}, {"name": "c", "task": "t", "depends_on": ["b"]},
    {"name": "d", "task": "t", "depends_on": ["c"]}]}')$$),
          '22023: errands: flow step ''a'' is on a dependency cycle', 'a cycle, naming a step on it');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "z", "task": "t"},
    {"name": "after", "task": "t", "depends_on": ["loop"]}, {"name": "loop", "task": "t", "depends_on": ["loop"]}]}')$$),
          '22023: errands: flow step ''loop'' is on a dependency cycle', 'a step depending on itself');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "a", "task": "t", "depends_on": ["nope"]}]}')$$),
          '22023: errands: flow step ''a'' depends on unknown step ''nope''', 'an unknown step name');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "a", "task": "t"}, {"name": "a", "task": "u"}]}')$$),
          '22023: errands: flow step ''a'' appears 2 times (step names must be unique)', 'a duplicate step name');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "a", "task": "t", "prio": 1}]}')$$),
          '22023: errands: flow step ''a'': unknown field ''prio'' (expected name, task, payload, queue, run_at, max_attempts, key, priority, flags, timeout, depends_on, run_anyway)',
          'an unknown step field');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"task": "t"}]}')$$),
          '22023: errands: flow step 1 needs a "name" of 1 to 128 characters, got none', 'a step without a name');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "a"}]}')$$),
          '22023: errands: flow step ''a'' needs a "task" (a string), got none', 'a step without a task');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "a", "task": "t", "priority": "high"}]}')$$),
          '22023: errands: flow step ''a'': priority must be a number, got "high"', 'a field of the wrong JSON type');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "ok", "task": "t"}, {"name": "b", "task": "t", "max_attempts": 0}]}')$$),
          '22023: errands: flow step ''b'': max_attempts must be between 1 and 32767, got 0', 'a bad job field, naming the step');
SELECT is(pg_temp.error_of($$SELECT errands.add_flow('{"steps": [{"name": "a", "task": "t", "key": "k1"}]}')$$),
          '22023: errands: flow step ''a'': job key ''k1'' is already used by job ' || (SELECT id FROM errands._jobs WHERE key = 'k1'),
          'a key already in use');
SELECT is(pg_temp.counts(), (SELECT c FROM before), 'nothing was written by any refused flow');

SELECT * FROM finish();
ROLLBACK;
