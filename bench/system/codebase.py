"""Lines of code per deployable unit, counted from the installed sources: what is shared and what is not.

The monolith deploys one unit: the domain (``shop``), the shared plumbing, and ``monolith``. Each microservice deploys
the same shared parts plus its own service module and the domain module of its context; the saga belongs to orders.
Counting is static (no deployment is started); non-blank, non-comment lines.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from plumbing.topology import SERVICES

# Modules of microservices/ shared by every service (the typed clients and the service base).
SHARED_SERVICE_MODULES = ("api.py", "service.py", "__init__.py")
OWN_MODULES = {"orders": ("orders.py", "saga.py"), "gateway": ("gateway.py",)}


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(name)
    return Path(spec.origin).parent


def count_lines(path: Path) -> int:
    return sum(
        1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.strip().startswith("#")
    )


def lines_of(paths: list[Path]) -> int:
    return sum(count_lines(p) for p in paths)


def codebase_table() -> pd.DataFrame:
    """One row per deployable unit: its files and lines, split into shared and its own."""
    shop, plumbing = package_dir("shop"), package_dir("plumbing")
    monolith, services = package_dir("monolith"), package_dir("microservices")
    shop_common = [shop / n for n in ("__init__.py", "errors.py", "db.py", "seed.py")]
    plumbing_files = sorted(plumbing.glob("*.py"))
    shared_services = [services / n for n in SHARED_SERVICE_MODULES]
    rows = [
        {
            "topology": "monolith",
            "unit": "monolith",
            "own_lines": lines_of(sorted(monolith.glob("*.py"))),
            "shared_lines": lines_of(plumbing_files + sorted(shop.glob("*.py"))),
        }
    ]
    for unit in (*SERVICES, "gateway"):
        own = [services / n for n in OWN_MODULES.get(unit, (f"{unit}.py",))]
        domain = [shop / f"{unit}.py"] if unit != "gateway" else []
        shared = plumbing_files + shop_common + shared_services + domain
        rows.append(
            {"topology": "microservices", "unit": unit, "own_lines": lines_of(own), "shared_lines": lines_of(shared)}
        )
    frame = pd.DataFrame(rows)
    frame["lines"] = frame["own_lines"] + frame["shared_lines"]
    return frame
