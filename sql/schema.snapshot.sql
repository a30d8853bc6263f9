-- Errands schema snapshot: what a fresh install of schema errands contains, read
-- from the catalogue (pgtap/snapshot.py).
--
-- GENERATED FILE, DO NOT EDIT: regenerate with `make schema-snapshot`.
-- It is not meant to be run; it shows every change to the database's shape in a diff.


-- SCHEMA errands ACL: postgres=UC/postgres

-- TABLE errands._crontab_items
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   id text NOT NULL
--   source text NOT NULL
--   line_number integer NOT NULL
--   task text NOT NULL
--   minutes integer[] NOT NULL
--   hours integer[] NOT NULL
--   days_of_month integer[] NOT NULL
--   months integer[] NOT NULL
--   days_of_week integer[] NOT NULL
--   options jsonb NOT NULL
--   payload jsonb NOT NULL
--   CONSTRAINT _crontab_items_pkey PRIMARY KEY (id)
CREATE UNIQUE INDEX _crontab_items_pkey ON errands._crontab_items USING btree (id);
CREATE INDEX crontab_items_source ON errands._crontab_items USING btree (source);

-- TABLE errands._finished_jobs
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   id bigint NOT NULL
--   queue_name text
--   task_identifier text NOT NULL
--   payload json NOT NULL
--   priority smallint NOT NULL
--   attempts smallint NOT NULL
--   max_attempts smallint NOT NULL
--   last_error text
--   key text
--   created_at timestamp with time zone NOT NULL
--   finished_at timestamp with time zone NOT NULL DEFAULT now()
--   state text NOT NULL
--   result json
--   errors jsonb
--   run_at timestamp with time zone
--   started_at timestamp with time zone
--   CONSTRAINT _finished_jobs_pkey PRIMARY KEY (id)
--   CONSTRAINT finished_jobs_state CHECK ((state = ANY (ARRAY['completed'::text, 'cancelled'::text])))
CREATE UNIQUE INDEX _finished_jobs_pkey ON errands._finished_jobs USING btree (id);
CREATE INDEX finished_jobs_finished_at ON errands._finished_jobs USING btree (finished_at);

-- TABLE errands._flow_steps
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   flow_id bigint NOT NULL
--   step text NOT NULL
--   job_id bigint NOT NULL
--   ord integer NOT NULL
--   depends_on text[] NOT NULL DEFAULT '{}'::text[]
--   run_anyway boolean NOT NULL DEFAULT false
--   CONSTRAINT _flow_steps_flow_id_fkey FOREIGN KEY (flow_id) REFERENCES errands._flows(id) ON DELETE CASCADE
--   CONSTRAINT _flow_steps_job_id_key UNIQUE (job_id)
--   CONSTRAINT _flow_steps_pkey PRIMARY KEY (flow_id, step)
CREATE UNIQUE INDEX _flow_steps_job_id_key ON errands._flow_steps USING btree (job_id);
CREATE UNIQUE INDEX _flow_steps_pkey ON errands._flow_steps USING btree (flow_id, step);

-- TABLE errands._flows
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   id bigint NOT NULL IDENTITY ALWAYS
--   created_at timestamp with time zone NOT NULL DEFAULT now()
--   parent_job_id bigint
--   CONSTRAINT _flows_pkey PRIMARY KEY (id)
CREATE UNIQUE INDEX _flows_pkey ON errands._flows USING btree (id);

-- SEQUENCE errands._flows_id_seq
-- ACL: postgres=rwU/postgres

-- TABLE errands._graphile_imports
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   source_schema text NOT NULL
--   source_id bigint NOT NULL
--   source_created_at timestamp with time zone NOT NULL
--   job_id bigint NOT NULL
--   imported_at timestamp with time zone NOT NULL DEFAULT now()
--   CONSTRAINT _graphile_imports_pkey PRIMARY KEY (source_schema, source_id, source_created_at)
CREATE UNIQUE INDEX _graphile_imports_pkey ON errands._graphile_imports USING btree (source_schema, source_id, source_created_at);

-- TABLE errands._job_dependencies
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   depends_on bigint NOT NULL
--   job_id bigint NOT NULL
--   run_anyway boolean NOT NULL DEFAULT false
--   parent_try smallint
--   resolved boolean NOT NULL DEFAULT false
--   CONSTRAINT _job_dependencies_pkey PRIMARY KEY (depends_on, job_id)
CREATE UNIQUE INDEX _job_dependencies_pkey ON errands._job_dependencies USING btree (depends_on, job_id);
CREATE INDEX job_dependencies_job_id ON errands._job_dependencies USING btree (job_id);

-- TABLE errands._job_waiters
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   job_id bigint NOT NULL
--   expires_at timestamp with time zone NOT NULL
--   CONSTRAINT _job_waiters_pkey PRIMARY KEY (job_id)
CREATE UNIQUE INDEX _job_waiters_pkey ON errands._job_waiters USING btree (job_id);

-- TABLE errands._jobs
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
-- options: autovacuum_vacuum_scale_factor=0.01, autovacuum_analyze_scale_factor=0.02
--   id bigint NOT NULL IDENTITY BY DEFAULT
--   job_queue_id integer
--   task_id integer NOT NULL
--   payload json NOT NULL DEFAULT '{}'::json
--   priority smallint NOT NULL DEFAULT 0
--   run_at timestamp with time zone NOT NULL DEFAULT now()
--   attempts smallint NOT NULL DEFAULT 0
--   max_attempts smallint NOT NULL DEFAULT 25
--   last_error text
--   created_at timestamp with time zone NOT NULL DEFAULT now()
--   updated_at timestamp with time zone NOT NULL DEFAULT now()
--   key text
--   locked_at timestamp with time zone
--   locked_by text
--   revision integer NOT NULL DEFAULT 0
--   flags jsonb
--   timeout interval
--   watched boolean NOT NULL DEFAULT false
--   cancel_reason text
--   waiting_for integer
--   is_available boolean NOT NULL GENERATED AS ((locked_at IS NULL) AND (attempts < max_attempts) AND (waiting_for IS NULL))
--   traceparent text
--   errors jsonb
--   CONSTRAINT _jobs_pkey PRIMARY KEY (id)
--   CONSTRAINT jobs_key_length CHECK (((length(key) >= 1) AND (length(key) <= 512)))
--   CONSTRAINT jobs_max_attempts_positive CHECK ((max_attempts >= 1))
--   CONSTRAINT jobs_timeout_positive CHECK ((timeout > '00:00:00'::interval))
--   CONSTRAINT jobs_waiting_for_positive CHECK ((waiting_for > 0))
CREATE UNIQUE INDEX _jobs_pkey ON errands._jobs USING btree (id);
CREATE INDEX jobs_cancel_requested ON errands._jobs USING btree (locked_by) WHERE (cancel_reason IS NOT NULL);
CREATE INDEX jobs_fetch_queued ON errands._jobs USING btree (job_queue_id, priority, run_at, id) WHERE (is_available AND (job_queue_id IS NOT NULL));
CREATE INDEX jobs_fetch_unqueued ON errands._jobs USING btree (task_id, priority, run_at, id) WHERE (is_available AND (job_queue_id IS NULL));
CREATE UNIQUE INDEX jobs_key ON errands._jobs USING btree (key) WHERE (key IS NOT NULL);
CREATE INDEX jobs_unavailable ON errands._jobs USING btree (task_id) WHERE (NOT is_available);
CREATE TRIGGER _queue_head_delete AFTER DELETE ON errands._jobs FOR EACH ROW WHEN (((old.job_queue_id IS NOT NULL) AND old.is_available)) EXECUTE FUNCTION errands._track_queue_head();
CREATE TRIGGER _queue_head_insert AFTER INSERT ON errands._jobs FOR EACH ROW WHEN (((new.job_queue_id IS NOT NULL) AND new.is_available)) EXECUTE FUNCTION errands._track_queue_head();
CREATE TRIGGER _queue_head_truncate AFTER TRUNCATE ON errands._jobs FOR EACH STATEMENT EXECUTE FUNCTION errands._clear_queue_heads();
CREATE TRIGGER _queue_head_update AFTER UPDATE ON errands._jobs FOR EACH ROW WHEN (((((old.job_queue_id IS NOT NULL) AND old.is_available) OR ((new.job_queue_id IS NOT NULL) AND new.is_available)) AND ((((old.job_queue_id IS DISTINCT FROM new.job_queue_id) OR (old.is_available IS DISTINCT FROM new.is_available)) OR (old.priority IS DISTINCT FROM new.priority)) OR (old.run_at IS DISTINCT FROM new.run_at)) AND (NOT ((old.locked_at IS NULL) AND (new.locked_at IS NOT NULL))))) EXECUTE FUNCTION errands._track_queue_head();

-- SEQUENCE errands._jobs_id_seq
-- ACL: postgres=rwU/postgres

-- TYPE errands._keyed_spec
--   key text
--   identifier text
--   queue_name text
--   payload json
--   merge boolean
--   priority smallint
--   run_at timestamp with time zone
--   max_attempts smallint
--   flags jsonb
--   ord bigint

-- TABLE errands._known_crontabs
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   identifier text NOT NULL
--   known_since timestamp with time zone NOT NULL
--   last_execution timestamp with time zone
--   CONSTRAINT _known_crontabs_pkey PRIMARY KEY (identifier)
CREATE UNIQUE INDEX _known_crontabs_pkey ON errands._known_crontabs USING btree (identifier);

-- TABLE errands._queue_limits
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   pattern text NOT NULL
--   concurrency integer
--   rate_limit integer
--   rate_period interval
--   paused boolean NOT NULL DEFAULT false
--   updated_at timestamp with time zone NOT NULL DEFAULT now()
--   CONSTRAINT _queue_limits_pkey PRIMARY KEY (pattern)
--   CONSTRAINT queue_limits_concurrency CHECK ((concurrency >= 1))
--   CONSTRAINT queue_limits_pattern_length CHECK (((length(pattern) >= 1) AND (length(pattern) <= 128)))
--   CONSTRAINT queue_limits_rate CHECK (((rate_limit IS NULL) = (rate_period IS NULL)))
--   CONSTRAINT queue_limits_rate_limit CHECK ((rate_limit >= 1))
--   CONSTRAINT queue_limits_rate_period CHECK ((rate_period > '00:00:00'::interval))
CREATE UNIQUE INDEX _queue_limits_pkey ON errands._queue_limits USING btree (pattern);

-- TABLE errands._queues
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   id integer NOT NULL IDENTITY ALWAYS
--   queue_name text NOT NULL
--   locked_at timestamp with time zone
--   locked_by text
--   concurrency integer NOT NULL DEFAULT 1
--   running integer NOT NULL DEFAULT 0
--   paused boolean NOT NULL DEFAULT false
--   rate_limit integer
--   rate_period interval
--   starts timestamp with time zone[]
--   head_priority smallint
--   head_run_at timestamp with time zone
--   head_id bigint
--   CONSTRAINT _queues_pkey PRIMARY KEY (id)
--   CONSTRAINT _queues_queue_name_key UNIQUE (queue_name)
--   CONSTRAINT queues_queue_name_length CHECK (((length(queue_name) >= 1) AND (length(queue_name) <= 128)))
CREATE UNIQUE INDEX _queues_pkey ON errands._queues USING btree (id);
CREATE UNIQUE INDEX _queues_queue_name_key ON errands._queues USING btree (queue_name);
CREATE INDEX queues_rate_limited ON errands._queues USING btree (id) WHERE (rate_limit IS NOT NULL);
CREATE INDEX queues_ready ON errands._queues USING btree (head_priority, head_run_at, head_id) WHERE ((head_id IS NOT NULL) AND (locked_at IS NULL) AND (NOT paused));

-- SEQUENCE errands._queues_id_seq
-- ACL: postgres=rwU/postgres

-- TABLE errands._settings
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   id boolean NOT NULL DEFAULT true
--   max_payload_bytes bigint NOT NULL DEFAULT 1048576
--   retention interval NOT NULL DEFAULT '00:00:00'::interval
--   CONSTRAINT _settings_pkey PRIMARY KEY (id)
--   CONSTRAINT settings_max_payload_bytes_not_negative CHECK ((max_payload_bytes >= 0))
--   CONSTRAINT settings_one_row CHECK (id)
--   CONSTRAINT settings_retention_not_negative CHECK ((retention >= '00:00:00'::interval))
CREATE UNIQUE INDEX _settings_pkey ON errands._settings USING btree (id);

-- TABLE errands._task_limits
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   pattern text NOT NULL
--   concurrency integer
--   rate_limit integer
--   rate_period interval
--   paused boolean NOT NULL DEFAULT false
--   updated_at timestamp with time zone NOT NULL DEFAULT now()
--   CONSTRAINT _task_limits_pkey PRIMARY KEY (pattern)
--   CONSTRAINT task_limits_concurrency CHECK ((concurrency >= 1))
--   CONSTRAINT task_limits_pattern_length CHECK (((length(pattern) >= 1) AND (length(pattern) <= 128)))
--   CONSTRAINT task_limits_rate CHECK (((rate_limit IS NULL) = (rate_period IS NULL)))
--   CONSTRAINT task_limits_rate_limit CHECK ((rate_limit >= 1))
--   CONSTRAINT task_limits_rate_period CHECK ((rate_period > '00:00:00'::interval))
CREATE UNIQUE INDEX _task_limits_pkey ON errands._task_limits USING btree (pattern);

-- TABLE errands._tasks
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   id integer NOT NULL IDENTITY ALWAYS
--   identifier text NOT NULL
--   retention interval
--   concurrency integer
--   running integer NOT NULL DEFAULT 0
--   paused boolean NOT NULL DEFAULT false
--   rate_limit integer
--   rate_period interval
--   starts timestamp with time zone[]
--   CONSTRAINT _tasks_identifier_key UNIQUE (identifier)
--   CONSTRAINT _tasks_pkey PRIMARY KEY (id)
--   CONSTRAINT tasks_identifier_length CHECK (((length(identifier) >= 1) AND (length(identifier) <= 128)))
--   CONSTRAINT tasks_retention_not_negative CHECK ((retention >= '00:00:00'::interval))
CREATE UNIQUE INDEX _tasks_identifier_key ON errands._tasks USING btree (identifier);
CREATE UNIQUE INDEX _tasks_pkey ON errands._tasks USING btree (id);

-- SEQUENCE errands._tasks_id_seq
-- ACL: postgres=rwU/postgres

-- TABLE errands._workers
-- ACL: postgres=arwdDxt/postgres
-- ROW LEVEL SECURITY enabled
--   id text NOT NULL
--   host text
--   pid integer
--   started_at timestamp with time zone NOT NULL DEFAULT now()
--   last_heartbeat timestamp with time zone NOT NULL DEFAULT now()
--   session_lock boolean NOT NULL DEFAULT true
--   CONSTRAINT _workers_pkey PRIMARY KEY (id)
--   CONSTRAINT workers_id_length CHECK (((length(id) >= 1) AND (length(id) <= 512)))
CREATE UNIQUE INDEX _workers_pkey ON errands._workers USING btree (id);

-- TABLE errands.definitions
-- ACL: postgres=arwdDxt/postgres
--   only_row boolean NOT NULL DEFAULT true
--   hash text NOT NULL
--   installed_at timestamp with time zone NOT NULL DEFAULT now()
--   CONSTRAINT definitions_only_row_check CHECK (only_row)
--   CONSTRAINT definitions_pkey PRIMARY KEY (only_row)
CREATE UNIQUE INDEX definitions_pkey ON errands.definitions USING btree (only_row);

-- VIEW errands.finished_jobs
-- ACL: postgres=arwdDxt/postgres
-- comment: Read-only view of finished jobs kept for their retention (errands.set_retention, errands.set_task_retention). state: completed or cancelled; result: the task's return value (NULL: none). errors: its failed tries, as errands.jobs.errors. run_at: when its last try was due; started_at: when that try started (NULL: it finished without running). Queue wait: started_at - run_at; run time: finished_at - started_at.
 SELECT f.id,
    f.queue_name,
    f.task_identifier,
    f.payload,
    (f.priority)::integer AS priority,
    (f.attempts)::integer AS attempts,
    (f.max_attempts)::integer AS max_attempts,
    f.last_error,
    f.key,
    f.created_at,
    f.finished_at,
    f.state,
    f.result,
    f.errors,
    f.run_at,
    f.started_at
   FROM errands._finished_jobs f;
--   id bigint
--   queue_name text
--   task_identifier text
--   payload json
--   priority integer
--   attempts integer
--   max_attempts integer
--   last_error text
--   key text
--   created_at timestamp with time zone
--   finished_at timestamp with time zone
--   state text
--   result json
--   errors jsonb
--   run_at timestamp with time zone
--   started_at timestamp with time zone

-- VIEW errands.flow_steps
-- ACL: postgres=arwdDxt/postgres
-- comment: Steps of the flows made by errands.add_flow: flow_id, step name, job_id, position in the flow, depends_on (step names, or job ids), the job's state (NULL: finished and no longer kept), task_identifier and last_error.
 SELECT s.flow_id,
    s.step,
    s.job_id,
    s.ord AS "position",
    s.depends_on,
    s.run_anyway,
    COALESCE(j.state, f.state) AS state,
    COALESCE(j.task_identifier, f.task_identifier) AS task_identifier,
    COALESCE(j.last_error, f.last_error) AS last_error
   FROM ((errands._flow_steps s
     LEFT JOIN errands.jobs j ON ((j.id = s.job_id)))
     LEFT JOIN errands._finished_jobs f ON ((f.id = s.job_id)));
--   flow_id bigint
--   step text
--   job_id bigint
--   position integer
--   depends_on text[]
--   run_anyway boolean
--   state text
--   task_identifier text
--   last_error text

-- TYPE errands.job_spec
--   identifier text
--   payload json
--   queue_name text
--   run_at timestamp with time zone
--   max_attempts integer
--   job_key text
--   priority integer
--   flags text[]

-- VIEW errands.jobs
-- ACL: postgres=arwdDxt/postgres
-- comment: Read-only view of every job that has not finished (finished jobs are in errands.finished_jobs for their retention). state: running, waiting (for jobs it depends on), failed (no attempts left), retrying, scheduled or pending. traceparent: the W3C trace context of the span that enqueued the job (errands.set_traceparent), or NULL. errors: the last 20 failed tries, oldest first, as a JSON array of {"attempt", "started_at", "failed_at", "worker", "error"} (NULL: it never failed).
 SELECT j.id,
    q.queue_name,
    t.identifier AS task_identifier,
    j.payload,
    (j.priority)::integer AS priority,
    j.run_at,
    (j.attempts)::integer AS attempts,
    (j.max_attempts)::integer AS max_attempts,
    j.last_error,
    j.created_at,
    j.updated_at,
    j.key,
    j.locked_at,
    j.locked_by,
    j.revision,
    j.flags,
    j.timeout,
        CASE
            WHEN (j.locked_at IS NOT NULL) THEN 'running'::text
            WHEN (j.waiting_for IS NOT NULL) THEN 'waiting'::text
            WHEN (j.attempts >= j.max_attempts) THEN 'failed'::text
            WHEN (j.attempts > 0) THEN 'retrying'::text
            WHEN (j.run_at > now()) THEN 'scheduled'::text
            ELSE 'pending'::text
        END AS state,
    j.traceparent,
    j.errors
   FROM ((errands._jobs j
     JOIN errands._tasks t ON ((t.id = j.task_id)))
     LEFT JOIN errands._queues q ON ((q.id = j.job_queue_id)));
--   id bigint
--   queue_name text
--   task_identifier text
--   payload json
--   priority integer
--   run_at timestamp with time zone
--   attempts integer
--   max_attempts integer
--   last_error text
--   created_at timestamp with time zone
--   updated_at timestamp with time zone
--   key text
--   locked_at timestamp with time zone
--   locked_by text
--   revision integer
--   flags jsonb
--   timeout interval
--   state text
--   traceparent text
--   errors jsonb

-- VIEW errands.limits
-- ACL: postgres=arwdDxt/postgres
-- comment: Flow control: the limits and pauses as set (set_queue_limits, set_task_limits,
--          pause_*), one row per name or pattern. kind: queue or task.
 SELECT 'queue'::text AS kind,
    l.pattern AS name,
    l.concurrency,
    l.rate_limit,
    l.rate_period,
    l.paused,
    l.updated_at
   FROM errands._queue_limits l
UNION ALL
 SELECT 'task'::text AS kind,
    l.pattern AS name,
    l.concurrency,
    l.rate_limit,
    l.rate_period,
    l.paused,
    l.updated_at
   FROM errands._task_limits l;
--   kind text
--   name text
--   concurrency integer
--   rate_limit integer
--   rate_period interval
--   paused boolean
--   updated_at timestamp with time zone

-- TABLE errands.migrations
-- ACL: postgres=arwdDxt/postgres
--   id integer NOT NULL
--   name text NOT NULL
--   applied_at timestamp with time zone NOT NULL DEFAULT now()
--   CONSTRAINT migrations_pkey PRIMARY KEY (id)
CREATE UNIQUE INDEX migrations_pkey ON errands.migrations USING btree (id);

-- VIEW errands.queues
-- ACL: postgres=arwdDxt/postgres
-- comment: Flow control: each named queue with the limits that apply to it (resolved from
--          names and patterns), running (its jobs locked now) and backlog (its jobs due and
--          waiting).
 SELECT q.queue_name,
    q.concurrency,
    q.rate_limit,
    q.rate_period,
    q.paused,
    q.running,
    ( SELECT count(*) AS count
           FROM errands._jobs j
          WHERE ((j.job_queue_id = q.id) AND j.is_available AND (j.run_at <= now()))) AS backlog
   FROM errands._queues q;
--   queue_name text
--   concurrency integer
--   rate_limit integer
--   rate_period interval
--   paused boolean
--   running integer
--   backlog bigint

-- VIEW errands.task_limits
-- ACL: postgres=arwdDxt/postgres
-- comment: Flow control: each task a limit or pause applies to, with the resolved limits and
--          its running jobs (counted while it has a concurrency limit).
 SELECT t.identifier AS task_identifier,
    t.concurrency,
    t.rate_limit,
    t.rate_period,
    t.paused,
        CASE
            WHEN (t.concurrency IS NOT NULL) THEN t.running
            ELSE NULL::integer
        END AS running
   FROM errands._tasks t
  WHERE ((t.concurrency IS NOT NULL) OR (t.rate_limit IS NOT NULL) OR t.paused);
--   task_identifier text
--   concurrency integer
--   rate_limit integer
--   rate_period interval
--   paused boolean
--   running integer

-- VIEW errands.workers
-- ACL: postgres=arwdDxt/postgres
-- comment: Registered workers: state alive, hung (heartbeat older than 30 s) or dead (it holds a session lock (session_lock) and no session holds it any more; rescue_workers() will release its jobs), the ids of the jobs it has locked, and whether it holds a session lock (false: a worker behind a transaction-pooling PgBouncer, rescued by heartbeat timeout only).
 WITH running AS (
         SELECT j.locked_by,
            array_agg(j.id ORDER BY j.id) AS ids
           FROM errands._jobs j
          WHERE ((j.locked_by IS NOT NULL) AND (NOT j.is_available))
          GROUP BY j.locked_by
        )
 SELECT w.id,
    w.host,
    w.pid,
    w.started_at,
    w.last_heartbeat,
        CASE
            WHEN (w.session_lock AND (NOT errands._worker_lock_held(w.id))) THEN 'dead'::text
            WHEN (w.last_heartbeat < (now() - errands._heartbeat_timeout())) THEN 'hung'::text
            ELSE 'alive'::text
        END AS state,
    COALESCE(r.ids, '{}'::bigint[]) AS running_job_ids,
    w.session_lock
   FROM (errands._workers w
     LEFT JOIN running r ON ((r.locked_by = w.id)));
--   id text
--   host text
--   pid integer
--   started_at timestamp with time zone
--   last_heartbeat timestamp with time zone
--   state text
--   running_job_ids bigint[]
--   session_lock boolean

-- FUNCTION errands._add_dependencies(bigint,bigint[],boolean,smallint)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._add_dependencies(job_id bigint, depends_on bigint[], run_anyway boolean DEFAULT false, parent_try smallint DEFAULT NULL::smallint)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
DECLARE
    v_deps bigint[];
    v_live bigint[];
    v_bad bigint;
    v_bad_state text;
    v_waiting integer;
BEGIN
    IF array_position(depends_on, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'errands: depends_on must not contain NULL, got %', depends_on
            USING ERRCODE = '22023';
    END IF;
    v_deps := ARRAY(SELECT DISTINCT u FROM unnest(depends_on) u ORDER BY u);
    SELECT array_agg(s.id) INTO v_live FROM (
        SELECT j.id FROM errands._jobs j WHERE j.id = ANY(v_deps) ORDER BY j.id FOR KEY SHARE
    ) s;
    v_live := coalesce(v_live, '{}');
    SELECT u, f.state INTO v_bad, v_bad_state
    FROM unnest(v_deps) u LEFT JOIN errands._finished_jobs f ON f.id = u
    WHERE u <> ALL(v_live) AND f.state IS DISTINCT FROM 'completed'
    ORDER BY u LIMIT 1;
    IF FOUND THEN
        IF v_bad_state IS NULL THEN
            RAISE EXCEPTION 'errands: depends_on: job % does not exist (or finished and was pruned)',
                v_bad USING ERRCODE = '22023';
        END IF;
        RAISE EXCEPTION 'errands: depends_on: job % was %', v_bad, v_bad_state
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO errands._job_dependencies (depends_on, job_id, run_anyway, parent_try, resolved)
    SELECT u, _add_dependencies.job_id, coalesce(_add_dependencies.run_anyway, false),
           _add_dependencies.parent_try, u <> ALL(v_live)
    FROM unnest(v_deps) u;
    v_waiting := cardinality(v_live);
    IF v_waiting > 0 THEN
        UPDATE errands._jobs j SET waiting_for = v_waiting WHERE j.id = _add_dependencies.job_id;
    END IF;
    RETURN v_waiting;
END
$function$;

-- FUNCTION errands._add_dependent_job(text,json,text,timestamp with time zone,integer,text,integer,text[],text,interval,bigint[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._add_dependent_job(identifier text, payload json, queue_name text, run_at timestamp with time zone, max_attempts integer, job_key text, priority integer, flags text[], job_key_mode text, timeout interval, depends_on bigint[])
 RETURNS errands.jobs
 LANGUAGE plpgsql
AS $function$
DECLARE
    v_job errands.jobs;
BEGIN
    IF job_key IS NOT NULL THEN
        RAISE EXCEPTION 'errands: depends_on cannot be combined with job_key (got job_key %)',
            errands._describe(job_key) USING ERRCODE = '22023';
    END IF;
    v_job := errands.add_job(identifier, payload, queue_name, run_at, max_attempts, NULL,
                             priority, flags, job_key_mode, timeout);
    IF errands._add_dependencies(v_job.id, depends_on) > 0 THEN
        RETURN errands._job_view((SELECT j FROM errands._jobs j WHERE j.id = v_job.id));
    END IF;
    RETURN v_job;
END
$function$;

-- FUNCTION errands._add_error(jsonb,integer,timestamp with time zone,text,text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._add_error(errors jsonb, attempt integer, started_at timestamp with time zone, worker text, message text)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
    SELECT CASE WHEN jsonb_array_length(coalesce(errors, '[]')) >= 20 THEN errors - 0
                ELSE coalesce(errors, '[]') END
           || jsonb_build_array(jsonb_build_object(
                  'attempt', attempt, 'started_at', started_at, 'failed_at', now(),
                  'worker', worker, 'error', left(message, 4000)))
$function$;

-- FUNCTION errands._apply_queue_limits(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._apply_queue_limits(pattern text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE errands._queues q
    SET concurrency = v.concurrency, rate_limit = v.rate_limit, rate_period = v.rate_period,
        paused = v.paused,
        starts = CASE WHEN v.rate_limit IS NOT NULL THEN q.starts END,
        locked_at = CASE WHEN q.running >= v.concurrency THEN coalesce(q.locked_at, now()) END,
        locked_by = CASE WHEN q.running >= v.concurrency THEN q.locked_by END
    FROM errands._queues q2
    CROSS JOIN LATERAL errands._queue_limit_values(q2.queue_name) v
    WHERE q2.id = q.id AND errands._limit_matches(_apply_queue_limits.pattern, q2.queue_name);
END
$function$;

-- FUNCTION errands._apply_task_limits(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._apply_task_limits(pattern text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    WITH matched AS (
        SELECT t.id, v.* FROM errands._tasks t
        CROSS JOIN LATERAL errands._task_limit_values(t.identifier) v
        WHERE errands._limit_matches(_apply_task_limits.pattern, t.identifier)
    ), counts AS (
        SELECT j.task_id, count(*)::integer AS n FROM errands._jobs j
        WHERE j.locked_at IS NOT NULL
          AND j.task_id IN (SELECT m.id FROM matched m WHERE m.concurrency IS NOT NULL)
        GROUP BY 1
    )
    UPDATE errands._tasks t
    SET concurrency = m.concurrency, rate_limit = m.rate_limit, rate_period = m.rate_period,
        paused = m.paused,
        starts = CASE WHEN m.rate_limit IS NOT NULL THEN t.starts END,
        running = CASE WHEN m.concurrency IS NOT NULL THEN coalesce(c.n, 0) ELSE 0 END
    FROM matched m LEFT JOIN counts c ON c.task_id = m.id
    WHERE t.id = m.id;
    PERFORM errands._define_task_limits_on();
END
$function$;

-- FUNCTION errands._caller_reads_jobs()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._caller_reads_jobs()
 RETURNS boolean
 LANGUAGE sql
 STABLE
AS $function$
    SELECT pg_catalog.has_table_privilege(
        CASE WHEN pg_catalog.current_setting('role') = 'none'
             THEN session_user::text
             ELSE pg_catalog.current_setting('role') END,
        'errands.jobs'::regclass, 'SELECT')
$function$;

-- FUNCTION errands._cancel_dependents(bigint[],text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cancel_dependents(job_ids bigint[], why text DEFAULT 'was cancelled'::text)
 RETURNS bigint[]
 LANGUAGE plpgsql
AS $function$
DECLARE
    v_frontier bigint[] := job_ids;
    v_next bigint[];
    v_all bigint[] := '{}';
    v_why text := coalesce(why, 'was cancelled');
    r record;
BEGIN
    WHILE cardinality(v_frontier) > 0 LOOP
        PERFORM errands._resolve_dependencies(v_frontier, true);
        v_next := '{}';
        FOR r IN
            SELECT d.depends_on AS cause, array_agg(d.job_id ORDER BY d.job_id) AS ids
            FROM errands._job_dependencies d
            WHERE d.depends_on = ANY(v_frontier) AND NOT d.resolved AND NOT d.run_anyway
            GROUP BY d.depends_on ORDER BY d.depends_on
        LOOP
            v_next := v_next || errands._cancel_now(r.ids,
                format('errands: cancelled because job %s it depends on %s', r.cause, v_why), false);
        END LOOP;
        UPDATE errands._job_dependencies d SET resolved = true
        WHERE d.depends_on = ANY(v_frontier) AND NOT d.resolved;
        -- A cancelled job's own edges are of no more use.
        DELETE FROM errands._job_dependencies d WHERE d.job_id = ANY(v_next);
        v_all := v_all || v_next;
        v_frontier := v_next;
        v_why := 'was cancelled';
    END LOOP;
    RETURN v_all;
END
$function$;

-- FUNCTION errands._cancel_now(bigint[],text,boolean)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cancel_now(job_ids bigint[], reason text, cascade boolean DEFAULT true)
 RETURNS bigint[]
 LANGUAGE sql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT errands._end_cancelled(NULL, _cancel_now.job_ids,
                                  array_fill(_cancel_now.reason, ARRAY[coalesce(cardinality(_cancel_now.job_ids), 0)]),
                                  false, _cancel_now.cascade)
$function$;

-- FUNCTION errands._check_chart_window(text,timestamp with time zone,interval)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._check_chart_window(fn text, since timestamp with time zone, bucket interval)
 RETURNS void
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    IF since IS NULL OR bucket IS NULL OR bucket < interval '1 second'
       OR since < now() - interval '7 days' OR extract(epoch FROM now() - since) / extract(epoch FROM bucket) > 1000 THEN
        RAISE EXCEPTION 'errands: % needs a since within 7 days and at most 1000 buckets of at least 1 second, got since %, bucket %',
            fn, coalesce(since::text, 'NULL'), coalesce(bucket::text, 'NULL') USING ERRCODE = '22023';
    END IF;
END
$function$;

-- FUNCTION errands._check_late_dependents(bigint[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._check_late_dependents(job_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_seqscan TO 'off'
AS $function$
DECLARE
    v_id bigint;
BEGIN
    SELECT d.depends_on INTO v_id FROM errands._job_dependencies d
    WHERE d.depends_on = ANY(job_ids) AND NOT d.resolved
      AND NOT EXISTS (SELECT 1 FROM errands._jobs j WHERE j.id = d.depends_on)
    LIMIT 1;
    IF v_id IS NOT NULL THEN
        RAISE EXCEPTION 'errands: job % became a dependency of another job while it completed; retry the completion', v_id
            USING ERRCODE = '40001';
    END IF;
END
$function$;

-- FUNCTION errands._check_limit(text,text,integer,integer,interval)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._check_limit(what text, name text, concurrency integer, rate_limit integer, rate_period interval)
 RETURNS void
 LANGUAGE plpgsql
 IMMUTABLE
AS $function$
BEGIN
    IF name IS NULL OR length(name) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'errands: % must be 1 to 128 characters, got %', what,
            errands._describe(name) USING ERRCODE = '22023';
    END IF;
    IF strpos(left(name, -1), '*') > 0 OR name = '*' THEN
        RAISE EXCEPTION 'errands: % % is not a name or a pattern: ''*'' may only end a non-empty prefix (''tenant:*'')',
            what, quote_literal(name) USING ERRCODE = '22023';
    END IF;
    IF concurrency < 1 THEN
        RAISE EXCEPTION 'errands: concurrency must be at least 1 (NULL: no limit), got %', concurrency
            USING ERRCODE = '22023';
    END IF;
    IF rate_limit < 1 THEN
        RAISE EXCEPTION 'errands: rate_limit must be at least 1 (NULL: no limit), got %', rate_limit
            USING ERRCODE = '22023';
    END IF;
    IF rate_period <= interval '0' OR NOT isfinite(rate_period) THEN
        RAISE EXCEPTION 'errands: rate_period must be a finite interval > 0, got %', rate_period
            USING ERRCODE = '22023';
    END IF;
    IF (rate_limit IS NULL) <> (rate_period IS NULL) THEN
        RAISE EXCEPTION 'errands: rate_limit and rate_period go together, got rate_limit % and rate_period %',
            coalesce(rate_limit::text, 'NULL'), coalesce(rate_period::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
END
$function$;

-- FUNCTION errands._clear_queue_heads()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._clear_queue_heads()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    UPDATE errands._queues q SET head_priority = NULL, head_run_at = NULL, head_id = NULL
    WHERE q.head_id IS NOT NULL;
    RETURN NULL;
END
$function$;

-- FUNCTION errands._complete_dependencies(text,bigint[],json[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._complete_dependencies(worker_id text, job_ids bigint[], results json[])
 RETURNS void
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_seqscan TO 'off'
AS $function$
DECLARE
    v_ids bigint[];
    v_limit bigint;
    v_big_ids bigint[];
    v_big_errors text[];
    v_stale bigint[];
BEGIN
    -- The usual job: nobody depends on it, it depends on nobody, and no one is
    -- making a job depend on it right now. (_add_dependencies locks a dependency
    -- FOR KEY SHARE before writing its edge: while that transaction is open its
    -- edge is invisible here, but the lock shows as the row's xmax. Such a row
    -- takes the path below, whose FOR UPDATE waits for that transaction, and whose
    -- later statements see its edge. An xmax equal to the row's xmin is the lock
    -- of the fetch that wrote this version (get_jobs locks, then updates: the new
    -- version keeps its own lock as xmax), long committed: not a live one. A
    -- MultiXactId numerically equal to xmin would pass too: the callers'
    -- _check_late_dependents after their DELETE catches that case.)
    IF NOT EXISTS (SELECT 1 FROM errands._job_dependencies d WHERE d.depends_on = ANY(job_ids))
       AND NOT EXISTS (SELECT 1 FROM errands._job_dependencies d WHERE d.job_id = ANY(job_ids))
       AND NOT EXISTS (SELECT 1 FROM errands._jobs j
                       WHERE j.id = ANY(job_ids) AND j.xmax <> '0'::xid AND j.xmax <> j.xmin)
    THEN
        RETURN;
    END IF;
    -- A job whose cancellation was requested ends cancelled (35_cancel.sql): the
    -- jobs waiting for it are cancelled, not released.
    PERFORM errands._cancel_dependents(ARRAY(
        SELECT j.id FROM errands._jobs j
        WHERE j.id = ANY(job_ids) AND j.cancel_reason IS NOT NULL
          AND j.locked_by = _complete_dependencies.worker_id));
    SELECT array_agg(s.id) INTO v_ids FROM (
        SELECT j.id FROM errands._jobs j
        WHERE j.id = ANY(job_ids)
          AND (j.cancel_reason IS NULL OR _complete_dependencies.worker_id IS NULL)
          AND CASE WHEN _complete_dependencies.worker_id IS NULL
                   THEN j.locked_at IS NULL OR j.locked_at < now() - errands._stale_lock_age()
                   ELSE j.locked_by = _complete_dependencies.worker_id END
        ORDER BY j.id
        FOR UPDATE
    ) s;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    v_limit := errands._max_payload_bytes();
    IF results IS NOT NULL AND v_limit > 0 AND worker_id IS NOT NULL THEN
        SELECT array_agg(r.id), array_agg(format(
                   'errands: the task''s result is %s bytes of JSON, over the limit of %s bytes (errands.set_max_payload_bytes)',
                   octet_length(r.result::text), v_limit))
        INTO v_big_ids, v_big_errors
        FROM unnest(job_ids, results) AS r(id, result)
        WHERE r.id = ANY(v_ids) AND octet_length(r.result::text) > v_limit
          AND EXISTS (SELECT 1 FROM errands._job_dependencies d
                      WHERE d.depends_on = r.id AND NOT d.resolved);
        IF v_big_ids IS NOT NULL THEN
            PERFORM errands.worker_fail_jobs(worker_id, v_big_ids, v_big_errors);
            v_ids := ARRAY(SELECT u FROM unnest(v_ids) u WHERE u <> ALL(v_big_ids));
        END IF;
    END IF;
    -- Kept for the dependents (whatever the retention): pruned once none waits.
    INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                        attempts, max_attempts, last_error, key, created_at,
                                        state, result, errors, run_at, started_at)
    SELECT j.id, q.queue_name, t.identifier, j.payload, j.priority, j.attempts,
           j.max_attempts, j.last_error, j.key, j.created_at, 'completed', r.result,
           j.errors, j.run_at, j.locked_at
    -- Driven by the ids (one index probe of errands._jobs each): a join of
    -- errands._jobs with unnest() was planned as a nested loop over both.
    FROM unnest(job_ids, coalesce(results, array_fill(NULL::json, ARRAY[cardinality(job_ids)])))
         AS r(id, result)
    JOIN errands._jobs j ON j.id = r.id
    JOIN errands._tasks t ON t.id = j.task_id
    LEFT JOIN errands._queues q ON q.id = j.job_queue_id
    WHERE r.id = ANY(v_ids)
      AND EXISTS (SELECT 1 FROM errands._job_dependencies d WHERE d.depends_on = j.id)
    ON CONFLICT (id) DO NOTHING;
    -- Jobs a running task added (helpers.add_flow) in an earlier try of it: that
    -- try failed or its worker died, so they are cancelled, not released.
    SELECT array_agg(d.job_id) INTO v_stale
    FROM errands._job_dependencies d JOIN errands._jobs j ON j.id = d.depends_on
    WHERE d.depends_on = ANY(v_ids) AND j.id = ANY(v_ids)
      AND NOT d.resolved AND d.parent_try IS NOT NULL AND d.parent_try <> j.attempts;
    IF v_stale IS NOT NULL THEN
        PERFORM errands._cancel_now(v_stale,
            'errands: cancelled because the try of the job that added it did not complete');
        UPDATE errands._job_dependencies d SET resolved = true
        WHERE d.depends_on = ANY(v_ids) AND d.job_id = ANY(v_stale);
    END IF;
    PERFORM errands._resolve_dependencies(v_ids, false);
    DELETE FROM errands._job_dependencies d WHERE d.job_id = ANY(v_ids);
END
$function$;

-- FUNCTION errands._cron_bad(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cron_bad(problem text)
 RETURNS void
 LANGUAGE plpgsql
 IMMUTABLE
AS $function$
BEGIN
    RAISE EXCEPTION '%', problem USING ERRCODE = '22023';
END
$function$;

-- FUNCTION errands._cron_due(timestamp with time zone,integer[],integer[],integer[],integer[],integer[],text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cron_due(m timestamp with time zone, minutes integer[], hours integer[], doms integer[], months integer[], dows integer[], tz text)
 RETURNS boolean
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
    SELECT (errands._cron_wall_match(l, minutes, hours, doms, months, dows)
            AND NOT (d > interval '0' AND (m - d) AT TIME ZONE tz = l))
        OR (l - p > interval '1 minute'
            AND EXISTS (SELECT 1 FROM generate_series(p + interval '1 minute', l - interval '1 minute',
                                                      interval '1 minute') g
                        WHERE errands._cron_wall_match(g, minutes, hours, doms, months, dows)))
    FROM (SELECT m AT TIME ZONE tz AS l,
                 (m - interval '1 minute') AT TIME ZONE tz AS p,
                 ((m - interval '6 hours') AT TIME ZONE tz - (m - interval '6 hours') AT TIME ZONE 'UTC')
                 - (m AT TIME ZONE tz - m AT TIME ZONE 'UTC') AS d) x
$function$;

-- FUNCTION errands._cron_field(text,text,integer,integer,text[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cron_field(spec text, field text, lo integer, hi integer, names text[])
 RETURNS integer[]
 LANGUAGE plpgsql
 IMMUTABLE
AS $function$
DECLARE
    v_part text;
    v_base text;
    v_step integer;
    v_a integer;
    v_b integer;
    v_tok text;
    v_val integer;
    v_vals integer[] := '{}';
    v_ends integer[];
    v_i integer;
BEGIN
    FOREACH v_part IN ARRAY string_to_array(spec, ',') LOOP
        IF v_part = '' THEN
            PERFORM errands._cron_bad(format('%s field %s has an empty list item', field, quote_literal(spec)));
        END IF;
        v_step := 1;
        v_base := v_part;
        IF v_part LIKE '%/%' THEN
            IF v_part ~ '/.*/' THEN
                PERFORM errands._cron_bad(format('%s field item %s has more than one /', field, quote_literal(v_part)));
            END IF;
            v_base := split_part(v_part, '/', 1);
            v_tok := split_part(v_part, '/', 2);
            IF v_tok !~ '^[0-9]{1,6}$' THEN
                PERFORM errands._cron_bad(format('%s field: bad step %s in %s', field, quote_literal(v_tok), quote_literal(v_part)));
            END IF;
            v_step := v_tok::integer;
            IF v_step = 0 THEN
                PERFORM errands._cron_bad(format('%s field: zero step in %s', field, quote_literal(v_part)));
            END IF;
        END IF;
        IF v_base = '*' THEN
            v_a := lo;
            v_b := CASE WHEN field = 'day of week' THEN 6 ELSE hi END;
        ELSE
            IF v_base ~ '^[^-]+-[^-]+$' THEN
                v_tok := v_base;
            ELSIF v_base ~ '-' OR v_base = '' THEN
                PERFORM errands._cron_bad(format('%s field: bad range %s', field, quote_literal(v_part)));
            END IF;
            v_ends := '{}';
            FOREACH v_tok IN ARRAY string_to_array(v_base, '-') LOOP
                IF v_tok ~ '^[0-9]{1,6}$' THEN
                    v_val := v_tok::integer;
                ELSE
                    v_i := array_position(names, lower(v_tok));
                    IF v_i IS NULL THEN
                        PERFORM errands._cron_bad(format('%s field: bad value %s', field, quote_literal(v_tok)));
                    END IF;
                    v_val := lo + v_i - 1;
                END IF;
                IF v_val NOT BETWEEN lo AND hi THEN
                    PERFORM errands._cron_bad(format('%s value %s out of range %s-%s', field, v_val, lo, hi));
                END IF;
                v_ends := v_ends || v_val;
            END LOOP;
            v_a := v_ends[1];
            IF cardinality(v_ends) = 2 THEN
                v_b := v_ends[2];
            ELSIF v_step > 1 THEN
                v_b := hi;  -- N/S means N-max/S
            ELSE
                v_b := v_a;
            END IF;
            IF v_a > v_b AND v_b = 0 AND field = 'day of week' THEN
                v_b := 7;  -- sat-sun, 5-0: Sunday ends a weekday range as 7
            END IF;
            IF v_a > v_b THEN
                PERFORM errands._cron_bad(format('%s field: range %s is backwards', field, quote_literal(v_base)));
            END IF;
        END IF;
        v_vals := v_vals || ARRAY(SELECT generate_series(v_a, v_b, v_step));
    END LOOP;
    IF field = 'day of week' THEN
        v_vals := array_replace(v_vals, 7, 0);
    END IF;
    RETURN ARRAY(SELECT DISTINCT v FROM unnest(v_vals) v ORDER BY v);
END
$function$;

-- FUNCTION errands._cron_next_run(errands._crontab_items,timestamp with time zone)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cron_next_run(i errands._crontab_items, after timestamp with time zone)
 RETURNS timestamp with time zone
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    v_tz text := coalesce(i.options->>'tz', 'UTC');
    v_after timestamptz := date_trunc('minute', after);
    v_day date := (v_after AT TIME ZONE v_tz)::date;
    v_m timestamptz;
BEGIN
    WHILE v_day <= (v_after AT TIME ZONE v_tz)::date + 366 LOOP
        IF errands._cron_wall_match(v_day::timestamp, '{0}', '{0}', i.days_of_month,
                                    i.months, i.days_of_week) THEN
            SELECT g INTO v_m FROM generate_series(
                greatest(v_day::timestamp AT TIME ZONE v_tz, v_after + interval '1 minute'),
                (v_day + 1)::timestamp AT TIME ZONE v_tz - interval '1 minute',
                interval '1 minute') g
            WHERE errands._cron_due(g, i.minutes, i.hours, i.days_of_month, i.months,
                                    i.days_of_week, v_tz)
            ORDER BY g LIMIT 1;
            IF v_m IS NOT NULL THEN
                RETURN v_m;
            END IF;
        END IF;
        v_day := v_day + 1;
    END LOOP;
    RETURN NULL;
END
$function$;

-- FUNCTION errands._cron_options(text,text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cron_options(spec text, task text)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    v_opts jsonb := '{}';
    v_pair text;
    v_key text;
    v_val text;
BEGIN
    IF spec IS NOT NULL AND spec <> '' THEN
        FOREACH v_pair IN ARRAY string_to_array(spec, '&') LOOP
            IF v_pair !~ '^[^=]+=[^=]*$' THEN
                PERFORM errands._cron_bad(format('bad option %s (expected key=value)', quote_literal(v_pair)));
            END IF;
            v_key := split_part(v_pair, '=', 1);
            v_val := split_part(v_pair, '=', 2);
            IF v_key NOT IN ('id', 'fill', 'max', 'queue', 'priority', 'jobKey', 'jobKeyMode', 'tz') THEN
                PERFORM errands._cron_bad(format('bad option key %s (expected id, fill, max, queue, priority, jobKey, jobKeyMode or tz)',
                                                 quote_literal(v_key)));
            END IF;
            IF v_opts ? v_key THEN
                PERFORM errands._cron_bad(format('option %s given twice', quote_literal(v_key)));
            END IF;
            IF v_val = '' THEN
                PERFORM errands._cron_bad(format('option %s has an empty value', quote_literal(v_key)));
            END IF;
            CASE v_key
            WHEN 'fill' THEN
                IF errands._cron_period(v_val) IS NULL THEN
                    PERFORM errands._cron_bad(format('bad fill period %s (expected e.g. 1d or 4w3d2h1m)', quote_literal(v_val)));
                END IF;
            WHEN 'max' THEN
                IF v_val !~ '^[0-9]{1,5}$' OR v_val::int NOT BETWEEN 1 AND 32767 THEN
                    PERFORM errands._cron_bad(format('bad max %s (expected 1-32767)', quote_literal(v_val)));
                END IF;
            WHEN 'priority' THEN
                IF v_val !~ '^-?[0-9]{1,5}$' OR v_val::int NOT BETWEEN -32768 AND 32767 THEN
                    PERFORM errands._cron_bad(format('bad priority %s (expected -32768-32767)', quote_literal(v_val)));
                END IF;
            WHEN 'jobKeyMode' THEN
                IF v_val NOT IN ('replace', 'preserve_run_at') THEN
                    PERFORM errands._cron_bad(format('bad jobKeyMode %s (expected replace or preserve_run_at)', quote_literal(v_val)));
                END IF;
            WHEN 'tz' THEN
                BEGIN
                    PERFORM now() AT TIME ZONE v_val;
                EXCEPTION WHEN invalid_parameter_value THEN
                    PERFORM errands._cron_bad(format('unknown time zone %s', quote_literal(v_val)));
                END;
            ELSE
                IF length(v_val) > 128 AND v_key <> 'jobKey' OR length(v_val) > 512 THEN
                    PERFORM errands._cron_bad(format('option %s value is too long', quote_literal(v_key)));
                END IF;
            END CASE;
            v_opts := v_opts || jsonb_build_object(v_key, v_val);
        END LOOP;
    END IF;
    RETURN jsonb_build_object('id', task, 'tz', 'UTC') || v_opts;
END
$function$;

-- FUNCTION errands._cron_period(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cron_period(spec text)
 RETURNS interval
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT CASE WHEN spec ~ '^([0-9]{1,6}w)?([0-9]{1,6}d)?([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$'
                     AND spec <> ''
           THEN make_interval(
                    weeks => coalesce(substring(spec FROM '([0-9]+)w')::int, 0),
                    days => coalesce(substring(spec FROM '([0-9]+)d')::int, 0),
                    hours => coalesce(substring(spec FROM '([0-9]+)h')::int, 0),
                    mins => coalesce(substring(spec FROM '([0-9]+)m')::int, 0),
                    secs => coalesce(substring(spec FROM '([0-9]+)s')::int, 0))
           END
$function$;

-- FUNCTION errands._cron_wall_match(timestamp without time zone,integer[],integer[],integer[],integer[],integer[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._cron_wall_match(l timestamp without time zone, minutes integer[], hours integer[], doms integer[], months integer[], dows integer[])
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT extract(minute FROM l)::int = ANY(minutes)
       AND extract(hour FROM l)::int = ANY(hours)
       AND extract(month FROM l)::int = ANY(months)
       AND CASE WHEN cardinality(doms) < 31 AND cardinality(dows) < 7
                THEN extract(day FROM l)::int = ANY(doms) OR extract(dow FROM l)::int = ANY(dows)
                ELSE extract(day FROM l)::int = ANY(doms) AND extract(dow FROM l)::int = ANY(dows)
           END
$function$;

-- FUNCTION errands._define_constant(text,text,text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._define_constant(name text, type text, value text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION errands.%I() RETURNS %s '
        'LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $f$ SELECT %L::%s $f$',
        name, type, value, type);
END
$function$;

-- FUNCTION errands._define_max_payload_bytes()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._define_max_payload_bytes()
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    PERFORM errands._define_constant('_max_payload_bytes', 'bigint',
        coalesce((SELECT s.max_payload_bytes FROM errands._settings s), 1048576)::text);
END
$function$;

-- FUNCTION errands._define_retention()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._define_retention()
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    v_global interval := coalesce((SELECT s.retention FROM errands._settings s), interval '0');
BEGIN
    PERFORM errands._define_constant('_retention', 'interval', v_global::text);
    PERFORM errands._define_constant('_history_on', 'boolean',
        (v_global > interval '0'
         OR EXISTS (SELECT 1 FROM errands._tasks t WHERE t.retention > interval '0'))::text);
END
$function$;

-- FUNCTION errands._define_task_limits_on()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._define_task_limits_on()
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    PERFORM errands._define_constant('_task_limits_on', 'boolean',
        EXISTS (SELECT 1 FROM errands._task_limits l WHERE l.concurrency IS NOT NULL)::text);
END
$function$;

-- FUNCTION errands._dependencies_failed(bigint[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._dependencies_failed(job_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_seqscan TO 'off'
AS $function$
DECLARE
    v_gated bigint[];
    v_failed bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM errands._job_dependencies d
                   WHERE d.depends_on = ANY(job_ids) AND NOT d.resolved) THEN
        RETURN;
    END IF;
    SELECT array_agg(d.job_id) INTO v_gated
    FROM errands._job_dependencies d JOIN errands._jobs j ON j.id = d.depends_on
    WHERE d.depends_on = ANY(job_ids) AND j.id = ANY(job_ids)
      AND NOT d.resolved AND d.parent_try IS NOT NULL AND j.locked_at IS NULL;
    IF v_gated IS NOT NULL THEN
        PERFORM errands._cancel_now(v_gated,
            'errands: cancelled because the try of the job that added it failed');
        UPDATE errands._job_dependencies d SET resolved = true
        WHERE d.depends_on = ANY(job_ids) AND d.job_id = ANY(v_gated);
    END IF;
    SELECT array_agg(j.id) INTO v_failed FROM errands._jobs j
    WHERE j.id = ANY(job_ids) AND j.locked_at IS NULL AND j.attempts >= j.max_attempts;
    IF v_failed IS NOT NULL THEN
        PERFORM errands._resolve_dependencies(v_failed, true);
    END IF;
END
$function$;

-- FUNCTION errands._describe(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._describe(value text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE
        WHEN value IS NULL THEN 'NULL'
        WHEN length(value) > 40
            THEN format('%s... (%s characters)', quote_literal(left(value, 40)), length(value))
        ELSE format('%s (%s characters)', quote_literal(value), length(value))
    END
$function$;

-- FUNCTION errands._end_cancelled(text,bigint[],text[],boolean,boolean)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._end_cancelled(worker_id text, job_ids bigint[], reasons text[], requested_only boolean, cascade boolean DEFAULT true)
 RETURNS bigint[]
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_ids bigint[];
BEGIN
    WITH r AS (
        SELECT DISTINCT ON (r.id) r.id, r.reason
        FROM unnest(_end_cancelled.job_ids, _end_cancelled.reasons) AS r(id, reason)
        WHERE r.id IS NOT NULL
        ORDER BY r.id
    ), gone AS (
        DELETE FROM errands._jobs j USING r
        WHERE j.id = r.id
          AND CASE WHEN _end_cancelled.worker_id IS NULL THEN j.locked_at IS NULL
                   ELSE j.locked_by = _end_cancelled.worker_id END
          AND (NOT _end_cancelled.requested_only OR j.cancel_reason IS NOT NULL)
        RETURNING j.*, coalesce(r.reason, j.cancel_reason, 'errands: cancelled') AS reason
    -- Flow control (35_flow_control.sql): locked jobs free their queue and task slots.
    ), slots AS (
        SELECT errands._release_slots(array_agg(gone.job_queue_id), array_agg(gone.task_id))
        FROM gone WHERE gone.locked_at IS NOT NULL
    ), kept AS (
        INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                            attempts, max_attempts, last_error, key, created_at,
                                            state, result, errors, run_at, started_at)
        SELECT gone.id, q.queue_name, t.identifier, gone.payload, gone.priority, gone.attempts,
               gone.max_attempts, gone.reason, gone.key, gone.created_at, 'cancelled', NULL,
               gone.errors, gone.run_at, gone.locked_at
        FROM gone
        JOIN errands._tasks t ON t.id = gone.task_id
        LEFT JOIN errands._queues q ON q.id = gone.job_queue_id
        WHERE coalesce(t.retention, errands._retention()) > interval '0'
           OR gone.watched -- waiting (17_wait.sql): kept for its waiter
        ON CONFLICT (id) DO NOTHING
    )
    SELECT array_agg(gone.id ORDER BY gone.id) INTO v_ids FROM gone, slots;
    PERFORM errands._jobs_finished(v_ids); -- waiting hook (17_wait.sql)
    IF _end_cancelled.cascade AND v_ids IS NOT NULL THEN
        PERFORM errands._cancel_dependents(v_ids); -- flows (25_flows.sql)
    END IF;
    RETURN coalesce(v_ids, '{}');
END
$function$;

-- FUNCTION errands._end_requested(bigint[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._end_requested(job_ids bigint[])
 RETURNS bigint[]
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_all bigint[] := '{}';
    v_worker text;
    v_ids bigint[];
BEGIN
    FOR v_worker, v_ids IN
        SELECT j.locked_by, array_agg(j.id) FROM errands._jobs j
        WHERE j.id = ANY(_end_requested.job_ids) AND j.cancel_reason IS NOT NULL
          AND j.locked_by IS NOT NULL
        GROUP BY j.locked_by
    LOOP
        v_all := v_all || errands._end_cancelled(v_worker, v_ids, NULL, true);
    END LOOP;
    RETURN v_all;
END
$function$;

-- FUNCTION errands._ensure_tasks_and_queues(errands.job_spec[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._ensure_tasks_and_queues(specs errands.job_spec[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    v_tasks text[];
    v_queues text[];
BEGIN
    SELECT array_agg(d.identifier),
           array_agg(d.queue_name) FILTER (WHERE d.queue_name IS NOT NULL)
    INTO v_tasks, v_queues
    FROM (SELECT s.identifier, s.queue_name FROM unnest(specs) s GROUP BY 1, 2) d;
    -- The INSERTs run only when a name is missing: even an INSERT of nothing
    -- costs ~0.1 ms.
    IF EXISTS (SELECT 1 FROM unnest(v_tasks) n(identifier)
               WHERE NOT EXISTS (SELECT 1 FROM errands._tasks t
                                 WHERE t.identifier = n.identifier)) THEN
        -- A new task takes the limits set for its name or a matching pattern
        -- (35_flow_control.sql); the SHARE lock waits for a limit change in flight.
        LOCK TABLE errands._task_limits IN SHARE MODE;
        INSERT INTO errands._tasks (identifier, concurrency, rate_limit, rate_period, paused)
        SELECT n.identifier, v.concurrency, v.rate_limit, v.rate_period, v.paused
        FROM (SELECT DISTINCT n.identifier FROM unnest(v_tasks) n(identifier)) n
        CROSS JOIN LATERAL errands._task_limit_values(n.identifier) v
        WHERE NOT EXISTS (SELECT 1 FROM errands._tasks t WHERE t.identifier = n.identifier)
        ON CONFLICT DO NOTHING;
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(v_queues) n(queue_name)
               WHERE NOT EXISTS (SELECT 1 FROM errands._queues q
                                 WHERE q.queue_name = n.queue_name)) THEN
        LOCK TABLE errands._queue_limits IN SHARE MODE;
        INSERT INTO errands._queues (queue_name, concurrency, rate_limit, rate_period, paused)
        SELECT n.queue_name, v.concurrency, v.rate_limit, v.rate_period, v.paused
        FROM (SELECT DISTINCT n.queue_name FROM unnest(v_queues) n(queue_name)) n
        CROSS JOIN LATERAL errands._queue_limit_values(n.queue_name) v
        WHERE NOT EXISTS (SELECT 1 FROM errands._queues q WHERE q.queue_name = n.queue_name)
        ON CONFLICT DO NOTHING;
    END IF;
END
$function$;

-- FUNCTION errands._flags(text[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._flags(flags text[])
 RETURNS jsonb
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN cardinality(flags) > 0
                THEN (SELECT jsonb_object_agg(f, true) FROM unnest(flags) f) END
$function$;

-- FUNCTION errands._flow_cycle_step(integer,integer[],integer[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._flow_cycle_step(n integer, child integer[], parent integer[])
 RETURNS integer
 LANGUAGE plpgsql
 IMMUTABLE
AS $function$
DECLARE
    v_indeg integer[] := array_fill(0, ARRAY[n]);
    v_first integer[] := array_fill(0, ARRAY[n + 1]);
    v_kids integer[];
    v_queue integer[];
    v_head integer := 1;
    v_len integer := 0;
    v_p integer;
    v_c integer;
    v_seen integer[];
    i integer;
BEGIN
    -- Children grouped by parent: v_kids[v_first[p] .. v_first[p + 1] - 1].
    SELECT coalesce(array_agg(e.c ORDER BY e.p), '{}') INTO v_kids
    FROM unnest(child, parent) e(c, p);
    FOR i IN 1 .. coalesce(cardinality(child), 0) LOOP
        v_indeg[child[i]] := v_indeg[child[i]] + 1;
        v_first[parent[i] + 1] := v_first[parent[i] + 1] + 1;
    END LOOP;
    v_first[1] := 1;
    FOR i IN 2 .. n + 1 LOOP
        v_first[i] := v_first[i] + v_first[i - 1];
    END LOOP;
    v_queue := array_fill(0, ARRAY[n]);
    FOR i IN 1 .. n LOOP
        IF v_indeg[i] = 0 THEN
            v_len := v_len + 1;
            v_queue[v_len] := i;
        END IF;
    END LOOP;
    WHILE v_head <= v_len LOOP
        v_p := v_queue[v_head];
        v_head := v_head + 1;
        FOR i IN v_first[v_p] .. v_first[v_p + 1] - 1 LOOP
            v_c := v_kids[i];
            v_indeg[v_c] := v_indeg[v_c] - 1;
            IF v_indeg[v_c] = 0 THEN
                v_len := v_len + 1;
                v_queue[v_len] := v_c;
            END IF;
        END LOOP;
    END LOOP;
    IF v_len = n THEN
        RETURN NULL;
    END IF;
    -- Every step left has a dependency left: walk up them until a step repeats;
    -- that step is on a cycle.
    v_c := (SELECT min(i2) FROM generate_subscripts(v_indeg, 1) i2 WHERE v_indeg[i2] > 0);
    v_seen := '{}';
    WHILE NOT v_c = ANY(v_seen) LOOP
        v_seen := v_seen || v_c;
        v_c := (SELECT min(e.p) FROM unnest(child, parent) e(c, p)
                WHERE e.c = v_c AND v_indeg[e.p] > 0);
    END LOOP;
    RETURN v_c;
END
$function$;

-- FUNCTION errands._flow_shape_problem(jsonb)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._flow_shape_problem(steps jsonb)
 RETURNS text
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    v_problem text;
BEGIN
    SELECT p INTO v_problem FROM (
        SELECT s.ord, CASE
            WHEN jsonb_typeof(s.step) <> 'object' THEN
                format('flow step %s must be an object, got %s', s.ord, s.step)
            WHEN jsonb_typeof(s.step -> 'name') IS DISTINCT FROM 'string'
                 OR length(s.step ->> 'name') NOT BETWEEN 1 AND 128 THEN
                format('flow step %s needs a "name" of 1 to 128 characters, got %s', s.ord,
                       coalesce((s.step -> 'name')::text, 'none'))
            WHEN EXISTS (SELECT 1 FROM jsonb_object_keys(s.step) k
                         WHERE k <> ALL(errands._flow_step_fields())) THEN
                format('flow step %s: unknown field %s (expected %s)',
                       quote_literal(s.step ->> 'name'),
                       (SELECT quote_literal(k) FROM jsonb_object_keys(s.step) k
                        WHERE k <> ALL(errands._flow_step_fields()) ORDER BY k LIMIT 1),
                       array_to_string(errands._flow_step_fields(), ', '))
            WHEN jsonb_typeof(s.step -> 'task') IS DISTINCT FROM 'string' THEN
                format('flow step %s needs a "task" (a string), got %s',
                       quote_literal(s.step ->> 'name'), coalesce((s.step -> 'task')::text, 'none'))
            ELSE (SELECT format('flow step %s: %s must be %s, got %s',
                                quote_literal(s.step ->> 'name'), f.field, f.kind,
                                s.step -> f.field)
                  FROM (VALUES ('queue', 'string', 'a string'), ('run_at', 'string', 'a timestamp string'),
                               ('max_attempts', 'number', 'a number'), ('key', 'string', 'a string'),
                               ('priority', 'number', 'a number'), ('flags', 'array', 'an array of strings'),
                               ('timeout', 'string', 'an interval string'),
                               ('depends_on', 'array', 'an array of step names'),
                               ('run_anyway', 'boolean', 'true or false')) f(field, type, kind)
                  WHERE s.step ? f.field AND jsonb_typeof(s.step -> f.field) NOT IN (f.type, 'null')
                  LIMIT 1)
        END AS p
        FROM jsonb_array_elements(steps) WITH ORDINALITY s(step, ord)
    ) x WHERE p IS NOT NULL ORDER BY x.ord LIMIT 1;
    IF v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    SELECT format('flow step %s appears %s times (step names must be unique)',
                  quote_literal(n), count(*))
    INTO v_problem
    FROM jsonb_array_elements(steps) WITH ORDINALITY s(step, ord), LATERAL (SELECT s.step ->> 'name') x(n)
    GROUP BY n HAVING count(*) > 1 ORDER BY min(s.ord) LIMIT 1;
    IF v_problem IS NOT NULL THEN
        RETURN v_problem;
    END IF;
    SELECT CASE WHEN jsonb_typeof(d.value) <> 'string'
                THEN format('flow step %s: depends_on must hold step names, got %s',
                            quote_literal(s.step ->> 'name'), d.value)
                ELSE format('flow step %s depends on unknown step %s',
                            quote_literal(s.step ->> 'name'), quote_literal(d.value #>> '{}')) END
    INTO v_problem
    FROM jsonb_array_elements(steps) WITH ORDINALITY s(step, ord),
         jsonb_array_elements(CASE WHEN jsonb_typeof(s.step -> 'depends_on') = 'array'
                                   THEN s.step -> 'depends_on' ELSE '[]' END) WITH ORDINALITY d(value, dord)
    WHERE jsonb_typeof(d.value) <> 'string'
       OR NOT EXISTS (SELECT 1 FROM jsonb_array_elements(steps) o
                      WHERE o ->> 'name' = d.value #>> '{}')
    ORDER BY s.ord, d.dord LIMIT 1;
    RETURN v_problem;
END
$function$;

-- FUNCTION errands._flow_step_fields()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._flow_step_fields()
 RETURNS text[]
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT ARRAY['name', 'task', 'payload', 'queue', 'run_at', 'max_attempts', 'key',
                 'priority', 'flags', 'timeout', 'depends_on', 'run_anyway']
$function$;

-- FUNCTION errands._graphile_check(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._graphile_check(schema text)
 RETURNS void
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_table text;
    v_rel regclass;
    v_owner text;
BEGIN
    IF schema IS NULL THEN
        RAISE EXCEPTION 'errands: import_graphile: schema must not be NULL' USING ERRCODE = '22004';
    END IF;
    IF to_regnamespace(quote_ident(schema)) IS NULL THEN
        RAISE EXCEPTION 'errands: import_graphile: schema % does not exist', quote_literal(schema)
            USING ERRCODE = '3F000';
    END IF;
    FOREACH v_table IN ARRAY errands._graphile_tables() LOOP
        v_rel := to_regclass(format('%I.%I', schema, v_table));
        IF v_rel IS NULL THEN
            RAISE EXCEPTION 'errands: import_graphile: schema % has no table %: not a Graphile Worker 0.13 or later schema (start a Graphile Worker 0.16 or later once against it to migrate it)',
                quote_literal(schema), v_table
                USING ERRCODE = '42P01';
        END IF;
        SELECT r.rolname INTO v_owner
        FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner, pg_roles me
        WHERE c.oid = v_rel AND me.rolname = current_user
          AND c.relrowsecurity
          AND NOT (me.rolsuper OR me.rolbypassrls
                   OR (c.relowner = me.oid AND NOT c.relforcerowsecurity));
        IF FOUND THEN
            RAISE EXCEPTION 'errands: import_graphile: role % would not see the rows of % (row-level security): run the import as its owner % or a superuser',
                quote_ident(current_user), v_rel, quote_ident(v_owner)
                USING ERRCODE = '42501';
        END IF;
    END LOOP;
END
$function$;

-- FUNCTION errands._graphile_source(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._graphile_source(schema text)
 RETURNS text
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT format($q$
        SELECT j.id AS source_id, j.created_at, t.identifier, q.queue_name, j.payload,
               j.priority, j.run_at, j.attempts, j.max_attempts, j.last_error, j.key,
               j.revision, j.flags,
               CASE WHEN EXISTS (SELECT 1 FROM errands._graphile_imports m
                                 WHERE m.source_schema = %2$L AND m.source_id = j.id
                                   AND m.source_created_at = j.created_at)
                         THEN 'already_imported'
                    WHEN j.locked_at IS NOT NULL THEN 'running'
                    WHEN j.key IS NOT NULL
                         AND EXISTS (SELECT 1 FROM errands._jobs e WHERE e.key = j.key)
                         THEN 'key_conflict'
                    WHEN j.attempts >= j.max_attempts THEN 'failed'
                    WHEN j.attempts > 0 THEN 'retrying'
                    WHEN j.run_at > now() THEN 'scheduled'
                    ELSE 'pending' END AS outcome
        FROM %1$I._private_jobs j
        JOIN %1$I._private_tasks t ON t.id = j.task_id
        LEFT JOIN %1$I._private_job_queues q ON q.id = j.job_queue_id
    $q$, schema, schema)
$function$;

-- FUNCTION errands._graphile_tables()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._graphile_tables()
 RETURNS text[]
 LANGUAGE sql
 IMMUTABLE
AS $function$
    SELECT ARRAY['_private_jobs', '_private_tasks', '_private_job_queues',
                 '_private_known_crontabs']
$function$;

-- FUNCTION errands._heartbeat_timeout()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._heartbeat_timeout()
 RETURNS interval
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT interval '30 seconds' $function$;

-- FUNCTION errands._hide_payload(errands.jobs,json)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._hide_payload(j errands.jobs, payload json)
 RETURNS errands.jobs
 LANGUAGE plpgsql
 IMMUTABLE
AS $function$
BEGIN
    j.payload := _hide_payload.payload;
    j.last_error := NULL;
    j.errors := NULL; -- error messages, as last_error
    RETURN j;
END
$function$;

-- FUNCTION errands._history_on()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._history_on()
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT 'false'::boolean $function$;

-- FUNCTION errands._job_row(errands._jobs,text,text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._job_row(j errands._jobs, queue_name text, task_identifier text)
 RETURNS errands.jobs
 LANGUAGE sql
 STABLE
AS $function$
    SELECT ROW(j.id, queue_name, task_identifier, j.payload, j.priority::integer, j.run_at,
               j.attempts::integer, j.max_attempts::integer, j.last_error, j.created_at,
               j.updated_at, j.key, j.locked_at, j.locked_by, j.revision, j.flags, j.timeout,
               CASE WHEN j.locked_at IS NOT NULL THEN 'running'
                    WHEN j.waiting_for IS NOT NULL THEN 'waiting'
                    WHEN j.attempts >= j.max_attempts THEN 'failed'
                    WHEN j.attempts > 0 THEN 'retrying'
                    WHEN j.run_at > now() THEN 'scheduled'
                    ELSE 'pending' END,
               j.traceparent, j.errors)::errands.jobs
$function$;

-- FUNCTION errands._job_trigger_options(text[],oid,text,name,name)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._job_trigger_options(args text[], relid oid, level text, new_table name, old_table name)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_opt jsonb;
    v_arg text;
    v_name text;
    v_value text;
    v_int bigint;
    v_interval interval;
    v_parts text[];
    v_rest text;
    v_open int;
    v_close int;
    v_col text;
    v_statement boolean := level = 'STATEMENT';
    v_seen text[] := '{}';
    v_where text := format('errands.job_trigger on %s: ', relid::regclass);
BEGIN
    -- TG_ARGV counts from 0: renumber from 1.
    args := ARRAY(SELECT unnest(args));
    IF args IS NULL OR cardinality(args) = 0 OR length(args[1]) NOT BETWEEN 1 AND 128
       OR strpos(args[1], '=') > 0 THEN
        RAISE EXCEPTION '%the first argument must be the task identifier (1 to 128 characters, no =), got %',
            v_where, errands._describe(args[1]) USING ERRCODE = '22023';
    END IF;
    v_opt := jsonb_build_object('identifier', args[1], 'batch', false);
    FOREACH v_arg IN ARRAY args[2:] LOOP
        IF v_arg IS NULL OR strpos(v_arg, '=') = 0 THEN
            RAISE EXCEPTION '%option % is not name=value', v_where, errands._describe(v_arg)
                USING ERRCODE = '22023';
        END IF;
        v_name := btrim(split_part(v_arg, '=', 1));
        v_value := substr(v_arg, strpos(v_arg, '=') + 1);
        IF v_name = ANY (v_seen) THEN
            RAISE EXCEPTION '%option % is given twice', v_where, v_name USING ERRCODE = '22023';
        END IF;
        v_seen := v_seen || v_name;
        CASE v_name
        WHEN 'queue_name' THEN
            IF length(v_value) NOT BETWEEN 1 AND 128 THEN
                RAISE EXCEPTION '%queue_name must be 1 to 128 characters, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object('queue_name', v_value);
        WHEN 'priority', 'max_attempts' THEN
            v_int := CASE WHEN v_value ~ '^\s*[+-]?[0-9]{1,9}\s*$' THEN v_value::bigint END;
            IF v_int IS NULL
               OR v_name = 'priority' AND v_int NOT BETWEEN -32768 AND 32767
               OR v_name = 'max_attempts' AND v_int NOT BETWEEN 1 AND 32767 THEN
                RAISE EXCEPTION '% must be a whole number %, got %', v_where || v_name,
                    CASE v_name WHEN 'priority' THEN 'between -32768 and 32767'
                                ELSE 'between 1 and 32767' END,
                    errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object(v_name, v_int);
        WHEN 'run_in', 'timeout' THEN
            BEGIN
                v_interval := v_value::interval;
            EXCEPTION WHEN OTHERS THEN
                v_interval := NULL;
            END;
            IF v_interval IS NULL OR v_name = 'run_in' AND v_interval < interval '0'
               OR v_name = 'timeout' AND v_interval <= interval '0' THEN
                RAISE EXCEPTION '% must be % interval, got %', v_where || v_name,
                    CASE v_name WHEN 'run_in' THEN 'a non-negative' ELSE 'a positive' END,
                    errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object(v_name, v_interval::text);
        WHEN 'flags' THEN
            v_parts := ARRAY(SELECT btrim(f) FROM unnest(string_to_array(v_value, ',')) f);
            IF cardinality(v_parts) = 0 OR '' = ANY (v_parts) THEN
                RAISE EXCEPTION '%flags must be names separated by commas, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object('flags', to_jsonb(v_parts));
        WHEN 'job_key_mode' THEN
            IF v_value NOT IN ('replace', 'preserve_run_at', 'unsafe_dedupe') THEN
                RAISE EXCEPTION '%job_key_mode must be replace, preserve_run_at or unsafe_dedupe, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object('job_key_mode', v_value);
        WHEN 'batch' THEN
            IF lower(v_value) NOT IN ('true', 'false', 'on', 'off') THEN
                RAISE EXCEPTION '%batch must be true or false, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_opt := v_opt || jsonb_build_object('batch', lower(v_value) IN ('true', 'on'));
        WHEN 'job_key' THEN
            -- Parts alternate literal text and column names: 'user:{id}' is
            -- {"user:", "id", ""}.
            IF length(v_value) NOT BETWEEN 1 AND 512 THEN
                RAISE EXCEPTION '%job_key must be 1 to 512 characters, got %',
                    v_where, errands._describe(v_value) USING ERRCODE = '22023';
            END IF;
            v_parts := '{}';
            v_rest := v_value;
            LOOP
                v_open := strpos(v_rest, '{');
                v_close := strpos(v_rest, '}');
                EXIT WHEN v_open = 0 AND v_close = 0;
                IF v_open = 0 OR v_close > 0 AND v_close < v_open THEN
                    RAISE EXCEPTION '%job_key % has a } without its {',
                        v_where, errands._describe(v_value) USING ERRCODE = '22023';
                END IF;
                v_close := strpos(substr(v_rest, v_open + 1), '}');
                v_col := substr(v_rest, v_open + 1, greatest(v_close - 1, 0));
                IF v_close = 0 OR v_col = '' OR strpos(v_col, '{') > 0 THEN
                    RAISE EXCEPTION '%job_key % needs {column} with a column name between the braces',
                        v_where, errands._describe(v_value) USING ERRCODE = '22023';
                END IF;
                IF NOT EXISTS (SELECT 1 FROM pg_attribute a
                               WHERE a.attrelid = relid AND a.attname = v_col
                                 AND a.attnum > 0 AND NOT a.attisdropped) THEN
                    RAISE EXCEPTION '%job_key % names column %, which % does not have',
                        v_where, errands._describe(v_value), quote_ident(v_col), relid::regclass
                        USING ERRCODE = '22023';
                END IF;
                v_parts := v_parts || ARRAY[left(v_rest, v_open - 1), v_col];
                v_rest := substr(v_rest, v_open + length(v_col) + 2);
            END LOOP;
            v_opt := v_opt || jsonb_build_object('job_key', v_value,
                                                 'key_parts', to_jsonb(v_parts || v_rest));
        ELSE
            RAISE EXCEPTION '%unknown option %; expected queue_name, priority, max_attempts, run_in, timeout, flags, job_key, job_key_mode or batch',
                v_where, errands._describe(v_name) USING ERRCODE = '22023';
        END CASE;
    END LOOP;

    IF v_opt ? 'job_key_mode' AND NOT v_opt ? 'job_key' THEN
        RAISE EXCEPTION '%job_key_mode needs a job_key', v_where USING ERRCODE = '22023';
    END IF;
    IF NOT v_statement THEN
        IF (v_opt ->> 'batch')::boolean THEN
            RAISE EXCEPTION '%batch=true needs a FOR EACH STATEMENT trigger', v_where
                USING ERRCODE = '22023';
        END IF;
    ELSIF (v_opt ->> 'batch')::boolean THEN
        IF jsonb_array_length(v_opt -> 'key_parts') > 1 THEN
            RAISE EXCEPTION '%job_key % of a batch=true trigger cannot name a column (one job holds many rows)',
                v_where, errands._describe(v_opt ->> 'job_key') USING ERRCODE = '22023';
        END IF;
    ELSE
        -- One job per row: rows come from the transition table; add_jobs
        -- has neither timeout nor unsafe_dedupe.
        IF new_table IS NULL AND old_table IS NULL THEN
            RAISE EXCEPTION '%a FOR EACH STATEMENT trigger needs REFERENCING NEW TABLE (or OLD TABLE for DELETE) to add one job per row, or batch=true',
                v_where USING ERRCODE = '22023';
        END IF;
        -- add_jobs (one job per row) has no timeout; batch=true uses add_job.
        IF v_opt ? 'timeout' THEN
            RAISE EXCEPTION '%timeout needs a FOR EACH ROW trigger or batch=true', v_where
                USING ERRCODE = '22023';
        END IF;
        IF v_opt ->> 'job_key_mode' = 'unsafe_dedupe' THEN
            RAISE EXCEPTION '%job_key_mode unsafe_dedupe needs a FOR EACH ROW trigger or batch=true',
                v_where USING ERRCODE = '22023';
        END IF;
    END IF;
    RETURN v_opt;
END
$function$;

-- FUNCTION errands._job_view(errands._jobs)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._job_view(j errands._jobs)
 RETURNS errands.jobs
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    RETURN errands._job_row(
        j,
        (SELECT q.queue_name FROM errands._queues q WHERE q.id = j.job_queue_id),
        (SELECT t.identifier FROM errands._tasks t WHERE t.id = j.task_id));
END
$function$;

-- FUNCTION errands._jobs_estimate()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._jobs_estimate()
 RETURNS bigint
 LANGUAGE sql
 STABLE
AS $function$
    SELECT CASE WHEN c.relpages > 0 AND c.reltuples >= 0
                THEN (c.reltuples / c.relpages
                      * (pg_catalog.pg_relation_size(c.oid)
                         / pg_catalog.current_setting('block_size')::bigint))::bigint
                ELSE -1 END
    FROM pg_catalog.pg_class c WHERE c.oid = 'errands._jobs'::regclass
$function$;

-- FUNCTION errands._jobs_finished(bigint[])
-- ACL: postgres=X/postgres
-- comment: Private hook of every path that finishes jobs (completion, failure for good,
--          cancellation): call it once, after the statement that finished them, with their
--          ids. Notifies "errands:finished" with the ids (comma-separated) of those a waiter
--          watches (errands.watch_jobs); does nothing for the others. The finishing statement
--          itself keeps a watched job's finished row whatever its retention (condition
--          "OR j.watched" next to the retention test).
CREATE OR REPLACE FUNCTION errands._jobs_finished(job_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    v_watched bigint[];
BEGIN
    SELECT array_agg(w.job_id ORDER BY w.job_id) INTO v_watched
    FROM errands._job_waiters w WHERE w.job_id = ANY(_jobs_finished.job_ids);
    -- A NOTIFY payload holds under 8000 bytes: 300 ids of up to 20 characters each.
    WHILE v_watched IS NOT NULL AND cardinality(v_watched) > 0 LOOP
        PERFORM pg_notify('errands:finished', array_to_string(v_watched[1:300], ','));
        v_watched := v_watched[301:];
    END LOOP;
END
$function$;

-- FUNCTION errands._limit_matches(text,text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._limit_matches(pattern text, name text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN right(pattern, 1) = '*'
                THEN starts_with(name, left(pattern, -1))
                ELSE name = pattern END
$function$;

-- FUNCTION errands._limit_rank(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._limit_rank(pattern text)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN right(pattern, 1) = '*' THEN length(pattern) ELSE 1000000 END
$function$;

-- FUNCTION errands._locked_jobs_by_worker()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._locked_jobs_by_worker()
 RETURNS TABLE(locked_by text, ids bigint[])
 LANGUAGE plpgsql
 STABLE
AS $function$
BEGIN
    -- A locked job is never available: the partial index jobs_unavailable holds
    -- it, so this reads the running and failed jobs, not the whole table.
    RETURN QUERY SELECT j.locked_by, array_agg(j.id ORDER BY j.id)
                 FROM errands._jobs j WHERE j.locked_by IS NOT NULL AND NOT j.is_available
                 GROUP BY j.locked_by;
END
$function$;

-- FUNCTION errands._max_payload_bytes()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._max_payload_bytes()
 RETURNS bigint
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT '1048576'::bigint $function$;

-- FUNCTION errands._notify()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._notify()
 RETURNS void
 LANGUAGE sql
AS $function$
    -- A constant payload: PostgreSQL folds identical notifications of one
    -- transaction into one, so a statement that adds many jobs wakes
    -- listeners once.
    SELECT pg_notify('errands:jobs', '')
$function$;

-- FUNCTION errands._queue_head(integer)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._queue_head(queue_id integer, OUT priority smallint, OUT run_at timestamp with time zone, OUT id bigint)
 RETURNS record
 LANGUAGE plpgsql
 STABLE
 SET plan_cache_mode TO 'force_generic_plan'
 SET jit TO 'off'
AS $function$
BEGIN
    -- The queue's first job in (priority, run_at, id) order, when it is due, is
    -- its best due job: one index probe (jobs_fetch_queued), the usual case.
    SELECT j.priority, j.run_at, j.id INTO _queue_head.priority, _queue_head.run_at, _queue_head.id
    FROM errands._jobs j
    WHERE j.job_queue_id = _queue_head.queue_id AND j.is_available
    ORDER BY j.priority, j.run_at, j.id
    LIMIT 1;
    IF _queue_head.id IS NULL OR _queue_head.run_at <= now() THEN
        RETURN;
    END IF;
    -- Otherwise the first job of each distinct priority (one index probe per
    -- priority); of those, the best due one, else the earliest.
    WITH RECURSIVE prio(p) AS (
        SELECT min(j.priority) FROM errands._jobs j
        WHERE j.job_queue_id = _queue_head.queue_id AND j.is_available
        UNION ALL
        SELECT (SELECT min(j.priority) FROM errands._jobs j
                WHERE j.job_queue_id = _queue_head.queue_id AND j.is_available
                  AND j.priority > prio.p)
        FROM prio WHERE prio.p IS NOT NULL
    )
    SELECT e.priority, e.run_at, e.id INTO _queue_head.priority, _queue_head.run_at, _queue_head.id
    FROM prio CROSS JOIN LATERAL (
        SELECT j.priority, j.run_at, j.id FROM errands._jobs j
        WHERE j.job_queue_id = _queue_head.queue_id AND j.is_available AND j.priority = prio.p
        ORDER BY j.run_at, j.id
        LIMIT 1
    ) e
    ORDER BY e.run_at > now(), CASE WHEN e.run_at > now() THEN e.run_at END,
             e.priority, e.run_at, e.id
    LIMIT 1;
END
$function$;

-- FUNCTION errands._queue_limit_values(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._queue_limit_values(name text, OUT concurrency integer, OUT rate_limit integer, OUT rate_period interval, OUT paused boolean)
 RETURNS record
 LANGUAGE sql
 STABLE
AS $function$
    SELECT coalesce((SELECT l.concurrency FROM errands._queue_limits l
                     WHERE l.concurrency IS NOT NULL AND errands._limit_matches(l.pattern, name)
                     ORDER BY errands._limit_rank(l.pattern) DESC LIMIT 1), 1),
           r.rate_limit, r.rate_period,
           EXISTS (SELECT 1 FROM errands._queue_limits l
                   WHERE l.paused AND errands._limit_matches(l.pattern, name))
    FROM (SELECT NULL) one
    LEFT JOIN LATERAL (SELECT l.rate_limit, l.rate_period FROM errands._queue_limits l
                       WHERE l.rate_limit IS NOT NULL AND errands._limit_matches(l.pattern, name)
                       ORDER BY errands._limit_rank(l.pattern) DESC LIMIT 1) r ON true
$function$;

-- FUNCTION errands._rate_room(timestamp with time zone[],integer,interval,timestamp with time zone)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._rate_room(starts timestamp with time zone[], rate_limit integer, rate_period interval, at timestamp with time zone)
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT CASE WHEN rate_limit IS NULL THEN NULL
                ELSE greatest(0, rate_limit - (SELECT count(*)::integer FROM unnest(starts) s
                                               WHERE s > at - rate_period)) END
$function$;

-- FUNCTION errands._record_starts(timestamp with time zone[],bigint,integer,timestamp with time zone)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._record_starts(starts timestamp with time zone[], n bigint, keep integer, at timestamp with time zone)
 RETURNS timestamp with time zone[]
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT array_agg(s.t ORDER BY s.t) FROM (
        SELECT a.t FROM (SELECT unnest(starts) UNION ALL
                         SELECT at FROM generate_series(1, n)) a(t)
        ORDER BY a.t DESC LIMIT keep
    ) s
$function$;

-- FUNCTION errands._release_slots(integer[],integer[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._release_slots(queue_ids integer[], task_ids integer[])
 RETURNS void
 LANGUAGE plpgsql
AS $function$
DECLARE
    v_wake boolean;
BEGIN
    -- Several queues: their rows in id order first, as add_jobs locks them (queue
    -- heads, 32_queue_heads.sql), so that the two cannot deadlock.
    IF cardinality(queue_ids) > 1 THEN
        PERFORM FROM errands._queues q WHERE q.id = ANY(queue_ids)
        ORDER BY q.id FOR NO KEY UPDATE;
    END IF;
    WITH freed AS (
        UPDATE errands._queues q
        SET running = greatest(0, q.running - r.n),
            locked_at = CASE WHEN q.running - r.n >= q.concurrency THEN q.locked_at END,
            locked_by = CASE WHEN q.running - r.n >= q.concurrency THEN q.locked_by END
        FROM (SELECT u.id, count(*)::integer AS n FROM unnest(queue_ids) u(id)
              WHERE u.id IS NOT NULL GROUP BY 1) r
        WHERE q.id = r.id
        RETURNING q.concurrency > 1 AND q.running + r.n >= q.concurrency AS was_full
    )
    SELECT coalesce(bool_or(freed.was_full), false) INTO v_wake FROM freed;
    IF errands._task_limits_on() THEN
        -- Otherwise no task has a concurrency limit: nothing counts task slots.
        WITH freed AS (
            UPDATE errands._tasks t SET running = greatest(0, t.running - r.n)
            FROM (SELECT u.id, count(*)::integer AS n FROM unnest(task_ids) u(id)
                  WHERE u.id IS NOT NULL GROUP BY 1) r
            WHERE t.id = r.id AND t.concurrency IS NOT NULL
            RETURNING t.id
        )
        SELECT v_wake OR EXISTS (SELECT 1 FROM freed) INTO v_wake;
    END IF;
    IF v_wake THEN
        PERFORM errands._notify();  -- folded into one per transaction
    END IF;
END
$function$;

-- FUNCTION errands._release_workers(text[],text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._release_workers(worker_ids text[], reason text)
 RETURNS integer
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_count integer;
BEGIN
    WITH jobs AS (
        UPDATE errands._jobs j
        SET locked_at = NULL,
            locked_by = NULL,
            updated_at = now(),
            last_error = format('errands: worker %s %s while running this job (locked since %s)',
                                j.locked_by, reason, j.locked_at),
            errors = errands._add_error(j.errors, j.attempts, j.locked_at, j.locked_by,
                format('errands: worker %s %s while running this job (locked since %s)',
                       j.locked_by, reason, j.locked_at))
        WHERE j.locked_at IS NOT NULL AND j.locked_by = ANY(worker_ids)
          AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots.
    ), slots AS (
        SELECT errands._release_slots(array_agg(jobs.job_queue_id), array_agg(jobs.task_id))
        FROM jobs
    )
    SELECT count(*)::integer INTO v_count FROM jobs, slots;
    -- A job whose cancellation was requested (even while the update above waited
    -- for its row: it rechecks cancel_reason) ends cancelled, never runs again.
    PERFORM errands._end_requested(ARRAY(
        SELECT j.id FROM errands._jobs j
        WHERE j.locked_by = ANY(worker_ids) AND j.cancel_reason IS NOT NULL));
    IF v_count > 0 THEN
        PERFORM pg_notify('errands:jobs', '');
    END IF;
    RETURN v_count;
END
$function$;

-- FUNCTION errands._request_cancel(bigint[],text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._request_cancel(job_ids bigint[], reason text)
 RETURNS bigint[]
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_ids bigint[] := '{}';
    v_row record;
BEGIN
    FOR v_row IN
        UPDATE errands._jobs j
        SET cancel_reason = coalesce(j.cancel_reason, _request_cancel.reason), updated_at = now()
        WHERE j.id = ANY(_request_cancel.job_ids) AND j.locked_at IS NOT NULL
        RETURNING j.id, j.locked_by
    LOOP
        v_ids := v_ids || v_row.id;
        PERFORM pg_notify('errands:cancel',
                          json_build_object('job_id', v_row.id, 'worker_id', v_row.locked_by)::text);
    END LOOP;
    RETURN v_ids;
END
$function$;

-- FUNCTION errands._rescue_grace()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._rescue_grace()
 RETURNS interval
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT interval '1.5 seconds' $function$;

-- FUNCTION errands._resolve_dependencies(bigint[],boolean)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._resolve_dependencies(dep_ids bigint[], only_run_anyway boolean)
 RETURNS void
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
 SET enable_seqscan TO 'off'
AS $function$
DECLARE
    v_now_runnable boolean;
    v_jobs bigint[];
    v_counts integer[];
BEGIN
    -- Arrays between the statements (not one statement of CTEs): a join with a
    -- CTE's rows was planned as a scan of errands._jobs.
    WITH r AS (
        UPDATE errands._job_dependencies d SET resolved = true
        WHERE d.depends_on = ANY(dep_ids) AND NOT d.resolved
          AND (d.run_anyway OR NOT only_run_anyway)
        RETURNING d.job_id
    )
    SELECT array_agg(c.job_id ORDER BY c.job_id), array_agg(c.n ORDER BY c.job_id)
    INTO v_jobs, v_counts
    FROM (SELECT r.job_id, count(*)::integer AS n FROM r GROUP BY r.job_id) c;
    IF v_jobs IS NULL THEN
        RETURN;
    END IF;
    -- Dependents are updated in id order: two transactions releasing
    -- overlapping sets of jobs take the row locks in one order (no deadlock).
    WITH released AS (
        UPDATE errands._jobs j
        SET waiting_for = nullif(j.waiting_for - v_counts[array_position(v_jobs, j.id)], 0),
            updated_at = now()
        WHERE j.id = ANY(v_jobs) AND j.waiting_for IS NOT NULL
        RETURNING j.waiting_for, j.run_at
    )
    SELECT bool_or(released.waiting_for IS NULL AND released.run_at <= now())
    INTO v_now_runnable FROM released;
    IF v_now_runnable THEN
        PERFORM errands._notify();
    END IF;
END
$function$;

-- FUNCTION errands._retention()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._retention()
 RETURNS interval
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT '00:00:00'::interval $function$;

-- FUNCTION errands._set_limits(text,text,boolean,integer,integer,interval,boolean)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._set_limits(kind text, name text, set_limits boolean, concurrency integer, rate_limit integer, rate_period interval, paused boolean)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
    IF kind = 'queue' THEN
        PERFORM errands._check_limit('queue_name', name, concurrency, rate_limit, rate_period);
        -- Serialises limit changes with the creation of new queues (which
        -- resolves their limits under a SHARE lock of this table).
        LOCK TABLE errands._queue_limits IN SHARE ROW EXCLUSIVE MODE;
        INSERT INTO errands._queue_limits AS l (pattern, concurrency, rate_limit, rate_period, paused)
        VALUES (name, _set_limits.concurrency, _set_limits.rate_limit, _set_limits.rate_period,
                coalesce(_set_limits.paused, false))
        ON CONFLICT (pattern) DO UPDATE
        SET concurrency = CASE WHEN set_limits THEN EXCLUDED.concurrency ELSE l.concurrency END,
            rate_limit = CASE WHEN set_limits THEN EXCLUDED.rate_limit ELSE l.rate_limit END,
            rate_period = CASE WHEN set_limits THEN EXCLUDED.rate_period ELSE l.rate_period END,
            paused = coalesce(_set_limits.paused, l.paused),
            updated_at = now();
        DELETE FROM errands._queue_limits l
        WHERE l.pattern = name AND l.concurrency IS NULL AND l.rate_limit IS NULL AND NOT l.paused;
        PERFORM errands._apply_queue_limits(name);
    ELSE
        PERFORM errands._check_limit('task_identifier', name, concurrency, rate_limit, rate_period);
        LOCK TABLE errands._task_limits IN SHARE ROW EXCLUSIVE MODE;
        -- Waits for the fetches and outcomes in flight (all of them write
        -- errands._jobs) and holds new ones until commit: the recount is exact.
        LOCK TABLE errands._jobs IN EXCLUSIVE MODE;
        INSERT INTO errands._task_limits AS l (pattern, concurrency, rate_limit, rate_period, paused)
        VALUES (name, _set_limits.concurrency, _set_limits.rate_limit, _set_limits.rate_period,
                coalesce(_set_limits.paused, false))
        ON CONFLICT (pattern) DO UPDATE
        SET concurrency = CASE WHEN set_limits THEN EXCLUDED.concurrency ELSE l.concurrency END,
            rate_limit = CASE WHEN set_limits THEN EXCLUDED.rate_limit ELSE l.rate_limit END,
            rate_period = CASE WHEN set_limits THEN EXCLUDED.rate_period ELSE l.rate_period END,
            paused = coalesce(_set_limits.paused, l.paused),
            updated_at = now();
        DELETE FROM errands._task_limits l
        WHERE l.pattern = name AND l.concurrency IS NULL AND l.rate_limit IS NULL AND NOT l.paused;
        PERFORM errands._apply_task_limits(name);
    END IF;
    -- A raised limit or a resume frees work at once, not at the next poll.
    PERFORM errands._notify();
END
$function$;

-- FUNCTION errands._spec_is_bad(text,text,text,integer,integer,text[],json,bigint)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._spec_is_bad(identifier text, queue_name text, job_key text, max_attempts integer, priority integer, flags text[], payload json, max_payload_bytes bigint)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$
    SELECT identifier IS NULL
        OR length(identifier) NOT BETWEEN 1 AND 128
        OR length(queue_name) NOT BETWEEN 1 AND 128
        OR length(job_key) NOT BETWEEN 1 AND 512
        OR max_attempts NOT BETWEEN 1 AND 32767
        OR priority NOT BETWEEN -32768 AND 32767
        OR array_position(flags, NULL) IS NOT NULL
        OR octet_length(payload::text) > max_payload_bytes
$function$;

-- FUNCTION errands._stale_lock_age()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._stale_lock_age()
 RETURNS interval
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT interval '4 hours' $function$;

-- FUNCTION errands._task_limit_values(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._task_limit_values(name text, OUT concurrency integer, OUT rate_limit integer, OUT rate_period interval, OUT paused boolean)
 RETURNS record
 LANGUAGE sql
 STABLE
AS $function$
    SELECT (SELECT l.concurrency FROM errands._task_limits l
            WHERE l.concurrency IS NOT NULL AND errands._limit_matches(l.pattern, name)
            ORDER BY errands._limit_rank(l.pattern) DESC LIMIT 1),
           r.rate_limit, r.rate_period,
           EXISTS (SELECT 1 FROM errands._task_limits l
                   WHERE l.paused AND errands._limit_matches(l.pattern, name))
    FROM (SELECT NULL) one
    LEFT JOIN LATERAL (SELECT l.rate_limit, l.rate_period FROM errands._task_limits l
                       WHERE l.rate_limit IS NOT NULL AND errands._limit_matches(l.pattern, name)
                       ORDER BY errands._limit_rank(l.pattern) DESC LIMIT 1) r ON true
$function$;

-- FUNCTION errands._task_limits_on()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._task_limits_on()
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE
AS $function$ SELECT 'false'::boolean $function$;

-- FUNCTION errands._track_queue_head()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._track_queue_head()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
DECLARE
    v_head bigint;
    v_new errands._queues%ROWTYPE;
BEGIN
    -- An available job leaves: when it was the head, choose the head again.
    IF TG_OP <> 'INSERT' AND OLD.job_queue_id IS NOT NULL AND OLD.is_available THEN
        SELECT q.head_id INTO v_head FROM errands._queues q
        WHERE q.id = OLD.job_queue_id FOR UPDATE;
        IF v_head = OLD.id THEN
            SELECT h.priority, h.run_at, h.id
            INTO v_new.head_priority, v_new.head_run_at, v_new.head_id
            FROM errands._queue_head(OLD.job_queue_id) h;
            UPDATE errands._queues q
            SET head_priority = v_new.head_priority, head_run_at = v_new.head_run_at,
                head_id = v_new.head_id
            WHERE q.id = OLD.job_queue_id;
        END IF;
    END IF;
    -- An available job arrives: it becomes the head when its key is better
    -- (due before future; due ones by priority, run_at, id; future ones by
    -- run_at first). The comparison is in the UPDATE's WHERE: re-checked
    -- against the newest row when another comparison updated it meanwhile.
    IF TG_OP <> 'DELETE' AND NEW.job_queue_id IS NOT NULL AND NEW.is_available THEN
        PERFORM FROM errands._queues q WHERE q.id = NEW.job_queue_id FOR KEY SHARE;
        UPDATE errands._queues q
        SET head_priority = NEW.priority, head_run_at = NEW.run_at, head_id = NEW.id
        WHERE q.id = NEW.job_queue_id
          AND (q.head_id IS NULL
               OR (NEW.run_at > now(),
                   CASE WHEN NEW.run_at > now() THEN NEW.run_at ELSE '-infinity' END,
                   NEW.priority, NEW.run_at, NEW.id)
                < (q.head_run_at > now(),
                   CASE WHEN q.head_run_at > now() THEN q.head_run_at ELSE '-infinity' END,
                   q.head_priority, q.head_run_at, q.head_id));
    END IF;
    RETURN NULL;
END
$function$;

-- FUNCTION errands._unavailable_counts()
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._unavailable_counts()
 RETURNS TABLE(state text, task_identifier text, queue_name text, jobs bigint)
 LANGUAGE sql
 STABLE
AS $function$
    SELECT g.state, t.identifier, q.queue_name, g.n
    FROM (SELECT CASE WHEN j.locked_at IS NOT NULL THEN 'running'
                      WHEN j.waiting_for IS NOT NULL THEN 'waiting'
                      ELSE 'failed' END AS state,
                 j.task_id, j.job_queue_id, count(*) AS n
          FROM errands._jobs j
          WHERE NOT j.is_available
          GROUP BY 1, 2, 3) g
    JOIN errands._tasks t ON t.id = g.task_id
    LEFT JOIN errands._queues q ON q.id = g.job_queue_id
$function$;

-- FUNCTION errands._validate_specs(errands.job_spec[])
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._validate_specs(specs errands.job_spec[])
 RETURNS void
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
    s record;
    v_where text;
    v_problem text;
    v_limit bigint := errands._max_payload_bytes();
BEGIN
    IF v_limit <= 0 THEN
        v_limit := NULL;
    END IF;
    SELECT u.*, u.ordinality AS ord,
           CASE WHEN v_limit IS NOT NULL THEN octet_length(u.payload::text) END AS payload_bytes
    INTO s
    FROM unnest(specs) WITH ORDINALITY u
    WHERE errands._spec_is_bad(u.identifier, u.queue_name, u.job_key, u.max_attempts,
                               u.priority, u.flags, u.payload, v_limit)
    ORDER BY u.ordinality
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_where := CASE WHEN cardinality(specs) > 1 THEN format(' (spec %s)', s.ord) ELSE '' END;
    v_problem := CASE
        WHEN s.identifier IS NULL THEN 'identifier must not be NULL'
        WHEN length(s.identifier) NOT BETWEEN 1 AND 128 THEN
            format('identifier must be 1 to 128 characters, got %s', errands._describe(s.identifier))
        WHEN length(s.queue_name) NOT BETWEEN 1 AND 128 THEN
            format('queue_name must be 1 to 128 characters, got %s', errands._describe(s.queue_name))
        WHEN length(s.job_key) NOT BETWEEN 1 AND 512 THEN
            format('job_key must be 1 to 512 characters, got %s', errands._describe(s.job_key))
        WHEN s.max_attempts NOT BETWEEN 1 AND 32767 THEN
            format('max_attempts must be between 1 and 32767, got %s', s.max_attempts)
        WHEN s.priority NOT BETWEEN -32768 AND 32767 THEN
            format('priority must be between -32768 and 32767, got %s', s.priority)
        WHEN array_position(s.flags, NULL) IS NOT NULL THEN
            format('flags must not contain NULL, got %s', s.flags)
        ELSE format('payload must be at most %s bytes (errands.set_max_payload_bytes), got %s bytes',
                    v_limit, s.payload_bytes)
    END;
    RAISE EXCEPTION 'errands: %', v_problem || v_where USING ERRCODE = '22023';
END
$function$;

-- FUNCTION errands._worker_lock_held(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._worker_lock_held(worker_id text)
 RETURNS boolean
 LANGUAGE sql
 STABLE STRICT
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks l,
             LATERAL (SELECT errands._worker_lock_key(worker_id) AS k) key
        WHERE l.locktype = 'advisory'
          AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                            WHERE d.datname = pg_catalog.current_database())
          AND l.classid = ((key.k >> 32) & 4294967295)::oid
          AND l.objid = (key.k & 4294967295)::oid
          AND l.objsubid = 1
          AND l.granted
    )
$function$;

-- FUNCTION errands._worker_lock_key(text)
-- ACL: postgres=X/postgres
CREATE OR REPLACE FUNCTION errands._worker_lock_key(worker_id text)
 RETURNS bigint
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
AS $function$
    SELECT pg_catalog.hashtextextended(worker_id, 0)
$function$;

-- FUNCTION errands.add_flow(jsonb)
-- ACL: postgres=X/postgres
-- comment: Adds a graph of jobs in one transaction: {"steps": [{"name": ..., "task": ...,
--          "payload", "queue", "run_at", "max_attempts", "key", "priority", "flags",
--          "timeout", "depends_on": [step names], "run_anyway": bool}, ...], "parent": job
--          id}. A step waits (state waiting) until every step it depends on has completed.
--          run_anyway: the step also goes on when a dependency fails for good or is
--          cancelled. parent (helpers.add_flow): a running job; the steps without
--          dependencies also wait for it to complete its current try, and are cancelled if
--          that try fails. Returns each step's flow id, name and job id, in step order. An
--          empty flow, a bad field, a duplicate or unknown step name, a cycle or a key
--          already in use are refused (22023, naming the step), nothing written.
CREATE OR REPLACE FUNCTION errands.add_flow(flow jsonb)
 RETURNS TABLE(flow_id bigint, step text, job_id bigint)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET jit TO 'off'
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_steps jsonb := add_flow.flow -> 'steps';
    v_n integer;
    v_problem text;
    v_child integer[];
    v_parent integer[];
    v_cycle integer;
    v_parent_job bigint;
    v_parent_try smallint;
    v_ids bigint[];
    v_job errands.jobs;
    v_flow bigint;
    v_limit bigint;
    s record;
BEGIN
    IF jsonb_typeof(add_flow.flow) IS DISTINCT FROM 'object'
       OR jsonb_typeof(v_steps) IS DISTINCT FROM 'array' OR jsonb_array_length(v_steps) = 0 THEN
        RAISE EXCEPTION 'errands: a flow must be an object with a non-empty "steps" array, got %',
            coalesce(left(add_flow.flow::text, 200), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_object_keys(add_flow.flow) k WHERE k NOT IN ('steps', 'parent')) THEN
        RAISE EXCEPTION 'errands: unknown flow field %; expected steps, parent',
            (SELECT quote_literal(k) FROM jsonb_object_keys(add_flow.flow) k
             WHERE k NOT IN ('steps', 'parent') ORDER BY k LIMIT 1) USING ERRCODE = '22023';
    END IF;
    v_n := jsonb_array_length(v_steps);
    v_problem := errands._flow_shape_problem(v_steps);
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'errands: %', v_problem USING ERRCODE = '22023';
    END IF;
    SELECT array_agg(st.ord::integer), array_agg(o.ord::integer)
    INTO v_child, v_parent
    FROM jsonb_array_elements(v_steps) WITH ORDINALITY st(step, ord),
         jsonb_array_elements_text(coalesce(nullif(st.step -> 'depends_on', 'null'), '[]')) d(name)
    JOIN jsonb_array_elements(v_steps) WITH ORDINALITY o(step, ord) ON o.step ->> 'name' = d.name;
    v_cycle := errands._flow_cycle_step(v_n, v_child, v_parent);
    IF v_cycle IS NOT NULL THEN
        RAISE EXCEPTION 'errands: flow step % is on a dependency cycle',
            quote_literal(v_steps -> (v_cycle - 1) ->> 'name') USING ERRCODE = '22023';
    END IF;
    -- The job-level checks of add_job, up front, so that nothing is written
    -- when one step is bad.
    v_limit := errands._max_payload_bytes();
    FOR s IN
        SELECT x.ord, x.step ->> 'name' AS name,
               ROW(x.step ->> 'task', (x.step -> 'payload')::json, x.step ->> 'queue',
                   (x.step ->> 'run_at')::timestamptz, (x.step ->> 'max_attempts')::integer,
                   x.step ->> 'key', (x.step ->> 'priority')::integer,
                   ARRAY(SELECT jsonb_array_elements_text(coalesce(nullif(x.step -> 'flags', 'null'), '[]')))
               )::errands.job_spec AS spec,
               (x.step ->> 'timeout')::interval AS timeout
        FROM jsonb_array_elements(v_steps) WITH ORDINALITY x(step, ord)
        ORDER BY x.ord
    LOOP
        IF errands._spec_is_bad((s.spec).identifier, (s.spec).queue_name, (s.spec).job_key,
                                (s.spec).max_attempts, (s.spec).priority, (s.spec).flags,
                                (s.spec).payload, CASE WHEN v_limit > 0 THEN v_limit END)
           OR s.timeout <= interval '0' THEN
            BEGIN
                IF s.timeout <= interval '0' THEN
                    RAISE EXCEPTION 'errands: timeout must be positive, got %', s.timeout
                        USING ERRCODE = '22023';
                END IF;
                PERFORM errands._validate_specs(ARRAY[s.spec]);
            EXCEPTION WHEN invalid_parameter_value THEN
                RAISE EXCEPTION 'errands: flow step %: %', quote_literal(s.name),
                    substr(SQLERRM, length('errands: ') + 1) USING ERRCODE = '22023';
            END;
        END IF;
    END LOOP;
    IF add_flow.flow ? 'parent' THEN
        IF jsonb_typeof(add_flow.flow -> 'parent') IS DISTINCT FROM 'number' THEN
            RAISE EXCEPTION 'errands: a flow''s parent must be a job id, got %',
                add_flow.flow -> 'parent' USING ERRCODE = '22023';
        END IF;
        v_parent_job := (add_flow.flow ->> 'parent')::bigint;
        SELECT j.attempts INTO v_parent_try FROM errands._jobs j
        WHERE j.id = v_parent_job AND j.locked_at IS NOT NULL FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'errands: a flow''s parent must be a running job; job % is not running',
                v_parent_job USING ERRCODE = '22023';
        END IF;
    END IF;

    -- Write: the jobs, in step order, then the flow, its steps and the edges.
    v_ids := array_fill(NULL::bigint, ARRAY[v_n]);
    FOR s IN
        SELECT x.ord, x.step ->> 'name' AS name, x.step
        FROM jsonb_array_elements(v_steps) WITH ORDINALITY x(step, ord) ORDER BY x.ord
    LOOP
        v_job := errands.add_job(
            s.step ->> 'task', (s.step -> 'payload')::json, s.step ->> 'queue',
            (s.step ->> 'run_at')::timestamptz, (s.step ->> 'max_attempts')::integer,
            s.step ->> 'key', (s.step ->> 'priority')::integer,
            ARRAY(SELECT jsonb_array_elements_text(coalesce(nullif(s.step -> 'flags', 'null'), '[]'))),
            'unsafe_dedupe', (s.step ->> 'timeout')::interval);
        IF v_job.revision > 0 THEN
            RAISE EXCEPTION 'errands: flow step %: job key % is already used by job %',
                quote_literal(s.name), quote_literal(s.step ->> 'key'), v_job.id
                USING ERRCODE = '22023';
        END IF;
        v_ids[s.ord] := v_job.id;
    END LOOP;
    INSERT INTO errands._flows (parent_job_id) VALUES (v_parent_job) RETURNING id INTO v_flow;
    INSERT INTO errands._flow_steps (flow_id, step, job_id, ord, depends_on, run_anyway)
    SELECT v_flow, x.step ->> 'name', v_ids[x.ord], x.ord,
           ARRAY(SELECT jsonb_array_elements_text(coalesce(nullif(x.step -> 'depends_on', 'null'), '[]'))),
           coalesce((x.step ->> 'run_anyway')::boolean, false)
    FROM jsonb_array_elements(v_steps) WITH ORDINALITY x(step, ord);
    INSERT INTO errands._job_dependencies (depends_on, job_id, run_anyway, parent_try)
    SELECT DISTINCT v_ids[e.p], v_ids[e.c],
           coalesce((v_steps -> (e.c - 1) ->> 'run_anyway')::boolean, false), NULL::smallint
    FROM unnest(v_child, v_parent) e(c, p);
    IF v_parent_job IS NOT NULL THEN
        -- Roots wait for the task that adds the flow to complete this try.
        INSERT INTO errands._job_dependencies (depends_on, job_id, parent_try)
        SELECT v_parent_job, v_ids[i], v_parent_try
        FROM generate_series(1, v_n) i
        WHERE i <> ALL(coalesce(v_child, '{}'));
    END IF;
    UPDATE errands._jobs j SET waiting_for = c.n
    FROM (SELECT d.job_id, count(*)::integer AS n FROM errands._job_dependencies d
          WHERE d.job_id = ANY(v_ids) GROUP BY d.job_id) c
    WHERE j.id = c.job_id;
    RETURN QUERY
    SELECT v_flow, x.step ->> 'name', v_ids[x.ord]
    FROM jsonb_array_elements(v_steps) WITH ORDINALITY x(step, ord) ORDER BY x.ord;
END
$function$;

-- FUNCTION errands.add_job(text,json,text,timestamp with time zone,integer,text,integer,text[],text,interval,bigint[])
-- ACL: postgres=X/postgres
-- comment: Adds one job (Graphile Worker's add_job). Defaults: payload {}, run_at now(),
--          max_attempts 25, priority 0. With a job_key, job_key_mode decides: replace
--          updates a pending job with the key in place (every attribute, attempts reset,
--          revision + 1), preserve_run_at does the same but keeps run_at of a job that has
--          not been tried, unsafe_dedupe only bumps revision of any job holding the key,
--          abort_replace is replace that also requests the cancellation of a running job
--          holding the key (errands.cancel_jobs). A running or permanently failed job with
--          the key loses it and a new job is inserted. Array payloads of the same key concatenate (batch jobs). timeout
--          (errands only, positive): each try of this job may run that long (overrides the
--          task's timeout). A caller that may not read jobs (no SELECT on errands.jobs)
--          never gets another job's payload back: payload and last_error are NULL when
--          unsafe_dedupe found an existing job or a batch payload was merged. depends_on
--          (errands only; not with a job_key): ids of jobs this one waits for (state
--          waiting) until each has completed; each must be unfinished, or completed and
--          still in errands.finished_jobs (22023 otherwise, naming it).
CREATE OR REPLACE FUNCTION errands.add_job(identifier text, payload json DEFAULT NULL::json, queue_name text DEFAULT NULL::text, run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, max_attempts integer DEFAULT NULL::integer, job_key text DEFAULT NULL::text, priority integer DEFAULT NULL::integer, flags text[] DEFAULT NULL::text[], job_key_mode text DEFAULT 'replace'::text, timeout interval DEFAULT NULL::interval, depends_on bigint[] DEFAULT NULL::bigint[])
 RETURNS errands.jobs
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_mode text := coalesce(add_job.job_key_mode, 'replace');
    v_result errands.jobs;
    v_row errands._jobs;
    v_now timestamptz := now();
    v_task_id integer;
    v_queue_id integer;
    v_limit bigint;
BEGIN
    IF v_mode NOT IN ('replace', 'preserve_run_at', 'unsafe_dedupe', 'abort_replace') THEN
        RAISE EXCEPTION 'errands: invalid job_key_mode %; expected replace, preserve_run_at, unsafe_dedupe or abort_replace',
            quote_literal(v_mode) USING ERRCODE = '22023';
    END IF;
    IF add_job.timeout <= interval '0' THEN
        RAISE EXCEPTION 'errands: timeout must be positive, got %', add_job.timeout
            USING ERRCODE = '22023';
    END IF;
    IF add_job.job_key IS NOT NULL AND v_mode = 'abort_replace' THEN
        -- Graphile's #546: the running job holding the key gets its cancellation
        -- requested. Its row stays locked by this transaction, so no fetch can
        -- take it between the request and add_jobs giving its key away.
        PERFORM errands._request_cancel(ARRAY(
            SELECT j.id FROM errands._jobs j WHERE j.key = add_job.job_key FOR UPDATE),
            format('errands: cancelled by abort_replace of job key %s', add_job.job_key));
    END IF;
    -- Flows (25_flows.sql): a job that waits for others.
    IF cardinality(add_job.depends_on) > 0 THEN
        RETURN errands._add_dependent_job(add_job.identifier, add_job.payload, add_job.queue_name,
            add_job.run_at, add_job.max_attempts, add_job.job_key, add_job.priority,
            add_job.flags, v_mode, add_job.timeout, add_job.depends_on);
    END IF;
    IF add_job.job_key IS NOT NULL AND v_mode <> 'unsafe_dedupe' THEN
        -- The job-key decision table lives in add_jobs (which clears timeout
        -- on a replace, like every attribute it is not given).
        SELECT * INTO v_result
        FROM errands.add_jobs(ARRAY[ROW(add_job.identifier, add_job.payload,
                                         add_job.queue_name, add_job.run_at,
                                         add_job.max_attempts, add_job.job_key,
                                         add_job.priority, add_job.flags)::errands.job_spec],
                              v_mode = 'preserve_run_at');
        IF add_job.timeout IS NOT NULL THEN
            UPDATE errands._jobs j SET timeout = add_job.timeout
            WHERE j.id = v_result.id
            RETURNING j.* INTO v_row;
            -- add_jobs decided what payload the caller may see.
            RETURN errands._hide_payload(errands._job_view(v_row), v_result.payload);
        END IF;
        RETURN v_result;
    END IF;

    -- No key: one plain INSERT (the common case, kept short). unsafe_dedupe:
    -- a job with this key, in any state, absorbs the call.
    -- _validate_specs' conditions on the scalars: only a call that fails them
    -- pays for the spec array and the query that names the problem.
    v_limit := errands._max_payload_bytes();
    IF errands._spec_is_bad(add_job.identifier, add_job.queue_name, add_job.job_key,
                            add_job.max_attempts, add_job.priority, add_job.flags,
                            add_job.payload, CASE WHEN v_limit > 0 THEN v_limit END)
    THEN
        PERFORM errands._validate_specs(ARRAY[ROW(add_job.identifier, add_job.payload,
            add_job.queue_name, add_job.run_at, add_job.max_attempts, add_job.job_key,
            add_job.priority, add_job.flags)::errands.job_spec]);
    END IF;
    -- Look the task and queue up first; only a missing one costs an INSERT.
    SELECT t.id INTO v_task_id FROM errands._tasks t WHERE t.identifier = add_job.identifier;
    IF add_job.queue_name IS NOT NULL THEN
        SELECT q.id INTO v_queue_id FROM errands._queues q WHERE q.queue_name = add_job.queue_name;
    END IF;
    IF v_task_id IS NULL OR (add_job.queue_name IS NOT NULL AND v_queue_id IS NULL) THEN
        PERFORM errands._ensure_tasks_and_queues(ARRAY[ROW(add_job.identifier, NULL,
            add_job.queue_name, NULL, NULL, NULL, NULL, NULL)::errands.job_spec]);
        SELECT t.id INTO v_task_id FROM errands._tasks t WHERE t.identifier = add_job.identifier;
        SELECT q.id INTO v_queue_id FROM errands._queues q WHERE q.queue_name = add_job.queue_name;
    END IF;
    INSERT INTO errands._jobs AS j (task_id, job_queue_id, payload, priority, run_at,
                                    max_attempts, flags, key, created_at, updated_at, timeout)
    VALUES (v_task_id, v_queue_id,
            coalesce(add_job.payload, '{}'::json), coalesce(add_job.priority, 0),
            coalesce(add_job.run_at, v_now), coalesce(add_job.max_attempts, 25),
            CASE WHEN cardinality(add_job.flags) > 0 THEN errands._flags(add_job.flags) END,
            add_job.job_key, v_now, v_now, add_job.timeout)
    ON CONFLICT (key) WHERE key IS NOT NULL DO UPDATE SET revision = j.revision + 1, updated_at = v_now
    RETURNING j.* INTO v_row;
    IF v_row.revision = 0 AND v_row.run_at <= v_now THEN
        PERFORM errands._notify();
    END IF;
    IF v_row.revision > 0 AND NOT errands._caller_reads_jobs() THEN
        -- unsafe_dedupe found an existing job: not this caller's payload.
        RETURN errands._hide_payload(errands._job_view(v_row), NULL);
    END IF;
    IF v_row.task_id = v_task_id AND v_row.job_queue_id IS NOT DISTINCT FROM v_queue_id THEN
        -- Our task and queue (not another job's, as an unsafe_dedupe match may
        -- be): the names are the arguments, no lookup needed.
        RETURN errands._job_row(v_row, add_job.queue_name, add_job.identifier);
    END IF;
    RETURN errands._job_view(v_row);
END
$function$;

-- FUNCTION errands.add_jobs(errands.job_spec[],boolean)
-- ACL: postgres=X/postgres
-- comment: Adds many jobs in one statement and returns one row per spec, in input order.
--          Specs with a job_key follow add_job's replace mode (preserve_run_at when
--          job_key_preserve_run_at is true); specs sharing a key in one call fold into one
--          job (the later spec wins; array payloads concatenate). Notifies errands:jobs once
--          when a job is runnable now. A caller that may not read jobs (no SELECT on
--          errands.jobs) gets payload NULL for a keyed job whose payload is not the one this
--          call wrote.
CREATE OR REPLACE FUNCTION errands.add_jobs(specs errands.job_spec[], job_key_preserve_run_at boolean DEFAULT false)
 RETURNS SETOF errands.jobs
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET jit TO 'off'
 SET work_mem TO '64MB'
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_now timestamptz := now();
    v_keyed errands._keyed_spec[];
    v_pending text[];
    v_done text[];
    v_rounds int := 0;
    v_ords bigint[];
    v_ids bigint[];
BEGIN
    IF specs IS NULL OR cardinality(specs) = 0 THEN
        RETURN;
    END IF;
    PERFORM errands._validate_specs(specs);
    PERFORM errands._ensure_tasks_and_queues(specs);
    -- Queue heads (32_queue_heads.sql): jobs added to several named queues may
    -- update several queue rows, in spec order; lock them in id order first so
    -- that two such calls cannot deadlock on each other's rows.
    IF (SELECT min(s.queue_name) <> max(s.queue_name) FROM unnest(specs) s) THEN
        PERFORM FROM errands._queues q
        WHERE q.queue_name IN (SELECT s.queue_name FROM unnest(specs) s)
        ORDER BY q.id FOR NO KEY UPDATE;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM unnest(specs) s WHERE s.job_key IS NOT NULL) THEN
        -- Fast path, no keys: one INSERT, rows returned straight from it.
        IF EXISTS (SELECT 1 FROM unnest(specs) s WHERE coalesce(s.run_at, v_now) <= v_now) THEN
            PERFORM errands._notify();
        END IF;
        -- The identity default numbers the rows as the ordered SELECT feeds
        -- them, so ids follow input order and ORDER BY id returns them so.
        RETURN QUERY
        WITH ins AS (
            INSERT INTO errands._jobs (task_id, job_queue_id, payload, priority, run_at,
                                       max_attempts, flags, created_at, updated_at)
            SELECT t.id, q.id, coalesce(s.payload, '{}'::json),
                   coalesce(s.priority, 0), coalesce(s.run_at, v_now),
                   coalesce(s.max_attempts, 25),
                   -- skip the (not inlined) call for the usual flag-less job
                   CASE WHEN cardinality(s.flags) > 0 THEN errands._flags(s.flags) END,
                   v_now, v_now
            FROM unnest(specs) WITH ORDINALITY s
            JOIN errands._tasks t ON t.identifier = s.identifier
            LEFT JOIN errands._queues q ON q.queue_name = s.queue_name
            ORDER BY s.ordinality
            RETURNING *
        )
        SELECT (errands._job_row(ins::errands._jobs, q.queue_name, t.identifier)).*
        FROM ins
        JOIN errands._tasks t ON t.id = ins.task_id
        LEFT JOIN errands._queues q ON q.id = ins.job_queue_id
        ORDER BY ins.id;
        RETURN;
    END IF;

    -- Keyed specs: fold duplicates of a key into one (Graphile fails with
    -- 21000 on them).
    WITH k AS (
        SELECT s.*, s.ordinality AS ord FROM unnest(specs) WITH ORDINALITY s
        WHERE s.job_key IS NOT NULL
    ), g AS (
        SELECT k.job_key, max(k.ord) AS last_ord, count(*) AS n,
               max(k.ord) FILTER (WHERE k.payload IS NULL OR json_typeof(k.payload) <> 'array')
                   AS last_plain_ord
        FROM k GROUP BY k.job_key
    )
    SELECT array_agg(ROW(
               g.job_key, l.identifier, l.queue_name,
               CASE WHEN g.n = 1 OR g.last_plain_ord = g.last_ord
                    THEN coalesce(l.payload, '{}'::json)
                    ELSE coalesce((SELECT json_agg(e.value ORDER BY k2.ord, e.ordinality)
                                   FROM k k2, json_array_elements(k2.payload) WITH ORDINALITY e
                                   WHERE k2.job_key = g.job_key
                                     AND k2.ord > coalesce(g.last_plain_ord, 0)),
                                  '[]'::json)
               END,
               g.last_plain_ord IS NULL,
               coalesce(l.priority, 0), coalesce(l.run_at, v_now), coalesce(l.max_attempts, 25),
               errands._flags(l.flags), l.ord)::errands._keyed_spec ORDER BY g.job_key),
           array_agg(g.job_key ORDER BY g.job_key)
    INTO v_keyed, v_pending
    FROM g JOIN k l ON l.job_key = g.job_key AND l.ord = g.last_ord;

    -- Retry until every key is written: a keyed row can be locked by a worker
    -- or inserted by another session between our statements (Graphile's #580
    -- returns an all-NULL row then).
    LOOP
        v_rounds := v_rounds + 1;
        IF v_rounds > 100 THEN
            RAISE EXCEPTION 'errands: add_jobs could not settle job keys %', v_pending
                USING ERRCODE = '40001';
        END IF;
        -- Lock the existing rows in key order (no deadlock between two
        -- add_jobs calls); this waits for a fetch that is locking them.
        PERFORM 1 FROM errands._jobs j WHERE j.key = ANY(v_pending) ORDER BY j.key FOR UPDATE;
        -- A running or permanently failed job gives up its key and never
        -- retries; a new job takes the key.
        UPDATE errands._jobs j
        SET key = NULL, attempts = j.max_attempts, updated_at = v_now
        WHERE j.key = ANY(v_pending) AND NOT j.is_available;

        WITH todo AS (
            SELECT k.*, t.id AS task_id, q.id AS queue_id
            FROM unnest(v_keyed) k
            JOIN errands._tasks t ON t.identifier = k.identifier
            LEFT JOIN errands._queues q ON q.queue_name = k.queue_name
            WHERE k.key = ANY(v_pending)
        ), upd AS (
            UPDATE errands._jobs j
            SET task_id = todo.task_id,
                job_queue_id = todo.queue_id,
                payload = CASE WHEN todo.merge AND json_typeof(j.payload) = 'array'
                               THEN (j.payload::jsonb || todo.payload::jsonb)::json
                               ELSE todo.payload END,
                priority = todo.priority,
                max_attempts = todo.max_attempts,
                flags = todo.flags,
                run_at = CASE WHEN job_key_preserve_run_at AND j.attempts = 0
                              THEN j.run_at ELSE todo.run_at END,
                attempts = 0,
                last_error = NULL,
                errors = NULL,
                timeout = NULL,
                revision = j.revision + 1,
                updated_at = v_now
            FROM todo
            WHERE j.key = todo.key AND j.is_available
            RETURNING j.key
        ), ins AS (
            INSERT INTO errands._jobs (task_id, job_queue_id, payload, priority, run_at,
                                       max_attempts, flags, key, created_at, updated_at)
            SELECT todo.task_id, todo.queue_id, todo.payload, todo.priority, todo.run_at,
                   todo.max_attempts, todo.flags, todo.key, v_now, v_now
            FROM todo
            WHERE NOT EXISTS (SELECT 1 FROM errands._jobs j WHERE j.key = todo.key)
            ORDER BY todo.ord
            ON CONFLICT (key) WHERE key IS NOT NULL DO NOTHING
            RETURNING key
        )
        SELECT array_agg(x.key) INTO v_done
        FROM (SELECT upd.key FROM upd UNION ALL SELECT ins.key FROM ins) x;

        v_pending := ARRAY(SELECT p FROM unnest(v_pending) p
                           WHERE p <> ALL (coalesce(v_done, '{}'::text[])));
        EXIT WHEN cardinality(v_pending) = 0;
    END LOOP;

    -- Specs without a key.
    WITH src AS MATERIALIZED (
        SELECT nextval('errands._jobs_id_seq'::regclass) AS id, s.ordinality AS ord,
               s.payload, s.priority, s.run_at, s.max_attempts, s.flags,
               t.id AS task_id, q.id AS queue_id
        FROM unnest(specs) WITH ORDINALITY s
        JOIN errands._tasks t ON t.identifier = s.identifier
        LEFT JOIN errands._queues q ON q.queue_name = s.queue_name
        WHERE s.job_key IS NULL
        ORDER BY s.ordinality
    ), ins AS (
        INSERT INTO errands._jobs (id, task_id, job_queue_id, payload, priority, run_at,
                                   max_attempts, flags, created_at, updated_at)
        SELECT src.id, src.task_id, src.queue_id, coalesce(src.payload, '{}'::json),
               coalesce(src.priority, 0), coalesce(src.run_at, v_now),
               coalesce(src.max_attempts, 25),
                   -- skip the (not inlined) call for the usual flag-less job
                   CASE WHEN cardinality(src.flags) > 0 THEN errands._flags(src.flags) END,
                   v_now, v_now
        FROM src
        RETURNING id
    )
    SELECT array_agg(src.ord), array_agg(src.id) INTO v_ords, v_ids
    FROM src JOIN ins ON ins.id = src.id;

    -- One row per spec, in input order; specs sharing a key share the row.
    SELECT array_agg(coalesce(u.id, j.id) ORDER BY s.ordinality) INTO v_ids
    FROM unnest(specs) WITH ORDINALITY s
    LEFT JOIN unnest(v_ords, v_ids) u(ord, id) ON u.ord = s.ordinality
    LEFT JOIN errands._jobs j ON j.key = s.job_key;

    IF EXISTS (SELECT 1 FROM unnest(v_ids) x(id) JOIN errands._jobs j ON j.id = x.id
               WHERE j.run_at <= v_now AND j.is_available) THEN
        PERFORM errands._notify();
    END IF;

    -- Only an array payload merged into an existing job's can differ from what
    -- this call wrote: without one (the usual case) nothing needs hiding.
    IF NOT EXISTS (SELECT 1 FROM unnest(v_keyed) k WHERE k.merge)
       OR errands._caller_reads_jobs() THEN
        RETURN QUERY
        SELECT v.* FROM unnest(v_ids) WITH ORDINALITY x(id, ord)
        JOIN errands.jobs v ON v.id = x.id
        ORDER BY x.ord;
        RETURN;
    END IF;
    -- A caller that may not read jobs gets a keyed job's payload back only when
    -- it is what this call wrote (not when its array was merged into an
    -- existing job's): payload NULL otherwise.
    -- The rows are read as above (MATERIALIZED: the extra joins must not change
    -- that plan), then masked; LATERAL: (f(v)).* would call f once per column.
    RETURN QUERY
    WITH r AS MATERIALIZED (
        SELECT v AS job, x.ord FROM unnest(v_ids) WITH ORDINALITY x(id, ord)
        JOIN errands.jobs v ON v.id = x.id
    )
    SELECT h.*
    FROM r
    JOIN unnest(specs) WITH ORDINALITY s ON s.ordinality = r.ord
    LEFT JOIN unnest(v_keyed) k ON k.key = s.job_key
    CROSS JOIN LATERAL errands._hide_payload(
        r.job, CASE WHEN s.job_key IS NULL OR (r.job).payload::text = k.payload::text
                    THEN (r.job).payload END) h
    ORDER BY r.ord;
END
$function$;

-- FUNCTION errands.cancel_flow(bigint)
-- ACL: postgres=X/postgres
-- comment: Cancels every unfinished step of a flow that is not running (a running step
--          finishes its try) and, recursively, the jobs that depend on them (run-anyway
--          ones go on). Returns the ids cancelled. Unknown flow: 22023.
CREATE OR REPLACE FUNCTION errands.cancel_flow(flow_id bigint)
 RETURNS SETOF bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_ids bigint[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM errands._flows f WHERE f.id = cancel_flow.flow_id) THEN
        RAISE EXCEPTION 'errands: flow % does not exist', coalesce(cancel_flow.flow_id::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    v_ids := errands._cancel_now(
        ARRAY(SELECT s.job_id FROM errands._flow_steps s WHERE s.flow_id = cancel_flow.flow_id),
        format('errands: flow %s was cancelled', cancel_flow.flow_id), false);
    v_ids := v_ids || errands._cancel_dependents(v_ids);
    DELETE FROM errands._job_dependencies d WHERE d.job_id = ANY(v_ids);
    RETURN QUERY SELECT u FROM unnest(v_ids) u ORDER BY u;
END
$function$;

-- FUNCTION errands.cancel_jobs(bigint[])
-- ACL: postgres=X/postgres
-- comment: Cancels the listed jobs and returns one row per distinct id, in input order, with
--          its outcome: cancelled (it was scheduled, pending, retrying or failed: it is
--          deleted now and kept in errands.finished_jobs with state cancelled when its
--          task's retention is above 0), cancel_requested (it is running: its worker is
--          told on the channel errands:cancel and, whatever it reports next, the job ends
--          cancelled; a rescue of that worker ends it cancelled too), already_finished (in
--          errands.finished_jobs) or unknown (no such job, or finished and not kept).
CREATE OR REPLACE FUNCTION errands.cancel_jobs(job_ids bigint[])
 RETURNS TABLE(id bigint, outcome text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_now bigint[];
    v_requested bigint[];
BEGIN
    IF cancel_jobs.job_ids IS NULL THEN
        RAISE EXCEPTION 'errands: cancel_jobs needs an array of job ids, got NULL'
            USING ERRCODE = '22023';
    END IF;
    -- Lock the rows first (in id order: no deadlock between two cancel_jobs), so
    -- that each is judged on its latest version: a fetch, completion or failure
    -- in flight is waited for, and fetching (SKIP LOCKED) cannot take them now.
    PERFORM 1 FROM errands._jobs j WHERE j.id = ANY(cancel_jobs.job_ids) ORDER BY j.id FOR UPDATE;
    v_now := errands._cancel_now(cancel_jobs.job_ids, 'errands: cancelled by cancel_jobs');
    v_requested := errands._request_cancel(cancel_jobs.job_ids,
                                           'errands: cancelled by cancel_jobs while running');
    RETURN QUERY
    SELECT i.id,
           CASE WHEN i.id = ANY(v_now) THEN 'cancelled'
                WHEN i.id = ANY(v_requested) THEN 'cancel_requested'
                WHEN EXISTS (SELECT 1 FROM errands._finished_jobs f WHERE f.id = i.id)
                    THEN 'already_finished'
                ELSE 'unknown' END
    FROM (SELECT DISTINCT ON (x.id) x.id, x.ord
          FROM unnest(cancel_jobs.job_ids) WITH ORDINALITY AS x(id, ord)
          WHERE x.id IS NOT NULL
          ORDER BY x.id, x.ord) i
    ORDER BY i.ord;
END
$function$;

-- FUNCTION errands.check_job_triggers(regclass)
-- ACL: postgres=X/postgres
-- comment: Checks the arguments of every trigger that calls errands.job_trigger (on_table's
--          only when given) and returns how many it checked; raises 22023 naming the
--          trigger, the table and the bad option on the first bad one. Call it right after
--          CREATE TRIGGER, in the same migration, so a typo fails the migration rather
--          than the first INSERT.
CREATE OR REPLACE FUNCTION errands.check_job_triggers(on_table regclass DEFAULT NULL::regclass)
 RETURNS integer
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    t record;
    v_args text[];
    v_bytes bytea;
    v_cut int;
    v_count int := 0;
BEGIN
    FOR t IN
        SELECT tg.tgrelid, tg.tgname, tg.tgtype, tg.tgnargs, tg.tgargs,
               tg.tgnewtable, tg.tgoldtable
        FROM pg_trigger tg
        WHERE tg.tgfoid = 'errands.job_trigger()'::regprocedure
          AND (on_table IS NULL OR tg.tgrelid = on_table)
        ORDER BY tg.tgrelid, tg.tgname
    LOOP
        -- tgargs: the arguments, each followed by a zero byte.
        v_args := '{}';
        v_bytes := t.tgargs;
        FOR i IN 1 .. t.tgnargs LOOP
            v_cut := position('\x00'::bytea IN v_bytes);
            v_args := v_args || convert_from(substr(v_bytes, 1, v_cut - 1), 'UTF8');
            v_bytes := substr(v_bytes, v_cut + 1);
        END LOOP;
        BEGIN
            PERFORM errands._job_trigger_options(
                v_args, t.tgrelid,
                CASE WHEN t.tgtype & 1 = 1 THEN 'ROW' ELSE 'STATEMENT' END,
                t.tgnewtable, t.tgoldtable);
        EXCEPTION WHEN invalid_parameter_value THEN
            RAISE EXCEPTION 'errands.job_trigger: trigger % on %: %', quote_ident(t.tgname),
                t.tgrelid::regclass,
                replace(SQLERRM, format('errands.job_trigger on %s: ', t.tgrelid::regclass), '')
                USING ERRCODE = '22023';
        END;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$function$;

-- FUNCTION errands.cleanup(text[],text[])
-- ACL: postgres=X/postgres
-- comment: Housekeeping; returns a row per task run with the number of rows deleted.
--          DELETE_PERMAFAILED_JOBS deletes permanently failed jobs (and cancels the jobs
--          waiting for them, recursively); GC_JOB_QUEUES deletes
--          unlocked queues no job uses; GC_TASK_IDENTIFIERS deletes task identifiers no job
--          uses except task_identifiers_to_keep (pass the ones running workers know).
CREATE OR REPLACE FUNCTION errands.cleanup(tasks text[] DEFAULT ARRAY['GC_JOB_QUEUES'::text], task_identifiers_to_keep text[] DEFAULT '{}'::text[])
 RETURNS TABLE(task text, deleted bigint)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_task text;
    v_count bigint;
    v_gone bigint[];
BEGIN
    SELECT t INTO v_task FROM unnest(cleanup.tasks) t
    WHERE t IS NULL OR t NOT IN ('DELETE_PERMAFAILED_JOBS', 'GC_JOB_QUEUES', 'GC_TASK_IDENTIFIERS')
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: unknown cleanup task %; expected DELETE_PERMAFAILED_JOBS, GC_JOB_QUEUES or GC_TASK_IDENTIFIERS',
            coalesce(quote_literal(v_task), 'NULL') USING ERRCODE = '22023';
    END IF;
    -- Jobs first, so the garbage collection below sees their rows gone.
    IF 'DELETE_PERMAFAILED_JOBS' = ANY(cleanup.tasks) THEN
        WITH gone AS (
            DELETE FROM errands._jobs j WHERE j.locked_at IS NULL AND j.attempts >= j.max_attempts
            RETURNING j.id
        )
        SELECT array_agg(gone.id) INTO v_gone FROM gone;
        v_count := coalesce(cardinality(v_gone), 0);
        -- Flows (25_flows.sql): what waited for them will not run.
        PERFORM errands._cancel_dependents(v_gone, 'failed and was deleted by cleanup');
        task := 'DELETE_PERMAFAILED_JOBS'; deleted := v_count; RETURN NEXT;
    END IF;
    IF 'GC_JOB_QUEUES' = ANY(cleanup.tasks) THEN
        DELETE FROM errands._queues q
        WHERE q.locked_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM errands._jobs j WHERE j.job_queue_id = q.id);
        GET DIAGNOSTICS v_count = ROW_COUNT;
        task := 'GC_JOB_QUEUES'; deleted := v_count; RETURN NEXT;
    END IF;
    IF 'GC_TASK_IDENTIFIERS' = ANY(cleanup.tasks) THEN
        DELETE FROM errands._tasks t
        WHERE t.identifier <> ALL (coalesce(cleanup.task_identifiers_to_keep, '{}'))
          AND NOT EXISTS (SELECT 1 FROM errands._jobs j WHERE j.task_id = t.id);
        GET DIAGNOSTICS v_count = ROW_COUNT;
        task := 'GC_TASK_IDENTIFIERS'; deleted := v_count; RETURN NEXT;
    END IF;
END
$function$;

-- FUNCTION errands.complete_jobs(bigint[])
-- ACL: postgres=X/postgres
-- comment: Marks the listed jobs as completed and returns them: they move to
--          errands.finished_jobs (result NULL) when their task's retention is above 0 or a
--          waiter watches them (errands.watch_jobs), else are deleted. Running jobs are skipped unless their lock is stale (older than 4
--          hours).
CREATE OR REPLACE FUNCTION errands.complete_jobs(job_ids bigint[])
 RETURNS SETOF errands.jobs
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    -- Flows (25_flows.sql): jobs others wait for keep their result; dependents released.
    PERFORM errands._complete_dependencies(NULL, complete_jobs.job_ids, NULL);
    RETURN QUERY
    WITH d AS (
        DELETE FROM errands._jobs j
        WHERE j.id = ANY(complete_jobs.job_ids)
          AND (j.locked_at IS NULL OR j.locked_at < now() - errands._stale_lock_age())
        RETURNING j
    -- Flow control: a job deleted under a stale lock frees its slots.
    ), slots AS (
        SELECT errands._release_slots(array_agg((d.j).job_queue_id), array_agg((d.j).task_id))
        FROM d WHERE (d.j).locked_at IS NOT NULL
    ), kept AS (
        INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                            attempts, max_attempts, last_error, key, created_at,
                                            state, result, errors, run_at, started_at)
        SELECT (d.j).id, q.queue_name, t.identifier, (d.j).payload, (d.j).priority,
               (d.j).attempts, (d.j).max_attempts, (d.j).last_error, (d.j).key,
               (d.j).created_at, 'completed', NULL, (d.j).errors, (d.j).run_at,
               (d.j).locked_at
        FROM d
        JOIN errands._tasks t ON t.id = (d.j).task_id
        LEFT JOIN errands._queues q ON q.id = (d.j).job_queue_id
        WHERE coalesce(t.retention, errands._retention()) > interval '0'
           OR (d.j).watched -- waiting (17_wait.sql): kept for its waiter
        ON CONFLICT (id) DO NOTHING
    )
    SELECT v.* FROM d, LATERAL errands._job_view(d.j) v, slots ORDER BY v.id;
    PERFORM errands._check_late_dependents(complete_jobs.job_ids); -- flows (25_flows.sql)
    PERFORM errands._jobs_finished(complete_jobs.job_ids); -- waiting hook (17_wait.sql)
END
$function$;

-- FUNCTION errands.cron_next_runs(text,timestamp with time zone,integer)
-- ACL: postgres=X/postgres
-- comment: Previews a crontab: for each item (in file order) its next n (default 5) run
--          times after the given time, as cron_tick would schedule them. Raises 22023 on a
--          bad crontab like parse_crontab.
CREATE OR REPLACE FUNCTION errands.cron_next_runs(crontab text, after timestamp with time zone DEFAULT now(), n integer DEFAULT 5)
 RETURNS TABLE(id text, task text, run_at timestamp with time zone)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_item record;
    v_tz text;
    v_day date;
    v_found integer;
    v_m timestamptz;
    v_after timestamptz := date_trunc('minute', cron_next_runs.after);
BEGIN
    IF v_after IS NULL OR NOT isfinite(v_after) OR n IS NULL OR n NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'errands: invalid cron_next_runs arguments (after %, n %)',
            coalesce(cron_next_runs.after::text, 'NULL'), coalesce(n::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    FOR v_item IN SELECT * FROM errands.parse_crontab(crontab) ORDER BY line_number LOOP
        v_tz := v_item.options->>'tz';
        v_found := 0;
        v_day := (v_after AT TIME ZONE v_tz)::date;
        -- Day by day (at most 50 years), minute by minute within matching days.
        WHILE v_found < n AND v_day < (v_after AT TIME ZONE v_tz)::date + 18300 LOOP
            IF errands._cron_wall_match(v_day::timestamp, '{0}', '{0}', v_item.days_of_month,
                                        v_item.months, v_item.days_of_week) THEN
                FOR v_m IN
                    SELECT g FROM generate_series(
                        greatest(v_day::timestamp AT TIME ZONE v_tz, v_after + interval '1 minute'),
                        (v_day + 1)::timestamp AT TIME ZONE v_tz - interval '1 minute',
                        interval '1 minute') g
                    WHERE errands._cron_due(g, v_item.minutes, v_item.hours, v_item.days_of_month,
                                            v_item.months, v_item.days_of_week, v_tz)
                    ORDER BY g LIMIT n - v_found
                LOOP
                    id := v_item.id;
                    task := v_item.task;
                    run_at := v_m;
                    v_found := v_found + 1;
                    RETURN NEXT;
                END LOOP;
            END IF;
            v_day := v_day + 1;
        END LOOP;
    END LOOP;
END
$function$;

-- FUNCTION errands.cron_tick(timestamp with time zone)
-- ACL: postgres=X/postgres
-- comment: Enqueues the due jobs of every stored crontab item for the minutes in
--          (last execution, now]: run_at is the scheduled minute and the payload gets
--          _cron: {ts, backfilled}. Items never backfill more than their fill period (only
--          the current minute without fill) nor before they were first seen. Safe to call
--          concurrently and repeatedly (one job per item and minute; a clock going back
--          schedules nothing). Returns the number of jobs enqueued.
CREATE OR REPLACE FUNCTION errands.cron_tick(now timestamp with time zone DEFAULT now())
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_now timestamptz := date_trunc('minute', cron_tick.now);
    v_item errands._crontab_items;
    v_known errands._known_crontabs;
    v_lo timestamptz;
    v_m timestamptz;
    v_count integer := 0;
BEGIN
    IF v_now IS NULL OR NOT isfinite(v_now) THEN
        RAISE EXCEPTION 'errands: invalid cron_tick time %', coalesce(cron_tick.now::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    FOR v_item IN SELECT * FROM errands._crontab_items ORDER BY id LOOP
        INSERT INTO errands._known_crontabs (identifier, known_since, last_execution)
        VALUES (v_item.id, v_now, NULL)
        ON CONFLICT (identifier) DO NOTHING;
        SELECT * INTO v_known FROM errands._known_crontabs
        WHERE identifier = v_item.id FOR UPDATE;
        -- A clock that goes backwards (or a repeated tick) schedules nothing.
        CONTINUE WHEN v_known.last_execution >= v_now;
        v_lo := greatest(v_known.last_execution,
                         v_known.known_since - interval '1 minute',
                         v_now - greatest(coalesce(errands._cron_period(v_item.options->>'fill'),
                                                   interval '0'),
                                          interval '1 minute'));
        FOR v_m IN
            SELECT g FROM generate_series(v_lo + interval '1 minute', v_now, interval '1 minute') g
            WHERE errands._cron_due(g, v_item.minutes, v_item.hours, v_item.days_of_month,
                                    v_item.months, v_item.days_of_week, v_item.options->>'tz')
            ORDER BY g
        LOOP
            PERFORM errands.add_job(
                identifier => v_item.task,
                payload => (v_item.payload || jsonb_build_object('_cron', jsonb_build_object(
                    'ts', to_char(v_m AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                    'backfilled', v_m < v_now)))::json,
                queue_name => v_item.options->>'queue',
                run_at => v_m,
                max_attempts => (v_item.options->>'max')::integer,
                job_key => v_item.options->>'jobKey',
                priority => (v_item.options->>'priority')::integer,
                job_key_mode => coalesce(v_item.options->>'jobKeyMode', 'replace'));
            v_count := v_count + 1;
        END LOOP;
        UPDATE errands._known_crontabs SET last_execution = v_now WHERE identifier = v_item.id;
    END LOOP;
    RETURN v_count;
END
$function$;

-- FUNCTION errands.dashboard_chart(timestamp with time zone,interval)
-- ACL: postgres=X/postgres
-- comment: Dashboard: per bucket of the given length since the given time (at most 7 days,
--          1000 buckets): jobs completed and cancelled (from errands.finished_jobs: zero when
--          retention is 0), jobs whose last try failed then and that are still in
--          errands.jobs (retrying or failed; estimated from a block sample on a big table),
--          and the median and maximum seconds from creation to completion of the completed
--          jobs (history does not keep start times: this is queue wait plus run time).
CREATE OR REPLACE FUNCTION errands.dashboard_chart(since timestamp with time zone, bucket interval)
 RETURNS TABLE(bucket_start timestamp with time zone, completed bigint, cancelled bigint, failed bigint, wait_p50 double precision, wait_max double precision)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_est bigint := errands._jobs_estimate();
    v_pct float8 := 100.0;
BEGIN
    PERFORM errands._check_chart_window('dashboard_chart', since, bucket);
    IF v_est >= 100000 THEN
        v_pct := least(100.0, 100.0 * 50000 / v_est);
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH b AS (
            SELECT g AS s FROM generate_series($1, now(), $2) g
        ), h AS (
            -- History (kept when retention > 0): finished_at is indexed.
            SELECT $1 + $2 * floor(extract(epoch FROM f.finished_at - $1)
                                   / extract(epoch FROM $2)) AS s,
                   f.state,
                   extract(epoch FROM f.finished_at - f.created_at)::float8 AS wait
            FROM errands._finished_jobs f
            WHERE f.finished_at >= $1
        ), hb AS (
            SELECT h.s, count(*) FILTER (WHERE h.state = 'completed') AS completed,
                   count(*) FILTER (WHERE h.state = 'cancelled') AS cancelled,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY h.wait)
                       FILTER (WHERE h.state = 'completed') AS wait_p50,
                   max(h.wait) FILTER (WHERE h.state = 'completed') AS wait_max
            FROM h GROUP BY 1
        ), fb AS (
            -- Failed tries still in errands._jobs (retrying or failed), by the
            -- time of their last failure; sampled on a big table.
            SELECT $1 + $2 * floor(extract(epoch FROM j.updated_at - $1)
                                   / extract(epoch FROM $2)) AS s,
                   round(count(*) * 100.0 / %s)::bigint AS failed
            FROM errands._jobs j TABLESAMPLE SYSTEM (%s)
            WHERE j.updated_at >= $1 AND j.attempts > 0 AND j.locked_at IS NULL
              AND j.last_error IS NOT NULL
            GROUP BY 1
        )
        SELECT b.s, coalesce(hb.completed, 0), coalesce(hb.cancelled, 0),
               coalesce(fb.failed, 0), hb.wait_p50, hb.wait_max
        FROM b LEFT JOIN hb ON hb.s = b.s LEFT JOIN fb ON fb.s = b.s
        ORDER BY b.s$q$, v_pct, v_pct) USING since, bucket;
END
$function$;

-- FUNCTION errands.dashboard_counts(bigint)
-- ACL: postgres=X/postgres
-- comment: Dashboard: the unfinished jobs counted by state, task and queue. When errands._jobs
--          holds fewer than exact_below rows (planner estimate) the counts are exact
--          (estimated false). Otherwise running, waiting and failed jobs are still counted
--          exactly (estimated false), through the partial index jobs_unavailable, and
--          pending, scheduled and retrying ones come from a block sample of about 50,000
--          rows scaled to the estimated table size (estimated true): a rare combination of
--          those may be missing from the estimate.
CREATE OR REPLACE FUNCTION errands.dashboard_counts(exact_below bigint DEFAULT 100000)
 RETURNS TABLE(state text, task_identifier text, queue_name text, jobs bigint, estimated boolean)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF exact_below IS NULL OR exact_below < 0 THEN
        RAISE EXCEPTION 'errands: dashboard_counts needs exact_below >= 0, got %',
            coalesce(exact_below::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- The counts /metrics serves too (65_metrics.sql), with a larger sample: the
    -- overview shows every task and queue, where a scrape sums them.
    RETURN QUERY
    SELECT c.state, c.task_identifier, c.queue_name, c.jobs, c.estimated
    FROM errands.job_counts(exact_below, 50000) c;
END
$function$;

-- FUNCTION errands.dashboard_cron()
-- ACL: postgres=X/postgres
-- comment: Dashboard: every stored crontab item (set_crontab) with its source, task,
--          options, payload, the minute cron_tick last scheduled (NULL: never) and its next
--          due minute within a year (NULL: none).
CREATE OR REPLACE FUNCTION errands.dashboard_cron()
 RETURNS TABLE(identifier text, source text, task text, options jsonb, payload jsonb, last_execution timestamp with time zone, next_run timestamp with time zone)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT i.id, i.source, i.task, i.options, i.payload, k.last_execution,
           errands._cron_next_run(i, now())
    FROM errands._crontab_items i
    LEFT JOIN errands._known_crontabs k ON k.identifier = i.id
    ORDER BY i.source, i.line_number
$function$;

-- FUNCTION errands.dashboard_durations(timestamp with time zone,interval)
-- ACL: postgres=X/postgres
-- comment: Dashboard: per bucket of the given length since the given time (at most 7 days,
--          1000 buckets), for the jobs completed then (errands.finished_jobs: none when
--          retention is 0): the median and maximum queue wait (run_at of the last try to
--          its start) and run time (start to completion) in seconds, and how many jobs.
CREATE OR REPLACE FUNCTION errands.dashboard_durations(since timestamp with time zone, bucket interval)
 RETURNS TABLE(bucket_start timestamp with time zone, wait_p50 double precision, wait_max double precision, run_p50 double precision, run_max double precision, jobs bigint)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM errands._check_chart_window('dashboard_durations', since, bucket);
    RETURN QUERY
    WITH b AS (
        SELECT g AS s FROM generate_series(since, now(), bucket) g
    ), h AS (
        SELECT since + bucket * floor(extract(epoch FROM f.finished_at - since)
                                      / extract(epoch FROM bucket)) AS s,
               greatest(0, extract(epoch FROM f.started_at - f.run_at))::float8 AS wait,
               extract(epoch FROM f.finished_at - f.started_at)::float8 AS run
        FROM errands._finished_jobs f
        WHERE f.finished_at >= since AND f.state = 'completed'
          AND f.started_at IS NOT NULL AND f.run_at IS NOT NULL
    ), hb AS (
        SELECT h.s, percentile_cont(0.5) WITHIN GROUP (ORDER BY h.wait) AS wait_p50,
               max(h.wait) AS wait_max,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY h.run) AS run_p50,
               max(h.run) AS run_max, count(*) AS jobs
        FROM h GROUP BY 1
    )
    SELECT b.s, hb.wait_p50, hb.wait_max, hb.run_p50, hb.run_max, coalesce(hb.jobs, 0)
    FROM b LEFT JOIN hb ON hb.s = b.s
    ORDER BY b.s;
END
$function$;

-- FUNCTION errands.dashboard_job_ids(jsonb,text,boolean,text,bigint,bigint,integer)
-- ACL: postgres=X/postgres
-- comment: Dashboard: the ids of the unfinished jobs matching filter (an object with any of
--          state, task, queue, key, error (text in last_error, any case), payload (a JSON value
--          the payload contains), since and until (bounds of run_at)), in order of sort (id,
--          run_at or attempts, then id; descending or not), after the keyset cursor
--          (after_value, after_id), within id_bound (ids >= it when descending, <= it
--          otherwise), at most n (NULL: all), one row each. Bad arguments raise 22023.
CREATE OR REPLACE FUNCTION errands.dashboard_job_ids(filter jsonb, sort text DEFAULT 'id'::text, descending boolean DEFAULT true, after_value text DEFAULT NULL::text, after_id bigint DEFAULT NULL::bigint, id_bound bigint DEFAULT NULL::bigint, n integer DEFAULT NULL::integer)
 RETURNS SETOF bigint
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_where text := 'true';
    v_from text := 'errands._jobs j';
    v_op text := CASE WHEN descending THEN '<' ELSE '>' END;
    v_dir text := CASE WHEN descending THEN 'DESC' ELSE 'ASC' END;
    v_key text;
BEGIN
    IF filter IS NULL OR jsonb_typeof(filter) <> 'object' OR descending IS NULL
       OR sort IS NULL OR sort NOT IN ('id', 'run_at', 'attempts') OR n < 0 THEN
        RAISE EXCEPTION 'errands: dashboard_job_ids needs a filter object, sort id, run_at or attempts, descending and n >= 0, got filter %, sort %, n %',
            coalesce(left(filter::text, 200), 'NULL'), coalesce(quote_literal(sort), 'NULL'),
            coalesce(n::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    SELECT k INTO v_key FROM jsonb_object_keys(filter) k
    WHERE k NOT IN ('state', 'task', 'queue', 'key', 'error', 'payload', 'since', 'until')
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: dashboard_job_ids: unknown filter field %', quote_literal(v_key)
            USING ERRCODE = '22023';
    END IF;
    IF filter ? 'state' THEN
        IF filter->>'state' NOT IN ('running', 'waiting', 'failed', 'retrying', 'scheduled',
                                    'pending') THEN
            RAISE EXCEPTION 'errands: dashboard_job_ids: unknown state %',
                quote_literal(filter->>'state') USING ERRCODE = '22023';
        END IF;
        -- As the state column of errands.jobs (10_jobs.sql).
        v_where := v_where || format(' AND CASE WHEN j.locked_at IS NOT NULL THEN ''running''
            WHEN j.waiting_for IS NOT NULL THEN ''waiting''
            WHEN j.attempts >= j.max_attempts THEN ''failed''
            WHEN j.attempts > 0 THEN ''retrying''
            WHEN j.run_at > now() THEN ''scheduled''
            ELSE ''pending'' END = %L', filter->>'state');
        -- Running, waiting and failed jobs are the unavailable ones: read through
        -- the partial index jobs_unavailable, not the whole table.
        -- (OFFSET 0 keeps the planner from walking the primary key instead,
        -- hoping for an early match, when the rows sit at the far end.)
        IF filter->>'state' IN ('running', 'waiting', 'failed') THEN
            v_from := '(SELECT * FROM errands._jobs u WHERE NOT u.is_available OFFSET 0) j';
        END IF;
    END IF;
    IF filter ? 'task' THEN
        v_where := v_where || format(' AND j.task_id = (SELECT t.id FROM errands._tasks t
            WHERE t.identifier = %L)', filter->>'task');
    END IF;
    IF filter ? 'queue' THEN
        v_where := v_where || format(' AND j.job_queue_id = (SELECT q.id FROM errands._queues q
            WHERE q.queue_name = %L)', filter->>'queue');
    END IF;
    IF filter ? 'key' THEN
        v_where := v_where || format(' AND j.key = %L', filter->>'key');
    END IF;
    IF filter ? 'error' THEN
        v_where := v_where || format(' AND strpos(lower(j.last_error), lower(%L)) > 0',
                                     filter->>'error');
    END IF;
    IF filter ? 'payload' THEN
        v_where := v_where || format(' AND j.payload::jsonb @> %L::jsonb', filter->'payload');
    END IF;
    IF filter ? 'since' THEN
        v_where := v_where || format(' AND j.run_at >= %L::timestamptz', filter->>'since');
    END IF;
    IF filter ? 'until' THEN
        v_where := v_where || format(' AND j.run_at < %L::timestamptz', filter->>'until');
    END IF;
    IF after_id IS NOT NULL THEN
        v_where := v_where || CASE sort
            WHEN 'id' THEN format(' AND j.id %s %s', v_op, after_id)
            WHEN 'run_at' THEN format(' AND (j.run_at, j.id) %s (%L::timestamptz, %s)', v_op,
                                      after_value, after_id)
            ELSE format(' AND (j.attempts, j.id) %s (%L::integer, %s)', v_op, after_value,
                        after_id) END;
    END IF;
    IF id_bound IS NOT NULL THEN
        v_where := v_where || format(' AND j.id %s %s', CASE WHEN descending THEN '>=' ELSE '<=' END,
                                     id_bound);
    END IF;
    -- RETURN QUERY (not EXECUTE ... INTO) may run the scan in parallel.
    RETURN QUERY EXECUTE format('SELECT j.id FROM %s WHERE %s ORDER BY %s LIMIT %s',
                   v_from, v_where,
                   CASE WHEN sort = 'id' THEN format('j.id %s', v_dir)
                        ELSE format('j.%I %s, j.id %s', sort, v_dir, v_dir) END,
                   coalesce(n::text, 'ALL'));
END
$function$;

-- FUNCTION errands.dashboard_workers()
-- ACL: postgres=X/postgres
-- comment: Dashboard: the rows of the errands.workers view (alive, hung or dead, heartbeat,
--          running job ids), newest first, for a role that may not call the private
--          functions the view uses.
CREATE OR REPLACE FUNCTION errands.dashboard_workers()
 RETURNS SETOF errands.workers
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    -- The view's running_job_ids is not read, so its own scan is planned away.
    SELECT w.id, w.host, w.pid, w.started_at, w.last_heartbeat, w.state,
           coalesce(r.ids, '{}'), w.session_lock
    FROM errands.workers w
    LEFT JOIN errands._locked_jobs_by_worker() r ON r.locked_by = w.id
    ORDER BY w.started_at DESC, w.id
$function$;

-- FUNCTION errands.dependency_results(bigint)
-- ACL: postgres=X/postgres
-- comment: The results of the jobs job_id depends on that completed, as one JSON object:
--          keyed by step name when both are steps of one flow, else by job id (as text);
--          {} when none. Kept in errands._finished_jobs, whatever the retention, until every
--          dependent has run.
CREATE OR REPLACE FUNCTION errands.dependency_results(job_id bigint)
 RETURNS jsonb
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT coalesce(jsonb_object_agg(coalesce(s.step, d.depends_on::text), f.result::jsonb
                                     ORDER BY d.depends_on), '{}'::jsonb)
    FROM errands._job_dependencies d
    JOIN errands._finished_jobs f ON f.id = d.depends_on AND f.state = 'completed'
    LEFT JOIN errands._flow_steps me ON me.job_id = d.job_id
    LEFT JOIN errands._flow_steps s ON s.job_id = d.depends_on AND s.flow_id = me.flow_id
    WHERE d.job_id = dependency_results.job_id AND d.parent_try IS NULL
$function$;

-- FUNCTION errands.force_unlock_workers(text[])
-- ACL: postgres=X/postgres
-- comment: Unlocks every job and queue locked by the listed workers (use it for workers you
--          know are dead). attempts is unchanged, so the interrupted try counts; a job whose
--          cancellation was requested ends cancelled instead.
CREATE OR REPLACE FUNCTION errands.force_unlock_workers(worker_ids text[])
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH jobs AS (
        UPDATE errands._jobs j SET locked_at = NULL, locked_by = NULL
        WHERE j.locked_by = ANY(worker_ids) AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots.
    ), slots AS (
        SELECT errands._release_slots(array_agg(jobs.job_queue_id), array_agg(jobs.task_id))
        FROM jobs
    )
    SELECT FROM slots;
    -- A job whose cancellation was requested (even while the update above waited
    -- for its row: it rechecks cancel_reason) ends cancelled, never runs again.
    SELECT errands._end_requested(ARRAY(
        SELECT j.id FROM errands._jobs j
        WHERE j.locked_by = ANY(worker_ids) AND j.cancel_reason IS NOT NULL));
    -- A queue lock of theirs no locked job accounts for is released outright.
    UPDATE errands._queues q SET running = 0, locked_at = NULL, locked_by = NULL
    WHERE q.locked_by = ANY(worker_ids)
      AND NOT EXISTS (SELECT 1 FROM errands._jobs j
                      WHERE j.job_queue_id = q.id AND j.locked_at IS NOT NULL);
$function$;

-- FUNCTION errands.get_jobs(text,text[],integer,text[],boolean)
-- ACL: postgres=X/postgres
-- comment: Worker API. Locks and returns up to job_count runnable jobs (due, not running,
--          attempts left, task in task_identifiers, no forbidden flag) in priority, run_at,
--          id order, with attempts + 1 and locked_by = worker_id. A named queue yields no
--          more jobs than its free slots (concurrency, default 1: its head job, and none
--          while one of its jobs runs). Flow control: paused queues and tasks yield
--          nothing; concurrency and rate limits of queues and tasks hold for all workers.
--          async_commit: when the fetch took only jobs without a queue and of tasks
--          without limits, the calling transaction commits without waiting for its WAL
--          flush (SET LOCAL synchronous_commit = off; a fetch lost in a crash only means
--          its jobs run again).
CREATE OR REPLACE FUNCTION errands.get_jobs(worker_id text, task_identifiers text[], job_count integer DEFAULT 1, forbidden_flags text[] DEFAULT NULL::text[], async_commit boolean DEFAULT false)
 RETURNS SETOF errands.jobs
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
 SET jit TO 'off'
 SET enable_bitmapscan TO 'off'
 SET enable_seqscan TO 'off'
AS $function$
DECLARE
    v_task_ids integer[];
    v_task_caps integer[];   -- per task: the most jobs this fetch may take of it
    v_limited integer[];     -- those of v_task_ids with a concurrency or rate limit
    v_forbidden text[] := CASE WHEN cardinality(get_jobs.forbidden_flags) > 0
                               THEN get_jobs.forbidden_flags END;
    v_now timestamptz := now();
    v_clock timestamptz;     -- start time recorded for rate limits
    v_ids bigint[];          -- jobs taken
    v_id_tasks integer[];    -- their tasks
    v_heads bigint[];        -- jobs of named queues (then: those locked)
    v_head_queues integer[]; -- their queues
    v_head_tasks integer[];  -- their tasks
    v_locked_queues integer[]; -- the queues of v_heads this fetch locked
BEGIN
    IF get_jobs.worker_id IS NULL OR get_jobs.worker_id = '' THEN
        RAISE EXCEPTION 'errands: worker_id must not be empty, got %',
            errands._describe(get_jobs.worker_id) USING ERRCODE = '22023';
    END IF;
    IF get_jobs.job_count IS NULL OR get_jobs.job_count < 1 THEN
        RAISE EXCEPTION 'errands: job_count must be at least 1, got %',
            coalesce(get_jobs.job_count::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- Paused tasks, and tasks at their concurrency or rate limit, are left out
    -- here: their waiting jobs are not read at all (flow control, 35_flow_control.sql).
    SELECT array_agg(t.id), array_agg(c.cap),
           array_agg(t.id) FILTER (WHERE t.concurrency IS NOT NULL OR t.rate_limit IS NOT NULL)
    INTO v_task_ids, v_task_caps, v_limited
    FROM errands._tasks t
    CROSS JOIN LATERAL (
        SELECT CASE WHEN t.concurrency IS NULL AND t.rate_limit IS NULL THEN get_jobs.job_count
                    ELSE least(get_jobs.job_count, t.concurrency - t.running,
                               errands._rate_room(t.starts, t.rate_limit, t.rate_period, v_now))
               END AS cap
    ) c
    WHERE t.identifier = ANY(get_jobs.task_identifiers) AND NOT t.paused AND c.cap > 0;
    IF v_task_ids IS NULL THEN
        RETURN;
    END IF;
    -- 1. The best job_count candidates: jobs without a queue (row-locked as they
    --    are read, SKIP LOCKED) and the first jobs of each named queue that may
    --    start one (not paused, not full: one for a serial queue).
    SELECT array_agg(c.id) FILTER (WHERE c.job_queue_id IS NULL),
           array_agg(c.task_id) FILTER (WHERE c.job_queue_id IS NULL),
           array_agg(c.id) FILTER (WHERE c.job_queue_id IS NOT NULL),
           array_agg(c.job_queue_id) FILTER (WHERE c.job_queue_id IS NOT NULL),
           array_agg(c.task_id) FILTER (WHERE c.job_queue_id IS NOT NULL)
    INTO v_ids, v_id_tasks, v_heads, v_head_queues, v_head_tasks
    FROM (
        SELECT u.id, u.job_queue_id, u.task_id, u.priority, u.run_at
        FROM unnest(v_task_ids, v_task_caps) AS tid(task_id, cap)
        CROSS JOIN LATERAL (
            -- One index probe per distinct priority of the task (a loose index
            -- scan); with the priority fixed, run_at <= now ends the range scan,
            -- so future-scheduled jobs are never walked.
            WITH RECURSIVE prio(p) AS (
                SELECT min(j.priority) FROM errands._jobs j
                WHERE j.task_id = tid.task_id AND j.is_available AND j.job_queue_id IS NULL
                UNION ALL
                SELECT (SELECT min(j.priority) FROM errands._jobs j
                        WHERE j.task_id = tid.task_id AND j.is_available
                          AND j.job_queue_id IS NULL AND j.priority > prio.p)
                FROM prio WHERE prio.p IS NOT NULL
            )
            SELECT d.id, d.job_queue_id, d.task_id, d.priority, d.run_at
            FROM prio CROSS JOIN LATERAL (
                SELECT j.id, j.job_queue_id, j.task_id, j.priority, j.run_at
                FROM errands._jobs j
                WHERE j.task_id = tid.task_id AND j.priority = prio.p
                  AND j.is_available AND j.job_queue_id IS NULL
                  AND j.run_at <= v_now
                  AND (v_forbidden IS NULL OR j.flags IS NULL OR NOT j.flags ?| v_forbidden)
                ORDER BY j.run_at, j.id
                LIMIT tid.cap
                FOR UPDATE SKIP LOCKED
            ) d
            ORDER BY d.priority, d.run_at, d.id
            LIMIT tid.cap
        ) u
        UNION ALL
        -- Named queues: the queues that may start a job (not full, not paused)
        -- walked by their due heads in job order, one priority at a time (a loose
        -- scan of queues_ready, 32_queue_heads.sql), until job_count jobs are
        -- found; each is probed for its best due jobs, never more than its free
        -- slots, so never two jobs of a serial queue in a batch (Graphile's #621).
        (SELECT h.id, h.job_queue_id, h.task_id, h.priority, h.run_at
        FROM (
            WITH RECURSIVE prio(p) AS (
                SELECT min(q.head_priority) FROM errands._queues q
                WHERE q.head_id IS NOT NULL AND q.locked_at IS NULL AND NOT q.paused
                UNION ALL
                SELECT (SELECT min(q.head_priority) FROM errands._queues q
                        WHERE q.head_id IS NOT NULL AND q.locked_at IS NULL AND NOT q.paused
                          AND q.head_priority > prio.p)
                FROM prio WHERE prio.p IS NOT NULL
            )
            SELECT r.id, r.concurrency, r.running, r.rate_limit, r.rate_period, r.starts
            FROM prio CROSS JOIN LATERAL (
                SELECT q.id, q.concurrency, q.running, q.rate_limit, q.rate_period, q.starts
                FROM errands._queues q
                WHERE q.head_id IS NOT NULL AND q.locked_at IS NULL AND NOT q.paused
                  AND q.head_priority = prio.p AND q.head_run_at <= v_now
                ORDER BY q.head_run_at, q.head_id
            ) r
        ) q
        CROSS JOIN LATERAL (
            SELECT j.id, j.job_queue_id, j.task_id, j.priority, j.run_at
            FROM errands._jobs j
            WHERE j.job_queue_id = q.id
              AND j.is_available AND j.run_at <= v_now
              AND j.task_id = ANY(v_task_ids)
              AND (v_forbidden IS NULL OR j.flags IS NULL OR NOT j.flags ?| v_forbidden)
            ORDER BY j.priority, j.run_at, j.id
            LIMIT CASE WHEN q.concurrency = 1 AND q.rate_limit IS NULL THEN 1
                       WHEN q.rate_limit IS NULL
                       THEN greatest(0, least(get_jobs.job_count, q.concurrency - q.running))
                       ELSE greatest(0, least(get_jobs.job_count, q.concurrency - q.running,
                                              errands._rate_room(q.starts, q.rate_limit,
                                                                 q.rate_period, v_now))) END
        ) h
        LIMIT get_jobs.job_count)
        ORDER BY 4, 5, 1
        LIMIT get_jobs.job_count
    ) c;

    -- 2. Limited tasks (flow control): lock their rows (in id order: fetches of
    --    one limited task take turns here, before any queue row is locked) and
    --    keep, per task, no more candidates than its free slots and rate allow.
    IF v_limited IS NOT NULL AND (v_id_tasks && v_limited OR v_head_tasks && v_limited) THEN
        PERFORM 1 FROM errands._tasks t
        WHERE t.id = ANY(v_limited) AND (t.id = ANY(v_id_tasks) OR t.id = ANY(v_head_tasks))
        ORDER BY t.id FOR UPDATE;
        v_clock := clock_timestamp();
        -- Kept in candidate order, which the queue step below relies on.
        SELECT array_agg(x.id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NULL),
               array_agg(x.task_id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NULL),
               array_agg(x.id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NOT NULL),
               array_agg(x.job_queue_id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NOT NULL),
               array_agg(x.task_id ORDER BY x.priority, x.run_at, x.id) FILTER (WHERE x.job_queue_id IS NOT NULL)
        INTO v_ids, v_id_tasks, v_heads, v_head_queues, v_head_tasks
        FROM (
            SELECT j.id, j.job_queue_id, j.task_id, j.priority, j.run_at,
                   row_number() OVER (PARTITION BY j.task_id
                                      ORDER BY j.priority, j.run_at, j.id) AS rn
            FROM errands._jobs j
            WHERE j.id = ANY(v_ids) OR j.id = ANY(v_heads)
        ) x
        LEFT JOIN errands._tasks t ON t.id = x.task_id AND t.id = ANY(v_limited)
        WHERE t.id IS NULL
           OR (NOT t.paused
               AND x.rn <= coalesce(least(t.concurrency - t.running,
                                          errands._rate_room(t.starts, t.rate_limit,
                                                             t.rate_period, v_clock)), x.rn));
    END IF;

    -- 3. Queue heads: lock their queues (one another fetch holds is skipped),
    --    keep per queue no more jobs than its free slots and rate allow as of
    --    now, then lock the jobs and count them on their queues.
    IF v_heads IS NOT NULL THEN
        SELECT array_agg(s.id) INTO v_locked_queues FROM (
            SELECT q.id FROM errands._queues q
            WHERE q.id = ANY(v_head_queues) AND q.locked_at IS NULL AND NOT q.paused
            FOR UPDATE SKIP LOCKED
        ) s;
        IF v_locked_queues IS NOT NULL THEN
            v_clock := coalesce(v_clock, clock_timestamp());
            SELECT array_agg(s.id), array_agg(s.job_queue_id), array_agg(s.task_id)
            INTO v_heads, v_head_queues, v_head_tasks FROM (
                SELECT j.id, j.job_queue_id, j.task_id FROM errands._jobs j
                WHERE j.id IN (
                    SELECT h.id
                    FROM (SELECT h.id, h.queue_id,
                                 row_number() OVER (PARTITION BY h.queue_id ORDER BY h.ord) AS rn
                          FROM unnest(v_heads, v_head_queues) WITH ORDINALITY AS h(id, queue_id, ord)
                          WHERE h.queue_id = ANY(v_locked_queues)) h
                    JOIN errands._queues q ON q.id = h.queue_id
                    -- _rate_room is a function call per queue (its subquery keeps
                    -- it from being inlined): only queues with a rate limit pay it.
                    WHERE h.rn <= CASE WHEN q.rate_limit IS NULL THEN q.concurrency - q.running
                                       ELSE least(q.concurrency - q.running,
                                                  errands._rate_room(q.starts, q.rate_limit,
                                                                     q.rate_period, v_clock)) END)
                  AND j.is_available
                FOR UPDATE SKIP LOCKED
            ) s;
        ELSE
            v_heads := NULL;
        END IF;
        IF v_heads IS NOT NULL THEN
            v_ids := v_ids || v_heads;
            v_id_tasks := v_id_tasks || v_head_tasks;
            UPDATE errands._queues q
            SET running = q.running + n.n,
                locked_at = CASE WHEN q.running + n.n >= q.concurrency THEN v_now END,
                locked_by = CASE WHEN q.running + n.n >= q.concurrency THEN get_jobs.worker_id END,
                starts = CASE WHEN q.rate_limit IS NOT NULL
                              THEN errands._record_starts(q.starts, n.n, q.rate_limit, v_clock) END,
                -- Their next heads (32_queue_heads.sql: chosen as errands._queue_head
                -- does, the jobs taken now left out; a take fires no head trigger).
                head_priority = h.priority, head_run_at = h.run_at, head_id = h.id
            FROM (SELECT u.id, count(*)::integer AS n, array_agg(u.job) AS taken
                  FROM unnest(v_head_queues, v_heads) u(id, job) GROUP BY 1) n
            LEFT JOIN LATERAL (
                -- The queue's first job in (priority, run_at, id) order, when it is
                -- due, is its best due job: the head, found with one index probe
                -- (the usual case); LIMIT 1 then never starts the loose scan below.
                (SELECT f.priority, f.run_at, f.id
                 FROM (SELECT j.priority, j.run_at, j.id FROM errands._jobs j
                       WHERE j.job_queue_id = n.id AND j.is_available AND j.id <> ALL(n.taken)
                       ORDER BY j.priority, j.run_at, j.id
                       LIMIT 1) f
                 WHERE f.run_at <= v_now)
                UNION ALL
                (WITH RECURSIVE prio(p) AS (
                    SELECT min(j.priority) FROM errands._jobs j
                    WHERE j.job_queue_id = n.id AND j.is_available AND j.id <> ALL(n.taken)
                    UNION ALL
                    SELECT (SELECT min(j.priority) FROM errands._jobs j
                            WHERE j.job_queue_id = n.id AND j.is_available
                              AND j.id <> ALL(n.taken) AND j.priority > prio.p)
                    FROM prio WHERE prio.p IS NOT NULL
                )
                SELECT e.priority, e.run_at, e.id
                FROM prio CROSS JOIN LATERAL (
                    SELECT j.priority, j.run_at, j.id FROM errands._jobs j
                    WHERE j.job_queue_id = n.id AND j.is_available AND j.priority = prio.p
                      AND j.id <> ALL(n.taken)
                    ORDER BY j.run_at, j.id
                    LIMIT 1
                ) e
                ORDER BY e.run_at > v_now, CASE WHEN e.run_at > v_now THEN e.run_at END,
                         e.priority, e.run_at, e.id
                LIMIT 1)
                LIMIT 1
            ) h ON true
            WHERE q.id = n.id;
        END IF;
    END IF;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;

    -- 4. Count the limited tasks' jobs (their rows are locked since step 2).
    IF v_limited IS NOT NULL AND v_id_tasks && v_limited THEN
        UPDATE errands._tasks t
        SET running = CASE WHEN t.concurrency IS NOT NULL THEN t.running + n.n ELSE 0 END,
            starts = CASE WHEN t.rate_limit IS NOT NULL
                          THEN errands._record_starts(t.starts, n.n, t.rate_limit, v_clock) END
        FROM (SELECT u.id, count(*)::integer AS n FROM unnest(v_id_tasks) u(id)
              WHERE u.id = ANY(v_limited) GROUP BY 1) n
        WHERE t.id = n.id;
    END IF;

    -- The caller's transaction (the worker's: this call alone) may commit without
    -- waiting for its WAL flush: a fetch lost in a server crash leaves its jobs
    -- as they were, to be fetched and run again (at least once holds), and the
    -- completion, a synchronous commit, flushes the fetch's WAL before its own.
    -- Not when it took jobs of named queues or limited tasks: a lost slot count
    -- would let a serial queue or a limit run a second job beside the first.
    -- Saves a flush wait on the add->start path (docs/worker.md).
    IF get_jobs.async_commit AND v_heads IS NULL
       AND NOT coalesce(v_id_tasks && v_limited, false) THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;

    -- 5. Take them.
    RETURN QUERY
    WITH taken AS (
        UPDATE errands._jobs j
        SET attempts = j.attempts + 1, locked_at = v_now, locked_by = get_jobs.worker_id
        WHERE j.id = ANY(v_ids)
        RETURNING j.*
    )
    SELECT (errands._job_row(tk::errands._jobs, q.queue_name, t.identifier)).*
    FROM taken tk
    JOIN errands._tasks t ON t.id = tk.task_id
    LEFT JOIN errands._queues q ON q.id = tk.job_queue_id
    ORDER BY tk.priority, tk.run_at, tk.id;
END
$function$;

-- FUNCTION errands.grant_dashboard(regrole,boolean)
-- ACL: postgres=X/postgres
-- comment: Gives role what the web dashboard (errands dashboard) needs: USAGE on schema
--          errands, SELECT on the views errands.jobs, finished_jobs, flow_steps, limits,
--          queues and task_limits (payloads and results included; never the private
--          tables) and EXECUTE on dashboard_counts, dashboard_chart, dashboard_durations, dashboard_cron,
--          dashboard_workers and dashboard_job_ids, and on the monitoring functions
--          job_counts, oldest_ready_run_at and worker_counts (its /metrics). With
--          read_only false also EXECUTE on the functions its actions call: reschedule_jobs,
--          cancel_jobs, remove_jobs, set_queue_limits, set_task_limits, pause_queue,
--          resume_queue, pause_task, resume_task and run_cron_now. It never revokes: to make
--          a role read-only again, revoke or recreate it. Run it as the owner of the errands
--          schema or a superuser.
CREATE OR REPLACE FUNCTION errands.grant_dashboard(role regrole, read_only boolean DEFAULT true)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_fn text;
    v_name name := (SELECT r.rolname FROM pg_catalog.pg_roles r
                    WHERE r.oid = grant_dashboard.role);
BEGIN
    IF v_name IS NULL THEN
        RAISE EXCEPTION 'errands: grant_dashboard needs a role, got NULL' USING ERRCODE = '22023';
    END IF;
    IF grant_dashboard.read_only IS NULL THEN
        RAISE EXCEPTION 'errands: grant_dashboard needs read_only true or false, got NULL'
            USING ERRCODE = '22023';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA errands TO %I', v_name);
    -- The pages: jobs and history, flows, flow control, workers, cron, counts, charts.
    EXECUTE format('GRANT SELECT ON errands.jobs, errands.finished_jobs, errands.flow_steps, '
                   'errands.limits, errands.queues, errands.task_limits TO %I',
                   v_name);
    FOREACH v_fn IN ARRAY ARRAY['errands.dashboard_counts(bigint)',
                                'errands.dashboard_chart(timestamptz, interval)',
                                'errands.dashboard_durations(timestamptz, interval)',
                                'errands.dashboard_cron()',
                                'errands.dashboard_workers()',
                                'errands.dashboard_job_ids(jsonb, text, boolean, text, bigint, bigint, integer)',
                                -- GET /metrics (errands.metrics_db): counts, no payloads.
                                'errands.job_counts(bigint, integer)',
                                'errands.oldest_ready_run_at()',
                                'errands.worker_counts()'] LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_fn::regprocedure, v_name);
    END LOOP;
    IF grant_dashboard.read_only THEN
        RETURN;
    END IF;
    -- The actions, each one call of the public API.
    FOREACH v_fn IN ARRAY ARRAY[
        'errands.reschedule_jobs(bigint[], timestamptz, integer, integer, integer)',
        'errands.cancel_jobs(bigint[])',
        'errands.remove_jobs(bigint[])',
        'errands.set_queue_limits(text, integer, integer, interval)',
        'errands.set_task_limits(text, integer, integer, interval)',
        'errands.pause_queue(text)', 'errands.resume_queue(text)',
        'errands.pause_task(text)', 'errands.resume_task(text)',
        'errands.run_cron_now(text)'
    ] LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_fn::regprocedure, v_name);
    END LOOP;
END
$function$;

-- FUNCTION errands.grant_enqueue(regrole)
-- ACL: postgres=X/postgres
-- comment: Lets role enqueue jobs and nothing else (e.g. a PostgREST web role): USAGE on
--          schema errands and EXECUTE on add_job, add_jobs, add_flow, set_traceparent and remove_job (and on the
--          argument parser of errands.job_trigger, so that a table trigger can enqueue as
--          the role). The role cannot read jobs or payloads (the three functions return
--          payload NULL for a job whose payload the call did not write), fetch, complete,
--          fail or reschedule jobs. Run it as the owner of the errands schema or a
--          superuser.
CREATE OR REPLACE FUNCTION errands.grant_enqueue(role regrole)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_fn text;
    v_name name := (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = grant_enqueue.role);
BEGIN
    IF v_name IS NULL THEN
        RAISE EXCEPTION 'errands: grant_enqueue needs a role, got NULL' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA errands TO %I', v_name);
    FOREACH v_fn IN ARRAY ARRAY[
        'errands.add_job(text, json, text, timestamptz, integer, text, integer, text[], text, interval, bigint[])',
        'errands.add_jobs(errands.job_spec[], boolean)',
        'errands.add_flow(jsonb)',
        'errands.set_traceparent(bigint[], text)',
        'errands.remove_job(text)',
        -- errands.job_trigger runs as the role doing the DML and calls it
        'errands._job_trigger_options(text[], oid, text, name, name)'
    ] LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I',
                       v_fn::regprocedure, v_name);
    END LOOP;
END
$function$;

-- FUNCTION errands.grant_read(regrole)
-- ACL: postgres=X/postgres
-- comment: Lets role read jobs: USAGE on schema errands and SELECT on the errands.jobs,
--          errands.finished_jobs and errands.flow_steps views (payloads and results included; never the
--          private tables) and on the flow-control views errands.limits, errands.queues and
--          errands.task_limits, and EXECUTE on errands.watch_jobs (waiting for jobs) and on the
--          monitoring functions errands.job_counts, errands.oldest_ready_run_at and errands.worker_counts. With it, add_job, add_jobs and
--          remove_job (if also granted) return payloads of jobs the call did not write.
--          Run it as the owner of the errands schema or a superuser.
CREATE OR REPLACE FUNCTION errands.grant_read(role regrole)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_name name := (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = grant_read.role);
BEGIN
    IF v_name IS NULL THEN
        RAISE EXCEPTION 'errands: grant_read needs a role, got NULL' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA errands TO %I', v_name);
    EXECUTE format('GRANT SELECT ON errands.jobs TO %I', v_name);
    EXECUTE format('GRANT SELECT ON errands.finished_jobs TO %I', v_name);
    -- Waiting reads states and results: a reader's right, not an enqueuer's.
    EXECUTE format('GRANT EXECUTE ON FUNCTION errands.watch_jobs(bigint[], interval) TO %I', v_name);
    EXECUTE format('GRANT SELECT ON errands.flow_steps TO %I', v_name);
    -- Flow control as it stands (35_flow_control.sql); changing it stays the owner's.
    EXECUTE format('GRANT SELECT ON errands.limits, errands.queues, errands.task_limits TO %I',
                   v_name);
    -- Monitoring figures (47_metrics.sql): counts, no payloads.
    EXECUTE format('GRANT EXECUTE ON FUNCTION errands.job_counts(bigint, integer), '
                   'errands.oldest_ready_run_at(), errands.worker_counts() TO %I', v_name);
END
$function$;

-- FUNCTION errands.grant_worker(regrole)
-- ACL: postgres=X/postgres
-- comment: Gives role what an errands worker needs: everything grant_enqueue gives, EXECUTE
--          on the worker functions (get_jobs, worker_complete_jobs, worker_fail_jobs,
--          worker_return_jobs, worker_snooze_jobs, worker_fail_jobs_now, worker_cancel_jobs,
--          worker_cancel_requests, next_start_at, reset_locked, try_lock_worker,
--          register_worker, heartbeat, rescue_workers, unregister_worker), the admin
--          functions (complete_jobs, cancel_jobs, permanently_fail_jobs, reschedule_jobs,
--          force_unlock_workers), cleanup, prune_finished_jobs, dependency_results, cancel_flow, the cron
--          functions if cron is installed when it runs, and what grant_read gives (SELECT on
--          the errands.jobs and errands.finished_jobs views, never on the private tables).
--          Run it again after an upgrade adds functions. Run it as the owner of the
--          errands schema or a superuser.
CREATE OR REPLACE FUNCTION errands.grant_worker(role regrole)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_fn regprocedure;
    v_name name := (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = grant_worker.role);
BEGIN
    IF v_name IS NULL THEN
        RAISE EXCEPTION 'errands: grant_worker needs a role, got NULL' USING ERRCODE = '22023';
    END IF;
    PERFORM errands.grant_enqueue(grant_worker.role);
    -- The worker, admin and cleanup functions by name, and the cron functions
    -- (public functions whose name contains cron) when cron is installed.
    FOR v_fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'errands'::regnamespace
          AND p.prokind = 'f'
          AND (p.proname = ANY (ARRAY['get_jobs', 'worker_complete_jobs', 'worker_fail_jobs',
                                      'worker_return_jobs', 'worker_snooze_jobs',
                                      'worker_fail_jobs_now', 'worker_cancel_jobs',
                                      'worker_cancel_requests', 'cancel_jobs',
                                      'next_start_at',
                                      'reset_locked', 'complete_jobs',
                                      'permanently_fail_jobs', 'reschedule_jobs',
                                      'force_unlock_workers', 'cleanup',
                                      'prune_finished_jobs',
                                      -- flows
                                      'dependency_results', 'cancel_flow',
                                      -- crashed-worker rescue
                                      'try_lock_worker', 'register_worker', 'heartbeat',
                                      'rescue_workers', 'unregister_worker']::name[])
               OR (left(p.proname, 1) <> '_' AND strpos(p.proname, 'cron') > 0))
        ORDER BY p.oid
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', v_fn, v_name);
    END LOOP;
    PERFORM errands.grant_read(grant_worker.role);
END
$function$;

-- FUNCTION errands.heartbeat(text)
-- ACL: postgres=X/postgres
-- comment: Worker API. Sets the worker's last_heartbeat to now(). Returns false when the
--          worker is not registered (it was declared dead: register again).
CREATE OR REPLACE FUNCTION errands.heartbeat(worker_id text)
 RETURNS boolean
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH hb AS (
        UPDATE errands._workers w SET last_heartbeat = now()
        WHERE w.id = heartbeat.worker_id
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM hb)
$function$;

-- FUNCTION errands.import_graphile(text,boolean)
-- ACL: postgres=X/postgres
-- comment: Copies the jobs and known crontab state of a Graphile Worker (0.13 or later)
--          schema into Errands, in the caller's transaction, and returns what it copied:
--          one row per item (pending, scheduled, retrying, failed: jobs copied in that
--          state; crontabs: known crontab rows added or moved forward; already_imported,
--          running, key_conflict: jobs skipped because an earlier run copied them, because
--          a Graphile worker is running them (stop Graphile's workers and run it again), or
--          because an Errands job has their key). Idempotent: each copied job is
--          remembered in errands._graphile_imports. dry_run counts without writing.
--          Graphile's tables are locked (SHARE ROW EXCLUSIVE) until the transaction ends.
--          Runs as its caller (not SECURITY DEFINER), who must see every row of the Graphile
--          tables (their owner or a superuser) and own the errands tables.
CREATE OR REPLACE FUNCTION errands.import_graphile(schema text DEFAULT 'graphile_worker'::text, dry_run boolean DEFAULT false)
 RETURNS TABLE(item text, count bigint)
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_src text;
    v_counts jsonb;
    v_crontabs bigint;
    v_items CONSTANT text[] := ARRAY['pending', 'scheduled', 'retrying', 'failed', 'crontabs',
                                     'already_imported', 'running', 'key_conflict'];
    v_cron_changes CONSTANT text := $q$
        FROM %1$I._private_known_crontabs g
        LEFT JOIN errands._known_crontabs k ON k.identifier = g.identifier
        WHERE k.identifier IS NULL OR k.known_since > g.known_since
           OR g.last_execution > coalesce(k.last_execution, '-infinity')
    $q$;
BEGIN
    IF dry_run IS NULL THEN
        RAISE EXCEPTION 'errands: import_graphile: dry_run must not be NULL' USING ERRCODE = '22004';
    END IF;
    PERFORM errands._graphile_check(schema);
    -- Graphile workers and enqueuers wait until this transaction ends, and a
    -- concurrent import waits for this one: the counts below are what is written.
    EXECUTE format('LOCK TABLE %1$I._private_jobs, %1$I._private_known_crontabs IN SHARE ROW EXCLUSIVE MODE',
                   schema);
    v_src := errands._graphile_source(schema);
    EXECUTE format('SELECT coalesce(jsonb_object_agg(outcome, n), ''{}'') FROM (SELECT outcome, count(*) AS n FROM (%s) s GROUP BY outcome) c',
                   v_src) INTO v_counts;
    EXECUTE format('SELECT count(*) ' || v_cron_changes, schema) INTO v_crontabs;
    v_counts := v_counts || jsonb_build_object('crontabs', v_crontabs);

    IF NOT dry_run THEN
        v_src := format('SELECT * FROM (%s) s WHERE outcome IN (''pending'', ''scheduled'', ''retrying'', ''failed'')',
                        v_src);
        EXECUTE format('INSERT INTO errands._tasks (identifier) SELECT DISTINCT identifier FROM (%s) s
                        ON CONFLICT (identifier) DO NOTHING', v_src);
        EXECUTE format('INSERT INTO errands._queues (queue_name) SELECT DISTINCT queue_name FROM (%s) s
                        WHERE queue_name IS NOT NULL ON CONFLICT (queue_name) DO NOTHING', v_src);
        -- New queues and tasks take the limits set for their names or patterns.
        IF EXISTS (SELECT 1 FROM errands._queue_limits) THEN
            PERFORM errands._apply_queue_limits('*');
        END IF;
        IF EXISTS (SELECT 1 FROM errands._task_limits) THEN
            LOCK TABLE errands._jobs IN EXCLUSIVE MODE;
            PERFORM errands._apply_task_limits('*');
        END IF;
        -- Ids are drawn first so the mapping can pair each source job with its copy.
        EXECUTE format($q$
            WITH src AS MATERIALIZED (
                SELECT s.*, nextval(pg_get_serial_sequence('errands._jobs', 'id')) AS job_id
                FROM (%s) s
            ), copied AS (
                INSERT INTO errands._jobs (id, job_queue_id, task_id, payload, priority, run_at,
                                           attempts, max_attempts, last_error, created_at,
                                           key, revision, flags)
                SELECT src.job_id, q.id, t.id, src.payload, src.priority, src.run_at,
                       src.attempts, src.max_attempts, src.last_error, src.created_at,
                       src.key, src.revision, src.flags
                FROM src
                JOIN errands._tasks t ON t.identifier = src.identifier
                LEFT JOIN errands._queues q ON q.queue_name = src.queue_name
            )
            INSERT INTO errands._graphile_imports (source_schema, source_id, source_created_at, job_id)
            SELECT %L, src.source_id, src.created_at, src.job_id FROM src
        $q$, v_src, schema);
        EXECUTE format($q$
            INSERT INTO errands._known_crontabs AS k (identifier, known_since, last_execution)
            SELECT g.identifier, g.known_since, g.last_execution %s
            ON CONFLICT (identifier) DO UPDATE
            SET known_since = least(k.known_since, excluded.known_since),
                last_execution = greatest(k.last_execution, excluded.last_execution)
        $q$, format(v_cron_changes, schema));
        IF coalesce((v_counts->>'pending')::bigint, 0) + coalesce((v_counts->>'retrying')::bigint, 0) > 0 THEN
            PERFORM errands._notify();
        END IF;
    END IF;
    RETURN QUERY
        SELECT i, coalesce((v_counts->>i)::bigint, 0)
        FROM unnest(v_items) WITH ORDINALITY AS u(i, n) ORDER BY n;
END
$function$;

-- FUNCTION errands.job_counts(bigint,integer)
-- ACL: postgres=X/postgres
-- comment: Jobs of errands.jobs by task_identifier, queue_name and state. Exact while the
--          table holds fewer than exact_below rows (planner estimate); otherwise running,
--          waiting and failed jobs are still counted exactly (through the partial index
--          jobs_unavailable) and pending, scheduled and retrying ones estimated from a
--          block sample of about sample_rows rows scaled to the estimated table size
--          (estimated true).
CREATE OR REPLACE FUNCTION errands.job_counts(exact_below bigint DEFAULT 100000, sample_rows integer DEFAULT 20000)
 RETURNS TABLE(task_identifier text, queue_name text, state text, jobs bigint, estimated boolean)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_pages double precision;
    v_rows double precision;
    v_percent double precision;
BEGIN
    IF exact_below IS NULL OR exact_below < 0 OR sample_rows IS NULL OR sample_rows < 1 THEN
        RAISE EXCEPTION 'errands: job_counts needs exact_below >= 0 and sample_rows >= 1, got % and %',
            coalesce(exact_below::text, 'NULL'), coalesce(sample_rows::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- The planner's estimate: rows per page at the last ANALYZE times the pages now.
    SELECT c.reltuples / greatest(c.relpages, 1)::double precision,
           pg_catalog.pg_relation_size(c.oid) / current_setting('block_size')::double precision
    INTO v_rows, v_pages
    FROM pg_catalog.pg_class c WHERE c.oid = 'errands._jobs'::regclass;
    -- Never analyzed (reltuples -1): assume 100 rows a page, which errs on the
    -- side of sampling.
    v_rows := CASE WHEN v_rows > 0 THEN v_rows ELSE 100 END * v_pages;
    IF v_rows < exact_below THEN
        RETURN QUERY
        SELECT j.task_identifier, j.queue_name, j.state, count(*), false
        FROM errands.jobs j
        GROUP BY 1, 2, 3;
        RETURN;
    END IF;
    v_percent := least(100, 100 * sample_rows / v_rows);
    -- Running, waiting and failed jobs: exact (65_dashboard.sql), estimated false.
    RETURN QUERY
    SELECT u.task_identifier, u.queue_name, u.state, u.jobs, false
    FROM errands._unavailable_counts() u;
    -- A view cannot be sampled: the rows of errands.jobs from the table, the
    -- state as errands._job_row computes it; only the available ones (pending,
    -- scheduled, retrying) are kept from the sample.
    RETURN QUERY
    WITH s AS (
        SELECT t.identifier AS task_identifier, q.queue_name,
               (errands._job_row(j, q.queue_name, t.identifier)).state AS state,
               count(*) AS n
        FROM errands._jobs j TABLESAMPLE SYSTEM (v_percent)
        JOIN errands._tasks t ON t.id = j.task_id
        LEFT JOIN errands._queues q ON q.id = j.job_queue_id
        GROUP BY 1, 2, 3
    )
    SELECT x.task_identifier, x.queue_name, x.state, x.n, true
    FROM (SELECT s.task_identifier, s.queue_name, s.state,
                 round(s.n * v_rows / greatest(sum(s.n) OVER (), 1))::bigint AS n
          FROM s) x
    WHERE x.state IN ('pending', 'scheduled', 'retrying');
END
$function$;

-- FUNCTION errands.job_trigger()
-- ACL: postgres=X/postgres
-- comment: Trigger function that enqueues a job: errands.job_trigger(task, 'name=value', ...).
--          Options: queue_name, priority, max_attempts, run_in (interval: run_at = now() +
--          run_in), timeout, flags (a,b), job_key (template, {column} from the row),
--          job_key_mode (replace, preserve_run_at, unsafe_dedupe), batch (statement level).
--          Payload: {"op", "schema", "table", "new", "old"} with the row(s). FOR EACH ROW:
--          one job per row; FOR EACH STATEMENT with REFERENCING NEW/OLD TABLE: one job per
--          row through one add_jobs call (an UPDATE's old row paired by primary key), or with batch=true one job holding the rows as
--          arrays. Runs as the role doing the DML, which needs errands.grant_enqueue.
--          Bad arguments raise 22023; errands.check_job_triggers finds them at CREATE time.
CREATE OR REPLACE FUNCTION errands.job_trigger()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_new_table name;
    v_old_table name;
    v_opt jsonb;
    v_row jsonb;
    v_key text;
    v_parts text[];
    v_value text;
    v_run_at timestamptz;
    v_flags text[];
    v_payload json;
    v_rows_table name;
    v_key_sql text := 'NULL::text';
    v_join text;
    v_specs errands.job_spec[];
    i int;
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        SELECT t.tgnewtable, t.tgoldtable INTO v_new_table, v_old_table
        FROM pg_catalog.pg_trigger t WHERE t.tgrelid = TG_RELID AND t.tgname = TG_NAME;
    END IF;
    v_opt := errands._job_trigger_options(TG_ARGV, TG_RELID, TG_LEVEL, v_new_table, v_old_table);
    v_run_at := now() + (v_opt ->> 'run_in')::interval;
    v_flags := ARRAY(SELECT jsonb_array_elements_text(v_opt -> 'flags'));
    v_parts := ARRAY(SELECT jsonb_array_elements_text(v_opt -> 'key_parts'));

    IF TG_LEVEL = 'ROW' THEN
        v_row := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
        IF v_parts IS NOT NULL AND cardinality(v_parts) > 0 THEN
            v_key := v_parts[1];
            FOR i IN 2 .. cardinality(v_parts) BY 2 LOOP
                v_value := v_row ->> v_parts[i];
                IF v_value IS NULL THEN
                    RAISE EXCEPTION 'errands.job_trigger on %: job_key % needs column %, which is NULL',
                        TG_RELID::regclass, quote_literal(v_opt ->> 'job_key'),
                        quote_ident(v_parts[i]) USING ERRCODE = '22023';
                END IF;
                v_key := v_key || v_value || v_parts[i + 1];
            END LOOP;
        END IF;
        PERFORM errands.add_job(
            v_opt ->> 'identifier',
            json_build_object('op', TG_OP, 'schema', TG_TABLE_SCHEMA, 'table', TG_TABLE_NAME,
                              'new', CASE WHEN TG_OP <> 'DELETE' THEN to_json(NEW) END,
                              'old', CASE WHEN TG_OP <> 'INSERT' THEN to_json(OLD) END),
            queue_name => v_opt ->> 'queue_name',
            run_at => v_run_at,
            max_attempts => (v_opt ->> 'max_attempts')::integer,
            job_key => v_key,
            priority => (v_opt ->> 'priority')::integer,
            flags => nullif(v_flags, '{}'),
            job_key_mode => v_opt ->> 'job_key_mode',
            timeout => (v_opt ->> 'timeout')::interval);
        IF TG_WHEN IN ('BEFORE', 'INSTEAD OF') THEN
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END IF;
        RETURN NULL;
    END IF;

    IF (v_opt ->> 'batch')::boolean THEN
        -- One job for the statement: the rows as arrays (none without a
        -- transition table); a statement that touched no row adds nothing.
        IF v_new_table IS NOT NULL OR v_old_table IS NOT NULL THEN
            EXECUTE format('SELECT json_build_object(''op'', $1, ''schema'', $2, ''table'', $3, '
                           '''new'', %s, ''old'', %s)',
                           CASE WHEN v_new_table IS NULL THEN 'NULL::json'
                                ELSE format('(SELECT json_agg(r) FROM %I r)', v_new_table) END,
                           CASE WHEN v_old_table IS NULL THEN 'NULL::json'
                                ELSE format('(SELECT json_agg(r) FROM %I r)', v_old_table) END)
            INTO v_payload USING TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME;
            IF v_payload ->> 'new' IS NULL AND v_payload ->> 'old' IS NULL THEN
                RETURN NULL;
            END IF;
        ELSE
            v_payload := json_build_object('op', TG_OP, 'schema', TG_TABLE_SCHEMA,
                                           'table', TG_TABLE_NAME, 'new', NULL, 'old', NULL);
        END IF;
        PERFORM errands.add_job(
            v_opt ->> 'identifier', v_payload,
            queue_name => v_opt ->> 'queue_name',
            run_at => v_run_at,
            max_attempts => (v_opt ->> 'max_attempts')::integer,
            job_key => v_opt ->> 'job_key',
            priority => (v_opt ->> 'priority')::integer,
            flags => nullif(v_flags, '{}'),
            job_key_mode => v_opt ->> 'job_key_mode',
            timeout => (v_opt ->> 'timeout')::interval);
        RETURN NULL;
    END IF;

    -- One job per row of the transition table (the new rows; the old ones on
    -- DELETE), all in one add_jobs call. On UPDATE with both transition tables
    -- and a primary key, each new row is paired with its old row by the key's
    -- text form (a row whose key changed gets old = null).
    v_rows_table := CASE WHEN TG_OP = 'DELETE' THEN v_old_table ELSE v_new_table END;
    IF v_rows_table IS NULL THEN
        RAISE EXCEPTION 'errands.job_trigger on %: a % statement needs REFERENCING % TABLE',
            TG_RELID::regclass, TG_OP, CASE WHEN TG_OP = 'DELETE' THEN 'OLD' ELSE 'NEW' END
            USING ERRCODE = '22023';
    END IF;
    IF TG_OP = 'UPDATE' AND v_old_table IS NOT NULL THEN
        SELECT format(' LEFT JOIN %I o ON %s', v_old_table,
                      string_agg(format('o.%1$I::text = r.%1$I::text', a.attname), ' AND '))
        INTO v_join
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
        WHERE i.indrelid = TG_RELID AND i.indisprimary
        HAVING count(*) > 0;
    END IF;
    IF cardinality(v_parts) > 0 THEN
        -- NULL when a column is NULL (|| propagates it); checked below.
        v_key_sql := quote_literal(v_parts[1]);
        FOR i IN 2 .. cardinality(v_parts) BY 2 LOOP
            v_key_sql := format('%s || (x.j ->> %L) || %L', v_key_sql, v_parts[i], v_parts[i + 1]);
        END LOOP;
    END IF;
    EXECUTE format(
        'SELECT array_agg(ROW($1, json_build_object(''op'', $2, ''schema'', $3, ''table'', $4, '
        '''new'', %s, ''old'', %s), $5, $6, $7, %s, $8, $9)::errands.job_spec) '
        'FROM (SELECT to_json(r) AS row, %s AS old_row, %s AS j FROM %I r%s) x',
        CASE WHEN TG_OP = 'DELETE' THEN 'NULL::json' ELSE 'x.row' END,
        CASE WHEN TG_OP = 'DELETE' THEN 'x.row' ELSE 'x.old_row' END,
        v_key_sql,
        CASE WHEN v_join IS NOT NULL THEN 'to_json(o)' ELSE 'NULL::json' END,
        CASE WHEN cardinality(v_parts) > 0 THEN 'to_jsonb(r)' ELSE 'NULL::jsonb' END,
        v_rows_table, coalesce(v_join, ''))
    INTO v_specs
    USING v_opt ->> 'identifier', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME,
          v_opt ->> 'queue_name', v_run_at, (v_opt ->> 'max_attempts')::integer,
          (v_opt ->> 'priority')::integer, nullif(v_flags, '{}');
    IF cardinality(v_parts) > 0
       AND EXISTS (SELECT 1 FROM unnest(v_specs) s WHERE s.job_key IS NULL) THEN
        RAISE EXCEPTION 'errands.job_trigger on %: job_key % needs columns %, one of which is NULL in a row',
            TG_RELID::regclass, quote_literal(v_opt ->> 'job_key'),
            array_to_string(ARRAY(SELECT quote_ident(v_parts[g])
                                  FROM generate_series(2, cardinality(v_parts), 2) g), ', ')
            USING ERRCODE = '22023';
    END IF;
    PERFORM errands.add_jobs(v_specs, v_opt ->> 'job_key_mode' = 'preserve_run_at');
    RETURN NULL;
END
$function$;

-- FUNCTION errands.next_start_at(text[])
-- ACL: postgres=X/postgres
-- comment: Worker API (flow control). The earliest time a rate window that holds work back
--          now reopens: of a task in task_identifiers, or of a named queue with jobs
--          waiting (now: a rate-limited queue has room and jobs due). 'infinity' when rate
--          limits exist but none holds work back now; NULL when no rate limit is set at all. Workers call it when a fetch came back short
--          and sleep until then rather than until their next poll.
CREATE OR REPLACE FUNCTION errands.next_start_at(task_identifiers text[])
 RETURNS timestamp with time zone
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_at timestamptz;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM errands._queue_limits l WHERE l.rate_limit IS NOT NULL)
       AND NOT EXISTS (SELECT 1 FROM errands._task_limits l WHERE l.rate_limit IS NOT NULL) THEN
        RETURN NULL;  -- no rate limit anywhere: nothing will reopen
    END IF;
    -- The start that must leave the window for one more to fit: the
    -- rate_limit-th newest (starts is sorted, and may hold more than rate_limit
    -- entries right after the limit was lowered).
    SELECT min(r.at) INTO v_at FROM (
        SELECT t.starts[cardinality(t.starts) - t.rate_limit + 1] + t.rate_period AS at
        FROM errands._tasks t
        WHERE t.identifier = ANY(next_start_at.task_identifiers)
          AND t.rate_limit IS NOT NULL AND NOT t.paused
          AND errands._rate_room(t.starts, t.rate_limit, t.rate_period, v_now) = 0
        UNION ALL
        -- A queue with room and jobs due: now. A fetch skips a queue whose row
        -- another fetch holds (SKIP LOCKED), so two racing fetches can both
        -- come back short with room left; nothing else would announce it.
        SELECT CASE WHEN errands._rate_room(q.starts, q.rate_limit, q.rate_period, v_now) = 0
                    THEN q.starts[cardinality(q.starts) - q.rate_limit + 1] + q.rate_period
                    ELSE v_now END
        FROM errands._queues q
        WHERE q.rate_limit IS NOT NULL AND NOT q.paused
          AND (errands._rate_room(q.starts, q.rate_limit, q.rate_period, v_now) = 0
               OR (q.locked_at IS NULL
                   AND EXISTS (SELECT 1 FROM errands._jobs j
                               WHERE j.job_queue_id = q.id AND j.is_available
                                 AND j.run_at <= v_now)))
          AND EXISTS (SELECT 1 FROM errands._jobs j
                      WHERE j.job_queue_id = q.id AND j.is_available)
    ) r;
    RETURN coalesce(v_at, 'infinity');
END
$function$;

-- FUNCTION errands.oldest_ready_run_at()
-- ACL: postgres=X/postgres
-- comment: The run_at of the job that has waited longest among those ready to run now
--          (pending, or retrying with its backoff over: not running, attempts left, not
--          waiting for dependencies, run_at passed); NULL when there is none. Reads one
--          index entry per (task, priority) and (queue, priority) that has available jobs.
CREATE OR REPLACE FUNCTION errands.oldest_ready_run_at()
 RETURNS timestamp with time zone
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    WITH RECURSIVE plain AS (
        (SELECT j.task_id, j.priority FROM errands._jobs j
         WHERE j.is_available AND j.job_queue_id IS NULL
         ORDER BY j.task_id, j.priority LIMIT 1)
        UNION ALL
        SELECT n.task_id, n.priority
        FROM plain p, LATERAL (
            SELECT j.task_id, j.priority FROM errands._jobs j
            WHERE j.is_available AND j.job_queue_id IS NULL
              AND (j.task_id, j.priority) > (p.task_id, p.priority)
            ORDER BY j.task_id, j.priority LIMIT 1) n
    ), queued AS (
        (SELECT j.job_queue_id, j.priority FROM errands._jobs j
         WHERE j.is_available AND j.job_queue_id IS NOT NULL
         ORDER BY j.job_queue_id, j.priority LIMIT 1)
        UNION ALL
        SELECT n.job_queue_id, n.priority
        FROM queued p, LATERAL (
            SELECT j.job_queue_id, j.priority FROM errands._jobs j
            WHERE j.is_available AND j.job_queue_id IS NOT NULL
              AND (j.job_queue_id, j.priority) > (p.job_queue_id, p.priority)
            ORDER BY j.job_queue_id, j.priority LIMIT 1) n
    ), heads AS (
        SELECT (SELECT j.run_at FROM errands._jobs j
                WHERE j.is_available AND j.job_queue_id IS NULL
                  AND j.task_id = p.task_id AND j.priority = p.priority
                ORDER BY j.run_at LIMIT 1) AS run_at
        FROM plain p
        UNION ALL
        SELECT (SELECT j.run_at FROM errands._jobs j
                WHERE j.is_available AND j.job_queue_id = p.job_queue_id
                  AND j.priority = p.priority
                ORDER BY j.run_at LIMIT 1)
        FROM queued p
    )
    SELECT min(h.run_at) FROM heads h WHERE h.run_at <= now()
$function$;

-- FUNCTION errands.parse_crontab(text)
-- ACL: postgres=X/postgres
-- comment: Parses a crontab (Graphile Worker format plus A-B/N steps, month and weekday
--          names, @hourly/@daily/@weekly/@monthly/@yearly and the tz option): one row per
--          item with its id, task, the allowed minutes, hours, days of month, months and
--          days of week (0-6, Sunday = 0), options (jsonb: id, tz and the given ones) and
--          payload. Raises SQLSTATE 22023 naming the line number, the problem and the line.
CREATE OR REPLACE FUNCTION errands.parse_crontab(crontab text)
 RETURNS TABLE(line_number integer, id text, task text, minutes integer[], hours integer[], days_of_month integer[], months integer[], days_of_week integer[], options jsonb, payload jsonb)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_lines text[] := regexp_split_to_array(coalesce(crontab, ''), '\r?\n');
    v_n integer;
    v_line text;
    v_rest text;
    v_fields text[];
    v_m text[];
    v_opts text;
    v_msg text;
    v_ids text[] := '{}';
BEGIN
    IF crontab IS NULL THEN
        RAISE EXCEPTION 'errands: crontab is NULL' USING ERRCODE = '22023';
    END IF;
    FOR v_n IN 1 .. cardinality(v_lines) LOOP
        v_line := btrim(v_lines[v_n], E' \t');
        CONTINUE WHEN v_line = '' OR left(v_line, 1) = '#';
        BEGIN
            line_number := v_n;
            IF left(v_line, 1) = '@' THEN
                v_m := regexp_match(v_line, '^(@[a-z]+)(?:\s+(.*))?$');
                v_fields := CASE v_m[1]
                    WHEN '@yearly' THEN '{0,0,1,1,*}' WHEN '@annually' THEN '{0,0,1,1,*}'
                    WHEN '@monthly' THEN '{0,0,1,*,*}' WHEN '@weekly' THEN '{0,0,*,*,0}'
                    WHEN '@daily' THEN '{0,0,*,*,*}' WHEN '@midnight' THEN '{0,0,*,*,*}'
                    WHEN '@hourly' THEN '{0,*,*,*,*}' END;
                IF v_m IS NULL OR v_fields IS NULL THEN
                    PERFORM errands._cron_bad(format('unknown macro %s (expected @hourly, @daily, @weekly, @monthly or @yearly)',
                                                     quote_literal(split_part(v_line, ' ', 1))));
                END IF;
                v_rest := coalesce(v_m[2], '');
            ELSE
                v_m := regexp_match(v_line, '^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*))?$');
                IF v_m IS NULL THEN
                    PERFORM errands._cron_bad('too few fields (expected MIN HOUR DOM MONTH DOW task)');
                END IF;
                v_fields := v_m[1:5];
                v_rest := coalesce(v_m[6], '');
            END IF;
            -- task [?options] [{payload}]
            v_m := regexp_match(v_rest, '^(\S+)(?:\s+(\?\S*))?(?:\s+(.*))?$');
            IF v_m IS NULL THEN
                PERFORM errands._cron_bad('too few fields: no task identifier');
            END IF;
            task := v_m[1];
            IF left(task, 1) IN ('?', '{') OR length(task) > 128 THEN
                PERFORM errands._cron_bad(format('bad task identifier %s', errands._describe(task)));
            END IF;
            v_opts := substr(v_m[2], 2);
            IF v_m[3] IS NOT NULL AND left(v_m[3], 1) <> '{' THEN
                PERFORM errands._cron_bad(format('unexpected %s after the task identifier (expected ?options or a {json} payload)',
                                                 quote_literal(v_m[3])));
            END IF;
            BEGIN
                payload := coalesce(v_m[3], '{}')::jsonb;
            EXCEPTION WHEN invalid_text_representation OR untranslatable_character
                           OR statement_too_complex THEN
                PERFORM errands._cron_bad(format('invalid JSON payload %s', errands._describe(v_m[3])));
            END;
            IF jsonb_typeof(payload) <> 'object' THEN
                PERFORM errands._cron_bad('the payload must be a JSON object');
            END IF;
            minutes := errands._cron_field(v_fields[1], 'minute', 0, 59, NULL);
            hours := errands._cron_field(v_fields[2], 'hour', 0, 23, NULL);
            days_of_month := errands._cron_field(v_fields[3], 'day of month', 1, 31, NULL);
            months := errands._cron_field(v_fields[4], 'month', 1, 12,
                '{jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec}');
            days_of_week := errands._cron_field(v_fields[5], 'day of week', 0, 7,
                '{sun,mon,tue,wed,thu,fri,sat}');
            options := errands._cron_options(v_opts, task);
            id := options->>'id';
            IF id = ANY(v_ids) THEN
                PERFORM errands._cron_bad(format('duplicate id %s (use ?id=... to tell items apart)', quote_literal(id)));
            END IF;
            v_ids := v_ids || id;
        EXCEPTION WHEN invalid_parameter_value THEN
            GET STACKED DIAGNOSTICS v_msg = MESSAGE_TEXT;
            RAISE EXCEPTION 'errands: crontab line %: %: %', v_n, v_msg, quote_literal(v_line)
                USING ERRCODE = '22023';
        END;
        RETURN NEXT;
    END LOOP;
END
$function$;

-- FUNCTION errands.pause_queue(text)
-- ACL: postgres=X/postgres
-- comment: Flow control. No worker starts a job of this queue (or of the queues matching a
--          pattern) until resume_queue; running jobs finish.
CREATE OR REPLACE FUNCTION errands.pause_queue(queue_name text)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM errands._set_limits('queue', pause_queue.queue_name, false, NULL, NULL, NULL, true);
END
$function$;

-- FUNCTION errands.pause_task(text)
-- ACL: postgres=X/postgres
-- comment: Flow control. No worker starts a job of this task (or of the tasks matching a
--          pattern), in any queue, until resume_task; running jobs finish.
CREATE OR REPLACE FUNCTION errands.pause_task(task_identifier text)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM errands._set_limits('task', pause_task.task_identifier, false, NULL, NULL, NULL, true);
END
$function$;

-- FUNCTION errands.permanently_fail_jobs(bigint[],text)
-- ACL: postgres=X/postgres
-- comment: Fails the listed jobs for good (attempts = max_attempts, last_error = the message
--          or "Manually marked as failed") and returns them. Running jobs are skipped unless
--          their lock is stale.
CREATE OR REPLACE FUNCTION errands.permanently_fail_jobs(job_ids bigint[], error_message text DEFAULT NULL::text)
 RETURNS SETOF errands.jobs
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY
    WITH u AS (
        UPDATE errands._jobs j
        SET last_error = coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed'),
            -- Not a try of its own: start and worker are a stale lock's, else NULL.
            errors = errands._add_error(j.errors, j.attempts, j.locked_at, j.locked_by,
                coalesce(permanently_fail_jobs.error_message, 'Manually marked as failed')),
            attempts = j.max_attempts,
            updated_at = now()
        WHERE j.id = ANY(permanently_fail_jobs.job_ids)
          AND (j.locked_at IS NULL OR j.locked_at < now() - errands._stale_lock_age())
        RETURNING j
    )
    SELECT v.* FROM u, LATERAL errands._job_view(u.j) v ORDER BY v.id;
    -- Failed for good, as by a worker: run-anyway dependents go on (25_flows.sql)
    -- and waiters hear of it (17_wait.sql).
    PERFORM errands._dependencies_failed(permanently_fail_jobs.job_ids);
    PERFORM errands._jobs_finished(permanently_fail_jobs.job_ids);
END
$function$;

-- FUNCTION errands.prune_finished_jobs(integer)
-- ACL: postgres=X/postgres
-- comment: Deletes up to max_rows finished jobs whose retention (their task's, else the
--          global) has passed, oldest first, skipping rows another pruner holds and rows
--          a waiter still watches (errands.watch_jobs lease), and the expired leases. Returns how
--          many it deleted: call it again while that equals max_rows. Live workers call it
--          periodically; pg_cron can too (see docs/history.md).
CREATE OR REPLACE FUNCTION errands.prune_finished_jobs(max_rows integer DEFAULT 10000)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_now timestamptz := now();
    v_global interval := coalesce((SELECT s.retention FROM errands._settings s), interval '0');
    -- Nothing finished after now - (shortest retention in use) can be expired:
    -- the index on finished_at bounds the scan with it.
    v_min interval := least(v_global, (SELECT min(t.retention) FROM errands._tasks t));
    v_count integer;
BEGIN
    IF max_rows IS NULL OR max_rows < 1 THEN
        RAISE EXCEPTION 'errands: prune_finished_jobs needs max_rows >= 1, got %',
            coalesce(max_rows::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    WITH expired AS (
        SELECT f.ctid
        FROM errands._finished_jobs f
        WHERE f.finished_at < v_now - v_min
          AND f.finished_at < v_now - coalesce(
                (SELECT t.retention FROM errands._tasks t WHERE t.identifier = f.task_identifier),
                v_global)
          -- Kept while a waiter's lease on it lasts (17_wait.sql).
          AND NOT EXISTS (SELECT FROM errands._job_waiters w
                          WHERE w.job_id = f.id AND w.expires_at > v_now)
          -- Flows (25_flows.sql): kept while a job that depends on it is unfinished.
          AND NOT EXISTS (SELECT 1 FROM errands._job_dependencies d JOIN errands._jobs w ON w.id = d.job_id
                          WHERE d.depends_on = f.id)
        ORDER BY f.finished_at
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM errands._finished_jobs f USING expired WHERE f.ctid = expired.ctid;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    -- Expired leases go too (their waiters gave up or went away).
    WITH expired AS (
        SELECT w.ctid FROM errands._job_waiters w
        WHERE w.expires_at <= v_now
        LIMIT max_rows
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM errands._job_waiters w USING expired WHERE w.ctid = expired.ctid;
    RETURN v_count;
END
$function$;

-- FUNCTION errands.register_worker(text,text,integer)
-- ACL: postgres=X/postgres
-- comment: Worker API. Records (or refreshes) a live worker: id, host, pid, started_at and
--          last_heartbeat = now(). The worker must also hold, for as long as it runs, its
--          session-level advisory lock (try_lock_worker) on a connection that lives as long as
--          it does; rescue_workers treats a worker whose
--          lock no session holds as dead.
CREATE OR REPLACE FUNCTION errands.register_worker(worker_id text, host text DEFAULT NULL::text, pid integer DEFAULT NULL::integer)
 RETURNS void
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT errands.register_worker(register_worker.worker_id, register_worker.host,
                                   register_worker.pid, true)
$function$;

-- FUNCTION errands.register_worker(text,text,integer,boolean)
-- ACL: postgres=X/postgres
-- comment: Worker API. Records (or refreshes) a live worker like register_worker(worker_id,
--          host, pid). session_lock => true: the worker holds its session-level advisory lock
--          (try_lock_worker) on a connection that lives as long as it does, and rescue_workers declares it dead as soon as no session holds that
--          lock. session_lock => false (a worker behind a transaction-pooling PgBouncer, which
--          cannot keep a session): it is declared dead only when its heartbeat is older than
--          rescue_workers' heartbeat_timeout.
CREATE OR REPLACE FUNCTION errands.register_worker(worker_id text, host text, pid integer, session_lock boolean)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF register_worker.worker_id IS NULL OR register_worker.worker_id = '' THEN
        RAISE EXCEPTION 'errands: worker_id must not be empty' USING ERRCODE = '22023';
    END IF;
    IF register_worker.session_lock IS NULL THEN
        RAISE EXCEPTION 'errands: session_lock must be true or false, got NULL'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO errands._workers AS w (id, host, pid, started_at, last_heartbeat, session_lock)
    VALUES (register_worker.worker_id, register_worker.host, register_worker.pid, now(), now(),
            register_worker.session_lock)
    ON CONFLICT (id) DO UPDATE
        SET host = EXCLUDED.host, pid = EXCLUDED.pid, last_heartbeat = now(),
            session_lock = EXCLUDED.session_lock;
END
$function$;

-- FUNCTION errands.remove_job(text)
-- ACL: postgres=X/postgres
-- comment: Deletes the job holding job_key when it is not running and returns it. A running
--          job instead loses its key and gets attempts = max_attempts, so it will not be
--          retried. Returns NULL when no job has the key. A caller that may not read jobs
--          (no SELECT on errands.jobs) gets the row with payload and last_error NULL. Jobs
--          waiting for a deleted job (depends_on, flows) are cancelled, recursively.
CREATE OR REPLACE FUNCTION errands.remove_job(job_key text)
 RETURNS errands.jobs
 LANGUAGE plpgsql
 STRICT SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_row errands._jobs;
BEGIN
    -- FOR UPDATE waits for a fetch that is locking the job right now.
    SELECT * INTO v_row FROM errands._jobs j WHERE j.key = remove_job.job_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_row.locked_at IS NULL OR v_row.locked_at < now() - errands._stale_lock_age() THEN
        DELETE FROM errands._jobs j WHERE j.id = v_row.id;
        -- Flow control: a job removed under a stale lock frees its slots.
        IF v_row.locked_at IS NOT NULL THEN
            PERFORM errands._release_slots(ARRAY[v_row.job_queue_id], ARRAY[v_row.task_id]);
        END IF;
        -- Flows (25_flows.sql): what waited for it will not run.
        PERFORM errands._cancel_dependents(ARRAY[v_row.id], 'was removed');
    ELSE
        -- Running: it cannot be stopped, so it loses its key and will not retry.
        UPDATE errands._jobs j
        SET key = NULL, attempts = j.max_attempts, updated_at = now()
        WHERE j.id = v_row.id
        RETURNING j.* INTO v_row;
    END IF;
    IF errands._caller_reads_jobs() THEN
        RETURN errands._job_view(v_row);
    END IF;
    RETURN errands._hide_payload(errands._job_view(v_row), NULL);
END
$function$;

-- FUNCTION errands.remove_jobs(bigint[])
-- ACL: postgres=X/postgres
-- comment: Deletes the listed jobs that are not running (nothing is kept in history) and
--          returns their ids; jobs waiting for them (workflows) are cancelled. Running jobs
--          are left alone: cancel them with cancel_jobs. NULL: 22023.
CREATE OR REPLACE FUNCTION errands.remove_jobs(job_ids bigint[])
 RETURNS SETOF bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_gone bigint[];
BEGIN
    IF remove_jobs.job_ids IS NULL THEN
        RAISE EXCEPTION 'errands: remove_jobs needs an array of job ids, got NULL'
            USING ERRCODE = '22023';
    END IF;
    -- Running jobs stay (cancel them instead): their worker would report on a
    -- row that is gone and their queue and task slots would need releasing.
    WITH gone AS (
        DELETE FROM errands._jobs j
        WHERE j.id = ANY(remove_jobs.job_ids) AND j.locked_at IS NULL
        RETURNING j.id
    )
    SELECT array_agg(gone.id ORDER BY gone.id) INTO v_gone FROM gone;
    -- As cleanup's DELETE_PERMAFAILED_JOBS: what waited for them will not run,
    -- and waiters (17_wait.sql) hear that they are gone.
    PERFORM errands._cancel_dependents(v_gone, 'was removed');
    PERFORM errands._jobs_finished(v_gone);
    RETURN QUERY SELECT unnest(coalesce(v_gone, '{}'));
END
$function$;

-- FUNCTION errands.reschedule_jobs(bigint[],timestamp with time zone,integer,integer,integer)
-- ACL: postgres=X/postgres
-- comment: Changes run_at, priority, attempts and/or max_attempts (each NULL argument leaves
--          its column alone) of the listed jobs and returns them. Running jobs are skipped
--          unless their lock is stale. last_error is kept.
CREATE OR REPLACE FUNCTION errands.reschedule_jobs(job_ids bigint[], run_at timestamp with time zone DEFAULT NULL::timestamp with time zone, priority integer DEFAULT NULL::integer, attempts integer DEFAULT NULL::integer, max_attempts integer DEFAULT NULL::integer)
 RETURNS SETOF errands.jobs
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF reschedule_jobs.priority NOT BETWEEN -32768 AND 32767 THEN
        RAISE EXCEPTION 'errands: priority must be between -32768 and 32767, got %',
            reschedule_jobs.priority USING ERRCODE = '22023';
    END IF;
    IF reschedule_jobs.attempts NOT BETWEEN 0 AND 32767 THEN
        RAISE EXCEPTION 'errands: attempts must be between 0 and 32767, got %',
            reschedule_jobs.attempts USING ERRCODE = '22023';
    END IF;
    IF reschedule_jobs.max_attempts NOT BETWEEN 1 AND 32767 THEN
        RAISE EXCEPTION 'errands: max_attempts must be between 1 and 32767, got %',
            reschedule_jobs.max_attempts USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH u AS (
        UPDATE errands._jobs j
        SET run_at = coalesce(reschedule_jobs.run_at, j.run_at),
            priority = coalesce(reschedule_jobs.priority, j.priority),
            attempts = coalesce(reschedule_jobs.attempts, j.attempts),
            max_attempts = coalesce(reschedule_jobs.max_attempts, j.max_attempts),
            updated_at = now()
        WHERE j.id = ANY(reschedule_jobs.job_ids)
          AND (j.locked_at IS NULL OR j.locked_at < now() - errands._stale_lock_age())
        RETURNING j
    )
    SELECT v.* FROM u, LATERAL errands._job_view(u.j) v ORDER BY v.id;
    IF EXISTS (SELECT 1 FROM errands._jobs j
               WHERE j.id = ANY(reschedule_jobs.job_ids) AND j.is_available
                 AND j.run_at <= now()) THEN
        PERFORM errands._notify();
    END IF;
END
$function$;

-- FUNCTION errands.rescue_workers(interval)
-- ACL: postgres=X/postgres
-- comment: Worker API (every live worker calls it every few seconds; also fit for pg_cron).
--          Declares dead each registered worker that holds a session lock (session_lock) whose
--          advisory lock no session holds (its process or connection is gone) and whose last
--          heartbeat is older than 1.5 s but newer than the server's start (after a restart,
--          workers get until heartbeat_timeout to reconnect), and each worker whose last
--          heartbeat is older than heartbeat_timeout; deletes its row, makes the jobs it had
--          locked runnable at once (keeping their place: run_at unchanged, the interrupted try
--          counted, last_error says the worker died; a job whose cancellation was requested
--          ends cancelled instead) and unlocks its queues. Returns the number of jobs made
--          runnable.
CREATE OR REPLACE FUNCTION errands.rescue_workers(heartbeat_timeout interval DEFAULT '00:00:30'::interval)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_dead text[];
    v_count integer := 0;
BEGIN
    -- Skip rows another rescue is handling; a worker just registering is
    -- visible only once its transaction committed (and its lock is held).
    WITH dead AS (
        SELECT w.id FROM errands._workers w
        WHERE (w.session_lock
               AND w.last_heartbeat < now() - errands._rescue_grace()
               AND w.last_heartbeat >= pg_catalog.pg_postmaster_start_time()
               AND NOT errands._worker_lock_held(w.id))
           OR w.last_heartbeat < now() - coalesce(rescue_workers.heartbeat_timeout, errands._heartbeat_timeout())
        FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM errands._workers w USING dead WHERE w.id = dead.id
        RETURNING w.id
    )
    SELECT array_agg(gone.id) INTO v_dead FROM gone;
    IF v_dead IS NOT NULL THEN
        v_count := errands._release_workers(v_dead, 'died');
    END IF;
    RETURN v_count;
END
$function$;

-- FUNCTION errands.reset_locked(interval)
-- ACL: postgres=X/postgres
-- comment: Rescues jobs whose lock is older than older_than (their worker died): they become
--          runnable at once with the interrupted try counted (a job whose cancellation was
--          requested ends cancelled instead), and their queue and task slots are freed.
--          Returns the number of jobs rescued.
CREATE OR REPLACE FUNCTION errands.reset_locked(older_than interval DEFAULT '04:00:00'::interval)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_cancelled integer;
    v_count integer;
BEGIN
    -- A stale queue lock no locked job of the queue accounts for (its job was
    -- deleted meanwhile) is released outright.
    UPDATE errands._queues q SET running = 0, locked_at = NULL, locked_by = NULL
    WHERE q.locked_at < now() - reset_locked.older_than
      AND NOT EXISTS (SELECT 1 FROM errands._jobs j
                      WHERE j.job_queue_id = q.id AND j.locked_at IS NOT NULL);
    WITH jobs AS (
        UPDATE errands._jobs j
        SET locked_at = NULL,
            locked_by = NULL,
            run_at = greatest(j.run_at, now()),
            last_error = format('errands: lock held by %s since %s expired; the worker is presumed dead',
                                j.locked_by, j.locked_at),
            errors = errands._add_error(j.errors, j.attempts, j.locked_at, j.locked_by,
                format('errands: lock held by %s since %s expired; the worker is presumed dead',
                       j.locked_by, j.locked_at))
        WHERE j.locked_at < now() - reset_locked.older_than AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(jobs.job_queue_id), array_agg(jobs.task_id))
        FROM jobs
    )
    SELECT count(*)::integer INTO v_count FROM jobs, slots;
    -- A job whose cancellation was requested (even while the update above waited
    -- for its row: it rechecks cancel_reason) ends cancelled, never runs again.
    v_cancelled := cardinality(errands._end_requested(ARRAY(
        SELECT j.id FROM errands._jobs j
        WHERE j.locked_at < now() - reset_locked.older_than AND j.cancel_reason IS NOT NULL)));
    RETURN v_count + v_cancelled;
END
$function$;

-- FUNCTION errands.resume_queue(text)
-- ACL: postgres=X/postgres
-- comment: Flow control. Lifts pause_queue(queue_name) (the same name or pattern) and wakes
--          the workers at once. A queue stays paused while another matching pattern is.
CREATE OR REPLACE FUNCTION errands.resume_queue(queue_name text)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM errands._set_limits('queue', resume_queue.queue_name, false, NULL, NULL, NULL, false);
END
$function$;

-- FUNCTION errands.resume_task(text)
-- ACL: postgres=X/postgres
-- comment: Flow control. Lifts pause_task(task_identifier) (the same name or pattern) and
--          wakes the workers at once.
CREATE OR REPLACE FUNCTION errands.resume_task(task_identifier text)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM errands._set_limits('task', resume_task.task_identifier, false, NULL, NULL, NULL, false);
END
$function$;

-- FUNCTION errands.run_cron_now(text)
-- ACL: postgres=X/postgres
-- comment: Adds the job of the stored crontab item with this id now (as cron_tick would for a
--          due minute, with _cron.manual true in the payload), without changing its schedule.
--          Returns the job id. Raises 22023 for an unknown id.
CREATE OR REPLACE FUNCTION errands.run_cron_now(identifier text)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_item errands._crontab_items;
BEGIN
    SELECT * INTO v_item FROM errands._crontab_items i WHERE i.id = run_cron_now.identifier;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'errands: no crontab item %', errands._describe(run_cron_now.identifier)
            USING ERRCODE = '22023';
    END IF;
    -- The job cron_tick would add, due now; its schedule (last_execution) is untouched.
    RETURN (errands.add_job(
        identifier => v_item.task,
        payload => (v_item.payload || jsonb_build_object('_cron', jsonb_build_object(
            'ts', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
            'backfilled', false, 'manual', true)))::json,
        queue_name => v_item.options->>'queue',
        max_attempts => (v_item.options->>'max')::integer,
        job_key => v_item.options->>'jobKey',
        priority => (v_item.options->>'priority')::integer,
        job_key_mode => coalesce(v_item.options->>'jobKeyMode', 'replace'))).id;
END
$function$;

-- FUNCTION errands.set_crontab(text,text)
-- ACL: postgres=X/postgres
-- comment: Makes the stored schedule of one source (default 'default') exactly the
--          items of the crontab text: adds, updates and removes items; other sources are
--          untouched. Raises 22023 on a bad crontab or an id another source uses. Returns
--          the number of items.
CREATE OR REPLACE FUNCTION errands.set_crontab(crontab text, source text DEFAULT 'default'::text)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_source text := set_crontab.source;
    v_clash record;
    v_count integer;
BEGIN
    IF v_source IS NULL OR length(v_source) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'errands: invalid crontab source %', errands._describe(v_source)
            USING ERRCODE = '22023';
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('errands:set_crontab'));
    CREATE TEMP TABLE IF NOT EXISTS pg_temp._errands_crontab_new
        (LIKE errands._crontab_items) ON COMMIT DROP;
    DELETE FROM pg_temp._errands_crontab_new;
    INSERT INTO pg_temp._errands_crontab_new
    SELECT p.id, v_source, p.line_number, p.task, p.minutes, p.hours, p.days_of_month,
           p.months, p.days_of_week, p.options, p.payload
    FROM errands.parse_crontab(crontab) p;
    SELECT n.id, i.source INTO v_clash
    FROM pg_temp._errands_crontab_new n JOIN errands._crontab_items i USING (id)
    WHERE i.source <> v_source LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: crontab id % is already used by source %',
            quote_literal(v_clash.id), quote_literal(v_clash.source) USING ERRCODE = '22023';
    END IF;
    DELETE FROM errands._crontab_items i
    WHERE i.source = v_source
      AND NOT EXISTS (SELECT 1 FROM pg_temp._errands_crontab_new n WHERE n.id = i.id);
    INSERT INTO errands._crontab_items AS i
    SELECT * FROM pg_temp._errands_crontab_new
    ON CONFLICT (id) DO UPDATE
    SET line_number = excluded.line_number, task = excluded.task, minutes = excluded.minutes,
        hours = excluded.hours, days_of_month = excluded.days_of_month, months = excluded.months,
        days_of_week = excluded.days_of_week, options = excluded.options, payload = excluded.payload
    WHERE (i.line_number, i.task, i.minutes, i.hours, i.days_of_month, i.months, i.days_of_week,
           i.options, i.payload)
          IS DISTINCT FROM
          (excluded.line_number, excluded.task, excluded.minutes, excluded.hours,
           excluded.days_of_month, excluded.months, excluded.days_of_week, excluded.options,
           excluded.payload);
    SELECT count(*) INTO v_count FROM pg_temp._errands_crontab_new;
    DROP TABLE pg_temp._errands_crontab_new;
    RETURN v_count;
END
$function$;

-- FUNCTION errands.set_max_payload_bytes(bigint)
-- ACL: postgres=X/postgres
-- comment: Sets the largest payload (bytes of its JSON text) add_job and add_jobs accept, for
--          every role and session of the database; 0 turns the limit off (default 1048576,
--          1 MiB). Returns the new limit. Only the schema owner (or a superuser) may run it,
--          or a role the owner grants EXECUTE on it to; the setting
--          errands.max_payload_bytes of versions up to 16 is ignored.
CREATE OR REPLACE FUNCTION errands.set_max_payload_bytes(bytes bigint)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF bytes IS NULL OR bytes < 0 THEN
        RAISE EXCEPTION 'errands: max_payload_bytes must be 0 (no limit) or a positive number of bytes, got %',
            coalesce(bytes::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- The row lock serializes concurrent calls (two CREATE OR REPLACE of one
    -- function at once fail with 'tuple concurrently updated').
    UPDATE errands._settings s SET max_payload_bytes = bytes;
    IF NOT FOUND THEN
        INSERT INTO errands._settings (max_payload_bytes) VALUES (bytes);
    END IF;
    PERFORM errands._define_max_payload_bytes();
    RETURN bytes;
END
$function$;

-- FUNCTION errands.set_queue_limits(text,integer,integer,interval)
-- ACL: postgres=X/postgres
-- comment: Flow control. A named queue (or every queue matching a pattern such as
--          'tenant:*', each on its own) runs at most concurrency jobs at once across all
--          workers and starts at most rate_limit jobs in any window of rate_period. NULL
--          removes that setting (concurrency then falls back to a matching pattern, else 1:
--          a serial queue). Takes effect on the next fetch.
CREATE OR REPLACE FUNCTION errands.set_queue_limits(queue_name text, concurrency integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, rate_period interval DEFAULT NULL::interval)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM errands._set_limits('queue', set_queue_limits.queue_name, true,
        set_queue_limits.concurrency, set_queue_limits.rate_limit, set_queue_limits.rate_period, NULL);
END
$function$;

-- FUNCTION errands.set_retention(interval)
-- ACL: postgres=X/postgres
-- comment: Sets how long finished jobs stay in errands.finished_jobs for tasks without a
--          retention of their own (default 0: history off); 0 deletes jobs at completion (no
--          history, the cheapest path). Returns the new retention. Only the schema owner
--          (or a superuser) may run it, or a role the owner grants EXECUTE on it to.
CREATE OR REPLACE FUNCTION errands.set_retention(retention interval)
 RETURNS interval
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF set_retention.retention IS NULL OR set_retention.retention < interval '0' THEN
        RAISE EXCEPTION 'errands: retention must be 0 (delete at completion) or a positive interval, got %',
            coalesce(set_retention.retention::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    -- The row lock serializes concurrent calls (see set_max_payload_bytes).
    UPDATE errands._settings s SET retention = set_retention.retention;
    IF NOT FOUND THEN
        INSERT INTO errands._settings (retention) VALUES (set_retention.retention);
    END IF;
    PERFORM errands._define_retention();
    RETURN set_retention.retention;
END
$function$;

-- FUNCTION errands.set_task_limits(text,integer,integer,interval)
-- ACL: postgres=X/postgres
-- comment: Flow control. All jobs of a task (or of every task matching a pattern such as
--          'sync_*', each on its own), whatever their queue, run at most concurrency at
--          once across all workers and start at most rate_limit in any window of
--          rate_period. NULL removes that setting (no limit unless a pattern sets one).
--          Briefly holds back fetches and outcomes while it recounts the running jobs.
CREATE OR REPLACE FUNCTION errands.set_task_limits(task_identifier text, concurrency integer DEFAULT NULL::integer, rate_limit integer DEFAULT NULL::integer, rate_period interval DEFAULT NULL::interval)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    PERFORM errands._set_limits('task', set_task_limits.task_identifier, true,
        set_task_limits.concurrency, set_task_limits.rate_limit, set_task_limits.rate_period, NULL);
END
$function$;

-- FUNCTION errands.set_task_retention(text,interval)
-- ACL: postgres=X/postgres
-- comment: Sets how long finished jobs of one task stay in errands.finished_jobs, overriding
--          errands.set_retention; NULL uses the global retention again, 0 deletes the
--          task's jobs at completion. Returns the retention. Only the schema owner (or a
--          superuser) may run it, or a role the owner grants EXECUTE on it to.
CREATE OR REPLACE FUNCTION errands.set_task_retention(task_identifier text, retention interval)
 RETURNS interval
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF set_task_retention.task_identifier IS NULL
       OR length(set_task_retention.task_identifier) NOT BETWEEN 1 AND 128 THEN
        RAISE EXCEPTION 'errands: set_task_retention needs a task identifier of 1 to 128 characters, got %',
            coalesce(quote_literal(set_task_retention.task_identifier), 'NULL') USING ERRCODE = '22023';
    END IF;
    IF set_task_retention.retention < interval '0' THEN
        RAISE EXCEPTION 'errands: retention must be NULL (the global), 0 (delete at completion) or a positive interval, got %',
            set_task_retention.retention USING ERRCODE = '22023';
    END IF;
    -- Serialize with set_retention (both regenerate the same functions).
    PERFORM 1 FROM errands._settings s FOR UPDATE;
    INSERT INTO errands._tasks (identifier, retention)
    VALUES (set_task_retention.task_identifier, set_task_retention.retention)
    ON CONFLICT (identifier) DO UPDATE SET retention = EXCLUDED.retention;
    PERFORM errands._define_retention();
    RETURN set_task_retention.retention;
END
$function$;

-- FUNCTION errands.set_traceparent(bigint[],text)
-- ACL: postgres=X/postgres
-- comment: Stores a W3C traceparent (the enqueuing span's trace context) with the given jobs
--          that are not running; a worker with tracing enabled continues that trace when it
--          runs them. Returns the number of jobs changed. errands.tracing calls it with
--          add_job/add_jobs in one statement.
CREATE OR REPLACE FUNCTION errands.set_traceparent(job_ids bigint[], traceparent text)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_count integer;
BEGIN
    IF set_traceparent.traceparent IS NULL
       OR set_traceparent.traceparent !~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$'
    THEN
        RAISE EXCEPTION 'errands: traceparent must be a W3C traceparent (version-trace_id-parent_id-flags in lowercase hex, 55 characters), got %',
            errands._describe(set_traceparent.traceparent) USING ERRCODE = '22023';
    END IF;
    UPDATE errands._jobs j SET traceparent = set_traceparent.traceparent
    WHERE j.id = ANY (set_traceparent.job_ids) AND j.locked_at IS NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$function$;

-- FUNCTION errands.try_lock_worker(text)
-- ACL: postgres=X/postgres
-- comment: Worker API. Takes the session-level advisory lock of worker_id for the calling
--          session without waiting: true when this session holds it now (taken or already
--          held), false when another session holds it. A worker holds it on a connection that
--          lives as long as it does and registers with register_worker; rescue_workers
--          declares dead a registered worker whose lock no session holds.
CREATE OR REPLACE FUNCTION errands.try_lock_worker(worker_id text)
 RETURNS boolean
 LANGUAGE sql
 STRICT SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT pg_catalog.pg_try_advisory_lock(errands._worker_lock_key(try_lock_worker.worker_id))
$function$;

-- FUNCTION errands.unregister_worker(text)
-- ACL: postgres=X/postgres
-- comment: Worker API. A clean exit: deletes the worker's row and releases any job or
--          queue it still has locked (normally none) as rescue_workers would. Returns the
--          number of jobs released.
CREATE OR REPLACE FUNCTION errands.unregister_worker(worker_id text)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    DELETE FROM errands._workers w WHERE w.id = unregister_worker.worker_id;
    RETURN errands._release_workers(ARRAY[unregister_worker.worker_id], 'exited');
END
$function$;

-- FUNCTION errands.watch_jobs(bigint[],interval)
-- ACL: postgres=X/postgres
-- comment: Registers interest in the listed jobs and returns each one's state now
--          (scheduled, pending, running, retrying, failed, completed or cancelled). From now
--          on, finishing a watched job notifies the channel "errands:finished" (payload: the
--          finished watched ids, comma-separated) and keeps its errands.finished_jobs row at
--          least until the lease ends, even with retention 0. LISTEN before calling it and
--          call it again on each notification or poll (that renews the lease). An id in
--          neither errands.jobs nor errands.finished_jobs fails the call (P0002, naming it;
--          nothing is watched). Granted by grant_read (and so grant_worker).
CREATE OR REPLACE FUNCTION errands.watch_jobs(job_ids bigint[], lease interval DEFAULT '00:05:00'::interval)
 RETURNS TABLE(id bigint, state text)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_unknown bigint;
BEGIN
    IF watch_jobs.job_ids IS NULL OR array_position(watch_jobs.job_ids, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'errands: watch_jobs needs an array of job ids without NULL, got %',
            coalesce(watch_jobs.job_ids::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    IF watch_jobs.lease IS NULL OR NOT isfinite(watch_jobs.lease)
       OR watch_jobs.lease NOT BETWEEN interval '1 second' AND interval '1 day' THEN
        RAISE EXCEPTION 'errands: watch_jobs needs a lease between 1 second and 1 day, got %',
            coalesce(watch_jobs.lease::text, 'NULL') USING ERRCODE = '22023';
    END IF;
    INSERT INTO errands._job_waiters AS w (job_id, expires_at)
    SELECT DISTINCT i, now() + watch_jobs.lease FROM unnest(watch_jobs.job_ids) AS i
    ON CONFLICT (job_id) DO UPDATE SET expires_at = greatest(w.expires_at, EXCLUDED.expires_at);
    -- Writing the row (even when already watched) takes its row lock: a statement
    -- finishing the job either ran first (this waits, then finds it finished
    -- below) or waits for this transaction and then sees watched and the lease.
    UPDATE errands._jobs j SET watched = true WHERE j.id = ANY(watch_jobs.job_ids);
    -- A new statement: it sees a finish that committed while the UPDATE waited.
    RETURN QUERY
    SELECT i.id, coalesce(
               (SELECT v.state FROM errands.jobs v WHERE v.id = i.id),
               (SELECT f.state FROM errands._finished_jobs f WHERE f.id = i.id))
    FROM unnest(watch_jobs.job_ids) WITH ORDINALITY AS i(id, n)
    ORDER BY i.n;
    SELECT i INTO v_unknown FROM unnest(watch_jobs.job_ids) AS i
    WHERE NOT EXISTS (SELECT FROM errands._jobs j WHERE j.id = i)
      AND NOT EXISTS (SELECT FROM errands._finished_jobs f WHERE f.id = i)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: no job % in errands.jobs or errands.finished_jobs (unknown, removed, or finished with retention 0 before it was watched)',
            v_unknown USING ERRCODE = 'P0002';
    END IF;
END
$function$;

-- FUNCTION errands.worker_cancel_jobs(text,bigint[],text[])
-- ACL: postgres=X/postgres
-- comment: Worker API. Cancels each listed job that worker_id has locked (the task raised
--          errands.Cancel): it ends cancelled, never retried, with its reason (NULL: the
--          requested one, else "errands: cancelled") as last_error; kept in
--          errands.finished_jobs when its task's retention is above 0; its queue is
--          unlocked. Returns the ids cancelled: a missing id was no longer this worker's.
CREATE OR REPLACE FUNCTION errands.worker_cancel_jobs(worker_id text, job_ids bigint[], reasons text[])
 RETURNS SETOF bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF cardinality(worker_cancel_jobs.job_ids) IS DISTINCT FROM cardinality(worker_cancel_jobs.reasons) THEN
        RAISE EXCEPTION 'errands: worker_cancel_jobs needs one reason (NULL: none) per job: % ids, % reasons',
            coalesce(cardinality(worker_cancel_jobs.job_ids)::text, 'NULL'),
            coalesce(cardinality(worker_cancel_jobs.reasons)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    SELECT unnest(errands._end_cancelled(worker_cancel_jobs.worker_id, worker_cancel_jobs.job_ids,
                                         worker_cancel_jobs.reasons, false));
END
$function$;

-- FUNCTION errands.worker_cancel_requests(text)
-- ACL: postgres=X/postgres
-- comment: Worker API. The ids of the jobs worker_id has locked whose cancellation was
--          requested (the slow-poll fallback of the errands:cancel notifications).
CREATE OR REPLACE FUNCTION errands.worker_cancel_requests(worker_id text)
 RETURNS SETOF bigint
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT j.id FROM errands._jobs j
    WHERE j.locked_by = worker_cancel_requests.worker_id AND j.cancel_reason IS NOT NULL
    ORDER BY j.id
$function$;

-- FUNCTION errands.worker_complete_jobs(text,bigint[],json[])
-- ACL: postgres=X/postgres
-- comment: Worker API. Completes the listed jobs that worker_id has locked (it finished
--          them): each moves to errands.finished_jobs with its result (results[i] for
--          job_ids[i]; NULL: none) when its task's retention is above 0 or a waiter
--          watches it (errands.watch_jobs: then "errands:finished" is notified), else is deleted;
--          their queues are unlocked. A result whose JSON text exceeds the payload size
--          limit fails its job instead (as worker_fail_jobs, error naming the size).
--          Returns the ids it completed: a job missing from the result was no longer this
--          worker's (its lock was taken away, or its result was too big) and may run again.
--          A job whose cancellation was requested (errands.cancel_jobs) ends cancelled
--          instead, its result dropped (its id is returned too).
CREATE OR REPLACE FUNCTION errands.worker_complete_jobs(worker_id text, job_ids bigint[], results json[] DEFAULT NULL::json[])
 RETURNS SETOF bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
 SET jit TO 'off'
AS $function$
DECLARE
    v_ids bigint[] := worker_complete_jobs.job_ids;
    v_results json[] := worker_complete_jobs.results;
    v_limit bigint := errands._max_payload_bytes();
    v_big_ids bigint[];
    v_big_errors text[];
    v_done bigint[];
    v_done_queues integer[];
    v_done_tasks integer[];
BEGIN
    IF v_results IS NOT NULL AND cardinality(v_results) <> cardinality(v_ids) THEN
        RAISE EXCEPTION 'errands: worker_complete_jobs needs one result (NULL: none) per job: % ids, % results',
            cardinality(v_ids), cardinality(v_results) USING ERRCODE = '22023';
    END IF;
    -- Flows (25_flows.sql): jobs others wait for keep their result; dependents released.
    PERFORM errands._complete_dependencies(worker_complete_jobs.worker_id, v_ids, v_results);
    -- No task keeps history (retention 0 everywhere): delete. A job a waiter
    -- watches (17_wait.sql) is left to the history path below, which keeps it
    -- and notifies; so the jobs nobody watches pay nothing more than this.
    IF NOT errands._history_on() THEN
        WITH done AS (
            DELETE FROM errands._jobs j
            WHERE j.id = ANY(v_ids)
              AND j.locked_by = worker_complete_jobs.worker_id
              AND NOT j.watched
            RETURNING j.id, j.job_queue_id, j.task_id
        )
        SELECT array_agg(done.id),
               array_agg(done.job_queue_id) FILTER (WHERE done.job_queue_id IS NOT NULL),
               array_agg(done.task_id)
        INTO v_done, v_done_queues, v_done_tasks FROM done;
        PERFORM errands._check_late_dependents(v_done); -- flows (25_flows.sql)
        -- Flow control (35_flow_control.sql): the completed jobs free their queue
        -- slots (a queue below its concurrency is unlocked) and, while some task
        -- has a concurrency limit, their task slots. After the DELETE, whose lock
        -- waits for a limit change in flight; a separate statement, run only when
        -- needed: an UPDATE in the DELETE's statement cost ~15 % of this call.
        IF v_done_queues IS NOT NULL OR errands._task_limits_on() THEN
            -- (_release_slots ignores task ids while no task has a limit.)
            PERFORM errands._release_slots(v_done_queues, v_done_tasks);
        END IF;
        RETURN QUERY SELECT unnest(v_done);
        -- The others (watched, or no longer this worker's) take the path below.
        IF coalesce(cardinality(v_done), 0) = cardinality(v_ids) THEN
            RETURN;
        END IF;
    END IF;
    -- A result over the payload size limit fails its job (worker_fail_jobs) with
    -- an error naming the size, rather than being lost.
    IF v_results IS NOT NULL AND v_limit > 0 THEN
        SELECT array_agg(r.id), array_agg(format(
                   'errands: the task''s result is %s bytes of JSON, over the limit of %s bytes (errands.set_max_payload_bytes)',
                   octet_length(r.result::text), v_limit))
        INTO v_big_ids, v_big_errors
        FROM unnest(v_ids, v_results) AS r(id, result)
        WHERE octet_length(r.result::text) > v_limit;
        IF v_big_ids IS NOT NULL THEN
            PERFORM errands.worker_fail_jobs(worker_complete_jobs.worker_id, v_big_ids, v_big_errors);
            SELECT array_agg(r.id), array_agg(r.result) INTO v_ids, v_results
            FROM unnest(v_ids, v_results) AS r(id, result)
            WHERE r.id <> ALL(v_big_ids);
        END IF;
    END IF;
    RETURN QUERY
    WITH done AS (
        DELETE FROM errands._jobs j
        WHERE j.id = ANY(v_ids)
          AND j.locked_by = worker_complete_jobs.worker_id
        RETURNING j.*
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(done.job_queue_id), array_agg(done.task_id))
        FROM done
    ), kept AS (
        INSERT INTO errands._finished_jobs (id, queue_name, task_identifier, payload, priority,
                                            attempts, max_attempts, last_error, key, created_at,
                                            state, result, errors, run_at, started_at)
        SELECT done.id, q.queue_name, t.identifier, done.payload, done.priority, done.attempts,
               done.max_attempts,
               -- A job whose cancellation was requested ends cancelled, result dropped.
               coalesce(done.cancel_reason, done.last_error), done.key, done.created_at,
               CASE WHEN done.cancel_reason IS NULL THEN 'completed' ELSE 'cancelled' END,
               CASE WHEN done.cancel_reason IS NULL THEN r.result END,
               done.errors, done.run_at, done.locked_at
        FROM done
        JOIN errands._tasks t ON t.id = done.task_id
        LEFT JOIN unnest(v_ids, v_results) AS r(id, result) ON r.id = done.id
        LEFT JOIN errands._queues q ON q.id = done.job_queue_id
        WHERE coalesce(t.retention, errands._retention()) > interval '0'
           OR done.watched -- waiting (17_wait.sql): kept for its waiter
        ON CONFLICT (id) DO NOTHING
    )
    SELECT done.id FROM done, slots;
    PERFORM errands._check_late_dependents(v_ids); -- flows (25_flows.sql)
    PERFORM errands._jobs_finished(v_ids); -- waiting hook (17_wait.sql)
END
$function$;

-- FUNCTION errands.worker_counts()
-- ACL: postgres=X/postgres
-- comment: Registered workers by state (alive, hung, dead, as errands.workers shows them).
CREATE OR REPLACE FUNCTION errands.worker_counts()
 RETURNS TABLE(state text, workers bigint)
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
    SELECT w.state, count(*) FROM errands.workers w GROUP BY w.state
$function$;

-- FUNCTION errands.worker_fail_jobs(text,bigint[],text[],json[])
-- ACL: postgres=X/postgres
-- comment: Worker API. Records a failed try of each listed job that worker_id has locked:
--          last_error = its message (and an entry in errors: attempt, start, failure time,
--          worker, message; the last 20 kept), run_at = greatest(now(), run_at) + exp(least(attempts,
--          10)) seconds, lock and queue released; a non-NULL payload replaces the job's
--          (batch jobs keep only their failed items). Returns the failed jobs; those with
--          attempts >= max_attempts will not run again. A job whose cancellation was
--          requested ends cancelled instead (and is not returned).
CREATE OR REPLACE FUNCTION errands.worker_fail_jobs(worker_id text, job_ids bigint[], error_messages text[], payloads json[] DEFAULT NULL::json[])
 RETURNS SETOF errands.jobs
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF cardinality(worker_fail_jobs.job_ids) IS DISTINCT FROM cardinality(worker_fail_jobs.error_messages)
       OR (worker_fail_jobs.payloads IS NOT NULL
           AND cardinality(worker_fail_jobs.payloads) <> cardinality(worker_fail_jobs.job_ids)) THEN
        RAISE EXCEPTION 'errands: worker_fail_jobs needs one error message (and payload, if any) per job: % ids, % messages, % payloads',
            cardinality(worker_fail_jobs.job_ids), cardinality(worker_fail_jobs.error_messages),
            coalesce(cardinality(worker_fail_jobs.payloads)::text, 'no')
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH f AS (
        SELECT * FROM unnest(worker_fail_jobs.job_ids, worker_fail_jobs.error_messages,
                             worker_fail_jobs.payloads) AS f(id, message, payload)
    ), failed AS (
        UPDATE errands._jobs j
        SET last_error = f.message,
            errors = errands._add_error(j.errors, j.attempts, j.locked_at,
                                        worker_fail_jobs.worker_id, f.message),
            -- Exponential backoff: e^attempts seconds, capped at e^10 (~6 h).
            run_at = greatest(now(), j.run_at) + exp(least(j.attempts, 10)) * interval '1 second',
            locked_at = NULL,
            locked_by = NULL,
            payload = coalesce(f.payload, j.payload)
        FROM f
        WHERE j.id = f.id AND j.locked_by = worker_fail_jobs.worker_id
          AND j.cancel_reason IS NULL
        RETURNING j.*
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(failed.job_queue_id), array_agg(failed.task_id))
        FROM failed
    )
    SELECT (errands._job_row(failed::errands._jobs, q.queue_name, t.identifier)).*
    FROM failed
    CROSS JOIN slots
    JOIN errands._tasks t ON t.id = failed.task_id
    LEFT JOIN errands._queues q ON q.id = failed.job_queue_id
    ORDER BY failed.id;
    -- A job whose cancellation was requested (even while this ran: the update
    -- above rechecks cancel_reason on the row it waited for) ends cancelled.
    PERFORM errands._end_cancelled(worker_fail_jobs.worker_id, worker_fail_jobs.job_ids, NULL, true);
    -- Flows (25_flows.sql): what a failed try added is cancelled; run-anyway dependents go on.
    PERFORM errands._dependencies_failed(worker_fail_jobs.job_ids);
    -- Waiting hook (17_wait.sql): a job that failed for good ends its waits (a
    -- waiter woken by a retried job reads its state and keeps waiting).
    PERFORM errands._jobs_finished(worker_fail_jobs.job_ids);
END
$function$;

-- FUNCTION errands.worker_fail_jobs_now(text,bigint[],text[])
-- ACL: postgres=X/postgres
-- comment: Worker API. Fails each listed job that worker_id has locked for good, without a
--          retry (the task raised errands.Fail(retry=False)): last_error = its message,
--          attempts = max_attempts (state failed), lock and queue released. reschedule_jobs
--          can revive it. Returns the failed jobs; a missing id was no longer this worker's.
CREATE OR REPLACE FUNCTION errands.worker_fail_jobs_now(worker_id text, job_ids bigint[], error_messages text[])
 RETURNS SETOF errands.jobs
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
BEGIN
    IF cardinality(worker_fail_jobs_now.job_ids) IS DISTINCT FROM cardinality(worker_fail_jobs_now.error_messages) THEN
        RAISE EXCEPTION 'errands: worker_fail_jobs_now needs one error message per job: % ids, % messages',
            coalesce(cardinality(worker_fail_jobs_now.job_ids)::text, 'NULL'),
            coalesce(cardinality(worker_fail_jobs_now.error_messages)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    -- No attempts left, then an ordinary failed try: worker_fail_jobs records the
    -- error, releases the lock and the queue, and returns the rows.
    UPDATE errands._jobs j
    SET attempts = greatest(j.attempts, j.max_attempts)
    WHERE j.id = ANY(worker_fail_jobs_now.job_ids)
      AND j.locked_by = worker_fail_jobs_now.worker_id;
    RETURN QUERY
    SELECT * FROM errands.worker_fail_jobs(worker_fail_jobs_now.worker_id,
                                           worker_fail_jobs_now.job_ids,
                                           worker_fail_jobs_now.error_messages);
END
$function$;

-- FUNCTION errands.worker_return_jobs(text,bigint[])
-- ACL: postgres=X/postgres
-- comment: Worker API. Hands back jobs worker_id fetched but never started (shutdown): the
--          lock is released and the attempt it took is given back. Returns their ids. A job
--          whose cancellation was requested ends cancelled instead (and is not returned).
CREATE OR REPLACE FUNCTION errands.worker_return_jobs(worker_id text, job_ids bigint[])
 RETURNS SETOF bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
 SET jit TO 'off'
AS $function$
BEGIN
    RETURN QUERY
    WITH returned AS (
        UPDATE errands._jobs j
        SET attempts = greatest(0, j.attempts - 1), locked_at = NULL, locked_by = NULL
        WHERE j.id = ANY(worker_return_jobs.job_ids)
          AND j.locked_by = worker_return_jobs.worker_id
          AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(returned.job_queue_id), array_agg(returned.task_id))
        FROM returned
    )
    SELECT returned.id FROM returned, slots;
    -- A job whose cancellation was requested ends cancelled instead.
    PERFORM errands._end_cancelled(worker_return_jobs.worker_id, worker_return_jobs.job_ids, NULL, true);
END
$function$;

-- FUNCTION errands.worker_snooze_jobs(text,bigint[],interval[])
-- ACL: postgres=X/postgres
-- comment: Worker API. Snoozes each listed job that worker_id has locked (the task raised
--          errands.Snooze): run_at = now() + its delay, the attempt this try took is given
--          back, lock and queue released, key, payload and last_error kept. Each delay must
--          be finite and >= 0 (22023 otherwise, nothing changed). Returns the ids snoozed: a
--          missing id was no longer this worker's, or its cancellation was requested (it
--          ended cancelled).
CREATE OR REPLACE FUNCTION errands.worker_snooze_jobs(worker_id text, job_ids bigint[], delays interval[])
 RETURNS SETOF bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'pg_temp'
AS $function$
DECLARE
    v_bad interval;
BEGIN
    IF cardinality(worker_snooze_jobs.job_ids) IS DISTINCT FROM cardinality(worker_snooze_jobs.delays) THEN
        RAISE EXCEPTION 'errands: worker_snooze_jobs needs one delay per job: % ids, % delays',
            coalesce(cardinality(worker_snooze_jobs.job_ids)::text, 'NULL'),
            coalesce(cardinality(worker_snooze_jobs.delays)::text, 'NULL')
            USING ERRCODE = '22023';
    END IF;
    IF EXISTS (SELECT FROM unnest(worker_snooze_jobs.delays) d WHERE d IS NULL) THEN
        RAISE EXCEPTION 'errands: a snooze delay must not be NULL' USING ERRCODE = '22023';
    END IF;
    SELECT d INTO v_bad FROM unnest(worker_snooze_jobs.delays) d
    WHERE NOT isfinite(d) OR d < interval '0' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'errands: a snooze delay must be finite and >= 0, got %', v_bad
            USING ERRCODE = '22023';
    END IF;
    RETURN QUERY
    WITH s AS (
        SELECT * FROM unnest(worker_snooze_jobs.job_ids, worker_snooze_jobs.delays) AS s(id, delay)
    ), snoozed AS (
        UPDATE errands._jobs j
        SET attempts = greatest(0, j.attempts - 1),
            run_at = now() + s.delay,
            locked_at = NULL,
            locked_by = NULL
        FROM s
        WHERE j.id = s.id AND j.locked_by = worker_snooze_jobs.worker_id
          AND j.cancel_reason IS NULL
        RETURNING j.id, j.job_queue_id, j.task_id
    -- Flow control (35_flow_control.sql): the released jobs free their queue
    -- and task slots. A SELECT CTE runs only if the main query reads it: the
    -- main query joins `slots` (one row, an aggregate) for that, rows unchanged.
    ), slots AS (
        SELECT errands._release_slots(array_agg(snoozed.job_queue_id), array_agg(snoozed.task_id))
        FROM snoozed
    )
    SELECT snoozed.id FROM snoozed, slots ORDER BY snoozed.id;
    -- A job whose cancellation was requested ends cancelled instead.
    PERFORM errands._end_cancelled(worker_snooze_jobs.worker_id, worker_snooze_jobs.job_ids, NULL, true);
END
$function$;
