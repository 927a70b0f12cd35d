from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from bench.experiments.failure import FailureParams
from bench.experiments.network import NetworkParams
from bench.experiments.security import SecurityParams
from bench.experiments.soak import SoakParams
from bench.run import RunOptions, run
from bench.system.resources import default_cpu_split
from plumbing.topology import TOPOLOGIES
from plumbing.transports import DEFAULT_STACK

# A real run of every topology, as short as a run can be and still have every phase.
TINY = NetworkParams(
    low_rate=50.0,
    low_duration=1.0,
    warmup=0.3,
    traced_per_op=2,
    sweep_rates=(100.0, 200.0),
    step_duration=0.8,
    step_warmup=0.2,
    products=60,
    users=20,
)


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory written by a real (tiny) run of every topology."""
    sut, gen = default_cpu_split()
    out = tmp_path_factory.mktemp("results") / "tiny"
    options = RunOptions(
        TOPOLOGIES,
        ["network"],
        out,
        TINY,
        FailureParams(),
        SecurityParams(),
        SoakParams(),
        sut,
        gen,
        DEFAULT_STACK,
        quick=True,
    )
    return run(options, Console(quiet=True))
