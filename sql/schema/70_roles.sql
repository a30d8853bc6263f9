-- Role helpers. They run as the caller (who must own the schema or be a
-- superuser) and only GRANT; role names go through regrole and %I.
CREATE OR REPLACE FUNCTION errands.grant_enqueue(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
$$;
COMMENT ON FUNCTION errands.grant_enqueue(regrole) IS
'Lets role enqueue jobs and nothing else (e.g. a PostgREST web role): USAGE on
schema errands and EXECUTE on add_job, add_jobs, add_flow, set_traceparent and remove_job (and on the
argument parser of errands.job_trigger, so that a table trigger can enqueue as
the role). The role cannot read jobs or payloads (the three functions return
payload NULL for a job whose payload the call did not write), fetch, complete,
fail or reschedule jobs. Run it as the owner of the errands schema or a
superuser.';

CREATE OR REPLACE FUNCTION errands.grant_read(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
$$;
COMMENT ON FUNCTION errands.grant_read(regrole) IS
'Lets role read jobs: USAGE on schema errands and SELECT on the errands.jobs,
errands.finished_jobs and errands.flow_steps views (payloads and results included; never the
private tables) and on the flow-control views errands.limits, errands.queues and
errands.task_limits, and EXECUTE on errands.watch_jobs (waiting for jobs) and on the
monitoring functions errands.job_counts, errands.oldest_ready_run_at and errands.worker_counts. With it, add_job, add_jobs and
remove_job (if also granted) return payloads of jobs the call did not write.
Run it as the owner of the errands schema or a superuser.';

CREATE OR REPLACE FUNCTION errands.grant_worker(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
$$;
COMMENT ON FUNCTION errands.grant_worker(regrole) IS
'Gives role what an errands worker needs: everything grant_enqueue gives, EXECUTE
on the worker functions (get_jobs, worker_complete_jobs, worker_fail_jobs,
worker_return_jobs, worker_snooze_jobs, worker_fail_jobs_now, worker_cancel_jobs,
worker_cancel_requests, next_start_at, reset_locked, try_lock_worker,
register_worker, heartbeat, rescue_workers, unregister_worker), the admin
functions (complete_jobs, cancel_jobs, permanently_fail_jobs, reschedule_jobs,
force_unlock_workers), cleanup, prune_finished_jobs, dependency_results, cancel_flow, the cron
functions if cron is installed when it runs, and what grant_read gives (SELECT on
the errands.jobs and errands.finished_jobs views, never on the private tables).
Run it again after an upgrade adds functions. Run it as the owner of the
errands schema or a superuser.';

CREATE OR REPLACE FUNCTION errands.grant_dashboard(role regrole, read_only boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
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
$$;
COMMENT ON FUNCTION errands.grant_dashboard(regrole, boolean) IS
'Gives role what the web dashboard (errands dashboard) needs: USAGE on schema
errands, SELECT on the views errands.jobs, finished_jobs, flow_steps, limits,
queues and task_limits (payloads and results included; never the private
tables) and EXECUTE on dashboard_counts, dashboard_chart, dashboard_durations, dashboard_cron,
dashboard_workers and dashboard_job_ids, and on the monitoring functions
job_counts, oldest_ready_run_at and worker_counts (its /metrics). With
read_only false also EXECUTE on the functions its actions call: reschedule_jobs,
cancel_jobs, remove_jobs, set_queue_limits, set_task_limits, pause_queue,
resume_queue, pause_task, resume_task and run_cron_now. It never revokes: to make
a role read-only again, revoke or recreate it. Run it as the owner of the errands
schema or a superuser.';
