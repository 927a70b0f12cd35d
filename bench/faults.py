"""Inject the same faults into every topology: process faults through the supervisor, dependency faults through the
admin endpoint of the process that hosts the target.

Targets are components (``gateway``, ``users``, ``inventory``, ``payments``, ``notifications``, ``orders``). In the
monolith a process fault takes down the one process, and a dependency fault hits the module the service would hold;
in ``colocated`` a process fault takes down everything too.
"""

from __future__ import annotations

import json
import time
import urllib.request
from dataclasses import dataclass

from bench.deploy import Deployment
from plumbing.faults import TOKEN_HEADER
from plumbing.topology import SERVICES

TARGETS = ("gateway", *SERVICES)
PROCESS_FAULTS = ("kill", "pause")
DEPENDENCY_FAULTS = ("latency", "error", "hang")


@dataclass(frozen=True)
class FaultPlan:
    """One fault: what, where, how strong (seconds of latency, share of errors), how long, and for kill the
    time before the supervisor restarts the process."""

    kind: str
    target: str
    value: float = 0.0
    duration: float = 3.0

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}"


class Injector:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    def process_of(self, target: str) -> str:
        """The process that holds ``target`` (for the monolith, the monolith)."""
        config = self.deployment.config
        component = "monolith" if config.topology == "monolith" else target
        return config.process_of(component).name

    def begin(self, plan: FaultPlan) -> None:
        if plan.kind == "kill":
            self.deployment.supervisor.kill(self.process_of(plan.target))
        elif plan.kind == "pause":
            self.deployment.supervisor.pause(self.process_of(plan.target))
        elif plan.kind in DEPENDENCY_FAULTS:
            self._admin(
                "POST", self.process_of(plan.target), {"component": plan.target, "kind": plan.kind, "value": plan.value}
            )
        else:
            raise ValueError(f"unknown fault {plan.kind!r}")

    def end(self, plan: FaultPlan) -> float:
        """Lift the fault; returns the seconds until the target is ready again (restart time after a kill)."""
        process = self.process_of(plan.target)
        if plan.kind == "kill":
            return self.deployment.supervisor.restart(process)
        if plan.kind == "pause":
            self.deployment.supervisor.resume(process)
        else:
            self._admin("DELETE", process, None)
        return 0.0

    def _admin(self, method: str, process: str, payload: object) -> None:
        token = self.deployment.admin_token
        if not token:
            raise RuntimeError("this deployment was started without an admin token: dependency faults are disabled")
        port = self.deployment.config.process(process).port
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/admin/faults", data=data, method=method, headers={TOKEN_HEADER: token}
        )
        deadline = time.monotonic() + 5
        while True:
            try:
                with urllib.request.urlopen(request, timeout=2) as reply:
                    reply.read()
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
