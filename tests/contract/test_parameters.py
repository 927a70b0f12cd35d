"""Malformed query and path parameters on every topology: a client's mistake is a 4xx, and never counts against the
server (the resilient profile's breakers stay closed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plumbing.topology import TOPOLOGIES
from tests.contract.test_public_api import assert_error
from tests.shopfixtures import Shop, fresh_deployment

pytestmark = pytest.mark.sockets

MALFORMED_QUERIES = [
    "limit=--5",
    "offset=--0",
    "limit=-5",
    "limit=1e1",
    "limit=5.0",
    "limit=+5",
    "limit=05",
    "limit=%205",
    "limit=%D9%A5",  # an Arabic-Indic digit five
    "limit=1&limit=2",
    "limit=",
    "offset=99999999999999999999999",
    "offset=4611686018427387905",
    "limit=null",
    "limit=[5]",
]


@pytest.mark.parametrize("query", MALFORMED_QUERIES)
async def test_a_malformed_query_integer_is_422(shop: Shop, query: str) -> None:
    assert_error(await shop.client.get(f"/products?{query}"), 422, "invalid_input")


async def test_query_integers_at_the_documented_bounds_are_accepted(shop: Shop) -> None:
    for query, limit, offset in [("limit=100&offset=4611686018427387904", 100, 2**62), ("limit=1&offset=-0", 1, 0)]:
        reply = await shop.client.get(f"/products?{query}")
        assert reply.status_code == 200, reply.text
        assert (reply.json()["limit"], reply.json()["offset"]) == (limit, offset)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/products/--5", "product_not_found"),
        ("/products/1e0", "product_not_found"),
        ("/products/+1", "product_not_found"),
        ("/products/01", "product_not_found"),
        ("/products/9223372036854775808", "product_not_found"),
        ("/users/%D9%A1", "user_not_found"),
        ("/users/--1/notifications", "user_not_found"),
        ("/orders/1.0", "order_not_found"),
    ],
)
async def test_a_malformed_path_id_names_nothing(shop: Shop, path: str, code: str) -> None:
    assert_error(await shop.client.get(path), 404, code)


async def test_a_malformed_path_id_in_a_write_names_nothing(shop: Shop) -> None:
    assert_error(await shop.client.post("/users/--1/deposits", json={"amount_cents": 1}), 404, "user_not_found")


@pytest.mark.parametrize("topology", TOPOLOGIES)
async def test_client_mistakes_never_open_a_breaker(topology: str, tmp_path: Path) -> None:
    """Under the resilient profile, more malformed requests than it takes to open a breaker, then a valid one."""
    async with fresh_deployment(topology, tmp_path, profile="resilient") as shop:
        for _ in range(12):
            assert_error(await shop.client.get("/products?limit=--5"), 422, "invalid_input")
            assert_error(await shop.client.get("/products/--5"), 404, "product_not_found")
        reply = await shop.client.get("/products/1")
        assert reply.status_code == 200, reply.text
