"""Errands: a PostgreSQL-native job queue for Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from errands._install import install, install_async, render_install_sql

__version__ = "0.1.0"

__all__ = ["__version__", "install", "install_async", "render_install_sql"]

_LAZY = {"install", "install_async", "render_install_sql"}


def __getattr__(name: str) -> Any:
    # Imported lazily so that `python -m errands._install` does not find the
    # module already imported by the package (runpy would warn about that).
    if name in _LAZY:
        from errands import _install

        return getattr(_install, name)
    raise AttributeError(f"module 'errands' has no attribute {name!r}")
