"""sql/schema.snapshot.sql is the catalogue of a fresh install (`make schema-snapshot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from pgtap.snapshot import snapshot

SNAPSHOT = Path(__file__).resolve().parent.parent / "sql" / "schema.snapshot.sql"


def test_committed_schema_snapshot_is_current(conn: psycopg.Connection[Any]) -> None:
    assert SNAPSHOT.is_file(), "sql/schema.snapshot.sql is missing: run `make schema-snapshot`"
    assert snapshot(conn) == SNAPSHOT.read_text(encoding="utf-8"), (
        "sql/schema.snapshot.sql is out of date with sql/schema/ and sql/migrations/:"
        " run `make schema-snapshot` and review the diff"
    )


def test_snapshot_shows_security_attributes_and_acls() -> None:
    text = SNAPSHOT.read_text(encoding="utf-8")
    assert "-- FUNCTION errands.get_jobs(text,text[],integer,text[],boolean)" in text
    assert " SECURITY DEFINER\n" in text
    assert "-- SCHEMA errands ACL: postgres=UC/postgres" in text
