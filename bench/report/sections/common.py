"""What the section modules share: the commands that measure each experiment, and small builders of cells."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import pandas as pd

from bench.report import charts, rounds
from bench.report.context import Context
from bench.report.rounds import Over
from bench.report.view import Cell, Content, Span, text

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


def round_cells(overs: Mapping[str, Over], show: Callable[[float], str], unit: str, missing: str) -> dict[str, Cell]:
    """The cells of a figure over rounds (:mod:`bench.report.rounds`): the value in ``unit`` and its interval, numbers
    shown by ``show`` ("1,002 µs (990–2,000)"), the ratio to the monolith paired per round with its interval, what
    the figure is (``basis``) and the invalid runs it comes from; ``missing`` where no round could carry it."""
    out = {}
    for topology, value in overs.items():
        if not value.n:
            out[topology] = Cell(None, missing)
            continue
        out[topology] = Cell(
            value.value,
            value.text(show, unit),
            value.invalid,
            ratio=value.ratio_text(),
            wide=value.wide,
            basis=value.basis,
        )
    return out


def estimate_cells(
    ctx: Context,
    figure: str,
    frame: pd.DataFrame,
    show: Callable[[float], str],
    unit: str,
    missing: str = "no round could carry it",
) -> dict[str, Cell] | None:
    """The cells of a figure of the network experiment over its rounds (``frame``: a per-round frame in the unit of
    the cell's value, see :mod:`bench.report.rounds`): the ``estimates`` table's median, interval and paired ratio
    where the run estimated ``figure``, else the same computed from ``frame``. None when the run has no rounds and no
    estimate of ``figure`` (an older run: the caller reads its single run)."""
    if not rounds.measured_in_rounds(ctx) and rounds.estimated(ctx, figure) is None:
        return None
    overs = rounds.figure_over(ctx, figure, frame)
    return round_cells(overs, show, unit, missing) if overs else None


def over_content(value: Over | None, show: Callable[[float], str], *, dim: bool = False) -> Content:
    """A figure over rounds in a table's cell: the value (grey when ``dim``), then in small text its interval and, when
    some rounds could not carry it, how many did ("0.51 (0.49–0.55) 2 of 3 rounds"); "—" without a value."""
    if value is None or not value.n:
        return text("—")
    spans = [Span(show(value.value), "nm" if dim else "")]
    if value.interval(show):
        spans.append(Span(value.interval(show), "sub"))
    if value.n < value.rounds:
        spans.append(Span(f"{value.n} of {value.rounds} rounds", "sub"))
    return tuple(spans)
