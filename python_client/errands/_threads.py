"""A thread pool of daemon threads for sync tasks.

Unlike :class:`concurrent.futures.ThreadPoolExecutor`, whose threads are joined
at interpreter exit, a sync task that ignores the shutdown abort signal cannot
keep the process alive after the worker has given up on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Item = tuple["concurrent.futures.Future[Any]", Callable[[], Any]] | None


class DaemonThreadPool:
    """Runs callables on up to ``size`` daemon threads, started on demand."""

    def __init__(self, size: int, name: str = "errands-task") -> None:
        self._size = size
        self._name = name
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._shutdown = False

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run ``fn(*args)`` in a thread (with a copy of the current context);
        await the returned future.  Cancelling it abandons the call's result."""
        if self._shutdown:
            raise RuntimeError("errands: thread pool is shut down")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        context = contextvars.copy_context()
        self._queue.put((future, lambda: context.run(fn, *args)))
        with self._lock:
            if self._idle == 0 and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._idle -= 1
        return asyncio.wrap_future(future)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, call = item
            if future.set_running_or_notify_cancel():
                try:
                    result = call()
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)
            del item, future, call
            with self._lock:
                self._idle += 1

    def add_thread(self) -> None:
        """Allow one more thread: a call was abandoned (a timed-out sync task) and its
        thread stays busy until the call returns, so the other slots keep one each."""
        with self._lock:
            self._size += 1

    def shutdown(self) -> None:
        """Let idle threads exit; busy (abandoned) ones exit when their call returns."""
        self._shutdown = True
        for _ in self._threads:
            self._queue.put(None)
