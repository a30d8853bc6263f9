-- errands.job_trigger: the recipes of docs/triggers.md (enqueue on insert,
-- debounce on update, fan-out per row of a statement), 10,000-row statements
-- with a row trigger, a per-row statement trigger and a batch trigger, every
-- bad argument (22023 from check_job_triggers and when the trigger fires), and
-- who may fire and create the trigger. Timings: bench/trigger_cost.py.
BEGIN;
SELECT plan(70);
\ir include/jobs_by_name.sql

-- Jobs of a task, as (key, payload) text, oldest first.
CREATE FUNCTION pg_temp.jobs_of(task text) RETURNS SETOF errands.jobs LANGUAGE sql STABLE AS
    $f$ SELECT * FROM errands.jobs WHERE task_identifier = task ORDER BY id $f$;
CREATE FUNCTION pg_temp.count_of(task text) RETURNS int LANGUAGE sql STABLE AS
    $f$ SELECT count(*)::int FROM errands.jobs WHERE task_identifier = task $f$;

CREATE TABLE users (user_id int PRIMARY KEY, email text, name text NOT NULL);

------------------------------------------------------------------------------
-- Recipe 1: enqueue on insert
------------------------------------------------------------------------------
CREATE TRIGGER send_welcome AFTER INSERT ON users FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('send_welcome', 'queue_name=mail', 'priority=5',
                                         'max_attempts=3', 'flags=email, slow', 'timeout=30s');
SELECT is(errands.check_job_triggers('users'), 1, 'check_job_triggers: the trigger checks out');
INSERT INTO users VALUES (1, 'a@example.com', 'Ann'), (2, 'b@example.com', 'Bob');
SELECT is(pg_temp.count_of('send_welcome'), 2, 'insert: one job per row');
SELECT is((SELECT payload::jsonb FROM pg_temp.jobs_of('send_welcome') LIMIT 1),
          '{"op": "INSERT", "schema": "public", "table": "users", "old": null,
            "new": {"user_id": 1, "email": "a@example.com", "name": "Ann"}}'::jsonb,
          'insert: payload is {op, schema, table, new, old}');
SELECT is((SELECT (queue_name, priority, max_attempts, key, run_at = now(), flags::jsonb = '{"email": true, "slow": true}')::text
           FROM pg_temp.jobs_of('send_welcome') LIMIT 1),
          '(mail,5,3,,t,t)',
          'insert: queue_name, priority, max_attempts, flags taken from the options; runs now');
SELECT is((SELECT timeout FROM errands._jobs j JOIN errands._tasks t ON t.id = j.task_id
           WHERE t.identifier = 'send_welcome' LIMIT 1), interval '30 seconds',
          'insert: timeout=30s');
DROP TRIGGER send_welcome ON users;

-- A BEFORE trigger lets the row through.
CREATE TRIGGER audit BEFORE INSERT OR DELETE ON users FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('audit');
INSERT INTO users VALUES (3, 'c@example.com', 'Cy');
SELECT is((SELECT name FROM users WHERE user_id = 3), 'Cy', 'BEFORE INSERT: the row is stored');
DELETE FROM users WHERE user_id = 3;
SELECT ok(NOT EXISTS (SELECT 1 FROM users WHERE user_id = 3), 'BEFORE DELETE: the row is deleted');
SELECT is(ARRAY(SELECT payload->>'op' || ':' || coalesce(payload->'new'->>'name', '-') || ':'
                       || coalesce(payload->'old'->>'name', '-') FROM pg_temp.jobs_of('audit')),
          '{INSERT:Cy:-,DELETE:-:Cy}', 'DELETE: the payload has old and new = null');
DROP TRIGGER audit ON users;

-- An INSTEAD OF trigger on a view: the job is the only effect, and the INSERT
-- counts its row.
CREATE VIEW signup_requests AS SELECT user_id, email FROM users;
CREATE TRIGGER request INSTEAD OF INSERT ON signup_requests FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('signup_request', 'job_key=req:{email}');
CREATE FUNCTION pg_temp.inserted() RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE n bigint;
BEGIN
    INSERT INTO signup_requests VALUES (7, 'g@example.com');
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$f$;
SELECT is(pg_temp.inserted(), 1::bigint, 'INSTEAD OF: the INSERT counts its row');
SELECT is((SELECT (key, payload->>'table')::text FROM pg_temp.jobs_of('signup_request')),
          '(req:g@example.com,signup_requests)', 'INSTEAD OF: one job from the view''s row');

------------------------------------------------------------------------------
-- Recipe 2: debounce on update, at most once per user per 10 s
------------------------------------------------------------------------------
CREATE TRIGGER sync_user AFTER UPDATE ON users FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('sync_user', 'job_key=sync_user:{user_id}',
                                         'job_key_mode=replace', 'run_in=10 seconds');
UPDATE users SET name = 'Ann 1' WHERE user_id = 1;
UPDATE users SET name = 'Ann 2' WHERE user_id = 1;
UPDATE users SET name = 'Ann 3' WHERE user_id = 1;
UPDATE users SET name = 'Bob 1' WHERE user_id = 2;
SELECT is(ARRAY(SELECT key FROM pg_temp.jobs_of('sync_user')), '{sync_user:1,sync_user:2}',
          'debounce: one job per user key');
SELECT is((SELECT (revision, run_at - now(), payload->'new'->>'name', payload->'old'->>'name')::text
           FROM pg_temp.jobs_of('sync_user') WHERE key = 'sync_user:1'),
          '(2,00:00:10,"Ann 3","Ann 2")',
          'debounce: three updates made one job, replaced twice, run_at now() + 10 s, latest row');
-- A worker takes the job: the next update makes a new job (the running one
-- gives its key up).
UPDATE errands._jobs SET run_at = now() WHERE key LIKE 'sync_user:%';
SELECT is(ARRAY(SELECT id FROM errands.get_jobs('w1', '{sync_user}', 10) ORDER BY id),
          ARRAY(SELECT id FROM pg_temp.jobs_of('sync_user')), 'debounce: a worker fetches both');
UPDATE users SET name = 'Ann 4' WHERE user_id = 1;
SELECT is(pg_temp.count_of('sync_user'), 3, 'debounce: an update while the job runs makes a new job');
DROP TRIGGER sync_user ON users;

-- preserve_run_at: later updates keep the first run_at (throttle, not debounce).
CREATE TRIGGER throttle AFTER UPDATE ON users FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('throttle', 'job_key=t:{user_id}:{email}',
                                         'job_key_mode=preserve_run_at', 'run_in=1 minute');
UPDATE users SET name = 'Bob 2' WHERE user_id = 2;
UPDATE errands._jobs SET run_at = now() + interval '5 seconds'
WHERE key = 't:2:b@example.com';
UPDATE users SET name = 'Bob 3' WHERE user_id = 2;
SELECT is((SELECT (key, run_at - now(), payload->'new'->>'name')::text FROM pg_temp.jobs_of('throttle')),
          '(t:2:b@example.com,00:00:05,"Bob 3")',
          'preserve_run_at: the key from two columns, run_at kept, payload replaced');
-- unsafe_dedupe: the first job stays as it was.
DROP TRIGGER throttle ON users;
CREATE TRIGGER dedupe AFTER UPDATE ON users FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('dedupe', 'job_key=d:{user_id}', 'job_key_mode=unsafe_dedupe');
UPDATE users SET name = 'Bob 4' WHERE user_id = 2;
UPDATE users SET name = 'Bob 5' WHERE user_id = 2;
SELECT is((SELECT (revision, payload->'new'->>'name')::text FROM pg_temp.jobs_of('dedupe')),
          '(1,"Bob 4")', 'unsafe_dedupe: the first row''s job stays');
DROP TRIGGER dedupe ON users;

-- A key column that is NULL raises (and the statement changes nothing).
UPDATE users SET email = NULL WHERE user_id = 2;
CREATE TRIGGER by_email AFTER UPDATE ON users FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('by_email', 'job_key=e:{email}');
SELECT is(pg_temp.error_of($$UPDATE users SET name = 'x', email = NULL$$),
          '22023: errands.job_trigger on public.users: job_key ''e:{email}'' needs column email, which is NULL',
          'row trigger: a NULL key column raises 22023 naming the column');
SELECT is((SELECT count(*)::int FROM users WHERE name = 'x'), 0, 'and the update is undone');
DROP TRIGGER by_email ON users;
UPDATE users SET email = 'b@example.com' WHERE user_id = 2;

------------------------------------------------------------------------------
-- Recipe 3: fan-out per row of a statement, and a statement of 10,000 rows
------------------------------------------------------------------------------
CREATE TABLE items (id int PRIMARY KEY, owner int NOT NULL, label text NOT NULL);

-- Row trigger: one add_job per row.
CREATE TRIGGER item_row AFTER INSERT ON items FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('item_row');
INSERT INTO items SELECT g, g % 100, 'item ' || g FROM generate_series(1, 10000) g;
SELECT is(pg_temp.count_of('item_row'), 10000, 'row trigger: 10,000-row INSERT adds 10,000 jobs');
DROP TRIGGER item_row ON items;

-- Statement trigger: one add_jobs call for the statement, one job per row.
CREATE TRIGGER item_each AFTER UPDATE ON items REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('item_each', 'queue_name=items',
                                                            'job_key=item:{id}', 'priority=-1');
UPDATE items SET label = label || '!';
SELECT is(pg_temp.count_of('item_each'), 10000,
          'statement trigger: 10,000-row UPDATE adds 10,000 jobs');
SELECT is((SELECT (key, queue_name, priority, payload->>'op', payload->'new'->>'label', payload->'old'->>'label')::text
           FROM pg_temp.jobs_of('item_each') WHERE key = 'item:42'),
          '(item:42,items,-1,UPDATE,"item 42!","item 42")',
          'statement trigger: each job has its new row, its old row (paired by primary key), key, queue and priority');
UPDATE items SET label = label || '?' WHERE id <= 10;
SELECT is((SELECT count(*)::int || ':' || sum(revision) FROM pg_temp.jobs_of('item_each')), '10000:10',
          'statement trigger: keys replace the jobs of rows updated again');
UPDATE items SET label = label WHERE false;
SELECT is(pg_temp.count_of('item_each'), 10000, 'statement trigger: an UPDATE of no row adds nothing');
DROP TRIGGER item_each ON items;
-- Without OLD TABLE, or without a primary key, old is null; a row whose key
-- changed has no old row.
CREATE TRIGGER item_new_only AFTER UPDATE ON items REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('item_new_only');
CREATE TRIGGER item_moved AFTER UPDATE ON items REFERENCING NEW TABLE AS n OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('item_moved');
UPDATE items SET id = id + 100000 WHERE id = 1;
UPDATE items SET label = 'two' WHERE id = 2;
SELECT is(ARRAY(SELECT (payload->'new'->>'id') || ':' || (payload->'old')::text
                FROM pg_temp.jobs_of('item_new_only')), '{100001:null,2:null}',
          'statement trigger without OLD TABLE: old is null');
SELECT is(ARRAY(SELECT (payload->'new'->>'id') || ':' || coalesce(payload->'old'->>'id', 'null')
                FROM pg_temp.jobs_of('item_moved')), '{100001:null,2:2}',
          'statement trigger with OLD TABLE: old paired by primary key; null when the key changed');
DROP TRIGGER item_new_only ON items;
DROP TRIGGER item_moved ON items;
UPDATE items SET id = 1 WHERE id = 100001;

-- Statement trigger, batch=true: one job holding every row.
CREATE TRIGGER item_batch AFTER DELETE ON items REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('item_batch', 'batch=true',
                                                            'job_key=items-deleted');
DELETE FROM items WHERE id > 5000;
DELETE FROM items WHERE id <= 5000;
SELECT is((SELECT (count(*), min(revision), min(json_array_length(payload->'old')),
                   min(payload->>'op'), min(payload::jsonb->>'new'))::text
           FROM pg_temp.jobs_of('item_batch')),
          '(1,1,5000,DELETE,)', 'batch: one job per statement, the rows as an array (keyed: replaced)');
DELETE FROM items;
SELECT is((SELECT revision FROM pg_temp.jobs_of('item_batch')), 1,
          'batch: a statement that deletes no row adds nothing');
DROP TRIGGER item_batch ON items;

-- Statement trigger without transition table, batch=true: {op, schema, table}.
CREATE TRIGGER items_changed AFTER TRUNCATE ON items
    FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('items_changed', 'batch=true');
TRUNCATE items;
SELECT is((SELECT payload::jsonb FROM pg_temp.jobs_of('items_changed')),
          '{"op": "TRUNCATE", "schema": "public", "table": "items", "new": null, "old": null}',
          'batch without a transition table: one job naming the operation and table');
DROP TRIGGER items_changed ON items;

-- Statement trigger, per row, INSERT and DELETE.
CREATE TRIGGER ins_each AFTER INSERT ON items REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('ins_each', 'run_in=1 hour',
                                                            'max_attempts=2', 'flags=x');
CREATE TRIGGER del_each AFTER DELETE ON items REFERENCING OLD TABLE AS o
    FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('del_each');
INSERT INTO items VALUES (1, 1, 'one'), (2, 2, 'two');
DELETE FROM items WHERE id = 2;
SELECT is((SELECT array_agg((run_at - now(), max_attempts, flags::text, payload->'new'->>'label')::text)
           FROM pg_temp.jobs_of('ins_each')),
          '{"(01:00:00,2,\"{\"\"x\"\": true}\",one)","(01:00:00,2,\"{\"\"x\"\": true}\",two)"}',
          'per-row INSERT statement: run_in, max_attempts and flags apply');
SELECT is((SELECT (payload->>'op', payload->'old'->>'label', payload->'new')::text FROM pg_temp.jobs_of('del_each')),
          '(DELETE,two,null)', 'per-row DELETE statement: the old row');
-- A NULL key column raises here too.
DROP TRIGGER ins_each ON items;
ALTER TABLE items ALTER COLUMN label DROP NOT NULL;
CREATE TRIGGER ins_key AFTER INSERT ON items REFERENCING NEW TABLE AS n
    FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('ins_key', 'job_key=k:{label}');
SELECT is(pg_temp.error_of($$INSERT INTO items VALUES (3, 3, 'three'), (4, 4, NULL)$$),
          '22023: errands.job_trigger on public.items: job_key ''k:{label}'' needs columns label, one of which is NULL in a row',
          'statement trigger: a NULL key column raises 22023');
SELECT is((SELECT count(*)::int FROM items WHERE id IN (3, 4)), 0, 'and the insert is undone');
DROP TRIGGER ins_key ON items;
DROP TRIGGER del_each ON items;

------------------------------------------------------------------------------
-- Bad arguments: check_job_triggers raises at CREATE time, the trigger when it
-- fires; both 22023, naming the option and value.
------------------------------------------------------------------------------
CREATE TABLE bad (id int, n int);
-- Create a trigger with the arguments, check it, fire it; returns both errors
-- ('check | fire') and drops the trigger.
CREATE FUNCTION pg_temp.bad(level text, VARIADIC args text[]) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    v_check text;
    v_fire text;
BEGIN
    EXECUTE format('CREATE TRIGGER t AFTER INSERT ON bad %s EXECUTE FUNCTION errands.job_trigger(%s)',
                   CASE level WHEN 'row' THEN 'FOR EACH ROW'
                              WHEN 'statement' THEN 'FOR EACH STATEMENT'
                              ELSE 'REFERENCING NEW TABLE AS n FOR EACH STATEMENT' END,
                   (SELECT string_agg(quote_literal(a), ', ') FROM unnest(args) a));
    v_check := pg_temp.error_of('SELECT errands.check_job_triggers(''bad'')');
    v_fire := pg_temp.error_of('INSERT INTO bad VALUES (1, 1)');
    DROP TRIGGER t ON bad;
    IF v_fire <> replace(v_check, 'errands.job_trigger: trigger t on public.bad: ', 'errands.job_trigger on public.bad: ') THEN
        RETURN v_check || ' | ' || v_fire;
    END IF;
    RETURN replace(v_check, '22023: errands.job_trigger: trigger t on public.bad: ', '');
END
$f$;

SELECT is(pg_temp.bad('row', 'queue_name=q'),
          'the first argument must be the task identifier (1 to 128 characters, no =), got ''queue_name=q'' (12 characters)',
          'no task identifier');
SELECT is(pg_temp.bad('row', repeat('t', 129)),
          'the first argument must be the task identifier (1 to 128 characters, no =), got ''tttttttttttttttttttttttttttttttttttttttt''... (129 characters)',
          'task identifier too long');
SELECT is(pg_temp.bad('row', 'task', 'queue=q'),
          'unknown option ''queue'' (5 characters); expected queue_name, priority, max_attempts, run_in, timeout, flags, job_key, job_key_mode or batch',
          'unknown option');
SELECT is(pg_temp.bad('row', 'task', 'identifier=x'),
          'unknown option ''identifier'' (10 characters); expected queue_name, priority, max_attempts, run_in, timeout, flags, job_key, job_key_mode or batch',
          'unknown option that is a name used inside');
SELECT is(pg_temp.bad('new table', 'task', 'batch=true', 'batch=false'), 'option batch is given twice',
          'batch given twice');
SELECT is(pg_temp.bad('row', 'task', 'priority'), 'option ''priority'' (8 characters) is not name=value',
          'option without =');
SELECT is(pg_temp.bad('row', 'task', 'priority=1', 'priority=2'), 'option priority is given twice',
          'option given twice');
SELECT is(pg_temp.bad('row', 'task', 'priority=high'),
          'priority must be a whole number between -32768 and 32767, got ''high'' (4 characters)', 'priority not a number');
SELECT is(pg_temp.bad('row', 'task', 'priority=40000'),
          'priority must be a whole number between -32768 and 32767, got ''40000'' (5 characters)', 'priority out of range');
SELECT is(pg_temp.bad('row', 'task', 'max_attempts=0'),
          'max_attempts must be a whole number between 1 and 32767, got ''0'' (1 characters)', 'max_attempts 0');
SELECT is(pg_temp.bad('row', 'task', 'queue_name='),
          'queue_name must be 1 to 128 characters, got '''' (0 characters)', 'empty queue_name');
SELECT is(pg_temp.bad('row', 'task', 'run_in=soon'),
          'run_in must be a non-negative interval, got ''soon'' (4 characters)', 'run_in not an interval');
SELECT is(pg_temp.bad('row', 'task', 'run_in=-5 seconds'),
          'run_in must be a non-negative interval, got ''-5 seconds'' (10 characters)', 'negative run_in');
SELECT is(pg_temp.bad('row', 'task', 'timeout=0'),
          'timeout must be a positive interval, got ''0'' (1 characters)', 'timeout 0');
SELECT is(pg_temp.bad('row', 'task', 'flags=a,,b'),
          'flags must be names separated by commas, got ''a,,b'' (4 characters)', 'empty flag');
SELECT is(pg_temp.bad('row', 'task', 'job_key_mode=merge', 'job_key=k'),
          'job_key_mode must be replace, preserve_run_at or unsafe_dedupe, got ''merge'' (5 characters)',
          'bad job_key_mode');
SELECT is(pg_temp.bad('row', 'task', 'job_key_mode=replace'), 'job_key_mode needs a job_key',
          'job_key_mode without job_key');
SELECT is(pg_temp.bad('row', 'task', 'job_key=k:{nope}'),
          'job_key ''k:{nope}'' (8 characters) names column nope, which public.bad does not have',
          'job_key names a missing column');
SELECT is(pg_temp.bad('row', 'task', 'job_key=k:{id'),
          'job_key ''k:{id'' (5 characters) needs {column} with a column name between the braces',
          'job_key with an unclosed brace');
SELECT is(pg_temp.bad('row', 'task', 'job_key=k:id}'),
          'job_key ''k:id}'' (5 characters) has a } without its {', 'job_key with a stray }');
SELECT is(pg_temp.bad('row', 'task', 'job_key=k:{}'),
          'job_key ''k:{}'' (4 characters) needs {column} with a column name between the braces',
          'job_key with empty braces');
SELECT is(pg_temp.bad('row', 'task', 'batch=true'), 'batch=true needs a FOR EACH STATEMENT trigger',
          'batch on a row trigger');
SELECT is(pg_temp.bad('new table', 'task', 'batch=yes'),
          'batch must be true or false, got ''yes'' (3 characters)', 'bad batch value');
SELECT is(pg_temp.bad('new table', 'task', 'batch=true', 'job_key=k:{id}'),
          'job_key ''k:{id}'' (6 characters) of a batch=true trigger cannot name a column (one job holds many rows)',
          'batch with a per-row key');
SELECT is(pg_temp.bad('statement', 'task'),
          'a FOR EACH STATEMENT trigger needs REFERENCING NEW TABLE (or OLD TABLE for DELETE) to add one job per row, or batch=true',
          'per-row statement trigger without a transition table');
SELECT is(pg_temp.bad('new table', 'task', 'timeout=1 minute'),
          'timeout needs a FOR EACH ROW trigger or batch=true', 'timeout on a per-row statement trigger');
SELECT is(pg_temp.bad('new table', 'task', 'job_key=k{id}', 'job_key_mode=unsafe_dedupe'),
          'job_key_mode unsafe_dedupe needs a FOR EACH ROW trigger or batch=true',
          'unsafe_dedupe on a per-row statement trigger');
SELECT is((SELECT count(*)::int FROM bad), 0, 'no bad trigger let a row in');
SELECT is(pg_temp.count_of('task'), 0, 'no bad trigger added a job');
-- A good trigger elsewhere does not hide a bad one; the count covers all tables.
CREATE TRIGGER ok AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION errands.job_trigger('ok');
CREATE TRIGGER ok AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION errands.job_trigger('ok');
SELECT is(errands.check_job_triggers(), 3, 'check_job_triggers() checks the triggers of every table (and view)');
SELECT is(errands.check_job_triggers('bad'), 1, 'check_job_triggers(table) those of one table');
DROP TRIGGER ok ON bad;
DROP TRIGGER ok ON items;

------------------------------------------------------------------------------
-- Who fires and who creates: job_trigger runs as the role doing the DML
------------------------------------------------------------------------------
CREATE ROLE errands_t070_app;
CREATE ROLE errands_t070_web;
GRANT INSERT, UPDATE ON users TO errands_t070_app, errands_t070_web;
SELECT errands.grant_enqueue('errands_t070_web');
CREATE TRIGGER welcome AFTER INSERT ON users FOR EACH ROW
    EXECUTE FUNCTION errands.job_trigger('welcome', 'job_key=welcome:{user_id}');
SELECT ok(NOT (SELECT prosecdef FROM pg_proc WHERE oid = 'errands.job_trigger()'::regprocedure),
          'job_trigger is SECURITY INVOKER');

SET LOCAL ROLE errands_t070_app;
SELECT is(pg_temp.error_of($$INSERT INTO users VALUES (10, 'x@example.com', 'X')$$),
          '42501: permission denied for schema errands',
          'a role without grant_enqueue cannot insert through the trigger');
RESET ROLE;
SELECT ok(NOT EXISTS (SELECT 1 FROM users WHERE user_id = 10), 'and its row is not stored');

SET LOCAL ROLE errands_t070_web;
INSERT INTO users VALUES (11, 'y@example.com', 'Y');
SELECT is(pg_temp.error_of('SELECT * FROM errands.jobs'), '42501: permission denied for view jobs',
          'a grant_enqueue role cannot read the job it made');
SELECT is(pg_temp.error_of('SELECT * FROM errands.check_job_triggers()'),
          '42501: permission denied for function check_job_triggers',
          'nor call check_job_triggers');
CREATE TABLE pg_temp.mine (id int);
SELECT is(pg_temp.error_of($$CREATE TRIGGER t AFTER INSERT ON pg_temp.mine FOR EACH ROW
                              EXECUTE FUNCTION errands.job_trigger('anything')$$),
          '42501: permission denied for function errands.job_trigger',
          'nor attach job_trigger to its own table (EXECUTE on job_trigger is not granted)');
RESET ROLE;
SELECT is((SELECT (key, payload->'new'->>'name')::text FROM pg_temp.jobs_of('welcome')), '(welcome:11,Y)',
          'a grant_enqueue role enqueues through the trigger');

SELECT * FROM finish();
ROLLBACK;
