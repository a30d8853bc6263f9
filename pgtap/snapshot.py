"""A normalised description of schema ``errands`` read from the catalogue.

``sql/schema.snapshot.sql`` is this text for a fresh install (``make
schema-snapshot`` regenerates it), so every change to the database's shape shows
up in review; tests_py/test_schema_snapshot.py fails when it is stale and checks
that an upgraded database describes itself identically.

Covered: the schema's ACL; tables (columns, defaults, identity, generated
expressions, constraints, options, row security, ACL); indexes; composite types;
views (definition, ACL); functions (``pg_get_functiondef``: attributes, SET
clauses and body; ACL); triggers; comments.  OIDs and anything else that differs
between two equal databases are left out; ACLs are sorted.
"""

from __future__ import annotations

import sys
from typing import Any

import psycopg

_HEADER = """\
-- Errands schema snapshot: what a fresh install of schema errands contains, read
-- from the catalogue (pgtap/snapshot.py).
--
-- GENERATED FILE, DO NOT EDIT: regenerate with `make schema-snapshot`.
-- It is not meant to be run; it shows every change to the database's shape in a diff.
"""

_ACL = """
SELECT coalesce(string_agg(a, ' ' ORDER BY a), '(default)')
FROM unnest(%s::aclitem[]) AS u(a)
"""

_SCHEMA = "SELECT nspacl::text[] FROM pg_namespace WHERE nspname = 'errands'"

_RELATIONS = """
SELECT c.oid, c.relname, c.relkind, c.relacl::text[], c.relrowsecurity,
       c.reloptions, obj_description(c.oid, 'pg_class')
FROM pg_class c
WHERE c.relnamespace = 'errands'::regnamespace AND c.relkind IN ('r', 'v', 'c', 'S')
ORDER BY c.relname
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
       col_description(a.attrelid, a.attnum)
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_CONSTRAINTS = """
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %s ORDER BY conname
"""

_INDEXES = """
SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %s ORDER BY c.relname
"""

_TRIGGERS = """
SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
WHERE t.tgrelid = %s AND NOT t.tgisinternal ORDER BY t.tgname
"""

_FUNCTIONS = """
SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text[],
       obj_description(p.oid, 'pg_proc')
FROM pg_proc p
WHERE p.pronamespace = 'errands'::regnamespace
ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)
"""

_KINDS = {"r": "TABLE", "v": "VIEW", "c": "TYPE", "S": "SEQUENCE"}


def _acl(acl: list[str] | None) -> str:
    return " ".join(sorted(acl)) if acl else "(default)"


def _comment(out: list[str], text: str | None) -> None:
    if text is not None:
        out.append("-- comment: " + text.replace("\n", "\n--          "))


def snapshot(conn: psycopg.Connection[Any]) -> str:
    """The normalised description of schema errands in ``conn``'s database."""
    out: list[str] = [_HEADER]
    row = conn.execute(_SCHEMA).fetchone()
    out.append(f"\n-- SCHEMA errands ACL: {_acl(row[0] if row else None)}")
    for oid, name, kind, acl, rls, options, comment in conn.execute(_RELATIONS).fetchall():
        out.append(f"\n-- {_KINDS[kind]} errands.{name}")
        if kind != "c":
            out.append(f"-- ACL: {_acl(acl)}")
        _comment(out, comment)
        if rls:
            out.append("-- ROW LEVEL SECURITY enabled")
        if options:
            out.append(f"-- options: {', '.join(options)}")
        if kind == "v":
            row = conn.execute("SELECT pg_get_viewdef(%s::oid)", [oid]).fetchone()
            out.append((row[0] if row else "").rstrip())
        if kind in ("r", "v", "c"):
            for col, typ, notnull, default, ident, generated, ccomment in conn.execute(
                _COLUMNS, [oid]
            ).fetchall():
                line = f"--   {col} {typ}"
                if notnull:
                    line += " NOT NULL"
                if ident:
                    line += " IDENTITY " + {"a": "ALWAYS", "d": "BY DEFAULT"}[ident]
                if default is not None:
                    line += (" GENERATED AS " if generated else " DEFAULT ") + default
                out.append(line)
                _comment(out, ccomment)
        for cname, cdef in conn.execute(_CONSTRAINTS, [oid]).fetchall():
            out.append(f"--   CONSTRAINT {cname} {cdef}")
        out.extend(f"{idx};" for (idx,) in conn.execute(_INDEXES, [oid]).fetchall())
        out.extend(f"{trg};" for (trg,) in conn.execute(_TRIGGERS, [oid]).fetchall())
    for signature, definition, acl, comment in conn.execute(_FUNCTIONS).fetchall():
        out.append(f"\n-- FUNCTION {signature}")
        out.append(f"-- ACL: {_acl(acl)}")
        _comment(out, comment)
        out.append(definition.rstrip() + ";")
    return "\n".join(out) + "\n"


def main() -> None:
    """Print the snapshot of a fresh install: ``python -m pgtap.snapshot [DSN]``.

    Without a DSN a throwaway cluster is started for it."""
    import errands

    if len(sys.argv) > 1:
        with psycopg.connect(sys.argv[1], autocommit=True) as conn:
            sys.stdout.write(snapshot(conn))
        return
    from pgtap.cluster import PgCluster

    cluster = PgCluster().start()
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            errands.install(conn)
            sys.stdout.write(snapshot(conn))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
