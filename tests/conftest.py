from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bench.system.postgres import PostgresServer
from tests.pgfixtures import ENGINES, server_session, use_engine
from tests.shopfixtures import PG_VARIANTS, VARIANTS, Deployments, Shop, session_deployments, shop_for


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (tests that take it are marked ``postgres``)."""
    yield from server_session(tmp_path_factory.mktemp("postgres"))


@pytest.fixture(scope="session")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployments]:
    yield from session_deployments(tmp_path_factory.mktemp("deployments"))


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test runs once on SQLite and once on PostgreSQL (its deployments and in-process shops)."""
    return use_engine(request, monkeypatch, request.param)


@pytest.fixture(
    params=[pytest.param((*v, "sqlite"), id=f"{v[0]}-{v[1]}") for v in VARIANTS]
    + [pytest.param((*v, "postgresql"), id=f"{v[0]}-{v[1]}-postgresql", marks=ENGINES[1].marks) for v in PG_VARIANTS]
)
async def shop(
    request: pytest.FixtureRequest, deployments: Deployments, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Shop]:
    """The public API of every topology, in-process and over real sockets, on SQLite; and on PostgreSQL, each
    topology once (the monolith and colocated in-process, the microservices over sockets): one contract."""
    topology, mode, engine = request.param
    use_engine(request, monkeypatch, engine)
    async with shop_for((topology, mode), deployments) as s:
        yield s
