"""Task loading, the events API and log formatting (no database)."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from errands import Event, Events, Helpers, JsonFormatter, TaskRegistry, load_tasks, task
from errands.tasks import task_identifier

TASK_FILE = """
from errands import task

@task
def {name}(payload, helpers):
    return None

@task("{prefix}.async")
async def {name}_async(payload, helpers):
    return None

def not_a_task(payload, helpers):
    pass
"""


def test_decorator_forms() -> None:
    @task
    def plain(payload: Any, helpers: Helpers) -> None: ...

    @task()
    def called(payload: Any, helpers: Helpers) -> None: ...

    @task("emails.send")
    async def named(payload: Any, helpers: Helpers) -> None: ...

    assert [task_identifier(f) for f in (plain, called, named)] == [
        "plain", "called", "emails.send",
    ]  # fmt: skip
    registry = load_tasks([plain, called, named])
    assert registry.identifiers == ["plain", "called", "emails.send"]
    assert [info.is_async for info in registry] == [False, False, True]
    with pytest.raises(ValueError, match="1 to 128"):
        task("")


def test_plain_functions_mappings_and_partials() -> None:
    def undecorated(payload: Any, helpers: Helpers) -> None: ...

    async def coro(payload: Any, helpers: Helpers, extra: int) -> None: ...

    registry = load_tasks(
        [undecorated, {"bound": functools.partial(coro, extra=1)}, TaskRegistry()]
    )
    assert registry.identifiers == ["undecorated", "bound"]
    assert registry["bound"].is_async
    assert "undecorated" in registry and len(registry) == 2


def test_duplicate_identifiers_name_both_functions() -> None:
    @task("dup")
    def first(payload: Any, helpers: Helpers) -> None: ...

    @task("dup")
    def second(payload: Any, helpers: Helpers) -> None: ...

    with pytest.raises(ValueError) as info:
        load_tasks([first, second])
    message = str(info.value)
    assert "'dup'" in message
    assert f"{__name__}:test_duplicate_identifiers_name_both_functions.<locals>.first" in message
    assert f"{__name__}:test_duplicate_identifiers_name_both_functions.<locals>.second" in message
    # The same function twice is not a duplicate.
    assert load_tasks([first, first]).identifiers == ["dup"]


def test_load_from_module_file_and_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "errands_test_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "jobs.py").write_text(TASK_FILE.format(name="from_module", prefix="mod"))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_tasks("errands_test_pkg.jobs").identifiers == ["from_module", "mod.async"]

    folder = tmp_path / "tasks_dir"
    folder.mkdir()
    (folder / "a.py").write_text(TASK_FILE.format(name="in_a", prefix="a"))
    (folder / "b.py").write_text(TASK_FILE.format(name="in_b", prefix="b"))
    (folder / "_private.py").write_text("raise RuntimeError('not imported')")
    assert load_tasks(str(folder / "a.py")).identifiers == ["in_a", "a.async"]
    assert load_tasks(folder).identifiers == ["in_a", "a.async", "in_b", "b.async"]
    # Loading the same file twice gives the same functions: no duplicate error.
    assert len(load_tasks([folder / "a.py", str(folder)])) == 4

    (folder / "c.py").write_text(TASK_FILE.format(name="in_a", prefix="c"))
    with pytest.raises(ValueError, match="duplicate task identifier 'in_a'"):
        load_tasks(folder)
    with pytest.raises(FileNotFoundError):
        load_tasks(str(tmp_path / "missing.py"))
    with pytest.raises(ModuleNotFoundError):
        load_tasks("errands_test_pkg.missing")


def test_events_api() -> None:
    events = Events()
    seen: list[str] = []

    @events.on("job:start")
    def first(event: Event) -> None:
        seen.append("first:" + event.name)

    async def second(event: Event) -> None:
        seen.append("second:" + event.name)

    events.on("job:start", second)
    events.on("*", lambda e: seen.append("any:" + e.name))

    async def main() -> None:
        events.emit(Event("job:start", "w"))
        events.emit(Event("job:other", "w"))
        await events.drain()
        events.off("job:start", first)
        events.off("job:start", first)  # not an error
        events.emit(Event("job:start", "w"))
        await events.drain()

    asyncio.run(main())
    assert seen == [
        "first:job:start", "any:job:start", "any:job:other", "second:job:start",
        "any:job:start", "second:job:start",
    ]  # fmt: skip


def test_json_log_formatter() -> None:
    record = logging.LogRecord("errands.worker", logging.WARNING, __file__, 1, "job %s", (7,), None)
    record.job_id = 7
    record.task_identifier = "emails.send"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "job 7"
    assert (data["level"], data["logger"]) == ("WARNING", "errands.worker")
    assert (data["job_id"], data["task_identifier"]) == (7, "emails.send")
    assert "ValueError: boom" in data["traceback"]
