"""Tasks of the FastAPI example, run by the worker inside the app (see app.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from errands import Helpers, task


@task
async def send_welcome_email(payload: dict[str, Any], helpers: Helpers) -> None:
    """Pretend to send the e-mail, then record it on the user's row."""
    helpers.logger.info("welcome e-mail to user %s", payload["user_id"])
    async with helpers.connection() as conn:
        await conn.execute(
            "UPDATE users SET welcomed_at = now() WHERE id = %s", [payload["user_id"]]
        )


@task
async def build_report(payload: dict[str, Any], helpers: Helpers) -> None:
    """A slow job (``seconds`` long): a stop of the server waits for it to finish."""
    await asyncio.sleep(float(payload.get("seconds", 1)))
    async with helpers.connection() as conn:
        await conn.execute("INSERT INTO reports (name) VALUES (%s)", [payload["name"]])
