"""The embedded default database, driven through the `errands` console script.

Each test starts from an empty directory: `errands db start` runs initdb and starts a
real PostgreSQL.  As root (as here in CI) the server runs as the system user
`errands` through runuser, which these tests exercise.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from errands import _embedded

ERRANDS = str(Path(sys.executable).with_name("errands"))
AS_ROOT = os.geteuid() == 0


def _env() -> dict[str, str]:
    """The environment minus anything that would pick another database."""
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("PG")}


def errands(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ERRANDS, *args],
        cwd=cwd,
        env=env if env is not None else _env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _state(project: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((project / ".errands" / "embedded.json").read_text())
    return data


def _teardown(project: Path) -> None:
    """Stop the project's server and remove its files (also a fallback rundir)."""
    errands(project, "db", "stop")
    state = project / ".errands" / "embedded.json"
    if state.is_file():
        rundir = Path(str(_state(project)["rundir"]))
        if rundir.is_relative_to(_embedded.FALLBACK_ROOT):
            shutil.rmtree(rundir, ignore_errors=True)
    shutil.rmtree(project, ignore_errors=True)


@pytest.fixture
def project() -> Iterator[Path]:
    """An empty project directory the server's OS user can reach (as root: under /tmp)."""
    base = Path(tempfile.mkdtemp(prefix="errands-embedded-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        _teardown(base)


@pytest.mark.slow
def test_lifecycle_from_nothing(project: Path) -> None:
    status = errands(project, "db", "status")
    assert status.returncode == 3, status
    assert "not initialised" in status.stdout

    start = errands(project, "db", "start")
    assert start.returncode == 0, start.stderr
    port = int(str(_state(project)["port"]))
    url = f"postgresql://errands@127.0.0.1:{port}/errands"
    assert start.stdout.strip() == f"embedded database running: {url} (./.errands/pgdata)"
    assert (project / ".errands" / "pgdata" / "PG_VERSION").is_file()
    assert (project / ".errands" / f".s.PGSQL.{port}").exists()  # the unix socket
    assert (project / ".errands" / ".gitignore").read_text().endswith("*\n")
    if AS_ROOT:
        owner = pwd.getpwuid((project / ".errands" / "pgdata").stat().st_uid).pw_name
        assert owner == _embedded.OS_USER
        assert _state(project)["os_user"] == _embedded.OS_USER

    url_run = errands(project, "db", "url")
    assert url_run.returncode == 0, url_run.stderr
    assert url_run.stdout.strip() == url
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT current_database(), current_user, current_setting('listen_addresses')"
        ).fetchone()
    assert row == ("errands", "errands", "127.0.0.1")

    # Commands without a connection use it and say so on stderr.
    install = errands(project, "install")
    assert install.returncode == 0, install.stderr
    assert install.stderr.strip() == (f"errands: using embedded database {url} (./.errands/pgdata)")
    added = errands(project, "add", "hello", "--payload", '{"name": "embedded"}')
    assert added.returncode == 0, added.stderr
    job_id = json.loads(added.stdout)["id"]

    status = errands(project, "db", "status")
    assert status.returncode == 0
    assert "running" in status.stdout and url in status.stdout

    stop = errands(project, "db", "stop")
    assert stop.returncode == 0 and "stopped" in stop.stdout
    status = errands(project, "db", "status")
    assert status.returncode == 3 and "stopped" in status.stdout
    again = errands(project, "db", "stop")
    assert again.returncode == 0 and "not running" in again.stdout

    # The next command starts the same cluster again, on the same port, data kept.
    jobs = errands(project, "jobs", "--json")
    assert jobs.returncode == 0, jobs.stderr
    assert [json.loads(line)["id"] for line in jobs.stdout.splitlines()] == [job_id]
    assert int(str(_state(project)["port"])) == port


@pytest.mark.slow
@pytest.mark.skipif(not AS_ROOT, reason="the fallback data directory is for root only")
def test_root_fallback_when_the_server_user_cannot_reach_the_directory() -> None:
    private = Path(tempfile.mkdtemp(prefix="errands-private-", dir="/tmp"))  # 0700, root's
    project = private / "app"
    project.mkdir()
    try:
        start = errands(project, "db", "start")
        assert start.returncode == 0, start.stderr
        rundir = Path(str(_state(project)["rundir"]))
        assert rundir.parent == _embedded.FALLBACK_ROOT
        assert "cannot reach" in start.stderr and str(rundir) in start.stderr
        assert f"({rundir / 'pgdata'})" in start.stdout
        assert not (project / ".errands" / "pgdata").exists()
        url = errands(project, "db", "url").stdout.strip()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # Reused: no second note, same place.
        status = errands(project, "db", "status")
        assert status.returncode == 0 and str(rundir / "pgdata") in status.stdout
    finally:
        _teardown(project)
        shutil.rmtree(private, ignore_errors=True)


def test_explicit_database_does_not_start_the_embedded_one(db: str, tmp_path: Path) -> None:
    env = {**_env(), "DATABASE_URL": db}
    run = errands(tmp_path, "jobs", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "no jobs"
    assert "embedded" not in run.stderr
    assert not (tmp_path / ".errands").exists()


def test_status_of_a_directory_without_one(tmp_path: Path) -> None:
    run = errands(tmp_path, "db", "status")
    assert run.returncode == 3
    assert "not initialised" in run.stdout
    stop = errands(tmp_path, "db", "stop")
    assert stop.returncode == 0 and "not running" in stop.stdout


def test_pg_binaries_are_found() -> None:
    pg = _embedded.find_pg_bin(None)
    assert (pg.bindir / "initdb").is_file()
    assert pg.major >= 12
