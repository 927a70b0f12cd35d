"""Results directories: tidy tables (Parquet) plus ``meta.json`` (environment and every parameter).

Measure, store and render are separate: experiments hand DataFrames to :func:`save`, the report and notebooks read
them back with :func:`load_results`, and nothing here imports a deployment.
"""

from __future__ import annotations

import json
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

META_FILE = "meta.json"
PACKAGES = ("archbench", "starlette", "uvicorn", "uvloop", "httptools", "aiohttp", "httpx", "msgspec", "pandas")


@dataclass
class Results:
    """A results directory loaded back: ``meta`` (environment, parameters, validity) and one DataFrame per table."""

    path: Path
    meta: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

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
    """Load a results directory written by ``archbench run`` into DataFrames (for the report and notebooks)."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path} is not a results directory (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    tables = {p.stem: pd.read_parquet(p) for p in sorted(path.glob("*.parquet"))}
    return Results(path, meta, tables)
