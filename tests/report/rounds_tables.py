"""Synthetic tables of the network experiment measured in rounds, shaped as bench.experiments.network writes them:
low-load rounds (``steps`` with a ``round``, ``ops``, ``resources``), the knee search and its re-check rounds
(``knee``), and the ``estimates`` the experiment computes from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pandas as pd

from bench.experiments.estimates import estimates
from tests.report.views import write

MIB: Final = 2**20
TOPOLOGIES: Final = ("monolith", "colocated", "microservices")
PROCESSES: Final = {"monolith": ("monolith",), "colocated": ("colocated",), "microservices": ("gateway", "orders")}
SLO: Final = 0.05
#: Per topology and low-load round: CPU per request (µs), p50 of all operations (s), total peak RSS (MiB).
CPU: Final = {
    "monolith": (400.0, 440.0, 420.0),
    "colocated": (600.0, 700.0, 650.0),
    "microservices": (1500.0, 1400.0, 1600.0),
}
P50: Final = {
    "monolith": (0.00050, 0.00060, 0.00055),
    "colocated": (0.00070, 0.00080, 0.00075),
    "microservices": (0.00120, 0.00110, 0.00130),
}
RSS: Final = {"monolith": (50.0, 51.0, 52.0), "colocated": (53.0, 58.0, 54.0), "microservices": (290.0, 292.0, 295.0)}
#: colocated's round 1 is an invalid run, and the round of its largest peak RSS.
INVALID_LOW: Final = {("colocated", 1)}
#: The generator's own lag voided the monolith's p50s in round 1 (all operations and checkout).
VOIDED: Final = {("monolith", 1)}
#: The knee per topology: (round, low rate, high rate, low p99, high p99, crossing, bound).
KNEE: Final = {
    "monolith": [
        (0, 4900.0, 5400.0, 0.030, 0.090, 5100.0, ""),
        (1, 4800.0, 5300.0, 0.080, 0.120, 4800.0, "below"),
        (2, 5000.0, 5500.0, 0.040, 0.060, 5300.0, ""),
    ],
    "colocated": [
        (0, 2260.0, 2470.0, 0.022, 0.190, 2340.0, ""),
        (1, 2200.0, 2400.0, 0.030, 0.070, 2330.0, ""),
        (2, 2300.0, 2500.0, 0.020, 0.040, 2500.0, "above"),
    ],
    "microservices": [
        (0, 1130.0, 1230.0, 0.023, 0.054, 1220.0, ""),
        (1, 1100.0, 1200.0, 0.030, 0.060, 1160.0, ""),
        (2, 1150.0, 1250.0, 0.025, 0.052, 1240.0, ""),
    ],
}
#: The microservices' lowest failing probe of the search is an invalid run; the monolith's re-check probe at 5,500
#: req/s is invalid and has the largest peak RSS of the run (memory must not come from it).
INVALID_PROBES: Final = {("microservices", 0, 1230.0), ("monolith", 2, 5500.0)}
ROUND_SEARCH_RATES: Final = (800.0, 1600.0)


def _run(topology: str, phase: str, step: int, round_: float, rate: float, **figures: Any) -> dict[str, Any]:
    p50 = float(figures.pop("p50"))
    p99 = float(figures.pop("p99"))
    valid = bool(figures.pop("valid", True))
    return {
        "topology": topology,
        "phase": phase,
        "step": step,
        "round": round_,
        "target_rate": rate,
        "offered_rate": rate,
        "achieved_rate": rate,
        "connections": 40,
        "requests": int(figures.pop("requests", 600)),
        "send_lag_p99": 0.0002,
        "p50": p50,
        "p90": 2 * p50,
        "p99": p99,
        "p99.9": 1.2 * p99,
        "p99.99": 1.3 * p99,
        "max": 1.4 * p99,
        "error_rate": float(figures.pop("error_rate", 0.0)),
        "valid": valid,
        "invalid_reasons": "" if valid else "the generator dispatched 97% of the requests on time (planted)",
        "voided_percentiles": str(figures.pop("voided", "")),
        "cpu_seconds": figures.pop("cpu_seconds"),
        "cpu_per_request_us": figures.pop("cpu"),
        "peak_rss_bytes": figures.pop("rss"),
        "mix": "default",
    }


def _resources(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's processes: the first takes two thirds of the CPU, the memory is split evenly."""
    names = PROCESSES[row["topology"]]
    shares = [1.0] if len(names) == 1 else [2 / 3, 1 / 3]
    return [
        {
            "topology": row["topology"],
            "phase": row["phase"],
            "step": row["step"],
            "target_rate": row["target_rate"],
            "process": name,
            "cpu_seconds": row["cpu_seconds"] * share,
            "cpu_per_request_us": row["cpu_per_request_us"] * share,
            "peak_rss_bytes": row["peak_rss_bytes"] / len(names),
            "exited": False,
        }
        for name, share in zip(names, shares, strict=True)
    ]


def _ops(row: dict[str, Any], voided: bool) -> list[dict[str, Any]]:
    out = []
    for op, factor, count in (("checkout", 2.0, 80), ("browse", 1.0, 200)):
        p50 = row["p50"] * factor
        out.append(
            {
                "op": op,
                "count": count,
                "errors": 0,
                "error_rate": 0.0,
                "p50": p50,
                "p90": 2 * p50,
                "p99": 4 * p50,
                "p99.9": 4 * p50,
                "p99.99": 4 * p50,
                "max": 4 * p50,
                "lag_p50": 0.5 * p50 if voided else 0.01 * p50,
                "lag_p99": 0.01 * p50,
                "topology": row["topology"],
                "phase": "low",
                "step": row["step"],
            }
        )
    return out


def rounds_tables() -> dict[str, pd.DataFrame]:
    """Every table of a network experiment measured in three rounds, with the planted cases above."""
    steps, ops, resources, knee = [], [], [], []
    for topology in TOPOLOGIES:
        runs = []
        for index in range(3):
            voided = (topology, index) in VOIDED
            runs.append(
                _run(
                    topology,
                    "low",
                    index,
                    float(index),
                    200.0,
                    p50=P50[topology][index],
                    p99=10 * P50[topology][index],
                    valid=(topology, index) not in INVALID_LOW,
                    voided="p50,p90" if voided else "",
                    cpu=CPU[topology][index],
                    cpu_seconds=CPU[topology][index] * 600 / 1e6,
                    rss=RSS[topology][index] * MIB,
                )
            )
            ops += _ops(runs[-1], voided)
        step = 3
        for rate in ROUND_SEARCH_RATES:
            p99 = 0.010 if rate < KNEE[topology][0][1] else 0.300
            runs.append(
                _run(
                    topology,
                    "sweep",
                    step,
                    0.0,
                    rate,
                    p50=p99 / 4,
                    p99=p99,
                    cpu=300.0,
                    cpu_seconds=0.2,
                    rss=(RSS[topology][2] + 2) * MIB,
                )
            )
            step += 1
        for number, low_rate, high_rate, low_p99, high_p99, crossing, bound in KNEE[topology]:
            phase = "sweep" if number == 0 else "knee"
            for rate, p99 in ((low_rate, low_p99), (high_rate, high_p99)):
                valid = (topology, number, rate) not in INVALID_PROBES
                rss = (RSS[topology][2] + (40 if not valid else 3)) * MIB
                runs.append(
                    _run(
                        topology,
                        phase,
                        step,
                        float(number),
                        rate,
                        p50=p99 / 3,
                        p99=p99,
                        valid=valid,
                        cpu=250.0,
                        cpu_seconds=0.3,
                        rss=rss,
                    )
                )
                step += 1
            knee.append(
                {
                    "topology": topology,
                    "round": number,
                    "low_rate": low_rate,
                    "high_rate": high_rate,
                    "low_p99": low_p99,
                    "high_p99": high_p99,
                    "sustainable_rps": crossing,
                    "bound": bound,
                }
            )
        runs.append(
            _run(
                topology,
                "traced",
                0,
                float("nan"),
                50.0,
                p50=0.001,
                p99=0.002,
                requests=15,
                cpu=900.0,
                cpu_seconds=0.01,
                rss=RSS[topology][0] * MIB,
            )
        )
        steps += runs
        resources += [r for run in runs for r in _resources(run)]
    tables = {
        "steps": pd.DataFrame(steps),
        "ops": pd.DataFrame(ops),
        "resources": pd.DataFrame(resources),
        "knee": pd.DataFrame(knee),
    }
    tables["estimates"] = estimates(tables, TOPOLOGIES)
    return tables


def write_rounds(target: Path, without: tuple[str, ...] = ()) -> Path:
    """A results directory of a network run in rounds (the tables ``without`` left out)."""
    tables = {name: frame for name, frame in rounds_tables().items() if name not in without}
    network = {"low_rate": 200.0, "rounds": 3, "recheck_rounds": 2, "slo_p99": SLO, "error_budget": 0.001}
    return write(target, tables, TOPOLOGIES, ("network",), network=network, slo_p99=SLO, error_budget=0.001)
