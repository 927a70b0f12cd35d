from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bench.system.postgres import PostgresServer
from tests.pgfixtures import server_session
from tests.shopfixtures import VARIANTS, Deployments, Shop, session_deployments, shop_for


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (tests that take it are marked ``postgres``)."""
    yield from server_session(tmp_path_factory.mktemp("postgres"))


@pytest.fixture(scope="session")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployments]:
    yield from session_deployments(tmp_path_factory.mktemp("deployments"))


@pytest.fixture(params=VARIANTS, ids=[f"{t}-{m}" for t, m in VARIANTS])
async def shop(request: pytest.FixtureRequest, deployments: Deployments) -> AsyncIterator[Shop]:
    """The public API of every topology, in-process and over real sockets: one contract, five deployments."""
    async with shop_for(request.param, deployments) as s:
        yield s
