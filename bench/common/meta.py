"""``meta.json`` of a results directory, decoded once into typed structs.

``archbench run`` records the environment and every parameter beside the tables; readers (the report) decode that
file here and read typed fields, never nested ``dict.get`` chains. Every field has a default, so a directory written
by an older or partial run decodes too; a parameter block of an experiment that did not record it stays ``None``.
Parameters are :data:`msgspec.UNSET` when the run did not record them, so :func:`recorded` lists exactly what the run
wrote. A leaf module: it imports nothing from ``bench``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from msgspec import UNSET, Struct, UnsetType

Number = int | float


class Environment(Struct, kw_only=True):
    """Facts about the machine and software that made the run."""

    cpu_model: str | None = None
    cpu_count: int | None = None
    cpus_available: list[int] | None = None
    memory_bytes: int | None = None
    platform: str | None = None
    python: str | None = None
    packages: dict[str, str | None] = {}
    git_commit: str | None = None
    recorded_at: str | None = None
    command: str | None = None


class Params(Struct, kw_only=True):
    """The parameters of one experiment; subclasses name the fields the report reads."""


class NetworkParams(Params, kw_only=True):
    low_rate: float | UnsetType = UNSET
    low_duration: float | UnsetType = UNSET
    warmup: float | UnsetType = UNSET
    rounds: int | UnsetType = UNSET
    traced_per_op: int | UnsetType = UNSET
    start_rate: float | UnsetType = UNSET
    within: float | UnsetType = UNSET
    max_probes: int | UnsetType = UNSET
    probe_requests: int | UnsetType = UNSET
    probe_duration: float | UnsetType = UNSET
    probe_warmup: float | UnsetType = UNSET
    recheck_rounds: int | UnsetType = UNSET
    recheck_steps: int | UnsetType = UNSET
    miss_retries: int | UnsetType = UNSET
    deployments: int | UnsetType = UNSET
    retries: int | UnsetType = UNSET
    noise_probe: float | UnsetType = UNSET
    sweep_rates: list[Number] | UnsetType = UNSET
    step_duration: float | UnsetType = UNSET
    step_warmup: float | UnsetType = UNSET
    slo_p99: float | UnsetType = UNSET
    error_budget: float | UnsetType = UNSET
    mix: str | UnsetType = UNSET
    arrival: str | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    products: int | UnsetType = UNSET
    users: int | UnsetType = UNSET


class FaultSpec(Struct, kw_only=True):
    """One fault of the failure matrix: what, where, how strong, how long."""

    kind: str
    target: str
    value: float = 0.0
    duration: float | UnsetType = UNSET

    @property
    def name(self) -> str:
        """The fault's name as the experiment writes it in its tables."""
        return f"{self.kind}:{self.target}"


class FailureParams(Params, kw_only=True):
    rate: float | UnsetType = UNSET
    before: float | UnsetType = UNSET
    window: float | UnsetType = UNSET
    after: float | UnsetType = UNSET
    warmup: float | UnsetType = UNSET
    settle_timeout: float | UnsetType = UNSET
    slo_p99: float | UnsetType = UNSET
    mix: str | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    products: int | UnsetType = UNSET
    users: int | UnsetType = UNSET
    call_timeout: float | UnsetType = UNSET
    profiles: list[str] | UnsetType = UNSET
    faults: list[FaultSpec] | UnsetType = UNSET


class ScalingParams(Params, kw_only=True):
    mixes: list[str] | UnsetType = UNSET
    max_replicas: int | UnsetType = UNSET
    start_rate: float | UnsetType = UNSET
    growth: float | UnsetType = UNSET
    refine: int | UnsetType = UNSET
    max_runs: int | UnsetType = UNSET
    step_duration: float | UnsetType = UNSET
    step_warmup: float | UnsetType = UNSET
    pause: float | UnsetType = UNSET
    slo_p99: float | UnsetType = UNSET
    error_budget: float | UnsetType = UNSET
    min_achieved: float | UnsetType = UNSET
    arrival: str | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    products: int | UnsetType = UNSET
    users: int | UnsetType = UNSET


class DeploymentParams(Params, kw_only=True):
    rate: float | UnsetType = UNSET
    duration: float | UnsetType = UNSET
    warmup: float | UnsetType = UNSET
    restart_at: float | UnsetType = UNSET
    service: str | UnsetType = UNSET
    workers: int | UnsetType = UNSET
    readmit: float | UnsetType = UNSET
    bin: float | UnsetType = UNSET
    mix: str | UnsetType = UNSET
    arrival: str | UnsetType = UNSET
    seed: int | UnsetType = UNSET
    products: int | UnsetType = UNSET
    users: int | UnsetType = UNSET


class Parameters(Struct, kw_only=True):
    """What the run was asked to do. ``experiments`` is None when an older run did not record it (then every
    experiment whose parameters are present counts as run)."""

    topologies: list[str] = []
    experiments: list[str] | None = None
    quick: bool | None = None
    stack: str | None = None
    sut_cpus: list[int] | None = None
    generator_cpus: list[int] | None = None
    network: NetworkParams | None = None
    failure: FailureParams | None = None
    scaling: ScalingParams | None = None
    deployment: DeploymentParams | None = None

    def ran(self, experiment: str) -> bool:
        """Whether this run made ``experiment`` (meta records the parameters of every experiment, run or not)."""
        return self.experiments is None or experiment in self.experiments


class ExperimentSeconds(Struct, kw_only=True):
    """How long an experiment was planned to take (the progress bar's plan before it ran, then once it had re-planned
    what it measured it would need) and took, in seconds of wall time; older results have no ``replanned``."""

    planned: float
    taken: float
    replanned: float | None = None


class Meta(Struct, kw_only=True):
    """The whole of ``meta.json``, as far as readers use it."""

    environment: Environment = msgspec.field(default_factory=Environment)
    parameters: Parameters = msgspec.field(default_factory=Parameters)
    sustainable_throughput: dict[str, float | None] = {}
    wall_seconds: float | None = None
    experiment_seconds: dict[str, ExperimentSeconds] = {}


def decode(raw: bytes | str) -> Meta:
    """``meta.json``'s text, decoded (a field of the wrong type raises :class:`msgspec.ValidationError`)."""
    return msgspec.json.decode(raw, type=Meta)


def read(path: Path) -> Meta:
    return decode(path.read_bytes())


def recorded(params: Params | None) -> list[tuple[str, Any]]:
    """The parameters a run recorded, as (name, value) in the order of the struct, leaving out the unset ones."""
    if params is None:
        return []
    values = msgspec.structs.asdict(params)
    return [(name, value) for name, value in values.items() if value is not UNSET]
