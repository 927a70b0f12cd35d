"""Replicas over real sockets: both replicas serve, and one can be stopped and started while calls keep succeeding."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.system.deploy import Deployment, deploy
from bench.system.faults import FaultPlan, Injector
from plumbing.topology import RunConfig, make_config
from shop.seed import SeedSpec

SMALL = SeedSpec(products=50, users=10)


def get(deployment: Deployment, path: str) -> int:
    request = urllib.request.Request(deployment.public_url + path, headers=dict(deployment.auth_headers))
    with urllib.request.urlopen(request, timeout=5) as reply:
        reply.read()
        return int(reply.status)


def served(config: RunConfig, process: str, endpoint: str) -> int:
    """Requests the process answered on ``endpoint``, from its own /metrics (its own port, even behind a shared one)."""
    port = config.process(process).control_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    pattern = rf'http_request_duration_seconds_count\{{[^}}]*endpoint="{re.escape(endpoint)}"[^}}]*\}} ([0-9.e+]+)'
    return int(sum(float(n) for n in re.findall(pattern, text)))


def test_replica_names_ports_and_refusals(tmp_path: Path) -> None:
    ports = {"gateway": 1, "gateway-1": 2, "gateway-2": 3, "inventory-1": 4, "inventory-2": 5}
    ports |= {name: 10 + i for i, name in enumerate(("users", "payments", "notifications", "orders"))}
    config = make_config("microservices", tmp_path, ports, SMALL, "raw", replicas={"gateway": 2, "inventory": 2})
    assert [p.name for p in config.replicas_of("gateway")] == ["gateway-1", "gateway-2"]
    assert {p.port for p in config.replicas_of("gateway")} == {1}  # the public port, shared
    assert [p.control_port for p in config.replicas_of("gateway")] == [2, 3]
    assert config.urls_of("inventory") == ["http://127.0.0.1:4", "http://127.0.0.1:5"]
    assert config.urls_of("gateway") == ["http://127.0.0.1:1"]
    config.save(tmp_path / "topology.json")
    assert RunConfig.load(tmp_path / "topology.json") == config
    with pytest.raises(ValueError, match="no process"):
        make_config("monolith", tmp_path, {"monolith": 1}, SMALL, "raw", replicas={"inventory": 2})
    with pytest.raises(ValueError, match="at least 1"):
        make_config("monolith", tmp_path, {"monolith": 1}, SMALL, "raw", replicas={"monolith": 0})


def test_monolith_workers_share_the_port_and_both_serve(tmp_path: Path) -> None:
    with deploy("monolith", tmp_path, seed=SMALL, replicas={"monolith": 2}) as deployment:
        for _ in range(60):  # a new connection per request: the kernel spreads them over both workers
            assert get(deployment, "/products/1") == 200
        counts = [served(deployment.config, p, "GET /products/{product_id}") for p in ("monolith-1", "monolith-2")]
    assert sum(counts) == 60
    assert min(counts) > 0, counts


def test_a_service_replica_stopped_and_started_while_the_other_serves(tmp_path: Path) -> None:
    with deploy("microservices", tmp_path, seed=SMALL, replicas={"inventory": 2}) as deployment:
        for _ in range(10):
            assert get(deployment, "/products/2") == 200
        config = deployment.config
        counts = [served(config, p, "GET /products/{product_id}") for p in ("inventory-1", "inventory-2")]
        assert counts == [5, 5]  # the gateway balances in turn

        deployment.supervisor.stop("inventory-1")  # graceful: no call may fail, the balancer goes to inventory-2
        assert [get(deployment, "/products/3") for _ in range(10)] == [200] * 10
        deployment.supervisor.restart("inventory-1")
        deadline = time.monotonic() + 5.0  # it is set aside for 1 s after its refusal, then readmitted
        while served(config, "inventory-1", "GET /products/{product_id}") == 0 and time.monotonic() < deadline:
            assert get(deployment, "/products/4") == 200
            time.sleep(0.05)
        assert served(config, "inventory-1", "GET /products/{product_id}") > 0


def status_of(deployment: Deployment, path: str) -> int:
    try:
        return get(deployment, path)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_dependency_fault_hits_every_replica_and_a_process_fault_one(tmp_path: Path) -> None:
    with deploy("microservices", tmp_path, seed=SMALL, replicas={"inventory": 2}, admin_token="tok") as deployment:
        injector = Injector(deployment)
        errors = FaultPlan("error", "inventory", 1.0)
        injector.begin(errors)
        assert {status_of(deployment, "/products/1") for _ in range(6)} == {503}  # both replicas fail
        injector.end(errors)
        assert {status_of(deployment, "/products/1") for _ in range(6)} == {200}
        kill = FaultPlan("kill", "inventory")
        injector.begin(kill)  # one replica of two dies: its callers go on with the other
        assert {status_of(deployment, "/products/1") for _ in range(6)} == {200}
        assert injector.end(kill) > 0
