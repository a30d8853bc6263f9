"""Shared helpers for the tests_py/test_worker_*.py files (not a test module)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

WORKER_SCRIPT = Path(__file__).with_name("worker_script.py")


def jobs(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every row of errands.jobs, by id."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM errands.jobs ORDER BY id").fetchall()


def job(conn: psycopg.Connection[Any], job_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM errands.jobs WHERE id = %s", [job_id]).fetchone()


def db_now(conn: psycopg.Connection[Any]) -> datetime:
    """The database's ``now()`` (the start of this autocommit statement)."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    value: datetime = row[0]
    return value


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll ``predicate`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


async def wait_until_async(
    predicate: Callable[[], Awaitable[Any] | Any], timeout: float = 10.0, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


def start_worker(dsn: str, *args: str) -> subprocess.Popen[str]:
    """Start tests_py/worker_script.py (a worker in its own process); returns once it
    printed ``ready`` (it is listening)."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), dsn, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"worker did not start: {line!r}\n{err}")
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 15.0) -> tuple[int, str, str]:
    """Wait for the process; returns (exit code, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"worker did not exit:\n{err}") from None
    return proc.returncode, out, err


def marks(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(label, what) rows written by worker_script.py tasks, in order."""
    rows = conn.execute("SELECT label, what FROM marks ORDER BY id").fetchall()
    return [(label, what) for label, what in rows]


MARKS_TABLE = """
CREATE TABLE marks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    label text NOT NULL,
    what text NOT NULL,
    worker_id text,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def locked_by(conn: psycopg.Connection[Any], job_id: int) -> str | None:
    """The worker holding ``job_id`` (None: not locked)."""
    row = conn.execute("SELECT locked_by FROM errands._jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None
    value: str | None = row[0]
    return value


def kill(*procs: subprocess.Popen[str]) -> None:
    """SIGKILL the worker processes still running and reap them."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
