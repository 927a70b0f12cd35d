"""The search for the highest rate a system passes at: one probe type, one climb, one "highest passing" helper.

A *probe* runs the load once at a rate and judges the run (:class:`Judged`: passed or not, why, and what it
measured). :func:`search` climbs a ladder of rising rates (a grid, or :func:`rising` rates) with the probe until
``misses_to_stop`` rates in a row fail (each failing rate retried ``retries`` times), bounded by ``max_runs``, then
narrows the gap between the highest pass and the lowest miss ``refine`` times by trying the rate halfway between.
:func:`highest_passing` is the answer. Every caller states its own ladder and its own judgement:

* the network sweep: its grid of rates, stop at the first miss;
* the scaling experiment: rates doubling from the previous step's result, then halving the gap;
* the generator's ceiling: a geometric sweep, each invalid run retried, stop after two misses in a row;
* the efficiency benchmark: rates rising by 30%, stop after two misses in a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Judged(Generic[R]):
    """One run of a search: the rate offered, whether it passed and why not, and what the caller measured."""

    rate: float
    passed: bool
    why: str
    result: R


Probe = Callable[[float], Judged[R]]
"""Runs the load at a rate (requests per second) and judges the run."""


def rising(
    start: float, factor: float, *, digits: int, maximum: float = math.inf, compound: bool = False
) -> Iterator[float]:
    """Rates rising geometrically by ``factor`` from ``start`` while at most ``maximum``, rounded to ``digits``
    (as :func:`round`: -2 rounds to hundreds).

    Without ``compound`` the k-th rate is ``start * factor**k`` rounded; with it, ``start`` comes as it is and each
    next rate is the previous one times ``factor``, rounded.
    """
    rate = start
    if compound:
        while rate <= maximum:
            yield rate
            rate = float(round(rate * factor, digits))
        return
    while rate <= maximum:
        yield float(round(rate, digits))
        rate *= factor


def search(
    probe: Probe[R],
    rates: Iterable[float],
    *,
    misses_to_stop: int = 1,
    retries: int = 0,
    max_runs: int | None = None,
    refine: int = 0,
    digits: int = -1,
) -> list[Judged[R]]:
    """Every run of the search, in the order made (see the module docstring).

    The climb probes ``rates`` in order; a rate that fails is retried up to ``retries`` times, and the climb stops
    once ``misses_to_stop`` rates in a row have failed, or ``max_runs`` runs were made. Then up to ``refine`` runs
    probe halfway between the highest passing and the lowest failing rate (rounded to ``digits``), while that middle
    lies strictly between them and ``max_runs`` allows.
    """
    runs: list[Judged[R]] = []
    limit = max_runs if max_runs is not None else math.inf
    misses = 0
    for rate in rates:
        if len(runs) >= limit:
            break
        for _ in range(retries + 1):
            runs.append(probe(rate))
            if runs[-1].passed or len(runs) >= limit:
                break
        misses = 0 if runs[-1].passed else misses + 1
        if misses >= misses_to_stop:
            break
    for _ in range(refine):
        passed = [run.rate for run in runs if run.passed]
        failed = [run.rate for run in runs if not run.passed]
        if not (passed and failed and len(runs) < limit):
            break
        middle = float(round((max(passed) + min(failed)) / 2, digits))
        if not max(passed) < middle < min(failed):
            break
        runs.append(probe(middle))
    return runs


def highest_passing(runs: Sequence[Judged[R]]) -> Judged[R] | None:
    """The passing run at the highest rate (the first of equals), or None when none passed."""
    passed = [run for run in runs if run.passed]
    return max(passed, key=lambda run: run.rate) if passed else None
