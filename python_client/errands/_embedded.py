"""The embedded default database: a local PostgreSQL cluster Errands runs itself.

When no database is given (``-c``, ``DATABASE_URL`` or libpq ``PG*`` variables), the
CLI uses a cluster in ``./.errands/pgdata`` (relative to the current directory):

* initialised on first use with the PostgreSQL server binaries found on the machine
  (``$ERRANDS_PG_BINDIR``, else ``pg_ctl`` on ``PATH``, else the highest
  ``/usr/lib/postgresql/*/bin``), superuser ``errands``, trust authentication;
* listening on 127.0.0.1 only, on a port chosen at init and remembered in
  ``./.errands/embedded.json``, plus a unix socket in ``./.errands/``;
* started when not running, with a database ``errands`` created on first start.

``initdb`` refuses to run as root, so as root the server runs as the unprivileged
system user ``errands`` (created on demand) through ``runuser``.  When that user
cannot reach the current directory (e.g. a project under ``/root``), the cluster
lives in ``/var/lib/errands/<hash of the directory>/`` instead; the state file
stays in ``./.errands/``.

This module is the cluster's lifecycle (plan, init, start, stop, its state file);
the host side (server binaries, the OS user, ports) is :mod:`errands._embedded_os`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# Part of this module's interface (tests and the CLI use them from here).
from errands._embedded_os import HOST as HOST
from errands._embedded_os import OS_USER as OS_USER
from errands._embedded_os import STATE_DIR as STATE_DIR
from errands._embedded_os import EmbeddedError as EmbeddedError
from errands._embedded_os import PgBin as PgBin
from errands._embedded_os import (
    chown_to,
    free_port,
    last_line,
    note,
    one_line,
    port_is_free,
    run_tool,
    user_can_reach,
)
from errands._embedded_os import ensure_os_user as ensure_os_user
from errands._embedded_os import find_pg_bin as find_pg_bin

DB_USER: Final = "errands"
DB_NAME: Final = "errands"
STATE_FILE: Final = "embedded.json"
FALLBACK_ROOT: Final = Path("/var/lib/errands")
# sun_path holds 108 bytes; PostgreSQL names its socket ".s.PGSQL.<port>".
_MAX_SOCKET_DIR: Final = 90


@dataclass
class Embedded:
    """The embedded cluster of one directory (see the module docstring)."""

    cwd: Path
    port: int
    rundir: Path
    """Holds ``pgdata/``, the server log and the unix socket."""
    os_user: str | None
    """Run the server binaries as this user (when Errands runs as root)."""

    @property
    def state_dir(self) -> Path:
        return self.cwd / STATE_DIR

    @property
    def datadir(self) -> Path:
        return self.rundir / "pgdata"

    @property
    def logfile(self) -> Path:
        return self.rundir / "postgresql.log"

    @property
    def socket_dir(self) -> Path | None:
        return self.rundir if len(str(self.rundir)) <= _MAX_SOCKET_DIR else None

    def url(self, dbname: str = DB_NAME) -> str:
        return f"postgresql://{DB_USER}@{HOST}:{self.port}/{dbname}"

    def display_datadir(self) -> str:
        """``./.errands/pgdata`` when under the current directory, else the absolute path."""
        try:
            return "./" + str(self.datadir.relative_to(self.cwd))
        except ValueError:
            return str(self.datadir)

    def describe(self) -> str:
        return f"{self.url()} ({self.display_datadir()})"

    def is_initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").is_file()

    def data_major(self) -> int | None:
        try:
            return int((self.datadir / "PG_VERSION").read_text().strip().split(".")[0])
        except (OSError, ValueError):
            return None

    # -- running the server binaries --------------------------------------------------

    def _run(
        self, argv: list[str], *, timeout: float = 120, new_session: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return run_tool(argv, os_user=self.os_user, timeout=timeout, new_session=new_session)

    def is_running(self, pg: PgBin | None = None) -> bool:
        if not self.is_initialised():
            return False
        pg = pg or find_pg_bin(self.data_major())
        result = self._run([pg.tool("pg_ctl"), "status", "-D", str(self.datadir)], timeout=30)
        return result.returncode == 0

    def _init(self, pg: PgBin) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        chown_to(self.rundir, self.os_user)
        result = self._run(
            [
                pg.tool("initdb"),
                "-D",
                str(self.datadir),
                "-U",
                DB_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ]
        )
        if result.returncode != 0:
            raise EmbeddedError(f"initdb failed: {last_line(result)}")
        conf = self.datadir / "postgresql.conf"
        with conf.open("a", encoding="utf-8") as fh:
            fh.write("\n# Errands: port, addresses and socket, rewritten at every start\n")
            fh.write("include_if_exists = 'errands.conf'\n")

    def _write_server_conf(self) -> None:
        socket_dir = self.socket_dir
        sockets = _conf_quote(str(socket_dir)) if socket_dir is not None else "''"
        conf = self.datadir / "errands.conf"
        conf.write_text(
            "# Written by errands before each start; edit postgresql.conf instead.\n"
            f"listen_addresses = '{HOST}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = {sockets}\n",
            encoding="utf-8",
        )
        chown_to(conf, self.os_user)

    def _start(self, pg: PgBin) -> None:
        if not port_is_free(self.port):
            old = self.port
            self.port = free_port()
            note(f"port {old} is taken; the embedded database moves to port {self.port}")
            save_state(self)
        self._write_server_conf()
        result = self._run(
            [
                pg.tool("pg_ctl"),
                "start",
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "-s",
            ],
            new_session=True,
        )
        if result.returncode != 0:
            raise EmbeddedError(
                f"could not start the embedded database ({last_line(result)}); "
                f"see its log {self.logfile}"
            )

    def _create_database(self) -> None:
        # Lazily: `errands db status/stop` and the CLI's start-up need no psycopg.
        import psycopg

        from errands import _queries as q

        try:
            with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as c:
                exists = c.execute(q.DATABASE_EXISTS, {"name": DB_NAME}).fetchone()
                if exists is None:
                    c.execute(q.create_database(DB_NAME))
        except psycopg.Error as exc:
            raise EmbeddedError(
                f"could not create database {DB_NAME!r} in the embedded server: "
                f"{one_line(str(exc))}"
            ) from None

    def stop(self) -> bool:
        """Stop the server; False when it was not running."""
        if not self.is_initialised():
            return False
        pg = find_pg_bin(self.data_major())
        with _locked(self.state_dir):
            if not self.is_running(pg):
                return False
            result = self._run(
                [pg.tool("pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w", "-s"]
            )
            if result.returncode != 0:
                raise EmbeddedError(f"could not stop the embedded database: {last_line(result)}")
        return True


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise init/start/stop between concurrent errands commands."""
    state_dir.mkdir(mode=0o755, exist_ok=True)
    with (state_dir / "lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- state ----------------------------------------------------------------------------


def _cwd(cwd: Path | None) -> Path:
    return (cwd or Path.cwd()).resolve()


def load(cwd: Path | None = None) -> Embedded | None:
    """The embedded database of ``cwd`` (default: the current directory), if set up."""
    base = _cwd(cwd)
    path = base / STATE_DIR / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Embedded(
            cwd=base,
            port=int(data["port"]),
            rundir=Path(data["rundir"]),
            os_user=data.get("os_user"),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EmbeddedError(f"unreadable state file {path}: {exc}") from None


def save_state(emb: Embedded) -> None:
    emb.state_dir.mkdir(exist_ok=True)
    ignore = emb.state_dir / ".gitignore"
    if not ignore.exists():  # keep the cluster out of the user's repository
        ignore.write_text("# Errands' embedded database (errands db ...)\n*\n", encoding="utf-8")
    path = emb.state_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"port": emb.port, "rundir": str(emb.rundir), "os_user": emb.os_user}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    tmp.replace(path)


def _plan(base: Path) -> Embedded:
    """Decide where a new cluster lives and who runs it."""
    state_dir = base / STATE_DIR
    state_dir.mkdir(mode=0o755, exist_ok=True)
    if os.geteuid() != 0:
        return Embedded(cwd=base, port=free_port(), rundir=state_dir, os_user=None)
    pw = ensure_os_user(OS_USER)
    if user_can_reach(OS_USER, base):
        os.chown(state_dir, pw.pw_uid, pw.pw_gid)
        rundir = state_dir
    else:
        digest = hashlib.sha256(str(base).encode()).hexdigest()[:16]
        rundir = FALLBACK_ROOT / digest
        FALLBACK_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        rundir.mkdir(mode=0o700, exist_ok=True)
        os.chown(rundir, pw.pw_uid, pw.pw_gid)
        note(
            f"the OS user {OS_USER!r} the server runs as (initdb refuses root) cannot reach "
            f"{base}; its data goes to {rundir} instead of {state_dir}"
        )
    return Embedded(cwd=base, port=free_port(), rundir=rundir, os_user=OS_USER)


def ensure_started(cwd: Path | None = None) -> Embedded:
    """Initialise (first time) and start (when stopped) the embedded database."""
    base = _cwd(cwd)
    with _locked(base / STATE_DIR):
        emb = load(base)
        if emb is None:
            emb = _plan(base)
            save_state(emb)
        if emb.is_initialised():
            pg = find_pg_bin(emb.data_major())
        else:
            pg = find_pg_bin(None)
            emb._init(pg)
        if not emb.is_running(pg):
            emb._start(pg)
        emb._create_database()
    return emb


# -- helpers -------------------------------------------------------------------------


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
