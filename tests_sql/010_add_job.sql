-- errands.add_job: defaults, named arguments, the jobs view, payload and flags
-- storage, queue rows, and enqueueing from a trigger.
BEGIN;
SELECT plan(46);

-- The jobs view: its columns, their order and their types.
SELECT columns_are('errands', 'jobs', ARRAY[
    'id', 'queue_name', 'task_identifier', 'payload', 'priority', 'run_at', 'attempts',
    'max_attempts', 'last_error', 'created_at', 'updated_at', 'key', 'locked_at',
    'locked_by', 'revision', 'flags', 'timeout', 'state', 'traceparent', 'errors'
], 'errands.jobs has exactly the documented columns');
SELECT is(
    ARRAY(SELECT a.attname::text FROM pg_attribute a
          WHERE a.attrelid = 'errands.jobs'::regclass AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum),
    ARRAY['id', 'queue_name', 'task_identifier', 'payload', 'priority', 'run_at', 'attempts',
          'max_attempts', 'last_error', 'created_at', 'updated_at', 'key', 'locked_at',
          'locked_by', 'revision', 'flags', 'timeout', 'state', 'traceparent', 'errors'],
    'errands.jobs columns come in the documented order (SELECT * is stable)'
);
SELECT col_type_is('errands', 'jobs', 'id', 'bigint', 'jobs.id is bigint');
SELECT col_type_is('errands', 'jobs', 'payload', 'json', 'jobs.payload is json (not jsonb)');
SELECT col_type_is('errands', 'jobs', 'priority', 'integer', 'jobs.priority is integer');
SELECT col_type_is('errands', 'jobs', 'attempts', 'integer', 'jobs.attempts is integer');
SELECT col_type_is('errands', 'jobs', 'max_attempts', 'integer', 'jobs.max_attempts is integer');
SELECT col_type_is('errands', 'jobs', 'flags', 'jsonb', 'jobs.flags is jsonb');
SELECT col_type_is('errands', 'jobs', 'run_at', 'timestamp with time zone', 'jobs.run_at is timestamptz');
SELECT col_type_is('errands', 'jobs', 'key', 'text', 'jobs.key is text');

-- Defaults: only the identifier given.
CREATE TEMP TABLE d AS SELECT * FROM errands.add_job('defaults_task');

SELECT is((SELECT count(*)::int FROM d), 1, 'add_job returns exactly one row');
SELECT isnt((SELECT id FROM d), NULL, 'add_job returns the new job''s id');
SELECT is((SELECT task_identifier FROM d), 'defaults_task', 'task_identifier is the identifier given');
SELECT is((SELECT payload::text FROM d), '{}', 'payload defaults to {}');
SELECT is((SELECT run_at FROM d), now(), 'run_at defaults to now()');
SELECT is((SELECT max_attempts FROM d), 25, 'max_attempts defaults to 25');
SELECT is((SELECT priority FROM d), 0, 'priority defaults to 0');
SELECT is((SELECT flags FROM d), NULL, 'flags default to NULL');
SELECT is((SELECT attempts FROM d), 0, 'a new job has attempts 0');
SELECT is((SELECT revision FROM d), 0, 'a new job has revision 0');
SELECT is((SELECT queue_name FROM d), NULL, 'queue_name defaults to NULL');
SELECT ok((SELECT key IS NULL AND last_error IS NULL AND locked_at IS NULL AND locked_by IS NULL FROM d),
          'a new job has no key, no last_error and no lock');
SELECT ok((SELECT created_at = now() AND updated_at = now() FROM d),
          'created_at and updated_at are now()');
SELECT is(
    (SELECT d::text FROM d),
    (SELECT j::text FROM errands.jobs j WHERE j.id = (SELECT id FROM d)),
    'the returned row equals the job''s row in errands.jobs'
);

-- Named arguments.
CREATE TEMP TABLE n AS
SELECT * FROM errands.add_job('send_email', json_build_object('to', 'a@b'), job_key := 'welcome:1');
SELECT is((SELECT task_identifier FROM n), 'send_email', 'named arguments: identifier kept');
SELECT is((SELECT payload->>'to' FROM n), 'a@b', 'named arguments: payload kept');
SELECT is((SELECT key FROM n), 'welcome:1', 'named arguments: job_key := sets the key');
SELECT is(
    (SELECT n::text FROM n),
    (SELECT j::text FROM errands.jobs j WHERE j.key = 'welcome:1'),
    'the returned keyed row equals the job''s row in errands.jobs'
);

CREATE TEMP TABLE a AS
SELECT * FROM errands.add_job(
    identifier := 'all_args', payload := '{"x": 1}', queue_name := 'all_q',
    run_at := now() + interval '1 hour', max_attempts := 3, priority := -5,
    flags := ARRAY['slow']);
SELECT ok((SELECT queue_name = 'all_q' AND run_at = now() + interval '1 hour'
                  AND max_attempts = 3 AND priority = -5 FROM a),
          'every argument given by name is stored (queue, future run_at, max_attempts, negative priority)');

-- Payload is json: key order, duplicates and whitespace are kept as given.
SELECT is(
    (SELECT payload::text FROM errands.add_job('json_task', '{"b": 1,   "a" : [ 2, 3 ],"b":4}')),
    '{"b": 1,   "a" : [ 2, 3 ],"b":4}',
    'the returned payload keeps key order, duplicate keys and whitespace'
);
SELECT is(
    (SELECT payload::text FROM errands.jobs WHERE task_identifier = 'json_task'),
    '{"b": 1,   "a" : [ 2, 3 ],"b":4}',
    'the stored payload keeps key order, duplicate keys and whitespace'
);
SELECT is(
    (SELECT payload::text FROM errands.add_job('null_payload_task', NULL)),
    '{}',
    'an explicit NULL payload becomes {}'
);

-- Flags: a text[] becomes a jsonb set; none is NULL.
SELECT is(
    (SELECT flags FROM errands.add_job('flag_task', flags := ARRAY['a', 'b'])),
    '{"a": true, "b": true}'::jsonb,
    'flags {a,b} are stored as {"a": true, "b": true}'
);
SELECT is(
    (SELECT flags FROM errands.add_job('flag_task', flags := ARRAY['a', 'a'])),
    '{"a": true}'::jsonb,
    'a repeated flag is stored once'
);
SELECT is(
    (SELECT flags FROM errands.add_job('flag_task', flags := '{}'::text[])),
    NULL,
    'an empty flags array is stored as NULL'
);
SELECT is(
    (SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'flag_task' AND flags IS NULL),
    1,
    'the view shows NULL flags for the job added with an empty array'
);

-- Queue and task rows are created on first use, once.
SELECT is((SELECT count(*)::int FROM errands._queues WHERE queue_name = 'mail'), 0,
          'no queue row named mail before the first job uses it');
SELECT is((SELECT queue_name FROM errands.add_job('queued_task', queue_name := 'mail')), 'mail',
          'the returned row carries queue_name');
SELECT is((SELECT count(*)::int FROM errands._queues WHERE queue_name = 'mail'), 1,
          'add_job creates the queue row');
SELECT lives_ok($$SELECT errands.add_job('queued_task', queue_name := 'mail')$$,
                'a second job in an existing queue is accepted');
SELECT is((SELECT count(*)::int FROM errands._queues WHERE queue_name = 'mail'), 1,
          'the queue row is not duplicated');
SELECT is((SELECT count(*)::int FROM errands._tasks WHERE identifier = 'queued_task'), 1,
          'add_job creates the task row once');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE queue_name = 'mail'), 2,
          'both jobs are in the queue');

-- Enqueueing from a trigger (the example of docs/sql-api.md).
CREATE TABLE public.users (id serial PRIMARY KEY, email text NOT NULL);
CREATE FUNCTION public.users_enqueue_welcome() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM errands.add_job('send_welcome_email',
                            json_build_object('user_id', NEW.id, 'email', NEW.email),
                            job_key := 'welcome:' || NEW.id);
    RETURN NEW;
END
$$;
CREATE TRIGGER users_welcome AFTER INSERT ON public.users
FOR EACH ROW EXECUTE FUNCTION public.users_enqueue_welcome();

SELECT lives_ok($$INSERT INTO public.users (email) VALUES ('ann@example.com'), ('bob@example.com')$$,
                'inserting rows into a table with an enqueueing trigger works');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier = 'send_welcome_email'), 2,
          'the trigger enqueued one job per inserted row');
SELECT results_eq(
    $$SELECT j.key, j.payload->>'email' FROM errands.jobs j
      JOIN public.users u ON j.key = 'welcome:' || u.id
      WHERE j.task_identifier = 'send_welcome_email' ORDER BY u.id$$,
    $$VALUES ((SELECT 'welcome:' || id FROM public.users WHERE email = 'ann@example.com'), 'ann@example.com'),
             ((SELECT 'welcome:' || id FROM public.users WHERE email = 'bob@example.com'), 'bob@example.com')$$,
    'each trigger-enqueued job carries its row''s id in the key and its email in the payload'
);

SELECT * FROM finish();
ROLLBACK;
