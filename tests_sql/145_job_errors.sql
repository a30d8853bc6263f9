-- Every failed try of a job in errands.jobs.errors (the dashboard's job page):
-- one entry per failure (attempt, start, failure time, worker, message), oldest
-- first, the last 20 kept, written by every path that sets last_error, carried
-- into errands.finished_jobs with the start of the last try; bad input changes
-- nothing.
BEGIN;
SELECT plan(26);

-- Fetch job id as worker w (due now first) and fail it with message m.
CREATE FUNCTION pg_temp.fail_once(id bigint, w text, m text) RETURNS void LANGUAGE plpgsql AS $f$
BEGIN
    UPDATE errands._jobs SET run_at = now() - interval '1 second' WHERE _jobs.id = fail_once.id;
    PERFORM errands.get_jobs(w, ARRAY[(SELECT task_identifier FROM errands.jobs j WHERE j.id = fail_once.id)]);
    PERFORM errands.worker_fail_jobs(w, ARRAY[id], ARRAY[m]);
END
$f$;

SELECT (errands.add_job('e_task', '{}', max_attempts := 30)).id AS id \gset
SELECT is((SELECT errors FROM errands.jobs WHERE id = :id), NULL, 'a job that never failed: errors NULL');

SELECT pg_temp.fail_once(:id, 'w-a', 'first boom');
SELECT pg_temp.fail_once(:id, 'w-b', 'second boom');
SELECT is((SELECT jsonb_array_length(errors) FROM errands.jobs WHERE id = :id), 2, 'two failures: two entries');
SELECT is(ARRAY(SELECT (e->>'attempt')::int FROM errands.jobs j, jsonb_array_elements(j.errors) e WHERE j.id = :id),
          ARRAY[1, 2], 'entries in order of their attempt, oldest first');
SELECT is(ARRAY(SELECT e->>'worker' FROM errands.jobs j, jsonb_array_elements(j.errors) e WHERE j.id = :id),
          ARRAY['w-a', 'w-b'], 'each entry names the worker of its try');
SELECT is(ARRAY(SELECT e->>'error' FROM errands.jobs j, jsonb_array_elements(j.errors) e WHERE j.id = :id),
          ARRAY['first boom', 'second boom'], 'each entry keeps its own message');
SELECT is((SELECT last_error FROM errands.jobs WHERE id = :id), 'second boom', 'last_error is still the last one');
SELECT is((SELECT (errors->0->>'started_at')::timestamptz FROM errands.jobs WHERE id = :id), now(),
          'started_at: when the try was taken (its lock time)');
SELECT is((SELECT (errors->1->>'failed_at')::timestamptz FROM errands.jobs WHERE id = :id), now(),
          'failed_at: when the failure was recorded');
SELECT is((SELECT ARRAY(SELECT jsonb_object_keys(errors->0) ORDER BY 1) FROM errands.jobs WHERE id = :id),
          ARRAY['attempt', 'error', 'failed_at', 'started_at', 'worker'], 'an entry has exactly these keys');

-- Bad input: nothing changes.
SELECT errors::text AS before FROM errands.jobs WHERE id = :id \gset
SELECT errands.get_jobs('w-c', ARRAY['e_task']) IS NOT NULL;
UPDATE errands._jobs SET run_at = now() - interval '1 second' WHERE id = :id;
SELECT throws_ok(format($$SELECT errands.worker_fail_jobs('w-c', ARRAY[%s::bigint], ARRAY['x', 'y'])$$, :id),
                 '22023', NULL, 'worker_fail_jobs with more messages than ids: 22023');
SELECT is((SELECT errors::text FROM errands.jobs WHERE id = :id), :'before', 'bad input: errors unchanged');
SELECT is((SELECT jsonb_array_length(errors) FROM (SELECT errands._add_error(NULL, 1, NULL, NULL, 'x') AS errors) s), 1,
          '_add_error of NULL starts an array');

-- A caller that may not read jobs gets its row back without error messages.
SELECT is((SELECT (x.last_error, x.errors) FROM errands._hide_payload(
              (SELECT j FROM errands.jobs j WHERE j.id = :id), NULL) x),
          (NULL::text, NULL::jsonb), '_hide_payload hides errors as it hides last_error');

-- The cap: 25 failures keep the last 20 (attempts 6 to 25).
SELECT (errands.add_job('e_cap', '{}', max_attempts := 100)).id AS cap \gset
SELECT pg_temp.fail_once(:cap, 'w-cap', 'failure ' || n) FROM generate_series(1, 25) n;
SELECT is((SELECT jsonb_array_length(errors) FROM errands.jobs WHERE id = :cap), 20, 'capped at 20 entries');
SELECT is(ARRAY(SELECT (e->>'attempt')::int FROM errands.jobs j, jsonb_array_elements(j.errors) e WHERE j.id = :cap),
          ARRAY(SELECT generate_series(6, 25)), 'the last 20 kept, oldest first');
SELECT is((SELECT errors->19->>'error' FROM errands.jobs WHERE id = :cap), 'failure 25', 'the newest is last');

-- A long message is cut at 4,000 characters in errors (last_error keeps it whole).
SELECT (errands.add_job('e_long', '{}')).id AS long \gset
SELECT pg_temp.fail_once(:long, 'w-l', repeat('x', 10000));
SELECT is((SELECT (length(errors->0->>'error'), length(last_error)) FROM errands.jobs WHERE id = :long),
          (4000, 10000), 'errors keeps 4,000 characters of a long message');

-- Replacing a job by its key starts it afresh: attempts 0, no last_error, no errors.
SELECT (errands.add_job('e_keyed', '{}', job_key := 'e:k')).id AS keyed \gset
SELECT pg_temp.fail_once(:keyed, 'w-k', 'keyed boom');
SELECT errands.add_job('e_keyed', '{"v": 2}', job_key := 'e:k');
SELECT is((SELECT (attempts, last_error, errors) FROM errands.jobs WHERE id = :keyed),
          (0, NULL::text, NULL::jsonb), 'a job replaced by its key: errors cleared with last_error');

-- The other paths that set last_error: a stale lock, a dead worker, a manual failure.
SELECT (errands.add_job('e_stale', '{}')).id AS stale \gset
SELECT errands.get_jobs('w-stale', ARRAY['e_stale']) IS NOT NULL;
UPDATE errands._jobs SET locked_at = now() - interval '5 hours' WHERE id = :stale;
SELECT errands.reset_locked();
SELECT is((SELECT (errors->0->>'worker', errors->0->>'attempt', errors->0->>'error' LIKE '%presumed dead')
           FROM errands.jobs WHERE id = :stale), ('w-stale'::text, '1'::text, true),
          'reset_locked records the interrupted try');
SELECT errands.register_worker('w-gone', 'h', 1);
SELECT (errands.add_job('e_dead', '{}')).id AS dead \gset
SELECT errands.get_jobs('w-gone', ARRAY['e_dead']) IS NOT NULL;
SELECT errands.unregister_worker('w-gone');
SELECT is((SELECT (errors->0->>'worker', errors->0->>'error' LIKE 'errands: worker w-gone%')
           FROM errands.jobs WHERE id = :dead), ('w-gone'::text, true),
          'a worker that went away: its try is recorded');
SELECT errands.permanently_fail_jobs(ARRAY[:stale::bigint], 'given up');
SELECT is((SELECT (jsonb_array_length(errors), errors->1->>'error', errors->1->>'worker')
           FROM errands.jobs WHERE id = :stale), (2, 'given up'::text, NULL::text),
          'permanently_fail_jobs adds an entry without a worker');

-- Carried into history, with the start of the last try.
SELECT errands.set_retention(interval '1 day');
SELECT errands.get_jobs('w-ok', ARRAY['e_task']) IS NOT NULL;
UPDATE errands._jobs SET locked_at = now() - interval '3 seconds', run_at = now() - interval '10 seconds'
WHERE id = :id;
SELECT errors::text AS kept FROM errands.jobs WHERE id = :id \gset
SELECT errands.worker_complete_jobs('w-ok', ARRAY[:id::bigint], NULL);
SELECT is((SELECT (state, errors::text) FROM errands.finished_jobs WHERE id = :id),
          ('completed'::text, :'kept'::text), 'a completed job keeps its failed tries in history');
SELECT is((SELECT (run_at, started_at) FROM errands.finished_jobs WHERE id = :id),
          (now() - interval '10 seconds', now() - interval '3 seconds'),
          'finished_jobs: run_at and started_at of the try that completed');
SELECT is((SELECT (sum(jobs)::int, max(wait_max), max(run_max))
           FROM errands.dashboard_durations(now() - interval '1 hour', interval '5 minutes')),
          (1, 7::float8, 3::float8), 'dashboard_durations: queue wait run_at -> start, run time start -> finish');
SELECT throws_ok($$SELECT * FROM errands.dashboard_durations(now() - interval '1 hour', interval '0')$$,
                 '22023', NULL, 'dashboard_durations of a zero bucket: 22023');
SELECT (errands.add_job('e_never', '{}')).id AS never \gset
SELECT errands.cancel_jobs(ARRAY[:never::bigint]);
SELECT is((SELECT (state, errors, started_at) FROM errands.finished_jobs WHERE id = :never),
          ('cancelled'::text, NULL::jsonb, NULL::timestamptz), 'a job cancelled before running: no errors, no start');

SELECT * FROM finish();
ROLLBACK;
