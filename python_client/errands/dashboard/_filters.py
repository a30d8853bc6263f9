"""The jobs filter: parsed from a query string or a form, turned into SQL and back
into links and hidden inputs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from psycopg import sql

LIVE_STATES = ("running", "waiting", "failed", "retrying", "scheduled", "pending")
FINISHED_STATES = ("completed", "cancelled")
STATES = LIVE_STATES + FINISHED_STATES
SORTS = ("id", "run_at", "attempts")
FIELDS = ("state", "task", "queue", "key", "error", "payload", "since", "until", "sort")


class FilterError(ValueError):
    """A filter value the user typed is not valid (shown on the page, status 400)."""


def _time(name: str, value: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{name}: not an ISO time: {value!r}") from None


@dataclass(frozen=True)
class JobFilter:
    state: str = ""
    task: str = ""
    queue: str = ""
    key: str = ""
    error: str = ""
    payload: str = ""
    since: str = ""
    until: str = ""
    sort: str = "-id"
    after: str = ""
    limit: int = 50

    @classmethod
    def parse(cls, params: Mapping[str, Any], default_limit: int) -> JobFilter:
        values = {f: str(params.get(f) or "").strip() for f in (*FIELDS, "after")}
        values["sort"] = values["sort"] or "-id"
        raw_limit = str(params.get("limit") or default_limit)
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise FilterError(f"limit: expected 1 to 1000, got {raw_limit!r}")
        flt = cls(**values, limit=int(raw_limit))
        flt.validate()
        return flt

    def validate(self) -> None:
        if self.state and self.state not in STATES:
            raise FilterError(f"state: expected one of {', '.join(STATES)}, got {self.state!r}")
        if self.sort.lstrip("-") not in SORTS:
            raise FilterError(f"sort: expected id, run_at or attempts (- for descending), "
                              f"got {self.sort!r}")
        if self.payload:
            try:
                json.loads(self.payload)
            except ValueError:
                raise FilterError(f"payload: not a JSON value: {self.payload!r}") from None
        for name in ("since", "until"):
            if getattr(self, name):
                _time(name, getattr(self, name))
        if self.after:
            self.cursor()

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    @property
    def sort_column(self) -> str:
        col = self.sort.lstrip("-")
        # History keeps no run_at: its time is finished_at.
        return "finished_at" if col == "run_at" and self.finished else col

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    def cursor(self) -> tuple[Any, int]:
        """after = "<sort value>,<id>" (just "<id>" when sorting by id)."""
        value, _, last_id = self.after.rpartition(",")
        if not last_id.isdigit():
            raise FilterError(f"after: not a cursor: {self.after!r}")
        col = self.sort_column
        if col == "id":
            return int(last_id), int(last_id)
        if col == "attempts":
            if not value.lstrip("-").isdigit():
                raise FilterError(f"after: not a cursor: {self.after!r}")
            return int(value), int(last_id)
        return _time("after", value), int(last_id)

    def next_cursor(self, row: Mapping[str, Any]) -> str:
        col = self.sort_column
        if col == "id":
            return str(row["id"])
        value = row[col]
        return f"{value.isoformat() if isinstance(value, datetime) else value},{row['id']}"

    def relation(self) -> sql.Composable:
        return sql.SQL("errands.finished_jobs" if self.finished else "errands.jobs")

    @property
    def scans(self) -> bool:
        """Some condition no index serves: a big table is searched in windows of
        ids (see pages_jobs). Served: key, and the states running, waiting and
        failed of unfinished jobs (the partial index jobs_unavailable holds just
        those; the other conditions then filter a few rows)."""
        if self.key or (not self.finished and self.state in ("running", "waiting", "failed")):
            return False
        return any(getattr(self, f) for f in ("state", "task", "queue", "error", "payload",
                                              "since", "until"))

    def where(self, with_cursor: bool = True,
              id_bound: int | None = None) -> tuple[sql.Composable, list[Any]]:
        conds: list[sql.Composable] = []
        params: list[Any] = []

        def add(cond: str, *values: Any) -> None:
            conds.append(sql.SQL(cond))
            params.extend(values)

        if self.state:
            add("state = %s", self.state)
        if self.task:
            add("task_identifier = %s", self.task)
        if self.queue:
            add("queue_name = %s", self.queue)
        if self.key:
            add("key = %s", self.key)
        if self.error:
            add("strpos(lower(last_error), lower(%s)) > 0", self.error)
        if self.payload:
            add("payload::jsonb @> %s::jsonb", self.payload)
        time_col = "created_at" if self.finished else "run_at"
        if self.since:
            add(f"{time_col} >= %s", _time("since", self.since))
        if self.until:
            add(f"{time_col} < %s", _time("until", self.until))
        if with_cursor and self.after:
            value, last_id = self.cursor()
            op = "<" if self.descending else ">"
            if self.sort_column == "id":
                add(f"id {op} %s", last_id)
            else:
                add(f"({self.sort_column}, id) {op} (%s, %s)", value, last_id)
        if id_bound is not None:
            add("id >= %s" if self.descending else "id <= %s", id_bound)
        if not conds:
            return sql.SQL("true"), params
        return sql.SQL(" AND ").join(conds), params

    def sql_filter(self) -> dict[str, Any]:
        """The filter of errands.dashboard_job_ids (unfinished jobs)."""
        out: dict[str, Any] = {f: getattr(self, f) for f in ("state", "task", "queue", "key",
                                                             "error") if getattr(self, f)}
        if self.payload:
            out["payload"] = json.loads(self.payload)
        for name in ("since", "until"):
            if getattr(self, name):
                out[name] = _time(name, getattr(self, name)).isoformat()
        return out

    def id_call(self, id_bound: int | None, n: int | None,
                with_cursor: bool = True) -> tuple[sql.Composable, list[Any]]:
        """The array of errands.dashboard_job_ids(...) for this filter, as SQL and parameters."""
        after_value: str | None = None
        after_id: int | None = None
        if with_cursor and self.after:
            value, after_id = self.cursor()
            after_value = value.isoformat() if isinstance(value, datetime) else str(value)
        query = sql.SQL(
            "ARRAY(SELECT errands.dashboard_job_ids(%s::jsonb, %s, %s, %s, %s, %s, %s))")
        return query, [json.dumps(self.sql_filter()), self.sort_column, self.descending,
                       after_value, after_id, id_bound, n]

    def order_by(self) -> sql.Composable:
        direction = "DESC" if self.descending else "ASC"
        col = self.sort_column
        if col == "id":
            return sql.SQL(f"id {direction}")
        return sql.SQL(f"{col} {direction}, id {direction}")

    def query(self, **changes: Any) -> dict[str, str]:
        """The non-empty fields, for a link (changes applied first)."""
        flt = replace(self, **changes) if changes else self
        out = {k: str(v) for k, v in asdict(flt).items() if v not in ("", None)}
        if out.get("sort") == "-id":
            del out["sort"]
        return out

    def hidden(self) -> list[tuple[str, str]]:
        """The filter (not the page) as hidden inputs of a bulk form."""
        return [(f, getattr(self, f)) for f in FIELDS if getattr(self, f)]
