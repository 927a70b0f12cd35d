"""Scaling: sustainable throughput against replicas (measured, and the Universal Scalability Law fitted to the steps
and drawn beyond them as a model), CPU and memory at each step, and which process saturates; its verdict rows are the
throughput per added replica, per mix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from bench.common import usl
from bench.common.names import SCALING_MIXES
from bench.report import charts
from bench.report.context import COMPONENT_ORDER, Context, scaling_anchor
from bench.report.format import MIB, coefficient, num, plural, ratio_text, rounded, signed
from bench.report.sections.common import SCALING, topo
from bench.report.view import INVALID, Cell, Content, Figure, Fill, Metric, Part, Row, Section, Span, Table, table, text

#: The model is drawn out to this many times the most replicas measured, and at least to MODEL_MIN_REPLICAS.
MODEL_REACH: Final = 4.0
MODEL_MIN_REPLICAS: Final = 8.0


def scaling_model(ctx: Context) -> pd.DataFrame:
    """The ``scaling_model`` table as the run wrote it, else fitted here from ``scaling`` by the same function."""
    model = ctx.table("scaling_model")
    return model if not model.empty else usl.model_frame(ctx.table("scaling"))


def scaling_mixes(ctx: Context) -> list[str]:
    seen = [str(m) for m in ctx.table("scaling").get("mix", pd.Series(dtype=str)).unique()]
    return [m for m in SCALING_MIXES if m in seen] + [m for m in seen if m not in SCALING_MIXES]


def scaling_topologies(ctx: Context) -> list[str]:
    seen = {str(t) for t in ctx.table("scaling").get("topology", pd.Series(dtype=str)).unique()}
    return [t for t in ctx.topologies if t in seen]


def scaling_rows(ctx: Context, topology: str, mix: str) -> pd.DataFrame:
    """One topology's steps of one mix, by replicas."""
    scaling = ctx.table("scaling")
    if scaling.empty:
        return scaling
    return scaling[(scaling["topology"] == topology) & (scaling["mix"] == mix)].sort_values("replicas")


def model_row(models: pd.DataFrame, topology: str, mix: str) -> pd.Series | None:
    if models.empty:
        return None
    rows = models[(models["topology"] == topology) & (models["mix"] == mix)]
    return rows.iloc[0] if len(rows) else None


def replica_noun(scaled: str) -> str:
    """A monolith scales by workers (processes of the one app), a service by replicas."""
    return "worker" if scaled == "monolith" else "replica"


def replicas_text(count: int, scaled: str) -> str:
    """``2 workers`` (the monolith), ``2 replicas of inventory`` (a service)."""
    said = plural(count, replica_noun(scaled))
    return said if scaled == "monolith" else f"{said} of {scaled}"


def scaling_invalid(rows: pd.DataFrame) -> tuple[str, ...]:
    """The anchors of the invalid steps among ``rows`` (of ``scaling``)."""
    bad = rows[~rows["valid"].astype(bool)]
    return tuple(scaling_anchor(str(r["topology"]), str(r["mix"]), int(r["replicas"])) for _, r in bad.iterrows())


def peak_text(model: pd.Series | None, noun: str) -> str:
    """Where the fitted model peaks, said as a model's figure."""
    if model is None or str(model["kind"]) == "none":
        return "too few points for a model"
    peak = float(model["peak_n"])
    if math.isinf(peak):
        return "the model does not peak (κ = 0)"
    rate = usl.model_of(model).predict(peak)
    return f"the model peaks at {num(peak)} {noun}s ({num(rate)} req/s)"


def scaling_fill(mix: str) -> Fill:
    """Per topology, in ``mix``: throughput from the fewest to the most replicas measured, per added replica, and
    where the fitted model peaks."""

    def fill(ctx: Context) -> dict[str, Cell]:
        models = scaling_model(ctx)
        out = {}
        for topology in ctx.topologies:
            rows = scaling_rows(ctx, topology, mix)
            if len(rows):
                out[topology] = scaling_cell(rows, model_row(models, topology, mix))
        return out

    return fill


def scaling_cell(rows: pd.DataFrame, model: pd.Series | None) -> Cell:
    measured = rows[rows["sustainable_rps"].notna()]
    if measured.empty:
        return Cell(None, "no rate met the SLO at any replica count", scaling_invalid(rows))
    first, last = measured.iloc[0], measured.iloc[-1]
    ends = measured.iloc[[0, -1]]
    low, high = float(first["sustainable_rps"]), float(last["sustainable_rps"])
    n_low, n_high = int(first["replicas"]), int(last["replicas"])
    scaled = str(last["scaled"])
    at = replicas_text(n_high, scaled)
    shared = "; the load generator shared the SUT's CPUs" if ends["generator_shares_cpu"].astype(bool).any() else ""
    if n_high == n_low:
        return Cell(None, f"{low:,.0f} req/s at {at} (one step){shared}", scaling_invalid(ends))
    per = (high - low) / (n_high - n_low)
    start = f"{low:,.0f}" if n_low == 1 else f"{low:,.0f} req/s at {n_low}"
    said = (
        f"{signed(per)} req/s per added {replica_noun(scaled)}: {start} → {high:,.0f} req/s at {at} "
        f"({ratio_text(high / low)}); {peak_text(model, replica_noun(scaled))}{shared}"
    )
    return Cell(per, said, scaling_invalid(ends))


def model_curve(model: pd.Series | None, reach: float) -> list[tuple[float, float]]:
    """The fitted model from 1 replica to ``reach`` (nothing without a model)."""
    if model is None or str(model["kind"]) == "none":
        return []
    grid = np.linspace(1.0, reach, 64)
    return list(zip(grid.tolist(), usl.model_of(model).predict(grid).tolist(), strict=True))


def scaling_points(rows: pd.DataFrame, column: str, scale: float = 1.0) -> list[charts.ReplicaPoint]:
    return [
        charts.ReplicaPoint(float(r["replicas"]), float(r[column]) / scale, bool(r["valid"]))
        for _, r in rows.iterrows()
    ]


def throughput_panels(ctx: Context, models: pd.DataFrame) -> list[tuple[str, list[charts.ReplicaLine]]]:
    scaling = ctx.table("scaling")
    reach = max(MODEL_MIN_REPLICAS, MODEL_REACH * float(scaling["replicas"].max()))
    panels = []
    for mix in scaling_mixes(ctx):
        lines = [
            charts.ReplicaLine(
                topology,
                scaling_points(scaling_rows(ctx, topology, mix), "sustainable_rps"),
                model_curve(model_row(models, topology, mix), reach),
            )
            for topology in scaling_topologies(ctx)
            if len(scaling_rows(ctx, topology, mix))
        ]
        panels.append((f"{mix} mix", lines))
    return panels


def memory_lines(ctx: Context, column: str) -> list[charts.ReplicaLine]:
    """Per topology, ``column`` (bytes) against replicas, the higher of the mixes at each replica count."""
    scaling, lines = ctx.table("scaling"), []
    for topology in scaling_topologies(ctx):
        mine = scaling[scaling["topology"] == topology]
        per = mine.groupby("replicas").agg(value=(column, "max"), valid=("valid", "all")).reset_index()
        lines.append(charts.ReplicaLine(topology, scaling_points(per, "value", MIB)))
    return lines


def model_table(ctx: Context, models: pd.DataFrame) -> Table:
    header = ["topology", "mix", "model", "λ req/s", "σ", "κ", "points", "peak", "RMSE req/s", "note"]
    rows = []
    for topology in scaling_topologies(ctx):
        for mix in scaling_mixes(ctx):
            model, steps = model_row(models, topology, mix), scaling_rows(ctx, topology, mix)
            if model is None or steps.empty:
                continue
            noun = replica_noun(str(steps["scaled"].iloc[-1]))
            rows.append(
                (
                    topo(topology),
                    text(mix),
                    text(model["kind"]),
                    text(num(float(model["lambda_rps"]))),
                    text(coefficient(float(model["sigma"]))),
                    text(coefficient(float(model["kappa"]))),
                    text(int(model["points"])),
                    text(peak_text(model, noun).removeprefix("the model ")),
                    text(rounded(float(model["rmse_rps"]))),
                    text(model["note"]),
                )
            )
    return table(header, rows, left=2, text=(2, 7, 9))


def steps_table(ctx: Context) -> Table:
    header = [
        "topology",
        "mix",
        "replicas",
        "CPUs",
        "scaled",
        "sustainable req/s",
        "CPU µs/request",
        "processes",
        "RSS, all MiB",
        "RSS per replica MiB",
        "generator on SUT CPUs",
        "valid",
        "note",
    ]
    rows = []
    for topology in scaling_topologies(ctx):
        for mix in scaling_mixes(ctx):
            for _, r in scaling_rows(ctx, topology, mix).iterrows():
                valid, rate = bool(r["valid"]), float(r["sustainable_rps"])
                cells = (
                    topo(topology),
                    text(mix),
                    text(int(r["replicas"])),
                    text(int(r["cpus"])),
                    text(r["scaled"]),
                    text(num(rate)) if math.isfinite(rate) else (Span("no rate met the SLO", "nm"),),
                    text(num(float(r["cpu_per_request_us"]))),
                    text(int(r["processes"])),
                    text(num(float(r["rss_total_bytes"]) / MIB)),
                    text(num(float(r["rss_per_replica_bytes"]) / MIB)),
                    text("yes" if bool(r["generator_shares_cpu"]) else "no"),
                    text("yes") if valid else INVALID,
                    (Span(str(r.get("note", "") or ""), "desc"),),
                )
                anchor = scaling_anchor(topology, mix, int(r["replicas"]))
                rows.append(Row(cells, anchor, "" if valid else "invalid"))
    return table(header, rows, left=2, text=(4, len(header) - 1), css="wide")


def saturation_table(ctx: Context) -> Table | None:
    processes = ctx.table("scaling_processes")
    if processes.empty:
        return None
    found = [str(c) for c in processes["component"].unique()]
    components = [c for c in COMPONENT_ORDER if c in found] + sorted(set(found) - set(COMPONENT_ORDER))
    header = ["topology", "mix", "replicas", "busiest process", *components]
    rows = []
    for topology in scaling_topologies(ctx):
        for mix in scaling_mixes(ctx):
            mine = processes[(processes["topology"] == topology) & (processes["mix"] == mix)]
            for replicas, step in mine.groupby("replicas", sort=True):
                rows.append((topo(topology), text(mix), text(replicas), *saturation_cells(step, components)))
    return table(header, rows, left=2, text=(3,))


def saturation_cells(step: pd.DataFrame, components: list[str]) -> list[Content]:
    busiest = step.sort_values("cpu_share", kind="stable").iloc[-1]
    cells: list[Content] = [(Span(str(busiest["process"]), "b"), Span(f" {float(busiest['cpu_share']):.0%}"))]
    for component in components:
        mine = step[step["component"] == component]
        count = f" ({len(mine)})" if len(mine) > 1 else ""
        cells.append(text(f"{float(mine['cpu_share'].sum()):.0%}{count}" if len(mine) else "—"))
    return cells


@dataclass(frozen=True)
class Scaling:
    shared_steps: int
    steps: int
    throughput: Figure
    panels: tuple[tuple[str, list[charts.ReplicaLine]], ...]
    models: Table
    memory: Figure
    table: Table
    saturation: Table | None
    model_label: str = charts.MODEL_LABEL
    command: str = SCALING


def scaling(ctx: Context) -> Scaling:
    models = scaling_model(ctx)
    panels = throughput_panels(ctx, models)
    throughput = charts.svg_of(
        charts.replicas_chart(panels, "sustainable throughput (req/s)", "replicas / workers"),
        "scaling",
        "sustainable throughput against replicas, measured and modelled",
    )
    memory = charts.svg_of(
        charts.replicas_chart(
            [
                ("all processes of the system under test (peak RSS)", memory_lines(ctx, "rss_total_bytes")),
                ("per replica of the scaled component (mean peak RSS)", memory_lines(ctx, "rss_per_replica_bytes")),
            ],
            "MiB",
            "replicas / workers",
        ),
        "scaling-memory",
        "memory against replicas",
    )
    shared = ctx.table("scaling")["generator_shares_cpu"].astype(bool)
    return Scaling(
        int(shared.sum()),
        len(shared),
        Figure(throughput, "scaling"),
        tuple(panels),
        model_table(ctx, models),
        Figure(memory, "scaling-memory"),
        steps_table(ctx),
        saturation_table(ctx),
    )


PART = Part(
    sections=(
        Section(
            "scaling",
            "Scaling: throughput against replicas, measured and modelled",
            scaling,
            "scaling.html.j2",
            ("scaling",),
            SCALING,
        ),
    ),
    metrics=tuple(
        Metric(
            "Scaling",
            f"throughput per added replica / worker, scaling only what saturates ({mix} mix)",
            ("scaling",),
            SCALING,
            scaling_fill(mix),
            rank=1,
        )
        for mix in SCALING_MIXES
    ),
)
