"""``manage.py errands_worker``: an errands worker with the project's tasks and
settings (see :mod:`errands.contrib.django.worker`)."""

from __future__ import annotations

import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from errands.contrib.django import worker


class Command(BaseCommand):  # type: ignore[misc]  # Django is untyped here
    help = (
        "Run an errands worker with the tasks of the installed apps' tasks modules and "
        "settings.ERRANDS['TASKS'], on settings.ERRANDS['DATABASE'] (default 'default')."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Run the jobs that are due, then exit."
        )
        parser.add_argument(
            "--database", help="The DATABASES alias to use (default: ERRANDS['DATABASE'])."
        )
        parser.add_argument(
            "--concurrency", type=int, help="Jobs run at once (default: ERRANDS['CONCURRENCY'])."
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        from django.core.exceptions import ImproperlyConfigured

        import errands

        overrides: dict[str, Any] = {}
        if opts["concurrency"] is not None:
            overrides["concurrency"] = opts["concurrency"]
        try:
            config = worker.errands_settings()
            options = worker.worker_options(config, **overrides)
            dsn = worker.conninfo(config, opts["database"])
            registry = worker.task_registry(config)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        if not len(registry):
            raise CommandError(
                "errands: no tasks: no installed app has a tasks module with @task "
                "functions, and settings.ERRANDS['TASKS'] names none"
            )
        if not logging.getLogger("errands").handlers:  # settings.LOGGING did not
            errands.configure_logging(level=logging.WARNING if options.quiet else logging.INFO)
        errands.run_sync(dsn, registry, options, once=opts["once"])
