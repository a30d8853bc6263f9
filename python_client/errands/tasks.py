"""Task functions: the ``@task`` decorator and loading tasks into a :class:`TaskRegistry`.

A task is a function ``(payload, helpers)``, sync or async::

    from errands import task

    @task                       # identifier "send_welcome" (the function name)
    async def send_welcome(payload, helpers): ...

    @task("emails.send")        # an explicit identifier
    def send_email(payload, helpers): ...

    @task(timeout=30)           # fail a try that runs longer than 30 s
    async def fetch_feed(payload, helpers): ...

Async tasks run on the worker's event loop; sync tasks run in the worker's thread
pool (one thread per concurrency slot), so they may block.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast, overload

if TYPE_CHECKING:
    from errands.helpers import Helpers

TaskFunction = Callable[[Any, "Helpers"], Any]
"""``(payload, helpers) -> None | list | Awaitable[...]``."""

F = TypeVar("F", bound=Callable[..., Any])

_ATTR = "__errands_task__"
_TIMEOUT_ATTR = "__errands_timeout__"


@overload
def task(fn: F, /) -> F: ...
@overload
def task(identifier: str | None = None, /, *, timeout: float | None = None) -> Callable[[F], F]: ...
def task(arg: Any = None, /, *, timeout: float | None = None) -> Any:
    """Mark a function as a task: ``@task``, ``@task()``, ``@task("identifier")``,
    ``@task(timeout=30)`` or ``@task("identifier", timeout=30)``.

    The function is returned unchanged (it stays callable and testable); it gets an
    ``__errands_task__`` attribute holding its identifier (and ``__errands_timeout__``).

    ``timeout`` (seconds, > 0): a try running longer fails with ``TaskTimeout`` and is
    retried like any failure; an async task is cancelled, a sync task's thread is left
    to finish on its own (Python cannot stop a thread).  A job's own ``timeout``
    (``add_job(..., timeout=)``) overrides it.
    """
    if callable(arg):
        setattr(arg, _ATTR, arg.__name__)
        return arg
    if arg is not None and (not isinstance(arg, str) or not 1 <= len(arg) <= 128):
        raise ValueError(f"errands: a task identifier must be 1 to 128 characters, got {arg!r}")
    check_timeout(timeout)

    def decorator(fn: F) -> F:
        setattr(fn, _ATTR, arg if arg is not None else fn.__name__)
        setattr(fn, _TIMEOUT_ATTR, timeout)
        return fn

    return decorator


def check_timeout(timeout: float | None) -> None:
    """A task timeout is ``None`` or a positive number of seconds."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"errands: timeout must be a positive number of seconds, got {timeout!r}")


def task_timeout(fn: Callable[..., Any]) -> float | None:
    """The ``timeout`` given by ``@task``, or ``None``."""
    value = getattr(fn, _TIMEOUT_ATTR, None)
    return float(value) if isinstance(value, int | float) else None


def task_identifier(fn: Callable[..., Any]) -> str | None:
    """The identifier given by ``@task``, or ``None`` for an undecorated function."""
    value = getattr(fn, _ATTR, None)
    return value if isinstance(value, str) else None


def describe(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a function (for error messages)."""
    inner = fn.func if isinstance(fn, functools.partial) else fn
    module = getattr(inner, "__module__", None) or "?"
    name = getattr(inner, "__qualname__", None) or repr(inner)
    return f"{module}:{name}"


def is_async_callable(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (async def, partials of one, async __call__)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects
    return call is not None and not inspect.isfunction(fn) and inspect.iscoroutinefunction(call)


@dataclass(frozen=True)
class TaskInfo:
    """A registered task."""

    identifier: str
    fn: TaskFunction
    is_async: bool
    timeout: float | None = None
    """Seconds a try may run (``@task(timeout=...)``); ``None``: no limit."""


class TaskRegistry:
    """Task identifier -> task function; duplicate identifiers are refused."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskInfo] = {}

    def add(self, fn: TaskFunction, identifier: str | None = None) -> None:
        """Register ``fn`` under ``identifier`` (default: its ``@task`` identifier or name)."""
        if not callable(fn):
            raise TypeError(f"errands: a task must be callable, got {fn!r}")
        ident = identifier or task_identifier(fn) or getattr(fn, "__name__", None)
        if not ident:
            raise ValueError(f"errands: cannot tell the identifier of task {fn!r}")
        if not 1 <= len(ident) <= 128:
            raise ValueError(f"errands: a task identifier must be 1 to 128 characters: {ident!r}")
        existing = self._tasks.get(ident)
        if existing is not None:
            if existing.fn is fn:
                return
            raise ValueError(
                f"errands: duplicate task identifier {ident!r}: "
                f"{describe(existing.fn)} and {describe(fn)}"
            )
        self._tasks[ident] = TaskInfo(ident, fn, is_async_callable(fn), task_timeout(fn))

    def load(self, source: TaskSource) -> TaskRegistry:
        """Add the tasks of ``source`` (see :func:`load_tasks`); returns ``self``."""
        if isinstance(source, TaskRegistry):
            for info in source:
                self.add(info.fn, info.identifier)
        elif isinstance(source, Mapping):
            for ident, fn in source.items():
                self.add(fn, ident)
        elif isinstance(source, ModuleType):
            for fn in _module_tasks(source):
                self.add(fn)
        elif isinstance(source, Path) or (isinstance(source, str) and _looks_like_path(source)):
            for module in _import_path(Path(source)):
                for fn in _module_tasks(module):
                    self.add(fn)
        elif isinstance(source, str):
            for fn in _module_tasks(importlib.import_module(source)):
                self.add(fn)
        elif callable(source):
            self.add(source)
        elif isinstance(source, Iterable):
            for item in cast(Iterable[Any], source):
                self.load(item)
        else:
            raise TypeError(f"errands: cannot load tasks from {source!r}")
        return self

    def __getitem__(self, identifier: str) -> TaskInfo:
        return self._tasks[identifier]

    def get(self, identifier: str) -> TaskInfo | None:
        return self._tasks.get(identifier)

    def __contains__(self, identifier: object) -> bool:
        return identifier in self._tasks

    def __iter__(self) -> Iterator[TaskInfo]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    @property
    def identifiers(self) -> list[str]:
        """The task identifiers, in registration order."""
        return list(self._tasks)


TaskSource: TypeAlias = (
    TaskRegistry
    | Mapping[str, TaskFunction]
    | ModuleType
    | str
    | Path
    | TaskFunction
    | Iterable[TaskRegistry | TaskFunction | ModuleType | str | Path | Mapping[str, TaskFunction]]
)
"""What :func:`load_tasks` accepts."""


def load_tasks(source: TaskSource) -> TaskRegistry:
    """Build a :class:`TaskRegistry` from ``source``, which may be:

    * a dotted module path (``"myapp.tasks"``) or a module: its ``@task`` functions;
    * a ``.py`` file path: its ``@task`` functions;
    * a directory: the ``@task`` functions of its ``.py`` files (sorted; names starting
      with ``_`` are skipped; not recursive);
    * a task function (``@task``-decorated or not: then its ``__name__``);
    * a mapping ``{identifier: function}``; a :class:`TaskRegistry`;
    * an iterable of any of the above.

    Two different functions with the same identifier raise :class:`ValueError`
    naming both (``module:qualname``).
    """
    return TaskRegistry().load(source)


def _looks_like_path(text: str) -> bool:
    return text.endswith(".py") or "/" in text or "\\" in text or Path(text).is_dir()


def _module_tasks(module: ModuleType) -> list[TaskFunction]:
    """The ``@task`` functions found in ``module``'s namespace, deduplicated."""
    seen: list[TaskFunction] = []
    for value in vars(module).values():
        if callable(value) and task_identifier(value) is not None and value not in seen:
            seen.append(value)
    return seen


def _import_path(path: Path) -> list[ModuleType]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.py") if not p.name.startswith("_"))
        return [_import_file(p) for p in files]
    if path.suffix == ".py" and path.is_file():
        return [_import_file(path)]
    raise FileNotFoundError(f"errands: no task file or directory at {path}")


def _import_file(path: Path) -> ModuleType:
    """Import a ``.py`` file as module ``errands_tasks.<stem>_<hash>`` (once per path)."""
    resolved = path.resolve()
    name = f"errands_tasks.{resolved.stem}_{abs(hash(str(resolved))):x}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, resolved)
    if spec is None or spec.loader is None:
        raise ImportError(f"errands: cannot import task file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
