"""Templates (Jinja2, autoescaped: payloads and errors are user data), the flash
message and the formatting filters."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from errands.dashboard._options import DashboardOptions

FLASH_COOKIE = "errands_flash"
NONE = "\u2013"  # an en dash: no value
# Payloads larger than this are shown as stored, not re-indented.
PRETTY_LIMIT = 100_000


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    s = abs(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} d"


def ago(value: datetime | None) -> str:
    if value is None:
        return NONE
    delta = (datetime.now(timezone.utc) - value).total_seconds()
    return f"{seconds_text(delta)} ago" if delta >= 0 else f"in {seconds_text(delta)}"


def when(value: datetime | None) -> str:
    if value is None:
        return NONE
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty_json(text: str | None) -> str:
    """Indented JSON; the stored text when big or too deeply nested to parse."""
    if text is None:
        return "null"
    if len(text) > PRETTY_LIMIT:
        return text
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def interval_text(value: timedelta | None) -> str:
    return NONE if value is None else seconds_text(value.total_seconds())


def number(value: int | None, estimated: bool = False) -> str:
    if value is None:
        return NONE
    return f"≈{value:,}" if estimated else f"{value:,}"


class Renderer:
    def __init__(self, options: DashboardOptions, root_path: str = "") -> None:
        self.options = options
        self.env = Environment(
            loader=FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(ago=ago, when=when, pretty_json=pretty_json,
                                interval=interval_text, seconds=seconds_text, number=number,
                                urlencode_query=urlencode)

    def error(self, request: Request, status: int, detail: str,
              headers: dict[str, str] | None = None) -> HTMLResponse:
        """An error page (401, 403, 404, ...) with the nav; detail is escaped."""
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        response = self.page(request, "error.html", status=status, code=status, reason=reason,
                             detail=detail)
        response.headers.update(headers or {})
        return response

    def page(self, request: Request, template: str, status: int = 200,
             **context: Any) -> HTMLResponse:
        flash = request.cookies.get(FLASH_COOKIE)
        html = self.env.get_template(template).render(
            request=request,
            base=request.scope.get("root_path", ""),
            options=self.options,
            csrf_token=request.state.csrf_token,
            flash=unquote(flash) if flash else None,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if flash:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return response


def redirect(request: Request, path: str, message: str) -> RedirectResponse:
    """303 to path (inside the app) with a flash message shown by the next page."""
    response = RedirectResponse(request.scope.get("root_path", "") + path, status_code=303)
    response.set_cookie(FLASH_COOKIE, quote(message[:500]), httponly=True, samesite="strict",
                        path="/")
    return response


def first_line(exc: BaseException) -> str:
    """A database error as one line for a flash message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
