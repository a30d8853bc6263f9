"""The worker's own pool names UTC 'UTC' (errands._connections.utc_by_its_name):
psycopg reads timestamps much faster in a session whose TimeZone is 'UTC' than
in one named 'Etc/UTC'.  Only names of UTC are replaced; the instants are the same."""

from __future__ import annotations

import asyncio
from datetime import timezone
from typing import Any

import psycopg
import pytest
from psycopg import sql

import errands
from errands import Helpers, task


def _seen(db: str, zone: str) -> tuple[str, Any, Any]:
    with psycopg.connect(db, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(sql.SQL("ALTER DATABASE {} SET TimeZone = {}").format(
            sql.Identifier(name), sql.Literal(zone)))  # fmt: skip
    with psycopg.connect(db, autocommit=True) as conn:
        added = errands.add_job(conn, "look_at_time")
        errands.add_job(conn, "look_at_time_sync")
    seen: list[tuple[str, Any]] = []
    seen_sync: list[str] = []

    @task
    async def look_at_time(payload: Any, helpers: Helpers) -> None:
        async with helpers.connection() as conn:
            cur = await conn.execute("SHOW TimeZone")
            row = await cur.fetchone()
        assert row is not None
        seen.append((row[0], helpers.job.run_at))

    @task
    def look_at_time_sync(payload: Any, helpers: Helpers) -> None:
        with helpers.sync_connection() as conn:
            row = conn.execute("SHOW TimeZone").fetchone()
        assert row is not None
        seen_sync.append(row[0])

    asyncio.run(errands.run_once(db, [look_at_time, look_at_time_sync]))
    assert len(seen) == 1
    assert seen_sync == [seen[0][0]]  # sync tasks see the same zone
    return seen[0][0], seen[0][1], added.run_at


def test_a_session_in_etc_utc_is_named_utc(db: str) -> None:
    zone, run_at, added = _seen(db, "Etc/UTC")
    assert zone == "UTC"
    assert run_at.tzinfo is timezone.utc
    assert run_at == added  # the same instant as add_job returned (in Etc/UTC)


@pytest.mark.parametrize("zone", ["Europe/Paris", "GMT"])
def test_other_zones_are_left_alone(db: str, zone: str) -> None:
    seen_zone, run_at, added = _seen(db, zone)
    assert seen_zone == zone
    assert run_at == added
