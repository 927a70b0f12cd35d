"""The report's tests read view models built from the golden results directory (a real quick run, checked in) or
from synthetic tables; none of them starts a process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(scope="session")
def golden() -> Path:
    """The golden results directory (read only: copy it with ``copy_golden`` before changing it)."""
    return GOLDEN


def copy_golden(target: Path) -> Path:
    """A copy of the golden results directory at ``target``, to change."""
    shutil.copytree(GOLDEN, target, ignore=shutil.ignore_patterns("report.html", "verdict-before.json"))
    return target
