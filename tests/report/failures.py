"""Synthetic tables of the failure experiment, computed by its own functions from synthetic per-request records, on
top of a copy of the golden directory."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from bench.experiments.failure import FailureParams, impact, per_second
from bench.system.audit import CHECKS
from bench.system.faults import FaultPlan
from plumbing.topology import TOPOLOGIES
from tests.report.conftest import copy_golden

QUICK = FailureParams(
    rate=100.0,
    before=1.0,
    window=1.5,
    after=1.5,
    warmup=0.5,
    faults=(FaultPlan("kill", "payments"), FaultPlan("error", "payments", 0.5), FaultPlan("latency", "inventory", 0.2)),
)
OPS = ("browse", "product", "user", "checkout", "order")
#: The SLO the run shares with every experiment (recorded beside the failure parameters, as a run does).
SLO_P99 = 0.050


def requests_of(topology: str, plan: FaultPlan, params: FailureParams) -> pd.DataFrame:
    """Synthetic per-request records, shaped as the load generator's: a steady mix, hurt during the fault window as
    that fault would hurt that topology."""
    start = params.warmup + params.before
    end = start + params.window
    count = int(params.rate * (params.warmup + params.before + params.window + params.after))
    rows = []
    for i in range(count):
        intended = i / params.rate
        op = OPS[i % len(OPS)]
        latency, error = 0.002, ""
        if start <= intended < end:
            if plan.kind == "kill" and (topology != "microservices" or op in ("user", "checkout")):
                error = "refused"
            elif plan.kind == "error" and op == "checkout" and i % 2:
                error = "5xx"
            elif plan.kind == "latency" and op in ("browse", "product", "checkout"):
                latency += plan.value
        rows.append(
            {"op": op, "intended": intended, "done": intended + latency, "error": error, "warmup": intended < 0.5}
        )
    return pd.DataFrame(rows)


def failure_tables(params: FailureParams, *, anomaly: tuple[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """The three tables of the failure experiment (one resilience profile, so no ``profile`` column); the
    ``(topology, fault)`` of ``anomaly`` gets an audit that never became consistent. Colocated's error run is
    invalid."""
    timelines, impacts, audits = [], [], []
    start = params.warmup + params.before
    for topology in TOPOLOGIES:
        for index, plan in enumerate(params.faults):
            frame = requests_of(topology, plan, params)
            timeline = per_second(frame, start, start + params.window)
            timelines.append(timeline.assign(topology=topology, fault=plan.name))
            invalid = topology == "colocated" and plan.kind == "error"
            impacts.append(
                {
                    "topology": topology,
                    "fault": plan.name,
                    "kind": plan.kind,
                    "target": plan.target,
                    **impact(frame, start, start + params.window, params, SLO_P99),
                    "restart_seconds": 0.25 + 0.125 * TOPOLOGIES.index(topology) if plan.kind == "kill" else math.nan,
                    "load_valid": not invalid,
                    "load_invalid_reasons": "send lag p99 9.9 ms exceeds 1 ms (planted)" if invalid else "",
                }
            )
            broken = (topology, plan.name) == anomaly
            audits.append(
                {
                    "topology": topology,
                    "fault": plan.name,
                    "consistent": not broken,
                    "convergence_seconds": math.nan if broken else 0.004 + 0.25 * index,
                    **{f"anomalies_{name}": 2 if broken and name == "wallet_balances" else 0 for name in CHECKS},
                    "orders_confirmed": 35 + index,
                    "orders_rejected": 7,
                    "orders_pending": 0,
                }
            )
    return {
        "failure_timeline": pd.concat(timelines, ignore_index=True),
        "failure_impact": pd.DataFrame(impacts),
        "consistency": pd.DataFrame(audits),
    }


def with_failure(target: Path, *, anomaly: tuple[str, str] | None = None, drop: tuple[str, ...] = ()) -> Path:
    """A copy of the golden directory with the synthetic failure tables and parameters, less the tables in
    ``drop``."""
    copy = copy_golden(target)
    for name, frame in failure_tables(QUICK, anomaly=anomaly).items():
        frame.to_parquet(copy / f"{name}.parquet", index=False)
    meta = json.loads((copy / "meta.json").read_text())
    meta["parameters"]["failure"] = asdict(QUICK) | {"slo_p99": SLO_P99}
    meta["parameters"]["experiments"] = ["network", "failure"]
    (copy / "meta.json").write_text(json.dumps(meta))
    for name in drop:
        (copy / f"{name}.parquet").unlink()
    return copy
