"""The host side of the embedded database (:mod:`errands._embedded`): the PostgreSQL
server binaries it runs, the unprivileged OS user they run as when Errands runs as
root (``initdb`` refuses root), running them, and free local ports.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

STATE_DIR: Final = ".errands"
"""The embedded database's directory, relative to the project (the current directory)."""
OS_USER: Final = "errands"
"""The OS user the server runs as when Errands runs as root."""
HOST: Final = "127.0.0.1"
"""The only address the server listens on."""


class EmbeddedError(Exception):
    """A problem with the embedded database; the message is one line for the user."""


@dataclass(frozen=True)
class PgBin:
    """The PostgreSQL server binaries used to run the cluster."""

    bindir: Path
    major: int

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


# -- server binaries -------------------------------------------------------------


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


# -- the OS user and running as it ----------------------------------------------


def run_tool(
    argv: list[str], *, os_user: str | None, timeout: float = 120, new_session: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a server binary, as ``os_user`` when given (through ``runuser``)."""
    if os_user is not None:
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        argv = [runuser, "-u", os_user, "--", *argv]
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


def chown_to(path: Path, os_user: str | None) -> None:
    """Give ``path`` to ``os_user`` (nothing when None: the server runs as us)."""
    if os_user is not None:
        pw = pwd.getpwnam(os_user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


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


def user_can_reach(user: str, directory: Path) -> bool:
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


# -- ports and messages ----------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as postgres does
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def one_line(text: str) -> str:
    return " ".join(text.split())


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (result.stderr + result.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {result.returncode}"


def note(message: str) -> None:
    print(f"errands: {message}", file=sys.stderr)
