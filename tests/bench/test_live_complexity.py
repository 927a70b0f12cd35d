"""Operational complexity counted by the kernel from running deployments."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from bench.system.complexity import live_counts
from bench.system.deploy import Deployment, deploy
from shop.seed import SeedSpec

pytestmark = pytest.mark.sockets


def checkout(deployment: Deployment) -> None:
    body = json.dumps({"user_id": 1, "items": [{"product_id": 1, "quantity": 1}]}).encode()
    headers = {**dict(deployment.auth_headers), "Content-Type": "application/json", "Idempotency-Key": "live-1"}
    request = urllib.request.Request(deployment.public_url + "/orders", data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as reply:
        assert reply.status == 201


@pytest.mark.parametrize(
    ("topology", "replicas", "expected"),
    [
        ("monolith", {}, (1, 1, 1)),
        ("monolith", {"monolith": 2}, (2, 3, 1)),  # one shared port and one port of its own per worker
        ("microservices", {}, (6, 6, 5)),
        ("microservices", {"inventory": 2}, (7, 7, 5)),  # replicas share their service's database
    ],
)
def test_live_counts(tmp_path: Path, topology: str, replicas: dict[str, int], expected: tuple[int, int, int]) -> None:
    with deploy(topology, tmp_path, seed=SeedSpec(products=20, users=5), replicas=replicas) as deployment:
        checkout(deployment)
        counts = live_counts(topology, deployment.supervisor.pids())
    assert (counts["live_processes"], counts["live_listening_ports"], counts["live_databases"]) == expected
    if topology == "monolith":
        assert counts["live_connections"] == 0  # in-process calls only
    else:
        assert counts["live_connections"] >= 4  # the checkout's saga reached users, inventory, payments, ...
