"""Tasks of the worker the dashboard tests start (``errands worker --tasks
dashboard_tasks``): plausible names for the screenshots, one behaviour driven by the
payload: ``seconds`` to sleep (cancellable: async), ``fail`` an error message to raise.
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
