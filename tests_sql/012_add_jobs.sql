-- errands.add_jobs: one row per spec in input order, defaults, bulk insert,
-- duplicate keys in one call, array payload merging, preserve_run_at.
BEGIN;
SELECT plan(38);

-- Specs from a JSON array of objects, the way clients build them.
CREATE FUNCTION pg_temp.specs(p json) RETURNS errands.job_spec[]
LANGUAGE sql AS $$ SELECT ARRAY(SELECT s FROM json_populate_recordset(NULL::errands.job_spec, p) s) $$;

-- Start one job of a task as worker-a; its id.
CREATE FUNCTION pg_temp.start(p_task text) RETURNS bigint
LANGUAGE sql AS $$ SELECT id FROM errands.get_jobs('worker-a', ARRAY[p_task], 1) $$;

-- Five specs, one row each, in input order ---------------------------------------

CREATE TEMP TABLE five AS
SELECT * FROM errands.add_jobs(pg_temp.specs('[
    {"identifier": "five_e", "priority": 5, "payload": {"n": 1}},
    {"identifier": "five_a", "priority": -1, "payload": {"n": 2}},
    {"identifier": "five_c", "priority": 3, "payload": {"n": 3}, "queue_name": "five_q"},
    {"identifier": "five_b", "priority": 0, "payload": {"n": 4}},
    {"identifier": "five_d", "priority": 2, "payload": {"n": 5}, "flags": ["a", "b"]}
]')) WITH ORDINALITY;

SELECT results_eq(
    $$SELECT ordinality::int, task_identifier, priority, (payload->>'n')::int FROM five ORDER BY ordinality$$,
    $$VALUES (1, 'five_e', 5, 1), (2, 'five_a', -1, 2), (3, 'five_c', 3, 3), (4, 'five_b', 0, 4), (5, 'five_d', 2, 5)$$,
    'add_jobs returns one row per spec, in input order'
);
SELECT is(
    ARRAY(SELECT id FROM five ORDER BY ordinality),
    ARRAY(SELECT id FROM five ORDER BY id),
    'ids are assigned in input order'
);
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier LIKE 'five\_%'), 5,
          'the five jobs are in errands.jobs');
SELECT is(
    ARRAY(SELECT (f.id, f.queue_name, f.task_identifier, f.payload::text, f.priority, f.run_at,
                  f.attempts, f.max_attempts, f.last_error, f.created_at, f.updated_at, f.key,
                  f.locked_at, f.locked_by, f.revision, f.flags, f.timeout, f.state,
                  f.traceparent, f.errors)::text
          FROM five f ORDER BY f.ordinality),
    ARRAY(SELECT j::text FROM five f JOIN errands.jobs j ON j.id = f.id ORDER BY f.ordinality),
    'every returned row equals the job''s row in errands.jobs'
);
SELECT ok((SELECT bool_and(run_at = now() AND max_attempts = 25 AND attempts = 0 AND revision = 0
                           AND key IS NULL) FROM five),
          'NULL spec fields take add_job''s defaults (run_at now(), max_attempts 25)');
SELECT is((SELECT queue_name FROM five WHERE ordinality = 3), 'five_q', 'a spec''s queue_name is stored');
SELECT is((SELECT count(*)::int FROM errands._queues WHERE queue_name = 'five_q'), 1,
          'add_jobs creates the queue row');
SELECT is((SELECT flags FROM five WHERE ordinality = 5), '{"a": true, "b": true}'::jsonb,
          'a spec''s flags are stored as a jsonb set');
SELECT is((SELECT payload::text FROM errands.add_jobs(pg_temp.specs('[{"identifier": "five_defaults"}]'))),
          '{}', 'a spec without payload gets {}');

-- Nothing in, nothing out ------------------------------------------------------------

SELECT is((SELECT count(*)::int FROM errands.add_jobs('{}'::errands.job_spec[])), 0,
          'an empty spec array returns no rows');
SELECT is((SELECT count(*)::int FROM errands.add_jobs(NULL::errands.job_spec[])), 0,
          'a NULL spec array returns no rows');
SELECT is((SELECT count(*)::int FROM errands.jobs), 6, 'neither call added a job');

-- 1000 specs in one call -----------------------------------------------------------

CREATE TEMP TABLE bulk AS
SELECT * FROM errands.add_jobs(ARRAY(
    SELECT ROW('bulk_' || (g % 3), json_build_object('i', g), NULL, NULL, NULL, NULL, NULL, NULL)::errands.job_spec
    FROM generate_series(1, 1000) g ORDER BY g)) WITH ORDINALITY;
SELECT is((SELECT count(*)::int FROM bulk), 1000, '1000 specs in one call return 1000 rows');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE task_identifier LIKE 'bulk\_%'), 1000,
          '1000 specs in one call make 1000 jobs');
SELECT ok((SELECT bool_and((payload->>'i')::bigint = ordinality) FROM bulk),
          '1000 specs: each returned row is its spec''s job (input order kept across task identifiers)');
SELECT is(ARRAY(SELECT id FROM bulk ORDER BY ordinality), ARRAY(SELECT id FROM bulk ORDER BY id),
          '1000 specs: ids are assigned in input order');

-- The same job_key twice in one call ------------------------------------------------

CREATE TEMP TABLE dup AS
SELECT * FROM errands.add_jobs(pg_temp.specs('[
    {"identifier": "dup_a", "payload": {"v": 1}, "job_key": "dup:1", "priority": 1, "queue_name": "dup_q"},
    {"identifier": "dup_b", "payload": {"v": 2}, "job_key": "dup:1", "priority": 2}
]')) WITH ORDINALITY;
SELECT is((SELECT count(*)::int FROM dup), 2, 'duplicate key in one call: does not fail, one row per spec');
SELECT is((SELECT count(DISTINCT id)::int FROM dup), 1, 'duplicate key in one call: both rows are the same job');
SELECT is((SELECT count(*)::int FROM errands.jobs WHERE key = 'dup:1'), 1,
          'duplicate key in one call: one job is stored');
SELECT ok((SELECT task_identifier = 'dup_b' AND payload::text = '{"v": 2}' AND priority = 2
                  AND queue_name IS NULL
           FROM errands.jobs WHERE key = 'dup:1'),
          'duplicate key in one call: the later spec wins (task, payload, priority, queue)');

CREATE TEMP TABLE dup_arr AS
SELECT * FROM errands.add_jobs(pg_temp.specs('[
    {"identifier": "dup_arr", "payload": [1], "job_key": "dup:arr"},
    {"identifier": "dup_arr", "payload": [2], "job_key": "dup:arr"}
]')) WITH ORDINALITY;
SELECT is((SELECT payload::jsonb FROM errands.jobs WHERE key = 'dup:arr'), '[1, 2]'::jsonb,
          'duplicate key in one call: array payloads [1] and [2] merge into [1, 2]');
SELECT ok((SELECT count(DISTINCT d.id) = 1 AND min(d.id) = (SELECT id FROM errands.jobs WHERE key = 'dup:arr')
           FROM dup_arr d),
          'duplicate key in one call: both returned rows point to the merged job');

SELECT is((SELECT payload::jsonb FROM errands.add_jobs(pg_temp.specs('[
               {"identifier": "dup_mix", "payload": {"o": 1}, "job_key": "dup:obj-arr"},
               {"identifier": "dup_mix", "payload": [2], "job_key": "dup:obj-arr"}
           ]')) WITH ORDINALITY WHERE ordinality = 2),
          '[2]'::jsonb,
          'duplicate key in one call: an object then an array leaves the array only');
SELECT is((SELECT payload::jsonb FROM errands.add_jobs(pg_temp.specs('[
               {"identifier": "dup_mix", "payload": [1], "job_key": "dup:arr-obj"},
               {"identifier": "dup_mix", "payload": {"o": 2}, "job_key": "dup:arr-obj"}
           ]')) WITH ORDINALITY WHERE ordinality = 2),
          '{"o": 2}'::jsonb,
          'duplicate key in one call: an array then an object leaves the object only');
SELECT is((SELECT payload::jsonb FROM errands.add_jobs(pg_temp.specs('[
               {"identifier": "dup_mix", "payload": [1], "job_key": "dup:arr-obj-arr"},
               {"identifier": "dup_mix", "payload": {"o": 2}, "job_key": "dup:arr-obj-arr"},
               {"identifier": "dup_mix", "payload": [3], "job_key": "dup:arr-obj-arr"},
               {"identifier": "dup_mix", "payload": [4, 5], "job_key": "dup:arr-obj-arr"}
           ]')) WITH ORDINALITY WHERE ordinality = 4),
          '[3, 4, 5]'::jsonb,
          'duplicate key in one call: arrays after an object concatenate, those before it are dropped');

-- Keyed and unkeyed specs mixed: still input order.
CREATE TEMP TABLE mixed_existing AS SELECT * FROM errands.add_job('mixed', '{"v": 0}', job_key := 'mixed:1');
SELECT results_eq(
    $$SELECT ordinality::int, task_identifier, key, id = (SELECT id FROM mixed_existing)
      FROM errands.add_jobs(pg_temp.specs('[
          {"identifier": "mixed_u1"},
          {"identifier": "mixed", "job_key": "mixed:1", "payload": {"v": 1}},
          {"identifier": "mixed_u2"},
          {"identifier": "mixed_k2", "job_key": "mixed:2"}
      ]')) WITH ORDINALITY ORDER BY ordinality$$,
    $$VALUES (1, 'mixed_u1', NULL::text, false), (2, 'mixed', 'mixed:1', true),
             (3, 'mixed_u2', NULL, false), (4, 'mixed_k2', 'mixed:2', false)$$,
    'keyed and unkeyed specs mixed: rows in input order, the keyed one updates the existing job'
);

-- Against existing jobs -----------------------------------------------------------

-- preserve_run_at through add_jobs' second argument.
CREATE TEMP TABLE pra AS
SELECT * FROM errands.add_job('pra', '{"v": 1}', job_key := 'pra:1', run_at := now() + interval '1 hour');
CREATE TEMP TABLE pra_2 AS
SELECT * FROM errands.add_jobs(ARRAY[ROW('pra', '{"v": 2}', NULL, now() + interval '2 hours', NULL,
                                         'pra:1', NULL, NULL)::errands.job_spec], true);
SELECT ok((SELECT n.id = o.id AND n.revision = 1 FROM pra_2 n, pra o),
          'job_key_preserve_run_at = true: the pending job is updated in place');
SELECT is((SELECT run_at FROM pra_2), now() + interval '1 hour',
          'job_key_preserve_run_at = true: run_at is kept');
SELECT is((SELECT payload::text FROM pra_2), '{"v": 2}',
          'job_key_preserve_run_at = true: payload is replaced');
SELECT is((SELECT run_at FROM errands.add_jobs(ARRAY[ROW('pra', '{"v": 3}', NULL, now() + interval '3 hours',
                                                         NULL, 'pra:1', NULL, NULL)::errands.job_spec])),
          now() + interval '3 hours',
          'job_key_preserve_run_at defaults to false: run_at is replaced');

-- A retrying job gets a new run_at even with preserve_run_at.
CREATE TEMP TABLE pra_retry AS
SELECT * FROM errands.add_job('pra_retry', '{"v": 1}', job_key := 'pra:retry');
SELECT ok((SELECT attempts = 1 FROM errands.worker_fail_jobs('worker-a', ARRAY[pg_temp.start('pra_retry')],
                                                               ARRAY['boom'])),
          'setup: the keyed job failed once and waits to retry');
SELECT ok((SELECT run_at = now() + interval '2 hours' AND attempts = 0 AND last_error IS NULL
                  AND id = (SELECT id FROM pra_retry)
           FROM errands.add_jobs(ARRAY[ROW('pra_retry', NULL, NULL, now() + interval '2 hours', NULL,
                                           'pra:retry', NULL, NULL)::errands.job_spec], true)),
          'job_key_preserve_run_at = true on a retrying job: run_at replaced, attempts 0, last_error cleared');

-- Array payloads merge with an existing pending job's array.
CREATE TEMP TABLE merge_existing AS SELECT * FROM errands.add_job('merge', '[1]', job_key := 'merge:1');
CREATE TEMP TABLE merge_2 AS
SELECT * FROM errands.add_jobs(pg_temp.specs('[
    {"identifier": "merge", "payload": [2], "job_key": "merge:1"},
    {"identifier": "merge", "payload": [3], "job_key": "merge:1"}
]'));
SELECT is((SELECT payload::jsonb FROM errands.jobs WHERE key = 'merge:1'), '[1, 2, 3]'::jsonb,
          'add_jobs appends array payloads to an existing pending job''s array');
SELECT ok((SELECT bool_and(id = (SELECT id FROM merge_existing)) AND count(*) = 2 FROM merge_2),
          'add_jobs merge: both rows are the existing job');

-- A running job with the key: the call's folded specs become a new job.
CREATE TEMP TABLE run_existing AS SELECT * FROM errands.add_job('run_batch', '[1]', job_key := 'run:1');
SELECT is(pg_temp.start('run_batch'), (SELECT id FROM run_existing), 'setup: the keyed batch job is running');
CREATE TEMP TABLE run_2 AS
SELECT * FROM errands.add_jobs(pg_temp.specs('[
    {"identifier": "run_batch", "payload": [2], "job_key": "run:1"},
    {"identifier": "run_batch", "payload": [3], "job_key": "run:1"}
]'));
SELECT ok((SELECT count(DISTINCT id) = 1 AND min(id) <> (SELECT id FROM run_existing) FROM run_2),
          'add_jobs with a running job''s key: one new job for both specs');
SELECT is((SELECT payload::jsonb FROM errands.jobs WHERE key = 'run:1'), '[2, 3]'::jsonb,
          'add_jobs with a running job''s key: the new job holds only the new elements');
SELECT ok((SELECT key IS NULL AND attempts = max_attempts AND payload::jsonb = '[1]'
           FROM errands.jobs WHERE id = (SELECT id FROM run_existing)),
          'add_jobs with a running job''s key: the running job loses the key, will not retry, keeps [1]');

SELECT * FROM finish();
ROLLBACK;
