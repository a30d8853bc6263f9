"""The real Graphile Worker (npm package, bench/peers/graphile) for the import tests.

It is installed with ``npm ci`` from the committed package-lock.json, the way
``bench/run.py`` installs it (same stamp file, so either one installs it once);
tests skip with the reason when Node/npm are missing or the registry is unreachable.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

GRAPHILE_DIR = Path(__file__).resolve().parent.parent / "bench" / "peers" / "graphile"


def graphile_bin() -> Path:
    """The ``graphile-worker`` CLI, installed on first use; skips the test if it cannot be."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Graphile Worker needs Node.js >= 20 and npm (apt-get install nodejs npm)")
    binary = GRAPHILE_DIR / "node_modules" / ".bin" / "graphile-worker"
    stamp = GRAPHILE_DIR / "node_modules" / ".bench-installed"
    lock = GRAPHILE_DIR / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime or not binary.exists():
        try:
            run = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=GRAPHILE_DIR, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci for graphile-worker timed out (is the npm registry reachable?)")
        if run.returncode != 0:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"npm ci could not install graphile-worker (registry unreachable?): {last}")
        stamp.touch()
    return binary


def graphile(dsn: str, *args: str, cwd: Path | None = None) -> str:
    """Run the graphile-worker CLI to completion (e.g. ``--schema-only``, ``--once``)."""
    run = subprocess.run(
        [str(graphile_bin()), "-c", dsn, *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, (run.stdout, run.stderr)
    return run.stdout + run.stderr


def task_dir(root: Path, tasks: dict[str, str], crontab: str | None = None) -> Path:
    """A directory Graphile's CLI runs in: ``tasks/NAME.js`` (each a JS function body
    exported as the task) and an optional ``crontab`` file."""
    (root / "tasks").mkdir(parents=True)
    for name, body in tasks.items():
        (root / "tasks" / f"{name}.js").write_text(f"module.exports = {body};\n")
    if crontab is not None:
        (root / "crontab").write_text(crontab)
    return root


@contextmanager
def running_worker(dsn: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """A long-running Graphile worker (its tasks and crontab from ``cwd``), stopped
    with SIGTERM at the end (SIGKILL if it does not exit)."""
    proc = subprocess.Popen(
        [str(graphile_bin()), "-c", dsn], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(condition: object, timeout: float = 30.0) -> None:
    """Poll ``condition()`` until true."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for Graphile Worker"
        time.sleep(0.1)
