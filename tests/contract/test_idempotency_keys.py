"""Idempotency keys are the user's own, for checkouts and deposits, on every topology (in-process and over sockets).

Two users sending the same key each get their own order; a deposit sent again with its key (a retry after a timeout)
credits once and answers what it answered the first time, also when the copies arrive at once; the audit of every
database is clean afterwards.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from shop.orders import MAX_KEY
from tests.contract.test_public_api import assert_error, balance_of
from tests.shopfixtures import Shop, settled

pytestmark = pytest.mark.sockets

_serial = itertools.count(1)


def fresh_key(shop: Shop, what: str) -> str:
    """A key no earlier test used on this (possibly shared) deployment."""
    return f"{what}-{shop.topology}-{shop.mode}-{next(_serial)}-{id(shop)}"


async def deposit(shop: Shop, user_id: int, amount: int, key: str | bytes | None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await shop.client.post(f"/users/{user_id}/deposits", json={"amount_cents": amount}, headers=headers)


async def test_two_users_with_the_same_key_get_two_orders(shop: Shop) -> None:
    ann, bob = await shop.new_user(10_000_000), await shop.new_user(10_000_000)
    key = fresh_key(shop, "shared")

    anns = await shop.checkout(ann, [(11, 1)], key=key)
    bobs = await shop.checkout(bob, [(11, 1)], key=key)

    assert anns.status_code == bobs.status_code == 201, (anns.text, bobs.text)
    assert anns.json()["id"] != bobs.json()["id"]
    assert (anns.json()["user_id"], bobs.json()["user_id"]) == (ann, bob)
    assert (anns.json()["status"], bobs.json()["status"]) == ("CONFIRMED", "CONFIRMED")
    total = anns.json()["total_cents"]
    assert await balance_of(shop, ann) == await balance_of(shop, bob) == 10_000_000 - total
    # Each replays their own order, and a different request under the key is still refused to its user.
    assert (await shop.checkout(ann, [(11, 1)], key=key)).json() == anns.json()
    assert (await shop.checkout(bob, [(11, 1)], key=key)).json() == bobs.json()
    assert_error(await shop.checkout(bob, [(12, 1)], key=key), 422, "idempotency_key_reused")
    assert await balance_of(shop, bob) == 10_000_000 - total


async def test_a_deposit_retried_with_its_key_credits_once_and_replays(shop: Shop) -> None:
    user = await shop.new_user()
    key = fresh_key(shop, "deposit")

    first = await deposit(shop, user, 1234, key)
    assert first.status_code == 201, first.text
    assert first.json() == {"user_id": user, "balance_cents": 1234}
    assert (await deposit(shop, user, 100, None)).json() == {"user_id": user, "balance_cents": 1334}

    again = await deposit(shop, user, 1234, key)

    assert (again.status_code, again.json()) == (201, first.json())  # the first answer, not today's balance
    assert await balance_of(shop, user) == 1334
    assert_error(await deposit(shop, user, 999, key), 422, "idempotency_key_reused")
    assert await balance_of(shop, user) == 1334
    # The key is this user's: another user's deposit under it is their own.
    other = await shop.new_user()
    assert (await deposit(shop, other, 500, key)).json() == {"user_id": other, "balance_cents": 500}
    assert await balance_of(shop, user) == 1334


async def test_concurrent_deposits_with_the_same_key_credit_once(shop: Shop) -> None:
    user = await shop.new_user()
    key = fresh_key(shop, "burst")

    replies = await asyncio.gather(*(deposit(shop, user, 700, key) for _ in range(12)))

    assert {(r.status_code, r.text) for r in replies} == {(201, replies[0].text)}
    assert replies[0].json() == {"user_id": user, "balance_cents": 700}
    assert await balance_of(shop, user) == 700
    await settled(shop)


# Keys a deposit must refuse as sent on the wire: empty, too long, a tab inside, non-ASCII (UTF-8 bytes).
MALFORMED: list[str | bytes] = ["", "x" * (MAX_KEY + 1), "tab\there", "clé".encode()]


@pytest.mark.parametrize("key", MALFORMED, ids=["empty", "too-long", "tab", "non-ascii"])
async def test_a_deposit_with_a_malformed_key_is_422(shop: Shop, key: str | bytes) -> None:
    user = await shop.new_user(100)

    assert_error(await deposit(shop, user, 50, key), 422, "invalid_input")

    assert await balance_of(shop, user) == 100
    assert_error(await deposit(shop, 10**9, 50, key), 422, "invalid_input")  # refused before the user is looked up


async def test_the_document_states_the_optional_deposit_key(shop: Shop) -> None:
    document = (await shop.client.get("/openapi.json")).json()
    (header,) = [p for p in document["paths"]["/users/{user_id}/deposits"]["post"]["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    assert header["required"] is False
    checkout_header = document["paths"]["/orders"]["post"]["parameters"][0]
    assert (checkout_header["name"], checkout_header["required"]) == ("Idempotency-Key", True)
    assert header["schema"] == checkout_header["schema"]
