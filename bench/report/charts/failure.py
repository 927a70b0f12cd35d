"""Charts of the failure experiment: availability per fault and operation, and per-second timelines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator

from bench.report.charts.style import INVALID_COLOR, _style, log_ticks, num, topology_color, topology_marker

# -- failure impact --------------------------------------------------------------------------------------------------

#: Availability bands of the heatmap, best first: (lowest availability of the band, fill, text colour, legend label).
#: The 99% line is the boundary of a healthy operation in the blast radius, so it is a band edge; lightness falls
#: monotonically with availability, which keeps the bands apart for colour-blind readers and in greyscale.
AVAILABILITY_BANDS: Final = (
    (0.999, "#e3f2dc", "#1d2330", "≥ 99.9%"),
    (0.99, "#fff2a8", "#1d2330", "99 – 99.9%"),
    (0.90, "#fdb863", "#1d2330", "90 – 99%"),
    (0.50, "#e8743b", "#1d2330", "50 – 90%"),
    (0.01, "#b8352a", "#ffffff", "1 – 50%"),
    (0.0, "#5e1414", "#ffffff", "< 1%"),
)
MISSING_COLOR: Final = "#eeeeee"
WINDOW_COLOR: Final = "#B00020"


def availability_text(value: float) -> str:
    """A share of successful requests as a percentage, rounded *down* so that a figure never looks healthier than it
    was (99.96% shows as 99.9%, 98.7% as 98%)."""
    if not math.isfinite(value):
        return "—"
    if value >= 1.0:
        return "100%"
    if value >= 0.99:
        return f"{math.floor(value * 1000) / 10:.1f}%"
    return f"{math.floor(value * 100):.0f}%"


def availability_band(value: float) -> tuple[str, str]:
    """(fill, text colour) of an availability in the heatmap."""
    if not math.isfinite(value):
        return MISSING_COLOR, "#555555"
    for lowest, fill, text, _ in AVAILABILITY_BANDS:
        if value >= lowest:
            return fill, text
    return AVAILABILITY_BANDS[-1][1], AVAILABILITY_BANDS[-1][2]


@dataclass(frozen=True)
class HeatCell:
    """One operation during one fault window: its share of successful requests and its p99 (seconds)."""

    availability: float
    p99: float = math.nan


@dataclass(frozen=True)
class FaultRow:
    """One fault's row of a heatmap panel: a cell per operation, and whether its load run was valid."""

    label: str
    cells: dict[str, HeatCell]
    valid: bool = True


@dataclass(frozen=True)
class Heatmap:
    """One topology's panel: a row per fault."""

    topology: str
    rows: list[FaultRow]


def availability_heatmap(panels: Sequence[Heatmap], ops: Sequence[str], slo_p99: float | None) -> Figure:
    """Fault x operation availability, one panel per topology on one colour scale, rows shared (every panel lists
    the same faults, labelled on the first); each cell annotated with its percentage, a cell whose p99 broke the SLO
    outlined and annotated with its p99, an invalid load run's row marked with a red cross."""
    rows = max((len(p.rows) for p in panels), default=1)
    with _style():
        fig = Figure(figsize=(11.0, 1.5 + 0.42 * rows), layout="constrained")
        axes = fig.subplots(1, max(len(panels), 1), squeeze=False, sharey=True)[0]
        for index, (ax, panel) in enumerate(zip(axes, panels, strict=False)):
            _heatmap_panel(ax, panel, ops, slo_p99, labels=index == 0)
        handles: list[Any] = [
            Patch(facecolor=fill, edgecolor="#bbbbbb", linewidth=0.5, label=label)
            for _, fill, _, label in AVAILABILITY_BANDS
        ]
        if slo_p99 is not None:
            handles.append(
                Patch(facecolor="white", edgecolor="#1d2330", linewidth=1.6, label=f"p99 over {slo_p99 * 1e3:g} ms")
            )
        handles.append(
            Line2D([], [], color=INVALID_COLOR, marker="x", markeredgewidth=2, linestyle="none", label="invalid run")
        )
        fig.legend(
            handles=handles,
            loc="outside upper center",
            ncols=len(handles),
            title="share of requests that succeeded during the fault window",
        )
    return fig


def _heatmap_panel(ax: Any, panel: Heatmap, ops: Sequence[str], slo_p99: float | None, labels: bool) -> None:
    for y, row in enumerate(panel.rows):
        for x, op in enumerate(ops):
            cell = row.cells.get(op, HeatCell(math.nan))
            fill, ink = availability_band(cell.availability)
            slow = slo_p99 is not None and math.isfinite(cell.p99) and cell.p99 > slo_p99
            ax.add_patch(Rectangle((x, y), 1, 1, facecolor=fill, edgecolor="white", linewidth=1.5))
            text = availability_text(cell.availability)
            if slow:  # outlined in the text's colour, so that it shows on the darkest fill too
                ax.add_patch(Rectangle((x + 0.07, y + 0.1), 0.86, 0.8, fill=False, edgecolor=ink, linewidth=1.4))
                text += "\n" + (f"{num(cell.p99)} s" if cell.p99 >= 1.0 else f"{num(cell.p99 * 1e3)} ms")
            ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", fontsize=7.5 if slow else 8.5, color=ink)
        if not row.valid:
            ax.plot([len(ops) + 0.25], [y + 0.5], marker="x", markersize=7, markeredgewidth=2, color=INVALID_COLOR)
    ax.set_xlim(0, len(ops) + 0.5)
    ax.set_ylim(len(panel.rows), 0)
    ax.set_xticks([x + 0.5 for x in range(len(ops))], list(ops), fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    ax.set_yticks([y + 0.5 for y in range(len(panel.rows))], [r.label for r in panel.rows])
    ax.tick_params(axis="y", labelleft=labels)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(panel.topology, loc="left", color=topology_color(panel.topology))


@dataclass(frozen=True)
class Series:
    """One topology's per-second figures during one fault run: bin starts (s), success ratio, p99 (s)."""

    topology: str
    seconds: list[float]
    success: list[float]
    p99: list[float]
    valid: bool = True


@dataclass(frozen=True)
class TimelineRow:
    """One fault: its label, its window (start, end in seconds of the load), and a series per topology for the whole
    mix and for checkout."""

    label: str
    window: tuple[float, float] | None
    mix: list[Series]
    checkout: list[Series]


TIMELINE_COLUMNS: Final = (
    ("mix", "success", "success ratio, whole mix"),
    ("mix", "p99", "p99 of the worst operation (ms, log)"),
    ("checkout", "success", "checkout success ratio"),
    ("checkout", "p99", "checkout p99 (ms, log)"),
)


def timeline_chart(rows: Sequence[TimelineRow], slo_p99: float | None) -> Figure:
    """Small multiples, a row per fault and a column per figure (success ratio and p99, whole mix and checkout), every
    topology overlaid, the fault window shaded; an invalid run is drawn dashed and named in its row's title."""
    end = max((s.seconds[-1] + 1.0 for r in rows for s in [*r.mix, *r.checkout] if s.seconds), default=1.0)
    with _style():
        fig = Figure(figsize=(11.0, 0.7 + 1.55 * len(rows)), layout="constrained")
        subfigs = fig.subfigures(len(rows), 1, squeeze=False)[:, 0]
        for index, (sub, row) in enumerate(zip(subfigs, rows, strict=True)):
            axes = sub.subplots(1, len(TIMELINE_COLUMNS))
            invalid = list(dict.fromkeys(s.topology for s in [*row.mix, *row.checkout] if not s.valid))
            title = row.label + (f"   ✗ invalid run: {', '.join(invalid)}" if invalid else "")
            sub.suptitle(
                title, x=0.0, ha="left", fontsize=9.5, fontweight="bold", color=INVALID_COLOR if invalid else "#1d2330"
            )
            for ax, (group, figure_name, column_title) in zip(axes, TIMELINE_COLUMNS, strict=True):
                series = row.mix if group == "mix" else row.checkout
                _timeline_panel(ax, series, figure_name, row.window, end, slo_p99)
                if index == 0:
                    ax.set_title(column_title, loc="left", fontsize=8.5, fontweight="normal")
                if index < len(rows) - 1:
                    ax.tick_params(labelbottom=False)
                else:
                    ax.set_xlabel("second of the load")
        handles: list[Any] = [
            Line2D([], [], color=topology_color(t), marker=topology_marker(t), markersize=4, label=t)
            for t in dict.fromkeys(s.topology for r in rows for s in r.mix)
        ]
        handles.append(Patch(facecolor=WINDOW_COLOR, alpha=0.12, label="fault window"))
        if slo_p99 is not None:
            handles.append(Line2D([], [], color="#444444", linestyle=":", label=f"SLO p99 {slo_p99 * 1e3:g} ms"))
        handles.append(Line2D([], [], color="#555555", linestyle="--", label="invalid run"))
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    return fig


def _timeline_panel(
    ax: Any,
    series: Sequence[Series],
    figure_name: str,
    window: tuple[float, float] | None,
    end: float,
    slo_p99: float | None,
) -> None:
    if window is not None:
        ax.axvspan(window[0], window[1], color=WINDOW_COLOR, alpha=0.12, linewidth=0)
    for offset, line in enumerate(series):
        values = line.success if figure_name == "success" else [v * 1e3 for v in line.p99]
        points = [(s + 0.5, v) for s, v in zip(line.seconds, values, strict=True) if math.isfinite(v)]
        if figure_name == "p99":
            points = [(x, max(v, 1e-3)) for x, v in points]
        if not points:
            continue
        ax.plot(
            [x for x, _ in points],
            [y for _, y in points],
            color=topology_color(line.topology),
            marker=topology_marker(line.topology),
            # A few markers per line tell the topologies apart without colour; one per point would make the
            # chart several times larger for nothing.
            markevery=(offset % 4, 4),
            markersize=3.5,
            linewidth=1.2,
            linestyle="-" if line.valid else "--",
        )
    ax.set_xlim(0, end)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.tick_params(length=0)  # the grid marks the values: tick marks would double every line of it
    if figure_name == "success":
        ax.set_ylim(-0.05, 1.05)
        ax.yaxis.set_major_locator(FixedLocator([0.0, 0.5, 1.0]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:.0%}"))
    else:
        ax.set_yscale("log")
        log_ticks(ax.yaxis)
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
        if slo_p99 is not None:
            ax.axhline(slo_p99 * 1e3, color="#444444", linestyle=":", linewidth=1.0)
