"""Results directories: tidy tables (Parquet) plus ``meta.json`` (environment and every parameter).

Measure, store and render are separate: experiments hand DataFrames to :func:`save`, the report and notebooks read
them back with :func:`load_results`, and nothing here imports a deployment.

Loading decodes ``meta.json`` once into :class:`bench.common.meta.Meta` and upgrades a directory written before the
experiments recorded what the report reads (:func:`upgrade`): the ``placement`` table and the fault columns of
``failure_impact`` are derived there, once, so the report reads columns and never globs files or parses fault names.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import meta as metadata_
from bench.common.meta import FailureParams, Meta
from bench.common.names import FAULT_KIND, FAULT_TARGET, PLACEMENT, WINDOW_END, WINDOW_START

META_FILE = "meta.json"
PACKAGES = ("archbench", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "httpx", "msgspec", "pandas")


@dataclass
class Results:
    """A results directory loaded back: ``meta`` (environment, parameters, validity, as the JSON has it),
    ``metadata`` (the same, typed) and one DataFrame per table."""

    path: Path
    meta: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    metadata: Meta = field(default_factory=Meta)

    def table(self, name: str) -> pd.DataFrame:
        """The table ``name``, or an empty DataFrame if this run did not produce it."""
        return self.tables.get(name, pd.DataFrame())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def environment() -> dict[str, Any]:
    """Facts about this machine and software, recorded beside every result."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "packages": versions,
        "git_commit": git_commit(),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except (ImportError, OSError):
        return None


def save(out_dir: Path, tables: dict[str, pd.DataFrame], meta: dict[str, Any]) -> Path:
    """Write each table as ``<name>.parquet`` and ``meta`` as ``meta.json`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2, default=_jsonable))
    return out_dir


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {value!r}")


def load_results(path: str | Path) -> Results:
    """Load a results directory written by ``archbench run`` into DataFrames (for the report and notebooks), upgraded
    to the current tables if an older run wrote it."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a results directory (no {META_FILE})")
    raw = meta_path.read_bytes()
    typed = metadata_.decode(raw)
    tables = {p.stem: pd.read_parquet(p) for p in sorted(path.glob("*.parquet"))}
    return Results(path, json.loads(raw), upgrade(path, typed, tables), typed)


# -- older results directories ---------------------------------------------------------------------------------------

FAILURE_TABLES = ("failure_impact", "failure_timeline", "consistency")


def upgrade(path: Path, meta: Meta, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """``tables`` with what a run written before the experiments recorded it is derived from what that run left:
    ``placement`` from ``runs/<topology>/topology.json`` and the database files there, the fault columns of
    ``failure_impact`` from its fault names and the failure parameters, and a ``profile`` column ("" when the run
    had one profile) in every failure table. A current directory comes back unchanged."""
    tables = dict(tables)
    if PLACEMENT not in tables:
        placement = derived_placement(path / "runs", topologies_of(meta, tables))
        if not placement.empty:
            tables[PLACEMENT] = placement
    for name in FAILURE_TABLES:
        frame = tables.get(name)
        if frame is not None and "fault" in frame and "profile" not in frame:
            tables[name] = frame.assign(profile="")
    impact = tables.get("failure_impact")
    if impact is not None and "fault" in impact:
        tables["failure_impact"] = with_fault_columns(impact, meta.parameters.failure, tables.get("failure_timeline"))
    return tables


def topologies_of(meta: Meta, tables: dict[str, pd.DataFrame]) -> list[str]:
    seen = [str(t) for frame in tables.values() if "topology" in frame for t in frame["topology"].unique()]
    return list(dict.fromkeys([*meta.parameters.topologies, *seen]))


def derived_placement(runs: Path, topologies: list[str]) -> pd.DataFrame:
    """Per component of each topology's run: the process that hosted it (``topology.json``) and its database (the
    ``<component>.db`` file beside it); a database file no component claims gets a row of its own."""
    rows: list[dict[str, str]] = []
    for topology in topologies:
        run_dir = runs / topology
        if not run_dir.is_dir():
            continue
        files = sorted(p.name for p in run_dir.glob("*.db"))
        try:
            described = json.loads((run_dir / "topology.json").read_text())
        except (OSError, ValueError):
            described = {}
        claimed = set()
        for process in described.get("processes", []):
            for component in process.get("components", []):
                database = f"{component}.db" if f"{component}.db" in files else ""
                claimed.add(database)
                rows.append(
                    {
                        "topology": topology,
                        "component": str(component),
                        "process": str(process["name"]),
                        "database": database,
                    }
                )
        for name in files:
            if name not in claimed:
                rows.append({"topology": topology, "component": Path(name).stem, "process": "", "database": name})
    return pd.DataFrame(rows, columns=["topology", "component", "process", "database"])


def with_fault_columns(
    impact: pd.DataFrame, params: FailureParams | None, timeline: pd.DataFrame | None
) -> pd.DataFrame:
    """``failure_impact`` with its fault's kind and target (the run's ``kind``/``target`` columns, else the fault's
    name, ``kind:target``) and the fault window (from the failure parameters, else the seconds the timeline marks
    ``in_fault``), where the run did not write them."""
    impact = impact.copy()
    if FAULT_KIND not in impact or FAULT_TARGET not in impact:
        names = impact["fault"].astype(str).str.partition(":")
        impact[FAULT_KIND] = impact["kind"].astype(str) if "kind" in impact else names[0]
        impact[FAULT_TARGET] = impact["target"].astype(str) if "target" in impact else names[2]
    if WINDOW_START not in impact or WINDOW_END not in impact:
        start, end = fault_window(params, timeline)
        impact[WINDOW_START], impact[WINDOW_END] = start, end
    return impact


def fault_window(params: FailureParams | None, timeline: pd.DataFrame | None) -> tuple[float, float]:
    """The fault window in seconds of the load, as the failure experiment applies it: after the warm-up and the
    steady period before it, for ``window`` seconds (NaN when neither the parameters nor the timeline say)."""
    if params is not None:
        warmup, before, window = params.warmup, params.before, params.window
        if isinstance(warmup, int | float) and isinstance(before, int | float) and isinstance(window, int | float):
            start = float(warmup) + float(before)
            return start, start + float(window)
    if timeline is not None and "in_fault" in timeline:
        seconds = timeline.loc[timeline["in_fault"].astype(bool), "second"]
        if len(seconds):
            return float(seconds.min()), float(seconds.max()) + 1.0
    return math.nan, math.nan
