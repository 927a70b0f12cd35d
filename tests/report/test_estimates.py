"""Verdict cells of figures measured in rounds: the median with its interval and the paired ratio to the monolith."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.common.names import ESTIMATES
from bench.experiments.estimates import estimates
from tests.report.conftest import copy_golden
from tests.report.views import context, texts, verdict

TOPOLOGIES = ("monolith", "colocated", "microservices")


def knee(rates: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"topology": topology, "round": index, "sustainable_rps": rate}
        for topology, values in rates.items()
        for index, rate in enumerate(values)
    ]
    return pd.DataFrame(rows)


def low_rounds(cpu: dict[str, list[float]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    steps, ops = [], []
    for topology, values in cpu.items():
        for index, value in enumerate(values):
            steps.append(
                {
                    "topology": topology,
                    "phase": "low",
                    "step": index,
                    "valid": True,
                    "requests": 1000,
                    "p50": value / 1e6,
                    "p99": 10 * value / 1e6,
                    "cpu_per_request_us": value,
                }
            )
            ops.append({"topology": topology, "phase": "low", "step": index, "op": "checkout", "p50": value / 5e5})
    return pd.DataFrame(steps), pd.DataFrame(ops)


def with_estimates(tmp_path: Path, table: pd.DataFrame) -> Path:
    copy = copy_golden(tmp_path / "golden")
    table.to_parquet(copy / f"{ESTIMATES}.parquet")
    return copy


def test_ratios_are_paired_per_round_and_shown_with_their_interval(tmp_path: Path) -> None:
    # Round 2 was slow for everyone: the paired ratio stays steady where the medians alone would swing.
    cpu = {
        "monolith": [1000.0, 1010.0, 2000.0, 990.0, 1005.0, 1000.0],
        "colocated": [1500.0, 1510.0, 3000.0, 1480.0, 1500.0, 1505.0],
        "microservices": [3000.0, 3030.0, 6000.0, 2970.0, 3010.0, 3000.0],
    }
    steps, ops = low_rounds(cpu)
    rates = {"monolith": [2000.0] * 6, "colocated": [1000.0] * 6, "microservices": [500.0] * 6}
    table = estimates({"steps": steps, "ops": ops, "knee": knee(rates)}, TOPOLOGIES)
    ctx = context(with_estimates(tmp_path, table))
    view = verdict(ctx)

    cpu_row = view.row("CPU per successful request, all processes, at low load")
    assert texts(cpu_row)["monolith"] == "1,002 µs (990–2,000)"  # interval shown beside the median
    assert cpu_row.figures is not None
    ratio = cpu_row.figures["microservices"]
    assert ratio is not None
    assert ratio.ratio == "×3.00 (3.00–3.00) vs monolith"
    assert cpu_row.figures["monolith"] is not None
    assert cpu_row.figures["monolith"].ratio == "baseline"

    throughput = view.row("sustainable throughput")
    assert texts(throughput)["colocated"] == "1,000 req/s (1,000–1,000)"
    # The slow round widens the medians' intervals (the page says so), not the paired ratios'.
    assert view.wide
    cpu_estimates = table[table["figure"] == "cpu_per_request_us"].set_index("topology")
    assert bool(cpu_estimates.loc["monolith", "wide"])
    assert not bool(cpu_estimates.loc["microservices", "ratio_wide"])


def test_a_wide_interval_is_called_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    cpu = {t: list(rng.uniform(500, 1500, 6)) for t in TOPOLOGIES}
    steps, ops = low_rounds(cpu)
    table = estimates({"steps": steps, "ops": ops}, TOPOLOGIES)
    view = verdict(context(with_estimates(tmp_path, table)))
    assert view.wide


def test_an_older_run_without_estimates_shows_its_single_runs(golden: Path) -> None:
    view = verdict(context(golden))
    assert not view.wide
    assert "(" not in texts(view.row("CPU per successful request, all processes, at low load"))["monolith"]


def test_a_fitted_sustainable_throughput_says_so_in_the_verdict_and_the_knee_table(tmp_path: Path) -> None:
    steps, ops = low_rounds({t: [1000.0, 1010.0, 990.0] for t in TOPOLOGIES})
    probes = []
    for topology, knee_rate in (("monolith", 4000.0), ("colocated", 2000.0), ("microservices", 1000.0)):
        for factor, noise in ((0.85, 0.1), (0.92, -0.1), (1.0, 0.2), (1.08, -0.2), (1.16, 0.0)):
            rate = knee_rate * factor
            probes.append(
                {
                    "topology": topology,
                    "phase": "sweep",
                    "step": 10,
                    "round": 0,
                    "valid": True,
                    "target_rate": rate,
                    "requests": 1000,
                    "p50": 0.001,
                    "p99": 0.05 * factor**4 * np.exp(noise),
                    "error_rate": 0.0,
                }
            )
    tables = {"steps": pd.concat([steps, pd.DataFrame(probes)], ignore_index=True), "ops": ops}
    tables["knee"] = knee({"monolith": [3900.0], "colocated": [2050.0], "microservices": [1020.0]})
    table = estimates(tables, TOPOLOGIES, (0.05, 0.001))
    view = verdict(context(with_estimates(tmp_path, table)))
    throughput = view.row("sustainable throughput")
    assert throughput.basis == "fit over 5 probes near the knee, 95% bootstrap interval"
    assert view.fitted
    assert throughput.figures is not None
    micro = throughput.figures["microservices"]
    assert micro is not None
    assert micro.ratio.startswith("×0.25 (")
