"""Synthetic tables of the scaling and deployment experiments, shaped as bench.experiments.scaling and .deployment
write them."""

from __future__ import annotations

import pandas as pd

MIB = 2**20
#: (topology, mix, scaled, [(replicas, sustainable_rps or NaN, valid)]) of the synthetic scaling experiment.
SCALING_STEPS = (
    ("monolith", "browse-heavy", "monolith", [(1, 1450.0, True), (2, 2610.0, True), (3, 3400.0, False)]),
    ("monolith", "checkout-heavy", "monolith", [(1, 620.0, True), (2, 1100.0, True)]),
    ("microservices", "browse-heavy", "gateway", [(1, 900.0, True), (2, 1500.0, True)]),
    ("microservices", "checkout-heavy", "inventory", [(1, 380.0, True), (2, 700.0, True), (3, float("nan"), True)]),
)
MICROSERVICES = ("gateway", "users", "inventory", "payments", "notifications", "orders")


def _scaling_processes(topology: str, mix: str, scaled: str, replicas: int) -> list[dict[str, object]]:
    """Per process: the scaled component's replicas share most of the CPU; the first replica is the busiest."""
    if topology == "monolith":
        names = [(f"monolith-{i}", "monolith") for i in range(1, replicas + 1)]
    else:
        names = [(f"{c}-{i}", c) for c in MICROSERVICES for i in range(1, (replicas if c == scaled else 1) + 1)]
    weights = [(3.0 if c == scaled else 1.0) + (0.5 if n.endswith("-1") else 0.0) for n, c in names]
    return [
        {
            "topology": topology,
            "mix": mix,
            "replicas": replicas,
            "process": name,
            "component": component,
            "cpu_seconds": 2.0 * weight,
            "cpu_share": weight / sum(weights),
            "peak_rss_bytes": (70 if topology == "monolith" else 45) * MIB,
        }
        for (name, component), weight in zip(names, weights, strict=True)
    ]


def _scaling_tables() -> dict[str, pd.DataFrame]:
    scaling, steps, processes = [], [], []
    for topology, mix, scaled, points in SCALING_STEPS:
        for replicas, rate, valid in points:
            per_process = 70 if topology == "monolith" else 45
            count = replicas if topology == "monolith" else 5 + replicas
            scaling.append(
                {
                    "topology": topology,
                    "mix": mix,
                    "replicas": replicas,
                    "cpus": replicas,
                    "scaled": scaled,
                    "sustainable_rps": rate,
                    "cpu_per_request_us": (610.0 if topology == "monolith" else 1480.0) + 15.0 * replicas,
                    "rss_total_bytes": count * per_process * MIB,
                    "rss_per_replica_bytes": float(per_process * MIB),
                    "processes": count,
                    "valid": valid,
                    "generator_shares_cpu": replicas == 3,
                    "note": "" if valid else "send lag p99 3.1 ms exceeds 1 ms (planted)",
                }
            )
            for target, met in ((500.0 * replicas, True), (800.0 * replicas, False)):
                steps.append(
                    {
                        "topology": topology,
                        "mix": mix,
                        "replicas": replicas,
                        "cpus": replicas,
                        "target_rate": target,
                        "achieved_rate": target,
                        "p50": 0.002,
                        "p99": 0.008 if met else 0.2,
                        "error_rate": 0.0,
                        "met_slo": met,
                        "valid": valid,
                        "invalid_reasons": "",
                        "cpu_per_request_us": 700.0,
                    }
                )
            if pd.notna(rate):  # a step that met the SLO somewhere has its processes measured there
                processes += _scaling_processes(topology, mix, scaled, replicas)
    return {
        "scaling": pd.DataFrame(scaling),
        "scaling_steps": pd.DataFrame(steps),
        "scaling_processes": pd.DataFrame(processes),
    }


#: (scenario, topology, component, replicas, errors per bin from the restart on, p99 during (s), valid)
RESTART_SCENARIOS = (
    ("monolith-1", "monolith", "monolith", 1, [30, 7], 1.9, True),
    ("monolith-n", "monolith", "monolith", 2, [0, 0], 0.041, True),
    ("single", "microservices", "inventory", 1, [12, 0], 0.64, False),
    ("rolling", "microservices", "inventory", 2, [0, 0], 0.018, True),
)
RESTART_AT = 8.0


def _deployment_tables() -> dict[str, pd.DataFrame]:
    rows, bins, events = [], [], []
    for scenario, topology, component, replicas, errors, p99_during, valid in RESTART_SCENARIOS:
        name = "monolith" if component == "monolith" else component
        for i in range(40):
            t = 0.5 * i
            k = int((t - RESTART_AT) / 0.5) if t >= RESTART_AT else -1
            disturbed = 0 <= k < len(errors)
            bins.append(
                {
                    "scenario": scenario,
                    "topology": topology,
                    "t": t,
                    "bin": 0.5,
                    "requests": 100,
                    "errors": errors[k] if disturbed else 0,
                    "p50": 0.003,
                    "p99": p99_during if disturbed else 0.009,
                }
            )
        for index in range(replicas):
            stop = RESTART_AT + 2.0 * index
            events.append({"scenario": scenario, "topology": topology, "t": stop, "event": f"stop {name}-{index + 1}"})
            events.append(
                {"scenario": scenario, "topology": topology, "t": stop + 0.3, "event": f"{name}-{index + 1} stopped"}
            )
            events.append(
                {"scenario": scenario, "topology": topology, "t": stop + 1.2, "event": f"{name}-{index + 1} ready"}
            )
        failed = sum(errors)
        rows.append(
            {
                "scenario": scenario,
                "topology": topology,
                "component": component,
                "replicas": replicas,
                "description": f"{scenario} restart of {component} under load (synthetic)",
                "rate": 200.0,
                "requests": 4000,
                "errors_during": failed,
                "error_rate_during": failed / 200.0,
                "p50_before": 0.003,
                "p99_before": 0.009,
                "p99_during": p99_during,
                "max_during": p99_during * 1.5,
                "restart_seconds": 1.2 + 2.0 * (replicas - 1),
                "time_to_steady_s": 1.0,
                "valid": valid,
                "invalid_reasons": "" if valid else "achieved 97% of the target rate (planted)",
            }
        )
    return {
        "deployment": pd.DataFrame(rows),
        "deployment_timeline": pd.DataFrame(bins),
        "deployment_events": pd.DataFrame(events),
    }


def scaling_deployment_tables() -> dict[str, pd.DataFrame]:
    """The tables of the scaling and deployment experiments, synthetic, with exactly the contract's columns (no
    ``scaling_model``: the report fits it when the run did not write it)."""
    return _scaling_tables() | _deployment_tables()
