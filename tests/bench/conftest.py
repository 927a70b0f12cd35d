from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from bench.experiments import network
from bench.experiments.network import NetworkParams
from bench.run import Planned, run
from plumbing.topology import TOPOLOGIES
from tests.bench.contexts import small_context

# A real run of every topology, as short as a run can be and still have every phase.
TINY = NetworkParams(
    low_rate=50.0,
    low_duration=1.0,
    warmup=0.3,
    rounds=2,
    traced_per_op=2,
    start_rate=100.0,
    max_probes=2,
    probe_requests=50,
    probe_duration=0.8,
    probe_warmup=0.2,
    recheck_rounds=1,
    retries=0,
)


@pytest.fixture(scope="session")
def tiny_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory written by a real (tiny) run of every topology."""
    out = tmp_path_factory.mktemp("results") / "tiny"
    context = small_context(out, TOPOLOGIES, quick=True)
    return run(context, [Planned(network.EXPERIMENT, TINY)], Console(quiet=True))
