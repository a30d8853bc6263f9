"""Output: jobs and rows as JSON lines, and plain-text tables."""

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from errands.cli._common import _one_line


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _job_json(row: dict[str, Any]) -> str:
    out = dict(row)
    flags = out.get("flags")
    if isinstance(flags, dict):  # stored as a set {"flag": true}
        out["flags"] = sorted(flags)
    return json.dumps(out, default=_json_default)


def _format_time(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _truncate(text: str | None, width: int) -> str:
    if not text:
        return ""
    flat = _one_line(text)
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in [headers, *rows]
    ]
    return "\n".join(lines)
