-- set_crontab (converging sources) and cron_tick (dedupe, backfill, new items,
-- clock going backwards, job keys, options).
BEGIN;
SELECT * FROM no_plan();
SET LOCAL TIME ZONE 'UTC';

CREATE FUNCTION pg_temp.ids(p_source text) RETURNS text[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM errands._crontab_items WHERE source = p_source
$$;
CREATE FUNCTION pg_temp.runs(p_task text) RETURNS text[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(to_char(run_at, 'YYYY-MM-DD HH24:MI') ORDER BY run_at), '{}')
    FROM errands.jobs WHERE task_identifier = p_task
$$;
CREATE FUNCTION pg_temp.reset() RETURNS void
LANGUAGE sql AS $$
    DELETE FROM errands._jobs; DELETE FROM errands._known_crontabs; DELETE FROM errands._crontab_items;
$$;

-- set_crontab --------------------------------------------------------------------------
SELECT is(errands.set_crontab(E'0 * * * * a\n0 0 * * * b'), 2, 'set_crontab returns the item count');
SELECT is(pg_temp.ids('default'), '{a,b}', 'items stored under source default');
SELECT is(errands.set_crontab('* * * * * x ?id=x1', 'other'), 1, 'another source');
SELECT is(errands.set_crontab(E'0 * * * * a\n30 0 * * * c {"k": 1}'), 2, 'replace the default source');
SELECT is(pg_temp.ids('default'), '{a,c}', 'b removed, c added, a kept');
SELECT is(pg_temp.ids('other'), '{x1}', 'other sources untouched');
SELECT is(errands.set_crontab(E'15 * * * * a ?max=3\n30 0 * * * c {"k": 1}'), 2, 'update an item');
SELECT is((SELECT (minutes, options->>'max')::text FROM errands._crontab_items WHERE id = 'a'),
          ROW('{15}'::int[], '3')::text, 'the item is updated in place');
SELECT throws_ok($$SELECT errands.set_crontab('* * * * * x1')$$, '22023',
                 'errands: crontab id ''x1'' is already used by source ''other''', 'ids are unique across sources');
SELECT throws_ok($$SELECT errands.set_crontab('61 * * * * a')$$, '22023', NULL, 'a bad crontab is rejected');
SELECT is(pg_temp.ids('default'), '{a,c}', '... and leaves the stored schedule unchanged');
SELECT throws_ok($$SELECT errands.set_crontab('', NULL)$$, '22023', NULL, 'NULL source');
SELECT is(errands.set_crontab('', 'other'), 0, 'an empty crontab removes every item of the source');
SELECT is(pg_temp.ids('other'), '{}', '... so x1 is gone');

-- New items: nothing before they are first seen ----------------------------------------
SELECT pg_temp.reset();
SELECT errands.set_crontab('*/10 * * * * t ?fill=1d');
SELECT is(errands.cron_tick('2021-01-01 04:05:30+00'), 0, 'a new item is not backfilled, even with fill');
SELECT is(errands.cron_tick('2021-01-01 04:10:00+00'), 1, 'the next matching minute runs');
SELECT is(pg_temp.runs('t'), '{"2021-01-01 04:10"}', 'run_at is the scheduled minute');
SELECT is(errands.cron_tick('2021-01-01 04:10:59+00'), 0, 'the same minute again: nothing (dedupe)');
SELECT is(errands.cron_tick('2021-01-01 04:10:00+00'), 0, 'and again: nothing');
SELECT is((SELECT payload::jsonb FROM errands.jobs WHERE task_identifier = 't'),
          '{"_cron": {"ts": "2021-01-01T04:10:00.000Z", "backfilled": false}}', 'payload _cron');
SELECT is((SELECT last_execution FROM errands._known_crontabs WHERE identifier = 't'),
          '2021-01-01 04:10:00+00'::timestamptz, 'last_execution is the tick minute');

SELECT pg_temp.reset();
SELECT errands.set_crontab('0 4 * * * t');
SELECT is(errands.cron_tick('2021-01-01 04:00:00+00'), 1, 'a new item runs in the minute it is first seen');

-- Backfill (Graphile's cases) -----------------------------------------------------------
SELECT pg_temp.reset();
SELECT errands.set_crontab('0 */4 * * * t ?fill=1d {"x": 1}');
SELECT is(errands.cron_tick('2021-01-01 00:30+00'), 0, 'first seen at 00:30');
SELECT is(errands.cron_tick('2021-01-01 05:30+00'), 1, 'last execution 5 h ago, now unaligned: 1 job (04:00)');
SELECT is((SELECT payload::jsonb FROM errands.jobs WHERE task_identifier = 't'),
          '{"x": 1, "_cron": {"ts": "2021-01-01T04:00:00.000Z", "backfilled": true}}',
          'a backfilled job says so and keeps the item payload');
SELECT is(errands.cron_tick('2021-01-01 10:30+00'), 1, '5 h later again: 08:00');
SELECT pg_temp.reset();
SELECT errands.set_crontab('0 */4 * * * t ?fill=1d');
SELECT errands.cron_tick('2021-01-01 23:00+00');
SELECT is(errands.cron_tick('2021-01-02 04:00+00'), 2, 'last execution 5 h ago, now aligned: 2 jobs (00:00, 04:00)');
SELECT is((SELECT array_agg((payload->'_cron'->>'backfilled') ORDER BY run_at) FROM errands.jobs),
          '{true,false}', 'only the current minute is not backfilled');
SELECT pg_temp.reset();
SELECT errands.set_crontab('0 */4 * * * t ?fill=1d');
SELECT errands.cron_tick('2021-01-01 00:30+00');
SELECT is(errands.cron_tick('2021-01-02 01:30+00'), 6, 'last execution 25 h ago: 6 jobs (fill caps at 1 day)');
SELECT is(pg_temp.runs('t'),
          '{"2021-01-01 04:00","2021-01-01 08:00","2021-01-01 12:00","2021-01-01 16:00","2021-01-01 20:00","2021-01-02 00:00"}',
          'the 6 jobs are the slots of the last day');
SELECT pg_temp.reset();
SELECT errands.set_crontab('0 */4 * * * t');
SELECT errands.cron_tick('2021-01-01 00:30+00');
SELECT is(errands.cron_tick('2021-01-02 01:30+00'), 0, 'without fill a missed slot is skipped');
SELECT is(errands.cron_tick('2021-01-02 04:00+00'), 1, '... and the current minute runs');
SELECT pg_temp.reset();
SELECT errands.set_crontab('* * * * * t ?fill=4w3d2h1m');
SELECT errands.cron_tick('2021-01-01 00:00+00');
SELECT is(errands.cron_tick('2021-01-01 00:59+00'), 59, 'every minute of a missed hour is backfilled');

-- Clock going backwards ----------------------------------------------------------------
SELECT pg_temp.reset();
SELECT errands.set_crontab('* * * * * t ?fill=1h');
SELECT errands.cron_tick('2021-01-01 12:00+00');
SELECT is(errands.cron_tick('2021-01-01 11:50+00'), 0, 'a clock 10 minutes back schedules nothing');
SELECT is(errands.cron_tick('2021-01-01 11:59+00'), 0, '... still nothing while behind');
SELECT is(errands.cron_tick('2021-01-01 12:01+00'), 1, 'the next new minute runs once');
SELECT is((SELECT count(*)::int FROM errands.jobs), 2, 'no minute was scheduled twice');
SELECT is((SELECT count(DISTINCT run_at)::int FROM errands.jobs), 2, '... distinct run_at');

-- Job keys and options -----------------------------------------------------------------
SELECT pg_temp.reset();
SELECT errands.set_crontab('* * * * * t ?fill=1h&jobKey=k&queue=cq&priority=5&max=3');
SELECT errands.cron_tick('2021-01-01 12:00+00');
SELECT is(errands.cron_tick('2021-01-01 12:10+00'), 10, '10 minutes backfilled through one key');
SELECT is((SELECT count(*)::int FROM errands.jobs), 1, 'jobKey: one pending job, updated');
SELECT is((SELECT (key, queue_name, priority, max_attempts, to_char(run_at, 'HH24:MI'),
                   payload->'_cron'->>'ts')::text FROM errands.jobs),
          ROW('k', 'cq', 5, 3, '12:10', '2021-01-01T12:10:00.000Z')::text,
          'the kept job is the latest minute, with key, queue, priority and max attempts');
SELECT pg_temp.reset();
SELECT errands.set_crontab('* * * * * t ?jobKey=k&jobKeyMode=preserve_run_at');
SELECT errands.cron_tick('2021-01-01 12:00+00');
SELECT errands.cron_tick('2021-01-01 12:01+00');
SELECT is((SELECT (count(*), min(to_char(run_at, 'HH24:MI')))::text FROM errands.jobs),
          ROW(1, '12:00')::text, 'preserve_run_at keeps the first run_at');

-- Several items, a removed item, time zones --------------------------------------------
SELECT pg_temp.reset();
SELECT errands.set_crontab(E'0 * * * * a\n0 * * * * a ?id=a2\n30 * * * * b');
SELECT is(errands.cron_tick('2021-01-01 12:00+00'), 2, 'two items of one task at the same minute: two jobs');
SELECT errands.set_crontab('0 * * * * a');
SELECT is(errands.cron_tick('2021-01-01 13:00+00'), 1, 'a removed item no longer runs');
SELECT pg_temp.reset();
SELECT errands.set_crontab('30 2 * * * t ?tz=Europe/Paris&fill=1d');
SELECT errands.cron_tick('2021-03-27 12:00+00');
SELECT is(errands.cron_tick('2021-03-28 12:00+00'), 1, 'a Paris 02:30 job on the spring-forward day: once');
SELECT is(pg_temp.runs('t'), '{"2021-03-28 01:00"}', '... at 03:00 local');

-- Bad input -----------------------------------------------------------------------------
SELECT throws_ok($$SELECT errands.cron_tick(NULL)$$, '22023', NULL, 'cron_tick(NULL)');
SELECT throws_ok($$SELECT errands.cron_tick('infinity')$$, '22023', NULL, 'cron_tick(infinity)');
SELECT throws_ok($$SELECT * FROM errands.cron_next_runs('* * * * * t', now(), 0)$$, '22023', NULL, 'n = 0');

-- API surface ----------------------------------------------------------------------------
SELECT has_function('errands', 'parse_crontab', ARRAY['text'], 'parse_crontab(text)');
SELECT has_function('errands', 'set_crontab', ARRAY['text', 'text'], 'set_crontab(text, text)');
SELECT has_function('errands', 'cron_tick', ARRAY['timestamp with time zone'], 'cron_tick(timestamptz)');
SELECT has_function('errands', 'cron_next_runs', ARRAY['text', 'timestamp with time zone', 'integer'],
                    'cron_next_runs(text, timestamptz, integer)');

SELECT * FROM finish();
ROLLBACK;
