"""The options of a worker: one frozen, validated :class:`WorkerOptions`.

:func:`errands.run`, :func:`errands.run_once`, :class:`errands.Worker` and
``errands worker`` all take a ``WorkerOptions``; the functions also take any of its
fields as keyword arguments (:class:`WorkerOverrides`), which replace the fields of
the given options (or of the defaults)::

    options = WorkerOptions(concurrency=20, poll_interval=0.5)
    runner = await errands.run(dsn, tasks, options=options)
    runner = await errands.run(dsn, tasks, concurrency=20)      # the same, shorter

Every value is checked once, when the options are made; a bad one raises
``ValueError`` naming it.  This module imports nothing heavy (the CLI builds the
options before deciding whether to start a worker at all).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeAlias, TypedDict

ForbiddenFlags: TypeAlias = (
    Sequence[str] | Callable[[], "Awaitable[Sequence[str] | None] | Sequence[str] | None"] | None
)
"""Flags a fetched job must not have: a list, or a (sync or async) function
returning one, called before every fetch."""

CrontabSource: TypeAlias = str | os.PathLike[str]
"""Crontab text, or the path of a crontab file."""

LOCAL_QUEUE_SIZE = 500
"""Default most jobs a worker holds fetched (locked) but not yet started."""


def new_worker_id() -> str:
    """A random worker id (the default ``worker_id``).  ``os.urandom``, not
    ``secrets``: the CLI's ``--once`` path does not pay for importing hashlib."""
    return "worker-" + os.urandom(9).hex()


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker works.  Fields that only a continuous worker uses
    (``poll_interval``, ``heartbeat_*``, ``listen``, ``crontab``) are ignored by
    :func:`errands.run_once`, which refuses a ``crontab``."""

    concurrency: int = 10
    """Jobs run at the same time (async tasks, and sync tasks in threads)."""
    poll_interval: float = 2.0
    """Seconds between polls for jobs that became due (new jobs are announced by
    NOTIFY and start at once; without ``listen`` polling finds every job)."""
    forbidden_flags: ForbiddenFlags = None
    """Skip jobs with any of these flags: a list, or a sync or async function
    called before every fetch."""
    shutdown_timeout: float = 30.0
    """Seconds a graceful stop waits for running jobs before aborting them (they
    fail with "worker shutdown" and are retried)."""
    worker_id: str | None = None
    """The worker's id (``locked_by``); a random ``worker-...`` by default."""
    heartbeat_interval: float = 5.0
    """Seconds between two heartbeats of this worker (> 0)."""
    heartbeat_timeout: float = 30.0
    """A registered worker whose heartbeat is older than this is declared dead and
    its jobs run again (must exceed ``heartbeat_interval``)."""
    listen: bool = True
    """``False``: no LISTEN connection and no session state (PgBouncer in
    transaction pooling mode): new jobs are found by polling every
    ``poll_interval``, and a crashed worker is rescued after its heartbeat times
    out instead of at once."""
    local_queue_size: int = LOCAL_QUEUE_SIZE
    """Most jobs held fetched (locked) but not yet started; 0 fetches only for
    free slots."""
    install: bool = True
    """Install/upgrade the errands schema first (:func:`errands.run` and
    :func:`errands.run_once`)."""
    crontab: CrontabSource | None = None
    """Recurring jobs: crontab text or a file path, stored with
    ``errands.set_crontab`` at start; ``errands.cron_tick()`` runs at the top of
    every minute."""
    log_jobs: bool = True
    """Log one line per job outcome (``errands.worker`` logger)."""
    quiet: bool = False
    """With ``log_jobs``: leave out successes."""
    max_pool_size: int | None = None
    """Size of the pool the worker opens itself (default ``concurrency + 2``)."""
    prepare: bool | None = None
    """``False``: no server-side prepared statements (PgBouncer in transaction
    pooling mode before 1.21); default ``$ERRANDS_PREPARE`` (on).  Only for the
    pool the worker opens itself."""
    gc_tuning: bool = False
    """Tune the garbage collector of the whole process for a worker
    (``errands._gc``); leave it off when the worker shares its process."""
    metrics_port: int | None = None
    """Serve Prometheus metrics of this worker at ``http://metrics_host:PORT/metrics``
    (``errands[metrics]``; 0: a free port).  None: no metrics, nothing imported."""
    metrics_host: str = "127.0.0.1"
    """The address the metrics endpoint binds.  It has no authentication: bind
    another address only on a network you trust."""
    otel: bool = False
    """Trace each job's execution with OpenTelemetry (``errands[otel]``), continuing
    the trace of the code that enqueued it (see ``errands.tracing``)."""

    def __post_init__(self) -> None:
        _integer("concurrency", self.concurrency, 1)
        _positive("poll_interval", self.poll_interval)
        _number("shutdown_timeout", self.shutdown_timeout)
        if self.shutdown_timeout < 0:
            _bad("shutdown_timeout must not be negative", self.shutdown_timeout)
        _positive("heartbeat_interval", self.heartbeat_interval)
        _number("heartbeat_timeout", self.heartbeat_timeout)
        if not self.heartbeat_timeout > self.heartbeat_interval:
            _bad(
                "heartbeat_timeout must be greater than heartbeat_interval "
                f"({self.heartbeat_interval})",
                self.heartbeat_timeout,
            )
        _integer("local_queue_size", self.local_queue_size, 0)
        if self.max_pool_size is not None:
            _integer("max_pool_size", self.max_pool_size, 1)
        if self.worker_id is not None and not (isinstance(self.worker_id, str) and self.worker_id):
            _bad("worker_id must be a non-empty string", repr(self.worker_id))
        if self.metrics_port is not None:
            _integer("metrics_port", self.metrics_port, 0)
            if self.metrics_port > 65535:
                _bad("metrics_port must be at most 65535", self.metrics_port)
        if not (isinstance(self.metrics_host, str) and self.metrics_host):
            _bad("metrics_host must be a non-empty string", repr(self.metrics_host))
        for name in ("listen", "install", "log_jobs", "quiet", "gc_tuning", "otel"):
            if not isinstance(getattr(self, name), bool):
                _bad(f"{name} must be True or False", repr(getattr(self, name)))
        if self.prepare is not None and not isinstance(self.prepare, bool):
            _bad("prepare must be True, False or None", repr(self.prepare))
        flags = self.forbidden_flags
        if isinstance(flags, str):
            _bad("forbidden_flags must be a list of flags, not a string", repr(flags))
        if flags is not None and not callable(flags):
            # A tuple: the options stay immutable even when given a list.
            object.__setattr__(self, "forbidden_flags", tuple(flags))

    def replace(self, **changes: Any) -> WorkerOptions:
        """A copy with ``changes`` (checked like new options)."""
        return dataclasses.replace(self, **changes) if changes else self


class WorkerOverrides(TypedDict, total=False):
    """The fields of :class:`WorkerOptions` as keyword arguments (all optional):
    ``run(dsn, tasks, concurrency=20)``.  ``tests_py/test_worker_options.py``
    checks that the two declare the same names and types."""

    concurrency: int
    poll_interval: float
    forbidden_flags: ForbiddenFlags
    shutdown_timeout: float
    worker_id: str | None
    heartbeat_interval: float
    heartbeat_timeout: float
    listen: bool
    local_queue_size: int
    install: bool
    crontab: CrontabSource | None
    log_jobs: bool
    quiet: bool
    max_pool_size: int | None
    prepare: bool | None
    gc_tuning: bool
    metrics_port: int | None
    metrics_host: str
    otel: bool


def resolve(options: WorkerOptions | None, overrides: WorkerOverrides) -> WorkerOptions:
    """``options`` (default: the defaults) with ``overrides`` applied, checked."""
    if options is not None and not isinstance(options, WorkerOptions):
        raise TypeError(f"errands: options must be a WorkerOptions, got {type(options).__name__}")
    base = options if options is not None else WorkerOptions()
    return base.replace(**overrides)


def _bad(what: str, value: object) -> NoReturn:
    raise ValueError(f"errands: {what}, got {value}")


def _number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        _bad(f"{name} must be a number", repr(value))


def _positive(name: str, value: float) -> None:
    _number(name, value)
    if not value > 0:
        _bad(f"{name} must be positive", value)


def _integer(name: str, value: int, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _bad(f"{name} must be an integer", repr(value))
    if value < least:
        _bad(f"{name} must be at least {least}" if least else f"{name} must not be negative", value)
