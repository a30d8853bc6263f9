"""The ``errands`` command line.

Every command that talks to PostgreSQL takes ``-c/--connection DSN``; without it the
database is ``$DATABASE_URL``, else the libpq ``PG*`` variables when ``PGDATABASE``
or ``PGHOST`` is set, else the embedded one in ``./.errands/`` (see
:mod:`errands._embedded`), started on demand.

Errors are one line on stderr (``errands: ...``) and a non-zero exit status.

One module per command group: :mod:`~errands.cli.worker` (``worker``),
:mod:`~errands.cli.jobs` (``add``, ``jobs``, ``retry``, ``remove``, ``cleanup``),
:mod:`~errands.cli.wait` (``wait``),
:mod:`~errands.cli.workers` (``workers``), :mod:`~errands.cli.limits` (``queue ...``,
``task ...``, ``queues``), :mod:`~errands.cli.cron` (``cron ...``),
:mod:`~errands.cli.flow` (``flow ...``), :mod:`~errands.cli.dashboard` (``dashboard``),
:mod:`~errands.cli.db` (``install``, ``db ...``) and
:mod:`~errands.cli.import_graphile` (``import-graphile``); what they share is in
``_common`` (connections, errors) and ``_format`` (output).

Start-up time matters here (``errands worker --once`` from cron, CI steps): these
modules import only typer and the standard library at the top; psycopg, the worker
machinery (asyncio, psycopg_pool) and the embedded-database code are imported by the
commands that use them.  ``worker --once`` on an empty queue decides that there is
nothing to do on its one synchronous connection and exits without starting a worker.

No module of this package uses ``from __future__ import annotations``: typer reads
every command's signature on every run, and evaluating string annotations costs
~20 ms there; annotations naming modules imported only for type checking are quoted
instead.
"""

from errands.cli._app import app

# Imported for their side effect: each registers its commands on `app`, in this order
# (the order `errands --help` lists them in).
from errands.cli import db, worker, jobs, cancel, wait, workers, limits, cron, flow  # noqa: F401  # isort: skip
from errands.cli import import_graphile, dashboard  # noqa: F401  # isort: skip


def main() -> None:
    app()


__all__ = ["app", "main"]
