"""Errands: a PostgreSQL-native job queue for Python."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from errands._install import install, install_async, render_install_sql
    from errands._options import WorkerOptions
    from errands._wait import JobCancelled, JobFailed, UnknownJob, WaitError, WaitTimeout
    from errands.enqueue import JobOptions, add_job, add_job_async, add_jobs, add_jobs_async
    from errands.events import Event, Events
    from errands.helpers import AbortSignal, Helpers
    from errands.job import FinishedJob, Job, JobSpec
    from errands.limits import Limits, QueueInfo, TaskLimitInfo
    from errands.logs import JsonFormatter, attach_job_logging, configure_logging
    from errands.outcomes import Cancel, Fail, Snooze
    from errands.runner import Runner, run, run_once, run_sync
    from errands.tasks import TaskRegistry, load_tasks, task
    from errands.utils import SyncWorkerUtils, WorkerUtils
    from errands.worker import BatchFailure, TaskTimeout, Worker, WorkerShutdown

__version__ = "0.1.0"

__all__ = [
    "AbortSignal",
    "BatchFailure",
    "Cancel",
    "Event",
    "Events",
    "Fail",
    "FinishedJob",
    "Helpers",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobOptions",
    "JobSpec",
    "JsonFormatter",
    "Limits",
    "QueueInfo",
    "Runner",
    "Snooze",
    "SyncWorkerUtils",
    "TaskLimitInfo",
    "TaskRegistry",
    "TaskTimeout",
    "UnknownJob",
    "WaitError",
    "WaitTimeout",
    "Worker",
    "WorkerOptions",
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

# Every public name is imported on first use (PEP 562), so that `import errands` and
# the CLI's `--help`, `db ...` and `worker --once` paths load only the modules they use
# (psycopg_pool, the worker and asyncio machinery cost ~100 ms to import).  The
# TYPE_CHECKING imports above give type checkers the real names and types.
_EXPORTS: dict[str, str] = {
    "AbortSignal": "errands.helpers",
    "BatchFailure": "errands.worker",
    "Cancel": "errands.outcomes",
    "Event": "errands.events",
    "Fail": "errands.outcomes",
    "Events": "errands.events",
    "FinishedJob": "errands.job",
    "Helpers": "errands.helpers",
    "Job": "errands.job",
    "JobCancelled": "errands._wait",
    "JobFailed": "errands._wait",
    "UnknownJob": "errands._wait",
    "WaitError": "errands._wait",
    "WaitTimeout": "errands._wait",
    "JobOptions": "errands.enqueue",
    "JobSpec": "errands.job",
    "JsonFormatter": "errands.logs",
    "Limits": "errands.limits",
    "QueueInfo": "errands.limits",
    "Runner": "errands.runner",
    "Snooze": "errands.outcomes",
    "SyncWorkerUtils": "errands.utils",
    "TaskLimitInfo": "errands.limits",
    "TaskRegistry": "errands.tasks",
    "TaskTimeout": "errands.worker",
    "Worker": "errands.worker",
    "WorkerOptions": "errands._options",
    "WorkerShutdown": "errands.worker",
    "WorkerUtils": "errands.utils",
    "add_job": "errands.enqueue",
    "add_job_async": "errands.enqueue",
    "add_jobs": "errands.enqueue",
    "add_jobs_async": "errands.enqueue",
    "attach_job_logging": "errands.logs",
    "configure_logging": "errands.logs",
    # Also lazy so that `python -m errands._install` does not find the module already
    # imported by the package (runpy would warn about that).
    "install": "errands._install",
    "install_async": "errands._install",
    "render_install_sql": "errands._install",
    "load_tasks": "errands.tasks",
    "run": "errands.runner",
    "run_once": "errands.runner",
    "run_sync": "errands.runner",
    "task": "errands.tasks",
}

if not TYPE_CHECKING:  # hidden from mypy: a misspelt name must stay a type error

    def __getattr__(name: str) -> object:
        module_name = _EXPORTS.get(name)
        if module_name is None:
            raise AttributeError(f"module 'errands' has no attribute {name!r}")
        from importlib import import_module

        value = getattr(import_module(module_name), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
