"""Randomized multiple interleaved trials: every topology measured once per round, in a random order, round after round.

Two identical systems measured one after the other on a shared machine can look 38% apart (Abedi & Brecht, ICPE'17):
whatever the host does during one system's minutes is charged to that system alone. Interleaving spreads the host's
moods over every system: each round runs one trial of each, in an order drawn from a seeded generator, so a slow minute
hits the systems of that round alike, and the ratio of two systems within a round (paired) cancels most of it.

Each trial is wrapped in a :class:`~bench.system.noise.NoiseMeter`. A trial the machine disturbed (steal, stalls of
the generator's CPU) is run again, at most :attr:`Rounds.retries` times; the last attempt is kept either way, with its
noise and the number of attempts in its row, so the report can say how noisy the machine was and how many trials
were repeated.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from bench.system.noise import NoiseMeter, NoiseProbe

Row = dict[str, Any]
#: A trial: (topology, round) -> the columns of its row. It runs one measurement against an already deployed topology.
Trial = Callable[[str, int], Row]
#: Called before each trial with (round, position in the round, topology, attempt).
Progress = Callable[[int, int, str, int], None]

DEFAULT_RETRIES: Final = 2


@dataclass(frozen=True, kw_only=True)
class Rounds:
    """How many rounds, how many repeats of a disturbed trial, and the seed of the orders."""

    rounds: int
    retries: int = DEFAULT_RETRIES
    seed: int = 1
    probe_seconds: float = 0.2

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.retries < 0 or self.probe_seconds <= 0:
            raise ValueError("rounds >= 1, retries >= 0 and probe_seconds > 0 are required")


def orders(topologies: Sequence[str], rounds: int, seed: int) -> Iterator[list[str]]:
    """The order of the topologies in each round: a fresh shuffle per round from one seeded generator."""
    rng = random.Random(seed)
    for _ in range(rounds):
        order = list(topologies)
        rng.shuffle(order)
        yield order


def run_rounds(
    topologies: Sequence[str],
    trial: Trial,
    plan: Rounds,
    *,
    cpus: Collection[int] | None = None,
    progress: Progress | None = None,
    meter: Callable[[Collection[int] | None, float], NoiseProbe] = NoiseMeter,
) -> list[Row]:
    """Run ``trial`` for every topology in every round of ``plan``; one row per kept trial.

    Each row is the trial's own columns plus ``topology``, ``round``, ``position`` (its place in the round),
    ``attempts`` (1 when the first try was kept), ``disturbed`` and ``disturbed_reasons`` (the noise of the kept
    attempt) and the ``noise_*`` columns of :meth:`~bench.system.noise.Noise.columns`. ``cpus`` are the CPUs whose
    steal counts (those of the system under test and of the generator); ``meter`` makes the noise meter of a trial.
    """
    rows: list[Row] = []
    for index, order in enumerate(orders(topologies, plan.rounds, plan.seed)):
        for position, topology in enumerate(order):
            rows.append(
                _kept_trial(topology, index, position, trial, plan, lambda: meter(cpus, plan.probe_seconds), progress)
            )
    return rows


def _kept_trial(
    topology: str,
    index: int,
    position: int,
    trial: Trial,
    plan: Rounds,
    new_meter: Callable[[], NoiseProbe],
    progress: Progress | None,
) -> Row:
    def attempt(number: int) -> Row:
        if progress is not None:
            progress(index, position, topology, number)
        return trial(topology, index)

    return kept(attempt, new_meter, plan.retries) | {"topology": topology, "round": index, "position": position}


def kept(measure: Callable[[int], Row], new_meter: Callable[[], NoiseProbe], retries: int) -> Row:
    """Run ``measure(attempt)`` until the machine leaves it undisturbed, at most ``retries`` more times; the kept
    row gains ``attempts``, ``disturbed``, ``disturbed_reasons``, ``repeated_reasons`` (why the attempts before it
    were run again, one "; "-joined list per attempt, " | " between attempts) and the ``noise_*`` columns."""
    repeated: list[str] = []
    for attempt in range(1, retries + 2):
        meter = new_meter()
        meter.before()
        row = measure(attempt)
        noise = meter.after()
        reasons = noise.reasons()
        if not reasons:
            break
        repeated.append("; ".join(reasons))
    return row | {
        "attempts": attempt,
        "disturbed": bool(reasons),
        "disturbed_reasons": "; ".join(reasons),
        "repeated_reasons": " | ".join(repeated[: attempt - 1]),
        **noise.columns(),
    }
