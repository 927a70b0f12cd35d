"""Inject the same faults into every topology: process faults through the supervisor, dependency faults through the
admin endpoint of the process that hosts the target. On an external target (:mod:`bench.system.target`) there is no
supervisor: only dependency faults apply, through the admin URLs the target gives.

Targets are components (``gateway``, ``users``, ``inventory``, ``payments``, ``notifications``, ``orders``). In the
monolith a process fault takes down the one process, and a dependency fault hits the module the service would hold;
in ``colocated`` a process fault takes down everything too.

Database faults (``db-kill``, ``db-pause``) kill or pause the PostgreSQL server that holds the target's database: in
the monolith its one database, in the microservices the target service's own. They apply when the run is on
archbench's own servers, one per service's database (``--db postgres --db-servers per-service``), so that one
service's database goes down alone: the blast radius of the monolith's database against one service's.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from bench.system.deploy import Deployed
from bench.system.postgres import signal_server
from bench.system.supervisor import Supervisor
from plumbing.faults import TOKEN_HEADER
from plumbing.topology import SERVICES

PROCESS_FAULTS = ("kill", "pause")
DEPENDENCY_FAULTS = ("latency", "error", "hang")
DATABASE_FAULTS = ("db-kill", "db-pause")
DATABASE_FAULT_PLANS = (("db-kill", "payments"), ("db-pause", "payments"))
"""What the failure experiment adds on a run with a server per database: kind and target of each."""


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

    def database_process(self, target: str) -> str | None:
        """The supervisor's process of the server that holds ``target``'s database alone (the monolith's holds all
        of them), or None: SQLite, an external server, or one server shared by several services."""
        lookup = getattr(self.deployment, "database_process", None)
        process = lookup(target) if lookup is not None else None
        if process is None or self.deployment.topology == "monolith":
            return process
        sharing = [service for service in SERVICES if lookup is not None and lookup(service) == process]
        return process if sharing == [target] else None

    def database_faults(self) -> tuple[FaultPlan, ...]:
        """The database faults this deployment can take (none unless it runs on a server per database)."""
        plans = tuple(FaultPlan(kind, target) for kind, target in DATABASE_FAULT_PLANS)
        return tuple(plan for plan in plans if self.unsupported(plan) is None)

    def unsupported(self, plan: FaultPlan) -> str | None:
        """Why ``plan`` cannot be applied to this deployment (an external target), or None when it can."""
        if plan.kind in DATABASE_FAULTS and (
            self.deployment.supervisor is None or not self.database_process(plan.target)
        ):
            return "skipped: a database fault needs archbench's own PostgreSQL servers, one per service's database"
        if plan.kind in PROCESS_FAULTS and self.deployment.supervisor is None:
            return "skipped: a process fault needs the harness's supervisor, and this target was not started here"
        process = self.process_of(plan.target)
        if plan.kind in DEPENDENCY_FAULTS and self.deployment.admin_url(process) is None:
            return f"skipped: no admin URL for process {process} (add it to the targets file)"
        return None

    def begin(self, plan: FaultPlan) -> None:
        if plan.kind in DATABASE_FAULTS:
            server = self._database(plan.target)
            postmaster = self._supervisor().pid(server)
            if plan.kind == "db-kill":  # every process of the server at once, as an out-of-memory kill would
                signal_server(postmaster, signal.SIGKILL)
                self._supervisor().kill(server)
            else:
                signal_server(postmaster, signal.SIGSTOP)
        elif plan.kind == "kill":
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
        if plan.kind == "db-kill":
            return self._supervisor().restart(self._database(plan.target))
        if plan.kind == "db-pause":
            signal_server(self._supervisor().pid(self._database(plan.target)), signal.SIGCONT)
            return 0.0
        process = self.process_of(plan.target)
        if plan.kind == "kill":
            return self._supervisor().restart(process)
        if plan.kind == "pause":
            self._supervisor().resume(process)
        else:
            for replica in self.replicas_of(plan.target):
                self._admin("DELETE", replica, None)
        return 0.0

    def _database(self, target: str) -> str:
        server = self.database_process(target)
        if server is None:
            raise RuntimeError(f"no database server of {target}'s own to fault in this deployment")
        return server

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
