"""Confidence intervals over rounds and the percentiles a sample resolves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.common.intervals import (
    median_interval,
    median_ranks,
    paired_ratio,
    percentile_interval,
    percentile_ranks,
    resolves,
    smallest_resolving_sample,
)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(3, (1, 3, 0.75)), (5, (1, 5, 0.9375)), (6, (1, 6, 0.96875)), (10, (2, 9, 0.978515625))],
)
def test_median_ranks_are_the_narrowest_pair_reaching_95_percent(n: int, expected: tuple[int, int, float]) -> None:
    lo, hi, coverage = median_ranks(n)
    assert (lo, hi) == expected[:2]
    assert coverage == pytest.approx(expected[2])


def test_few_rounds_say_what_their_interval_covers() -> None:
    estimate = median_interval([3.0, 1.0, 2.0])
    assert (estimate.value, estimate.low, estimate.high, estimate.n) == (2.0, 1.0, 3.0, 3)
    assert estimate.coverage == pytest.approx(0.75)
    assert estimate.text(".0f") == "2 (1–3)"


def test_the_median_interval_covers_the_true_median_as_often_as_it_says() -> None:
    rng = np.random.default_rng(7)
    samples = rng.exponential(1.0, size=(4000, 12))
    estimates = [median_interval(row) for row in samples]
    covered = np.mean([e.low <= math.log(2) <= e.high for e in estimates])
    assert covered >= estimates[0].coverage - 0.015  # 4000 trials: the binomial standard error is about 0.0025
    assert estimates[0].coverage >= 0.95


def test_ratios_are_paired_by_round_and_skip_missing_rounds() -> None:
    # Round 2's system was twice as slow for both: the paired ratio stays 2 in every round.
    estimate = paired_ratio([2.0, 4.0, 2.2, math.nan, 2.1], [1.0, 2.0, 1.1, 1.0, 1.05])
    assert estimate.n == 4
    assert estimate.value == pytest.approx(2.0)
    assert (estimate.low, estimate.high) == pytest.approx((2.0, 2.0))
    assert not estimate.wide


def test_a_wide_interval_is_flagged() -> None:
    assert median_interval([1.0, 2.0, 3.0]).wide
    assert not median_interval([100.0, 101.0, 99.0, 100.5, 99.5, 100.2]).wide
    assert median_interval([]).wide
    assert median_interval([]).text() == "-"


def test_a_p99_of_215_requests_is_not_resolved_and_one_of_1000_is() -> None:
    assert percentile_ranks(215, 99) is None
    assert not resolves(215, 99)
    lo, hi = percentile_ranks(1000, 99)  # type: ignore[misc]
    assert 980 < lo < 990 < hi <= 1000
    values = np.arange(1, 1001, dtype=float)
    assert percentile_interval(values, 99) == (float(lo), float(hi))
    assert percentile_interval(values[:215], 99) is None


def test_the_percentile_interval_covers_the_true_percentile() -> None:
    rng = np.random.default_rng(11)
    true_p90 = -math.log(0.1)  # exponential(1)
    hits = []
    for _ in range(2000):
        interval = percentile_interval(rng.exponential(1.0, 200), 90)
        assert interval is not None
        hits.append(interval[0] <= true_p90 <= interval[1])
    assert np.mean(hits) >= 0.94


@pytest.mark.parametrize("q", [50.0, 90.0, 99.0, 99.9])
def test_the_smallest_resolving_sample_is_the_boundary(q: float) -> None:
    n = smallest_resolving_sample(q)
    assert resolves(n, q)
    assert not resolves(n - 1, q)
