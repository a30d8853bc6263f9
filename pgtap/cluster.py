"""A throwaway PostgreSQL cluster for the test suite, built on pytest-postgresql.

pytest-postgresql's :class:`PostgreSQLExecutor` drives everything through one
``pg_ctl`` executable (``--version``, ``initdb``, ``start``, ``status``, ``stop``).
``initdb`` refuses to run as root, so when the tests run as root we hand the
executor a tiny generated wrapper script instead of the real ``pg_ctl``; it runs
the real one as the unprivileged system user ``errands-test`` (created on demand):

    #!/bin/sh
    cd / && exec runuser -u errands-test -- /usr/lib/postgresql/15/bin/pg_ctl "$@"

The data directory, socket directory and server log live in a temporary directory
owned by that user; the wrapper itself sits in a root-owned directory next to it.
As a normal user the real ``pg_ctl`` is used directly.  Clients connect over TCP
to 127.0.0.1 as the ``postgres`` superuser with trust authentication.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from mirakuru import TCPExecutor
from mirakuru.exceptions import AlreadyRunning, ProcessFinishedWithError
from pytest_postgresql.executors import PostgreSQLExecutor

from errands._embedded import ensure_os_user

TEST_OS_USER = "errands-test"
SUPERUSER = "postgres"
HOST = "127.0.0.1"

# Speed over durability: the cluster is thrown away after the run.
SERVER_OPTIONS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
)


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/(\d+(?:\.\d+)?)/", path)
    return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)


def find_pg_bindir() -> Path:
    """Directory holding ``pg_ctl``/``psql`` of the PostgreSQL server.

    ``$ERRANDS_PG_BINDIR`` wins; then ``pg_config --bindir`` (if it has a pg_ctl:
    on Debian pg_config may come from libpq-dev without the server); then the
    highest ``/usr/lib/postgresql/*/bin``; then ``pg_ctl`` on ``PATH``.
    """
    override = os.environ.get("ERRANDS_PG_BINDIR")
    if override:
        return Path(override)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        if out and (Path(out) / "pg_ctl").is_file():
            return Path(out)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version_key)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL server binaries (pg_ctl) not found: install them, e.g. "
        "`apt-get install postgresql-15`, or set ERRANDS_PG_BINDIR"
    )


def find_psql() -> str:
    """``psql`` next to ``pg_ctl``, else the one on ``PATH``."""
    with contextlib.suppress(RuntimeError):
        candidate = find_pg_bindir() / "psql"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("psql")
    if found is None:
        raise RuntimeError("psql not found: install postgresql-client")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _scratch_parent() -> str | None:
    """Where the cluster's temporary directory goes.

    ``$ERRANDS_PG_TMPDIR`` if set; else ``/dev/shm`` when it has >= 1 GiB free (tmpfs
    makes CREATE DATABASE several times faster); else, as root, ``/tmp`` (``$TMPDIR``'s
    parents may not be traversable by errands-test); else the default temp dir.
    """
    override = os.environ.get("ERRANDS_PG_TMPDIR")
    if override:
        return override
    with contextlib.suppress(OSError):
        stat = os.statvfs("/dev/shm")
        if stat.f_bavail * stat.f_frsize >= 1 << 30 and os.access("/dev/shm", os.W_OK):
            return "/dev/shm"
    return "/tmp" if os.geteuid() == 0 else None


class PgCluster:
    """A PostgreSQL cluster in a temporary directory, started and stopped by pg_ctl."""

    def __init__(
        self, bindir: Path | None = None, *, extra_listen_addresses: Sequence[str] = ()
    ) -> None:
        """``extra_listen_addresses``: addresses to listen on besides 127.0.0.1 (they
        must exist when the server starts); clients from them also need
        :meth:`allow_network`."""
        self.bindir = bindir or find_pg_bindir()
        self.host = HOST
        self.listen_addresses = ",".join([HOST, *extra_listen_addresses])
        self.user = SUPERUSER
        self.port = 0
        self.as_root = os.geteuid() == 0
        self.basedir = Path(tempfile.mkdtemp(prefix="errands-pg-", dir=_scratch_parent()))
        self.rundir = self.basedir / "pg"  # data, socket, log: owned by the server's OS user
        self.rundir.mkdir(mode=0o700)
        self.datadir = self.rundir / "data"
        self.logfile = self.rundir / "postgresql.log"
        self.pg_ctl = str(self.bindir / "pg_ctl")
        if self.as_root:
            self._prepare_root()
        self._executor: PostgreSQLExecutor | None = None

    def _prepare_root(self) -> None:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        pw = ensure_os_user(TEST_OS_USER)
        self.basedir.chmod(0o711)  # root-owned: errands-test may only traverse it
        os.chown(self.rundir, pw.pw_uid, pw.pw_gid)
        bin_dir = self.basedir / "bin"
        bin_dir.mkdir(mode=0o755)
        wrapper = bin_dir / "pg_ctl"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"# pg_ctl run as {TEST_OS_USER}: initdb refuses to run as root.\n"
            f'cd / && exec {runuser} -u {TEST_OS_USER} -- {self.bindir / "pg_ctl"} "$@"\n'
        )
        wrapper.chmod(0o755)
        self.pg_ctl = str(wrapper)

    def start(self) -> PgCluster:
        last_error: Exception | None = None
        for _ in range(5):
            self.port = _free_port()
            executor = PostgreSQLExecutor(
                executable=self.pg_ctl,
                host=self.host,
                port=self.port,
                datadir=str(self.datadir),
                unixsocketdir=str(self.rundir),
                logfile=str(self.logfile),
                startparams="-w",
                dbname="postgres",
                user=self.user,
                postgres_options=f"{SERVER_OPTIONS} -c listen_addresses={self.listen_addresses}",
            )
            try:
                executor.start()
                # mirakuru returns once the port answers; let `pg_ctl start -w` (and
                # runuser around it) finish too, so no launcher is left to signal at stop.
                if executor.process is not None and executor.process.wait(timeout=60) != 0:
                    raise RuntimeError(f"pg_ctl start exited with {executor.process.returncode}")
            except AlreadyRunning as exc:  # port taken between probe and start
                last_error = exc
                continue
            except Exception as exc:
                raise RuntimeError(f"PostgreSQL failed to start:\n{self.server_log()}") from exc
            self._executor = executor
            return self
        raise RuntimeError(f"could not find a free port for PostgreSQL: {last_error}")

    def restart(self, down_seconds: float = 0.0, *, crash: bool = False) -> None:
        """Stop the server (fast mode: every client connection is cut), wait
        ``down_seconds``, start it again on the same port with the same data.
        ``crash``: stop in immediate mode instead, as a crash would (WAL not yet
        written is lost, crash recovery at start)."""
        executor = self._executor
        if executor is None:
            raise RuntimeError("the cluster is not running")
        if crash:
            subprocess.run(
                [self.pg_ctl, "stop", "-D", str(self.datadir), "-m", "immediate"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            # The server is gone: only forget mirakuru's reference to `pg_ctl start`
            # (the executor's own stop would run `pg_ctl stop -m f` and fail).
            with contextlib.suppress(ProcessFinishedWithError):
                TCPExecutor.stop(executor)
        else:
            executor.stop()
        time.sleep(down_seconds)
        try:
            executor.start()
            if executor.process is not None and executor.process.wait(timeout=60) != 0:
                raise RuntimeError(f"pg_ctl start exited with {executor.process.returncode}")
        except Exception as exc:
            raise RuntimeError(f"PostgreSQL failed to restart:\n{self.server_log()}") from exc

    def allow_network(self, cidr: str) -> None:
        """Let clients from ``cidr`` connect (trust, like 127.0.0.1) and reload."""
        hba = self.datadir / "pg_hba.conf"
        with hba.open("a") as f:
            f.write(f"host all all {cidr} trust\n")
        subprocess.run(
            [self.pg_ctl, "reload", "-D", str(self.datadir)],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

    def stop(self) -> None:
        try:
            if self._executor is not None:
                self._executor.stop()
        finally:
            self._executor = None
            shutil.rmtree(self.basedir, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError as exc:
            return f"<no server log: {exc}>"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq connection URI for ``dbname``, usable by psycopg and psql."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def __repr__(self) -> str:
        return f"<PgCluster {self.host}:{self.port} user={self.user} dir={self.basedir}>"
