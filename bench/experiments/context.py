"""The run context: what every experiment of one ``archbench run`` shares, built once from the command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.system.target import ExternalDeployment
from plumbing.transports import DEFAULT_STACK
from shop.seed import SeedSpec


@dataclass(frozen=True, kw_only=True)
class Slo:
    """When a load run meets the service-level objective: p99 latency at most ``p99`` seconds and an error rate
    strictly under ``error_budget`` (a fraction)."""

    p99: float = 0.050
    error_budget: float = 0.001

    def met(self, summary: Mapping[str, Any]) -> bool:
        """Whether a load run's summary (:meth:`bench.load.loadgen.LoadResult.summary`) meets the SLO."""
        return bool(summary["p99"] <= self.p99 and summary["error_rate"] < self.error_budget)


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """The settings of one run that every experiment reads: seed and catalog, SLO, client stack, CPU sets, the token
    that enables this run's fault endpoints, the external target (or None), where results go, quick or not, the
    topologies.

    Credentials: a deployment started here makes its own (API key, service secret) and keeps them in memory; an
    external ``target`` carries those it was given through the environment.

    ``measured`` holds the tables that experiments earlier in the run measured on the same topologies, for an
    experiment that declares it reads them (:attr:`bench.experiments.experiment.Experiment.reads`).
    """

    out: Path
    topologies: tuple[str, ...]
    seed: SeedSpec = field(default_factory=SeedSpec)
    slo: Slo = field(default_factory=Slo)
    stack: str = DEFAULT_STACK
    sut_cpus: frozenset[int] | None = None
    gen_cpus: frozenset[int] | None = None
    admin_token: str = ""
    target: ExternalDeployment | None = None
    quick: bool = False
    measured: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def runs(self) -> Path:
        """Where the deployments of the run keep their files (databases, logs, spans), one directory each."""
        return self.out / "runs"

    @property
    def system_cpus(self) -> list[int]:
        """The system under test's CPUs: those chosen, else every CPU this process may use."""
        return sorted(self.sut_cpus or os.sched_getaffinity(0))

    @property
    def generator_cpus(self) -> list[int]:
        return sorted(self.gen_cpus or ())

    def on(self, topology: str, measured: Mapping[str, pd.DataFrame] | None = None) -> RunContext:
        """This context narrowed to one topology, with the tables measured on it so far."""
        return replace(self, topologies=(topology,), measured=dict(measured or {}))

    def settings(self) -> dict[str, Any]:
        """The shared settings as the results record them beside each experiment's parameters."""
        return {
            "seed": self.seed.seed,
            "products": self.seed.products,
            "users": self.seed.users,
            "slo_p99": self.slo.p99,
            "error_budget": self.slo.error_budget,
        }
