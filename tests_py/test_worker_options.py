"""WorkerOptions: one declaration of a worker's options, checked once; and the
constants the Python side shares with the SQL side (errands._constants)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from typing import Any, get_type_hints

import psycopg
import pytest

import errands
from errands import Events, Helpers, WorkerOptions, _constants, _options, task
from errands import _queries as q


def test_the_keyword_overrides_declare_the_same_names_and_types_as_the_options() -> None:
    fields = get_type_hints(WorkerOptions)
    overrides = get_type_hints(_options.WorkerOverrides)
    assert overrides == fields
    assert _options.WorkerOverrides.__required_keys__ == frozenset()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"concurrency": 0}, "concurrency must be at least 1, got 0"),
        ({"concurrency": 2.5}, "concurrency must be an integer, got 2.5"),
        ({"poll_interval": 0}, "poll_interval must be positive, got 0"),
        ({"shutdown_timeout": -1}, "shutdown_timeout must not be negative, got -1"),
        ({"heartbeat_interval": -1.0}, "heartbeat_interval must be positive, got -1.0"),
        (
            {"heartbeat_interval": 10, "heartbeat_timeout": 10},
            "heartbeat_timeout must be greater than heartbeat_interval (10), got 10",
        ),
        ({"local_queue_size": -1}, "local_queue_size must not be negative, got -1"),
        ({"max_pool_size": 0}, "max_pool_size must be at least 1, got 0"),
        ({"worker_id": ""}, "worker_id must be a non-empty string, got ''"),
        ({"listen": "no"}, "listen must be True or False, got 'no'"),
        ({"forbidden_flags": "urgent"}, "forbidden_flags must be a list of flags"),
    ],
)
def test_a_bad_value_is_refused_by_name(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        WorkerOptions(**changes)
    # The same check for a copy with the bad value, and for keyword overrides.
    with pytest.raises(ValueError, match=re.escape(message)):
        WorkerOptions().replace(**changes)
    with pytest.raises(ValueError, match=re.escape(message)):
        asyncio.run(errands.run("postgresql://nowhere.invalid/x", [], **changes))


def test_options_are_frozen_and_keep_their_own_copy_of_the_flags() -> None:
    flags = ["slow"]
    options = WorkerOptions(forbidden_flags=flags)
    flags.append("urgent")
    assert options.forbidden_flags == ("slow",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.concurrency = 3  # type: ignore[misc]
    assert options.replace(concurrency=3).concurrency == 3
    assert options.replace() is options


def test_run_once_takes_options_and_keyword_overrides(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    seen: list[tuple[str, int]] = []

    @task
    async def hello(payload: Any, helpers: Helpers) -> None:
        seen.append((helpers.worker_id, len(helpers.job.payload)))

    events = Events()
    starts: list[Any] = []
    events.on("worker:start", lambda e: starts.append(e.data))
    errands.add_job(conn, "hello", [1, 2])
    options = WorkerOptions(concurrency=3, worker_id="w-options", log_jobs=False)
    asyncio.run(errands.run_once(db, [hello], options=options, events=events, concurrency=4))
    assert seen == [("w-options", 2)]
    assert starts == [{"tasks": ["hello"], "concurrency": 4}]
    with pytest.raises(ValueError, match="crontab needs a continuous worker"):
        asyncio.run(errands.run_once(db, [hello], crontab="* * * * * hello"))


def test_the_shared_constants_agree_with_the_database(conn: psycopg.Connection[Any]) -> None:
    grace = conn.execute("SELECT extract(epoch FROM errands._rescue_grace())").fetchone()
    assert grace is not None and float(grace[0]) == _constants.RESCUE_GRACE
    # rescue_workers reads the grace from errands._rescue_grace(), not a copy of its own.
    body = conn.execute(
        "SELECT pg_get_functiondef('errands.rescue_workers(interval)'::regprocedure)"
    ).fetchone()
    assert body is not None
    assert "errands._rescue_grace()" in body[0]
    assert not re.search(r"now\(\) - interval '[\d.]+ seconds?'", body[0])
    assert _constants.LOCKLESS_HEARTBEAT_INTERVAL * 4 <= _constants.RESCUE_GRACE
    # The advisory-lock key is computed in SQL only: the worker calls try_lock_worker.
    assert not hasattr(_constants, "WORKER_LOCK_KEY")
    assert "errands.try_lock_worker(" in q.TRY_LOCK.as_string(conn)


def test_try_lock_worker_holds_the_session_lock_the_rescue_looks_for(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """The lock taken through the SECURITY DEFINER API belongs to the caller's
    session: another session sees it in pg_locks, and rescue_workers spares the
    worker until that session ends."""
    worker_id = "w-try-lock"
    params = {"worker_id": worker_id, "host": "h", "pid": 1}
    with psycopg.connect(db, autocommit=True) as holder:
        holder_pid = holder.info.backend_pid
        assert holder.execute(q.TRY_LOCK, params).fetchone() == (True,)
        holder.execute(q.REGISTER, params)
        key = conn.execute("SELECT errands._worker_lock_key(%s)", [worker_id]).fetchone()
        assert key is not None
        held = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objsubid = 1 AND classid = ((%(k)s >> 32) & 4294967295)::oid"
            " AND objid = (%(k)s & 4294967295)::oid",
            {"k": key[0]},
        ).fetchall()
        assert held == [(holder_pid,)]
        # Another session cannot take it; the holder may take it again.
        assert conn.execute(q.TRY_LOCK, params).fetchone() == (False,)
        assert holder.execute(q.TRY_LOCK, params).fetchone() == (True,)
        # Past the grace a lock-less worker would be rescued; this one holds its lock.
        # (A heartbeat from before the server started is judged by timeout only.)
        conn.execute(
            "SELECT pg_sleep(greatest(0, 2.5 - extract(epoch FROM"
            " clock_timestamp() - pg_postmaster_start_time())))"
        )
        conn.execute(
            "UPDATE errands._workers SET last_heartbeat = now() - interval '2 seconds'"
            " WHERE id = %s",
            [worker_id],
        )
        conn.execute(q.RESCUE_WORKERS, {"timeout": 30.0})
        state = conn.execute(
            "SELECT state FROM errands.workers WHERE id = %s", [worker_id]
        ).fetchone()
        assert state == ("alive",)
    # The session ended: the lock is gone and the rescue declares the worker dead.
    # A closed client connection's backend exits (and drops its locks) a moment later.
    for _ in range(100):
        backend = conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [holder_pid])
        if backend.fetchone() is None:
            break
        time.sleep(0.05)
    conn.execute(q.RESCUE_WORKERS, {"timeout": 30.0})
    gone = conn.execute("SELECT count(*) FROM errands._workers WHERE id = %s", [worker_id])
    assert gone.fetchone() == (0,)


def test_the_worker_sweeps_locks_older_than_the_sql_stale_lock_age(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    @task
    async def unrelated(payload: Any, helpers: Helpers) -> None:
        pass

    ids = [
        conn.execute("SELECT id FROM errands.add_job('theirs')").fetchone()[0]  # type: ignore[index]
        for _ in range(2)
    ]
    for job_id, offset in zip(ids, ["-1 minute", "1 minute"], strict=True):
        conn.execute(
            "UPDATE errands._jobs SET locked_by = 'gone',"
            " locked_at = now() - errands._stale_lock_age() + %s::interval WHERE id = %s",
            [offset, job_id],
        )
    asyncio.run(errands.run_once(db, [unrelated], log_jobs=False))
    rows = conn.execute("SELECT id, locked_by FROM errands.jobs ORDER BY id").fetchall()
    assert rows == [(ids[0], None), (ids[1], "gone")]  # older than the age: reset
