"""The FastAPI example (examples/fastapi_app) under a real uvicorn, over HTTP.

Requests enqueue inside their own transaction; the worker runs in the app's
lifespan; SIGTERM stops uvicorn and the worker gracefully (a running job finishes).
"""

from __future__ import annotations

import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from server_support import Server, free_port, post_json, serve

pytest.importorskip("fastapi", reason="fastapi is not installed (pip install -e '.[test]')")
pytest.importorskip("uvicorn", reason="uvicorn is not installed (pip install -e '.[test]')")

pytestmark = pytest.mark.slow

APP_DIR = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app"


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def app_server(db: str, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "info"]  # fmt: skip
    with serve(argv, port=port, env={"DATABASE_URL": db}, cwd=APP_DIR,
               log=tmp_path / "uvicorn.log") as server:  # fmt: skip
        yield server


def one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def test_request_enqueues_in_its_transaction_and_the_app_worker_runs_it(
    app_server: Server, conn: psycopg.Connection[Any]
) -> None:
    status, body = post_json(f"{app_server.url}/users", {"email": "ada@example.com"})
    assert status == 201, body
    user_id = body["id"]
    # The in-app worker sends the welcome e-mail: the row is marked, the job is gone.
    wait_for(
        lambda: one(conn, "SELECT welcomed_at IS NOT NULL FROM users WHERE id = %s", [user_id]),
        "the welcome e-mail",
    )
    wait_for(lambda: one(conn, "SELECT count(*) FROM errands.jobs") == 0, "the job to finish")

    # A failing request rolls back both its row and its job.
    status, body = post_json(
        f"{app_server.url}/users", {"email": "bob@example.com", "referred_by": 999}
    )
    assert status == 422, body
    assert body == {"detail": "unknown referrer: no user with id 999"}
    assert one(conn, "SELECT count(*) FROM users WHERE email = 'bob@example.com'") == 0
    assert one(conn, "SELECT count(*) FROM errands.jobs") == 0

    # Referred by Ada: both rows and the job commit together.
    status, body = post_json(
        f"{app_server.url}/users", {"email": "bob@example.com", "referred_by": user_id}
    )
    assert status == 201, body
    assert one(conn, "SELECT count(*) FROM referrals WHERE referrer_id = %s", [user_id]) == 1
    wait_for(
        lambda: one(conn, "SELECT welcomed_at IS NOT NULL FROM users WHERE id = %s", [body["id"]]),
        "bob's welcome e-mail",
    )

    # A duplicate is refused, naming the value, and enqueues nothing.
    status, body = post_json(f"{app_server.url}/users", {"email": "ada@example.com"})
    assert status == 409, body
    assert body == {"detail": "a user with e-mail 'ada@example.com' already exists"}
    assert one(conn, "SELECT count(*) FROM users") == 2
    assert one(conn, "SELECT count(*) FROM errands.jobs") == 0


def test_sigterm_stops_uvicorn_and_the_worker_gracefully(
    app_server: Server, conn: psycopg.Connection[Any]
) -> None:
    status, body = post_json(f"{app_server.url}/reports", {"name": "weekly", "seconds": 1.5})
    assert status == 202, body
    wait_for(
        lambda: one(conn, "SELECT count(*) FROM errands.jobs WHERE locked_by IS NOT NULL") == 1,
        "the report job to start",
    )
    started = time.monotonic()
    code = app_server.stop(signal.SIGTERM)
    elapsed = time.monotonic() - started
    output = app_server.output()
    # uvicorn (>= 0.29) re-raises the signal it caught once its shutdown is complete,
    # so a clean stop by SIGTERM ends "killed by SIGTERM" (-15), which process
    # managers (systemd, Kubernetes) count as a clean exit; older versions exit 0.
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output, output
    # The running job finished before the worker stopped; nothing is left behind.
    assert one(conn, "SELECT count(*) FROM reports WHERE name = 'weekly'") == 1, output
    assert one(conn, "SELECT count(*) FROM errands.jobs") == 0, output
    after_stop = output.split("stopping the errands worker", 1)[1]
    assert "shutting down" in after_stop, output  # the worker's own log lines
    assert "errands worker" in after_stop and "stopped" in after_stop, output
    assert "Finished server process" in output, output
    assert elapsed < 10, output


def test_reload_restarts_the_worker_after_a_graceful_stop(
    db: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """``uvicorn --reload``: a code change stops the app (and its worker) gracefully,
    then starts it again with a new worker."""
    app_dir = tmp_path / "app"
    shutil.copytree(APP_DIR, app_dir, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1",
            "--port", str(port), "--reload", "--reload-dir", str(app_dir)]  # fmt: skip
    with serve(argv, port=port, env={"DATABASE_URL": db}, cwd=app_dir,
               log=tmp_path / "uvicorn.log") as server:  # fmt: skip
        wait_for(lambda: "Application startup complete" in server.output(), "the app")
        status, body = post_json(f"{server.url}/reports", {"name": "before", "seconds": 1.0})
        assert status == 202, body
        wait_for(
            lambda: one(conn, "SELECT count(*) FROM errands.jobs WHERE locked_by IS NOT NULL") == 1,
            "the report job to start",
        )
        app_py = app_dir / "app.py"
        app_py.write_text(app_py.read_text() + "\n# changed\n")
        wait_for(
            lambda: server.output().count("Application startup complete") == 2,
            "the reloaded app",
            timeout=30,
        )
        # The job running during the reload finished before the old worker stopped.
        assert one(conn, "SELECT count(*) FROM reports WHERE name = 'before'") == 1
        output = server.output()
        assert output.count("errands worker") >= 3, output  # started, stopped, started
        assert "stopped" in output.split("stopping the errands worker", 1)[1], output
        # The new worker runs new jobs.
        status, body = post_json(f"{server.url}/reports", {"name": "after", "seconds": 0})
        assert status == 202, body
        wait_for(
            lambda: one(conn, "SELECT count(*) FROM reports WHERE name = 'after'") == 1,
            "the report after the reload",
        )
        code = server.stop(signal.SIGTERM)
        assert code in (0, -signal.SIGTERM), server.output()
    assert one(conn, "SELECT count(*) FROM errands.jobs") == 0
