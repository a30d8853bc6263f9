-- Matching: calendar edge cases, day-of-month OR day-of-week, Sunday as 0/7, and
-- DST transitions in Europe/Paris and America/New_York (rule: local wall-clock
-- minute of each UTC minute; skipped local times fire at the first minute after
-- the gap; repeated local times fire on their first occurrence only).
BEGIN;
SELECT * FROM no_plan();
SET LOCAL TIME ZONE 'UTC';

-- The due UTC minutes of a one-line crontab in [p_from, p_to].
CREATE FUNCTION pg_temp.runs(p_line text, p_from timestamptz, p_to timestamptz) RETURNS text[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(to_char(g AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') ORDER BY g), '{}')
    FROM errands.parse_crontab(p_line) p,
         generate_series(p_from, p_to, interval '1 minute') g
    WHERE errands._cron_due(g, p.minutes, p.hours, p.days_of_month, p.months, p.days_of_week,
                            p.options->>'tz')
$$;
-- The next n runs after p_after.
CREATE FUNCTION pg_temp.next(p_line text, p_after timestamptz, p_n int) RETURNS text[]
LANGUAGE sql AS $$
    SELECT array_agg(to_char(run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') ORDER BY run_at)
    FROM errands.cron_next_runs(p_line, p_after, p_n)
$$;

-- Calendar ------------------------------------------------------------------------------
SELECT is(pg_temp.next('0 0 29 2 * t', '2021-01-01', 3),
          '{"2024-02-29 00:00","2028-02-29 00:00","2032-02-29 00:00"}', 'Feb 29 only in leap years');
SELECT is(pg_temp.next('0 12 31 * * t', '2021-01-01', 7),
          '{"2021-01-31 12:00","2021-03-31 12:00","2021-05-31 12:00","2021-07-31 12:00","2021-08-31 12:00","2021-10-31 12:00","2021-12-31 12:00"}',
          'day 31 skips short months');
SELECT is(pg_temp.next('0 0 30 * * t', '2021-01-15', 3),
          '{"2021-01-30 00:00","2021-03-30 00:00","2021-04-30 00:00"}', 'day 30 skips February');
SELECT is(pg_temp.next('0 0 31 2 * t', '2021-01-01', 3), NULL, 'Feb 31 never runs');
SELECT is(pg_temp.next('59 23 31 12 * t', '2021-06-01', 2),
          '{"2021-12-31 23:59","2022-12-31 23:59"}', 'the last minute of the year');
SELECT is(pg_temp.next('0 0 1 1 * t', '2021-12-31 23:59', 1), '{"2022-01-01 00:00"}', 'new year rollover');
SELECT is(pg_temp.next('*/20 * * * * t', '2021-01-01 00:00', 3),
          '{"2021-01-01 00:20","2021-01-01 00:40","2021-01-01 01:00"}', 'next runs are strictly after');
-- 2021-02-01 is a Monday.
SELECT is(pg_temp.next('0 0 13 * 5 t', '2021-08-01', 4),
          '{"2021-08-06 00:00","2021-08-13 00:00","2021-08-20 00:00","2021-08-27 00:00"}',
          'day of month OR day of week when both are restricted (13th or Fridays)');
SELECT is(pg_temp.next('0 0 1 * mon t', '2021-02-01', 3),
          '{"2021-02-08 00:00","2021-02-15 00:00","2021-02-22 00:00"}', 'both restricted: Mondays or the 1st');
SELECT is(pg_temp.next('0 0 * * 5 t', '2021-08-01', 2),
          '{"2021-08-06 00:00","2021-08-13 00:00"}', 'only day of week restricted: Fridays only');
SELECT is(pg_temp.next('0 0 13 * * t', '2021-08-01', 2),
          '{"2021-08-13 00:00","2021-09-13 00:00"}', 'only day of month restricted: the 13th only');
SELECT is(pg_temp.next('0 0 */2 * * t', '2021-01-30', 3),
          '{"2021-01-31 00:00","2021-02-01 00:00","2021-02-03 00:00"}', 'a stepped day of month is restricted');
SELECT is(pg_temp.next('0 0 * * 0 t', '2021-08-01', 2), pg_temp.next('0 0 * * 7 t', '2021-08-01', 2),
          'Sunday as 0 and as 7 run on the same days');
SELECT is(pg_temp.next('0 0 * * 7 t', '2021-08-02', 1), '{"2021-08-08 00:00"}', '7 is Sunday');
SELECT is(pg_temp.next('0 0 * * sat-sun t', '2021-08-02', 2),
          '{"2021-08-07 00:00","2021-08-08 00:00"}', 'sat-sun');
SELECT is(pg_temp.next('0 9 * jan-mar mon-fri t', '2021-03-31 10:00', 1), '{"2022-01-03 09:00"}',
          'month and weekday names together');

-- Europe/Paris: spring forward 2021-03-28 02:00 -> 03:00 local (01:00 UTC) --------------
SELECT is(pg_temp.runs('30 2 * * * t ?tz=Europe/Paris', '2021-03-27', '2021-03-29 23:59'),
          '{"2021-03-27 01:30","2021-03-28 01:00","2021-03-29 00:30"}',
          'Paris 02:30 on the spring-forward day runs once, at 03:00 local (the first minute after the gap)');
SELECT is(pg_temp.runs('0 2 * * * t ?tz=Europe/Paris', '2021-03-28', '2021-03-28 23:59'),
          '{"2021-03-28 01:00"}', 'Paris 02:00 on the spring-forward day runs once');
SELECT is(pg_temp.runs('0 3 * * * t ?tz=Europe/Paris', '2021-03-28', '2021-03-28 23:59'),
          '{"2021-03-28 01:00"}', 'Paris 03:00 runs once on the spring-forward day');
SELECT is(pg_temp.runs('*/30 2 * * * t ?tz=Europe/Paris', '2021-03-28', '2021-03-28 23:59'),
          '{"2021-03-28 01:00"}', 'several skipped times fire once together');
SELECT is(cardinality(pg_temp.runs('0 * * * * t ?tz=Europe/Paris', '2021-03-27 23:00', '2021-03-28 21:59')), 23,
          'hourly in Paris: 23 runs on the 23-hour day');
-- Fall back 2021-10-31 03:00 -> 02:00 local (01:00 UTC): 02:xx happens twice.
SELECT is(pg_temp.runs('30 2 * * * t ?tz=Europe/Paris', '2021-10-30', '2021-11-01 23:59'),
          '{"2021-10-30 00:30","2021-10-31 00:30","2021-11-01 01:30"}',
          'Paris 02:30 on the fall-back day runs once, on its first occurrence');
SELECT is(cardinality(pg_temp.runs('0 * * * * t ?tz=Europe/Paris', '2021-10-30 22:00', '2021-10-31 22:59')), 24,
          'hourly in Paris on the 25-hour day: the repeated 02:00 runs once (24 runs)');
SELECT is(pg_temp.runs('*/15 2 * * * t ?tz=Europe/Paris', '2021-10-31', '2021-10-31 23:59'),
          '{"2021-10-31 00:00","2021-10-31 00:15","2021-10-31 00:30","2021-10-31 00:45"}',
          'repeated local minutes run on their first occurrence only');
SELECT is(pg_temp.runs('0 12 * * * t ?tz=Europe/Paris', '2021-03-27', '2021-03-28 23:59'),
          '{"2021-03-27 11:00","2021-03-28 10:00"}', 'noon in Paris moves from 11:00 to 10:00 UTC');

-- America/New_York: spring forward 2021-03-14 02:00 -> 03:00 (07:00 UTC) --------------
SELECT is(pg_temp.runs('30 2 * * * t ?tz=America/New_York', '2021-03-13', '2021-03-15 23:59'),
          '{"2021-03-13 07:30","2021-03-14 07:00","2021-03-15 06:30"}',
          'New York 02:30 on the spring-forward day runs once at 03:00 local');
-- Fall back 2021-11-07 02:00 -> 01:00 (06:00 UTC): 01:xx twice.
SELECT is(pg_temp.runs('30 1 * * * t ?tz=America/New_York', '2021-11-06', '2021-11-08 23:59'),
          '{"2021-11-06 05:30","2021-11-07 05:30","2021-11-08 06:30"}',
          'New York 01:30 on the fall-back day runs once (EDT, the first occurrence)');
SELECT is(pg_temp.runs('0 0 * * sun t ?tz=America/New_York', '2021-11-06', '2021-11-08'),
          '{"2021-11-07 04:00"}', 'weekday is the local one');
SELECT is(pg_temp.next('30 2 * * * t ?tz=America/New_York', '2021-03-13 12:00', 2),
          '{"2021-03-14 07:00","2021-03-15 06:30"}', 'cron_next_runs follows the same rule');

-- UTC has no transitions ---------------------------------------------------------------
SELECT is(cardinality(pg_temp.runs('* * * * * t', '2021-03-28 00:00', '2021-03-28 03:59')), 240,
          'every minute in UTC');

SELECT * FROM finish();
ROLLBACK;
