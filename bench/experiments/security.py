"""The cost of security isolation: the same load with every access check on and off, per topology.

With auth on, the edge checks an API key on every public request and every service checks the caller's HMAC
credential and its right to call that endpoint; with auth off, nothing is checked. The difference in latency and in CPU
per request is what the isolation costs on this machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.common.names import PLACEMENT, SECURITY, STEPS
from bench.common.stats import successes
from bench.experiments.context import RunContext
from bench.experiments.experiment import Experiment, Progress, Tables, each_topology, rows_where_invalid
from bench.experiments.network import QUICK as QUICK_NETWORK
from bench.experiments.network import measure
from bench.load.loadgen import LoadSpec
from bench.load.workload import ShopWorkload
from bench.system.deploy import deploy, placement
from bench.system.resources import cpu_per_request


@dataclass(frozen=True, kw_only=True)
class SecurityParams:
    """Rates in requests per second, durations in seconds. The seed and the catalog come from the run's context."""

    # The same load as the network experiment's low phase, so that its auth-on measurement can be reused.
    rate: float = 200.0
    duration: float = 2.0
    warmup: float = 0.5
    mix: str = "default"

    def planned_seconds(self) -> float:
        return 2 * (self.warmup + self.duration + 3.0)

    def load(self) -> dict[str, Any]:
        """This experiment's load, named as the columns of a row of the network experiment's ``steps`` table."""
        return {"target_rate": self.rate, "duration": self.duration, "warmup": self.warmup, "mix": self.mix}


# The quick network low phase's load, so that its low-phase trial is reused (taken from it, not kept beside it).
QUICK_SECURITY = SecurityParams(
    rate=QUICK_NETWORK.low_rate, duration=QUICK_NETWORK.low_duration, warmup=QUICK_NETWORK.warmup
)


def same_load(security: SecurityParams, low: Mapping[str, Any]) -> bool:
    """Whether the network experiment's low-phase run (its row of ``steps``, or
    :meth:`bench.experiments.network.NetworkParams.low_load`) is the measurement this experiment would make with auth
    on: the same rate, duration, warm-up and mix (the seed and the catalog are the run's)."""
    return all(low.get(key) == value for key, value in security.load().items())


def reusable(steps: pd.DataFrame | None, topology: str, params: SecurityParams) -> dict[str, Any] | None:
    """The network experiment's low-phase row of ``topology`` when it measured the same load, else None."""
    if steps is None:
        return None
    low = steps[(steps["topology"] == topology) & (steps["phase"] == "low")]
    if low.empty:
        return None
    row = {str(k): v for k, v in low.iloc[0].items()}
    return row if same_load(params, row) else None


def run_topology(
    context: RunContext, topology: str, params: SecurityParams, progress: Progress
) -> dict[str, pd.DataFrame]:
    """Measure the topology with the checks off, and on unless the network experiment already measured that.

    The network experiment's low-phase row (in ``context.measured``) is reused when it ran with the same rate,
    duration, warm-up and mix (see :func:`same_load`): the same deployment kind under the same load.
    """
    auth_on = reusable(context.measured.get(STEPS), topology, params)
    seed, run_dir = context.seed, context.runs / f"{topology}-security"
    rows = []
    placed = None
    for auth in (False, True):
        if auth and auth_on is not None:
            keys = ("p50", "p99", "error_rate", "cpu_per_request_us", "valid", "invalid_reasons")
            rows.append({"topology": topology, "auth": True, "rate": params.rate, **{k: auth_on[k] for k in keys}})
            continue
        progress(f"{topology}: auth {'on' if auth else 'off'}", params.warmup + params.duration + 3.0)
        with deploy(
            topology,
            run_dir / ("auth" if auth else "open"),
            seed=seed,
            cpus=context.sut_cpus,
            stack=context.stack,
            auth=auth,
        ) as d:
            workload = ShopWorkload(
                seed.users, seed.products, mix=params.mix, seed=seed.seed, auth_headers=d.auth_headers
            )
            spec = LoadSpec(
                rate=params.rate, duration=params.duration, warmup=params.warmup, seed=seed.seed, arrival="poisson"
            )
            run = measure(d, workload, spec, "security", int(auth))
            placed = placement(d)
        summary = run.result.summary()
        per_request = cpu_per_request(run.usage, successes(run.result.to_frame()))
        rows.append(
            {
                "topology": topology,
                "auth": auth,
                "rate": params.rate,
                "p50": summary["p50"],
                "p99": summary["p99"],
                "error_rate": summary["error_rate"],
                "cpu_per_request_us": per_request["total"] * 1e6,
                "valid": run.result.valid,
                "invalid_reasons": "; ".join(run.result.invalid_reasons),
            }
        )
    tables = {SECURITY: pd.DataFrame(rows)}
    if placed is not None:
        tables[PLACEMENT] = placed
    return tables


def planned_seconds(context: RunContext, params: SecurityParams) -> float:
    return len(context.topologies) * params.planned_seconds()


def invalid_runs(tables: Tables) -> list[dict[str, Any]]:
    return [
        {
            "experiment": "security",
            "topology": row["topology"],
            "run": f"auth {'on' if row['auth'] else 'off'}",
            "reasons": row["invalid_reasons"],
        }
        for row in rows_where_invalid(tables, SECURITY)
    ]


EXPERIMENT = Experiment(
    name="security",
    help="the cost of the access checks: the same load with them off and on",
    params=SecurityParams(),
    quick=QUICK_SECURITY,
    reads=(STEPS,),
    planned_seconds=planned_seconds,
    run=each_topology(run_topology),
    invalid_runs=invalid_runs,
)
