"""A run context for the tests of one experiment: a small catalog, the machine's CPU split, this run's token."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.experiments.context import RunContext
from bench.system.resources import default_cpu_split
from plumbing.transports import DEFAULT_STACK
from shop.seed import SeedSpec

SMALL = SeedSpec(products=60, users=20)


def small_context(out: Path, topologies: tuple[str, ...] | list[str], **changes: Any) -> RunContext:
    sut, gen = default_cpu_split()
    context = RunContext(
        out=out,
        topologies=tuple(topologies),
        seed=SMALL,
        stack=DEFAULT_STACK,
        sut_cpus=sut,
        gen_cpus=gen,
        admin_token="tok",
    )
    return replace(context, **changes)


class Silent:
    """A progress bar that shows nothing."""

    def __call__(self, description: str, expected: float) -> None:
        pass

    def replan(self, seconds: float) -> None:
        pass


silent = Silent()
