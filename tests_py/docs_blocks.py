"""Fenced code blocks of the Markdown documentation, and how each is to be checked.

The fence's info string says what a block is.  Its first word is the language;
``sql`` and ``python`` blocks are run by ``tests_py/test_docs.py``, every other
language (``sh``, ``text``, ``crontab``, ...) is shown only.  Words after the
language are options:

* ``norun``: an example that cannot run here (a signature, a pg_cron set-up);
* ``state-column``: runs only on a schema whose ``errands.jobs`` view has the
  ``state`` column (skipped, saying so, on one without it);
* ``file=PATH`` (python only): the block is the file PATH (e.g.
  ``myapp/tasks.py``), importable by the page's other Python blocks.

A fence without a language, or with an unknown option, is an error: each block
must say whether it runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_LANGUAGES = frozenset({"sql", "python"})
FLAGS = frozenset({"norun", "state-column"})

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, what its fence says and its text."""

    page: str
    """Path relative to the repository root, e.g. ``docs/sql-api.md``."""
    line: int
    """1-based line of the opening fence."""
    language: str
    flags: frozenset[str] = frozenset()
    file: str | None = None
    text: str = ""
    problems: tuple[str, ...] = field(default=())

    @property
    def runs(self) -> bool:
        return self.language in RUN_LANGUAGES and "norun" not in self.flags

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def _parse_info(info: str) -> tuple[str, frozenset[str], str | None, list[str]]:
    words = info.split()
    problems: list[str] = []
    if not words:
        return "", frozenset(), None, ["a fence without a language (sql, python, sh, text, ...)"]
    language, flags, file = words[0], set(), None
    for word in words[1:]:
        if word.startswith("file="):
            file = word[len("file=") :]
            if language != "python" or not file.endswith(".py") or file.startswith("/"):
                problems.append(f"file= takes a relative .py path on a python block: {word}")
        elif word in FLAGS:
            flags.add(word)
        else:
            problems.append(f"unknown fence option {word!r} (known: {sorted(FLAGS)}, file=PATH)")
    return language, frozenset(flags), file, problems


def parse_blocks(text: str, page: str) -> list[Block]:
    """Every fenced block of a Markdown text, in order.

    A block ends at a line holding the same fence character repeated at least as
    often as the opening fence; its lines lose the opening fence's indentation (a
    block inside a list item).  An unclosed fence is reported as a problem.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        language, flags, file, problems = _parse_info(opening["info"])
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        else:
            problems.append("the fence is never closed")
        blocks.append(
            Block(page, i + 1, language, flags, file, "\n".join(body) + "\n", tuple(problems))
        )
        i = j + 1
    return blocks


def doc_pages(root: Path = ROOT) -> list[Path]:
    """The README and every page of the documentation site."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def all_blocks(root: Path = ROOT) -> list[Block]:
    blocks: list[Block] = []
    for path in doc_pages(root):
        blocks += parse_blocks(path.read_text(encoding="utf-8"), str(path.relative_to(root)))
    return blocks
