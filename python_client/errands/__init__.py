"""Errands: a PostgreSQL-native job queue for Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from errands.enqueue import add_job, add_job_async, add_jobs, add_jobs_async
from errands.events import Event, Events
from errands.helpers import AbortSignal, Helpers
from errands.job import Job, JobSpec
from errands.logs import JsonFormatter, attach_job_logging, configure_logging
from errands.runner import Runner, run, run_once, run_sync
from errands.tasks import TaskRegistry, load_tasks, task
from errands.utils import SyncWorkerUtils, WorkerUtils
from errands.worker import BatchFailure, TaskTimeout, Worker, WorkerShutdown

if TYPE_CHECKING:
    from errands._install import install, install_async, render_install_sql

__version__ = "0.1.0"

__all__ = [
    "AbortSignal",
    "BatchFailure",
    "Event",
    "Events",
    "Helpers",
    "Job",
    "JobSpec",
    "JsonFormatter",
    "Runner",
    "SyncWorkerUtils",
    "TaskRegistry",
    "TaskTimeout",
    "Worker",
    "WorkerShutdown",
    "WorkerUtils",
    "__version__",
    "add_job",
    "add_job_async",
    "add_jobs",
    "add_jobs_async",
    "attach_job_logging",
    "configure_logging",
    "install",
    "install_async",
    "load_tasks",
    "render_install_sql",
    "run",
    "run_once",
    "run_sync",
    "task",
]

_LAZY = {"install", "install_async", "render_install_sql"}


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m errands._install` does not find the
    # module already imported by the package (runpy would warn about that).
    # (The worker modules import errands._install inside functions for the same reason.)
    if name in _LAZY:
        from errands import _install

        return getattr(_install, name)
    raise AttributeError(f"module 'errands' has no attribute {name!r}")
