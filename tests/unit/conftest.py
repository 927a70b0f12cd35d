"""Fixtures for the domain tests: fresh databases, opened exactly as the deployments open them.

``open_db`` gives SQLite files in ``tmp_path``; the contexts' fixtures (``users_conn`` .. ``shop_conn``) run each test
on both engines, SQLite and PostgreSQL (a fresh database on the session's server), through ``engine_db``.

Each context gets a database holding only its own tables, as a microservice does, which also shows that no context
reaches into another's tables. ``shop_conn`` holds all of them, as the monolith does.

The small catalog seeded by ``inventory_conn`` and ``shop_conn`` (ids 1..3 on an empty table):

    id  sku    price_cents  stock
    1   MUG          250     10
    2   LAMP        1999      3
    3   PEN           99      1
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from shop import inventory, notifications, orders, payments, users
from shop.connection import Connection
from shop.db import UnitOfWork, connect, connect_sqlite, create_schema
from shop.inventory import Inventory
from tests.pgfixtures import ENGINES, new_database

OpenDb = Callable[..., sqlite3.Connection]
OpenAny = Callable[..., Connection]

ALL_SCHEMAS = (users.SCHEMA, payments.SCHEMA, inventory.SCHEMA, notifications.SCHEMA, orders.SCHEMA)
SMALL_CATALOG = (("MUG", "Mug", 250, 10), ("LAMP", "Lamp", 1999, 3), ("PEN", "Pen", 99, 1))


C = TypeVar("C", bound=Connection)


def opening(connect_named: Callable[[str], C]) -> Iterator[Callable[..., C]]:
    """``open_(*schemas, name="shop.db")``: ``connect_named(name)`` with those schemas; every connection it made is
    closed when the fixture that yields from this ends."""
    opened: list[C] = []

    def open_(*schemas: str, name: str = "shop.db") -> C:
        conn = connect_named(name)
        opened.append(conn)
        create_schema(conn, *schemas)
        return conn

    yield open_
    for conn in opened:
        conn.close()


@pytest.fixture
def open_db(tmp_path: Path) -> Iterator[OpenDb]:
    """``open_db(*schemas, name="shop.db")``: a connection to ``tmp_path / name`` with those schemas.

    Opening the same name twice gives a second, independent connection to the same file. All are closed at teardown.
    """
    yield from opening(lambda name: connect_sqlite(tmp_path / name))


@pytest.fixture(params=ENGINES)
def engine_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenAny]:
    """``engine_db(*schemas, name="shop.db")``, as ``open_db``, on SQLite or on PostgreSQL (one database per name)."""
    databases: dict[str, tuple[str, str]] = {}

    def connect_named(name: str) -> Connection:
        if request.param == "sqlite":
            return connect(tmp_path / name)
        if name not in databases:
            databases[name] = new_database(request.getfixturevalue("pg_server"), "unit")
        url, password = databases[name]
        return connect(url, password=password)

    yield from opening(connect_named)


def _seed_small_catalog(conn: Connection) -> None:
    with UnitOfWork(conn) as uow:
        Inventory(conn).seed(SMALL_CATALOG)
        uow.commit()


@pytest.fixture
def users_conn(engine_db: OpenAny) -> Connection:
    return engine_db(users.SCHEMA)


@pytest.fixture
def payments_conn(engine_db: OpenAny) -> Connection:
    return engine_db(payments.SCHEMA)


@pytest.fixture
def notifications_conn(engine_db: OpenAny) -> Connection:
    return engine_db(notifications.SCHEMA)


@pytest.fixture
def orders_conn(engine_db: OpenAny) -> Connection:
    return engine_db(orders.SCHEMA)


@pytest.fixture
def inventory_conn(engine_db: OpenAny) -> Connection:
    """The inventory tables with the small catalog of the module docstring."""
    conn = engine_db(inventory.SCHEMA)
    _seed_small_catalog(conn)
    return conn


@pytest.fixture
def shop_conn(engine_db: OpenAny) -> Connection:
    """Every context's tables in one file, as in the monolith, with the small catalog and no users."""
    conn = engine_db(*ALL_SCHEMAS)
    _seed_small_catalog(conn)
    return conn
