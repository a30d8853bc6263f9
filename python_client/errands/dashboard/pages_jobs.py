"""GET /jobs (filters, keyset pagination, sorting) and GET /jobs/{id} (detail)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import sql
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from errands.dashboard._filters import LIVE_STATES, STATES, FilterError, JobFilter
from errands.dashboard._svg import flow_graph

if TYPE_CHECKING:
    from errands.dashboard._app import Dashboard

LIVE_COLUMNS = ("id, state, task_identifier, queue_name, run_at, "
                "NULL::timestamptz AS finished_at, attempts, max_attempts, "
                "left(last_error, 300) AS last_error, key, locked_by, "
                "left(payload::text, 160) AS payload_preview, created_at")
FINISHED_COLUMNS = ("id, state, task_identifier, queue_name, NULL::timestamptz AS run_at, "
                    "finished_at, attempts, max_attempts, left(last_error, 300) AS last_error, "
                    "key, "
                    "NULL::text AS locked_by, left(payload::text, 160) AS payload_preview, "
                    "created_at")
# Payloads and results as text: shown as stored (a deeply nested value need not parse).
LIVE_JOB = ("SELECT id, queue_name, task_identifier, payload::text AS payload, "
            "NULL::text AS result, priority, run_at, attempts, max_attempts, last_error, "
            "created_at, updated_at, key, "
            "locked_at, locked_by, state, timeout, NULL::timestamptz AS finished_at, "
            "NULL::timestamptz AS started_at FROM errands.jobs WHERE id = %s")
FINISHED_JOB = ("SELECT id, queue_name, task_identifier, payload::text AS payload, "
                "result::text AS result, priority, NULL::timestamptz AS run_at, attempts, "
                "max_attempts, last_error, created_at, NULL::timestamptz AS updated_at, key, "
                "NULL::timestamptz AS locked_at, NULL::text AS locked_by, state, "
                "NULL::interval AS timeout, finished_at, started_at "
                "FROM errands.finished_jobs WHERE id = %s")
# Its failed tries (errands.jobs.errors, carried into history), oldest first.
ERRORS = ("SELECT (x.e->>'attempt')::integer AS attempt, "
          "(x.e->>'started_at')::timestamptz AS started_at, "
          "(x.e->>'failed_at')::timestamptz AS failed_at, x.e->>'worker' AS worker, "
          "x.e->>'error' AS error "
          "FROM (SELECT errors FROM errands.jobs WHERE id = %(id)s UNION ALL "
          "      SELECT errors FROM errands.finished_jobs WHERE id = %(id)s LIMIT 1) j, "
          "jsonb_array_elements(j.errors) WITH ORDINALITY AS x(e, n) ORDER BY x.n")
FLOW_OF = "SELECT flow_id FROM errands.flow_steps WHERE job_id = %s"
FLOW_STEPS = ("SELECT flow_id, step, job_id, position, depends_on, run_anyway, state, "
              "task_identifier, last_error FROM errands.flow_steps WHERE flow_id = %s "
              "ORDER BY position")


# A big table's rows are searched this many ids at a time when no index serves the
# filter: each page reads a bounded number of rows, whatever the filter matches.
WINDOW = 50_000
SIZE = "SELECT c.reltuples::bigint AS n FROM pg_catalog.pg_class c WHERE c.oid = %s::regclass"


def list_query(flt: JobFilter, id_bound: int | None) -> tuple[sql.Composable, list[Any]]:
    """The page's ids first (only the columns the filter and order need; for
    unfinished jobs by errands.dashboard_job_ids, on the table itself), then their
    rows: the payload preview and error text are computed for one page only."""
    cols = FINISHED_COLUMNS if flt.finished else LIVE_COLUMNS
    ids: sql.Composable
    if flt.finished:
        where, params = flt.where(id_bound=id_bound)
        ids = sql.SQL("ARRAY(SELECT id FROM {rel} WHERE {where} ORDER BY {order} LIMIT %s)").format(
            rel=flt.relation(), where=where, order=flt.order_by())
        params = [*params, flt.limit + 1]
    else:
        ids, params = flt.id_call(id_bound, flt.limit + 1)
    query = sql.SQL("SELECT {cols} FROM {rel} WHERE id = ANY({ids}) ORDER BY {order}").format(
        cols=sql.SQL(cols), rel=flt.relation(), ids=ids, order=flt.order_by())
    return query, params


async def window_bound(dash: Dashboard, flt: JobFilter) -> tuple[int | None, bool]:
    """(the id bound of this page's search window, whether ids lie beyond it), or
    (None, False) when the table is small or an index serves the query."""
    if flt.sort_column != "id" or not flt.scans:
        return None, False
    table = "errands._finished_jobs" if flt.finished else "errands._jobs"
    size = await dash.db.row(SIZE, [table])
    if size is None or size["n"] < dash.options.exact_count_below:
        return None, False
    rel = flt.relation()
    first = sql.SQL("SELECT id FROM {} ORDER BY id {} LIMIT 1")
    newest = await dash.db.row(first.format(rel, sql.SQL("DESC")))
    oldest = await dash.db.row(first.format(rel, sql.SQL("ASC")))
    if newest is None or oldest is None:
        return None, False
    if flt.descending:
        start = flt.cursor()[1] if flt.after else newest["id"] + 1
        bound = start - WINDOW
        return bound, bound > oldest["id"]
    start = flt.cursor()[1] if flt.after else oldest["id"] - 1
    bound = start + WINDOW
    return bound, bound < newest["id"]


def timeline(job: dict[str, Any], errors: list[dict[str, Any]]) -> list[tuple[datetime, str]]:
    """The job's life: created, due, each failed try's start and failure (its
    errors, the last 20), the try running now or the one that finished it, finished."""
    events: list[tuple[datetime, str]] = [(job["created_at"], "created")]
    # A failed job's run_at (moved by its last backoff) is no longer a due time.
    if (job["run_at"] is not None and job["run_at"] != job["created_at"]
            and job["state"] != "failed"):
        due = f"try {job['attempts'] + 1} due" if job["state"] == "retrying" else "due (run_at)"
        events.append((job["run_at"], due))
    for e in errors:
        by = f" by worker {e['worker']}" if e["worker"] else ""
        if e["started_at"] is not None:
            events.append((e["started_at"], f"try {e['attempt']} started{by}"))
        events.append((e["failed_at"], f"try {e['attempt']} failed"))
    if not errors and job["attempts"] and job["last_error"] and job["updated_at"] is not None:
        # A row written before errors existed: only the last failure is known.
        events.append((job["updated_at"], f"try {job['attempts']} of {job['max_attempts']} "
                                          "failed (last error)"))
    if job["locked_at"] is not None:
        events.append((job["locked_at"], f"try {job['attempts']} started by worker "
                                         f"{job['locked_by']} (running)"))
    if job["started_at"] is not None:
        events.append((job["started_at"], f"try {job['attempts']} started"))
    if job["finished_at"] is not None:
        events.append((job["finished_at"], job["state"]))
    # Equal times keep their order above (created before due, start before failure).
    return sorted(events, key=lambda e: e[0])


def routes(dash: Dashboard) -> list[BaseRoute]:
    async def jobs(request: Request) -> Response:
        try:
            flt = JobFilter.parse(request.query_params, dash.options.page_size)
        except FilterError as exc:
            return dash.render.page(request, "jobs.html", status=400, error=str(exc),
                                    flt=JobFilter(), rows=[], next_query=None, states=STATES,
                                    live_states=LIVE_STATES, searched=None, window=WINDOW)
        bound, beyond = await window_bound(dash, flt)
        query, params = list_query(flt, bound)
        rows = await dash.db.rows(query, params)
        next_query = None
        searched = None
        if len(rows) > flt.limit:
            rows = rows[: flt.limit]
            next_query = flt.query(after=flt.next_cursor(rows[-1]))
        elif beyond and bound is not None:
            # The window ended before the page filled: go on from its edge.
            next_query = flt.query(after=str(bound))
            searched = bound
        return dash.render.page(request, "jobs.html", flt=flt, rows=rows, next_query=next_query,
                                states=STATES, live_states=LIVE_STATES, error=None,
                                searched=searched, window=WINDOW)

    async def job(request: Request) -> Response:
        raw = request.path_params["job_id"]
        job = await dash.db.row(LIVE_JOB, [raw]) or await dash.db.row(FINISHED_JOB, [raw])
        if job is None:
            raise HTTPException(404, f"no job {raw} (finished and not kept, or never existed)")
        errors = await dash.db.rows(ERRORS, {"id": job["id"]})
        flow = await dash.db.row(FLOW_OF, [raw])
        graph = None
        if flow is not None:
            graph = flow_graph(await dash.db.rows(FLOW_STEPS, [flow["flow_id"]]))
        return dash.render.page(request, "job.html", job=job, errors=errors,
                                timeline=timeline(job, errors),
                                flow_id=flow and flow["flow_id"], graph=graph)

    return [Route("/jobs", jobs, methods=["GET"]),
            Route("/jobs/{job_id:int}", job, methods=["GET"])]
