"""The efficiency targets of the harness issue, measured on the same pinned core in one run.

``python -m bench.calibration.efficiency [--json FILE] [--step SECONDS]``

* sustainable throughput (p99 <= SLO, errors < 0.1%, valid run) of a bare starlette hello world, of the monolith's
  catalog page (browse-only mix) and of its checkout (checkout-only mix): the ratios to the hello world;
* CPU per checkout, microservices vs monolith, at the same moderate rate;
* peak RSS of all the processes of each topology.

A benchmark, not a test: the figures go in notes, the machine being shared and noisy. Ratios come from one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.calibration.hops import server_spec
from bench.common.stats import successes
from bench.experiments.network import metered_run
from bench.load.loadgen import LoadSpec, Workload
from bench.load.search import Judged, highest_passing, rising, search
from bench.load.workload import HelloWorkload, ShopWorkload
from bench.system.deploy import deploy
from bench.system.resources import cpu_per_request, default_cpu_split, pin_self
from bench.system.supervisor import Supervisor, shutdown_on_signals
from shop.seed import SeedSpec

SLO = 0.050
ERROR_BUDGET = 0.001


@dataclass
class Point:
    rate: float
    achieved: float
    p99: float
    error_rate: float
    valid: bool
    cpu_us_per_request: float
    peak_rss_bytes: int

    @property
    def passes(self) -> bool:
        return self.valid and self.p99 <= SLO and self.error_rate < ERROR_BUDGET

    @property
    def why(self) -> str:
        """Why the point does not pass ("" when it does)."""
        reasons = [
            *([] if self.valid else ["invalid run"]),
            *([] if self.p99 <= SLO else [f"p99 {self.p99 * 1e3:.1f} ms over the SLO"]),
            *([] if self.error_rate < ERROR_BUDGET else [f"error rate {self.error_rate:.2%}"]),
        ]
        return "; ".join(reasons)


def measure(url: str, pids: dict[str, int], workload: Workload, rate: float, step: float) -> Point:
    spec = LoadSpec(rate=rate, duration=step, warmup=0.5, seed=1, timeout=2.0)
    result, usage = metered_run(url, pids, workload, spec)
    summary = result.summary()
    per_request = cpu_per_request(usage, successes(result.to_frame()))
    return Point(
        rate,
        summary["achieved_rate"],
        summary["p99"],
        summary["error_rate"],
        result.valid,
        per_request["total"] * 1e6,
        sum(u.peak_rss_bytes for u in usage.values()),
    )


def sweep(url: str, pids: dict[str, int], make: Callable[[], Workload], start: float, step: float) -> list[Point]:
    """Rates from ``start`` up by 30% until two in a row fail; a fresh workload per step."""

    def probe(rate: float) -> Judged[Point]:
        point = measure(url, pids, make(), rate, step)
        print(
            f"  {rate:8.0f} req/s: p99 {point.p99 * 1e3:7.2f} ms, valid {point.valid}, "
            f"CPU {point.cpu_us_per_request:6.0f} us/req",
            file=sys.stderr,
        )
        return Judged(rate, point.passes, point.why, point)

    ladder = rising(start, 1.3, digits=-1, maximum=40_000)
    return [judged.result for judged in search(probe, ladder, misses_to_stop=2)]


def sustainable(points: Sequence[Point]) -> float | None:
    best = highest_passing([Judged(p.rate, p.passes, p.why, p) for p in points])
    return best.rate if best is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.calibration.efficiency", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--step", type=float, default=3.0, help="measured seconds per rate (default 3)")
    parser.add_argument("--checkout-rate", type=float, default=200.0, help="rate for CPU per checkout (default 200)")
    args = parser.parse_args(argv)
    sut, gen = default_cpu_split()
    pin_self(gen)
    seed = SeedSpec(products=1000, users=200)
    out: dict[str, Any] = {"slo_p99": SLO, "step_seconds": args.step, "sut_cpus": sorted(sut), "gen_cpus": sorted(gen)}
    with shutdown_on_signals(), tempfile.TemporaryDirectory(prefix="archbench-eff-") as tmp:
        print("hello world:", file=sys.stderr)
        with Supervisor(Path(tmp) / "hello") as sup:
            spec = server_spec("hello", ["hello"], sut)
            sup.start(spec)
            sup.wait_ready()
            hello = sweep(f"http://127.0.0.1:{spec.port}", sup.pids(), HelloWorkload, 4000, args.step)
        topo: dict[str, dict[str, Any]] = {}
        for topology in ("monolith", "microservices"):
            with deploy(topology, Path(tmp) / topology, seed=seed, cpus=sut) as d:
                pids = d.supervisor.pids()
                figures: dict[str, Any] = {}
                if topology == "monolith":
                    for op, start in (("browse", 1000.0), ("checkout", 300.0)):
                        print(f"monolith {op}:", file=sys.stderr)
                        points = sweep(
                            d.public_url,
                            pids,
                            partial(ShopWorkload, 200, 1000, mix={op: 1.0}, auth_headers=d.auth_headers),
                            start,
                            args.step,
                        )
                        figures[f"{op}_sustainable"] = sustainable(points)
                checkout = measure(
                    d.public_url,
                    pids,
                    ShopWorkload(200, 1000, mix={"checkout": 1.0}, auth_headers=d.auth_headers),
                    args.checkout_rate,
                    args.step,
                )
                figures["cpu_us_per_checkout"] = checkout.cpu_us_per_request
                figures["checkout_point_valid"] = checkout.valid
                figures["peak_rss_bytes"] = checkout.peak_rss_bytes
                topo[topology] = figures
    base = sustainable(hello)
    out["hello_sustainable"] = base
    out["topologies"] = topo
    mono = topo["monolith"]
    if base:
        out["browse_share_of_hello"] = (mono["browse_sustainable"] or 0) / base
        out["checkout_share_of_hello"] = (mono["checkout_sustainable"] or 0) / base
    out["cpu_per_checkout_ratio"] = topo["microservices"]["cpu_us_per_checkout"] / mono["cpu_us_per_checkout"]
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
