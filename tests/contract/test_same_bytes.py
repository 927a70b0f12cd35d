"""The same request gets the same status and the same bytes from every topology (same seed, read-only requests)."""

from __future__ import annotations

import pytest

from tests.shopfixtures import VARIANTS, Deployments, shop_for

pytestmark = pytest.mark.sockets

REQUESTS: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    ("GET", "/products?limit=3&offset=40", None, {}),  # products no contract test buys
    ("GET", "/products/50", None, {}),
    ("GET", "/products/999999", None, {}),
    ("GET", "/products?limit=500", None, {}),
    ("GET", "/users/3", None, {}),
    ("GET", "/users/0", None, {}),
    ("GET", "/orders/999999", None, {}),
    ("POST", "/users", b'{"email": "no-at", "name": "X"}', {}),
    ("POST", "/users", b"[1, 2", {}),
    ("POST", "/users/3/deposits", b'{"amount_cents": -1}', {}),
    ("POST", "/users/999999/deposits", b'{"amount_cents": 1}', {}),
    ("POST", "/users/3/deposits", b'{"amount_cents": 1}', {"Idempotency-Key": ""}),
    ("POST", "/users/999999/deposits", b'{"amount_cents": 1}', {"Idempotency-Key": "d"}),
    ("POST", "/orders", b'{"user_id": 1, "items": []}', {"Idempotency-Key": "k"}),
    ("POST", "/orders", b'{"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}', {}),
    ("POST", "/orders", b'{"user_id": 999999, "items": [{"product_id": 1, "quantity": 1}]}', {"Idempotency-Key": "u"}),
    ("GET", "/openapi.json", None, {}),
    ("GET", "/nowhere", None, {}),
]


async def test_every_topology_answers_with_the_same_bytes(deployments: Deployments) -> None:
    answers: dict[str, list[tuple[int, bytes]]] = {}
    for variant in VARIANTS:
        async with shop_for(variant, deployments) as shop:
            answers["-".join(variant)] = [
                (r.status_code, r.content)
                for r in [
                    await shop.client.request(method, path, content=body, headers=headers)
                    for method, path, body, headers in REQUESTS
                ]
            ]
    reference_name, reference = next(iter(answers.items()))
    for name, answer in answers.items():
        for (method, path, _, _), expected, got in zip(REQUESTS, reference, answer, strict=True):
            assert got == expected, f"{method} {path}: {name} differs from {reference_name}"
