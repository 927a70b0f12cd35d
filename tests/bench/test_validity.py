"""A run's figures are voided by the generator's own lag only where that lag is a material share of them."""

from __future__ import annotations

import numpy as np

from bench.load.validity import judge, shown_percentiles

N = 2000


def run(latency: float, lag: float = 20e-6, wait: float = 0.0) -> tuple[np.ndarray, ...]:
    intended = np.arange(N) / 200.0
    dispatched = intended + lag
    sent = dispatched + wait
    return intended, dispatched, sent, sent + latency


def test_a_small_lag_beside_a_large_latency_voids_nothing() -> None:
    # 1 ms of scheduler lag at every request, latencies of 40 ms: 2.5% of every figure.
    verdict = judge(*run(0.040, lag=0.001))
    assert verdict.voided == {}
    assert verdict.valid


def test_a_generator_that_falls_behind_its_schedule_makes_an_invalid_run() -> None:
    # 20 ms late on every request: the load offered is not the one claimed, whatever the latency.
    verdict = judge(*run(1.0, lag=0.020))
    assert verdict.voided == {}  # 2% of a 1 s latency
    assert not verdict.valid
    assert "dispatched 0.0% of the requests within 10 ms" in verdict.reasons[0]


def test_the_same_lag_voids_a_small_latency_and_only_that_figure() -> None:
    verdict = judge(*run(0.002, lag=0.0009))
    assert set(verdict.voided) >= {"p50", "p99", "max"}
    assert verdict.valid  # the generator kept its schedule: each voided figure is left out where it is shown
    assert "p50: the generator's own lag 0.90 ms" in verdict.columns()["voided_reasons"]
    assert verdict.columns()["voided_percentiles"].split(",")[:1] == ["p50"]


def test_a_stall_of_the_generator_voids_only_the_tail_it_reaches() -> None:
    intended, dispatched, sent, done = run(0.010)
    stalled = slice(1000, 1004)  # 4 requests of 2000 held 8 ms by the generator
    dispatched[stalled] += 0.008
    sent[stalled] += 0.008
    done[stalled] += 0.008
    verdict = judge(intended, dispatched, sent, done)
    assert "max" in verdict.voided
    assert "p50" not in verdict.voided
    assert "p99" not in verdict.voided


def test_waiting_for_a_connection_is_an_overload_not_an_invalid_run() -> None:
    verdict = judge(*run(0.080, wait=0.030))
    assert verdict.valid
    assert verdict.overloaded
    assert "waited for a free connection" in verdict.overload_reason


def test_only_resolved_percentiles_are_judged() -> None:
    assert [name for name, _ in shown_percentiles(215)] == ["p50", "p90", "max"]
    assert [name for name, _ in shown_percentiles(1000)] == ["p50", "p90", "p99", "max"]


def test_an_empty_window_is_invalid() -> None:
    empty = np.array([], dtype=float)
    assert not judge(empty, empty, empty, empty).valid
