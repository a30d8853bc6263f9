"""The SQL API under real concurrency: several connections, each in its own thread.

* named queues stay serial when sessions fetch at the same moment (and in batches);
* add_job with a job key racing a fetch of that key never returns a NULL row
  (Graphile's #580);
* NOTIFY "errands:jobs": one notification per statement/transaction that adds
  runnable jobs, none for future-only jobs.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

FETCH = "SELECT id, queue_name FROM errands.get_jobs(%s, %s::text[], %s)"
COMPLETE = "SELECT errands.worker_complete_jobs(%s, %s::bigint[])"
THREAD_TIMEOUT = 60.0


def run_threads(
    targets: list[Callable[[], None]], barrier: threading.Barrier | None = None
) -> None:
    """Run each target in its own thread; re-raise the first exception any of them raised.

    A failing thread aborts ``barrier`` so that the others do not wait for it forever.
    """
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:
                errors.append(exc)
                if barrier is not None:
                    barrier.abort()

        return run

    threads = [threading.Thread(target=wrap(t), daemon=True) for t in targets]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + THREAD_TIMEOUT
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if barrier is not None and any(t.is_alive() for t in threads):
        barrier.abort()
    # A BrokenBarrierError is only a consequence; report the real cause first.
    errors.sort(key=lambda e: isinstance(e, threading.BrokenBarrierError))
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "threads did not finish in time"


def add_queue_jobs(
    conn: psycopg.Connection[Any], task: str, queue: str | None, count: int
) -> list[int]:
    """Add ``count`` jobs (same priority and run_at) in one statement; ids in queue order."""
    rows = conn.execute(
        "SELECT (errands.add_job(%s, json_build_object('n', g), %s)).id"
        " FROM generate_series(1, %s) g ORDER BY g",
        (task, queue, count),
    ).fetchall()
    return [r[0] for r in rows]


# --- named queues ----------------------------------------------------------------------


def test_two_sessions_fetching_one_queue_in_lockstep(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """Two sessions fetch a batch from the same queue at the same moment, round after round.

    After every round at most one job of the queue is locked (exactly one was handed
    out, to one of the two), the queue row is locked by that session, and over all
    rounds the jobs come out one at a time in queue order.
    """
    rounds = 40
    job_ids = add_queue_jobs(conn, "t", "serial", rounds)
    barrier = threading.Barrier(3, timeout=30)
    fetched: list[list[list[tuple[int, str]]]] = [[[] for _ in range(rounds)] for _ in range(2)]
    checks: list[tuple[int, str | None, list[tuple[int, str]]]] = []

    def session(index: int) -> None:
        worker = f"worker-{index}"
        with psycopg.connect(db, autocommit=True) as c:
            for r in range(rounds):
                barrier.wait()  # go: both fetch at once
                rows = c.execute(FETCH, (worker, ["t"], 10)).fetchall()
                fetched[index][r] = rows
                barrier.wait()  # fetched
                barrier.wait()  # checked
                if rows:
                    done = c.execute(COMPLETE, (worker, [row[0] for row in rows])).fetchall()
                    assert sorted(d[0] for d in done) == sorted(row[0] for row in rows)

    def referee() -> None:
        for _ in range(rounds):
            barrier.wait()
            barrier.wait()
            locked = conn.execute(
                "SELECT j.id, j.locked_by FROM errands._jobs j"
                " JOIN errands._queues q ON q.id = j.job_queue_id"
                " WHERE q.queue_name = 'serial' AND j.locked_at IS NOT NULL ORDER BY j.id"
            ).fetchall()
            queue_lock = conn.execute(
                "SELECT locked_by FROM errands._queues WHERE queue_name = 'serial'"
            ).fetchone()
            assert queue_lock is not None
            checks.append((len(locked), queue_lock[0], locked))
            barrier.wait()

    run_threads([lambda: session(0), lambda: session(1), referee], barrier)

    problems = []
    order = []
    for r in range(rounds):
        got = fetched[0][r] + fetched[1][r]
        holder = "worker-0" if fetched[0][r] else "worker-1"
        n_locked, queue_locked_by, locked = checks[r]
        if len(got) != 1 or n_locked != 1 or queue_locked_by != holder or locked[0][1] != holder:
            problems.append(
                f"round {r}: fetched {fetched[0][r]} / {fetched[1][r]}, locked {locked}, "
                f"queue locked by {queue_locked_by}"
            )
        order.extend(row[0] for row in got)
    assert not problems, "\n".join(problems)
    assert order == job_ids, "the queue's jobs ran one at a time, in queue order, each once"
    assert conn.execute("SELECT count(*) FROM errands._jobs").fetchone() == (0,)


def test_four_workers_two_queues_fetch_complete_loops(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """4 threads run fetch (batches of 5) -> work -> complete loops over 200 jobs in 2 queues.

    From the returned rows alone: no two jobs of one queue are ever held at once (the
    client-side hold, from fetch returned to complete called, lies inside the database
    lock, so any overlap seen is a real one), each queue runs in order, every job runs
    exactly once.
    """
    expected = {q: add_queue_jobs(conn, "t", q, 100) for q in ("qa", "qb")}
    lock = threading.Lock()
    held: dict[str, set[int]] = defaultdict(set)
    ran: Counter[int] = Counter()
    sequence: dict[str, list[int]] = defaultdict(list)
    violations: list[str] = []
    batch_sizes: Counter[int] = Counter()

    def loop(index: int) -> None:
        worker = f"worker-{index}"
        rng = random.Random(index)
        deadline = time.monotonic() + THREAD_TIMEOUT - 5
        with psycopg.connect(db, autocommit=True) as c:
            while time.monotonic() < deadline:
                rows = c.execute(FETCH, (worker, ["t"], 5)).fetchall()
                if not rows:
                    left = c.execute("SELECT count(*) FROM errands._jobs").fetchone()
                    if left == (0,):
                        return
                    time.sleep(0.0005)
                    continue
                with lock:
                    batch_sizes[len(rows)] += 1
                    for job_id, queue in rows:
                        if held[queue]:
                            violations.append(
                                f"{worker} got {job_id} of {queue} while {held[queue]} held"
                            )
                        held[queue].add(job_id)
                        ran[job_id] += 1
                        sequence[queue].append(job_id)
                time.sleep(rng.random() * 0.002)  # "work"
                ids = [job_id for job_id, _ in rows]
                with lock:
                    for job_id, queue in rows:
                        held[queue].discard(job_id)
                done = c.execute(COMPLETE, (worker, ids)).fetchall()
                assert sorted(d[0] for d in done) == sorted(ids), f"{worker} lost a lock"
            raise AssertionError(f"{worker}: jobs left at the deadline")

    run_threads([lambda i=i: loop(i) for i in range(4)])

    assert not violations, "\n".join(violations[:20])
    all_ids = expected["qa"] + expected["qb"]
    assert sorted(ran) == sorted(all_ids)
    assert set(ran.values()) == {1}, "every job ran exactly once"
    assert dict(sequence) == expected, "each queue ran its jobs in order"
    assert conn.execute("SELECT count(*) FROM errands._jobs").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM errands._queues WHERE locked_at IS NOT NULL OR locked_by IS NOT NULL"
    ).fetchone() == (0,)
    assert set(batch_sizes) <= {1, 2}, "a batch holds at most one job per queue"


def test_queue_stays_serial_while_new_heads_become_due(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """4 threads fetch from a queue whose head keeps changing as time passes.

    Job k of 300 becomes due k * 0.5 ms after the start, with priority -k: each job
    that becomes due jumps to the head. Two fetches whose now() differ therefore see
    different heads; only the queue row lock (taken and rechecked in the fetch) keeps
    them from running two of the queue's jobs at once.
    """
    count = 300
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT (errands.add_job('t', '{}', 'hot',"
            " clock_timestamp() + interval '200 ms' + k * interval '0.5 ms', priority => -k)).id"
            " FROM generate_series(1, %s) k ORDER BY k",
            (count,),
        ).fetchall()
    ]
    lock = threading.Lock()
    held: set[int] = set()
    ran: Counter[int] = Counter()
    violations: list[str] = []

    def loop(index: int) -> None:
        worker = f"worker-{index}"
        deadline = time.monotonic() + THREAD_TIMEOUT - 5
        with psycopg.connect(db, autocommit=True) as c:
            while time.monotonic() < deadline:
                rows = c.execute(FETCH, (worker, ["t"], 3)).fetchall()
                if not rows:
                    if c.execute("SELECT count(*) FROM errands._jobs").fetchone() == (0,):
                        return
                    continue
                with lock:
                    for job_id, _ in rows:
                        if held:
                            violations.append(f"{worker} got {job_id} while {held} held")
                        held.add(job_id)
                        ran[job_id] += 1
                time.sleep(0.0005)  # "work"
                with lock:
                    held.difference_update(job_id for job_id, _ in rows)
                job_ids = [job_id for job_id, _ in rows]
                done = c.execute(COMPLETE, (worker, job_ids)).fetchall()
                assert sorted(d[0] for d in done) == sorted(job_ids), f"{worker} lost a lock"
            raise AssertionError(f"{worker}: jobs left at the deadline")

    run_threads([lambda i=i: loop(i) for i in range(4)])

    assert not violations, "\n".join(violations[:20])
    assert sorted(ran) == ids
    assert set(ran.values()) == {1}, "every job ran exactly once"


# --- job keys: add_job racing a fetch (#580) ------------------------------------------


def test_add_job_with_key_racing_fetch_never_returns_null(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """One thread keeps replacing the job with key 'k'; another keeps fetching and completing it.

    Every add_job returns a real row with its own payload; it either updated the pending
    job (same id as the previous add, revision + 1) or, when the fetcher had taken that
    job, inserted a new one (new id, revision 0).
    """
    adds = 300
    results: list[dict[str, Any] | None] = []
    fetched: list[tuple[int, Any]] = []
    adder_done = threading.Event()

    def adder() -> None:
        try:
            with psycopg.connect(db, autocommit=True, row_factory=dict_row) as c:
                for i in range(adds):
                    row = c.execute(
                        "SELECT * FROM errands.add_job('t580', %s::json, job_key => 'k')",
                        (json.dumps({"i": i}),),
                    ).fetchone()
                    results.append(row)
        finally:
            adder_done.set()

    def fetcher() -> None:
        rng = random.Random(580)
        with psycopg.connect(db, autocommit=True) as c:
            while True:
                finished = adder_done.is_set()
                rows = c.execute(
                    "SELECT id, payload FROM errands.get_jobs('fetcher', '{t580}', 1)"
                ).fetchall()
                for job_id, payload in rows:
                    fetched.append((job_id, payload))
                    if rng.random() < 0.5:
                        time.sleep(rng.random() * 0.001)
                    done = c.execute(COMPLETE, ("fetcher", [job_id])).fetchall()
                    assert done == [(job_id,)]
                if finished and not rows:
                    return
                if not rows:
                    time.sleep(rng.random() * 0.0005)

    run_threads([adder, fetcher])

    assert len(results) == adds
    fetched_ids = {job_id for job_id, _ in fetched}
    assert len(fetched_ids) == len(fetched), "no job was fetched twice"
    inserted = updated = 0
    previous: dict[str, Any] | None = None
    for i, row in enumerate(results):
        assert row is not None and row["id"] is not None, (
            f"add_job call {i} returned an all-NULL row"
        )
        assert (row["key"], row["task_identifier"], row["payload"]) == ("k", "t580", {"i": i}), row
        assert (row["attempts"], row["locked_by"], row["last_error"]) == (0, None, None), row
        if previous is not None and row["id"] == previous["id"]:
            assert row["revision"] == previous["revision"] + 1, (i, row)
            updated += 1
        else:
            assert row["revision"] == 0, (i, row)
            assert previous is None or previous["id"] in fetched_ids, (
                f"add_job call {i} inserted a new job though job {previous['id']} was never fetched"
            )
            inserted += 1
        previous = row
    assert inserted == len(fetched_ids), "every inserted job was fetched exactly once"
    assert updated + inserted == adds
    assert inserted > 1 and updated > 0, f"the race was not exercised: {inserted=} {updated=}"
    assert conn.execute("SELECT count(*) FROM errands._jobs").fetchone() == (0,)


def test_two_adders_and_a_fetcher_on_one_key(db: str) -> None:
    """Two sessions replace the job with key 'k2' while a third fetches and completes it.

    Concurrent inserts of the key collide; add_jobs must retry until its own write
    lands: every call returns a non-NULL row carrying its own payload, and nothing
    is lost (each returned job is either fetched later or still pending at the end).
    """
    per_adder = 200
    results: dict[int, list[dict[str, Any] | None]] = {0: [], 1: []}
    fetched: dict[int, Any] = {}
    adders_left = threading.Semaphore(0)

    def adder(index: int) -> None:
        try:
            with psycopg.connect(db, autocommit=True, row_factory=dict_row) as c:
                for i in range(per_adder):
                    results[index].append(
                        c.execute(
                            "SELECT * FROM errands.add_job('tk2', %s::json, job_key => 'k2')",
                            (json.dumps({"adder": index, "i": i}),),
                        ).fetchone()
                    )
        finally:
            adders_left.release()

    def fetcher() -> None:
        finished = 0
        with psycopg.connect(db, autocommit=True) as c:
            while finished < 2:
                if adders_left.acquire(blocking=False):
                    finished += 1
                for job_id, payload in c.execute(
                    "SELECT id, payload FROM errands.get_jobs('fetcher', '{tk2}', 1)"
                ).fetchall():
                    fetched[job_id] = payload
                    assert c.execute(COMPLETE, ("fetcher", [job_id])).fetchall() == [(job_id,)]

    run_threads([lambda: adder(0), lambda: adder(1), fetcher])

    with psycopg.connect(db) as c:
        pending = dict(
            c.execute("SELECT id, payload FROM errands._jobs WHERE key = 'k2'").fetchall()
        )
    assert len(pending) <= 1
    for index, rows in results.items():
        assert len(rows) == per_adder
        for i, row in enumerate(rows):
            assert row is not None and row["id"] is not None, f"adder {index} call {i}: NULL row"
            assert row["payload"] == {"adder": index, "i": i}, f"adder {index} call {i} got {row}"
            assert row["key"] == "k2" and row["attempts"] == 0 and row["locked_by"] is None, row
            assert row["id"] in fetched or row["id"] in pending, f"job {row['id']} vanished"


# --- NOTIFY ----------------------------------------------------------------------------


@pytest.fixture
def listener(db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db, autocommit=True) as c:
        c.execute('LISTEN "errands:jobs"')
        yield c


def test_notify_once_per_statement_or_transaction(
    conn: psycopg.Connection[Any], listener: psycopg.Connection[Any]
) -> None:
    sentinels = iter(range(1_000_000))

    @contextmanager
    def notifications() -> Iterator[list[psycopg.Notify]]:
        """Collect the notifications caused by the block.

        Afterwards a sentinel is sent in its own transaction; notifications arrive in
        commit order, so everything before the sentinel came from the block.
        """
        got: list[psycopg.Notify] = []
        yield got
        token = f"sentinel-{next(sentinels)}"
        conn.execute("SELECT pg_notify('errands:jobs', %s)", (token,))
        for n in listener.notifies(timeout=10):
            if n.payload == token:
                break
            got.append(n)
        else:
            raise AssertionError(f"{token} never arrived")

    with notifications() as got:
        pass
    assert got == [], "nothing before the first test"

    with notifications() as got:
        rows = conn.execute(
            "SELECT id FROM errands.add_jobs(ARRAY(SELECT ROW('n', json_build_object('g', g),"
            " NULL, NULL, NULL, NULL, NULL, NULL)::errands.job_spec"
            " FROM generate_series(1, 100) g))"
        ).fetchall()
        assert len(rows) == 100
    assert [n.channel for n in got] == ["errands:jobs"], "add_jobs of 100 due jobs notifies once"

    with notifications() as got:
        conn.execute("SELECT errands.add_job('n', run_at => now() + interval '1 hour')")
    assert got == [], "a future job does not notify"

    with notifications() as got:
        conn.execute(
            "SELECT errands.add_jobs(ARRAY(SELECT ROW('n', NULL, NULL,"
            " now() + g * interval '1 minute', NULL, NULL, NULL, NULL)::errands.job_spec"
            " FROM generate_series(1, 10) g))"
        )
    assert got == [], "add_jobs of future jobs only does not notify"

    with notifications() as got:
        conn.execute("SELECT errands.add_job('n')")
    assert [n.channel for n in got] == ["errands:jobs"], "add_job of a due job notifies once"

    with notifications() as got, conn.transaction():
        for _ in range(50):
            conn.execute("SELECT errands.add_job('n')")
    assert [n.channel for n in got] == ["errands:jobs"], (
        "50 add_job calls in one transaction notify once"
    )

    with notifications() as got, conn.transaction(force_rollback=True):
        conn.execute("SELECT errands.add_job('n')")
    assert got == [], "a rolled-back add_job does not notify"

    assert conn.execute("SELECT count(*) FROM errands._jobs").fetchone() == (100 + 1 + 10 + 1 + 50,)


# --- queue heads (32_queue_heads.sql) under concurrency ---------------------------------

WRONG_HEADS = """
SELECT coalesce(array_agg(q.queue_name ORDER BY q.queue_name), '{}')
FROM errands._queues q CROSS JOIN LATERAL errands._queue_head(q.id) h
WHERE (q.head_priority, q.head_run_at, q.head_id) IS DISTINCT FROM (h.priority, h.run_at, h.id)
"""


def test_queue_heads_under_concurrent_producers_and_workers(
    db: str, conn: psycopg.Connection[Any]
) -> None:
    """Two producers add batches of one job per queue to the same 20 serial queues, in
    opposite queue orders (so each batch creates or displaces several heads at once), a
    third adds jobs one by one, while two workers fetch and complete, snooze or hand back
    what they got. No statement fails (no deadlock), every job runs (none is stranded
    behind a stale head), no queue ever runs two jobs at once, and at the end every
    queue's head is the one chosen afresh."""
    queues = [f"hq{i:02d}" for i in range(20)]
    rounds = 20
    total = 2 * rounds * len(queues) + 100
    running: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    guard = threading.Lock()
    done = threading.Event()

    def producer(order: list[str]) -> None:
        with psycopg.connect(db, autocommit=True) as c:
            for r in range(rounds):
                c.execute(
                    "SELECT count(*) FROM errands.add_jobs(ARRAY(SELECT ROW('t',"
                    " json_build_object('r', %s::int), q, NULL, NULL, NULL,"
                    " (random() * 3)::int, NULL)::errands.job_spec"
                    " FROM unnest(%s::text[]) WITH ORDINALITY u(q, o) ORDER BY o))",
                    (r, order),
                )

    def one_by_one() -> None:
        with psycopg.connect(db, autocommit=True) as c:
            for i in range(100):
                c.execute(
                    "SELECT errands.add_job('t', '{}', %s, priority => %s)",
                    (queues[i % len(queues)], -(i % 2)),
                )

    def worker(name: str) -> None:
        rng = random.Random(name)
        with psycopg.connect(db, autocommit=True) as c:
            while not done.is_set():
                rows = c.execute(FETCH, (name, ["t"], 5)).fetchall()
                if not rows:
                    time.sleep(0.005)
                    continue
                with guard:
                    for _, queue in rows:
                        running[queue] += 1
                        if running[queue] > 1:
                            overlaps.append(queue)
                ids = [row[0] for row in rows]
                luck = rng.random()
                # Not running any more from here on (the database still holds the
                # jobs until the statement below commits: the count errs low).
                with guard:
                    for _, queue in rows:
                        running[queue] -= 1
                if luck < 0.15:
                    c.execute(
                        "SELECT errands.worker_snooze_jobs(%s, %s::bigint[],"
                        " array_fill(interval '0', ARRAY[%s::int]))",
                        (name, ids, len(ids)),
                    )
                elif luck < 0.25:
                    c.execute("SELECT errands.worker_return_jobs(%s, %s::bigint[])", (name, ids))
                else:
                    c.execute(COMPLETE, (name, ids))

    def watcher() -> None:
        with psycopg.connect(db, autocommit=True) as c:
            deadline = time.monotonic() + THREAD_TIMEOUT - 5
            added = 0
            while time.monotonic() < deadline:
                added = c.execute("SELECT count(*) FROM errands._jobs").fetchone()[0]  # type: ignore[index]
                if added == 0 and producers_done.is_set():
                    break
                time.sleep(0.05)
            done.set()

    producers_done = threading.Event()

    def producers() -> None:
        try:
            run_threads([lambda: producer(queues), lambda: producer(queues[::-1]), one_by_one])
        finally:
            producers_done.set()

    run_threads([producers, lambda: worker("w-a"), lambda: worker("w-b"), watcher])

    assert not overlaps, f"queues that ran two jobs at once: {sorted(set(overlaps))}"
    left = conn.execute("SELECT count(*) FROM errands._jobs").fetchone()
    assert left == (0,), f"{left[0] if left else '?'} of {total} jobs never ran (stranded)"
    assert conn.execute(WRONG_HEADS).fetchone() == ([],)
