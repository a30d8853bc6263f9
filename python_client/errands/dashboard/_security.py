"""Authentication (bearer token, ?token= cookie, HTTP basic), read-only mode, the
CSRF double-submit token and the Server-Timing header, for every request."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import time

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from errands.dashboard._options import DashboardOptions
from errands.dashboard._render import Renderer

CSRF_COOKIE = "errands_csrf"
TOKEN_COOKIE = "errands_token"


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class SecurityMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, options: DashboardOptions, render: Renderer) -> None:
        super().__init__(app)
        self.options = options
        self.render = render

    def _authorized(self, request: Request) -> tuple[bool, bool]:
        """(allowed, the token came in the query string: remember it in a cookie)."""
        opts = self.options
        if not opts.needs_credentials:
            return True, False
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if opts.token:
            if scheme.lower() == "bearer" and _same(value.strip(), opts.token):
                return True, False
            if _same(request.cookies.get(TOKEN_COOKIE, ""), opts.token):
                return True, False
            if _same(request.query_params.get("token", ""), opts.token):
                return True, True
        if opts.basic_users and scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False, False
            name, _, password = decoded.partition(":")
            expected = opts.basic_users.get(name)
            if expected is not None and _same(password, expected):
                return True, False
        return False, False

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        start = time.perf_counter()
        allowed, remember_token = self._authorized(request)
        csrf = request.cookies.get(CSRF_COOKIE) or ""
        new_csrf = len(csrf) < 20
        if new_csrf:
            csrf = secrets.token_urlsafe(32)
        request.state.csrf_token = csrf
        response: Response
        if not allowed:
            headers = {}
            if self.options.basic_users:
                headers["WWW-Authenticate"] = 'Basic realm="errands dashboard"'
            response = self.render.error(request, 401, "credentials required", headers)
        elif request.method not in ("GET", "HEAD") and self.options.read_only:
            response = self.render.error(request, 403, "the dashboard is read-only")
        else:
            response = await call_next(request)
            if remember_token and self.options.token:
                response.set_cookie(TOKEN_COOKIE, self.options.token, httponly=True,
                                    samesite="strict", path="/")
            if new_csrf:
                response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict",
                                    path="/")
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
        # Defence in depth behind the escaping: only our own script and stylesheet run.
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


async def checked_form(request: Request) -> FormData:
    """The POSTed form, once its csrf_token equals the errands_csrf cookie; else 403."""
    form = await request.form()
    sent = form.get("csrf_token")
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not isinstance(sent, str) or not cookie or not _same(sent, cookie):
        raise HTTPException(403, "missing or wrong CSRF token")
    return form
