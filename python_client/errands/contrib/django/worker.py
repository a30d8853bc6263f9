"""What ``manage.py errands_worker`` runs: the worker's options, connection and tasks,
read from ``settings.ERRANDS`` and ``settings.DATABASES``.

``settings.ERRANDS`` (a dict, every key optional)::

    ERRANDS = {
        "DATABASE": "default",     # the DATABASES alias the worker connects to
        "CONNINFO": None,          # or a libpq connection string, used instead
        "TASKS": ["billing.jobs"], # task sources besides the apps' tasks modules
        "AUTODISCOVER": True,      # load the ``tasks`` module of every installed app
        "CONCURRENCY": 10,         # ... and any WorkerOptions field, upper-cased
    }
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from errands._options import WorkerOptions
from errands.tasks import TaskRegistry, TaskSource, is_async_callable

#: The keys of ``settings.ERRANDS`` that are not WorkerOptions fields.
OWN_KEYS = frozenset({"DATABASE", "CONNINFO", "TASKS", "AUTODISCOVER"})
OPTION_KEYS = {field.name.upper(): field.name for field in dataclasses.fields(WorkerOptions)}

# psycopg.connect() keywords Django adds that are not libpq parameters.
_NOT_LIBPQ = frozenset({"context", "cursor_factory", "prepare_threshold", "autocommit"})


def errands_settings() -> Mapping[str, Any]:
    """``settings.ERRANDS``, checked: unknown keys raise ``ImproperlyConfigured``."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    config = getattr(settings, "ERRANDS", None) or {}
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(f"errands: settings.ERRANDS must be a dict, got {config!r}")
    unknown = sorted(set(config) - OWN_KEYS - set(OPTION_KEYS))
    if unknown:
        known = ", ".join(sorted(OWN_KEYS | set(OPTION_KEYS)))
        raise ImproperlyConfigured(
            f"errands: unknown key(s) in settings.ERRANDS: {', '.join(unknown)} (known: {known})"
        )
    return config


def worker_options(config: Mapping[str, Any], **overrides: Any) -> WorkerOptions:
    """The :class:`WorkerOptions` of ``config``'s upper-case option keys, then
    ``overrides`` (command-line options); a bad value raises ``ImproperlyConfigured``."""
    from django.core.exceptions import ImproperlyConfigured

    fields = {OPTION_KEYS[key]: value for key, value in config.items() if key in OPTION_KEYS}
    fields.update(overrides)
    try:
        return WorkerOptions(**fields)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"settings.ERRANDS: {exc}") from exc


def database_alias(config: Mapping[str, Any]) -> str:
    alias = config.get("DATABASE", "default")
    return alias if isinstance(alias, str) else str(alias)


def conninfo(config: Mapping[str, Any], alias: str | None = None) -> str:
    """The libpq connection string of the worker: the one Django builds for
    ``DATABASES[alias]`` (NAME, USER, PASSWORD, HOST, PORT and OPTIONS) when ``alias``
    is given (``--database``), else ``CONNINFO``, else that of ``DATABASE``."""
    from django.core.exceptions import ImproperlyConfigured
    from django.db import connections
    from psycopg.conninfo import make_conninfo

    given = config.get("CONNINFO")
    if given and alias is None:
        return str(given)
    alias = alias or database_alias(config)
    if alias not in connections.settings:
        raise ImproperlyConfigured(f"errands: no database {alias!r} in settings.DATABASES")
    wrapper = connections[alias]
    if wrapper.vendor != "postgresql":
        raise ImproperlyConfigured(
            f"errands: DATABASES[{alias!r}] is {wrapper.vendor!r}; errands needs PostgreSQL"
        )
    params = {
        key: value
        for key, value in wrapper.get_connection_params().items()
        if key not in _NOT_LIBPQ and value is not None
    }
    return make_conninfo("", **params)


def app_task_modules() -> list[str]:
    """The ``tasks`` modules of the installed apps that have one, in app order."""
    from django.apps import apps
    from django.utils.module_loading import module_has_submodule

    return [
        f"{app.name}.tasks"
        for app in apps.get_app_configs()
        if module_has_submodule(app.module, "tasks")
    ]


def task_registry(config: Mapping[str, Any]) -> TaskRegistry:
    """The apps' ``tasks`` modules (unless ``AUTODISCOVER`` is false) and ``TASKS``;
    only their ``@task`` functions are tasks.  Sync tasks are wrapped so that they
    drop broken or expired Django connections before and after each job, as Django
    does around each request (they run in the worker's threads)."""
    sources: list[TaskSource] = []
    if config.get("AUTODISCOVER", True):
        sources.extend(importlib.import_module(name) for name in app_task_modules())
    extra = config.get("TASKS") or []
    sources.extend([extra] if isinstance(extra, str) else extra)
    found = TaskRegistry()
    for source in sources:
        found.load(source)
    registry = TaskRegistry()
    for info in found:
        fn = info.fn if info.is_async else _with_fresh_connections(info.fn)
        registry.add(fn, info.identifier)
    return registry


def _with_fresh_connections(fn: Callable[..., Any]) -> Callable[..., Any]:
    from django.db import close_old_connections

    @functools.wraps(fn)  # keeps the @task identifier and timeout
    def run(*args: Any, **kwargs: Any) -> Any:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    assert not is_async_callable(run)
    return run
