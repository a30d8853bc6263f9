"""Values that must agree with the SQL side, each defined once for Python.

The SQL side holds its own copy of each (named below);
``tests_py/test_worker_options.py`` compares the two on a live database, so neither
can drift alone.  The stale-lock age (4 hours) is not here: the worker's sweep calls
``errands.reset_locked()`` with its SQL default, so only SQL holds it.  Nor is the
worker's advisory-lock key: the worker takes its lock with
``errands.try_lock_worker()``, so only SQL computes it.
"""

from __future__ import annotations

from typing import Final

RESCUE_GRACE: Final = 1.5
"""Seconds: ``rescue_workers`` spares a worker without its advisory lock whose
heartbeat is fresher than this (its LISTEN connection is reconnecting).  SQL:
``errands._rescue_grace()``, which ``errands.rescue_workers`` reads."""

LOCKLESS_HEARTBEAT_INTERVAL: Final = 0.25
"""Seconds between heartbeats while the worker's advisory lock is lost: several
beats per :data:`RESCUE_GRACE`, so one slow beat does not get it declared dead."""

assert LOCKLESS_HEARTBEAT_INTERVAL * 4 <= RESCUE_GRACE
