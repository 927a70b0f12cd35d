"""What the section modules share: the commands that measure each experiment, and small builders of cells."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from bench.common.names import ESTIMATES
from bench.report import charts
from bench.report.context import Context
from bench.report.format import ratio_text
from bench.report.view import Cell, Content, Span

NETWORK: Final = "archbench run --experiments network"
FAILURE: Final = "archbench run --experiments failure"
SCALING: Final = "archbench run --experiments scaling"
DEPLOYMENT: Final = "archbench run --experiments deployment"
SECURITY: Final = "archbench run --experiments security"
SOAK: Final = "archbench run --experiments soak"
ANY: Final = "archbench run (any experiment)"
DEPLOY_FILES: Final = "archbench run (from the files in deploy/)"


def topo(topology: str) -> Content:
    """A topology's name with its colour's dot, as in every chart."""
    return (Span(topology, "topology", color=charts.topology_color(topology)),)


def valid_or(flags: Content) -> Content:
    """``yes``, or the flag of the invalid run."""
    return flags or (Span("yes"),)


def estimate_cells(ctx: Context, figure: str, show: Callable[[float], str], unit: str) -> dict[str, Cell] | None:
    """The cells of a figure the network experiment estimated over rounds (its ``estimates`` table): the median in
    ``unit`` and its interval, numbers shown by ``show`` ("1,002 µs (990–2,000)"), and the ratio to the monolith
    paired per round with its interval; None when the run has no such estimate (an older run, or no round could
    carry the figure: the caller reads its single run)."""
    estimates = ctx.table(ESTIMATES)
    if estimates.empty:
        return None
    out = {}
    rows = estimates[estimates["figure"] == figure].to_dict(orient="records")
    if not any(row["n"] for row in rows):
        return None
    for row in rows:
        if not row["n"]:
            out[str(row["topology"])] = Cell(None, "no round could carry it")
            continue
        text = f"{show(float(row['value']))} {unit}"
        if row["n"] > 1:
            text += f" ({show(float(row['low']))}–{show(float(row['high']))})"
        ratio = ""
        if row["ratio_n"] and math.isfinite(row["ratio_value"]):
            ratio = ratio_text(float(row["ratio_value"]))
            if row["ratio_n"] > 1:
                ratio += f" ({float(row['ratio_low']):.2f}–{float(row['ratio_high']):.2f})"
        wide = bool(row["wide"] or row["ratio_wide"])
        out[str(row["topology"])] = Cell(float(row["value"]), text, ratio=ratio, wide=wide)
    return out or None
