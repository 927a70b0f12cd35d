from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.shopfixtures import VARIANTS, Deployments, Shop, session_deployments, shop_for


@pytest.fixture(scope="session")
def deployments(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployments]:
    yield from session_deployments(tmp_path_factory.mktemp("deployments"))


@pytest.fixture(params=VARIANTS, ids=[f"{t}-{m}" for t, m in VARIANTS])
async def shop(request: pytest.FixtureRequest, deployments: Deployments) -> AsyncIterator[Shop]:
    """The public API of every topology, in-process and over real sockets: one contract, five deployments."""
    async with shop_for(request.param, deployments) as s:
        yield s
