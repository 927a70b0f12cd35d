"""Security isolation: an API key at the edge, service credentials inside, payments callable by orders only."""

from __future__ import annotations

import httpx
import pytest

from plumbing.auth import AuthConfig
from tests.shopfixtures import Deployments

pytestmark = pytest.mark.sockets

PUBLIC = [
    ("GET", "/products/1"),
    ("GET", "/products"),
    ("GET", "/users/1"),
    ("POST", "/users"),
    ("POST", "/users/1/deposits"),
    ("POST", "/orders"),
    ("GET", "/orders/1"),
    ("GET", "/users/1/notifications"),
]


@pytest.mark.parametrize("topology", ["monolith", "colocated", "microservices"])
async def test_the_public_api_needs_a_valid_api_key(topology: str, deployments: Deployments) -> None:
    deployment = deployments.get(topology)
    assert deployment.api_key
    async with httpx.AsyncClient(base_url=deployment.public_url, timeout=10) as client:
        bad_headers: list[dict[str, str]] = [
            {},
            {"X-API-Key": "wrong"},
            {"X-API-Key": deployment.api_key + "x"},
            {"Authorization": "Bearer nope"},
            {"Authorization": deployment.api_key},  # no scheme
            {"Authorization": "Basic " + deployment.api_key},
        ]
        for method, path in PUBLIC:
            for headers in bad_headers:
                reply = await client.request(method, path, headers=headers, json={})
                assert reply.status_code == 401, (method, path, headers)
                assert reply.json()["error"] == "unauthorized"
        bearer = {"Authorization": f"Bearer {deployment.api_key}"}
        assert (await client.get("/products/1", headers=bearer)).status_code == 200
        for open_path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await client.get(open_path)).status_code == 200


async def test_services_refuse_calls_without_the_right_credential(deployments: Deployments) -> None:
    deployment = deployments.get("microservices")
    assert deployment.secrets is not None
    auth = AuthConfig.from_env({"ARCHBENCH_SERVICE_SECRET": deployment.secrets.service_secret}, enabled=True)
    config = deployment.config
    charge = {"order_id": 987654, "user_id": 1, "amount_cents": 100}

    def url(service: str) -> str:
        return f"http://127.0.0.1:{config.process(service).port}"

    async with httpx.AsyncClient(timeout=10) as client:
        # No credential, a forged one, an API key instead: 401 on every service.
        for service, path in [
            ("payments", "/wallets/1"),
            ("users", "/users/1"),
            ("inventory", "/products/1"),
            ("orders", "/orders/1"),
            ("notifications", "/users/1/notifications"),
        ]:
            for headers in (
                {},
                {"X-Service-Credential": "orders:" + "0" * 32},
                {"X-API-Key": deployment.api_key or ""},
            ):
                reply = await client.get(url(service) + path, headers=headers)
                assert reply.status_code == 401, (service, headers)
        # Another service's valid credential: 403 where it is not allowed.
        as_gateway = {"X-Service-Credential": auth.credential("gateway") or ""}
        as_orders = {"X-Service-Credential": auth.credential("orders") or ""}
        assert (await client.post(url("payments") + "/charges", json=charge, headers=as_gateway)).status_code == 403
        assert (await client.post(url("payments") + "/charges/1/refund", headers=as_gateway)).status_code == 403
        assert (await client.post(url("inventory") + "/reservations", json={}, headers=as_gateway)).status_code == 403
        assert (await client.get(url("payments") + "/wallets/1", headers=as_orders)).status_code == 403
        # The one caller payments trusts with money gets through to the business rules (a real charge).
        reply = await client.post(url("payments") + "/charges", json=charge, headers=as_orders)
        assert reply.status_code == 201
        refund = await client.post(url("payments") + "/charges/987654/refund", headers=as_orders)
        assert refund.json()["status"] == "REFUNDED"
