"""Charts of the network experiment: the percentile spectrum, latency against load, stacked bars by process, the
waterfall of one traced request and the bridge of the decomposition."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from bench.report.charts.style import (
    INVALID_COLOR,
    SPECTRUM,
    _style,
    component_color,
    log_ticks,
    num,
    signed,
    topology_color,
    topology_marker,
)

# -- percentile spectrum ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spectrum:
    """One line of the spectrum: latency (seconds) per percentile name of :data:`SPECTRUM`, over ``count`` requests."""

    topology: str
    latencies: dict[str, float]
    count: int
    valid: bool


def _inverse_tail(percent: float) -> float:
    return 1.0 / (1.0 - percent / 100.0)


def spectrum_chart(panels: Sequence[tuple[str, Sequence[Spectrum]]]) -> Figure:
    """Latency against percentile, x in 1/(1-p) on a log scale; one panel per (title, lines).

    A percentile beyond what ``count`` requests can resolve (fewer than 1/(1-p) requests) is the maximum in disguise:
    drawn hollow. An invalid run is drawn dashed with 'x' markers and named invalid in the legend.
    """
    with _style():
        fig = Figure(figsize=(11.0, 3.8), layout="constrained")
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        ticks = [_inverse_tail(p) for _, p in SPECTRUM]
        for ax, (title, lines) in zip(axes, panels, strict=True):
            for line in lines:
                _spectrum_line(ax, line)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 * (1 - 1 / x):g}%"))
            log_ticks(ax.yaxis)
            ax.set_xlim(ticks[0] / 1.5, ticks[-1] * 1.5)
            ax.set_title(title, loc="left")
            ax.set_xlabel("percentile (axis in 1/(1-p))")
        axes[0].set_ylabel("latency from intended send (ms, log)")
        valid: dict[str, bool] = {}
        for _, lines in panels:
            for line in lines:
                valid[line.topology] = valid.get(line.topology, True) and line.valid
        handles = [
            Line2D(
                [],
                [],
                color=topology_color(t),
                marker=topology_marker(t) if ok else "x",
                linestyle="-" if ok else "--",
                label=t if ok else f"{t}: INVALID run",
            )
            for t, ok in valid.items()
        ]
        handles += [
            Line2D(
                [],
                [],
                color="#555555",
                marker="o",
                markerfacecolor="white",
                linestyle="none",
                label="beyond what n requests resolve (= max)",
            ),
        ]
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    return fig


def _spectrum_line(ax: Any, line: Spectrum) -> None:
    color, marker = topology_color(line.topology), topology_marker(line.topology)
    points = [(_inverse_tail(p), line.latencies[name] * 1e3, p) for name, p in SPECTRUM if name in line.latencies]
    points = [(x, y, p) for x, y, p in points if math.isfinite(y) and y > 0]
    if not points:
        return
    ax.plot(
        [x for x, _, _ in points],
        [y for _, y, _ in points],
        color=color,
        linestyle="-" if line.valid else "--",
        linewidth=1.6,
    )
    for x, y, p in points:
        resolved = line.count * (1.0 - p / 100.0) >= 1.0
        ax.plot(
            [x],
            [y],
            marker="x" if not line.valid else marker,
            markersize=6,
            color=color,
            markerfacecolor=color if resolved else "white",
            linestyle="none",
        )


# -- latency against offered load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPoint:
    offered_rate: float
    p50: float
    p99: float
    valid: bool


@dataclass(frozen=True)
class LoadCurve:
    """A topology's sweep (or the knee search's probes), and its sustainable throughput in requests per second (None:
    no rate met the SLO; ``at_least``: the highest rate tried still met it, so the true figure may be higher).
    ``rechecks``: probes of the knee's re-check rounds, drawn as points, not joined; ``interval``: the sustainable
    throughput's interval (low, high), drawn as a band."""

    topology: str
    points: list[LoadPoint]
    sustainable: float | None
    at_least: bool = False
    rechecks: list[LoadPoint] = field(default_factory=list)
    interval: tuple[float, float] | None = None


def load_chart(curves: Sequence[LoadCurve], slo_p99: float | None) -> Figure:
    """p50 and p99 (ms, log) against offered load; invalid points hollow and labelled; sustainable throughput marked."""
    with _style():
        fig = Figure(figsize=(11.0, 4.0), layout="constrained")
        ax50, ax99 = fig.subplots(1, 2, sharex=True)
        for ax, name in ((ax50, "p50"), (ax99, "p99")):
            for curve in curves:
                _load_curve(ax, curve, name)
            ax.set_yscale("log")
            log_ticks(ax.yaxis)
            ax.set_xlabel("offered load (requests/s)")
            ax.set_ylabel(f"{name} latency (ms, log)")
            ax.set_title(f"{name} latency against offered load", loc="left")
        if slo_p99 is not None:
            ax99.axhline(slo_p99 * 1e3, color="#444444", linestyle=":", linewidth=1.0)
            ax99.annotate(
                f"SLO p99 {slo_p99 * 1e3:g} ms",
                (0.5, slo_p99 * 1e3),
                xycoords=("axes fraction", "data"),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
                color="#444444",
            )
        for curve in curves:
            _mark_sustainable(ax99, curve)
        handles: list[Artist] = [
            Line2D([], [], color=topology_color(c.topology), marker=topology_marker(c.topology), label=c.topology)
            for c in curves
        ]
        if any(c.rechecks for c in curves):
            handles.append(
                Line2D([], [], color="#555555", marker="d", markersize=5, linestyle="none", label="re-check probe")
            )
        handles.append(
            Line2D([], [], color="#555555", marker="o", markerfacecolor="white", linestyle="none", label="invalid run")
        )
        handles.append(Line2D([], [], color="#555555", linestyle="-.", label="sustainable throughput"))
        if any(c.interval for c in curves):
            handles.append(Patch(color="#555555", alpha=0.15, label="its interval"))
        fig.legend(handles=handles, loc="outside upper center", ncols=len(handles))
    return fig


def _load_curve(ax: Any, curve: LoadCurve, column: str) -> None:
    color, marker = topology_color(curve.topology), topology_marker(curve.topology)
    points = sorted((p for p in curve.points if math.isfinite(getattr(p, column))), key=lambda p: p.offered_rate)
    if not points:
        return
    xs = [p.offered_rate for p in points]
    ys = [getattr(p, column) * 1e3 for p in points]
    ax.plot(xs, ys, color=color, linewidth=1.4)
    for point, x, y in zip(points, xs, ys, strict=True):
        ax.plot([x], [y], marker=marker, markersize=7, color=color, markerfacecolor=color if point.valid else "white")
        if not point.valid:
            ax.annotate("invalid", (x, y), xytext=(4, -9), textcoords="offset points", fontsize=7, color=INVALID_COLOR)
    for point in curve.rechecks:
        value = getattr(point, column)
        if math.isfinite(value):
            face = color if point.valid else "white"
            ax.plot([point.offered_rate], [value * 1e3], marker="d", markersize=5, color=color, markerfacecolor=face)


def _mark_sustainable(ax: Any, curve: LoadCurve) -> None:
    color = topology_color(curve.topology)
    if curve.sustainable is None:
        return
    if curve.interval is not None:
        ax.axvspan(*curve.interval, color=color, alpha=0.15, linewidth=0)
    ax.axvline(curve.sustainable, color=color, linestyle="-.", linewidth=1.2)
    prefix = "≥ " if curve.at_least else ""
    ax.annotate(
        f"{curve.topology}: {prefix}{curve.sustainable:,.0f}/s",
        (curve.sustainable, 0.98),
        xycoords=("data", "axes fraction"),
        xytext=(-2, 0),
        textcoords="offset points",
        rotation=90,
        ha="right",
        va="top",
        fontsize=8,
        color=color,
    )


# -- stacked bars per process ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackedBar:
    """One bar: a topology, its (process, value) segments bottom to top, and whether the run it comes from is valid."""

    topology: str
    segments: list[tuple[str, float]]
    valid: bool
    total: float | None = None  # the total as recorded; the sum of the segments when None


def stacked_chart(panels: Sequence[tuple[str, Sequence[StackedBar]]], ylabel: str, unit: str = "") -> Figure:
    """One bar per topology stacked by process, one panel per (title, bars); invalid runs hatched and labelled."""
    with _style():
        fig = Figure(figsize=(1.0 + 5.0 * len(panels), 3.9), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        processes: dict[str, None] = {}
        for ax, (title, bars) in zip(axes, panels, strict=True):
            for index, bar in enumerate(bars):
                bottom = 0.0
                for process, value in bar.segments:
                    processes[process] = None
                    ax.bar(
                        index,
                        value,
                        bottom=bottom,
                        width=0.62,
                        color=component_color(process),
                        edgecolor="white" if bar.valid else INVALID_COLOR,
                        hatch=None if bar.valid else "//",
                        linewidth=0.8,
                    )
                    bottom += value
                total = bar.total if bar.total is not None else bottom
                text = num(total) + unit + ("" if bar.valid else "\nINVALID run")
                ax.annotate(
                    text,
                    (index, bottom),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                    color="#222222" if bar.valid else INVALID_COLOR,
                )
            ax.set_xticks(range(len(bars)), [b.topology for b in bars])
            for tick, bar in zip(ax.get_xticklabels(), bars, strict=True):
                tick.set_color(topology_color(bar.topology))
                tick.set_fontweight("bold")
            ax.set_title(title, loc="left")
            ax.set_ylabel(ylabel)
            ax.grid(axis="x", visible=False)
            ax.margins(y=0.18)
        handles = [Patch(color=component_color(p), label=p) for p in processes]
        fig.legend(handles=handles, loc="outside right upper", title="process")
    return fig


# -- waterfall of one traced request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """One row of a waterfall. Times in microseconds from the start of the entry span.

    ``wait_*`` is the caller's view (its client span), ``busy_*`` the callee's server span; the entry row has no wait.
    """

    label: str
    caller: str
    callee: str
    busy_start: float
    busy_us: float
    wait_start: float | None = None
    wait_us: float | None = None


@dataclass(frozen=True)
class Waterfall:
    topology: str
    title: str
    bars: list[Bar] = field(default_factory=list)
    valid: bool = True


def waterfall_chart(waterfalls: Sequence[Waterfall]) -> Figure:
    """One panel per traced request, on a shared time axis (ms): per call the caller's wait (light, outlined) and the
    callee's own span (solid) on the same row, each labelled."""
    rows = [max(len(w.bars), 1) for w in waterfalls]
    with _style():
        fig = Figure(figsize=(11.0, 0.9 + 0.34 * sum(rows) + 0.55 * len(rows)), layout="constrained")
        axes = fig.subplots(len(waterfalls), 1, sharex=True, squeeze=False, height_ratios=rows)[:, 0]
        for ax, waterfall in zip(axes, waterfalls, strict=True):
            _waterfall_panel(ax, waterfall)
        axes[-1].set_xlabel("time since the entry process received the request (ms)")
        handles = [
            Patch(facecolor="#dddddd", edgecolor="#777777", label="caller waiting on the call"),
            Patch(facecolor="#777777", label="callee's own span (colour: component)"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=2)
    return fig


def _waterfall_panel(ax: Any, waterfall: Waterfall) -> None:
    bars = waterfall.bars
    for row, bar in enumerate(bars):
        if bar.wait_start is not None and bar.wait_us is not None:
            ax.barh(
                row,
                bar.wait_us / 1e3,
                left=bar.wait_start / 1e3,
                height=0.76,
                color=component_color(bar.caller),
                alpha=0.28,
                edgecolor=component_color(bar.caller),
                linewidth=0.8,
            )
        if math.isfinite(bar.busy_us):
            ax.barh(
                row,
                bar.busy_us / 1e3,
                left=bar.busy_start / 1e3,
                height=0.42,
                color=component_color(bar.callee),
                edgecolor="#333333",
                linewidth=0.4,
            )
        end = max(bar.busy_start + (bar.busy_us if math.isfinite(bar.busy_us) else 0.0), _wait_end(bar))
        ax.annotate(
            _bar_text(bar), (end / 1e3, row), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7
        )
    ax.set_yticks(range(len(bars)), [b.label for b in bars], fontsize=8)
    ax.set_ylim(len(bars) - 0.5, -0.5)
    ax.grid(axis="y", visible=False)
    ax.margins(x=0.12)
    color = topology_color(waterfall.topology) if waterfall.valid else INVALID_COLOR
    ax.set_title(waterfall.title + ("" if waterfall.valid else "  [INVALID run]"), loc="left", color=color)


def _wait_end(bar: Bar) -> float:
    if bar.wait_start is None or bar.wait_us is None:
        return 0.0
    return bar.wait_start + bar.wait_us


def _bar_text(bar: Bar) -> str:
    busy = f"{bar.callee} {bar.busy_us / 1e3:.2f} ms" if math.isfinite(bar.busy_us) else f"{bar.callee} ?"
    if bar.wait_us is None:
        return busy
    return f"wait {bar.wait_us / 1e3:.2f} ms / {busy}"


# -- decomposition (bridge) ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bridge:
    """monolith -> colocated -> microservices for one figure: the three values, and whether each run is valid."""

    title: str
    unit: str
    monolith: float
    colocated: float
    microservices: float
    valid: tuple[bool, bool, bool] = (True, True, True)


def bridge_chart(bridges: Sequence[Bridge]) -> Figure:
    """Per figure: the monolith's bar, the step added by splitting data and serializing (colocated - monolith), the
    step added by processes and the network (microservices - colocated), and the microservices' total."""
    with _style():
        fig = Figure(figsize=(11.0, 3.9), layout="constrained")
        axes = fig.subplots(1, len(bridges), squeeze=False)[0]
        for ax, bridge in zip(axes, bridges, strict=True):
            _bridge_panel(ax, bridge)
    return fig


def _bridge_panel(ax: Any, b: Bridge) -> None:
    split, network = b.colocated - b.monolith, b.microservices - b.colocated
    steps = [
        ("monolith", 0.0, b.monolith, topology_color("monolith"), b.valid[0], num(b.monolith)),
        ("+ split data,\nserialize", b.monolith, split, topology_color("colocated"), b.valid[1], signed(split)),
        ("+ processes,\nnetwork", b.colocated, network, topology_color("microservices"), b.valid[2], signed(network)),
        (
            "= micro-\nservices",
            0.0,
            b.microservices,
            topology_color("microservices"),
            b.valid[2],
            num(b.microservices),
        ),
    ]
    for index, (_, bottom, height, color, valid, text) in enumerate(steps):
        total_bar = index in (0, 3)
        ax.bar(
            index,
            height,
            bottom=bottom,
            width=0.6,
            color=color,
            alpha=1.0 if total_bar else 0.75,
            edgecolor="white" if valid else INVALID_COLOR,
            hatch=None if valid else "//",
        )
        top = max(bottom, bottom + height)
        label = text + ("" if valid else "\nINVALID")
        ax.annotate(
            label,
            (index, top),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            color="#222222" if valid else INVALID_COLOR,
        )
    ax.set_xticks(range(len(steps)), [s[0] for s in steps], fontsize=8)
    ax.set_title(b.title, loc="left")
    ax.set_ylabel(b.unit)
    ax.grid(axis="x", visible=False)
    ax.margins(y=0.2)
