"""The core package never imports the frameworks of errands.contrib (optional extras):
not on ``import errands``, not for the CLI, not for enqueueing or running a worker."""

from __future__ import annotations

import json
import subprocess
import sys

# The metrics and otel extras too (errands.metrics, errands.tracing: only when enabled).
FRAMEWORKS = ["django", "sqlalchemy", "fastapi", "starlette", "prometheus_client",
              "opentelemetry", "errands.metrics", "errands.tracing", "http.server"]  # fmt: skip


def frameworks_imported_by(code: str) -> list[str]:
    report = f"print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))"
    probe = f"{code}\nimport json, sys\n{report}"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    result: list[str] = json.loads(out.splitlines()[-1])
    return result


def test_core_and_cli_import_no_framework() -> None:
    code = (
        "import errands, errands.cli, errands.enqueue, errands.runner, errands.worker\n"
        "from errands.cli import app\n"
        "for name in errands.__all__: getattr(errands, name)"
    )
    assert frameworks_imported_by(code) == []


def test_the_django_package_imports_django_only_when_used() -> None:
    # INSTALLED_APPS imports it before Django's app registry is ready.
    assert frameworks_imported_by("import errands.contrib.django") == []


def test_a_worker_without_metrics_or_tracing_imports_neither(db: str) -> None:
    code = (
        "import asyncio, errands, psycopg\n"
        f"conn = psycopg.connect({db!r}, autocommit=True)\n"
        "errands.add_job(conn, 'noop')\n"
        "async def noop(payload, helpers): pass\n"
        "asyncio.run(errands.run_once(conn.info.dsn, {'noop': noop}))\n"
        "assert conn.execute('SELECT count(*) FROM errands.jobs').fetchone() == (0,)"
    )
    assert frameworks_imported_by(code) == []
