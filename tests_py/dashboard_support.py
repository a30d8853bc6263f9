"""Shared helpers of the dashboard tests (not a test module): the real dashboard
(``errands dashboard`` in its own process), a real worker (``errands worker`` with the
tasks of dashboard_tasks.py), an HTTP client that keeps cookies and follows no
redirect, and a small HTML reader (elements by tag/class/attribute, forms, text)."""

from __future__ import annotations

import http.cookiejar
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from server_support import HOST, Server, free_port, serve

HERE = Path(__file__).resolve().parent
# Credentials a developer's shell may hold must not leak into the servers we start;
# nor may a PGHOST/PGDATABASE make the CLI pick another database than the test's.
UNSET = ("ERRANDS_DASHBOARD_TOKEN", "ERRANDS_DASHBOARD_USERS", "PGHOST", "PGDATABASE")

# The pages of the contract (docs/dashboard.md): path -> id of their <main>.
PAGES = {
    "/": "page-overview",
    "/jobs": "page-jobs",
    "/queues": "page-queues",
    "/workers": "page-workers",
    "/cron": "page-cron",
    "/flows": "page-flows",
}


def dashboard_argv(port: int, host: str = HOST, read_only: bool = False) -> list[str]:
    argv = [sys.executable, "-m", "errands.cli", "dashboard", "--host", host, "--port", str(port)]
    return [*argv, "--read-only"] if read_only else argv


@contextmanager
def dashboard(
    dsn: str,
    log: Path,
    *,
    host: str = HOST,
    read_only: bool = False,
    token: str | None = None,
    users: str | None = None,
) -> Iterator[Server]:
    """``errands dashboard`` on a free port of ``host`` for database ``dsn``."""
    port = free_port()
    env = {"DATABASE_URL": dsn}
    if token is not None:
        env["ERRANDS_DASHBOARD_TOKEN"] = token
    if users is not None:
        env["ERRANDS_DASHBOARD_USERS"] = users
    argv = dashboard_argv(port, host, read_only)
    with serve(argv, port=port, log=log, env=env, unset=UNSET) as server:
        yield server


@contextmanager
def worker(dsn: str, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``errands worker --tasks dashboard_tasks`` (a real worker process); its log in
    ``log``.  Stopped by SIGTERM (SIGKILL after 10 s) on exit."""
    argv = [
        sys.executable,
        "-m",
        "errands.cli",
        "worker",
        "-c",
        dsn,
        "--tasks",
        "dashboard_tasks",
        "--poll-interval",
        "0.2",
        "--no-install",
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- HTTP ------------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: Message
    text: str

    @property
    def page(self) -> Page:
        return Page(self.text)

    def cookies(self) -> list[str]:
        return self.headers.get_all("Set-Cookie") or []


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 30x reaches the caller as it is


class Client:
    """A browser-like HTTP client: keeps cookies, sends ``headers`` with every request,
    does not follow redirects (303s are what the tests check)."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = dict(headers or {})
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPCookieProcessor(self.jar)
        )

    def request(
        self,
        method: str,
        path: str,
        fields: Sequence[tuple[str, str]] | dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        data = None if fields is None else urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={**self.headers, **(headers or {})}
        )
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(request, timeout=60) as response:
                return Response(response.status, response.headers, response.read().decode())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, exc.headers, exc.read().decode(errors="replace"))

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(
        self,
        path: str,
        fields: Sequence[tuple[str, str]] | dict[str, str],
        headers: dict[str, str] | None = None,
    ) -> Response:
        return self.request("POST", path, fields, headers)

    def cookie(self, name: str) -> str | None:
        for cookie in self.jar:
            if cookie.name == name:
                return cookie.value
        return None

    def submit(
        self, page_path: str, action: str, button: str | None = None, **overrides: str
    ) -> Response:
        """GET ``page_path``, then POST its form whose action is ``action`` as a browser
        would (its inputs, ``overrides`` replacing or adding fields, and the submit
        button ``name="action" value=button`` when given)."""
        page = self.get(page_path)
        assert page.status == 200, (page_path, page.status, page.text[:2000])
        form = page.page.form(action, button)
        fields = {**form.fields, **overrides}
        if button is not None:
            assert ("action", button) in form.buttons, (action, form.buttons)
            fields["action"] = button
        return self.post(action, fields)


# --- HTML ------------------------------------------------------------------------

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "param",
    "source",
    "track",
    "wbr",
}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text_parts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str]
    buttons: list[tuple[str, str]]


class Page(HTMLParser):
    """Every element of an HTML page (with its text) and its forms."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.forms: list[Form] = []
        self._open: list[Element] = []
        self._textarea: str | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        element = Element(tag, values)
        self.elements.append(element)
        if tag == "form":
            self.forms.append(
                Form(values.get("action", ""), values.get("method", "get").lower(), {}, [])
            )
        elif self.forms and self._in("form"):
            form = self.forms[-1]
            name = values.get("name")
            if tag == "button" or (tag == "input" and values.get("type") == "submit"):
                if name:
                    form.buttons.append((name, values.get("value", "")))
            elif tag == "input" and name and values.get("type") not in ("checkbox", "radio"):
                form.fields[name] = values.get("value", "")
            elif tag == "input" and name and "checked" in values:
                form.fields[name] = values.get("value", "on")
            elif tag == "select" and name:
                form.fields.setdefault(name, "")
                self._select = name
            elif tag == "option" and "selected" in values and getattr(self, "_select", None):
                form.fields[self._select] = values.get("value", "")
            elif tag == "textarea" and name:
                self._textarea = name
                form.fields[name] = ""
        if tag not in VOID:
            self._open.append(element)

    def _in(self, tag: str) -> bool:
        return any(e.tag == tag for e in self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text_parts.append(data)
        if self._textarea and self.forms:
            self.forms[-1].fields[self._textarea] += data

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Element]:
        """Elements with this tag, class and attributes (``data_job_id`` = data-job-id)."""
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [
            e
            for e in self.elements
            if (tag is None or e.tag == tag)
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k) == v for k, v in wanted.items())
        ]

    def by_id(self, element_id: str) -> Element:
        found = self.find(id=element_id)
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def has_id(self, element_id: str) -> bool:
        return bool(self.find(id=element_id))

    def job_ids(self) -> list[int]:
        """The ids of the job rows (``tr.job-row[data-job-id]``), in page order."""
        return [int(e.attrs["data-job-id"]) for e in self.find("tr", "job-row")]

    def form(self, action: str, button: str | None = None) -> Form:
        """The one form posting to ``action`` (its path, query string ignored) with the
        submit button ``name="action" value=button`` when given."""
        found = [
            f
            for f in self.forms
            if urllib.parse.urlsplit(f.action).path == action
            and (button is None or ("action", button) in f.buttons)
        ]
        assert len(found) == 1, f"{len(found)} forms post to {action!r}: {self.forms}"
        return found[0]

    def post_forms(self) -> list[Form]:
        return [f for f in self.forms if f.method == "post"]


def flash(client: Client, response: Response) -> str:
    """Follow the 303 of an action; the flash message of the page it leads to."""
    assert response.status == 303, (response.status, response.text[:2000])
    location = response.headers["Location"]
    page = client.get(urllib.parse.urlsplit(location)._replace(scheme="", netloc="").geturl())
    assert page.status == 200, page.text[:2000]
    return page.page.by_id("flash").text.strip()
