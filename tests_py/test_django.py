"""errands.contrib.django against a real Django project (tests_py/django_project/)
on the test cluster: migrated with ``manage.py migrate``, served by
``manage.py runserver`` over HTTP, its jobs run by ``manage.py errands_worker``.

The project's database is a fresh copy of the errands template; each test makes
its own orders and looks at the rows itself (psycopg, not Django).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest

pytest.importorskip("django", reason="Django is not installed (pip install errands[django])")

PROJECT = Path(__file__).resolve().parent / "django_project"


def manage(
    dsn: str, *args: str, settings: dict[str, Any] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = dsn
    env["ERRANDS_SETTINGS"] = json.dumps(settings or {})
    proc = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def project_db(
    database_factory: Callable[..., AbstractContextManager[str]], errands_template: str
) -> Iterator[str]:
    with database_factory(template=errands_template, prefix="django") as dsn:
        manage(dsn, "migrate", "--no-input")
        yield dsn


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(project_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``manage.py runserver`` on 127.0.0.1 (only), its base URL; its log is printed
    when a test fails."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = project_db
    log = tmp_path_factory.mktemp("django") / "runserver.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"runserver did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        print(log.read_text())  # shown by pytest for a failed test


def post(url: str, **fields: str) -> tuple[int, dict[str, Any]]:
    data = urllib.parse.urlencode(fields).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def rows(dsn: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def test_a_view_saves_and_enqueues_in_one_transaction(server: str, project_db: str) -> None:
    status, body = post(f"{server}/orders/", item="teapot")
    assert status == 201, body
    assert body["payload"] == {"order_id": body["order"]}  # the Job add_job returned
    assert rows(project_db, "SELECT item, status FROM shop_order WHERE id = %s", body["order"]) == [
        ("teapot", "placed")
    ]
    job = rows(
        project_db,
        "SELECT task_identifier, payload, max_attempts, state FROM errands.jobs WHERE id = %s",
        body["job"],
    )
    assert job == [("shop.confirm_order", {"order_id": body["order"]}, 3, "pending")]


def test_an_exception_in_atomic_leaves_no_order_and_no_job(server: str, project_db: str) -> None:
    before = rows(project_db, "SELECT count(*) FROM errands.jobs")
    orders_before = rows(project_db, "SELECT count(*) FROM shop_order")
    status, body = post(f"{server}/orders/", item="umbrella", fail="1")
    assert (status, body) == (402, {"rolled_back": True})
    assert rows(project_db, "SELECT count(*) FROM shop_order WHERE item = 'umbrella'") == [(0,)]
    assert rows(project_db, "SELECT count(*) FROM shop_order") == orders_before
    assert rows(project_db, "SELECT count(*) FROM errands.jobs") == before


def test_add_jobs_enqueues_many_in_the_same_transaction(server: str, project_db: str) -> None:
    data = urllib.parse.urlencode([("item", "cup"), ("item", "saucer")]).encode()
    with urllib.request.urlopen(f"{server}/orders/bulk/", data=data, timeout=30) as resp:
        body = json.loads(resp.read())
    payloads = rows(
        project_db,
        "SELECT payload->>'order_id' FROM errands.jobs WHERE id = ANY(%s) ORDER BY id",
        body["jobs"],
    )
    assert payloads == [(str(order),) for order in body["orders"]]


def test_errands_worker_once_runs_the_jobs(server: str, project_db: str) -> None:
    status, body = post(f"{server}/orders/", item="kettle")
    assert status == 201, body
    proc = manage(project_db, "errands_worker", "--once")
    assert "started (tasks: shop.confirm_order)" in proc.stderr, proc.stderr
    assert rows(project_db, "SELECT status FROM shop_order WHERE id = %s", body["order"]) == [
        ("confirmed",)
    ]
    # Every order of the earlier tests that committed was confirmed too.
    assert rows(project_db, "SELECT DISTINCT status FROM shop_order") == [("confirmed",)]
    assert rows(project_db, "SELECT count(*) FROM errands.jobs") == [(0,)]


def test_errands_worker_runs_until_sigterm(server: str, project_db: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["DATABASE_URL"] = project_db
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "errands_worker", "--concurrency", "2"],
        cwd=PROJECT, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert worker.stderr is not None
        first = worker.stderr.readline()  # logged once it listens
        assert "started (tasks: shop.confirm_order)" in first, first
        status, body = post(f"{server}/orders/", item="spoon")
        assert status == 201, body
        deadline = time.monotonic() + 20
        query = "SELECT status FROM shop_order WHERE id = %s"
        while rows(project_db, query, body["order"]) != [("confirmed",)]:
            assert time.monotonic() < deadline, "the worker did not run the job"
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        if worker.stderr is not None:
            worker.stderr.close()


def test_settings_errands_reach_the_worker(project_db: str) -> None:
    # A WorkerOptions field, upper-cased: a bad value is refused, naming it.
    proc = manage(project_db, "errands_worker", "--once", settings={"CONCURRENCY": 0}, check=False)
    assert proc.returncode == 1
    assert "concurrency must be at least 1, got 0" in proc.stderr, proc.stderr
    proc = manage(project_db, "errands_worker", "--once", settings={"CONCURENCY": 2}, check=False)
    assert proc.returncode == 1
    assert "unknown key(s) in settings.ERRANDS: CONCURENCY" in proc.stderr, proc.stderr
    # No app's tasks module and no TASKS: nothing to run, said plainly.
    proc = manage(
        project_db, "errands_worker", "--once", settings={"AUTODISCOVER": False}, check=False
    )
    assert proc.returncode == 1
    assert "no tasks" in proc.stderr, proc.stderr
    # TASKS instead of discovery; a DATABASES alias that does not exist.
    proc = manage(
        project_db, "errands_worker", "--once", "--database", "nope",
        settings={"AUTODISCOVER": False, "TASKS": ["shop.tasks"]}, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "no database 'nope' in settings.DATABASES" in proc.stderr, proc.stderr
    # CONNINFO instead of a DATABASES entry.
    conninfo_only = {"CONNINFO": project_db, "DATABASE": "nope"}
    manage(project_db, "errands_worker", "--once", settings=conninfo_only)


def test_add_job_refuses_a_database_that_is_not_postgresql(tmp_path: Path) -> None:
    script = """
import django
from django.conf import settings
settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                          "NAME": ":memory:"}})
django.setup()
from django.core.exceptions import ImproperlyConfigured
from errands.contrib.django import add_job
try:
    add_job("x")
except ImproperlyConfigured as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "errands: DATABASES['default'] is 'sqlite'; errands needs PostgreSQL"
