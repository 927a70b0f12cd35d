"""The cost of security isolation: the same load with every access check on and off, per topology.

With auth on, the edge checks an API key on every public request and every service checks the caller's HMAC
credential and its right to call that endpoint; with auth off, nothing is checked. The difference in latency and in CPU
per request is what the isolation costs on this machine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common.stats import successes
from bench.experiments.network import NetworkParams, measure
from bench.load.loadgen import LoadSpec
from bench.load.workload import ShopWorkload
from bench.system.deploy import deploy
from bench.system.resources import cpu_per_request
from shop.seed import SeedSpec

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class SecurityParams:
    # The same load as the network experiment's low phase, so that its auth-on measurement can be reused.
    rate: float = 200.0
    duration: float = 15.0
    warmup: float = 2.0
    mix: str = "default"
    seed: int = 1
    products: int = 1000
    users: int = 200

    def planned_seconds(self) -> float:
        return 2 * (self.warmup + self.duration + 3.0)


QUICK_SECURITY = SecurityParams(rate=100.0, duration=2.0, warmup=0.5)


def same_load(security: SecurityParams, network: NetworkParams) -> bool:
    """Whether the network experiment's low phase is the measurement this experiment would make with auth on."""
    return (security.rate, security.duration, security.warmup, security.mix, security.seed) == (
        network.low_rate,
        network.low_duration,
        network.warmup,
        network.mix,
        network.seed,
    ) and (security.products, security.users) == (network.products, network.users)


def run_topology(
    topology: str,
    params: SecurityParams,
    run_dir: Path,
    sut_cpus: frozenset[int] | None,
    stack: str,
    progress: Progress,
    auth_on: Mapping[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """Measure the topology with the checks off, and on unless ``auth_on`` already holds that measurement.

    ``auth_on`` is the network experiment's low-load summary row when it ran with the same rate, duration, warm-up,
    mix and seed (see :func:`same_load`): the same deployment kind under the same load, so it is reused.
    """
    rows = []
    seed = SeedSpec(seed=params.seed, products=params.products, users=params.users)
    for auth in (False, True):
        if auth and auth_on is not None:
            keys = ("p50", "p99", "error_rate", "cpu_per_request_us", "valid", "invalid_reasons")
            rows.append({"topology": topology, "auth": True, "rate": params.rate, **{k: auth_on[k] for k in keys}})
            continue
        progress(f"{topology}: auth {'on' if auth else 'off'}", params.warmup + params.duration + 3.0)
        with deploy(
            topology, run_dir / ("auth" if auth else "open"), seed=seed, cpus=sut_cpus, stack=stack, auth=auth
        ) as d:
            workload = ShopWorkload(
                params.users, params.products, mix=params.mix, seed=params.seed, auth_headers=d.auth_headers
            )
            spec = LoadSpec(
                rate=params.rate, duration=params.duration, warmup=params.warmup, seed=params.seed, arrival="poisson"
            )
            step = measure(d, workload, spec, "security", int(auth))
        summary = step.result.summary()
        per_request = cpu_per_request(step.usage, successes(step.result.to_frame()))
        rows.append(
            {
                "topology": topology,
                "auth": auth,
                "rate": params.rate,
                "p50": summary["p50"],
                "p99": summary["p99"],
                "error_rate": summary["error_rate"],
                "cpu_per_request_us": per_request["total"] * 1e6,
                "valid": step.result.valid,
                "invalid_reasons": "; ".join(step.result.invalid_reasons),
            }
        )
    return {"security": pd.DataFrame(rows)}
