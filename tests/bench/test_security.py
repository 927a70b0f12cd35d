"""The security-cost experiment: the same load with the access checks off and on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.experiments import security
from bench.experiments.network import QUICK, NetworkParams
from bench.experiments.security import QUICK_SECURITY, SecurityParams, same_load
from tests.bench.contexts import silent, small_context

pytestmark = pytest.mark.sockets


def test_the_network_low_phase_is_reused_only_for_the_same_load() -> None:
    assert same_load(QUICK_SECURITY, QUICK.low_load())
    assert same_load(SecurityParams(), NetworkParams().low_load())
    assert not same_load(SecurityParams(rate=123.0), NetworkParams().low_load())
    assert not same_load(SecurityParams(), NetworkParams(warmup=0.25).low_load())
    assert not same_load(SecurityParams(), NetworkParams(mix="browse-heavy").low_load())


def test_both_settings_are_measured_on_real_processes(tmp_path: Path) -> None:
    params = SecurityParams(rate=50.0, duration=1.0, warmup=0.3)
    tables = security.EXPERIMENT.run(small_context(tmp_path, ["microservices"]), params, silent)
    rows = tables["security"].set_index("auth")
    assert set(rows.index) == {False, True}
    assert (rows["error_rate"] == 0).all()  # with auth on, the workload carried the run's key
    assert (rows["cpu_per_request_us"] > 0).all()


def test_a_reused_measurement_is_not_measured_again(tmp_path: Path) -> None:
    params = SecurityParams(rate=50.0, duration=1.0, warmup=0.3)
    on = {
        "topology": "monolith",
        "phase": "low",
        **params.load(),
        "p50": 0.001,
        "p99": 0.002,
        "error_rate": 0.0,
        "cpu_per_request_us": 500.0,
        "valid": True,
        "invalid_reasons": "",
    }
    context = small_context(tmp_path, ["monolith"], sut_cpus=None, measured={"steps": pd.DataFrame([on])})
    tables = security.EXPERIMENT.run(context, params, silent)
    rows = tables["security"].set_index("auth")
    assert rows.loc[True, "cpu_per_request_us"] == 500.0
    assert rows.loc[False, "cpu_per_request_us"] > 0
    assert (context.runs / "monolith-security" / "open").exists()
    assert not (context.runs / "monolith-security" / "auth").exists()  # no auth-on deployment was started
