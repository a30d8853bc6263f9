"""Django: enqueue in Django's own transaction, and ``manage.py errands_worker``.

Add ``"errands.contrib.django"`` to ``INSTALLED_APPS`` for the management command;
:func:`add_job` and :func:`add_jobs` work without it.  They run ``errands.add_job``
on Django's database connection (the psycopg 3 backend, Django >= 4.2), so inside
``transaction.atomic()`` the job commits or rolls back with the model changes, and
outside it (autocommit) it is committed at once, like a ``Model.save()``.

Django is imported on first use, not by ``import errands.contrib.django``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from errands import enqueue

if TYPE_CHECKING:
    import psycopg
    from typing_extensions import Unpack

    from errands.enqueue import JobOptions
    from errands.job import Job, SpecLike

__all__ = ["add_job", "add_jobs", "psycopg_connection"]


def psycopg_connection(using: str = "default") -> psycopg.Connection[Any]:
    """The psycopg connection under Django's connection ``using`` (opened if need
    be), in whatever transaction Django has it in.

    Raises :exc:`django.core.exceptions.ImproperlyConfigured` when that database is
    not PostgreSQL through psycopg 3 (errands needs the same connection, not a second
    one, for the job to share the transaction).
    """
    import psycopg
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections

    wrapper = connections[using]
    if wrapper.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"errands: DATABASES[{using!r}] is {wrapper.vendor!r}; errands needs PostgreSQL"
        )
    wrapper.ensure_connection()
    raw = wrapper.connection
    if not isinstance(raw, psycopg.Connection):
        raise ImproperlyConfigured(
            f"errands: DATABASES[{using!r}] does not use psycopg 3 (got "
            f"{type(raw).__module__}.{type(raw).__name__}); install psycopg>=3.1, "
            "which Django >= 4.2 uses in preference to psycopg2"
        )
    return raw


def add_job(
    identifier: str,
    payload: Any = None,
    *,
    using: str = "default",
    **options: Unpack[JobOptions],
) -> Job:
    """Add one job on Django's connection ``using``, in its current transaction.

    The keyword options are :class:`errands.JobOptions` (as for
    :func:`errands.add_job`).  Inside ``transaction.atomic(using=...)`` the job is
    rolled back with the block; a worker sees it once the outermost block commits.
    """
    return enqueue.add_job(psycopg_connection(using), identifier, payload, **options)


def add_jobs(
    specs: Iterable[SpecLike],
    *,
    using: str = "default",
    job_key_preserve_run_at: bool = False,
) -> list[Job]:
    """Add many jobs in one statement on Django's connection ``using``
    (:func:`errands.add_jobs`)."""
    return enqueue.add_jobs(
        psycopg_connection(using), specs, job_key_preserve_run_at=job_key_preserve_run_at
    )
