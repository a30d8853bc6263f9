"""The chaos test's options, worker slots, kills and report (chaos/run.py)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

#: The concurrency limit of the chaos run's limited queues ('chaos-lim-*').
LIMITED_CONCURRENCY = 3


@dataclass
class Options:
    jobs: int = 50_000
    workers: int = 4
    concurrency: int = 8
    kill_interval: tuple[float, float] = (2.0, 3.0)
    max_kills: int | None = None
    pg_restarts: int = 2
    pg_down: float = 1.0
    terminate_interval: float = 5.0
    terminate_count: int = 2
    queues: int = 50
    max_ms: int = 20
    chunk: int = 2000
    netns: str = "auto"  # auto | on | off
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 8.0
    timeout: float = 900.0
    seed: int | None = None
    keep_logs: bool = False
    timing_checks: bool = True
    """Whether the rescue delay targets count for the verdict (not in make test)."""
    extra_sql: str | None = None
    """A SQL file run after installing errands (to try a schema change under chaos)."""
    crash: bool = False
    """Restart PostgreSQL as a crash would (immediate stop: WAL not yet written is
    lost), the cluster committing synchronously as a real one (the worker's fetch
    of plain jobs commits without waiting for its flush, so it may be lost)."""


@dataclass
class Slot:
    index: int
    netns: str | None = None
    dsn: str = ""
    gen: int = 0
    worker_id: str = ""
    proc: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    log: TextIO | None = None
    protected: bool = False  # not killed (the cut host)
    ready: bool = False

    def is_ready(self, logdir: Path) -> bool:
        """Whether this generation printed ``ready`` (it listens and is registered)."""
        if not self.ready:
            text = (logdir / f"worker-{self.index}.log").read_text(errors="replace")
            self.ready = f"ready {self.worker_id}\n" in text
        return self.ready


@dataclass
class Kill:
    at: float
    worker_id: str
    locked: dict[int, int]  # job id -> attempt at the kill
    unlocked_after: float | None = None  # seconds until no job was locked by it


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.lines.append(text)
        print(text, flush=True)

    def check(self, ok: bool, text: str) -> None:
        self.say(("PASS  " if ok else "FAIL  ") + text)
        if not ok:
            self.failures.append(text)
