"""The network experiment's figures from rounds: the knee's crossing per round, and medians with paired ratios."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench.experiments.context import Slo
from bench.experiments.estimates import estimates, per_round
from bench.experiments.network import MeteredRun, NetworkParams, SideBySide, crossing, knee_rows, sustainable
from bench.load.loadgen import LoadResult, LoadSpec, schedule
from bench.load.search import Judged, Search
from bench.system.resources import Usage

SLO = Slo(p99=0.050, error_budget=0.001)


def probe(rate: float, latency: float, failed: int = 0, round_: int = 0) -> MeteredRun:
    """A 2-second probe at ``rate`` whose requests all took ``latency`` seconds; ``failed`` of them got a 5xx."""
    spec = LoadSpec(rate=rate, duration=2.0, warmup=0.0, arrival="constant")
    intended = schedule(spec)
    n = len(intended)
    errors = np.array(["5xx" if i < failed else "" for i in range(n)], dtype=object)
    records = {
        "op": np.array(["browse"] * n, dtype=object),
        "intended": intended,
        "dispatched": intended.copy(),
        "sent": intended.copy(),
        "done": intended + latency,
        "status": np.where(errors == "", 200, 500),
        "error": errors,
        "warmup": np.zeros(n, dtype=bool),
    }
    return MeteredRun("knee", 0, LoadResult(spec, records, connections=8), {}, {"round": round_})


def test_the_crossing_is_interpolated_in_log_p99_between_a_pass_and_a_miss() -> None:
    estimate, bound = crossing(probe(1000, 0.010), probe(1100, 0.250), SLO)
    # log(50/10) / log(250/10) = 0.5: halfway between the two rates.
    assert estimate == pytest.approx(1050.0)
    assert bound == ""


def test_a_round_where_both_pass_or_the_lower_fails_gives_a_bound() -> None:
    assert crossing(probe(1000, 0.010), probe(1100, 0.020), SLO) == (1100, "above")
    assert crossing(probe(1000, 0.080), probe(1100, 0.250), SLO) == (1000, "below")
    assert crossing(probe(1000, 0.010), None, SLO) == (1000, "above")
    assert math.isnan(crossing(None, None, SLO)[0])


def test_a_miss_on_errors_alone_gives_the_lower_rate() -> None:
    assert crossing(probe(1000, 0.010), probe(1100, 0.010, failed=50), SLO) == (1000, "")


def rounds_tables() -> dict[str, pd.DataFrame]:
    steps, ops, knee = [], [], []
    factors = [1.0, 1.0, 1.6, 1.0]  # round 2: the host was busy for every topology
    cost = {"monolith": 1.0, "colocated": 1.5, "microservices": 3.0}
    for topology, c in cost.items():
        for index, slow in enumerate(factors):
            steps.append(
                {
                    "topology": topology,
                    "phase": "low",
                    "step": index,
                    "valid": not (topology == "colocated" and index == 3),  # the generator spoiled one trial
                    "requests": 300,
                    "p50": 0.001 * c * slow,
                    "p99": 0.005 * c * slow,
                    "cpu_per_request_us": 500 * c * slow,
                }
            )
            ops.append({"topology": topology, "phase": "low", "step": index, "op": "checkout", "p50": 0.002 * c})
            knee.append({"topology": topology, "round": index, "sustainable_rps": 3000 / c / slow})
    return {"steps": pd.DataFrame(steps), "ops": pd.DataFrame(ops), "knee": pd.DataFrame(knee)}


def test_estimates_are_medians_over_rounds_with_ratios_paired_per_round() -> None:
    table = estimates(rounds_tables(), ("monolith", "colocated", "microservices")).set_index(["figure", "topology"])
    cpu = table.loc[("cpu_per_request_us", "microservices")]
    assert cpu["n"] == 4
    assert cpu["value"] == pytest.approx(1500.0)
    assert (cpu["low"], cpu["high"]) == pytest.approx((1500.0, 2400.0))
    # Paired per round, the busy round cancels out: exactly 3.
    assert (cpu["ratio_value"], cpu["ratio_low"], cpu["ratio_high"]) == pytest.approx((3.0, 3.0, 3.0))
    assert not cpu["ratio_wide"]
    # An invalid trial's latency is left out of its topology's figure and of the pairs; its CPU time stands.
    assert table.loc[("p50_ms", "colocated"), "n"] == 3
    assert table.loc[("p50_ms", "colocated"), "ratio_n"] == 3
    assert table.loc[("cpu_per_request_us", "colocated"), "n"] == 4
    # p99 of 300 requests is not resolved: no figure.
    assert table.loc[("p99_ms", "monolith"), "n"] == 0
    knee = table.loc[("sustainable_rps", "colocated")]
    assert knee["ratio_value"] == pytest.approx(1 / 1.5)


def test_sustainable_throughput_comes_from_the_estimates_or_an_older_runs_sweep() -> None:
    tables = rounds_tables()
    table = estimates(tables, ("monolith", "colocated", "microservices"))
    rates = sustainable({"estimates": table}, SLO)
    assert rates["monolith"] == pytest.approx(3000.0)
    sweep = pd.DataFrame(
        [
            {"topology": "monolith", "phase": "sweep", "target_rate": r, "p99": p, "error_rate": 0.0, "valid": True}
            for r, p in ((500, 0.01), (1000, 0.02), (2000, 0.2))
        ]
    )
    assert sustainable({"steps": sweep}, SLO) == {"monolith": 1000.0}
    assert per_round({"steps": sweep}, "sustainable_rps").empty


def test_a_latency_the_generator_voided_is_left_out_and_cpu_kept() -> None:
    tables = rounds_tables()
    steps = tables["steps"].assign(valid=True, voided_percentiles="")
    steps.loc[(steps["topology"] == "monolith") & (steps["step"] == 1), "voided_percentiles"] = "max"
    steps.loc[(steps["topology"] == "monolith") & (steps["step"] == 2), "voided_percentiles"] = "p50,p90,max"
    # The checkouts are judged by their own requests' lag: round 1's were held 60% of their latency.
    ops = tables["ops"].assign(lag_p50=0.00001)
    ops.loc[(ops["topology"] == "monolith") & (ops["step"] == 1), "lag_p50"] = 0.6 * 0.002
    table = estimates(tables | {"steps": steps, "ops": ops}, ("monolith", "colocated", "microservices"))
    table = table.set_index(["figure", "topology"])
    assert table.loc[("p50_ms", "monolith"), "n"] == 3  # a voided max does not touch p50
    assert table.loc[("checkout_p50_ms", "monolith"), "n"] == 3
    assert table.loc[("cpu_per_request_us", "monolith"), "n"] == 4


def side_by_side(seed: int) -> SideBySide:
    side = SideBySide.__new__(SideBySide)  # only the parameters and the random source: nothing deployed
    side.params, side.rng = NetworkParams(), random.Random(seed)
    return side


def test_each_recheck_round_moves_the_bracket_by_a_random_factor_within_half_its_width() -> None:
    side = side_by_side(7)
    lows = []
    for _ in range(200):
        rates = sorted(side.dithered((1000.0, 1090.0)))
        assert len(rates) == 2
        assert rates[1] / rates[0] == pytest.approx(1.09, abs=0.002)  # the bracket keeps its width
        assert 1000 / 1.1**0.5 - 1 <= rates[0] <= 1000 * 1.1**0.5 + 1
        lows.append(rates[0])
    assert len(set(lows)) > 60  # whole req/s from 954 to 1048: spread between the ladder's steps, not snapped to them
    assert min(lows) < 970
    assert max(lows) > 1030
    assert len(side.dithered((1000.0, None))) == 1


def test_the_knee_rows_take_each_rounds_own_rates() -> None:
    search = Search[MeteredRun](iter([1000.0, 1100.0]), within=0.2, max_runs=2)
    search.record(Judged(1000.0, True, "", probe(1000, 0.010)))
    search.record(Judged(1100.0, False, "", probe(1100, 0.250)))
    assert search.bracket == (1000.0, 1100.0)
    runs = [
        probe(1000, 0.010),
        probe(1100, 0.250),
        probe(1063, 0.300, round_=1),  # the bracket moved up, and both missed
        probe(974, 0.010, round_=1),
        probe(1031, 0.010, round_=2),  # moved up, between a pass and a miss
        probe(1134, 0.250, round_=2),
    ]
    rows = knee_rows("monolith", search, runs, SLO)
    assert list(rows["round"]) == [0, 1, 2]
    assert list(rows["low_rate"]) == [1000, 974, 1031]
    assert list(rows["high_rate"]) == [1100, 1063, 1134]
    assert list(rows["bound"]) == ["", "", ""]
    estimate = rows.set_index("round")["sustainable_rps"]
    assert 1000 < estimate[0] < 1100
    assert 974 < estimate[1] < 1063
    assert 1031 < estimate[2] < 1134


def low_run(cpu_seconds: float) -> MeteredRun:
    """A low-load run of 400 successes (a 2-second probe at 200 req/s) that took ``cpu_seconds`` in one process."""
    run = probe(200, 0.001)
    return MeteredRun("low", 0, run.result, {"app": Usage(cpu_seconds=cpu_seconds, peak_rss_bytes=0)})


def test_the_knee_search_starts_at_the_rate_the_low_load_cpu_per_request_allows() -> None:
    side = side_by_side(1)
    side.context = SimpleNamespace(sut_cpus=frozenset({0}))  # type: ignore[assignment]
    side.runs = {"monolith": [low_run(0.2), low_run(0.3), low_run(0.4)]}  # median 750 us per request
    assert side.start_rate("monolith") == 1300.0  # 1 CPU / 750 us, two significant digits
    side.context = SimpleNamespace(sut_cpus=frozenset({0, 1}))  # type: ignore[assignment]
    assert side.start_rate("monolith") == 2700.0
    side.runs = {"monolith": [low_run(40.0)]}  # 100 ms per request: below the configured start
    assert side.start_rate("monolith") == NetworkParams().start_rate
    side.runs = {"monolith": [MeteredRun("low", 0, probe(200, 0.001).result, {})]}  # not metered (a target)
    assert side.start_rate("monolith") == NetworkParams().start_rate


def recheck_rates(knee: float, bracket: tuple[float | None, float | None], seed: int = 3) -> list[float]:
    """The rates one re-check round probes on a system that meets the SLO up to ``knee`` req/s."""
    side = side_by_side(seed)
    probed: list[float] = []

    def fake_probe(topology: str, rate: float) -> Judged[MeteredRun]:
        probed.append(rate)
        return Judged(rate, rate <= knee, "", probe(rate, 0.010 if rate <= knee else 0.250, round_=1))

    side.recheck("monolith", bracket, fake_probe)
    return probed


def test_a_recheck_round_whose_bracket_is_below_the_knee_steps_up_until_it_misses() -> None:
    rates = recheck_rates(1150.0, (1000.0, 1090.0))
    assert all(rate <= 1150 for rate in rates[:2])  # the dithered bracket (at most 1,144) met the SLO
    assert len(rates) in (3, 4)
    assert rates[-1] > 1150
    assert all(rate <= 1150 for rate in rates[:-1])
    assert rates[2] == pytest.approx(max(rates[:2]) * 1.09, abs=1)  # one bracket's width at a time


def test_a_recheck_round_whose_bracket_is_above_the_knee_steps_down_until_it_passes() -> None:
    rates = recheck_rates(880.0, (1000.0, 1090.0))
    assert rates[-1] <= 880
    assert all(rate > 880 for rate in rates[:-1])
    assert rates[2] == pytest.approx(min(rates[:2]) / 1.09, abs=1)


def test_recheck_steps_are_bounded_and_need_a_bracket_with_both_ends() -> None:
    assert len(recheck_rates(5000.0, (1000.0, 1090.0))) == 2 + NetworkParams().recheck_steps
    assert len(recheck_rates(10.0, (1000.0, 1090.0))) == 2 + NetworkParams().recheck_steps
    assert len(recheck_rates(5000.0, (1000.0, None))) == 1  # the search found no miss: nothing to step towards
    for seed in range(20):  # straddled at once: no step
        rates = recheck_rates(1040.0, (1000.0, 1090.0), seed)
        low, high = sorted(rates[:2])
        assert len(rates) == (2 if low <= 1040 < high else 3)


def test_a_round_that_stepped_on_is_estimated_from_its_own_pass_below_its_miss() -> None:
    search = Search[MeteredRun](iter([1000.0, 1100.0]), within=0.2, max_runs=2)
    search.record(Judged(1000.0, True, "", probe(1000, 0.010)))
    search.record(Judged(1100.0, False, "", probe(1100, 0.250)))
    runs = [
        probe(1000, 0.010),
        probe(1100, 0.250),
        probe(1010, 0.010, round_=1),  # both met the SLO, then the round stepped up to a miss
        probe(1111, 0.020, round_=1),
        probe(1211, 0.250, round_=1),
        probe(1030, 0.300, round_=2),  # both missed, stepped down twice, never passed
        probe(1133, 0.300, round_=2),
        probe(945, 0.300, round_=2),
        probe(867, 0.300, round_=2),
    ]
    rows = knee_rows("monolith", search, runs, SLO).set_index("round")
    assert (rows.loc[1, "low_rate"], rows.loc[1, "high_rate"], rows.loc[1, "bound"]) == (1111, 1211, "")
    assert 1111 < rows.loc[1, "sustainable_rps"] < 1211
    assert (rows.loc[2, "sustainable_rps"], rows.loc[2, "bound"]) == (867, "below")
