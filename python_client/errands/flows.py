"""Flows: graphs of jobs added in one call (``errands.add_flow``), and the results
a step reads from the jobs it depended on (``errands.dependency_results``).

A flow is plain data, the JSON ``errands.add_flow`` takes: a list of steps (or a
mapping with ``"steps"``), each a dict with a ``name``, a ``task`` and optionally
``payload``, ``queue``, ``run_at``, ``max_attempts``, ``key``, ``priority``,
``flags``, ``timeout`` (seconds or a timedelta), ``depends_on`` (step names) and
``run_anyway``::

    flow = add_flow(conn, [
        {"name": "fetch", "task": "fetch", "payload": {"url": url}},
        {"name": "thumb", "task": "resize", "depends_on": ["fetch"]},
        {"name": "publish", "task": "publish", "depends_on": ["thumb"]},
    ])
    flow.jobs["publish"]  # its job id

Like :func:`errands.add_job`, these run inside ``conn``'s current transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from errands import _queries as q

FlowLike = Sequence[Mapping[str, Any]] | Mapping[str, Any]
"""A flow: its list of steps, or a mapping with ``"steps"`` (as ``errands.add_flow`` takes)."""


@dataclass(frozen=True)
class AddedFlow:
    """What :func:`add_flow` returns: the flow's id and each step's job id."""

    id: int
    jobs: dict[str, int]
    """Job id by step name, in step order."""


def _step_json(step: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(step)
    timeout = out.get("timeout")
    if isinstance(timeout, timedelta):
        out["timeout"] = f"{timeout.total_seconds()} seconds"
    elif isinstance(timeout, (int, float)):
        out["timeout"] = f"{timeout} seconds"
    run_at = out.get("run_at")
    if isinstance(run_at, datetime):
        out["run_at"] = run_at.isoformat()
    return out


def flow_json(flow: FlowLike, parent: int | None = None) -> dict[str, Any]:
    """The ``errands.add_flow`` argument for ``flow`` (``parent``: the running job
    whose try gates the flow, as :meth:`errands.Helpers.add_flow` passes)."""
    if isinstance(flow, Mapping):
        body = dict(flow)
        steps = body.get("steps")
    else:
        body, steps = {}, flow
    if isinstance(steps, Sequence) and not isinstance(steps, (str, bytes)):
        body["steps"] = [_step_json(s) if isinstance(s, Mapping) else s for s in steps]
    if parent is not None:
        body["parent"] = parent
    return body


def added_flow(rows: list[dict[str, Any]]) -> AddedFlow:
    return AddedFlow(id=rows[0]["flow_id"], jobs={r["step"]: r["job_id"] for r in rows})


def add_flow(
    conn: psycopg.Connection[Any], flow: FlowLike, *, parent: int | None = None
) -> AddedFlow:
    """Add every step of ``flow`` through ``conn``, in its current transaction.

    A bad flow (empty, a cycle, an unknown or duplicate step name, a bad field)
    raises :exc:`psycopg.errors.InvalidParameterValue` naming the step; nothing is
    added then.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(q.ADD_FLOW, {"flow": Jsonb(flow_json(flow, parent))})
        return added_flow(cur.fetchall())


async def add_flow_async(
    conn: psycopg.AsyncConnection[Any], flow: FlowLike, *, parent: int | None = None
) -> AddedFlow:
    """:func:`add_flow` for an :class:`psycopg.AsyncConnection`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(q.ADD_FLOW, {"flow": Jsonb(flow_json(flow, parent))})
        return added_flow(await cur.fetchall())


def dependency_results(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any]:
    """The results of the jobs ``job_id`` depends on that completed: keyed by step
    name within a flow, else by job id (as a string)."""
    row = conn.execute(q.DEPENDENCY_RESULTS, {"job_id": job_id}).fetchone()
    return dict(row[0]) if row and row[0] else {}


async def dependency_results_async(
    conn: psycopg.AsyncConnection[Any], job_id: int
) -> dict[str, Any]:
    """:func:`dependency_results` for an :class:`psycopg.AsyncConnection`."""
    cur = await conn.execute(q.DEPENDENCY_RESULTS, {"job_id": job_id})
    row = await cur.fetchone()
    return dict(row[0]) if row and row[0] else {}
