"""The SQL text of every statement the Python client runs, defined once.

All job state changes are calls to the ``errands.*`` SQL functions; Python only
passes arguments.  Parameters are cast explicitly so that function resolution
never depends on how psycopg chose to type a Python value.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

#: The NOTIFY channel ``add_jobs`` signals when a job is runnable now.
CHANNEL: Final = "errands:jobs"

#: The NOTIFY channel ``cancel_jobs`` signals a running job's cancellation request
#: on (payload: ``{"job_id": ..., "worker_id": ...}``).
CANCEL_CHANNEL: Final = "errands:cancel"

LISTEN: Final = sql.SQL("LISTEN {}; LISTEN {}").format(
    sql.Identifier(CHANNEL), sql.Identifier(CANCEL_CHANNEL)
)
#: A worker taking turns (errands._turns) hears job notifications on its turn's
#: connection only.
LISTEN_CANCEL: Final = sql.SQL("LISTEN {}").format(sql.Identifier(CANCEL_CHANNEL))

# Idle workers taking turns at listening (errands._turns); {a}, {b}: the turn's
# two-int advisory lock key, as literals (one simple-protocol round trip each, one
# implicit transaction).  SET LOCAL: the wait for the turn may last as long as the
# worker, so a statement or lock timeout of the connection string is lifted; and
# the waiting backend checks every 0.5 s that its client is still there (PostgreSQL
# >= 14): a backend waiting for a lock does not notice a killed client otherwise,
# and it holds the worker's own lock, so the dead worker would look alive.
TAKE_TURN: Final = sql.SQL(
    "SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0;"
    " SET LOCAL client_connection_check_interval = 500;"
    " SELECT pg_catalog.pg_advisory_lock({a}, {b}); LISTEN {channel}"
)
TURNS_MIN_SERVER_VERSION: Final = 140000
# Unlocks only a turn this session holds (none after a cancelled wait).
GIVE_TURN: Final = sql.SQL(
    "UNLISTEN {channel}; SELECT pg_catalog.pg_advisory_unlock({a}, {b})"
    " FROM pg_catalog.pg_locks l WHERE l.locktype = 'advisory'"
    " AND l.pid = pg_catalog.pg_backend_pid() AND l.granted AND l.objsubid = 2"
    " AND l.classid = {a}::oid AND l.objid = {b}::oid"
)

# --- enqueueing ----------------------------------------------------------------------

ADD_JOB: Final = sql.SQL(
    "SELECT * FROM errands.add_job("
    "identifier => %(identifier)s::text, payload => %(payload)s::json, "
    "queue_name => %(queue_name)s::text, run_at => %(run_at)s::timestamptz, "
    "max_attempts => %(max_attempts)s::int, job_key => %(job_key)s::text, "
    "priority => %(priority)s::int, flags => %(flags)s::text[], "
    "job_key_mode => %(job_key_mode)s::text, timeout => %(timeout)s::interval, "
    "depends_on => %(depends_on)s::bigint[])"
)

# --- flows (sql/schema/25_flows.sql) --------------------------------------------------

ADD_FLOW: Final = sql.SQL(
    "SELECT flow_id, step, job_id FROM errands.add_flow(%(flow)s::jsonb)"
)
DEPENDENCY_RESULTS: Final = sql.SQL("SELECT errands.dependency_results(%(job_id)s::bigint)")
CANCEL_FLOW: Final = sql.SQL("SELECT errands.cancel_flow(%(flow_id)s::bigint) AS id")
FLOW_STEPS: Final = sql.SQL(
    "SELECT flow_id, step, job_id, position, depends_on, run_anyway, state, task_identifier,"
    " last_error FROM errands.flow_steps WHERE flow_id = %(flow_id)s::bigint ORDER BY position"
)

# Specs travel as one JSON array of objects (keys = job_spec fields), expanded
# server-side; WITH ORDINALITY keeps the caller's order.
ADD_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.add_jobs("
    "ARRAY(SELECT ROW(s.identifier, s.payload, s.queue_name, s.run_at, s.max_attempts,"
    " s.job_key, s.priority, s.flags)::errands.job_spec"
    " FROM json_populate_recordset(NULL::errands.job_spec, %(specs)s::json)"
    " WITH ORDINALITY AS s ORDER BY s.ordinality),"
    " %(preserve_run_at)s::boolean)"
)

# --- administration (WorkerUtils) -------------------------------------------------

REMOVE_JOB: Final = sql.SQL("SELECT * FROM errands.remove_job(%(job_key)s::text)")
COMPLETE_JOBS: Final = sql.SQL("SELECT * FROM errands.complete_jobs(%(ids)s::bigint[])")
PERMANENTLY_FAIL_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.permanently_fail_jobs(%(ids)s::bigint[], %(message)s::text)"
)
RESCHEDULE_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.reschedule_jobs(%(ids)s::bigint[], "
    "run_at => %(run_at)s::timestamptz, priority => %(priority)s::int, "
    "attempts => %(attempts)s::int, max_attempts => %(max_attempts)s::int)"
)
FORCE_UNLOCK_WORKERS: Final = sql.SQL("SELECT errands.force_unlock_workers(%(worker_ids)s::text[])")
CLEANUP: Final = sql.SQL(
    "SELECT task, deleted FROM errands.cleanup(%(tasks)s::text[], %(keep)s::text[])"
)
CANCEL_JOBS: Final = sql.SQL(
    "SELECT id, outcome FROM errands.cancel_jobs(%(ids)s::bigint[])"
)
# The filter of ``errands cancel --task``: the ids of the matching unfinished jobs.
SELECT_JOB_IDS: Final = sql.SQL(
    "SELECT id FROM errands.jobs WHERE task_identifier = %(task)s::text"
    " AND (%(queue)s::text IS NULL OR queue_name = %(queue)s::text)"
    " AND (%(state)s::text IS NULL OR state = %(state)s::text) ORDER BY id"
)
GET_FINISHED_JOB: Final = sql.SQL("SELECT * FROM errands.finished_jobs WHERE id = %(id)s::bigint")

# --- waiting for a job (errands._wait) ----------------------------------------------
#: Where the paths that finish jobs announce the watched ones (payload: ids, comma-separated).
FINISHED_CHANNEL: Final = "errands:finished"
#: The waiter's own connection: LISTEN first (then watch_jobs: no race); its watches
#: need no durable commit (a crash ends the wait's connection too), so no WAL flush wait.
WAIT_SESSION: Final = sql.SQL("SET synchronous_commit TO off; LISTEN {}").format(
    sql.Identifier(FINISHED_CHANNEL)
)
WATCH_JOB: Final = sql.SQL(
    "SELECT state FROM errands.watch_jobs(ARRAY[%(id)s::bigint], %(lease)s::interval)"
)
#: The state again after a notification, read-only (NULL: the job is gone).
JOB_STATE: Final = sql.SQL(
    "SELECT coalesce((SELECT state FROM errands.jobs WHERE id = %(id)s::bigint),"
    " (SELECT state FROM errands.finished_jobs WHERE id = %(id)s::bigint))"
)
GET_JOB: Final = sql.SQL("SELECT * FROM errands.jobs WHERE id = %(id)s::bigint")

# --- flow control (35_flow_control.sql) ---------------------------------------------

SET_QUEUE_LIMITS: Final = sql.SQL(
    "SELECT errands.set_queue_limits(%(name)s::text, %(concurrency)s::int, "
    "%(rate_limit)s::int, %(rate_period)s::interval)"
)
SET_TASK_LIMITS: Final = sql.SQL(
    "SELECT errands.set_task_limits(%(name)s::text, %(concurrency)s::int, "
    "%(rate_limit)s::int, %(rate_period)s::interval)"
)
PAUSE_QUEUE: Final = sql.SQL("SELECT errands.pause_queue(%(name)s::text)")
RESUME_QUEUE: Final = sql.SQL("SELECT errands.resume_queue(%(name)s::text)")
PAUSE_TASK: Final = sql.SQL("SELECT errands.pause_task(%(name)s::text)")
RESUME_TASK: Final = sql.SQL("SELECT errands.resume_task(%(name)s::text)")
QUEUES: Final = sql.SQL(
    "SELECT queue_name, concurrency, rate_limit, rate_period, paused, running, backlog"
    " FROM errands.queues ORDER BY queue_name"
)
TASK_LIMITS: Final = sql.SQL(
    "SELECT task_identifier, concurrency, rate_limit, rate_period, paused, running"
    " FROM errands.task_limits ORDER BY task_identifier"
)
LIMITS: Final = sql.SQL(
    "SELECT kind, name, concurrency, rate_limit, rate_period, paused, updated_at"
    " FROM errands.limits ORDER BY kind, name"
)

# --- the worker --------------------------------------------------------------------

GET_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.get_jobs(%(worker_id)s::text, %(tasks)s::text[], "
    "%(count)s::int, %(forbidden)s::text[])"
)
# Flow control (errands._rate_wake): seconds until an exhausted rate window that
# holds back work for these tasks reopens, on the database's clock; 'Infinity':
# rate limits exist, none holds work back; NULL: no rate limit is set at all.
NEXT_START_IN: Final = sql.SQL(
    "SELECT CASE WHEN a = 'infinity' THEN 'Infinity'::float8"
    " ELSE extract(epoch FROM a - pg_catalog.clock_timestamp())::float8 END"
    " FROM errands.next_start_at(%(tasks)s::text[]) a"
)
# Results are sent as JSON text (NULL = no result); results NULL when no job has one.
WORKER_COMPLETE_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.worker_complete_jobs(%(worker_id)s::text, %(ids)s::bigint[], "
    "%(results)s::text[]::json[])"
)
#: The worker's periodic pruning of expired finished jobs (bounded per call).
PRUNE_FINISHED_JOBS: Final = sql.SQL("SELECT errands.prune_finished_jobs(%(max_rows)s::int)")
# Replacement payloads are sent as JSON text (NULL = keep the job's payload).
WORKER_FAIL_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.worker_fail_jobs(%(worker_id)s::text, %(ids)s::bigint[], "
    "%(messages)s::text[], %(payloads)s::text[]::json[])"
)
WORKER_FAIL_JOBS_NOW: Final = sql.SQL(
    "SELECT * FROM errands.worker_fail_jobs_now(%(worker_id)s::text, %(ids)s::bigint[], "
    "%(messages)s::text[])"
)
# Delays are sent as seconds and turned into intervals here (make_interval keeps
# fractions of a second).
WORKER_SNOOZE_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.worker_snooze_jobs(%(worker_id)s::text, %(ids)s::bigint[], "
    "ARRAY(SELECT make_interval(secs => s) FROM unnest(%(seconds)s::float8[]) "
    "WITH ORDINALITY AS d(s, i) ORDER BY i))"
)
WORKER_CANCEL_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.worker_cancel_jobs(%(worker_id)s::text, %(ids)s::bigint[], "
    "%(reasons)s::text[])"
)
#: The slow poll behind the ``errands:cancel`` notifications.
WORKER_CANCEL_REQUESTS: Final = sql.SQL(
    "SELECT errands.worker_cancel_requests(%(worker_id)s::text)"
)
WORKER_RETURN_JOBS: Final = sql.SQL(
    "SELECT * FROM errands.worker_return_jobs(%(worker_id)s::text, %(ids)s::bigint[])"
)
#: The worker's sweep: ``older_than`` is left to its SQL default, the stale-lock age,
#: so that the age is defined on the SQL side only.
RESET_LOCKED: Final = sql.SQL("SELECT errands.reset_locked()")

# --- the worker: registration, liveness, cron, sessions ------------------------------
# (errands._heartbeat, errands._cron, errands._connections)

TRY_LOCK: Final = sql.SQL("SELECT errands.try_lock_worker(%(worker_id)s::text)")
REGISTER: Final = sql.SQL(
    "SELECT errands.register_worker(%(worker_id)s::text, %(host)s::text, %(pid)s::int)"
)
REGISTER_SESSIONLESS: Final = sql.SQL(
    "SELECT errands.register_worker(%(worker_id)s::text, %(host)s::text, %(pid)s::int, false)"
)
HEARTBEAT: Final = sql.SQL("SELECT errands.heartbeat(%(worker_id)s::text)")
RESCUE_WORKERS: Final = sql.SQL(
    "SELECT errands.rescue_workers(%(timeout)s::float8 * interval '1 second')"
)
UNREGISTER: Final = sql.SQL("SELECT errands.unregister_worker(%(worker_id)s::text)")
SET_CRONTAB: Final = sql.SQL("SELECT errands.set_crontab(%(crontab)s::text, %(source)s::text)")
CRON_TICK: Final = sql.SQL("SELECT errands.cron_tick()")
#: Pool ``configure``: a session in another name of UTC is set to ``UTC``.
SET_TIMEZONE_UTC: Final = sql.SQL("SET TimeZone TO 'UTC'")

# --- the installer (errands._install) ----------------------------------------------------
# Before running the installer: the schema is current when the applied migration ids
# from the baseline on are exactly the packaged ones and the recorded definitions hash
# is the packaged one.  Neither query fails when the schema is missing (so they are
# safe inside a caller's transaction).

#: Whether the installer's bookkeeping tables exist.
INSTALLER_TABLES_EXIST: Final = sql.SQL(
    "SELECT to_regclass('errands.migrations') IS NOT NULL"
    " AND to_regclass('errands.definitions') IS NOT NULL"
)
#: The applied migration ids from ``first`` on (comma-separated) and the definitions hash.
INSTALLED_STATE: Final = sql.SQL(
    "SELECT (SELECT string_agg(id::text, ',' ORDER BY id) FROM errands.migrations"
    " WHERE id >= %(first)s::int), (SELECT hash FROM errands.definitions)"
)

# --- the embedded database (errands._embedded), on its ``postgres`` database -----------

DATABASE_EXISTS: Final = sql.SQL("SELECT 1 FROM pg_catalog.pg_database WHERE datname = %(name)s")


def create_database(name: str) -> sql.Composed:
    """``CREATE DATABASE`` of ``name``, quoted as an identifier."""
    return sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))


# --- the command line (errands.cli) --------------------------------------------------

#: `errands install`: the schema version now installed.
SCHEMA_VERSION: Final = sql.SQL("SELECT max(id) FROM errands.migrations")

#: `errands jobs`: the jobs of ``errands.jobs``, filtered by their state (computed in SQL).
JOBS_WITH_STATE: Final = sql.SQL("""
SELECT *
FROM errands.jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s::text)
  AND (%(task)s::text IS NULL OR task_identifier = %(task)s::text)
  AND (%(queue)s::text IS NULL OR queue_name = %(queue)s::text)
ORDER BY id
LIMIT %(limit)s::bigint
""")

#: `errands retry`: due now, with a fresh set of attempts.
RETRY_JOBS: Final = sql.SQL(
    "SELECT id FROM errands.reschedule_jobs(%(ids)s::bigint[], run_at => now(), attempts => 0)"
)

#: `errands workers`: every registered worker, oldest first.
WORKERS: Final = sql.SQL(
    "SELECT id, host, pid, started_at, last_heartbeat, state, running_job_ids"
    " FROM errands.workers ORDER BY started_at, id"
)

#: `errands cron check`: each item of a crontab with its next run times (NULL run_at:
#: it never runs).
CRON_NEXT_RUNS: Final = sql.SQL("""
SELECT p.line_number, p.id, p.task, p.options, n.run_at
FROM errands.parse_crontab(%(crontab)s) p
LEFT JOIN errands.cron_next_runs(%(crontab)s, now(), %(n)s) n ON n.id = p.id
ORDER BY p.line_number, n.run_at
""")

#: `errands import-graphile`: copy a Graphile Worker schema's jobs and crontab state
#: (one row per item: pending, scheduled, retrying, failed, crontabs, already_imported,
#: running, key_conflict).
IMPORT_GRAPHILE: Final = sql.SQL(
    "SELECT item, count FROM errands.import_graphile(%(schema)s::text, %(dry_run)s::boolean)"
)
