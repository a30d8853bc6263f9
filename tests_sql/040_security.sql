-- Privileges (nothing for PUBLIC; grant_enqueue / grant_worker), SECURITY
-- DEFINER with a fixed search_path against hostile search paths, the payload
-- size limit, and jobs of unknown tasks staying pending.
BEGIN;
SELECT plan(89);

CREATE ROLE errands_t040_web;
CREATE ROLE errands_t040_worker;
CREATE ROLE errands_t040_nobody;
CREATE ROLE errands_t040_attacker;
SELECT errands.grant_enqueue('errands_t040_web');
SELECT errands.grant_worker('errands_t040_worker');
SELECT errands.grant_worker('errands_t040_attacker');

-- Nothing for PUBLIC -------------------------------------------------------------------

SELECT is(
    ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p,
                 LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
          WHERE p.pronamespace = 'errands'::regnamespace AND a.grantee = 0
          ORDER BY 1),
    '{}'::text[],
    'no function in schema errands is executable by PUBLIC (lists those that are)'
);
SELECT ok(NOT EXISTS (SELECT 1 FROM pg_namespace n,
                      LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
                      WHERE n.nspname = 'errands' AND a.grantee = 0),
          'PUBLIC has no privilege on schema errands');
SELECT is(
    ARRAY(SELECT c.oid::regclass::text FROM pg_class c,
                 LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
          WHERE c.relnamespace = 'errands'::regnamespace AND a.grantee = 0
          ORDER BY 1),
    '{}'::text[],
    'no table, view or sequence in schema errands is open to PUBLIC'
);

-- SECURITY DEFINER with a fixed search_path ---------------------------------------------

SELECT is(
    ARRAY(SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.pronamespace = 'errands'::regnamespace
            AND left(p.proname, 1) <> '_'
            AND p.proname NOT IN ('grant_enqueue', 'grant_read', 'grant_worker', 'grant_dashboard', 'import_graphile', 'job_trigger')
            AND NOT (p.prosecdef AND 'search_path=pg_catalog, pg_temp' = ANY(p.proconfig))
          ORDER BY 1),
    '{}'::text[],
    'every public API function but import_graphile and job_trigger (070_triggers) is SECURITY DEFINER with search_path = pg_catalog, pg_temp'
);
SELECT ok((SELECT bool_and(NOT p.prosecdef AND p.proconfig = ARRAY['search_path=pg_catalog, pg_temp'])
           FROM pg_proc p WHERE p.oid IN ('errands.grant_enqueue(regrole)'::regprocedure,
                                          'errands.grant_read(regrole)'::regprocedure,
                                          'errands.grant_worker(regrole)'::regprocedure,
                                          'errands.import_graphile(text, boolean)'::regprocedure)),
          'grant_enqueue, grant_read, grant_worker and import_graphile run as the caller (not SECURITY DEFINER), fixed search_path');
SELECT is(obj_description('errands.grant_enqueue(regrole)'::regprocedure, 'pg_proc') IS NOT NULL
          AND obj_description('errands.grant_worker(regrole)'::regprocedure, 'pg_proc') IS NOT NULL,
          true, 'grant_enqueue and grant_worker have comments');

-- What grant_enqueue gives ---------------------------------------------------------------

SELECT is(
    ARRAY(SELECT p.proname::text FROM pg_proc p
          WHERE p.pronamespace = 'errands'::regnamespace
            AND has_function_privilege('errands_t040_web', p.oid, 'EXECUTE')
          ORDER BY 1),
    ARRAY['_job_trigger_options', 'add_flow', 'add_job', 'add_jobs', 'remove_job',
          'set_traceparent'],
    'grant_enqueue: EXECUTE on add_job, add_jobs, add_flow, remove_job, set_traceparent and job_trigger''s argument parser only'
);
SELECT is(
    ARRAY(SELECT c.oid::regclass::text FROM pg_class c
          WHERE c.relnamespace = 'errands'::regnamespace
            AND has_table_privilege('errands_t040_web', c.oid, 'SELECT, INSERT, UPDATE, DELETE')
          ORDER BY 1),
    '{}'::text[],
    'grant_enqueue: no privilege on any table or view'
);

SET LOCAL ROLE errands_t040_web;
SELECT lives_ok($$SELECT errands.add_job('sec_web', '{"secret": 1}', job_key := 'sec:web')$$,
                'enqueue role: add_job works');
SELECT lives_ok($$SELECT errands.add_jobs(ARRAY[ROW('sec_web', '{"n": 2}', NULL, NULL, NULL, NULL, NULL, NULL),
                                               ROW('sec_web', '{"n": 3}', 'sec_q', NULL, NULL, NULL, NULL, NULL)
                                              ]::errands.job_spec[])$$,
                'enqueue role: add_jobs works');
SELECT is((SELECT key FROM errands.remove_job('sec:web')), 'sec:web', 'enqueue role: remove_job works');
SELECT throws_ok($$SELECT * FROM errands.jobs$$, '42501', NULL,
                 'enqueue role: SELECT on errands.jobs is denied');
SELECT throws_ok($$SELECT * FROM errands.finished_jobs$$, '42501', NULL,
                 'enqueue role: SELECT on errands.finished_jobs is denied');
SELECT throws_ok($$SELECT errands.prune_finished_jobs()$$, '42501', NULL,
                 'enqueue role: prune_finished_jobs is denied');
SELECT throws_ok($$SELECT * FROM errands.watch_jobs(ARRAY[1::bigint])$$, '42501', NULL,
                 'enqueue role: watch_jobs is denied (waiting reads results)');
SELECT throws_ok($$SELECT * FROM errands._jobs$$, '42501', NULL,
                 'enqueue role: SELECT on errands._jobs is denied');
SELECT throws_ok($$SELECT * FROM errands._tasks$$, '42501', NULL,
                 'enqueue role: SELECT on errands._tasks is denied');
SELECT throws_ok($$UPDATE errands._jobs SET priority = 1$$, '42501', NULL,
                 'enqueue role: UPDATE of errands._jobs is denied');
SELECT throws_ok($$SELECT errands.complete_jobs(ARRAY[1::bigint])$$, '42501', NULL,
                 'enqueue role: complete_jobs is denied');
SELECT throws_ok($$SELECT errands.permanently_fail_jobs(ARRAY[1::bigint])$$, '42501', NULL,
                 'enqueue role: permanently_fail_jobs is denied');
SELECT throws_ok($$SELECT errands.reschedule_jobs(ARRAY[1::bigint], priority := 5)$$, '42501', NULL,
                 'enqueue role: reschedule_jobs is denied');
SELECT throws_ok($$SELECT errands.force_unlock_workers(ARRAY['w'])$$, '42501', NULL,
                 'enqueue role: force_unlock_workers is denied');
SELECT throws_ok($$SELECT errands.get_jobs('w', ARRAY['sec_web'])$$, '42501', NULL,
                 'enqueue role: get_jobs is denied');
SELECT throws_ok($$SELECT errands.worker_complete_jobs('w', ARRAY[1::bigint])$$, '42501', NULL,
                 'enqueue role: worker_complete_jobs is denied');
SELECT throws_ok($$SELECT errands.worker_fail_jobs('w', ARRAY[1::bigint], ARRAY['x'])$$, '42501', NULL,
                 'enqueue role: worker_fail_jobs is denied');
SELECT throws_ok($$SELECT errands.worker_snooze_jobs('w', ARRAY[1::bigint], ARRAY[interval '1 s'])$$, '42501', NULL,
                 'enqueue role: worker_snooze_jobs is denied');
SELECT throws_ok($$SELECT errands.worker_fail_jobs_now('w', ARRAY[1::bigint], ARRAY['x'])$$, '42501', NULL,
                 'enqueue role: worker_fail_jobs_now is denied');
SELECT throws_ok($$SELECT errands.worker_cancel_jobs('w', ARRAY[1::bigint], ARRAY['x'])$$, '42501', NULL,
                 'enqueue role: worker_cancel_jobs is denied');
SELECT throws_ok($$SELECT errands.worker_cancel_requests('w')$$, '42501', NULL,
                 'enqueue role: worker_cancel_requests is denied');
SELECT throws_ok($$SELECT errands.next_start_at(ARRAY['sec_web'])$$, '42501', NULL,
                 'enqueue role: next_start_at is denied');
SELECT throws_ok($$SELECT errands.cancel_jobs(ARRAY[1::bigint])$$, '42501', NULL,
                 'enqueue role: cancel_jobs is denied');
SELECT throws_ok($$SELECT errands.reset_locked()$$, '42501', NULL,
                 'enqueue role: reset_locked is denied');
SELECT throws_ok($$SELECT errands.try_lock_worker('w')$$, '42501', NULL,
                 'enqueue role: try_lock_worker is denied');
SELECT throws_ok($$SELECT errands.cleanup()$$, '42501', NULL,
                 'enqueue role: cleanup is denied');
SELECT throws_ok($$SELECT errands._notify()$$, '42501', NULL,
                 'enqueue role: private helpers (errands._notify) are denied');
SELECT throws_ok($$SELECT errands.grant_worker('errands_t040_web')$$, '42501', NULL,
                 'enqueue role: cannot grant itself the worker privileges');
RESET ROLE;

SELECT is(ARRAY(SELECT payload::text FROM errands.jobs WHERE task_identifier = 'sec_web' ORDER BY id),
          ARRAY['{"n": 2}', '{"n": 3}'],
          'the enqueue role''s jobs were stored (and its removed job is gone)');

-- What grant_worker gives: the worker loop --------------------------------------------

SELECT ok(has_table_privilege('errands_t040_worker', 'errands.jobs', 'SELECT')
          AND NOT has_table_privilege('errands_t040_worker', 'errands._jobs', 'SELECT')
          AND NOT has_table_privilege('errands_t040_worker', 'errands.jobs', 'INSERT, UPDATE, DELETE'),
          'grant_worker: SELECT on errands.jobs, nothing on errands._jobs');
SELECT ok(has_table_privilege('errands_t040_worker', 'errands.finished_jobs', 'SELECT')
          AND NOT has_table_privilege('errands_t040_worker', 'errands._finished_jobs', 'SELECT')
          AND has_function_privilege('errands_t040_worker', 'errands.prune_finished_jobs(integer)', 'EXECUTE')
          AND has_function_privilege('errands_t040_worker', 'errands.watch_jobs(bigint[], interval)', 'EXECUTE')
          AND NOT has_function_privilege('errands_t040_worker', 'errands.set_retention(interval)', 'EXECUTE'),
          'grant_worker: SELECT on errands.finished_jobs, prune_finished_jobs, watch_jobs, not set_retention');
SELECT ok(has_table_privilege('errands_t040_worker', 'errands.queues', 'SELECT')
          AND NOT has_function_privilege('errands_t040_worker', 'errands.set_queue_limits(text, integer, integer, interval)', 'EXECUTE')
          AND NOT has_function_privilege('errands_t040_worker', 'errands.set_task_limits(text, integer, integer, interval)', 'EXECUTE')
          AND NOT has_function_privilege('errands_t040_worker', 'errands.pause_queue(text)', 'EXECUTE')
          AND NOT has_function_privilege('errands_t040_worker', 'errands.resume_task(text)', 'EXECUTE'),
          'grant_worker: reads the flow-control views; setting limits and pauses stays the owner''s');
SELECT ok(NOT has_function_privilege('errands_t040_worker', 'errands.grant_worker(regrole)', 'EXECUTE')
          AND NOT has_function_privilege('errands_t040_worker', 'errands._validate_specs(errands.job_spec[])', 'EXECUTE'),
          'grant_worker: no EXECUTE on the grant helpers or private functions');

SET LOCAL ROLE errands_t040_worker;
SELECT lives_ok($$SELECT errands.add_job('sec_work', '{"w": 1}')$$, 'worker role: add_job works');
CREATE TEMP TABLE fetched AS SELECT * FROM errands.get_jobs('sec_w1', ARRAY['sec_work']);
SELECT is((SELECT payload::text FROM fetched), '{"w": 1}', 'worker role: get_jobs fetches the job');
SELECT is(ARRAY(SELECT errands.worker_complete_jobs('sec_w1', ARRAY(SELECT id FROM fetched))),
          ARRAY(SELECT id FROM fetched), 'worker role: worker_complete_jobs completes it');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'sec_work'), 0,
          'worker role: reads errands.jobs (the job is gone)');
SELECT lives_ok($$SELECT errands.add_job('sec_work')$$, 'worker role: add another job');
SELECT is((SELECT count(*)::int FROM errands.get_jobs('sec_w1', ARRAY['sec_work'])), 1,
          'worker role: fetches it');
SELECT is((SELECT count(*)::int FROM errands.worker_fail_jobs('sec_w1', ARRAY(SELECT id FROM errands.jobs WHERE locked_by = 'sec_w1'), ARRAY['boom'])), 1,
          'worker role: worker_fail_jobs works');
SELECT lives_ok($$SELECT errands.worker_snooze_jobs('sec_w1', ARRAY[1::bigint], ARRAY[interval '1 s'])$$,
                'worker role: worker_snooze_jobs works');
SELECT lives_ok($$SELECT errands.worker_fail_jobs_now('sec_w1', ARRAY[1::bigint], ARRAY['x'])$$,
                'worker role: worker_fail_jobs_now works');
SELECT lives_ok($$SELECT errands.worker_cancel_jobs('sec_w1', ARRAY[1::bigint], ARRAY['x'])$$,
                'worker role: worker_cancel_jobs works');
SELECT lives_ok($$SELECT errands.worker_cancel_requests('sec_w1')$$,
                'worker role: worker_cancel_requests works');
SELECT lives_ok($$SELECT errands.next_start_at(ARRAY['sec_work'])$$,
                'worker role: next_start_at works');
SELECT lives_ok($$SELECT errands.cancel_jobs(ARRAY[987654321::bigint])$$,
                'worker role: cancel_jobs works');
SELECT is(errands.try_lock_worker('sec_lock_w'), true, 'worker role: try_lock_worker takes its lock');
SELECT lives_ok($$SELECT errands.reset_locked()$$, 'worker role: reset_locked works');
SELECT lives_ok($$SELECT errands.cleanup()$$, 'worker role: cleanup works');
SELECT lives_ok($$SELECT errands.reschedule_jobs(ARRAY(SELECT id FROM errands.jobs), priority := 1)$$,
                'worker role: admin functions (reschedule_jobs) work');
SELECT throws_ok($$SELECT * FROM errands._jobs$$, '42501', NULL,
                 'worker role: the private tables stay closed');
RESET ROLE;
SELECT pg_advisory_unlock(errands._worker_lock_key('sec_lock_w'));

-- A role with no grant can call nothing -----------------------------------------------

SET LOCAL ROLE errands_t040_nobody;
SELECT throws_ok($$SELECT errands.add_job('sec_nobody')$$, '42501', NULL, 'no grant: add_job is denied');
SELECT throws_ok($$SELECT errands.remove_job('k')$$, '42501', NULL, 'no grant: remove_job is denied');
SELECT throws_ok($$SELECT errands.get_jobs('w', ARRAY['x'])$$, '42501', NULL, 'no grant: get_jobs is denied');
SELECT throws_ok($$SELECT * FROM errands.jobs$$, '42501', NULL, 'no grant: errands.jobs is denied');
SELECT throws_ok($$SELECT * FROM errands.finished_jobs$$, '42501', NULL, 'no grant: errands.finished_jobs is denied');
RESET ROLE;

-- A hostile search_path cannot hijack the API --------------------------------------------

-- The attacker (a worker-grant role) owns schema evil, put first on its
-- search_path, shadowing pg_catalog functions, operators and tables.
CREATE SCHEMA evil AUTHORIZATION errands_t040_attacker;
SET LOCAL ROLE errands_t040_attacker;
CREATE FUNCTION evil.hijack(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'hijacked: %', what; END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('now'); RETURN NULL; END $$;
CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('pg_notify'); END $$;
CREATE FUNCTION evil.json_typeof(json) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('json_typeof'); RETURN NULL; END $$;
CREATE FUNCTION evil.length(text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('length'); RETURN NULL; END $$;
CREATE FUNCTION evil.octet_length(text) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('octet_length'); RETURN NULL; END $$;
CREATE FUNCTION evil.cardinality(anyarray) RETURNS integer LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('cardinality'); RETURN NULL; END $$;
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('current_setting'); RETURN NULL; END $$;
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('nextval'); RETURN NULL; END $$;
CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('= (text)'); RETURN NULL; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.text_eq);
CREATE FUNCTION evil.jsonb_any(jsonb, text[]) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.hijack('?|'); RETURN NULL; END $$;
CREATE OPERATOR evil.?| (LEFTARG = jsonb, RIGHTARG = text[], FUNCTION = evil.jsonb_any);
CREATE TABLE evil._jobs (id bigint);
CREATE TABLE evil._tasks (id int);
RESET ROLE;

-- Runs sql with the hostile search_path; 'ok' or the error message.
CREATE FUNCTION pg_temp.hostile(sql text) RETURNS text
LANGUAGE plpgsql SET search_path = evil, pg_catalog, public AS $$
BEGIN
    EXECUTE sql;
    RETURN 'ok';
EXCEPTION WHEN others THEN
    RETURN SQLERRM;
END
$$;

SET LOCAL ROLE errands_t040_attacker;
SELECT is(pg_temp.hostile($$SELECT now()$$), 'hijacked: now',
          'the attack is real: unqualified now() runs evil.now()');
SELECT is(pg_temp.hostile($$SELECT 'a'::text = 'a'::text$$), 'hijacked: = (text)',
          'the attack is real: text = text runs evil''s operator');
SELECT is(pg_temp.hostile($$SELECT pg_notify('x', '')$$), 'hijacked: pg_notify',
          'the attack is real: unqualified pg_notify runs evil.pg_notify');
SELECT is(pg_temp.hostile($$SELECT errands.add_job('sec_evil', '[1, 2]', queue_name := 'sec_evil_q', flags := ARRAY['f'])$$),
          'ok', 'hostile search_path: add_job is not hijacked');
SELECT is(pg_temp.hostile($$SELECT errands.add_job('sec_evil', '[3]', job_key := 'sec:evil')$$),
          'ok', 'hostile search_path: keyed add_job (json_typeof, merge path) is not hijacked');
SELECT is(pg_temp.hostile($$SELECT errands.add_job('sec_evil', '[4]', job_key := 'sec:evil')$$),
          'ok', 'hostile search_path: add_job replacing a keyed array job is not hijacked');
SELECT is(pg_temp.hostile($$SELECT errands.add_jobs(ARRAY[ROW('sec_evil', '{}', NULL, NULL, NULL, NULL, NULL, NULL)]::errands.job_spec[])$$),
          'ok', 'hostile search_path: add_jobs is not hijacked');
SELECT is(pg_temp.hostile($$CREATE TEMP TABLE evil_fetch AS SELECT * FROM errands.get_jobs('sec_evil_w', ARRAY['sec_evil'], 10, ARRAY['nope'])$$),
          'ok', 'hostile search_path: get_jobs with forbidden_flags (?|) is not hijacked');
SELECT is(pg_temp.hostile($$SELECT errands.worker_complete_jobs('sec_evil_w', ARRAY(SELECT id FROM evil_fetch))$$),
          'ok', 'hostile search_path: worker_complete_jobs is not hijacked');
SELECT is(pg_temp.hostile($$SELECT errands.remove_job('sec:evil')$$),
          'ok', 'hostile search_path: remove_job is not hijacked');
RESET ROLE;

SELECT is((SELECT count(*)::int FROM evil_fetch), 3, 'hostile search_path: get_jobs fetched the 3 jobs');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'sec_evil'), 0,
          'hostile search_path: the jobs were completed / removed for real');

-- Payload size limit ------------------------------------------------------------------

SELECT lives_ok($$SELECT errands.add_job('sec_size', to_json(repeat('x', 1048574)))$$,
                'a payload of exactly 1 MiB (1048576 bytes of JSON) is accepted by default');
SELECT throws_ok($$SELECT errands.add_job('sec_size', to_json(repeat('x', 1048575)))$$, '22023',
                 'errands: payload must be at most 1048576 bytes (errands.set_max_payload_bytes), got 1048577 bytes',
                 'a payload of 1048577 bytes raises 22023 naming the size and the limit');
SELECT is(errands.set_max_payload_bytes(100), 100::bigint, 'the owner sets the limit to 100 bytes');
SELECT throws_ok($$SELECT errands.add_jobs(ARRAY[
                       ROW('sec_size', '{}', NULL, NULL, NULL, NULL, NULL, NULL),
                       ROW('sec_size', to_json(repeat(chr(233), 50)), NULL, NULL, NULL, NULL, NULL, NULL)
                   ]::errands.job_spec[])$$, '22023',
                 'errands: payload must be at most 100 bytes (errands.set_max_payload_bytes), got 102 bytes (spec 2)',
                 'add_jobs: the limit counts bytes, not characters, and names the spec');
SELECT throws_ok($$SELECT errands.add_job('sec_size', to_json(repeat('x', 99)), job_key := 'sec:size',
                                          job_key_mode := 'unsafe_dedupe')$$, '22023', NULL,
                 'the unsafe_dedupe path checks the limit too');
SELECT lives_ok($$SELECT errands.add_job('sec_size', to_json(repeat('x', 98)))$$,
                'limit 100: a 100-byte payload is accepted');
SELECT throws_ok($$SELECT errands.set_max_payload_bytes(-1)$$, '22023',
                 'errands: max_payload_bytes must be 0 (no limit) or a positive number of bytes, got -1',
                 'set_max_payload_bytes(-1) raises 22023 naming the value');
SELECT throws_ok($$SELECT errands.set_max_payload_bytes(NULL)$$, '22023',
                 'errands: max_payload_bytes must be 0 (no limit) or a positive number of bytes, got NULL',
                 'set_max_payload_bytes(NULL) raises 22023');
SELECT is(errands.set_max_payload_bytes(0), 0::bigint, 'the owner turns the limit off');
SELECT lives_ok($$SELECT errands.add_job('sec_size', to_json(repeat('x', 1048576)))$$,
                'limit 0 turns the check off');
SELECT errands.set_max_payload_bytes(1048576);
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'sec_size'), 3,
          'the refused payloads wrote nothing');

-- A job of a task no worker knows stays pending and visible ---------------------------

CREATE TEMP TABLE orphan AS SELECT * FROM errands.add_job('sec_unknown_task', '{"o": 1}');
SELECT is((SELECT count(*)::int FROM errands.get_jobs('sec_w2', ARRAY['sec_size', 'sec_web', 'other'], 100)
           WHERE task_identifier = 'sec_unknown_task'), 0,
          'get_jobs with other task names never returns the unknown task''s job');
SELECT ok((SELECT attempts = 0 AND locked_at IS NULL AND locked_by IS NULL AND run_at <= now()
                  AND payload::text = '{"o": 1}' AND revision = 0
           FROM errands.jobs WHERE id = (SELECT id FROM orphan)),
          'the unknown task''s job stays pending, untouched, in errands.jobs');

SELECT * FROM finish();
ROLLBACK;
