"""The built wheel, installed into a fresh virtualenv, gives a working `errands` command.

Installing the wheel fetches its dependencies (psycopg, psycopg-pool, typer) from
PyPI, so this needs network access (or a warm pip cache); it is skipped, saying so,
when the index cannot be reached.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_HINTS = (
    "Temporary failure in name resolution",
    "Failed to establish a new connection",
    "Network is unreachable",
    "No matching distribution found",
    "Could not find a version that satisfies",
)


def _run(argv: list[str], *, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}
    env.pop("VIRTUAL_ENV", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_installs_and_runs_a_job(empty_db: str, tmp_path: Path) -> None:
    wheel_dir = tmp_path / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir)]
    if importlib.util.find_spec("hatchling") is not None:
        build.append("--no-build-isolation")  # no download of the build backend
    result = _run([*build, str(ROOT)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (wheel,) = wheel_dir.glob("errands-*.whl")

    venv = tmp_path / "venv"
    result = _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                  cwd=tmp_path)  # fmt: skip
    if result.returncode != 0 and any(hint in result.stderr for hint in OFFLINE_HINTS):
        pytest.skip(f"cannot install the wheel's dependencies from PyPI: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr

    errands = str(venv / "bin" / "errands")
    work = tmp_path / "work"  # not the checkout: nothing may come from the source tree
    work.mkdir()
    result = _run([errands, "install", "-c", empty_db], cwd=work)
    assert result.returncode == 0, result.stderr
    assert "schema installed (version" in result.stdout

    result = _run([errands, "add", "greet", "--payload", '{"who": "wheel"}', "-c", empty_db],
                  cwd=work)  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["id"]

    (work / "wheel_tasks.py").write_text(
        "import errands\n"
        "from errands.tasks import task\n\n"
        "@task\n"
        "def greet(payload, helpers):\n"
        "    helpers.logger.info('greetings, %s, from %s', payload['who'], errands.__file__)\n"
    )
    result = _run([errands, "worker", "--once", "--tasks", "wheel_tasks.py", "-c", empty_db],
                  cwd=work, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "greetings, wheel, from " + str(venv) in result.stderr
    with psycopg.connect(empty_db) as conn:
        assert conn.execute(
            "SELECT count(*) FROM errands.jobs WHERE id = %s", [job_id]
        ).fetchone() == (0,)
