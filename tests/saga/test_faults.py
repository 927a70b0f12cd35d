"""Dependency faults through the admin endpoint: off unless enabled, guarded by a token, same effect on both sides."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from bench.system.faults import FaultPlan, Injector
from tests.shopfixtures import Deployments, fresh_deployment, settled, socket_shop

pytestmark = pytest.mark.sockets

TOKEN = "test-admin-token"


async def test_admin_endpoint_does_not_exist_unless_enabled(deployments: Deployments) -> None:
    async with socket_shop(deployments.get("microservices")) as shop:
        reply = await shop.client.post("/admin/faults", json={"component": "payments", "kind": "error", "value": 1})
        assert reply.status_code == 404
        reply = await shop.client.get("/admin/faults", headers={"x-admin-token": ""})
        assert reply.status_code == 404


async def test_admin_endpoint_refuses_without_the_token(tmp_path: Path) -> None:
    async with fresh_deployment("monolith", tmp_path, admin_token=TOKEN) as shop:
        body = {"component": "payments", "kind": "error", "value": 1.0}
        for headers in ({}, {"x-admin-token": "wrong"}, {"x-admin-token": TOKEN + "x"}):
            reply = await shop.client.post("/admin/faults", json=body, headers=headers)
            assert reply.status_code == 401
            assert reply.json()["error"] == "unauthorized"
        assert (await shop.checkout(1, [(1, 1)])).status_code == 201  # nothing was set
        bad = await shop.client.post(
            "/admin/faults", json={"component": "x", "kind": "melt"}, headers={"x-admin-token": TOKEN}
        )
        assert bad.status_code == 422
        ok = await shop.client.post("/admin/faults", json=body, headers={"x-admin-token": TOKEN})
        assert ok.status_code == 201
        assert ok.json() == {"payments": {"latency": 0.0, "error_rate": 1.0, "hang": False}}


@pytest.mark.parametrize("topology", ["monolith", "microservices"])
async def test_payment_errors_fail_checkouts_with_503_and_leave_no_anomaly(topology: str, tmp_path: Path) -> None:
    async with fresh_deployment(topology, tmp_path, call_timeout=0.5, admin_token=TOKEN) as shop:
        assert shop.deployment is not None
        injector = Injector(shop.deployment)
        plan = FaultPlan("error", "payments", 1.0)
        injector.begin(plan)
        replies = [await shop.checkout(user, [(2, 1)]) for user in range(1, 6)]
        assert {r.status_code for r in replies} == {503}
        assert all(r.json()["error"] == "dependency_unavailable" for r in replies)
        assert (await shop.client.get("/products/2")).status_code == 200  # what does not need payments still works
        injector.end(plan)
        assert (await shop.checkout(1, [(2, 1)])).status_code == 201
        await settled(shop)


@pytest.mark.parametrize("topology", ["monolith", "microservices"])
async def test_latency_of_inventory_slows_the_catalog_only(topology: str, tmp_path: Path) -> None:
    async with fresh_deployment(topology, tmp_path, admin_token=TOKEN) as shop:
        assert shop.deployment is not None
        injector = Injector(shop.deployment)
        plan = FaultPlan("latency", "inventory", 0.3)
        injector.begin(plan)
        started = time.monotonic()
        assert (await shop.client.get("/products/3")).status_code == 200
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        assert (await shop.client.get("/users/3")).status_code == 200
        assert time.monotonic() - started < 0.3
        injector.end(plan)


async def test_a_hung_payments_service_times_out_but_a_hung_module_holds_its_callers(tmp_path: Path) -> None:
    plan = FaultPlan("hang", "payments")
    async with fresh_deployment("microservices", tmp_path, call_timeout=0.5, admin_token=TOKEN) as shop:
        assert shop.deployment is not None
        Injector(shop.deployment).begin(plan)
        reply = await shop.checkout(1, [(2, 1)])
        assert reply.status_code == 503  # the saga's call timed out and compensated
        Injector(shop.deployment).end(plan)
        await settled(shop)
    async with fresh_deployment("monolith", tmp_path, admin_token=TOKEN) as shop:
        assert shop.deployment is not None
        Injector(shop.deployment).begin(plan)
        with pytest.raises(httpx.ReadTimeout):  # in-process calls have no timeout: the caller waits
            await shop.client.post(
                "/orders",
                json={"user_id": 1, "items": [{"product_id": 2, "quantity": 1}]},
                headers={"Idempotency-Key": "hung"},
                timeout=1.0,
            )
        Injector(shop.deployment).end(plan)
        await settled(shop)
