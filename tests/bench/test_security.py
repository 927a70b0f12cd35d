"""The security-cost experiment: the same load with the access checks off and on."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.experiments import security
from bench.experiments.network import QUICK, NetworkParams
from bench.experiments.security import QUICK_SECURITY, SecurityParams, same_load
from bench.system.resources import default_cpu_split
from plumbing.transports import DEFAULT_STACK

pytestmark = pytest.mark.sockets


def test_the_network_low_phase_is_reused_only_for_the_same_load() -> None:
    assert same_load(QUICK_SECURITY, QUICK)
    assert same_load(SecurityParams(), NetworkParams())
    assert not same_load(SecurityParams(rate=123.0), NetworkParams())
    assert not same_load(SecurityParams(), NetworkParams(seed=2))


def test_both_settings_are_measured_on_real_processes(tmp_path: Path) -> None:
    params = SecurityParams(rate=50.0, duration=1.0, warmup=0.3, products=60, users=20)
    tables = security.run_topology(
        "microservices", params, tmp_path, default_cpu_split()[0], DEFAULT_STACK, lambda *_: None
    )
    rows = tables["security"].set_index("auth")
    assert set(rows.index) == {False, True}
    assert (rows["error_rate"] == 0).all()  # with auth on, the workload carried the run's key
    assert (rows["cpu_per_request_us"] > 0).all()


def test_a_reused_measurement_is_not_measured_again(tmp_path: Path) -> None:
    params = SecurityParams(rate=50.0, duration=1.0, warmup=0.3, products=60, users=20)
    on = {
        "p50": 0.001,
        "p99": 0.002,
        "error_rate": 0.0,
        "cpu_per_request_us": 500.0,
        "valid": True,
        "invalid_reasons": "",
    }
    tables = security.run_topology("monolith", params, tmp_path, None, DEFAULT_STACK, lambda *_: None, on)
    rows = tables["security"].set_index("auth")
    assert rows.loc[True, "cpu_per_request_us"] == 500.0
    assert rows.loc[False, "cpu_per_request_us"] > 0
    assert not (tmp_path / "auth").exists()  # no auth-on deployment was started
