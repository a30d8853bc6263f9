-- Web roles get exactly what they should: a role with only grant_enqueue never
-- gets back a payload (or last_error) it did not send, through remove_job,
-- unsafe_dedupe, replace or add_jobs; grant_read (or grant_worker) unlocks them.
-- The caller is the role chosen by SET ROLE (as PostgREST does, with a NOINHERIT
-- authenticator as session user), not the owner of a SECURITY DEFINER function in
-- between. The payload size limit lives in errands._settings: SET of the old
-- setting errands.max_payload_bytes changes nothing, set_max_payload_bytes works
-- for the owner and a role granted it and is denied to the enqueue role.
BEGIN;
SELECT plan(35);

CREATE ROLE errands_t041_auth LOGIN NOINHERIT;
CREATE ROLE errands_t041_web NOLOGIN;
CREATE ROLE errands_t041_reader NOLOGIN;
CREATE ROLE errands_t041_worker NOLOGIN;
CREATE ROLE errands_t041_admin NOLOGIN;
GRANT errands_t041_web, errands_t041_reader TO errands_t041_auth;
SELECT errands.grant_enqueue('errands_t041_web');
SELECT errands.grant_enqueue('errands_t041_reader');
SELECT errands.grant_read('errands_t041_reader');
SELECT errands.grant_worker('errands_t041_worker');
GRANT USAGE ON SCHEMA errands TO errands_t041_admin;
GRANT EXECUTE ON FUNCTION errands.set_max_payload_bytes(bigint) TO errands_t041_admin;

-- Other people's jobs, added by the owner.
SELECT errands.add_job('wr_task', '{"secret": "s42"}', job_key := 'user:42');
SELECT errands.add_job('wr_task', '{"secret": "s43"}', job_key := 'user:43');
SELECT errands.add_job('wr_task', '{"secret": "s44"}', job_key := 'user:44');
SELECT errands.add_job('wr_batch', '[{"secret": "b1"}]', job_key := 'batch:1');
SELECT errands.add_job('wr_failed', '{"secret": "f"}', job_key := 'user:45', max_attempts := 1);
SELECT errands.worker_fail_jobs('wr_w', ARRAY(SELECT id FROM errands.get_jobs('wr_w', ARRAY['wr_failed'])),
                                ARRAY['password=hunter2']);

-- What grant_read gives -------------------------------------------------------------

SELECT is(
    ARRAY(SELECT c.oid::regclass::text FROM pg_class c
          WHERE c.relnamespace = 'errands'::regnamespace
            AND has_table_privilege('errands_t041_reader', c.oid, 'SELECT, INSERT, UPDATE, DELETE')
          ORDER BY 1),
    ARRAY['errands.finished_jobs', 'errands.flow_steps', 'errands.jobs', 'errands.limits',
          'errands.queues', 'errands.task_limits'],
    'grant_read: SELECT on the errands.jobs, errands.finished_jobs and errands.flow_steps views and the flow-control views, nothing else');
SELECT is(
    ARRAY(SELECT c.oid::regclass::text FROM pg_class c
          WHERE c.relnamespace = 'errands'::regnamespace
            AND has_table_privilege('errands_t041_reader', c.oid, 'INSERT, UPDATE, DELETE')
          ORDER BY 1),
    '{}'::text[],
    'grant_read: no write on any table or view');
SELECT throws_ok($$SELECT errands.grant_read(NULL)$$, '22023', 'errands: grant_read needs a role, got NULL',
                 'grant_read(NULL) raises 22023');

-- The enqueue role, as PostgREST runs a request: session user the authenticator,
-- SET LOCAL ROLE to the web role ------------------------------------------------------

SET LOCAL SESSION AUTHORIZATION errands_t041_auth;
SET LOCAL ROLE errands_t041_web;
SELECT is(session_user::text || '/' || current_user::text, 'errands_t041_auth/errands_t041_web',
          'the session is the authenticator, SET ROLE''d to the web role');

SELECT is((SELECT payload::text FROM errands.add_job('wr_task', '{"mine": 1}')), '{"mine": 1}',
          'enqueue role: add_job returns the payload it sent');
CREATE TEMP TABLE web_dedupe AS
SELECT * FROM errands.add_job('wr_task', '{"guess": 1}', job_key := 'user:42',
                              job_key_mode := 'unsafe_dedupe');
SELECT ok((SELECT key = 'user:42' AND payload IS NULL AND last_error IS NULL AND revision = 1
           FROM web_dedupe),
          'enqueue role: unsafe_dedupe on another job''s key returns the row with payload NULL');
CREATE TEMP TABLE web_dedupe_failed AS
SELECT * FROM errands.add_job('wr_task', '{"guess": 1}', job_key := 'user:45',
                              job_key_mode := 'unsafe_dedupe');
SELECT ok((SELECT payload IS NULL AND last_error IS NULL AND state = 'failed' FROM web_dedupe_failed),
          'enqueue role: unsafe_dedupe on a failed job hides its payload and last_error');
CREATE TEMP TABLE web_removed AS SELECT * FROM errands.remove_job('user:43');
SELECT ok((SELECT key = 'user:43' AND payload IS NULL AND last_error IS NULL FROM web_removed),
          'enqueue role: remove_job of another job returns the row with payload NULL');
SELECT is((SELECT payload::text FROM errands.add_job('wr_task', '{"mine": 44}', job_key := 'user:44')),
          '{"mine": 44}', 'enqueue role: replace returns the payload it wrote (the old one is gone)');
SELECT is((SELECT payload::text FROM errands.add_job('wr_task', '{"mine": 44}', job_key := 'user:44',
                                                     timeout := interval '1 minute')),
          '{"mine": 44}', 'enqueue role: replace with a timeout returns the payload it wrote');
SELECT ok((SELECT payload IS NULL
           FROM errands.add_job('wr_batch', '[{"mine": "b2"}]', job_key := 'batch:1')),
          'enqueue role: an array payload merged into another job''s batch comes back NULL');
SELECT ok((SELECT payload IS NULL
           FROM errands.add_job('wr_batch', '[{"mine": "b3"}]', job_key := 'batch:1',
                                timeout := interval '1 minute')),
          'enqueue role: a merged batch with a timeout comes back NULL too');
SELECT is(ARRAY(SELECT coalesce(payload::text, 'NULL') FROM errands.add_jobs(ARRAY[
              ROW('wr_task', '{"n": 1}', NULL, NULL, NULL, NULL, NULL, NULL),
              ROW('wr_batch', '[{"mine": "b4"}]', NULL, NULL, NULL, 'batch:1', NULL, NULL),
              ROW('wr_task', '{"n": 3}', NULL, NULL, NULL, 'web:own', NULL, NULL)
          ]::errands.job_spec[])),
          ARRAY['{"n": 1}', 'NULL', '{"n": 3}'],
          'enqueue role: add_jobs hides only the merged batch''s payload');
SELECT ok((SELECT payload IS NULL FROM errands.remove_job('web:own')),
          'enqueue role: remove_job hides even its own job''s payload (it cannot know whose it is)');
SELECT ok(errands.remove_job('user:nobody') IS NULL, 'enqueue role: remove_job of an unknown key is NULL');
SELECT throws_ok($$SELECT payload FROM errands.jobs$$, '42501', NULL,
                 'enqueue role: SELECT on errands.jobs is denied');
SELECT throws_ok($$SELECT errands.get_jobs('w', ARRAY['wr_task'])$$, '42501', NULL,
                 'enqueue role: get_jobs is denied');

-- The payload size limit cannot be changed by the enqueue role.
SET LOCAL errands.max_payload_bytes = 100000000;
SELECT throws_ok($$SELECT errands.add_job('wr_big', to_json(repeat('x', 2000000)))$$, '22023',
                 'errands: payload must be at most 1048576 bytes (errands.set_max_payload_bytes), got 2000002 bytes',
                 'enqueue role: SET errands.max_payload_bytes = 100000000 does not lift the limit');
SELECT throws_ok($$SELECT errands.add_jobs(ARRAY[ROW('wr_big', to_json(repeat('x', 2000000)),
                                                      NULL, NULL, NULL, 'big', NULL, NULL)]::errands.job_spec[])$$,
                 '22023', NULL, 'enqueue role: nor for add_jobs with a key');
SET LOCAL errands.max_payload_bytes = 0;
SELECT throws_ok($$SELECT errands.add_job('wr_big', to_json(repeat('x', 2000000)))$$, '22023', NULL,
                 'enqueue role: SET errands.max_payload_bytes = 0 does not turn it off');
SELECT throws_ok($$SELECT errands.set_max_payload_bytes(100000000)$$, '42501', NULL,
                 'enqueue role: set_max_payload_bytes is denied');
SELECT throws_ok($$UPDATE errands._settings SET max_payload_bytes = 0$$, '42501', NULL,
                 'enqueue role: UPDATE of errands._settings is denied');
SELECT throws_ok($$SELECT errands.grant_read('errands_t041_web')$$, '42501', NULL,
                 'enqueue role: cannot grant itself grant_read');
RESET errands.max_payload_bytes;

-- A role with grant_read gets the payloads --------------------------------------------

SET LOCAL ROLE errands_t041_reader;
SELECT is((SELECT payload::text FROM errands.add_job('wr_task', '{"guess": 2}', job_key := 'user:42',
                                                     job_key_mode := 'unsafe_dedupe')),
          '{"secret": "s42"}', 'reader role: unsafe_dedupe returns the existing job''s payload');
SELECT is((SELECT payload::text FROM errands.add_job('wr_batch', '[{"r": 5}]', job_key := 'batch:1')),
          '[{"secret": "b1"}, {"mine": "b2"}, {"mine": "b3"}, {"mine": "b4"}, {"r": 5}]',
          'reader role: the merged batch payload is returned whole');
SELECT is((SELECT last_error FROM errands.remove_job('user:45')), 'password=hunter2',
          'reader role: remove_job returns last_error');
SELECT is((SELECT payload::text FROM errands.remove_job('user:42')), '{"secret": "s42"}',
          'reader role: remove_job returns the payload');
RESET ROLE;
RESET SESSION AUTHORIZATION;

SELECT is(current_user::text, session_user::text, 'back to the owner');
SELECT ok(NOT EXISTS (SELECT 1 FROM errands.jobs WHERE key IN ('user:42', 'user:43', 'user:45')),
          'the removed jobs are gone');
SELECT is((SELECT payload::text FROM errands.jobs WHERE key = 'user:44'), '{"mine": 44}',
          'the replaced job holds the web role''s payload');

-- A worker role reads payloads (grant_worker includes grant_read).
SET LOCAL ROLE errands_t041_worker;
SELECT is((SELECT payload::text FROM errands.add_job('wr_task', '{"w": 1}', job_key := 'user:44',
                                                     job_key_mode := 'unsafe_dedupe')),
          '{"mine": 44}', 'worker role: unsafe_dedupe returns the existing payload');
RESET ROLE;

-- An application's SECURITY DEFINER function owned by a role that may read jobs
-- does not unlock payloads for the web role that calls it.
CREATE FUNCTION public.errands_t041_app_remove(k text) RETURNS json
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS $$
    SELECT payload FROM errands.remove_job(k)
$$;
GRANT EXECUTE ON FUNCTION public.errands_t041_app_remove(text) TO errands_t041_web;
SET LOCAL ROLE errands_t041_web;
SELECT ok(public.errands_t041_app_remove('user:44') IS NULL,
          'web role through an owner''s SECURITY DEFINER function: payload still NULL');
RESET ROLE;

-- set_max_payload_bytes: the owner and a role granted it ------------------------------

SET LOCAL ROLE errands_t041_admin;
SELECT is(errands.set_max_payload_bytes(50), 50::bigint, 'a role granted set_max_payload_bytes sets the limit');
RESET ROLE;
SET LOCAL ROLE errands_t041_web;
SELECT throws_ok($$SELECT errands.add_job('wr_task', to_json(repeat('x', 60)))$$, '22023',
                 'errands: payload must be at most 50 bytes (errands.set_max_payload_bytes), got 62 bytes',
                 'the new limit applies to the enqueue role');
RESET ROLE;
SELECT is(errands.set_max_payload_bytes(1048576), 1048576::bigint, 'the owner sets it back');

SELECT * FROM finish();
ROLLBACK;
