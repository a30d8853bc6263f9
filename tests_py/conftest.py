"""Fixtures for the Python tests.

Session-scoped ones come from the ``pgtap.pytest_pgtap`` plugin (registered in the
rootdir conftest): ``pg_cluster``, ``errands_template``, ``errands_pgtap_template``,
``database_factory``.  Function-scoped ones here:

* ``db``: DSN of a fresh database copied from ``errands_template`` (dropped afterwards);
* ``empty_db``: DSN of a fresh, empty database (errands not installed);
* ``conn``: autocommit psycopg connection to ``db``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import psycopg
import pytest

DatabaseFactory = Callable[..., AbstractContextManager[str]]


@pytest.fixture
def db(database_factory: DatabaseFactory, errands_template: str) -> Iterator[str]:
    with database_factory(template=errands_template) as dsn:
        yield dsn


@pytest.fixture
def empty_db(database_factory: DatabaseFactory) -> Iterator[str]:
    with database_factory(prefix="empty") as dsn:
        yield dsn


@pytest.fixture
def conn(db: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db, autocommit=True) as connection:
        yield connection
