"""Garbage-collector tuning (errands._gc): ``errands worker`` tunes its process;
the library leaves the caller's process alone unless asked (``gc_tuning=True``)."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from test_cli import errands_process

import errands
from errands import Helpers, _gc, task


@pytest.fixture
def restore_gc() -> Iterator[tuple[int, int, int]]:
    """The pytest process's GC settings, put back after the test."""
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def _seen_by_a_task(db: str, conn: psycopg.Connection[Any], **options: Any) -> tuple[Any, int]:
    seen: list[tuple[Any, int]] = []

    @task
    async def look(payload: Any, helpers: Helpers) -> None:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))

    errands.add_job(conn, "look")
    asyncio.run(errands.run_once(db, [look], **options))
    assert len(seen) == 1
    return seen[0]


def test_run_once_leaves_the_process_gc_alone_by_default(
    db: str, conn: psycopg.Connection[Any], restore_gc: tuple[int, int, int]
) -> None:
    threshold, _ = _seen_by_a_task(db, conn)
    assert threshold == restore_gc


def test_gc_tuning_freezes_and_raises_the_young_threshold(
    db: str, conn: psycopg.Connection[Any], restore_gc: tuple[int, int, int]
) -> None:
    threshold, frozen = _seen_by_a_task(db, conn, gc_tuning=True)
    assert threshold == (_gc.YOUNG_THRESHOLD, restore_gc[1], restore_gc[2])
    assert frozen > 1000  # the modules and objects alive at start


def test_errands_worker_tunes_its_process(db: str, tmp_path: Path) -> None:
    out = tmp_path / "seen.json"
    tasks = tmp_path / "gc_tasks.py"
    tasks.write_text(
        "import gc, json\n"
        "from errands import task\n\n"
        "@task\n"
        "def look(payload, helpers):\n"
        "    seen = [gc.get_threshold()[0], gc.get_freeze_count()]\n"
        f"    open({str(out)!r}, 'w').write(json.dumps(seen))\n"
    )
    with psycopg.connect(db, autocommit=True) as conn:
        errands.add_job(conn, "look")
    proc = errands_process("worker", "--once", "--tasks", str(tasks), "-c", db)
    assert proc.returncode == 0, proc.stderr
    threshold, frozen = json.loads(out.read_text())
    assert threshold == _gc.YOUNG_THRESHOLD
    assert frozen > 1000
