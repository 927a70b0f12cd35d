"""Charts against replicas (scaling, measured and modelled) and the timelines of restarts (deployment)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import LogLocator, MaxNLocator

from bench.report.charts.failure import WINDOW_COLOR
from bench.report.charts.style import INVALID_COLOR, _style, log_ticks, num, topology_color, topology_marker

# -- a figure against replicas (scaling) -----------------------------------------------------------------------------

MODEL_LABEL: Final = "model (USL), not measured"
EXTRAPOLATED_COLOR: Final = "#eef0f4"


@dataclass(frozen=True)
class ReplicaPoint:
    """One measured step: replicas (or workers) and the figure measured there; invalid runs are drawn hollow."""

    replicas: float
    value: float
    valid: bool = True


@dataclass(frozen=True)
class ReplicaLine:
    """One topology's steps, and its model as (replicas, value) pairs (empty: no model) drawn dashed."""

    topology: str
    points: list[ReplicaPoint]
    model: list[tuple[float, float]] = field(default_factory=list)


def replicas_chart(panels: Sequence[tuple[str, Sequence[ReplicaLine]]], ylabel: str, xlabel: str) -> Figure:
    """A figure against replicas, one panel per (title, lines): measured steps as markers on a solid line, the model
    as a dashed line labelled as a model, the replicas beyond the measured ones shaded (there is only the model)."""
    with _style():
        fig = Figure(figsize=(11.0, 3.9), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, lines) in zip(axes, panels, strict=True):
            _replicas_panel(ax, lines)
            ax.set_title(title, loc="left")
            ax.set_xlabel(xlabel)
        axes[0].set_ylabel(ylabel)
        topologies = dict.fromkeys(line.topology for _, lines in panels for line in lines)
        handles: list[Any] = [
            Line2D([], [], color=topology_color(t), marker=topology_marker(t), label=f"{t}, measured")
            for t in topologies
        ]
        if any(line.model for _, lines in panels for line in lines):
            handles.append(Line2D([], [], color="#555555", linestyle="--", label=MODEL_LABEL))
            handles.append(Patch(facecolor=EXTRAPOLATED_COLOR, label="beyond the measured replicas"))
        handles.append(
            Line2D([], [], color="#555555", marker="o", markerfacecolor="white", linestyle="none", label="invalid run")
        )
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    return fig


def _replicas_panel(ax: Any, lines: Sequence[ReplicaLine]) -> None:
    measured = [p.replicas for line in lines for p in line.points if math.isfinite(p.value)]
    modelled = [n for line in lines for n, _ in line.model]
    end = max([*measured, *modelled], default=1.0)
    if modelled and measured and end > max(measured):
        ax.axvspan(max(measured), end, color=EXTRAPOLATED_COLOR, linewidth=0, zorder=0)
    ends = sorted((line.model[-1][1] for line in lines if line.model), reverse=True)
    for line in lines:
        # The highest model's label goes above its end, the others below theirs, so that labels of curves ending
        # close together do not overprint.
        above = bool(line.model) and line.model[-1][1] == ends[0]
        _replicas_line(ax, line, above)
    ax.set_xlim(0.5, end + 0.5)
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.margins(y=0.12)


def _replicas_line(ax: Any, line: ReplicaLine, label_above: bool) -> None:
    color, marker = topology_color(line.topology), topology_marker(line.topology)
    if line.model:
        xs, ys = [n for n, _ in line.model], [v for _, v in line.model]
        ax.plot(xs, ys, color=color, linestyle="--", linewidth=1.2, alpha=0.85)
        ax.annotate(
            f"{line.topology} model",
            (xs[-1], ys[-1]),
            xytext=(-2, 4 if label_above else -5),
            textcoords="offset points",
            ha="right",
            va="bottom" if label_above else "top",
            fontsize=7.5,
            color=color,
        )
    points = sorted((p for p in line.points if math.isfinite(p.value)), key=lambda p: p.replicas)
    if not points:
        return
    ax.plot([p.replicas for p in points], [p.value for p in points], color=color, linewidth=1.8)
    for point in points:
        face = color if point.valid else "white"
        ax.plot([point.replicas], [point.value], marker=marker, markersize=7, color=color, markerfacecolor=face)
        ax.annotate(
            num(point.value) + ("" if point.valid else " invalid"),
            (point.replicas, point.value),
            xytext=(5, -10),
            textcoords="offset points",
            fontsize=7.5,
            color=color if point.valid else INVALID_COLOR,
        )


# -- a restart, bin by bin (deployment) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestartTimeline:
    """One restart scenario: bins (start seconds, p99 and p90 seconds, errors) of width ``width``, the events
    (seconds, text), the disturbed span (restart start, steady state) and the p90 above which a bin counts as
    disturbed."""

    title: str
    topology: str
    starts: list[float]
    width: float
    p99: list[float]
    errors: list[int]
    events: list[tuple[float, str]]
    disturbed: tuple[float, float] | None = None
    threshold: float | None = None
    valid: bool = True
    p90: list[float] = field(default_factory=list)


def restart_chart(rows: Sequence[RestartTimeline]) -> Figure:
    """Small multiples, a row per scenario: p99 per bin (ms, log) and errors per bin, with a vertical line at each
    event (stop, ready) and the span from the restart to steady state shaded. One grid, so that the time axes of
    every row line up."""
    end = max((r.starts[-1] + r.width for r in rows if r.starts), default=1.0)
    with _style():
        fig = Figure(figsize=(11.0, 0.8 + 1.9 * len(rows)), layout="constrained")
        grid = fig.subplots(len(rows), 2, sharex=True, squeeze=False, width_ratios=(3, 2))
        for (latency, errors), row in zip(grid, rows, strict=True):
            title = row.title + ("" if row.valid else "   ✗ invalid run")
            color = topology_color(row.topology) if row.valid else INVALID_COLOR
            latency.set_title(title, loc="left", fontsize=9.5, color=color)
            errors.set_title("failed requests per bin", loc="left", fontsize=8.5, fontweight="normal")
            _restart_latency(latency, row)
            _restart_errors(errors, row)
            for ax in (latency, errors):
                _restart_events(ax, row, labels=ax is latency)
        grid[0, 0].set_xlim(0, end)
        grid[0, 0].xaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        for ax in grid[-1]:
            ax.set_xlabel("second of the load")
        handles: list[Any] = [
            Line2D([], [], color="#444444", linewidth=0.9, label="event (stop, ready)"),
            Patch(facecolor=WINDOW_COLOR, alpha=0.12, label="restart start → steady state"),
            Line2D([], [], color="#888888", linewidth=0.9, linestyle="--", label="p90"),
            Line2D([], [], color="#444444", linestyle=":", label="p90 above this: disturbed"),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    return fig


def _restart_latency(ax: Any, row: RestartTimeline) -> None:
    points = [
        (t + row.width / 2, max(v * 1e3, 1e-3)) for t, v in zip(row.starts, row.p99, strict=True) if math.isfinite(v)
    ]
    if points:
        ax.plot(
            [x for x, _ in points],
            [y for _, y in points],
            color=topology_color(row.topology),
            linewidth=1.2,
            marker=topology_marker(row.topology),
            markersize=2.5,
        )
    p90 = [
        (t + row.width / 2, max(v * 1e3, 1e-3)) for t, v in zip(row.starts, row.p90, strict=False) if math.isfinite(v)
    ]
    if p90:
        ax.plot([x for x, _ in p90], [y for _, y in p90], color="#888888", linewidth=0.9, linestyle="--")
    ax.set_yscale("log")
    ax.set_ylabel("p99, p90 ms (log)")
    values = [y for _, y in points + p90] + ([row.threshold * 1e3] if row.threshold is not None else [])
    log_ticks(ax.yaxis)
    if values:
        # A third of a decade of room either side, so that a flat line shows at least one labelled tick.
        ax.set_ylim(min(values) / 1.4, max(values) * 1.4)
        if max(values) / min(values) > 100:  # over two decades: 1-2-5 ticks would crowd a short panel
            ax.yaxis.set_major_locator(LogLocator(base=10))
    if row.threshold is not None:
        ax.axhline(row.threshold * 1e3, color="#444444", linestyle=":", linewidth=1.0)


def _restart_errors(ax: Any, row: RestartTimeline) -> None:
    ax.bar(row.starts, row.errors, width=row.width, align="edge", color=INVALID_COLOR, linewidth=0)
    ax.set_ylim(0, max([1, *row.errors]) * 1.1)  # no error at all: an axis from 0 to 1, not to 0.05
    ax.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))


def _restart_events(ax: Any, row: RestartTimeline, labels: bool) -> None:
    if row.disturbed is not None:
        ax.axvspan(row.disturbed[0], row.disturbed[1], color=WINDOW_COLOR, alpha=0.12, linewidth=0)
    for t, text in row.events:
        ax.axvline(t, color="#444444", linewidth=0.9, alpha=0.8)
        if labels:
            ax.annotate(
                text,
                (t, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(-2, -2),
                textcoords="offset points",
                rotation=90,
                ha="right",
                va="top",
                fontsize=6.5,
                color="#444444",
                bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            )
