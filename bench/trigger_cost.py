"""Cost of errands.job_trigger on a 10,000-row INSERT and UPDATE (docs/triggers.md).

    .venv/bin/python bench/trigger_cost.py postgresql://HOST/DB [--rows 10000] [--runs 5]

The database must have errands installed (and no other jobs: the script counts
them). Each case runs in its own transaction, rolled back after a VACUUM, on a
table with 10,000 rows; prints the median time in ms as a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg

SETUP = """
DROP TABLE IF EXISTS trigger_cost;
CREATE TABLE trigger_cost (id int PRIMARY KEY, user_id int NOT NULL, name text NOT NULL);
INSERT INTO trigger_cost SELECT g, g % 1000, 'row ' || g FROM generate_series(1, {rows}) g;
VACUUM ANALYZE trigger_cost;
"""

TRIGGERS = {
    "no trigger": "",
    "row trigger (one add_job per row)": (
        "CREATE TRIGGER t AFTER {event} ON trigger_cost FOR EACH ROW "
        "EXECUTE FUNCTION errands.job_trigger('cost_task')"
    ),
    "statement trigger, one job per row (add_jobs)": (
        "CREATE TRIGGER t AFTER {event} ON trigger_cost REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('cost_task')"
    ),
    "statement trigger, one job per row, job_key 'u:{id}'": (
        "CREATE TRIGGER t AFTER {event} ON trigger_cost REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('cost_task', 'job_key=u:{{id}}')"
    ),
    "statement trigger, one job per row, old row paired by primary key": (
        "CREATE TRIGGER t AFTER {event} ON trigger_cost "
        "REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('cost_task')"
    ),
    "statement trigger, batch=true (one job)": (
        "CREATE TRIGGER t AFTER {event} ON trigger_cost REFERENCING NEW TABLE AS new_rows "
        "FOR EACH STATEMENT EXECUTE FUNCTION errands.job_trigger('cost_task', 'batch=true')"
    ),
}

STATEMENTS = {
    "INSERT": "INSERT INTO trigger_cost SELECT g, g % 1000, 'row ' || g "
    "FROM generate_series({rows} + 1, 2 * {rows}) g",
    "UPDATE": "UPDATE trigger_cost SET name = name || '!'",
}


def measure(conn: psycopg.Connection[tuple[object, ...]], rows: int, runs: int) -> None:
    print(f"| statement ({rows:,} rows) | trigger | median ms | jobs |")
    print("|---|---|---:|---:|")
    for event, statement in STATEMENTS.items():
        for label, trigger in TRIGGERS.items():
            if "OLD TABLE" in trigger and event != "UPDATE":
                continue  # an INSERT has no old rows
            times = []
            jobs = 0
            for _ in range(runs):
                # Each run starts from clean tables: rolled-back rows of the runs
                # before would otherwise bloat errands._jobs and its key index.
                conn.execute("VACUUM errands._jobs, trigger_cost")
                with conn.transaction(force_rollback=True):
                    if trigger:
                        conn.execute(trigger.format(event=event))
                    start = time.perf_counter()
                    conn.execute(statement.format(rows=rows))
                    times.append((time.perf_counter() - start) * 1000)
                    row = conn.execute("SELECT count(*) FROM errands._jobs").fetchone()
                    jobs = int(str(row[0])) if row else 0
            print(f"| {event} | {label} | {statistics.median(times):.0f} | {jobs:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dsn")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        for statement in SETUP.format(rows=args.rows).split(";"):
            if statement.strip():
                conn.execute(statement)
        measure(conn, args.rows, args.runs)
        conn.execute("DROP TABLE trigger_cost")


if __name__ == "__main__":
    main()
