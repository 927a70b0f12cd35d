"""Every saga test runs on both engines: its deployments and in-process shops follow the ``engine`` parameter."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _on_each_engine(engine: str) -> str:
    return engine
