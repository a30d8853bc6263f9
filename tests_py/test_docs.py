"""The code examples of README.md and docs/*.md run, so the documentation cannot drift.

Each ``sql`` and ``python`` block is one test (the fence vocabulary is described in
``tests_py/docs_blocks.py``):

* a SQL block runs in one transaction on a database with errands installed, shared
  by all SQL blocks, and is rolled back, so blocks do not see each other (roles a
  block creates vanish with it);
* a Python block runs on a fresh database whose DSN is both the variable ``dsn``
  and ``$DATABASE_URL``; top-level ``await`` works (the block runs in an event
  loop); the page's ``file=`` blocks are files in a temporary directory on
  ``sys.path``; a function ``test_*(conn)`` the block defines is then called with
  an autocommit connection, as pytest would.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests_py.docs_blocks import ROOT, Block, all_blocks, parse_blocks

DatabaseFactory = Callable[..., AbstractContextManager[str]]

BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.runs and not b.problems]


def _params(language: str) -> list[Any]:
    return [pytest.param(b, id=b.name) for b in RUNNABLE if b.language == language]


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_db(database_factory: DatabaseFactory, errands_template: str) -> Iterator[str]:
    """One database for every SQL block (each runs in a transaction rolled back)."""
    with database_factory(template=errands_template, prefix="docs") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def has_state_column(docs_db: str) -> bool:
    with psycopg.connect(docs_db) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_schema = 'errands' AND table_name = 'jobs' AND column_name = 'state'"
        ).fetchone()
    return row is not None and row[0] == 1


def _skip_unless_ready(block: Block, has_state_column: bool) -> None:
    if "state-column" in block.flags and not has_state_column:
        pytest.skip("state-column block: errands.jobs has no state column in this schema")


# --- the blocks -----------------------------------------------------------------------


def test_fences_say_what_they_are() -> None:
    """Every fence names a language and only known options, and is closed."""
    problems = [f"{b.name}: {p}" for b in BLOCKS for p in b.problems]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("block", _params("sql"))
def test_sql_block(block: Block, docs_db: str, has_state_column: bool) -> None:
    _skip_unless_ready(block, has_state_column)
    with psycopg.connect(docs_db) as conn:
        try:
            # No parameters: psycopg sends the text as one simple query, so a block
            # may hold several statements, dollar quotes and % signs.
            conn.execute(block.text.encode())
        except psycopg.Error as exc:
            pytest.fail(f"{block.name}: {type(exc).__name__}: {exc}", pytrace=False)
        finally:
            conn.rollback()


@pytest.mark.parametrize("block", _params("python"))
def test_python_block(
    block: Block,
    db: str,
    has_state_column: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _skip_unless_ready(block, has_state_column)
    for other in RUNNABLE:
        if other.page == block.page and other.file is not None:
            path = tmp_path / other.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(other.text, encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", db)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        namespace = run_python(block, {"dsn": db})
        _call_test_functions(namespace, db)
    finally:
        _forget_modules_under(tmp_path)


def run_python(block: Block, namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute a block's text like a module; top-level ``await`` runs in a new loop."""
    namespace.setdefault("__name__", "__docs__")
    # Padded to the block's place in its page, so a traceback shows the page's lines.
    source = "\n" * block.line + block.text
    filename = str(ROOT / block.page)
    code = compile(
        source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    result = eval(code, namespace)  # a coroutine when the block awaits at top level
    if inspect.iscoroutine(result):
        asyncio.run(result)
    return namespace


def _call_test_functions(namespace: dict[str, Any], dsn: str) -> None:
    for name, value in list(namespace.items()):
        if name.startswith("test_") and inspect.isfunction(value):
            with psycopg.connect(dsn, autocommit=True) as conn:
                value(conn)


def _forget_modules_under(directory: Path) -> None:
    """Drop modules imported from a page's files, so the next page starts clean."""
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        places = [file] if file else list(getattr(module, "__path__", []))
        if any(Path(place).is_relative_to(directory) for place in places):
            del sys.modules[name]


# --- the collector itself -------------------------------------------------------------


def test_parser_reads_the_fence_vocabulary() -> None:
    text = "\n".join(
        [
            "# Page",
            "```sql",
            "SELECT 1;",
            "```",
            "- item",
            "  ```python file=myapp/tasks.py",
            "  x = 1",
            "  ```",
            "````sql state-column",
            "SELECT state FROM errands.jobs;",
            "````",
            "```sql norun",
            "errands.add_job(identifier text)",
            "```",
            "```sh",
            "make test",
            "```",
            "```",
            "no language",
            "```",
            "```sql nrun",
            "```",
        ]
    )
    blocks = parse_blocks(text, "page.md")
    assert [(b.line, b.language, b.runs) for b in blocks] == [
        (2, "sql", True),
        (6, "python", True),
        (9, "sql", True),
        (12, "sql", False),
        (15, "sh", False),
        (18, "", False),
        (21, "sql", True),
    ]
    assert blocks[1].file == "myapp/tasks.py" and blocks[1].text == "x = 1\n"
    assert blocks[2].flags == {"state-column"}
    assert [bool(b.problems) for b in blocks] == [False] * 5 + [True, True]
    assert "unknown fence option 'nrun'" in blocks[6].problems[0]


def test_unclosed_fence_is_a_problem() -> None:
    (block,) = parse_blocks("```python\nx = 1\n", "page.md")
    assert block.problems == ("the fence is never closed",)


def test_python_blocks_may_await(db: str) -> None:
    block = parse_blocks("```python\nimport asyncio\nawait asyncio.sleep(0)\nx = 2\n```\n", "p")[0]
    assert run_python(block, {"dsn": db})["x"] == 2


# --- links the site build does not check ---------------------------------------------

_LINK = re.compile(r"\]\((?P<path>[^)#\s]+\.md)(?:#(?P<anchor>[^)\s]+))?\)")


def heading_anchors(markdown: str) -> set[str]:
    """The ids Python-Markdown's ``toc`` gives the headings of a page (its slugify)."""
    anchors: set[str] = set()
    in_fence = False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not in_fence and line.startswith("#"):
            title = line.lstrip("#").strip().replace("`", "")
            slug = re.sub(r"[^\w\s-]", "", title).strip().lower()
            anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


def test_readme_links_reach_docs_pages_and_anchors() -> None:
    """mkdocs checks the links between docs pages; the README's are checked here."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    broken = []
    for link in _LINK.finditer(readme):
        target = ROOT / link["path"]
        anchors = heading_anchors(target.read_text("utf-8")) if target.is_file() else None
        if anchors is None or (link["anchor"] and link["anchor"] not in anchors):
            broken.append(link[0])
    assert not broken, f"README.md links to missing pages or anchors: {broken}"
    assert _LINK.search(readme), "the README links to no docs page"


def test_heading_anchors_follow_the_toc_slugs() -> None:
    page = "# Errands\n## add_job\n```sh\n# not a heading\n```\n### `errands.grant_worker(role)`\n"
    assert heading_anchors(page) == {"errands", "add_job", "errandsgrant_workerrole"}


def test_the_option_references_name_every_option_with_its_default() -> None:
    """docs/worker.md's table and docs/python-api.md's signature list every
    WorkerOptions field with its default; docs/python-api.md lists every JobOptions
    key: a new option cannot be left undocumented."""
    from dataclasses import MISSING, fields

    from errands import JobOptions, WorkerOptions

    defaults = {f.name: repr(f.default) for f in fields(WorkerOptions) if f.default is not MISSING}
    assert len(defaults) == len(fields(WorkerOptions))
    worker_page = (ROOT / "docs" / "worker.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", worker_page, re.MULTILINE))
    assert table == defaults
    api_page = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    signature = api_page[api_page.index("WorkerOptions(\n") :]
    signature = signature[: signature.index("\n)")]
    assert dict(re.findall(r"(\w+)=([^,\s]+)", signature)) == defaults
    job_table = set(re.findall(r"^\| `(\w+)` \|", api_page, re.MULTILINE))
    assert set(JobOptions.__optional_keys__) <= job_table
