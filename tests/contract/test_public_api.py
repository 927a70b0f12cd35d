"""The public API contract, run unchanged against every topology (in-process and over real sockets)."""

from __future__ import annotations

import asyncio

import pytest

from tests.shopfixtures import Shop

pytestmark = pytest.mark.sockets


def assert_error(reply, status: int, code: str | None = None) -> None:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.json()
    assert set(body) == {"error", "detail"}
    if code is not None:
        assert body["error"] == code


async def stock_of(shop: Shop, product_id: int) -> int:
    reply = await shop.client.get(f"/products/{product_id}")
    assert reply.status_code == 200
    return int(reply.json()["stock"])


async def balance_of(shop: Shop, user_id: int) -> int:
    reply = await shop.client.get(f"/users/{user_id}")
    assert reply.status_code == 200
    return int(reply.json()["balance_cents"])


async def test_register_and_read_user(shop: Shop) -> None:
    reply = await shop.client.post("/users", json={"email": "  Ada@Example.COM ", "name": "Ada"})
    assert reply.status_code == 201
    user = reply.json()
    assert user == {"id": user["id"], "email": "ada@example.com", "name": "Ada", "balance_cents": 0}
    assert (await shop.client.get(f"/users/{user['id']}")).json() == user
    again = await shop.client.post("/users", json={"email": "ada@example.com", "name": "Ada again"})
    assert_error(again, 409, "email_taken")


@pytest.mark.parametrize(
    "body",
    [
        {"email": "no-at-sign", "name": "X"},
        {"email": "a@b.c", "name": ""},
        {"email": "a@b.c"},
        {"email": 5, "name": "X"},
        {"email": "a@b.c", "name": ["X"]},
        {"email": "a\u0000b@example.com", "name": "A"},  # NUL: PostgreSQL's text cannot hold it; refused everywhere
        {"email": "a@b.c", "name": "A\u0000"},
        [],
        "just a string",
        None,
    ],
)
async def test_register_refuses_bad_bodies(shop: Shop, body: object) -> None:
    assert_error(await shop.client.post("/users", json=body), 422)


async def test_malformed_json_and_oversized_bodies_are_422(shop: Shop) -> None:
    assert_error(await shop.client.post("/users", content=b'{"email": "a@b.c", "name"'), 422, "invalid_input")
    assert_error(await shop.client.post("/users", content=b"\xff\xfe\x00"), 422, "invalid_input")
    assert_error(await shop.client.post("/users", content=b"{" + b" " * 70_000 + b"}"), 422, "invalid_input")


@pytest.mark.parametrize(
    "path", ["/users/0", "/users/999999", "/users/abc", "/users/-1", "/users/99999999999999999999"]
)
async def test_unknown_users_are_404(shop: Shop, path: str) -> None:
    assert_error(await shop.client.get(path), 404)


async def test_deposits(shop: Shop) -> None:
    user_id = await shop.new_user()
    reply = await shop.client.post(f"/users/{user_id}/deposits", json={"amount_cents": 1234})
    assert reply.status_code == 201
    assert reply.json() == {"user_id": user_id, "balance_cents": 1234}
    assert await balance_of(shop, user_id) == 1234
    for bad in (0, -5, 10**12, 10**30, 12.5, True, "100", None):
        assert_error(await shop.client.post(f"/users/{user_id}/deposits", json={"amount_cents": bad}), 422)
    assert await balance_of(shop, user_id) == 1234
    assert_error(await shop.client.post("/users/999999/deposits", json={"amount_cents": 1}), 404, "user_not_found")


async def test_catalog_pages_and_products(shop: Shop) -> None:
    reply = await shop.client.get("/products")
    assert reply.status_code == 200
    page = reply.json()
    assert page["limit"] == 20
    assert page["offset"] == 0
    assert page["total"] == shop.seed.products
    assert [p["id"] for p in page["items"]] == list(range(1, 21))
    assert set(page["items"][0]) == {"id", "sku", "name", "price_cents", "stock"}
    tail = (await shop.client.get("/products", params={"limit": 5, "offset": shop.seed.products - 2})).json()
    assert [p["id"] for p in tail["items"]] == [shop.seed.products - 1, shop.seed.products]
    product = (await shop.client.get("/products/3")).json()
    assert product == page["items"][2]
    for params in ({"limit": 0}, {"limit": 101}, {"limit": "x"}, {"offset": -1}, {"limit": "1e3"}):
        assert_error(await shop.client.get("/products", params=params), 422, "invalid_input")
    assert_error(await shop.client.get("/products/0"), 404, "product_not_found")
    assert_error(await shop.client.get("/products/nope"), 404, "product_not_found")


async def test_checkout_confirms_takes_stock_and_money(shop: Shop) -> None:
    user_id = await shop.new_user(10_000_000)
    stock_before = await stock_of(shop, 4)
    price = (await shop.client.get("/products/4")).json()["price_cents"]
    reply = await shop.checkout(user_id, [(4, 2), (4, 1)])
    assert reply.status_code == 201, reply.text
    order = reply.json()
    assert order["status"] == "CONFIRMED"
    assert order["user_id"] == user_id
    assert order["items"] == [{"product_id": 4, "quantity": 3, "price_cents": price}]
    assert order["total_cents"] == 3 * price
    assert await stock_of(shop, 4) == stock_before - 3
    assert await balance_of(shop, user_id) == 10_000_000 - 3 * price
    assert (await shop.client.get(f"/orders/{order['id']}")).json() == order


async def test_same_idempotency_key_gives_one_order_and_one_charge(shop: Shop) -> None:
    user_id = await shop.new_user(10_000_000)
    first = await shop.checkout(user_id, [(6, 1)], key="same-key-" + shop.topology + shop.mode)
    second = await shop.checkout(user_id, [(6, 1)], key="same-key-" + shop.topology + shop.mode)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert await balance_of(shop, user_id) == 10_000_000 - first.json()["total_cents"]
    other = await shop.checkout(user_id, [(7, 1)], key="same-key-" + shop.topology + shop.mode)
    assert_error(other, 422, "idempotency_key_reused")


async def test_refusals_write_nothing(shop: Shop) -> None:
    poor = await shop.new_user(100)
    stock_before = await stock_of(shop, 8)
    assert_error(await shop.checkout(poor, [(8, 1)]), 402, "insufficient_funds")
    assert_error(await shop.checkout(poor, [(8, 1), (10**9, 1)]), 404, "product_not_found")
    assert_error(await shop.checkout(10**9, [(8, 1)]), 404, "user_not_found")
    assert await stock_of(shop, 8) == stock_before
    assert await balance_of(shop, poor) == 100


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": 1, "items": []},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 0}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": -3}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 10**20}]},
        {"user_id": 1, "items": [{"product_id": 1, "quantity": 1.5}]},
        {"user_id": 1, "items": [{"product_id": "1", "quantity": 1}]},
        {"user_id": 1, "items": [{"product_id": 10**30, "quantity": 1}]},
        {"user_id": -1, "items": [{"product_id": 1, "quantity": 1}]},
        {"user_id": 1, "items": {"product_id": 1}},
        {"items": [{"product_id": 1, "quantity": 1}]},
        {"user_id": 1, "items": [{"product_id": p, "quantity": 1} for p in range(1, 60)]},
    ],
)
async def test_bad_checkouts_are_422_and_write_nothing(shop: Shop, body: object) -> None:
    stock_before = await stock_of(shop, 1)
    balance_before = await balance_of(shop, 1)
    reply = await shop.client.post("/orders", json=body, headers={"Idempotency-Key": "bad-body"})
    assert_error(reply, 422)
    assert await stock_of(shop, 1) == stock_before
    assert await balance_of(shop, 1) == balance_before


async def test_checkout_needs_an_idempotency_key(shop: Shop) -> None:
    body = {"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}
    assert_error(await shop.client.post("/orders", json=body), 422, "invalid_input")
    assert_error(await shop.client.post("/orders", json=body, headers={"Idempotency-Key": "x" * 300}), 422)


async def test_unknown_orders_are_404(shop: Shop) -> None:
    for path in ("/orders/0", "/orders/999999999", "/orders/x"):
        assert_error(await shop.client.get(path), 404)


async def test_notification_arrives_once(shop: Shop) -> None:
    user_id = await shop.new_user(10_000_000)
    order = (await shop.checkout(user_id, [(9, 1)])).json()
    items: list[dict[str, object]] = []
    for _ in range(100):
        reply = await shop.client.get(f"/users/{user_id}/notifications")
        assert reply.status_code == 200
        items = reply.json()["items"]
        if items:
            break
        await asyncio.sleep(0.05)
    assert [n["order_id"] for n in items] == [order["id"]]
    assert "confirmed" in str(items[0]["message"])
    assert_error(await shop.client.get("/users/999999/notifications"), 404, "user_not_found")


async def test_operational_endpoints(shop: Shop) -> None:
    assert (await shop.client.get("/healthz")).json() == {"status": "ok"}
    assert (await shop.client.get("/readyz")).json() == {"status": "ready"}
    await shop.client.get("/products/1")
    metrics = await shop.client.get("/metrics")
    assert metrics.status_code == 200
    assert "http_request_duration_seconds_bucket" in metrics.text
    schema = (await shop.client.get("/openapi.json")).json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {
        "/users",
        "/users/{user_id}",
        "/users/{user_id}/deposits",
        "/products",
        "/products/{product_id}",
        "/orders",
        "/orders/{order_id}",
        "/users/{user_id}/notifications",
    }


async def test_unknown_routes_and_methods_are_json(shop: Shop) -> None:
    assert_error(await shop.client.get("/nowhere"), 404, "not_found")
    assert_error(await shop.client.delete("/products/1"), 405, "method_not_allowed")
