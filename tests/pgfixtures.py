"""PostgreSQL for the tests: one server per session (started from the installed binaries), a fresh database per use.

Tests that need it take an ``engine`` parameter (``sqlite``, ``postgresql``); the PostgreSQL cases carry the
``postgres`` marker and are skipped, with the reason, only when the server binaries are not installed.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.system import postgres
from bench.system.postgres import PostgresServer, running_server

_needs_server = pytest.mark.skipif(
    not postgres.available(), reason=f"no PostgreSQL server binaries: {postgres.INSTALL_HINT}"
)
ENGINES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=[pytest.mark.postgres, _needs_server]),
]
_serial = itertools.count(1)


def server_session(base: Path) -> Iterator[PostgresServer]:
    with running_server(base / "pg", name="postgres-tests") as server:
        yield server


def new_database(server: PostgresServer, prefix: str = "t") -> tuple[str, str]:
    """A fresh database and its role; returns its URL and the role's password."""
    name = f"{prefix}{next(_serial)}"
    password = secrets.token_urlsafe(16)
    return server.create_database(name, f"role_{name}", password), password
