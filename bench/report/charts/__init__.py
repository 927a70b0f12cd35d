"""The report's charts: matplotlib figures rendered to SVG text that the report inlines.

Plain data in, SVG out: each chart function takes lists of small dataclasses (no DataFrame, no results directory) so
the report decides *what* is drawn and this package only *how*. Figures are built with :class:`matplotlib.figure.Figure`
directly (no pyplot, no global backend state, nothing drawn on screen) and saved as SVG with text kept as text, which
keeps a chart to a few tens of kilobytes. One palette per topology and one per component keep colours consistent
across every chart and table of the report (:mod:`.style`); the charts of each experiment are in a module of their own.
"""

from bench.report.charts.failure import (
    AVAILABILITY_BANDS,
    FaultRow,
    HeatCell,
    Heatmap,
    Series,
    TimelineRow,
    availability_band,
    availability_heatmap,
    availability_text,
    timeline_chart,
)
from bench.report.charts.latency import (
    Bar,
    Bridge,
    LoadCurve,
    LoadPoint,
    Spectrum,
    StackedBar,
    Waterfall,
    bridge_chart,
    load_chart,
    spectrum_chart,
    stacked_chart,
    waterfall_chart,
)
from bench.report.charts.scaling import (
    MODEL_LABEL,
    ReplicaLine,
    ReplicaPoint,
    RestartTimeline,
    replicas_chart,
    restart_chart,
)
from bench.report.charts.style import (
    COMPONENT_COLORS,
    SPECTRUM,
    TOPOLOGY_COLORS,
    component_color,
    num,
    signed,
    svg_of,
    topology_color,
)

__all__ = [
    "AVAILABILITY_BANDS",
    "COMPONENT_COLORS",
    "MODEL_LABEL",
    "SPECTRUM",
    "TOPOLOGY_COLORS",
    "Bar",
    "Bridge",
    "FaultRow",
    "HeatCell",
    "Heatmap",
    "LoadCurve",
    "LoadPoint",
    "ReplicaLine",
    "ReplicaPoint",
    "RestartTimeline",
    "Series",
    "Spectrum",
    "StackedBar",
    "TimelineRow",
    "Waterfall",
    "availability_band",
    "availability_heatmap",
    "availability_text",
    "bridge_chart",
    "component_color",
    "load_chart",
    "num",
    "replicas_chart",
    "restart_chart",
    "signed",
    "spectrum_chart",
    "stacked_chart",
    "svg_of",
    "timeline_chart",
    "topology_color",
    "waterfall_chart",
]
