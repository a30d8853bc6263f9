-- Bad input to add_job / add_jobs: SQLSTATE 22023, a message naming the field
-- (and the bad value), and nothing written. Boundary values are accepted.
BEGIN;
SELECT plan(52);

-- One job before the bad calls, so "unchanged" is not just "empty".
CREATE TEMP TABLE baseline AS SELECT * FROM errands.add_job('baseline_task');

-- add_job: 22023 and a message naming the field and the value ---------------------

SELECT throws_ok($$SELECT errands.add_job(NULL, queue_name := 'bad_q')$$, '22023', NULL,
                 'identifier NULL raises 22023');
SELECT throws_like($$SELECT errands.add_job(NULL, queue_name := 'bad_q')$$, '%identifier%NULL%',
                   'identifier NULL: the message names identifier and NULL');

SELECT throws_ok($$SELECT errands.add_job('', queue_name := 'bad_q')$$, '22023', NULL,
                 'identifier '''' raises 22023');
SELECT throws_like($$SELECT errands.add_job('', queue_name := 'bad_q')$$, '%identifier%'''' (0 characters)%',
                   'identifier '''': the message names identifier and the empty value');

SELECT throws_ok($$SELECT errands.add_job(repeat('x', 129), queue_name := 'bad_q')$$, '22023', NULL,
                 'identifier of 129 characters raises 22023');
SELECT throws_like($$SELECT errands.add_job(repeat('x', 129), queue_name := 'bad_q')$$,
                   '%identifier%''xxxxxxxxxx%129 characters%',
                   'identifier of 129 characters: the message names identifier, the value and its length');

SELECT throws_ok($$SELECT errands.add_job('bad_queue_long', queue_name := repeat('q', 129))$$, '22023', NULL,
                 'queue_name of 129 characters raises 22023');
SELECT throws_like($$SELECT errands.add_job('bad_queue_long', queue_name := repeat('q', 129))$$,
                   '%queue_name%''qqqqqqqqqq%129 characters%',
                   'queue_name of 129 characters: the message names queue_name, the value and its length');

SELECT throws_ok($$SELECT errands.add_job('bad_queue_empty', queue_name := '')$$, '22023', NULL,
                 'queue_name '''' raises 22023');
SELECT throws_like($$SELECT errands.add_job('bad_queue_empty', queue_name := '')$$,
                   '%queue_name%'''' (0 characters)%',
                   'queue_name '''': the message names queue_name and the empty value');

SELECT throws_ok($$SELECT errands.add_job('bad_key_empty', queue_name := 'bad_q', job_key := '')$$,
                 '22023', NULL, 'job_key '''' raises 22023');
SELECT throws_like($$SELECT errands.add_job('bad_key_empty', queue_name := 'bad_q', job_key := '')$$,
                   '%job_key%'''' (0 characters)%',
                   'job_key '''': the message names job_key and the empty value');

SELECT throws_ok($$SELECT errands.add_job('bad_key_long', queue_name := 'bad_q', job_key := repeat('k', 513))$$,
                 '22023', NULL, 'job_key of 513 characters raises 22023');
SELECT throws_like($$SELECT errands.add_job('bad_key_long', queue_name := 'bad_q', job_key := repeat('k', 513))$$,
                   '%job_key%''kkkkkkkkkk%513 characters%',
                   'job_key of 513 characters: the message names job_key, the value and its length');

SELECT throws_ok($$SELECT errands.add_job('bad_max_zero', queue_name := 'bad_q', max_attempts := 0)$$,
                 '22023', NULL, 'max_attempts 0 raises 22023');
SELECT throws_like($$SELECT errands.add_job('bad_max_zero', queue_name := 'bad_q', max_attempts := 0)$$,
                   '%max_attempts%got 0%', 'max_attempts 0: the message names max_attempts and 0');

SELECT throws_ok($$SELECT errands.add_job('bad_max_neg', queue_name := 'bad_q', max_attempts := -1)$$,
                 '22023', NULL, 'max_attempts -1 raises 22023');
SELECT throws_like($$SELECT errands.add_job('bad_max_neg', queue_name := 'bad_q', max_attempts := -1)$$,
                   '%max_attempts%got -1%', 'max_attempts -1: the message names max_attempts and -1');

SELECT throws_ok($$SELECT errands.add_job('bad_max_big', queue_name := 'bad_q', max_attempts := 32768)$$,
                 '22023', NULL, 'max_attempts 32768 raises 22023 (not a smallint overflow)');
SELECT throws_like($$SELECT errands.add_job('bad_max_big', queue_name := 'bad_q', max_attempts := 32768)$$,
                   '%max_attempts%32768%', 'max_attempts 32768: the message names max_attempts and 32768');

SELECT throws_ok($$SELECT errands.add_job('bad_prio_high', queue_name := 'bad_q', priority := 32768)$$,
                 '22023', NULL, 'priority 32768 raises 22023 (not a smallint overflow)');
SELECT throws_like($$SELECT errands.add_job('bad_prio_high', queue_name := 'bad_q', priority := 32768)$$,
                   '%priority%32768%', 'priority 32768: the message names priority and 32768');

SELECT throws_ok($$SELECT errands.add_job('bad_prio_low', queue_name := 'bad_q', priority := -32769)$$,
                 '22023', NULL, 'priority -32769 raises 22023 (not a smallint overflow)');
SELECT throws_like($$SELECT errands.add_job('bad_prio_low', queue_name := 'bad_q', priority := -32769)$$,
                   '%priority%-32769%', 'priority -32769: the message names priority and -32769');

SELECT throws_ok($$SELECT errands.add_job('bad_mode', queue_name := 'bad_q', job_key := 'bad:mode',
                                          job_key_mode := 'bogus')$$,
                 '22023', NULL, 'job_key_mode ''bogus'' raises 22023');
SELECT throws_like($$SELECT errands.add_job('bad_mode', queue_name := 'bad_q', job_key := 'bad:mode',
                                            job_key_mode := 'bogus')$$,
                   '%job_key_mode%''bogus''%', 'job_key_mode ''bogus'': the message names job_key_mode and ''bogus''');

SELECT throws_ok($$SELECT errands.add_job('bad_flags', queue_name := 'bad_q', flags := ARRAY['a', NULL])$$,
                 '22023', NULL, 'flags containing NULL raise 22023');
SELECT throws_like($$SELECT errands.add_job('bad_flags', queue_name := 'bad_q', flags := ARRAY['a', NULL])$$,
                   '%flags%NULL%', 'flags containing NULL: the message names flags and NULL');

-- The unsafe_dedupe path validates too.
SELECT throws_ok($$SELECT errands.add_job('', queue_name := 'bad_q', job_key := 'bad:dedupe',
                                          job_key_mode := 'unsafe_dedupe')$$,
                 '22023', NULL, 'unsafe_dedupe: identifier '''' raises 22023');
SELECT throws_like($$SELECT errands.add_job('', queue_name := 'bad_q', job_key := 'bad:dedupe',
                                            job_key_mode := 'unsafe_dedupe')$$,
                   '%identifier%', 'unsafe_dedupe: identifier '''': the message names identifier');
SELECT throws_ok($$SELECT errands.add_job('bad_dedupe_max', queue_name := 'bad_q', job_key := 'bad:dedupe',
                                          max_attempts := 0, job_key_mode := 'unsafe_dedupe')$$,
                 '22023', NULL, 'unsafe_dedupe: max_attempts 0 raises 22023');
SELECT throws_like($$SELECT errands.add_job('bad_dedupe_max', queue_name := 'bad_q', job_key := 'bad:dedupe',
                                            max_attempts := 0, job_key_mode := 'unsafe_dedupe')$$,
                   '%max_attempts%got 0%', 'unsafe_dedupe: max_attempts 0: the message names max_attempts and 0');

-- add_jobs: the third of three specs is bad ---------------------------------------

CREATE FUNCTION pg_temp.three(p_third errands.job_spec) RETURNS errands.job_spec[]
LANGUAGE sql AS $$
    SELECT ARRAY[ROW('bad_batch_ok_1', '{}', 'bad_q', NULL, NULL, 'bad:batch:1', NULL, NULL)::errands.job_spec,
                 ROW('bad_batch_ok_2', '{}', 'bad_q', NULL, NULL, NULL, NULL, NULL)::errands.job_spec,
                 p_third]
$$;

SELECT throws_ok($$SELECT errands.add_jobs(pg_temp.three(ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)))$$,
                 '22023', NULL, 'add_jobs, spec 3 of 3 without identifier raises 22023');
SELECT throws_like($$SELECT errands.add_jobs(pg_temp.three(ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)))$$,
                   '%identifier%spec 3%', 'add_jobs, spec 3 without identifier: the message names identifier and spec 3');

SELECT throws_ok($$SELECT errands.add_jobs(pg_temp.three(ROW('bad_batch_3', NULL, NULL, NULL, NULL, NULL, 40000, NULL)))$$,
                 '22023', NULL, 'add_jobs, spec 3 of 3 with priority 40000 raises 22023');
SELECT throws_like($$SELECT errands.add_jobs(pg_temp.three(ROW('bad_batch_3', NULL, NULL, NULL, NULL, NULL, 40000, NULL)))$$,
                   '%priority%40000%spec 3%', 'add_jobs, spec 3 priority: the message names priority, 40000 and spec 3');

SELECT throws_ok($$SELECT errands.add_jobs(pg_temp.three(ROW('bad_batch_3', NULL, NULL, NULL, NULL, repeat('k', 513), NULL, NULL)))$$,
                 '22023', NULL, 'add_jobs, spec 3 of 3 with a 513-character job_key raises 22023');
SELECT throws_like($$SELECT errands.add_jobs(pg_temp.three(ROW('bad_batch_3', NULL, NULL, NULL, NULL, repeat('k', 513), NULL, NULL)))$$,
                   '%job_key%513 characters%spec 3%', 'add_jobs, spec 3 job_key: the message names job_key, its length and spec 3');

SELECT throws_ok($$SELECT errands.add_jobs(pg_temp.three(ROW('bad_batch_3', NULL, NULL, NULL, NULL, NULL, NULL, ARRAY[NULL::text])))$$,
                 '22023', NULL, 'add_jobs, spec 3 of 3 with a NULL flag raises 22023');
SELECT throws_like($$SELECT errands.add_jobs(pg_temp.three(ROW('bad_batch_3', NULL, NULL, NULL, NULL, NULL, NULL, ARRAY[NULL::text])))$$,
                   '%flags%spec 3%', 'add_jobs, spec 3 flags: the message names flags and spec 3');

SELECT throws_like($$SELECT errands.add_jobs(ARRAY[
                         ROW('bad_batch_ok_1', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                         ROW('bad_batch_2', NULL, NULL, NULL, 0, NULL, NULL, NULL),
                         ROW('', NULL, NULL, NULL, NULL, NULL, NULL, NULL)]::errands.job_spec[])$$,
                   '%max_attempts%spec 2%', 'add_jobs with specs 2 and 3 bad: the message reports the first, spec 2');

-- Nothing was written by any of the calls above.
SELECT is((SELECT count(*)::int FROM errands.jobs), 1, 'no bad call inserted a job (only the baseline job exists)');
SELECT is(ARRAY(SELECT identifier FROM errands._tasks ORDER BY identifier), ARRAY['baseline_task'],
          'no bad call created a task row');
SELECT is((SELECT count(*)::int FROM errands._queues), 0, 'no bad call created a queue row');

-- Boundary values are accepted ------------------------------------------------------

SELECT is((SELECT length(task_identifier) FROM errands.add_job(repeat('i', 128))), 128,
          'an identifier of 128 characters is accepted');
SELECT is((SELECT length(task_identifier) FROM errands.add_job(repeat(chr(233), 128))), 128,
          'an identifier of 128 multibyte characters is accepted (characters, not bytes)');
SELECT is((SELECT length(queue_name) FROM errands.add_job('edge', queue_name := repeat('q', 128))), 128,
          'a queue_name of 128 characters is accepted');
SELECT is((SELECT length(key) FROM errands.add_job('edge', job_key := repeat('k', 512))), 512,
          'a job_key of 512 characters is accepted');
SELECT is((SELECT max_attempts FROM errands.add_job('edge', max_attempts := 1)), 1,
          'max_attempts 1 is accepted');
SELECT is((SELECT max_attempts FROM errands.add_job('edge', max_attempts := 32767)), 32767,
          'max_attempts 32767 is accepted');
SELECT is((SELECT priority FROM errands.add_job('edge', priority := -32768)), -32768,
          'priority -32768 is accepted');
SELECT is((SELECT priority FROM errands.add_job('edge', priority := 32767)), 32767,
          'priority 32767 is accepted');

SELECT * FROM finish();
ROLLBACK;
