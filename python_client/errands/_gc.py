"""Garbage-collector settings for a process that exists to run a worker.

A worker allocates a few dozen container objects per job (the job row, its
asyncio task and coroutine, helpers, events) and holds hundreds of fetched jobs
at once.  With CPython's defaults a young-generation collection runs every 700
allocations, i.e. every few jobs, and every older-generation collection walks
every object of the process, most of them modules imported at start that live
as long as it does.  :func:`tune` moves what exists once the worker is set up
into the permanent generation (:func:`gc.freeze`: never walked again) and runs
young collections every 10,000 allocations instead.  Cycles are still
collected; they wait a little longer.

``errands worker`` calls it; :func:`errands.run` and :func:`errands.run_once`
call it when given ``gc_tuning=True`` (it changes the whole process).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def tune() -> None:
    """Freeze the objects alive now and raise the young-generation threshold.

    No ``gc.collect()`` first: it took ~19 ms of the worker's start for ~40
    unreachable objects (import-time cycles), which the freeze keeps."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
