-- errands.parse_crontab: every field form, options, macros and every error.
BEGIN;
SELECT * FROM no_plan();

CREATE FUNCTION pg_temp.f(p_line text, p_col int) RETURNS int[]
LANGUAGE sql AS $$
    SELECT (ARRAY[p.minutes, p.hours, p.days_of_month, p.months, p.days_of_week])[p_col:p_col]
    FROM errands.parse_crontab(p_line) p
$$;
CREATE FUNCTION pg_temp.one(p_line text) RETURNS record
LANGUAGE sql AS $$ SELECT p FROM errands.parse_crontab(p_line) p $$;

-- Field forms ---------------------------------------------------------------------
SELECT is((SELECT minutes FROM errands.parse_crontab('* * * * * t')),
          ARRAY(SELECT generate_series(0, 59)), '* minute is 0-59');
SELECT is((SELECT hours FROM errands.parse_crontab('* * * * * t')),
          ARRAY(SELECT generate_series(0, 23)), '* hour is 0-23');
SELECT is((SELECT days_of_month FROM errands.parse_crontab('* * * * * t')),
          ARRAY(SELECT generate_series(1, 31)), '* day of month is 1-31');
SELECT is((SELECT months FROM errands.parse_crontab('* * * * * t')),
          ARRAY(SELECT generate_series(1, 12)), '* month is 1-12');
SELECT is((SELECT days_of_week FROM errands.parse_crontab('* * * * * t')),
          ARRAY(SELECT generate_series(0, 6)), '* day of week is 0-6');
SELECT is((SELECT minutes FROM errands.parse_crontab('5 * * * * t')), '{5}', 'N');
SELECT is((SELECT minutes FROM errands.parse_crontab('10-13 * * * * t')), '{10,11,12,13}', 'A-B');
SELECT is((SELECT minutes FROM errands.parse_crontab('*/15 * * * * t')), '{0,15,30,45}', '*/N');
SELECT is((SELECT hours FROM errands.parse_crontab('0 9-17/4 * * * t')), '{9,13,17}', 'A-B/N');
SELECT is((SELECT minutes FROM errands.parse_crontab('50/5 * * * * t')), '{50,55}', 'N/S means N-max/S');
SELECT is((SELECT minutes FROM errands.parse_crontab('1,5,3,5,10-11 * * * * t')), '{1,3,5,10,11}',
          'comma list, sorted and deduplicated');
SELECT is((SELECT days_of_week FROM errands.parse_crontab('0 0 * * 7 t')), '{0}', 'day of week 7 is Sunday (0)');
SELECT is((SELECT days_of_week FROM errands.parse_crontab('0 0 * * 0,7 t')), '{0}', 'Sunday as 0 and 7 is one day');
SELECT is((SELECT days_of_week FROM errands.parse_crontab('0 0 * * 5-7 t')), '{0,5,6}', 'range 5-7 includes Sunday');
SELECT is((SELECT days_of_week FROM errands.parse_crontab('0 0 * * mon-fri t')), '{1,2,3,4,5}', 'weekday names');
SELECT is((SELECT days_of_week FROM errands.parse_crontab('0 0 * * SUN,Sat t')), '{0,6}', 'weekday names, any case');
SELECT is((SELECT months FROM errands.parse_crontab('0 0 1 JAN,jul-sep * t')), '{1,7,8,9}', 'month names');
SELECT is((SELECT months FROM errands.parse_crontab('0 0 1 */3 * t')), '{1,4,7,10}', 'month */3 starts at 1');
SELECT is((SELECT days_of_month FROM errands.parse_crontab('0 0 1-31/10 * * t')), '{1,11,21,31}', 'day of month steps');

-- Macros ----------------------------------------------------------------------------
SELECT is((SELECT (minutes, hours, cardinality(days_of_month), cardinality(months), cardinality(days_of_week))::text
           FROM errands.parse_crontab('@hourly t')),
          ROW(ARRAY[0], ARRAY(SELECT generate_series(0, 23)), 31, 12, 7)::text, '@hourly');
SELECT is((SELECT (minutes, hours, cardinality(days_of_month), cardinality(months), days_of_week)::text
           FROM errands.parse_crontab('@daily t')),
          ROW('{0}'::int[], '{0}'::int[], 31, 12, ARRAY[0,1,2,3,4,5,6])::text, '@daily');
SELECT is((SELECT (minutes, hours, cardinality(days_of_month), days_of_week)::text
           FROM errands.parse_crontab('@weekly t')),
          ROW('{0}'::int[], '{0}'::int[], 31, '{0}'::int[])::text, '@weekly is Sunday midnight');
SELECT is((SELECT (minutes, hours, days_of_month, cardinality(months))::text
           FROM errands.parse_crontab('@monthly t')),
          ROW('{0}'::int[], '{0}'::int[], '{1}'::int[], 12)::text, '@monthly');
SELECT is((SELECT (minutes, hours, days_of_month, months)::text
           FROM errands.parse_crontab('@yearly t ?id=y {"a":1}')),
          ROW('{0}'::int[], '{0}'::int[], '{1}'::int[], '{1}'::int[])::text, '@yearly');
SELECT is((SELECT id || ' ' || payload::text FROM errands.parse_crontab('@yearly t ?id=y {"a":1}')),
          'y {"a": 1}', 'a macro line takes options and payload');

-- Lines, comments, task, options, payload ---------------------------------------------
SELECT is((SELECT array_agg(line_number || ':' || id ORDER BY line_number) FROM errands.parse_crontab(
    E'# comment\n\n   \n0 4 * * * a\r\n  # indented comment\n\t1 4 * * * b\n')),
    '{4:a,6:b}', 'comments and blank lines are skipped; line numbers count every line; CRLF works');
SELECT is((SELECT count(*)::int FROM errands.parse_crontab('')), 0, 'an empty crontab has no items');
SELECT is((SELECT (id, task, options, payload)::text FROM errands.parse_crontab('* * * * * send_email')),
          ROW('send_email', 'send_email', '{"id": "send_email", "tz": "UTC"}'::jsonb, '{}'::jsonb)::text,
          'id defaults to the task; tz to UTC; payload to {}');
SELECT is((SELECT options FROM errands.parse_crontab(
    '0 */4 * * * t ?id=x&fill=4w3d2h1m&max=3&queue=q&priority=-2&jobKey=k&jobKeyMode=preserve_run_at&tz=Europe/Paris')),
    '{"id": "x", "fill": "4w3d2h1m", "max": "3", "queue": "q", "priority": "-2", "jobKey": "k",
      "jobKeyMode": "preserve_run_at", "tz": "Europe/Paris"}'::jsonb, 'every option');
SELECT is(errands._cron_period('4w3d2h1m'), interval '31 days 02:01:00', 'fill 4w3d2h1m');
SELECT is(errands._cron_period('1d'), interval '1 day', 'fill 1d');
SELECT is((SELECT payload FROM errands.parse_crontab('0 0 * * * t {"a": [1, 2], "b": {"c": "x y"}}')),
          '{"a": [1, 2], "b": {"c": "x y"}}'::jsonb, 'payload with spaces');
SELECT is((SELECT payload FROM errands.parse_crontab('0 0 * * * t ?id=z {"a": 1}')), '{"a": 1}'::jsonb,
          'options then payload');
SELECT is((SELECT count(*)::int FROM errands.parse_crontab(E'0 0 * * * t\n0 1 * * * t ?id=t2')), 2,
          'the same task twice with different ids');

-- Errors: SQLSTATE 22023, the line number, the problem and the line -------------------
CREATE FUNCTION pg_temp.err(p_text text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM errands.parse_crontab(p_text);
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;
SELECT is(pg_temp.err(E'# x\n0 0 * * *'),
          '22023 errands: crontab line 2: too few fields: no task identifier: ''0 0 * * *''', 'no task');
SELECT is(pg_temp.err('0 0 * *'),
          '22023 errands: crontab line 1: too few fields (expected MIN HOUR DOM MONTH DOW task): ''0 0 * *''',
          'too few fields');
SELECT is(pg_temp.err('60 * * * * t'),
          '22023 errands: crontab line 1: minute value 60 out of range 0-59: ''60 * * * * t''', 'minute 60');
SELECT is(pg_temp.err('* 24 * * * t'),
          '22023 errands: crontab line 1: hour value 24 out of range 0-23: ''* 24 * * * t''', 'hour 24');
SELECT is(pg_temp.err('* * 0 * * t'),
          '22023 errands: crontab line 1: day of month value 0 out of range 1-31: ''* * 0 * * t''', 'day 0');
SELECT is(pg_temp.err('* * 32 * * t'),
          '22023 errands: crontab line 1: day of month value 32 out of range 1-31: ''* * 32 * * t''', 'day 32');
SELECT is(pg_temp.err('* * * 13 * t'),
          '22023 errands: crontab line 1: month value 13 out of range 1-12: ''* * * 13 * t''', 'month 13');
SELECT is(pg_temp.err('* * * * 8 t'),
          '22023 errands: crontab line 1: day of week value 8 out of range 0-7: ''* * * * 8 t''', 'weekday 8');
SELECT is(pg_temp.err('*/0 * * * * t'),
          '22023 errands: crontab line 1: minute field: zero step in ''*/0'': ''*/0 * * * * t''', 'zero step');
SELECT is(pg_temp.err('*/x * * * * t'),
          '22023 errands: crontab line 1: minute field: bad step ''x'' in ''*/x'': ''*/x * * * * t''', 'bad step');
SELECT alike(pg_temp.err('1/2/3 * * * * t'), '22023 %more than one /%', 'two slashes');
SELECT alike(pg_temp.err('5-1 * * * * t'), '22023 %minute field: range ''5-1'' is backwards%', 'backwards range');
SELECT alike(pg_temp.err('1-2-3 * * * * t'), '22023 %minute field: bad range ''1-2-3''%', 'bad range');
SELECT alike(pg_temp.err('1,,2 * * * * t'), '22023 %empty list item%', 'empty list item');
SELECT alike(pg_temp.err('* * * foo * t'), '22023 %month field: bad value ''foo''%', 'bad month name');
SELECT alike(pg_temp.err('* * * * mon-funday t'), '22023 %day of week field: bad value ''funday''%', 'bad weekday name');
SELECT alike(pg_temp.err('x * * * * t'), '22023 %minute field: bad value ''x''%', 'bad value');
SELECT alike(pg_temp.err('@fortnightly t'), '22023 %unknown macro ''@fortnightly''%', 'unknown macro');
SELECT alike(pg_temp.err('* * * * * t ?foo=1'), '22023 %bad option key ''foo''%', 'bad option key');
SELECT alike(pg_temp.err('* * * * * t ?id'), '22023 %bad option ''id'' (expected key=value)%', 'option without =');
SELECT alike(pg_temp.err('* * * * * t ?id=a&id=b'), '22023 %option ''id'' given twice%', 'option twice');
SELECT alike(pg_temp.err('* * * * * t ?queue='), '22023 %option ''queue'' has an empty value%', 'empty option');
SELECT alike(pg_temp.err('* * * * * t ?fill=1y'), '22023 %bad fill period ''1y''%', 'bad fill');
SELECT alike(pg_temp.err('* * * * * t ?max=0'), '22023 %bad max ''0''%', 'bad max');
SELECT alike(pg_temp.err('* * * * * t ?priority=x'), '22023 %bad priority ''x''%', 'bad priority');
SELECT alike(pg_temp.err('* * * * * t ?jobKeyMode=unsafe_dedupe'), '22023 %bad jobKeyMode ''unsafe_dedupe''%', 'bad jobKeyMode');
SELECT alike(pg_temp.err('* * * * * t ?tz=Mars/Olympus'), '22023 %unknown time zone ''Mars/Olympus''%', 'bad tz');
SELECT alike(pg_temp.err(E'* * * * * t\n\n0 * * * * t'),
            '22023 errands: crontab line 3: duplicate id ''t''%', 'duplicate id, reported on its second line');
SELECT alike(pg_temp.err(E'* * * * * a ?id=x\n0 * * * * b ?id=x'), '22023 %line 2: duplicate id ''x''%', 'duplicate explicit id');
SELECT alike(pg_temp.err('* * * * * t {"a": }'), '22023 %invalid JSON payload%', 'invalid JSON');
SELECT alike(pg_temp.err('* * * * * t [1]'), '22023 %unexpected ''[1]'' after the task identifier%', 'non-object payload text');
SELECT alike(pg_temp.err('* * * * * t extra'), '22023 %unexpected ''extra''%', 'extra field');
SELECT alike(pg_temp.err('* * * * * t ?id=x extra'), '22023 %unexpected ''extra''%', 'extra field after options');
SELECT alike(pg_temp.err(E'0 0 * * * ok\n0 0 * * * bad ?max=x\n61 * * * * worse'), '22023 %line 2:%',
            'the first bad line is reported');
SELECT is(pg_temp.err(NULL), '22023 errands: crontab is NULL', 'NULL crontab');

SELECT * FROM finish();
ROLLBACK;
