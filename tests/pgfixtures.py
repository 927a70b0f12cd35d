"""PostgreSQL for the tests: one server per session (started from the installed binaries), a fresh database per use.

Tests that need it take an ``engine`` parameter (``sqlite``, ``postgresql``); the PostgreSQL cases carry the
``postgres`` marker and are skipped, with the reason, only when the server binaries are not installed.
"""

from __future__ import annotations

import itertools
import os
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.system import postgres
from bench.system.deploy import DB_ENV
from bench.system.postgres import ADMIN, DATABASES_FILE, PostgresServer, RunDatabases, admin_connect, running_server
from plumbing.topology import database_components, db_password_env
from shop.postgres import translate

_needs_server = pytest.mark.skipif(
    not postgres.available(), reason=f"no PostgreSQL server binaries: {postgres.INSTALL_HINT}"
)
ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=[pytest.mark.postgres, _needs_server]),
]
_serial = itertools.count(1)
_session: list[PostgresServer] = []


def server_session(base: Path) -> Iterator[PostgresServer]:
    with running_server(base / "pg", name="postgres-tests") as server:
        _session.append(server)
        try:
            yield server
        finally:
            _session.remove(server)


def current_engine() -> str:
    """The engine the running test asked for (``ARCHBENCH_DB``, as ``deploy`` reads it): sqlite or postgresql."""
    return "postgresql" if os.environ.get(DB_ENV, "sqlite").startswith("postgres") else "sqlite"


def inprocess_databases(topology: str, run_dir: Path) -> dict[str, str]:
    """Fresh databases on the session's server for an in-process ``topology`` (recorded in ``run_dir`` for the
    audit); their passwords go to the environment, where the components look for them. Returns their URLs."""
    if not _session:
        raise RuntimeError("no PostgreSQL server: the test must request the pg_server fixture")
    server, databases = _session[0], RunDatabases()
    for component in database_components(topology):
        url, password = new_database(server, f"{component}_")
        os.environ[db_password_env(component)] = password
        databases.urls[component] = url
        dbname = url.rsplit("/", 1)[1]
        databases.admin[component] = {
            "host": str(server.socket_dir),
            "port": server.port,
            "user": ADMIN,
            "dbname": dbname,
        }
    databases.write(run_dir)
    return databases.urls


def use_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, engine: str) -> str:
    """Run the requesting test on ``engine``: deployments and in-process shops follow ``ARCHBENCH_DB``."""
    if engine == "postgresql":
        request.getfixturevalue("pg_server")
        monkeypatch.setenv(DB_ENV, "postgres")
    else:
        monkeypatch.delenv(DB_ENV, raising=False)
    return engine


def new_database(server: PostgresServer, prefix: str = "t") -> tuple[str, str]:
    """A fresh database and its role; returns its URL and the role's password."""
    name = f"{prefix}{next(_serial)}"
    password = secrets.token_urlsafe(16)
    return server.create_database(name, f"role_{name}", password), password


def read_rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    """Rows of ``sql`` (SQLite's dialect) over the database a run keeps as ``RUN_DIR/COMPONENT.db``: that SQLite file,
    or, when the run is on PostgreSQL, the component's database."""
    if (db.parent / DATABASES_FILE).exists():
        with admin_connect(db.parent, db.stem) as conn:
            return [tuple(row) for row in conn.execute(translate(sql), args or None).fetchall()]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()
