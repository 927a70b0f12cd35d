"""What the section modules share: the commands that measure each experiment, and small builders of cells."""

from __future__ import annotations

from typing import Final

from bench.report import charts
from bench.report.view import Content, Span

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
