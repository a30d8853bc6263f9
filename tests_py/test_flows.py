"""Flows end to end: concurrent completion of the last two dependencies (two
sessions), results through a three-level graph with a real worker, a task that
fans out and in (and whose failed try leaves nothing behind), and the CLI."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from typer.testing import CliRunner

import errands
from errands import Helpers, SyncWorkerUtils, task
from errands.cli import app


def state(conn: psycopg.Connection[Any], job_id: int) -> str:
    row = conn.execute(
        "SELECT coalesce((SELECT state FROM errands.jobs WHERE id = %(id)s),"
        " (SELECT state FROM errands.finished_jobs WHERE id = %(id)s), 'gone')",
        {"id": job_id},
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_two_sessions_completing_the_last_two_dependencies_release_once(db: str) -> None:
    """Each round: a and b (fetched by two workers) complete in two transactions at
    the same moment; c, which depends on both, must end pending exactly once
    (counter 2 -> 0), never stuck at 1 (a lost update) nor released early."""
    rounds = 25
    with psycopg.connect(db, autocommit=True) as setup:
        for n in range(rounds):
            rows = setup.execute(
                "SELECT step, job_id FROM errands.add_flow(%s::jsonb)",
                [json.dumps({"steps": [
                    {"name": "a", "task": "race"}, {"name": "b", "task": "race"},
                    {"name": "c", "task": "race_join", "depends_on": ["a", "b"]},
                ]})],
            ).fetchall()  # fmt: skip
            ids = dict(rows)
            a = setup.execute("SELECT id FROM errands.get_jobs('w1', '{race}')").fetchone()
            b = setup.execute("SELECT id FROM errands.get_jobs('w2', '{race}')").fetchone()
            assert a and b and {a[0], b[0]} == {ids["a"], ids["b"]}
            barrier = threading.Barrier(2, timeout=30)
            errors: list[BaseException] = []

            def complete(
                worker: str,
                job_id: int,
                hold: float,
                barrier: threading.Barrier = barrier,
                errors: list[BaseException] = errors,
            ) -> None:
                try:
                    with psycopg.connect(db) as conn:  # one transaction, committed at exit
                        barrier.wait()
                        conn.execute(
                            "SELECT errands.worker_complete_jobs(%s, %s::bigint[])",
                            [worker, [job_id]],
                        )
                        # In odd rounds one transaction commits late: the other
                        # decrements c while it holds c's row (the lock-wait path).
                        time.sleep(hold)
                except BaseException as exc:  # re-raised in the test thread
                    errors.append(exc)
                    barrier.abort()

            hold = 0.1 if n % 2 else 0.0
            threads = [
                threading.Thread(target=complete, args=("w1", a[0], hold)),
                threading.Thread(target=complete, args=("w2", b[0], 0.0)),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert not errors, errors
            row = setup.execute(
                "SELECT waiting_for, (SELECT state FROM errands.jobs WHERE id = %(id)s)"
                " FROM errands._jobs WHERE id = %(id)s",
                {"id": ids["c"]},
            ).fetchone()
            assert row == (None, "pending")
            setup.execute("SELECT errands.complete_jobs(ARRAY[%s::bigint])", [ids["c"]])


def run_until(db: str, tasks: list[Any], done: Any, timeout: float = 30.0) -> None:
    """Run a continuous worker until ``done()`` (called in a thread) is true."""

    async def main() -> None:
        runner = await errands.run(db, tasks, concurrency=4, poll_interval=5.0)
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while not await asyncio.to_thread(done):
                assert asyncio.get_running_loop().time() < deadline, "timed out"
                await asyncio.sleep(0.05)
        finally:
            await runner.stop()

    asyncio.run(main())


def test_results_pass_through_a_three_level_graph(db: str, conn: psycopg.Connection[Any]) -> None:
    """fetch -> resize x3 -> publish: each step gets its dependencies' results by
    step name, with retention 0 (results kept only as long as a dependent needs them)."""
    seen: dict[str, Any] = {}

    @task
    async def fetch(payload: Any, helpers: Helpers) -> Any:
        return {"image": payload["url"].upper()}

    @task
    async def resize(payload: Any, helpers: Helpers) -> Any:
        got = await helpers.dependency_results()
        return f"{got['fetch']['image']}@{payload['width']}"

    @task
    def publish(payload: Any, helpers: Helpers) -> Any:
        seen.update(helpers.dependency_results_sync())
        return None

    with SyncWorkerUtils(db) as utils:
        flow = utils.add_flow(
            {"steps": [
                {"name": "fetch", "task": "fetch", "payload": {"url": "cat.png"}},
                *({"name": f"resize_{w}", "task": "resize", "payload": {"width": w},
                   "depends_on": ["fetch"]} for w in (64, 256, 1024)),
                {"name": "publish", "task": "publish",
                 "depends_on": ["resize_64", "resize_256", "resize_1024"]},
            ]}
        )  # fmt: skip
    assert state(conn, flow.jobs["publish"]) == "waiting"
    run_until(db, [fetch, resize, publish], lambda: bool(seen))
    assert seen == {
        "resize_64": "CAT.PNG@64", "resize_256": "CAT.PNG@256", "resize_1024": "CAT.PNG@1024",
    }  # fmt: skip


def test_a_task_fans_out_and_in_and_a_failed_try_leaves_nothing(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """The parent adds three children and a join with helpers.add_flow; its first
    try fails after adding them (they are cancelled, never run), the second
    completes (its flow runs); the join sees the three children's results."""
    runs: list[str] = []
    joined: dict[str, Any] = {}

    @task
    async def parent(payload: Any, helpers: Helpers) -> None:
        await helpers.add_flow(
            [{"name": f"child_{i}", "task": "child", "payload": {"i": i}} for i in range(3)]
            + [{"name": "join", "task": "join", "depends_on": [f"child_{i}" for i in range(3)]}]
        )
        if helpers.job.attempts == 1:
            raise RuntimeError("first try fails after fanning out")

    @task
    async def child(payload: Any, helpers: Helpers) -> Any:
        runs.append(f"child_{payload['i']}")
        return payload["i"] * 10

    @task
    async def join(payload: Any, helpers: Helpers) -> None:
        runs.append("join")
        joined.update(await helpers.dependency_results())

    p = errands.add_job(conn, "parent", max_attempts=2)
    conn.execute("UPDATE errands._jobs SET run_at = now() WHERE id = %s", [p.id])

    def done() -> bool:
        # The retry's backoff (e^1 s) is skipped so that the test stays short.
        conn.execute("UPDATE errands._jobs SET run_at = now() WHERE id = %s AND attempts = 1"
                     " AND locked_at IS NULL", [p.id])  # fmt: skip
        return bool(joined)

    run_until(db, [parent, child, join], done)
    assert sorted(runs) == ["child_0", "child_1", "child_2", "join"]
    assert joined == {"child_0": 0, "child_1": 10, "child_2": 20}
    cancelled = conn.execute(
        "SELECT count(*) FROM errands._flow_steps s WHERE NOT EXISTS"
        " (SELECT 1 FROM errands._jobs j WHERE j.id = s.job_id)"
    ).fetchone()
    assert cancelled == (8,)  # both flows' steps are gone: one cancelled, one run


def test_cli_flow_add_and_show(db: str, conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text(json.dumps([
        {"name": "fetch", "task": "fetch"},
        {"name": "left", "task": "resize", "depends_on": ["fetch"]},
        {"name": "right", "task": "resize", "depends_on": ["fetch"]},
        {"name": "publish", "task": "publish", "depends_on": ["left", "right"]},
    ]))  # fmt: skip
    added = CliRunner().invoke(app, ["flow", "add", str(path), "-c", db])
    assert added.exit_code == 0, added.output
    lines = added.output.splitlines()
    assert lines[0].startswith("flow ") and [ln.split(":")[0].strip() for ln in lines[1:]] == [
        "fetch", "left", "right", "publish",
    ]  # fmt: skip
    flow_id = lines[0].split()[1]
    shown = CliRunner().invoke(app, ["flow", "show", flow_id, "-c", db])
    assert shown.exit_code == 0, shown.output
    tree = [ln.split("  #")[0] for ln in shown.output.splitlines()[1:]]
    assert tree == ["fetch", "├── left", "│   └── publish", "└── right", "    └── publish"]
    assert "pending" in shown.output.splitlines()[1]
    assert shown.output.splitlines()[-1].endswith("(see above)")

    path.write_text(json.dumps([{"name": "a", "task": "t", "depends_on": ["a"]}]))
    bad = CliRunner().invoke(app, ["flow", "add", str(path), "-c", db])
    assert bad.exit_code == 1
    assert "flow step 'a' is on a dependency cycle" in bad.output
    missing = CliRunner().invoke(app, ["flow", "show", "987654", "-c", db])
    assert missing.exit_code == 1 and "flow 987654 does not exist" in missing.output


@pytest.mark.parametrize("retention", ["0", "1 hour"])
def test_add_job_depends_on_from_python(
    db: str, conn: psycopg.Connection[Any], retention: str
) -> None:
    conn.execute("SELECT errands.set_retention(%s::interval)", [retention])
    a = errands.add_job(conn, "dep_a")
    b = errands.add_job(conn, "dep_b", depends_on=[a.id])
    assert (a.state, b.state) == ("pending", "waiting")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT errands.get_jobs('w', '{dep_a}')")
        cur.execute(
            "SELECT errands.worker_complete_jobs('w', ARRAY[%s::bigint], ARRAY['\"r\"'::json])",
            [a.id],
        )
    with SyncWorkerUtils(db) as utils:
        assert utils.dependency_results(b.id) == {str(a.id): "r"}
    assert state(conn, b.id) == "pending"


def test_run_once_runs_a_flow_through(db: str) -> None:
    """A run-once worker fetches again after writing a completion, so the steps that
    completion releases run in the same run (a chain of 3, then a fan-in of 20)."""
    ran: list[str] = []

    @task
    async def step(payload: Any, helpers: Helpers) -> None:
        ran.append(payload["name"])

    chain = [{"name": "a", "task": "step", "payload": {"name": "a"}}] + [
        {"name": n, "task": "step", "payload": {"name": n}, "depends_on": [p]}
        for p, n in (("a", "b"), ("b", "c"))
    ]
    fan = [{"name": f"k{i}", "task": "step", "payload": {"name": "kid"}} for i in range(20)] + [
        {"name": "join", "task": "step", "payload": {"name": "join"},
         "depends_on": [f"k{i}" for i in range(20)]}
    ]  # fmt: skip
    with SyncWorkerUtils(db) as utils:
        utils.add_flow(chain)
        utils.add_flow(fan)
    asyncio.run(errands.run_once(db, [step], concurrency=4))
    assert [n for n in ran if n in "abc"] == ["a", "b", "c"]
    assert ran.count("kid") == 20 and ran[-1] in ("c", "join") and "join" in ran


def test_a_dependency_added_while_its_job_completes_is_not_lost(db: str) -> None:
    """add_job(depends_on => [a]) in a transaction still open while a worker
    completes a: the completion waits for it and then releases the new job (and
    keeps a's result for it) instead of leaving it waiting forever."""
    with psycopg.connect(db, autocommit=True) as setup:
        row = setup.execute("SELECT id FROM errands.add_job('race_dep')").fetchone()
        assert row is not None
        a = row[0]
        setup.execute("SELECT errands.get_jobs('w', '{race_dep}')")
    with psycopg.connect(db) as enqueuer:  # one open transaction
        row = enqueuer.execute(
            "SELECT id, state FROM errands.add_job('race_next', depends_on => ARRAY[%s::bigint])",
            [a],
        ).fetchone()
        assert row is not None and row[1] == "waiting"
        b = row[0]
        done = threading.Event()

        def complete() -> None:
            with psycopg.connect(db, autocommit=True) as worker:
                worker.execute(
                    "SELECT errands.worker_complete_jobs('w', ARRAY[%s::bigint],"
                    " ARRAY['\"A\"'::json])",
                    [a],
                )
            done.set()

        thread = threading.Thread(target=complete)
        thread.start()
        assert not done.wait(0.5), "the completion waits for the enqueuing transaction"
        enqueuer.commit()
        thread.join(30)
        assert done.is_set()
    with psycopg.connect(db, autocommit=True) as conn:
        assert state(conn, b) == "pending"
        with SyncWorkerUtils(db) as utils:
            assert utils.dependency_results(b) == {str(a): "A"}
