"""The worker's Prometheus endpoint: a real `errands worker --metrics-port` process
runs jobs with known outcomes; its /metrics, scraped over HTTP, must count exactly
what ran (and what the database says happened)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest

import errands
from tests_py.server_support import free_port
from tests_py.worker_support import wait_until, wait_until_async

pytest.importorskip("prometheus_client")
from prometheus_client.parser import text_string_to_metric_families

TASKS = textwrap.dedent(
    """
    from errands import Cancel, Snooze, task

    @task
    def ok(payload, helpers):
        return None

    @task
    async def boom(payload, helpers):
        raise RuntimeError("boom")

    @task
    async def nap(payload, helpers):
        raise Snooze(3600)

    @task
    async def stop(payload, helpers):
        raise Cancel("not wanted")
    """
)


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` as {sample name: {sorted labels: value}}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def outcome_counts(samples: dict[str, Any]) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["task"], dict(labels)["outcome"]): value
        for labels, value in samples.get("errands_jobs_total", {}).items()
        if value
    }


def test_worker_metrics_count_what_ran(db: str, tmp_path: Path) -> None:
    (tmp_path / "mtasks.py").write_text(TASKS)
    with psycopg.connect(db, autocommit=True) as conn:
        for _ in range(7):
            errands.add_job(conn, "ok")
        for _ in range(3):
            errands.add_job(conn, "boom", max_attempts=1)  # failed for good
        for _ in range(4):
            errands.add_job(conn, "boom", max_attempts=5)  # retried (in ~3 s)
        for _ in range(2):
            errands.add_job(conn, "nap")
        errands.add_job(conn, "stop")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "errands.cli", "worker", "--tasks", "mtasks", "-c", db,
         "--metrics-port", str(port), "--poll-interval", "0.1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    expected = {
        ("ok", "completed"): 7,
        ("boom", "failed"): 3,
        ("boom", "retried"): 4,
        ("nap", "snoozed"): 2,
        ("stop", "cancelled"): 1,
    }
    try:

        def settled() -> dict[str, Any] | None:
            try:
                samples = scrape(port)
            except OSError:
                return None
            ended = sum(outcome_counts(samples).values())
            return samples if ended >= sum(expected.values()) else None

        samples = wait_until(settled, timeout=30, what="every job's outcome in /metrics")
        assert outcome_counts(samples) == expected
        # Every (task, outcome) series exists from the start, at 0 when nothing happened.
        assert samples["errands_jobs_total"][(("outcome", "completed"), ("task", "nap"))] == 0
        # One run-duration and one queue-wait observation per try, by task.
        for task, tries in {"ok": 7, "boom": 7, "nap": 2, "stop": 1}.items():
            labels = (("task", task),)
            assert samples["errands_job_run_duration_seconds_count"][labels] == tries
            assert samples["errands_job_queue_wait_seconds_count"][labels] == tries
            inf = (("le", "+Inf"), ("task", task))
            assert samples["errands_job_run_duration_seconds_bucket"][inf] == tries
        # The fetches returned every try.
        assert samples["errands_fetch_batch_size_sum"][()] == 17
        assert samples["errands_jobs_running"][()] == 0
        assert samples["errands_local_queue_jobs"][()] == 0
        assert samples["errands_fetch_errors_total"][()] == 0
        # What the database says happened.
        with psycopg.connect(db) as conn:
            rows = conn.execute(
                "SELECT task_identifier, state, count(*) FROM errands.jobs GROUP BY 1, 2"
            ).fetchall()
        assert {(t, s): n for t, s, n in rows} == {
            ("boom", "failed"): 3,
            ("boom", "retrying"): 4,
            ("nap", "scheduled"): 2,
        }
        # No label carries a job id or payload: only task, outcome and le.
        names = {name for series in samples.values() for key in series for name, _ in key}
        assert names <= {"task", "outcome", "le"}
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert f"metrics on http://127.0.0.1:{port}/metrics" in out


def test_run_metrics_port_zero_picks_a_free_port(db: str) -> None:
    """``run(..., metrics_port=0)``: the worker reports the port it bound; the
    endpoint closes with the worker."""
    asyncio.run(_run_with_metrics(db))


async def _run_with_metrics(db: str) -> None:

    async def one(payload: Any, helpers: Any) -> None:
        return None

    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        await errands.add_job_async(conn, "m.one")
    runner = await errands.run(db, {"m.one": one}, metrics_port=0, poll_interval=0.1)
    try:
        port = runner.worker.metrics_port
        assert port
        samples = await wait_until_async(
            lambda: (s := scrape(port))
            and outcome_counts(s).get(("m.one", "completed")) == 1
            and s,
            what="the job counted",
        )
        assert samples["errands_job_queue_wait_seconds_count"][(("task", "m.one"),)] == 1
    finally:
        await runner.stop()
    with pytest.raises(OSError):
        scrape(port)


def test_metrics_options_are_checked() -> None:
    with pytest.raises(ValueError, match="metrics_port must be at most 65535, got 70000"):
        errands.WorkerOptions(metrics_port=70000)
    with pytest.raises(ValueError, match="metrics_host must be a non-empty string"):
        errands.WorkerOptions(metrics_port=1, metrics_host="")
