"""``errands wait JOB_ID``: block until a job finishes (see docs/waiting.md).

Exit statuses: 0 completed, 4 failed for good, 5 cancelled, 6 no such job, 124
timed out (as coreutils ``timeout``), 1 for other errors (connection, SQL).
"""

# No `from __future__ import annotations`: typer reads the signatures (see errands.cli).

import dataclasses
import json
from typing import Annotated, Any, Final

import typer

from errands.cli._app import app
from errands.cli._common import Connection, _handle_errors, resolve_conninfo
from errands.cli._format import _job_json, _json_default

EXIT_FAILED: Final = 4
EXIT_CANCELLED: Final = 5
EXIT_UNKNOWN: Final = 6
EXIT_TIMEOUT: Final = 124


def _row_json(job: Any) -> str:
    return _job_json(dataclasses.asdict(job))


@app.command("wait")
@_handle_errors
def wait_cmd(
    job_id: Annotated[int, typer.Argument(metavar="JOB_ID", help="The job's id.")],
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", metavar="S", min=0, help="Give up after S seconds (exit 124)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the finished (or failed) job as one JSON object.")
    ] = False,
    connection: Connection = None,
) -> None:
    """Wait until a job finishes; print its result as JSON (--json: the whole job).

    Exit 0 completed, 4 failed, 5 cancelled, 6 no such job, 124 timed out."""
    from errands import _wait
    from errands.utils import SyncWorkerUtils

    with SyncWorkerUtils(resolve_conninfo(connection)) as utils:
        try:
            finished = utils.wait_for_job(job_id, timeout=timeout)
        except (_wait.JobFailed, _wait.JobCancelled) as exc:
            if as_json:
                typer.echo(_row_json(exc.job))
            typer.echo(str(exc), err=True)
            code = EXIT_FAILED if isinstance(exc, _wait.JobFailed) else EXIT_CANCELLED
            raise typer.Exit(code) from None
        except _wait.UnknownJob as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_UNKNOWN) from None
        except _wait.WaitTimeout as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(EXIT_TIMEOUT) from None
    if as_json:
        typer.echo(_row_json(finished))
    else:
        typer.echo(json.dumps(finished.result, default=_json_default))
