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
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

OS_USER: Final = "errands"
"""The OS user the server runs as when Errands runs as root."""
DB_USER: Final = "errands"
DB_NAME: Final = "errands"
HOST: Final = "127.0.0.1"
STATE_DIR: Final = ".errands"
STATE_FILE: Final = "embedded.json"
FALLBACK_ROOT: Final = Path("/var/lib/errands")
# sun_path holds 108 bytes; PostgreSQL names its socket ".s.PGSQL.<port>".
_MAX_SOCKET_DIR: Final = 90


class EmbeddedError(Exception):
    """A problem with the embedded database; the message is one line for the user."""


@dataclass(frozen=True)
class PgBin:
    """The PostgreSQL server binaries used to run the cluster."""

    bindir: Path
    major: int

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


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
        if self.os_user is not None:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            argv = [runuser, "-u", self.os_user, "--", *argv]
        # PG* variables are meant for clients; keep them away from initdb/pg_ctl.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_MESSAGES"] = "C"
        try:
            return subprocess.run(
                argv,
                cwd="/",
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                start_new_session=new_session,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedError(f"could not run {argv[0]}: {exc}") from None

    def is_running(self, pg: PgBin | None = None) -> bool:
        if not self.is_initialised():
            return False
        pg = pg or find_pg_bin(self.data_major())
        result = self._run([pg.tool("pg_ctl"), "status", "-D", str(self.datadir)], timeout=30)
        return result.returncode == 0

    def _chown(self, path: Path) -> None:
        if self.os_user is not None:
            pw = pwd.getpwnam(self.os_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _init(self, pg: PgBin) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        self._chown(self.rundir)
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
            raise EmbeddedError(f"initdb failed: {_last_line(result)}")
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
        self._chown(conf)

    def _start(self, pg: PgBin) -> None:
        if not _port_is_free(self.port):
            old = self.port
            self.port = _free_port()
            _note(f"port {old} is taken; the embedded database moves to port {self.port}")
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
                f"could not start the embedded database ({_last_line(result)}); "
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
                f"{_one_line(str(exc))}"
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
                raise EmbeddedError(f"could not stop the embedded database: {_last_line(result)}")
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
        return Embedded(cwd=base, port=_free_port(), rundir=state_dir, os_user=None)
    pw = ensure_os_user(OS_USER)
    if _user_can_reach(OS_USER, base):
        os.chown(state_dir, pw.pw_uid, pw.pw_gid)
        rundir = state_dir
    else:
        digest = hashlib.sha256(str(base).encode()).hexdigest()[:16]
        rundir = FALLBACK_ROOT / digest
        FALLBACK_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        rundir.mkdir(mode=0o700, exist_ok=True)
        os.chown(rundir, pw.pw_uid, pw.pw_gid)
        _note(
            f"the OS user {OS_USER!r} the server runs as (initdb refuses root) cannot reach "
            f"{base}; its data goes to {rundir} instead of {state_dir}"
        )
    return Embedded(cwd=base, port=_free_port(), rundir=rundir, os_user=OS_USER)


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


def _version_key(path: Path) -> tuple[int, ...]:
    match = re.search(r"/postgresql/(\d+(?:\.\d+)?)/", str(path))
    return tuple(int(p) for p in match.group(1).split(".")) if match else (0,)


@cache
def _major_of(bindir: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(bindir / "pg_ctl"), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
    return int(match.group(1)) if match else None


def _candidate_bindirs() -> list[Path]:
    found: list[Path] = []
    override = os.environ.get("ERRANDS_PG_BINDIR")
    if override:
        found.append(Path(override))
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    installed = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")),
        key=_version_key,
        reverse=True,
    )
    found.extend(installed)
    unique: list[Path] = []
    for d in found:
        if d not in unique and (d / "pg_ctl").is_file() and (d / "initdb").is_file():
            unique.append(d)
    return unique


def find_pg_bin(major: int | None) -> PgBin:
    """The server binaries to use; of version ``major`` when a cluster already exists."""
    candidates = [(d, _major_of(d)) for d in _candidate_bindirs()]
    usable = [(d, m) for d, m in candidates if m is not None]
    if not usable:
        raise EmbeddedError(
            "no PostgreSQL server binaries found (pg_ctl and initdb, on PATH or in "
            "/usr/lib/postgresql/*/bin): install them (Debian: apt-get install postgresql) "
            "or give a database with -c/--connection or DATABASE_URL"
        )
    if major is None:
        d, m = usable[0]
        return PgBin(d, m)
    for d, m in usable:
        if m == major:
            return PgBin(d, m)
    have = ", ".join(sorted({str(m) for _, m in usable}))
    raise EmbeddedError(
        f"the embedded database was created by PostgreSQL {major} but only PostgreSQL "
        f"{have} binaries are installed (install postgresql-{major} or remove ./{STATE_DIR})"
    )


def ensure_os_user(name: str) -> pwd.struct_passwd:
    """Create the unprivileged system user ``name`` if missing (root only)."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        result = subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        detail = result.stderr.strip()
    except OSError as exc:
        detail = str(exc)
    try:  # a concurrent run may have created it meanwhile
        return pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedError(
            f"could not create the system user {name!r} to run PostgreSQL as "
            f"(initdb refuses to run as root): {detail}"
        ) from None


def _user_can_reach(user: str, directory: Path) -> bool:
    """Whether ``user`` can traverse every directory down to ``directory``."""
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    test = shutil.which("test") or "/usr/bin/test"
    try:
        result = subprocess.run(
            [runuser, "-u", user, "--", test, "-x", str(directory)],
            cwd="/",
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as postgres does
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


def _note(message: str) -> None:
    print(f"errands: {message}", file=sys.stderr)
