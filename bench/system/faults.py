"""Inject the same faults into every topology: process faults through the supervisor, dependency faults through the
admin endpoint of the process that hosts the target. On an external target (:mod:`bench.system.target`) there is no
supervisor: only dependency faults apply, through the admin URLs the target gives.

Targets are components (``gateway``, ``users``, ``inventory``, ``payments``, ``notifications``, ``orders``). In the
monolith a process fault takes down the one process, and a dependency fault hits the module the service would hold;
in ``colocated`` a process fault takes down everything too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from bench.system.deploy import Deployed
from bench.system.supervisor import Supervisor
from plumbing.faults import TOKEN_HEADER

PROCESS_FAULTS = ("kill", "pause")
DEPENDENCY_FAULTS = ("latency", "error", "hang")


@dataclass(frozen=True)
class FaultPlan:
    """One fault: what (a kind of :data:`PROCESS_FAULTS` or :data:`DEPENDENCY_FAULTS`), where (a component), and
    how strong (seconds of latency, share of errors). How long it lasts is the failure experiment's window."""

    kind: str
    target: str
    value: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}"


class Injector:
    def __init__(self, deployment: Deployed) -> None:
        self.deployment = deployment

    def process_of(self, target: str) -> str:
        """The process that holds ``target`` (for the monolith, the monolith); a process fault takes down this one
        when the target has several replicas (one pod of several dies)."""
        return self.deployment.process_of(self.component_of(target))

    def replicas_of(self, target: str) -> list[str]:
        """Every process that holds ``target``."""
        return self.deployment.replicas_of(self.component_of(target))

    def component_of(self, target: str) -> str:
        return "monolith" if self.deployment.topology == "monolith" else target

    def unsupported(self, plan: FaultPlan) -> str | None:
        """Why ``plan`` cannot be applied to this deployment (an external target), or None when it can."""
        if plan.kind in PROCESS_FAULTS and self.deployment.supervisor is None:
            return "skipped: a process fault needs the harness's supervisor, and this target was not started here"
        process = self.process_of(plan.target)
        if plan.kind in DEPENDENCY_FAULTS and self.deployment.admin_url(process) is None:
            return f"skipped: no admin URL for process {process} (add it to the targets file)"
        return None

    def begin(self, plan: FaultPlan) -> None:
        if plan.kind == "kill":
            self._supervisor().kill(self.process_of(plan.target))
        elif plan.kind == "pause":
            self._supervisor().pause(self.process_of(plan.target))
        elif plan.kind in DEPENDENCY_FAULTS:
            fault = {"component": plan.target, "kind": plan.kind, "value": plan.value}
            for process in self.replicas_of(plan.target):  # a dependency fault hits every replica of the target
                self._admin("POST", process, fault)
        else:
            raise ValueError(f"unknown fault {plan.kind!r}")

    def end(self, plan: FaultPlan) -> float:
        """Lift the fault; returns the seconds until the target is ready again (restart time after a kill)."""
        process = self.process_of(plan.target)
        if plan.kind == "kill":
            return self._supervisor().restart(process)
        if plan.kind == "pause":
            self._supervisor().resume(process)
        else:
            for replica in self.replicas_of(plan.target):
                self._admin("DELETE", replica, None)
        return 0.0

    def _supervisor(self) -> Supervisor:
        if self.deployment.supervisor is None:
            raise RuntimeError("process faults need the harness's supervisor: this deployment was not started here")
        return self.deployment.supervisor

    def _admin(self, method: str, process: str, payload: object) -> None:
        token = self.deployment.admin_token
        if not token:
            raise RuntimeError("this deployment was started without an admin token: dependency faults are disabled")
        url = self.deployment.admin_url(process)
        if url is None:
            raise RuntimeError(f"no admin URL for process {process}")
        admin_faults(url, token, method, payload)


def admin_faults(url: str, token: str, method: str, payload: object = None, retry_seconds: float = 5.0) -> object:
    """Call ``/admin/faults`` of the process at ``url`` (its base URL) with ``token``; returns the decoded reply.

    A refused or failed connection is retried for ``retry_seconds`` (a process just restarted may not listen yet);
    an HTTP error status is raised at once (:class:`urllib.error.HTTPError`).
    """
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(f"{url}/admin/faults", data=data, method=method, headers={TOKEN_HEADER: token})
    deadline = time.monotonic() + retry_seconds
    while True:
        try:
            with urllib.request.urlopen(request, timeout=2) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError:
            raise
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
