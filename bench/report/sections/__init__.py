"""The report's sections, one module each, registered in :data:`PARTS` in the order of the page.

A module turns the tables of one experiment into view models: its :data:`PART` lists the sections it adds to the page
(each with the tables it reads, the command that produces them and its template) and the rows it adds to the verdict.
To report a new experiment, write one module with a ``PART`` (and its templates under ``templates/sections/``) and add
one line here.
"""

from __future__ import annotations

from functools import partial
from typing import Final

from bench.report.sections import (
    complexity,
    consistency,
    decomposition,
    deployment,
    failure,
    method,
    network,
    resources,
    scaling,
    security,
    soak,
    traces,
    verdict,
)
from bench.report.view import Metric, Part, Section

PARTS: Final[tuple[Part, ...]] = (
    network.PART,
    resources.PART,
    traces.PART,
    decomposition.PART,
    scaling.PART,
    failure.PART,
    consistency.PART,
    deployment.PART,
    complexity.PART,
    security.PART,
    soak.PART,
    method.PART,
)

#: Every row of the verdict, from every part.
METRICS: Final[tuple[Metric, ...]] = tuple(m for part in PARTS for m in part.metrics)

VERDICT: Final = Section(
    "verdict",
    "Verdict: the classic comparison, measured",
    partial(verdict.build, metrics=METRICS),
    "verdict.html.j2",
)

#: The sections of the page, in order: the verdict, then each part's.
SECTIONS: Final[tuple[Section, ...]] = (VERDICT, *(s for part in PARTS for s in part.sections))
