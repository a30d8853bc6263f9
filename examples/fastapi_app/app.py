"""FastAPI + Errands: enqueue in the request's transaction, a worker in the app.

    DATABASE_URL=postgresql://localhost/mydb uvicorn app:app --host 127.0.0.1

* Each request gets a connection from a psycopg pool and one transaction
  (:func:`transaction`); it commits when the handler returns, before the response
  is sent, and rolls back if the handler raises.  A job enqueued with
  ``errands.add_job_async(conn, ...)`` therefore commits or rolls back together with
  the rows the handler wrote.
* The lifespan starts an errands worker (``errands.run``) next to the app and stops
  it gracefully when uvicorn stops (SIGTERM / Ctrl-C, or a ``--reload`` restart):
  running jobs finish (up to ``shutdown_timeout``), nothing is lost.

See docs/fastapi.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import psycopg
from fastapi import Depends, FastAPI, HTTPException, Request
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel

import errands

# uvicorn configures only its own loggers: show the app's and the worker's too.
logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(name)s: %(message)s")
log = logging.getLogger("app")
TASKS = Path(__file__).with_name("tasks.py")  # its @task functions

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL UNIQUE,
    welcomed_at timestamptz
);
CREATE TABLE IF NOT EXISTS referrals (
    referrer_id bigint NOT NULL REFERENCES users,
    user_id bigint NOT NULL REFERENCES users
);
CREATE TABLE IF NOT EXISTS reports (name text NOT NULL, built_at timestamptz DEFAULT now());
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    dsn = os.environ["DATABASE_URL"]
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(SCHEMA)
    async with AsyncConnectionPool(dsn, min_size=1, max_size=10, open=False) as pool:
        # The worker has its own pool (concurrency + 2 connections) so that slow
        # jobs never starve the requests; it installs errands if the database lacks
        # it (WorkerOptions.install).  uvicorn owns the signals: no handle_signals.
        options = errands.WorkerOptions(concurrency=4, shutdown_timeout=30.0)
        runner = await errands.run(dsn, TASKS, options)
        app.state.pool = pool
        log.info("errands worker %s started", runner.worker_id)
        # The dashboard will be mounted here (app.mount("/errands", ...)) once the
        # dashboard issue has landed.
        try:
            yield
        finally:
            log.info("stopping the errands worker (running jobs finish first)")
            await runner.stop()
            log.info("errands worker %s stopped", runner.worker_id)


app = FastAPI(lifespan=lifespan)


async def transaction(request: Request) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """One connection and one transaction per request (commit on success)."""
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    async with pool.connection() as conn, conn.transaction():
        yield conn


# scope="function": the commit happens before the response is sent, so a client that
# got 201 can rely on the row and the job being there (and a failed commit is a 500).
Conn = Annotated[psycopg.AsyncConnection[Any], Depends(transaction, scope="function")]


class NewUser(BaseModel):
    email: str
    referred_by: int | None = None


@app.post("/users", status_code=201)
async def create_user(user: NewUser, conn: Conn) -> dict[str, Any]:
    cur = await conn.execute(
        "INSERT INTO users (email) VALUES (%s) ON CONFLICT (email) DO NOTHING RETURNING id",
        [user.email],
    )
    row = await cur.fetchone()
    if row is None:
        raise HTTPException(409, f"a user with e-mail {user.email!r} already exists")
    user_id = row[0]
    job = await errands.add_job_async(conn, "send_welcome_email", {"user_id": user_id})
    if user.referred_by is not None:
        try:
            async with conn.transaction():  # a savepoint: the error is ours to report
                await conn.execute(
                    "INSERT INTO referrals (referrer_id, user_id) VALUES (%s, %s)",
                    [user.referred_by, user_id],
                )
        except psycopg.errors.ForeignKeyViolation:
            # Raising rolls back the whole request: the user row AND the job.
            raise HTTPException(
                422, f"unknown referrer: no user with id {user.referred_by}"
            ) from None
    return {"id": user_id, "job_id": job.id}


class NewReport(BaseModel):
    name: str
    seconds: float = 1.0


@app.post("/reports", status_code=202)
async def build_report(report: NewReport, conn: Conn) -> dict[str, Any]:
    job = await errands.add_job_async(conn, "build_report", report.model_dump())
    return {"job_id": job.id}
