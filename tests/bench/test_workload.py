"""The shop workload: deterministic for a seed, faithful to its weights, well-formed requests of the public API."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from bench.load.loadgen import Request
from bench.load.workload import MIXES, OPS, ShopWorkload, resolve_mix


def _created(workload: ShopWorkload, request: Request, order_id: int) -> None:
    workload.on_response(request, 201, json.dumps({"id": order_id, "status": "CONFIRMED", "items": []}).encode())


def _drive(workload: ShopWorkload, n: int) -> list[Request]:
    """n requests, answering every checkout with a new order id (as a server would)."""
    requests = []
    for i in range(n):
        request = workload.next_request()
        if request.op == "checkout":
            _created(workload, request, 1000 + i)
        requests.append(request)
    return requests


def test_the_same_seed_gives_the_same_requests() -> None:
    first = _drive(ShopWorkload(50, 200, seed=3, key_prefix="k"), 2000)
    second = _drive(ShopWorkload(50, 200, seed=3, key_prefix="k"), 2000)
    assert first == second
    assert first != _drive(ShopWorkload(50, 200, seed=4, key_prefix="k"), 2000)


def test_idempotency_keys_are_fresh_and_differ_between_runs_by_default() -> None:
    def keys(workload: ShopWorkload) -> list[str]:
        return [dict(r.headers)["Idempotency-Key"] for r in _drive(workload, 500) if r.op == "checkout"]

    run_a, run_b = keys(ShopWorkload(10, 10, seed=1)), keys(ShopWorkload(10, 10, seed=1))
    assert len(set(run_a)) == len(run_a) > 0
    assert not set(run_a) & set(run_b)  # a second run never replays the first one's checkouts
    assert keys(ShopWorkload(10, 10, seed=1, key_prefix="p"))[:2] == ["p-1", "p-2"]


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_the_mix_respects_its_weights(mix: str) -> None:
    n = 40_000
    counts = Counter(r.op for r in _drive(ShopWorkload(100, 500, mix=mix, seed=11), n))
    weights = MIXES[mix]
    total = sum(weights.values())
    for op in OPS:
        expected = weights[op] / total
        # 40k draws: the standard error of a share is below 0.25 percentage points; allow about 4 of them.
        assert counts[op] / n == pytest.approx(expected, abs=0.01), op


def test_custom_weights_and_zero_weights() -> None:
    counts = Counter(r.op for r in _drive(ShopWorkload(5, 5, mix={"user": 1, "product": 3}, seed=0), 4000))
    assert set(counts) == {"user", "product"}
    assert counts["product"] / 4000 == pytest.approx(0.75, abs=0.03)
    with pytest.raises(ValueError, match="unknown"):
        resolve_mix({"teleport": 1})
    with pytest.raises(ValueError, match="positive sum"):
        resolve_mix({"user": 0})
    with pytest.raises(KeyError):
        resolve_mix("no-such-mix")


def test_requests_are_well_formed() -> None:
    auth = (("Authorization", "Bearer t0k3n"),)
    workload = ShopWorkload(n_users=7, n_products=45, seed=5, auth_headers=auth)
    for request in _drive(workload, 3000):
        assert ("Authorization", "Bearer t0k3n") in request.headers
        if request.op == "browse":
            match = re.fullmatch(r"/products\?limit=20&offset=(\d+)", request.path)
            assert match is not None
            assert int(match.group(1)) in (0, 20, 40)
        elif request.op == "product":
            assert 1 <= int(request.path.removeprefix("/products/")) <= 45
        elif request.op == "user":
            assert 1 <= int(request.path.removeprefix("/users/")) <= 7
        elif request.op == "order":
            assert int(request.path.removeprefix("/orders/")) in workload.order_ids
        else:
            assert (request.method, request.path) == ("POST", "/orders")
            headers = dict(request.headers)
            assert headers["Content-Type"] == "application/json"
            assert headers["Idempotency-Key"]
            body = json.loads(request.body)
            assert set(body) == {"user_id", "items"}
            assert 1 <= body["user_id"] <= 7
            assert 1 <= len(body["items"]) <= 3
            products = [line["product_id"] for line in body["items"]]
            assert len(set(products)) == len(products)
            assert all(1 <= p <= 45 for p in products)
            assert all(1 <= line["quantity"] <= 2 for line in body["items"])
        if request.method == "GET":
            assert request.body == b""


def test_viewing_an_order_falls_back_to_a_checkout_until_one_exists() -> None:
    workload = ShopWorkload(3, 3, mix={"order": 1}, seed=0)
    first = workload.next_request()
    assert first.op == "checkout"
    assert workload.next_request().op == "checkout"  # still no order: nothing was confirmed
    workload.on_response(first, 409, b'{"error": "out_of_stock", "detail": "x"}')
    assert workload.next_request().op == "checkout"  # a refused checkout creates nothing
    _created(workload, first, 42)
    assert workload.order_ids == [42]
    view = workload.next_request()
    assert (view.op, view.method, view.path) == ("order", "GET", "/orders/42")


def test_an_unexpected_checkout_body_is_ignored() -> None:
    workload = ShopWorkload(3, 3, seed=0)
    request = Request("checkout", "POST", "/orders")
    workload.on_response(request, 201, b"not json")
    workload.on_response(request, 201, b'{"status": "CONFIRMED"}')
    workload.on_response(request, 0, b"")
    assert workload.order_ids == []


def test_a_tiny_catalog_still_works() -> None:
    workload = ShopWorkload(1, 1, mix="checkout-heavy", seed=9)
    for request in _drive(workload, 200):
        if request.op == "checkout":
            assert json.loads(request.body)["items"][0]["product_id"] == 1
        if request.op == "browse":
            assert request.path.endswith("offset=0")
    with pytest.raises(ValueError, match="n_users"):
        ShopWorkload(0, 1)
