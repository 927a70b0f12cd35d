"""The report's charts: matplotlib figures rendered to SVG text that the report inlines.

Plain data in, SVG out: each chart function takes lists of small dataclasses (no DataFrame, no results directory) so
the report decides *what* is drawn and this module only *how*. Figures are built with :class:`matplotlib.figure.Figure`
directly (no pyplot, no global backend state, nothing drawn on screen) and saved as SVG with text kept as text, which
keeps a chart to a few tens of kilobytes. One palette per topology and one per component keep colours consistent
across every chart and table of the report.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullLocator
from matplotlib.typing import RcKeyType

#: One colour per topology (Okabe-Ito, readable by colour-blind readers and in greyscale print with the markers).
TOPOLOGY_COLORS: Final[dict[str, str]] = {
    "monolith": "#0072B2",
    "colocated": "#E69F00",
    "microservices": "#D55E00",
}
TOPOLOGY_MARKERS: Final[dict[str, str]] = {"monolith": "o", "colocated": "s", "microservices": "^"}
#: One colour per component (service or gateway); a single-process topology's process takes its topology's colour.
COMPONENT_COLORS: Final[dict[str, str]] = {
    "gateway": "#56B4E9",
    "users": "#009E73",
    "inventory": "#F0E442",
    "payments": "#CC79A7",
    "notifications": "#999999",
    "orders": "#8C564B",
    **TOPOLOGY_COLORS,
}
_FALLBACK: Final = ("#666666", "#A6761D", "#1B9E77", "#7570B3", "#E7298A", "#66A61E")
INVALID_COLOR: Final = "#B00020"

#: Percentiles drawn on the spectrum, as (column name, percent).
SPECTRUM: Final = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99.9", 99.9), ("p99.99", 99.99))

_STYLE: Final[dict[RcKeyType, Any]] = {
    "svg.fonttype": "none",  # text stays text: small files, searchable, selectable
    "svg.hashsalt": "archbench",  # deterministic ids, so the same results render the same bytes
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e6ec",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def num(value: float | None) -> str:
    """A figure for display, in charts and tables alike: whole numbers as such (with thousands separators from 1,000),
    else 3 significant digits below 100 and no decimals above."""
    if value is None or not math.isfinite(value):
        return "—"
    size = abs(value)
    if size >= 100 or value == round(value):
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def signed(value: float) -> str:
    """:func:`num` with an explicit sign."""
    return ("+" if value >= 0 else "−") + num(abs(value))


def topology_color(topology: str) -> str:
    """The colour of ``topology`` in every chart and table."""
    return TOPOLOGY_COLORS.get(topology, _FALLBACK[sum(map(ord, topology)) % len(_FALLBACK)])


def component_color(component: str) -> str:
    """The colour of a component or process (``gateway``, ``orders``, ``monolith``...)."""
    return COMPONENT_COLORS.get(component, _FALLBACK[sum(map(ord, component)) % len(_FALLBACK)])


def topology_marker(topology: str) -> str:
    return TOPOLOGY_MARKERS.get(topology, "D")


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_STYLE):
        yield


def svg_of(fig: Figure, key: str, label: str) -> str:
    """``fig`` as an ``<svg>`` element to inline in HTML, its ids prefixed with ``key`` so that figures never clash."""
    buffer = io.StringIO()
    with _style():  # the SVG options are read when saving, not when drawing
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE: not allowed inside HTML
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.DOTALL)
    text = _compact(text)
    ids = set(re.findall(r'\sid="([^"]+)"', text))

    def prefixed(match: re.Match[str]) -> str:
        head, name = match.group(1), match.group(2)
        return f"{head}{key}-{name}" if name in ids else match.group(0)

    text = re.sub(r'(\sid="|url\(#|href="#)([^")]+)', prefixed, text)
    escaped = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return text.replace("<svg ", f'<svg role="img" aria-label="{escaped}" ', 1)


_GEOMETRY: Final = re.compile(r'(\s(?:d|x|y|transform)=")([^"]*)"')
_LONG_DECIMAL: Final = re.compile(r"(\d\.\d\d)\d+")


def _compact(svg: str) -> str:
    """Drop the indentation, the ids of groups (matplotlib names every group; nothing refers to them) and cut
    coordinates to 1/100 of a point (invisible). Only geometry attributes are cut, never text or styles."""
    svg = re.sub(r"\n[ \t]+", "\n", svg)
    svg = re.sub(r'<g id="[^"]*"', "<g", svg)
    return _GEOMETRY.sub(lambda m: m.group(1) + _LONG_DECIMAL.sub(r"\1", m.group(2)) + '"', svg)


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
            _log_ticks(ax.yaxis)
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


def _log_ticks(axis: Any) -> None:
    """Log axis labelled at 1, 2, 5 x 10^k in plain numbers (no 2x10^0 notation)."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:g}"))


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
    """A topology's sweep, and its sustainable throughput (None: no rate met the SLO; ``at_least``: the highest rate
    tried still met it, so the true figure may be higher)."""

    topology: str
    points: list[LoadPoint]
    sustainable: float | None
    at_least: bool = False


def load_chart(curves: Sequence[LoadCurve], slo_p99: float | None) -> Figure:
    """p50 and p99 (ms, log) against offered load; invalid points hollow and labelled; sustainable throughput marked."""
    with _style():
        fig = Figure(figsize=(11.0, 4.0), layout="constrained")
        ax50, ax99 = fig.subplots(1, 2, sharex=True)
        for ax, name in ((ax50, "p50"), (ax99, "p99")):
            for curve in curves:
                _load_curve(ax, curve, name)
            ax.set_yscale("log")
            _log_ticks(ax.yaxis)
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
        handles = [
            Line2D([], [], color=topology_color(c.topology), marker=topology_marker(c.topology), label=c.topology)
            for c in curves
        ]
        handles.append(
            Line2D([], [], color="#555555", marker="o", markerfacecolor="white", linestyle="none", label="invalid run")
        )
        handles.append(Line2D([], [], color="#555555", linestyle="-.", label="sustainable throughput"))
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


def _mark_sustainable(ax: Any, curve: LoadCurve) -> None:
    color = topology_color(curve.topology)
    if curve.sustainable is None:
        return
    ax.axvline(curve.sustainable, color=color, linestyle="-.", linewidth=1.2)
    prefix = "≥ " if curve.at_least else ""
    ax.annotate(
        f"{curve.topology}: {prefix}{curve.sustainable:g}/s",
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
        _log_ticks(ax.yaxis)
        ax.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
        if slo_p99 is not None:
            ax.axhline(slo_p99 * 1e3, color="#444444", linestyle=":", linewidth=1.0)


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
    _log_ticks(ax.yaxis)
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
