"""A loaded results directory and the lookups every section shares.

The context reads typed metadata (:class:`bench.common.meta.Meta`) and the tables that
:func:`bench.report.results.load_results` returns, already upgraded if an older run wrote them: the report reads
columns (``placement``, the fault columns of ``failure_impact``), it never globs files or parses fault names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pandas as pd

from bench.common.meta import FailureParams, FaultSpec, Meta, NetworkParams
from bench.common.names import FAULT_KIND, FAULT_TARGET, PLACEMENT, WINDOW_END, WINDOW_START
from bench.report.results import Results, load_results

#: The order of components (and processes named after them) in tables and charts.
COMPONENT_ORDER: Final = ("monolith", "gateway", "orders", "users", "inventory", "payments", "notifications")
FAILURE_TABLES: Final = ("failure_impact", "consistency", "failure_timeline")


@dataclass(frozen=True)
class Fault:
    """A fault run's fault: its name as the experiment wrote it (``kill:payments``) and the resilience profile it ran
    under ("" when the run had one)."""

    name: str
    profile: str = ""

    @property
    def label(self) -> str:
        """``kill:payments (naive)``: how tables and anchors name the run."""
        return f"{self.name} ({self.profile})" if self.profile else self.name


def anchor(prefix: str, *parts: object) -> str:
    return prefix + re.sub(r"[^A-Za-z0-9_-]", "_", "-".join(map(str, parts)))


def step_anchor(topology: str, phase: str, step: int) -> str:
    """The id of a network run's row in the validity table."""
    return anchor("step-", topology, phase, step)


def fault_anchor(topology: str, fault: Fault) -> str:
    """The id of a fault run's row in the blast radius and recovery table."""
    return anchor("fault-", topology, fault.label)


def audit_anchor(topology: str, fault: Fault) -> str:
    """The id of a fault run's row in the consistency table."""
    return anchor("audit-", topology, fault.label)


def scaling_anchor(topology: str, mix: str, replicas: int) -> str:
    """The id of a scaling step's row in the table of steps."""
    return anchor("scale-", topology, mix, replicas)


def deployment_anchor(scenario: str) -> str:
    """The id of a restart scenario's row in the deployment table."""
    return anchor("deploy-", scenario)


def fault_of(row: pd.Series) -> Fault:
    """The fault of a row of a failure table."""
    return Fault(str(row["fault"]), str(row.get("profile", "") or ""))


@dataclass
class Context:
    results: Results
    topologies: list[str]

    @classmethod
    def load(cls, results_dir: Path) -> Context:
        results = load_results(results_dir)
        seen = [
            str(t)
            for name in ("steps", "failure_impact", "consistency", "scaling", "deployment")
            for t in results.table(name).get("topology", pd.Series(dtype=str)).unique()
        ]
        topologies = list(dict.fromkeys([*results.metadata.parameters.topologies, *seen]))
        return cls(results, topologies)

    @property
    def meta(self) -> Meta:
        return self.results.metadata

    @property
    def network(self) -> NetworkParams:
        return self.meta.parameters.network or NetworkParams()

    @property
    def failure(self) -> FailureParams:
        return self.meta.parameters.failure or FailureParams()

    @property
    def failure_slo(self) -> float | None:
        slo = self.failure.slo_p99
        return float(slo) if isinstance(slo, int | float) else None

    def table(self, name: str) -> pd.DataFrame:
        return self.results.table(name)

    def has(self, *names: str) -> bool:
        return all(not self.table(name).empty for name in names)

    def ran(self, experiment: str) -> bool:
        return self.meta.parameters.ran(experiment)

    # -- the network experiment's runs

    def step(self, topology: str, phase: str, step: int = 0) -> pd.Series | None:
        steps = self.table("steps")
        if steps.empty:
            return None
        rows = steps[(steps["topology"] == topology) & (steps["phase"] == phase) & (steps["step"] == step)]
        return rows.iloc[0] if len(rows) else None

    def invalid(self, topology: str, phase: str, step: int = 0) -> tuple[str, ...]:
        """The anchor of that run's validity row if the run is invalid, else nothing."""
        row = self.step(topology, phase, step)
        if row is None or bool(row["valid"]):
            return ()
        return (step_anchor(topology, phase, step),)

    def sweep(self, topology: str) -> pd.DataFrame:
        steps = self.table("steps")
        if steps.empty:
            return steps
        return steps[(steps["topology"] == topology) & (steps["phase"] == "sweep")].sort_values("target_rate")

    def common_rate(self) -> float | None:
        """The highest sweep rate that every topology ran (CPU per request is compared there)."""
        rates = [set(self.sweep(t)["target_rate"]) for t in self.topologies]
        common = set.intersection(*rates) if rates else set()
        return float(max(common)) if common else None

    def sweep_step(self, topology: str, rate: float) -> pd.Series | None:
        sweep = self.sweep(topology)
        rows = sweep[sweep["target_rate"] == rate]
        return rows.iloc[0] if len(rows) else None

    def at_least(self, topology: str, rate: float) -> bool:
        """True when ``rate`` is the highest rate the sweep tried: the topology may sustain more."""
        sweep = self.sweep(topology)
        return bool(len(sweep)) and rate >= float(sweep["target_rate"].max())

    def traces(self, topology: str, op: str) -> pd.DataFrame:
        traces = self.table("traces")
        if traces.empty:
            return traces
        return traces[(traces["topology"] == topology) & (traces["op"] == op)]

    def memory_step(self, topology: str) -> pd.Series | None:
        """The step with the highest total peak RSS (all processes of the topology)."""
        steps = self.table("steps")
        rows = steps[steps["topology"] == topology] if not steps.empty else steps
        if rows.empty:
            return None
        return rows.sort_values("peak_rss_bytes", kind="stable").iloc[-1]

    # -- where the components ran

    def placement(self, topology: str) -> pd.DataFrame:
        table = self.table(PLACEMENT)
        return table[table["topology"] == topology] if not table.empty else table

    def process_of(self, topology: str) -> dict[str, str]:
        """Component -> the process that hosted it (empty when the run has no placement)."""
        rows = self.placement(topology)
        if rows.empty:
            return {}
        hosted = rows[rows["process"].astype(str) != ""]
        return dict(zip(hosted["component"].astype(str), hosted["process"].astype(str), strict=True))

    def processes(self, topology: str) -> list[str]:
        resources = self.table("resources")
        if resources.empty:
            return sorted(set(self.process_of(topology).values()))
        names = resources.loc[resources["topology"] == topology, "process"]
        return [str(n) for n in dict.fromkeys(names)]

    def databases(self, topology: str) -> int | None:
        rows = self.placement(topology)
        if rows.empty:
            return None
        return len({str(d) for d in rows["database"] if str(d)})

    # -- the failure experiment's runs

    def fault_specs(self) -> list[FaultSpec]:
        faults = self.failure.faults
        return list(faults) if isinstance(faults, list) else []

    def faults(self) -> list[Fault]:
        """The faults that have results, in the order of the fault matrix and its profiles (then any other)."""
        seen: list[Fault] = []
        for name in FAILURE_TABLES:
            frame = self.table(name)
            if "fault" in frame:
                seen += [fault_of(r) for _, r in frame.iterrows()]
        planned = [(s.kind, s.target) for s in self.fault_specs()]
        profiles = self.failure.profiles if isinstance(self.failure.profiles, list) else []

        def order(fault: Fault) -> tuple[int, int, str]:
            spec = self.kind_target(fault)
            return (
                planned.index(spec) if spec in planned else len(planned),
                profiles.index(fault.profile) if fault.profile in profiles else len(profiles),
                fault.label,
            )

        return sorted(dict.fromkeys(seen), key=order)

    def fault_rows(self, table: str, fault: Fault | None = None, topology: str | None = None) -> pd.DataFrame:
        """The rows of a failure table, of ``fault`` and ``topology`` when given."""
        frame = self.table(table)
        if "fault" not in frame or "topology" not in frame:
            return frame.iloc[0:0]
        keep = pd.Series(True, index=frame.index)
        if topology is not None:
            keep &= frame["topology"] == topology
        if fault is not None:
            keep &= (frame["fault"] == fault.name) & (frame["profile"].astype(str) == fault.profile)
        return frame[keep]

    def kind_target(self, fault: Fault) -> tuple[str, str] | None:
        """The fault's kind and target, as the impact table records them."""
        rows = self.fault_rows("failure_impact", fault)
        if rows.empty or FAULT_KIND not in rows:
            return None
        return str(rows[FAULT_KIND].iloc[0]), str(rows[FAULT_TARGET].iloc[0])

    def failure_topologies(self) -> list[str]:
        """The topologies that have fault runs, in the report's order."""
        seen = {str(t) for name in FAILURE_TABLES for t in self.fault_rows(name).get("topology", [])}
        return [t for t in self.topologies if t in seen]

    def fault_run(self, topology: str, fault: Fault) -> pd.Series | None:
        """The ``failure_impact`` row of one fault run."""
        rows = self.fault_rows("failure_impact", fault, topology)
        return rows.iloc[0] if len(rows) else None

    def fault_invalid(self, topology: str, fault: Fault) -> tuple[str, ...]:
        """The anchor of that fault run's row if its load run is invalid, else nothing."""
        row = self.fault_run(topology, fault)
        if row is None or bool(row.get("load_valid", True)):
            return ()
        return (fault_anchor(topology, fault),)

    def fault_window(self, fault: Fault) -> tuple[float, float] | None:
        """The fault window as applied, in seconds of the load (from the impact table)."""
        rows = self.fault_rows("failure_impact", fault)
        if rows.empty or WINDOW_START not in rows:
            return None
        start, end = float(rows[WINDOW_START].iloc[0]), float(rows[WINDOW_END].iloc[0])
        return (start, end) if pd.notna(start) and pd.notna(end) else None

    def fault_spec(self, fault: Fault) -> FaultSpec | None:
        kind_target = self.kind_target(fault)
        for spec in self.fault_specs():
            if (spec.kind, spec.target) == kind_target or (kind_target is None and spec.name == fault.name):
                return spec
        return None

    def fault_label(self, fault: Fault) -> str:
        """The fault's name with its strength, from the fault matrix: ``latency:inventory +200 ms (naive)``."""
        return strength_label(fault, self.fault_spec(fault))


def strength_label(fault: Fault, spec: FaultSpec | None) -> str:
    suffix = f" ({fault.profile})" if fault.profile else ""
    if spec is not None and spec.value:
        if spec.kind == "latency":
            return f"{fault.name} +{spec.value * 1e3:g} ms{suffix}"
        if spec.kind == "error":
            return f"{fault.name} {spec.value:.0%}{suffix}"
    return fault.label
