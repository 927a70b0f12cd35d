"""The search for the highest rate a system passes at: one probe type, one search, one "highest passing" helper.

A *probe* runs the load once at a rate and judges the run (:class:`Judged`: passed or not, why, and what it
measured). A :class:`Search` climbs a ladder of rising rates (a grid, or :func:`rising` rates) until
``misses_to_stop`` rates in a row fail (each failing rate retried ``retries`` times), bounded by ``max_runs``, then
narrows the gap between the highest pass and the lowest miss: a few times by halving it, or by bisection until the
bracket is within a given precision. :func:`search` runs one search to the end; :func:`interleave` runs several in
rounds, one probe of each per round in a shuffled order. :func:`highest_passing` is the answer. Every caller states
its own ladder and its own judgement:

* the network experiment: rates doubling until the SLO breaks, then a bisection to within 10%, every topology's
  search interleaved with the others';
* the scaling experiment: rates doubling from the previous step's result, then halving the gap;
* the generator's ceiling: a geometric sweep, each invalid run retried, stop after two misses in a row;
* the efficiency benchmark: rates rising by 30%, stop after two misses in a row.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Judged(Generic[R]):
    """One run of a search: the rate offered, whether it passed and why not, and what the caller measured;
    ``retry``: whether a failure is worth trying again (False where it cannot have been bad luck)."""

    rate: float
    passed: bool
    why: str
    result: R
    retry: bool = True


Probe = Callable[[float], Judged[R]]
"""Runs the load at a rate (requests per second) and judges the run."""
Order = Callable[[list[str]], list[str]]
"""The order in which a round visits the searches named."""


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


class Search(Generic[R]):
    """One search as a sequence of steps: ask :meth:`next_rate`, run the load, give the judged run to :meth:`record`.

    Stepping lets several searches share the machine in rounds (:func:`interleave`), one probe of each at a time, so
    that a slow minute of the host hits every system under test alike. :func:`search` runs one to the end.

    The climb probes ``rates`` in order; a rate that fails is retried up to ``retries`` times (unless the judged run
    says a retry cannot help: :attr:`Judged.retry`), and the climb stops
    once ``misses_to_stop`` rates in a row have failed, or ``max_runs`` runs were made. Then the gap between the
    highest passing and the lowest failing rate is narrowed: ``refine`` times by its arithmetic middle (rounded to
    ``digits``), or, with ``within``, by its geometric middle until the lowest failing rate is at most ``1 + within``
    times the highest passing one (a bisection to that precision). Without any passing rate, ``within`` also halves
    the lowest failing rate until one passes or ``floor`` is reached.
    """

    def __init__(
        self,
        rates: Iterable[float],
        *,
        misses_to_stop: int = 1,
        retries: int = 0,
        max_runs: int | None = None,
        refine: int = 0,
        within: float | None = None,
        floor: float = 1.0,
        digits: int = -1,
    ) -> None:
        self.runs: list[Judged[R]] = []
        self._rates = iter(rates)
        self._misses_to_stop, self._retries = misses_to_stop, retries
        self._limit = max_runs if max_runs is not None else math.inf
        self._refine, self._within, self._floor, self._digits = refine, within, floor, digits
        self._climbing = True
        self._misses = 0
        self._tries = 0  # of the rate now climbed
        self._rate: float | None = None

    @property
    def done(self) -> bool:
        return self.next_rate() is None

    def next_rate(self) -> float | None:
        """The rate to probe next, or None when the search is over."""
        if len(self.runs) >= self._limit:
            return None
        if self._climbing:
            if self._rate is None:
                self._rate = next(self._rates, None)
                if self._rate is None:
                    self._climbing = False
                    return self.next_rate()
            return self._rate
        return self._middle()

    def record(self, run: Judged[R]) -> None:
        """The judged run at the rate :meth:`next_rate` gave."""
        self.runs.append(run)
        if not self._climbing:
            self._refine -= 1
            return
        self._tries += 1
        if not run.passed and run.retry and self._tries <= self._retries:
            return  # the same rate once more
        self._misses = 0 if run.passed else self._misses + 1
        self._rate, self._tries = None, 0
        if self._misses >= self._misses_to_stop:
            self._climbing = False

    @property
    def bracket(self) -> tuple[float | None, float | None]:
        """(highest passing rate below the lowest failing one, lowest failing rate); None where there is none."""
        passed, failed = bracketing(self.runs)
        return (passed.rate if passed else None), (failed.rate if failed else None)

    def _middle(self) -> float | None:
        passed, failed = self.bracket
        if self._within is not None:
            if failed is None:
                return None
            if passed is None:
                lower = float(round(failed / 2, self._digits))
                return lower if lower >= self._floor and lower < failed else None
            if failed <= passed * (1 + self._within):
                return None
            middle = float(round(math.sqrt(passed * failed), self._digits))
        else:
            if self._refine <= 0 or passed is None or failed is None:
                return None
            middle = float(round((passed + failed) / 2, self._digits))
        return middle if passed is not None and passed < middle < failed else None


def search(
    probe: Probe[R],
    rates: Iterable[float],
    *,
    misses_to_stop: int = 1,
    retries: int = 0,
    max_runs: int | None = None,
    refine: int = 0,
    within: float | None = None,
    floor: float = 1.0,
    digits: int = -1,
) -> list[Judged[R]]:
    """Every run of one search (:class:`Search`), in the order made."""
    steps: Search[R] = Search(
        rates,
        misses_to_stop=misses_to_stop,
        retries=retries,
        max_runs=max_runs,
        refine=refine,
        within=within,
        floor=floor,
        digits=digits,
    )
    while (rate := steps.next_rate()) is not None:
        steps.record(probe(rate))
    return steps.runs


def interleave(searches: Mapping[str, Search[R]], probe: Callable[[str, float], Judged[R]], order: Order) -> None:
    """Run several searches in rounds: each round probes the next rate of every unfinished search once, in the order
    ``order`` gives for that round (a shuffle, for randomized interleaving)."""
    while unfinished := [name for name, steps in searches.items() if not steps.done]:
        for name in order(unfinished):
            rate = searches[name].next_rate()
            if rate is not None:
                searches[name].record(probe(name, rate))


def bracketing(runs: Iterable[Judged[R]]) -> tuple[Judged[R] | None, Judged[R] | None]:
    """(the passing run at the highest rate below the lowest failing one, the failing run at the lowest rate); None
    where there is none. The last run at a rate decides it: a miss tried again that passed, passed."""
    runs = list({run.rate: run for run in runs}.values())
    failed = [run for run in runs if not run.passed]
    low_fail = min(failed, key=lambda run: run.rate) if failed else None
    passed = [run for run in runs if run.passed and (low_fail is None or run.rate < low_fail.rate)]
    return (max(passed, key=lambda run: run.rate) if passed else None), low_fail


def highest_passing(runs: Sequence[Judged[R]]) -> Judged[R] | None:
    """The passing run at the highest rate (the first of equals), or None when none passed."""
    passed = [run for run in runs if run.passed]
    return max(passed, key=lambda run: run.rate) if passed else None
