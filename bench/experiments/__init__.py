"""The experiments: each turns a running system and a load into tidy tables.

Each module holds one experiment and its record (:class:`bench.experiments.experiment.Experiment`); the registry
below lists them in the order a run makes them. ``archbench run``, its command line and the checks of an external
target loop over it: a new experiment is a module and one line here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.experiments import deployment, failure, network, scaling, security, soak
from bench.experiments.experiment import Experiment
from bench.system.target import TargetError

EXPERIMENTS: tuple[Experiment[Any], ...] = (
    network.EXPERIMENT,
    failure.EXPERIMENT,
    security.EXPERIMENT,
    soak.EXPERIMENT,
    scaling.EXPERIMENT,
    deployment.EXPERIMENT,
)

NAMES = tuple(e.name for e in EXPERIMENTS)
#: What ``archbench run`` measures unless told otherwise (the soak is long by nature and runs only when asked for).
DEFAULT = tuple(e.name for e in EXPERIMENTS if e.runs_by_default)
#: What ``archbench run --quick`` measures unless told otherwise.
QUICK_DEFAULT = tuple(e.name for e in EXPERIMENTS if e.quick_by_default)
#: The experiments that make sense on a system deployed elsewhere; the others start systems themselves.
ON_TARGET = tuple(e.name for e in EXPERIMENTS if e.on_target)
#: What runs on an external target unless told otherwise.
ON_TARGET_BY_DEFAULT = tuple(e.name for e in EXPERIMENTS if e.on_target and e.runs_by_default)


def named(names: Sequence[str]) -> list[Experiment[Any]]:
    """The experiments called ``names``, in the registry's order (the order a run makes them)."""
    return [e for e in EXPERIMENTS if e.name in names]


def check_on_target(names: Sequence[str]) -> None:
    """Refuse the experiments that start systems of their own: they cannot run on an external target."""
    for experiment in named(names):
        if not experiment.on_target:
            raise TargetError(
                f"the {experiment.name} experiment cannot run against an external target: it starts and restarts "
                f"the system itself (possible: {', '.join(ON_TARGET)})"
            )
