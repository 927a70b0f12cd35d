"""Method and environment: how the harness measures, how to reproduce the run, the machine, every parameter the run
recorded, and every network run with its validity (the rows the flags of the page link to)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.common.machine import COMPARABLE_WAKEUP, MachineNoise, machine_noise
from bench.common.meta import ExperimentSeconds, Params, recorded
from bench.report.context import Context, Fault, step_anchor, strength_label
from bench.report.format import ms, num
from bench.report.sections.common import topo
from bench.report.view import INVALID, Part, Row, Section, Span, Table, table, text

Pairs = tuple[tuple[str, str | None], ...]


def shown(value: object) -> str | None:
    """A recorded value as the key-value tables show it ("—" for nothing)."""
    return None if value is None or value == "" else str(value)


def listing(params: Params | None) -> Pairs:
    """The parameters a run recorded, lists joined by commas."""
    return tuple((k, shown(", ".join(map(str, v)) if isinstance(v, list) else v)) for k, v in recorded(params))


@dataclass(frozen=True)
class Parameters:
    experiment: str
    pairs: Pairs


@dataclass(frozen=True)
class Method:
    command: str
    git_commit: str | None
    scaling_method: bool
    deployment_method: bool
    hardware: Pairs
    pinning: Pairs
    left: tuple[Parameters, ...]
    network: Parameters | None
    validity: Table | None
    #: How noisy the machine was over the trials (empty when no trial recorded it).
    machine: Pairs = ()
    machine_note: str = ""
    #: Whether the run judged the generator's lag figure by figure (its ``steps`` record voided percentiles): the
    #: page then gives that rule for an invalid run, else the older one.
    lag_per_figure: bool = False


def failure_parameters(ctx: Context) -> Parameters | None:
    pairs: list[tuple[str, Any]] = [(k, v) for k, v in recorded(ctx.meta.parameters.failure) if k != "faults"]
    if (not pairs and not ctx.fault_specs()) or not ctx.ran("failure"):
        return None
    faults = ", ".join(strength_label(Fault(s.name), s) for s in ctx.fault_specs())
    return Parameters("failure", (*((k, shown(v)) for k, v in pairs), ("faults", faults)))


def experiment_parameters(ctx: Context, experiment: str, params: Params | None) -> Parameters | None:
    """The parameters meta records for ``experiment``, when this run made it."""
    pairs = listing(params)
    return Parameters(experiment, pairs) if pairs and ctx.ran(experiment) else None


def planned(seconds: ExperimentSeconds) -> str:
    """The plan of an experiment, and what it re-planned where that differs by a second or more."""
    again = seconds.replanned
    if again is None or abs(again - seconds.planned) < 1.0:
        return f"{seconds.planned:.0f}"
    return f"{seconds.planned:.0f}, re-planned {again:.0f}"


def wall_time(wall: float | None, experiments: Mapping[str, ExperimentSeconds]) -> str | None:
    """The run's wall time, and each experiment's against its plan (what the progress bar's estimate rested on)."""
    if wall is None:
        return None
    each = "; ".join(f"{name} {t.taken:.0f} s (planned {planned(t)})" for name, t in experiments.items())
    return f"{wall:.0f} s" + (f": {each}" if each else "")


def method(ctx: Context) -> Method:
    env, params = ctx.meta.environment, ctx.meta.parameters
    memory = env.memory_bytes
    packages = ", ".join(f"{k} {v}" for k, v in env.packages.items() if v)
    wall = ctx.meta.wall_seconds
    hardware = (
        ("CPU", shown(env.cpu_model)),
        ("cores", shown(env.cpu_count)),
        ("memory", f"{memory / 2**30:.1f} GiB" if memory else None),
        ("platform", shown(env.platform)),
        ("Python", shown(env.python)),
        ("packages", shown(packages)),
        ("git commit", shown(env.git_commit)),
        ("recorded at", shown(env.recorded_at)),
        ("wall time of the run", wall_time(wall, ctx.meta.experiment_seconds)),
    )
    pinning = (
        ("system under test on CPUs", shown(params.sut_cpus)),
        ("load generator on CPUs", shown(params.generator_cpus)),
        ("CPUs this process could use", shown(env.cpus_available)),
        ("inter-service HTTP client", shown(params.stack)),
        ("topologies", shown(", ".join(params.topologies or ctx.topologies))),
        ("experiments", shown(", ".join(params.experiments or []))),
        ("quick", shown(params.quick)),
    )
    left = (
        failure_parameters(ctx),
        experiment_parameters(ctx, "scaling", params.scaling),
        experiment_parameters(ctx, "deployment", params.deployment),
    )
    network = Parameters("network", listing(params.network)) if ctx.ran("network") else None
    return Method(
        env.command or "archbench run",
        env.git_commit,
        ctx.has("scaling"),
        ctx.has("deployment"),
        hardware,
        pinning,
        tuple(p for p in left if p is not None),
        network,
        validity_table(ctx),
        lag_per_figure="voided_percentiles" in ctx.table("steps"),
        machine=machine_pairs(noise := machine_noise(ctx.table("steps"))),
        machine_note=machine_note(noise),
    )


def machine_pairs(noise: MachineNoise | None) -> Pairs:
    """The machine's noise over the run's trials, as the environment's key-value table shows it."""
    if noise is None:
        return ()
    return (
        ("trials measured", f"{noise.trials}"),
        ("run again: the machine disturbed them", f"{noise.repeated}"),
        ("kept although disturbed (after the retries)", f"{noise.disturbed}"),
        ("CPU steal during a trial", f"median {noise.steal_median:.1%}, max {noise.steal_max:.1%}"),
        (
            "stall probe before a trial",
            f"median {noise.stall_lost_median:.2%} of it lost, worst stall {noise.worst_stall * 1e3:.1f} ms",
        ),
        (
            "idle wake-up latency (a 1 ms sleep's lateness)",
            f"median {noise.wakeup_median * 1e6:.0f} µs over the trials ({noise.wakeup_low * 1e6:.0f}–"
            f"{noise.wakeup_high * 1e6:.0f})",
        ),
    )


def machine_note(noise: MachineNoise | None) -> str:
    """How to read the machine's noise, where the run recorded it."""
    if noise is None:
        return ""
    return (
        f"Compare two runs only where their wake-up medians agree within {COMPARABLE_WAKEUP:.0%}: the shop's small "
        "requests pay the host's wake-ups, and the knees of a run moved with its median."
    )


def validity_table(ctx: Context) -> Table | None:
    steps = ctx.table("steps")
    if steps.empty:
        return None
    header = [
        "topology",
        "phase",
        "step",
        "target /s",
        "offered /s",
        "achieved /s",
        "requests",
        "conns",
        "send lag p99 ms",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU µs/req",
        "valid",
        "reasons",
    ]
    in_rounds = "round" in steps
    if in_rounds:
        header.insert(3, "round")
    rows = []
    order = {t: i for i, t in enumerate(ctx.topologies)}
    phases = {"low": 0, "traced": 1, "sweep": 2, "knee": 3}
    ranked = steps.assign(_t=steps["topology"].map(order), _p=steps["phase"].map(phases).fillna(9))
    for _, r in ranked.sort_values(["_t", "_p", "step"]).iterrows():
        valid = bool(r["valid"])
        round_ = r["round"] if in_rounds else None
        number = (text(int(round_) if pd.notna(round_) else "—"),) if in_rounds else ()
        cells = (
            topo(str(r["topology"])),
            text(r["phase"]),
            text(int(r["step"])),
            *number,
            text(num(float(r["target_rate"]))),
            text(num(float(r["offered_rate"]))),
            text(num(float(r["achieved_rate"]))),
            text(f"{int(r['requests']):,}"),
            text(int(r["connections"]) if "connections" in r else "—"),
            text(ms(float(r["send_lag_p99"]))),
            text(ms(float(r["p50"]))),
            text(ms(float(r["p99"]))),
            text(f"{float(r['error_rate']):.2%}"),
            text(num(float(r["cpu_per_request_us"]))),
            text("yes") if valid else INVALID,
            (Span(str(r.get("invalid_reasons", "") or ""), "why"),),
        )
        anchor = step_anchor(str(r["topology"]), str(r["phase"]), int(r["step"]))
        rows.append(Row(cells, anchor, "" if valid else "invalid"))
    return table(header, rows, left=2, text=(len(header) - 1,), css="wide")


PART = Part(sections=(Section("method", "Method and environment", method, "method.html.j2"),))
