"""Payloads reach the task exactly as ``json.loads`` reads the stored JSON.

The worker decodes fetched ``jsonb`` with its own loader (errands._json, faster
than psycopg's); these payloads exercise what a loader could get wrong: integers
beyond 64 bits, floats, escapes and non-ASCII text, deep nesting, empty values.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg

import errands
from errands import Helpers, task

PAYLOADS: list[Any] = [
    {},
    [],
    {"big": 123456789012345678901234567890, "neg": -9223372036854775809},
    {"floats": [0.1, 1e-300, 1.7976931348623157e308, -0.0, 3.0]},
    {"text": 'caf\u00e9 \u2603 \U0001f600 "quoted" \\ back\nslash\t\u0001'},
    {"nested": [[[[{"a": [None, True, False]}]]]]},
    "just a string",
    42,
    None,
]


def test_tasks_receive_payloads_equal_to_json_loads_of_the_stored_value(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    received: dict[int, Any] = {}

    @task
    async def echo(payload: Any, helpers: Helpers) -> None:
        received[helpers.job.id] = payload

    stored: dict[int, Any] = {}
    for payload in PAYLOADS:
        job = errands.add_job(conn, "echo", payload)
        text = conn.execute(
            "SELECT payload::text FROM errands._jobs WHERE id = %s", (job.id,)
        ).fetchone()
        assert text is not None
        stored[job.id] = json.loads(text[0])

    asyncio.run(errands.run_once(db, [echo], concurrency=3))

    assert received.keys() == stored.keys()
    for job_id, expected in stored.items():
        got = received[job_id]
        assert got == expected and type(got) is type(expected), (job_id, got, expected)
    big = next(v for v in received.values() if isinstance(v, dict) and "big" in v)
    assert big["big"] == 123456789012345678901234567890  # an int, not a rounded float
