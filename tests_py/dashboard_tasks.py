"""Tasks of the worker the dashboard tests start (``errands worker --tasks
dashboard_tasks``): plausible names for the screenshots, one behaviour driven by the
payload: ``seconds`` to sleep (cancellable: async), ``fail`` an error message to raise,
``fail_unless`` the name of a row of table ``dash_flags`` (fails while it is missing:
the "fix the cause, then retry" story).
"""

from __future__ import annotations

import asyncio
from typing import Any

from errands import Helpers, task


async def _work(payload: Any, helpers: Helpers) -> dict[str, Any]:
    if not isinstance(payload, dict):
        return {"attempt": helpers.job.attempts}
    await asyncio.sleep(float(payload.get("seconds", 0)))
    if payload.get("fail"):
        raise RuntimeError(str(payload["fail"]))
    if payload.get("fail_unless"):
        async with helpers.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM dash_flags WHERE name = %s", [payload["fail_unless"]]
            )
            if await cur.fetchone() is None:
                raise RuntimeError(f"feature flag {payload['fail_unless']!r} is off")
    return {"attempt": helpers.job.attempts, "done": payload.get("label", helpers.job.id)}


@task
async def send_email(payload: Any, helpers: Helpers) -> dict[str, Any]:
    return await _work(payload, helpers)


@task("reports.build")
async def build_report(payload: Any, helpers: Helpers) -> dict[str, Any]:
    return await _work(payload, helpers)


@task
async def resize_image(payload: Any, helpers: Helpers) -> dict[str, Any]:
    return await _work(payload, helpers)


@task("webhooks.deliver")
async def deliver_webhook(payload: Any, helpers: Helpers) -> dict[str, Any]:
    return await _work(payload, helpers)
