"""The sustainable throughput fitted to every probe near the knee: the line, what enters it, its bootstrap interval,
and why it replaced the median of the rounds' crossings (less spread from run to run on the same curve)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench.experiments import knee
from bench.experiments.context import Slo
from bench.experiments.estimates import estimates
from bench.experiments.network import QUICK, MeteredRun, SideBySide, knee_rows
from bench.load.search import Judged
from tests.bench.contexts import silent

SLO = Slo()


def steps(topology: str, probes: list[tuple[float, float]], errors: float = 0.0) -> pd.DataFrame:
    """Rows of ``steps`` for probes (rate, p99 in seconds), every one a sweep probe of round 0."""
    return pd.DataFrame(
        [
            {"topology": topology, "phase": "sweep", "round": 0, "target_rate": r, "p99": p, "error_rate": errors}
            for r, p in probes
        ]
    )


def on_the_line(knee_rate: float, power: float, rates: list[float], noise: list[float]) -> list[tuple[float, float]]:
    """Probes whose p99 follows SLO * (rate / knee) ** power, each moved by a factor exp(noise)."""
    return [(r, SLO.p99 * (r / knee_rate) ** power * math.exp(e)) for r, e in zip(rates, noise, strict=True)]


def test_the_line_through_the_probes_crosses_the_slo_at_the_knee() -> None:
    rates = [850.0, 900.0, 950.0, 1000.0, 1050.0, 1100.0, 1150.0]
    noise = [0.2, -0.3, 0.1, -0.1, 0.3, -0.2, 0.0]
    probes = knee.probes_near(
        steps("microservices", on_the_line(1000, 3.5, rates, noise)), "microservices", 1000, 0.05, 0.001
    )
    found = knee.estimate(probes)
    assert found.n == 7
    assert found.value == pytest.approx(1000, rel=0.05)
    assert found.low < 1000 < found.high
    assert found.coverage == pytest.approx(0.95)


def test_only_probes_near_the_rounds_crossing_enter_the_fit() -> None:
    near = on_the_line(1000, 3.5, [900.0, 1000.0, 1100.0], [0.0, 0.0, 0.0])
    far = [(400.0, 0.001), (2000.0, 0.400)]  # below the knee p99 hardly moves; above it the queue grows
    probes = knee.probes_near(steps("monolith", near + far), "monolith", 1000, 0.05, 0.001)
    assert sorted(np.exp(probes.log_rate).round()) == [900.0, 1000.0, 1100.0]


def test_a_miss_on_errors_counts_at_the_slo_and_a_flat_fit_gives_the_rounds_crossing() -> None:
    failing = knee.probes_near(
        steps("monolith", [(900.0, 0.01), (1000.0, 0.01)], errors=0.05), "monolith", 950, 0.05, 0.001
    )
    assert np.allclose(failing.log_p99, math.log(0.05))
    flat = knee.probes_near(
        steps("monolith", [(900.0, 0.03), (1000.0, 0.02), (1100.0, 0.01)]), "monolith", 990, 0.05, 0.001
    )
    assert knee.fitted(flat) == 990  # p99 does not rise with the rate: no line to cross
    two = knee.probes_near(steps("monolith", [(900.0, 0.03), (1000.0, 0.06)]), "monolith", 950, 0.05, 0.001)
    assert knee.fitted(two) == 950


def test_the_crossing_stays_within_the_rates_probed() -> None:
    passing = on_the_line(2000, 4.0, [900.0, 1000.0, 1100.0], [0.0, 0.0, 0.0])  # every probe met the SLO
    probes = knee.probes_near(steps("colocated", passing), "colocated", 1000, 0.05, 0.001)
    assert knee.fitted(probes) == pytest.approx(1100)


def test_estimates_fit_the_sustainable_throughput_when_the_slo_is_given() -> None:
    tables = {"steps": pd.DataFrame(), "knee": pd.DataFrame()}
    rows = []
    for topology, rate in (("monolith", 4000.0), ("microservices", 1000.0)):
        probes = on_the_line(rate, 4.0, [rate * f for f in (0.85, 0.92, 1.0, 1.08, 1.16)], [0.1, -0.1, 0.2, -0.2, 0.0])
        rows.append(steps(topology, probes))
    low = pd.DataFrame(
        [
            {
                "topology": t,
                "phase": "low",
                "step": 0,
                "round": 0,
                "p50": 0.001,
                "p99": 0.002,
                "requests": 200,
                "cpu_per_request_us": 500.0,
                "voided_percentiles": "",
            }
            for t in ("monolith", "microservices")
        ]
    )
    tables["steps"] = pd.concat([*rows, low], ignore_index=True)
    tables["knee"] = pd.DataFrame(
        [
            {"topology": "monolith", "round": 0, "sustainable_rps": 3900.0},
            {"topology": "microservices", "round": 0, "sustainable_rps": 1050.0},
        ]
    )
    tables["ops"] = pd.DataFrame(columns=["topology", "step", "phase", "op", "p50", "lag_p50"])
    fitted = estimates(tables, ("monolith", "microservices"), (SLO.p99, SLO.error_budget)).set_index(
        ["figure", "topology"]
    )
    micro = fitted.loc[("sustainable_rps", "microservices")]
    assert micro["method"] == "fit"
    assert micro["n"] == 5
    assert micro["ratio_value"] == pytest.approx(0.25, rel=0.06)
    assert micro["ratio_low"] < micro["ratio_value"] < micro["ratio_high"]
    assert fitted.loc[("cpu_per_request_us", "microservices"), "method"] == "median"
    by_rounds = estimates(tables, ("monolith", "microservices")).set_index(["figure", "topology"])
    assert by_rounds.loc[("sustainable_rps", "microservices"), "value"] == 1050.0  # no SLO: the rounds' median


@dataclass
class Probe:
    spec: SimpleNamespace
    p99: float

    def summary(self) -> dict[str, float]:
        return {"p99": self.p99, "p50": self.p99 / 8, "error_rate": 0.0}


def one_run(seed: int) -> tuple[float, float]:
    """One quick knee search and its re-check rounds on a curve crossing the SLO at 1,000 req/s (p99 as the 3.5th
    power of the rate, each probe's p99 moved by a factor exp(N(0, 0.35))): (median of the rounds, fit)."""
    side = object.__new__(SideBySide)
    side.params, side.rng = QUICK, random.Random(seed)
    side.context = SimpleNamespace(topologies=("microservices",))
    side.runs = {"microservices": []}
    side.progress = silent
    noise = np.random.default_rng(seed)

    def probe(phase: str, columns: dict[str, int]):
        def run(topology: str, rate: float) -> Judged[MeteredRun]:
            p99 = SLO.p99 * (rate / 1000) ** 3.5 * math.exp(noise.normal(0, 0.35))
            metered = MeteredRun(
                phase, len(side.runs[topology]), Probe(SimpleNamespace(rate=rate), p99), {}, dict(columns)
            )
            side.runs[topology].append(metered)
            return Judged(rate, p99 <= SLO.p99, "", metered)

        return run

    side.probe = probe  # type: ignore[method-assign]
    side.start_rate = lambda topology: 500.0  # type: ignore[method-assign]
    search = side.knee()["microservices"]
    rounds = knee_rows("microservices", search, side.runs["microservices"], SLO)
    median = float(rounds["sustainable_rps"].median())
    frame = pd.DataFrame(
        [
            {
                "topology": "microservices",
                "phase": r.phase,
                "target_rate": r.result.spec.rate,
                "p99": r.result.p99,
                "error_rate": 0.0,
            }
            for r in side.runs["microservices"]
        ]
    )
    return median, knee.fitted(knee.probes_near(frame, "microservices", median, SLO.p99, SLO.error_budget))


def test_the_fit_spreads_less_from_run_to_run_than_the_median_of_the_rounds() -> None:
    # The reason for the fit: on the same curve with the same noise, 60 quick searches.
    runs = np.array([one_run(seed) for seed in range(60)])
    spread = np.log(runs).std(axis=0)
    assert spread[1] < 0.85 * spread[0]
    assert np.median(runs[:, 1]) == pytest.approx(1000, rel=0.05)


def test_no_rounds_crossing_means_no_fit() -> None:
    probes = knee.probes_near(steps("monolith", [(900.0, 0.03), (1000.0, 0.06)]), "monolith", math.nan, 0.05, 0.001)
    assert probes.n == 0
    assert knee.estimate(probes).n == 0
    assert knee.ratio(probes, probes).n == 0
