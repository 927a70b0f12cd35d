"""Building a section's view model in tests, and writing results directories of synthetic tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.context import Context
from bench.report.results import save
from bench.report.sections import SECTIONS
from bench.report.sections.verdict import Row, Verdict
from bench.report.view import Cell


def context(results_dir: Path) -> Context:
    return Context.load(results_dir)


def view(ctx: Context, section_id: str) -> Any:
    """The view model of the section ``section_id`` (whether or not the run has its tables)."""
    (section,) = [s for s in SECTIONS if s.id == section_id]
    return section.build(ctx)


def measured(ctx: Context, section_id: str) -> bool:
    """Whether the page shows the section (else it says "not measured in this run")."""
    (section,) = [s for s in SECTIONS if s.id == section_id]
    return ctx.has(*section.tables)


def command(section_id: str) -> str:
    (section,) = [s for s in SECTIONS if s.id == section_id]
    return section.command


def verdict(ctx: Context) -> Verdict:
    result: Verdict = view(ctx, "verdict")
    return result


def cells(row: Row) -> dict[str, Cell]:
    """The cells of a measured verdict row, by topology."""
    assert row.figures is not None, row.name
    return {t: f.cell for t, f in row.figures.items() if f is not None}


def texts(row: Row) -> dict[str, str]:
    return {t: c.text for t, c in cells(row).items()}


def write(
    target: Path,
    tables: dict[str, pd.DataFrame],
    topologies: tuple[str, ...],
    experiments: tuple[str, ...],
    **params: Any,
) -> Path:
    """A results directory holding ``tables``, as a run of ``experiments`` would have saved it."""
    meta = {
        "environment": {"cpu_model": "synthetic", "cpu_count": 2, "command": "archbench run"},
        "parameters": {"topologies": list(topologies), "experiments": list(experiments), **params},
    }
    return save(target, tables, meta)


def set_meta(results_dir: Path, **parameters: Any) -> None:
    """Change the parameters ``meta.json`` records."""
    meta = json.loads((results_dir / "meta.json").read_text())
    meta["parameters"].update(parameters)
    (results_dir / "meta.json").write_text(json.dumps(meta))
