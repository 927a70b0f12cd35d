"""Dependency faults injected into a running process: added latency, an error rate, a hang.

A fault is set per component (a service, the gateway, or a module of the monolith) through the admin endpoint, which
exists only when the process was started with an admin token (``ARCHBENCH_ADMIN_TOKEN``) and refuses calls without it.

Where a fault bites is the one architectural difference the experiment measures: a service applies its fault to every
request it receives (its callers see a slow, failing or silent peer); the monolith applies a module's fault where the
module is entered (its callers wait in-process, with no timeout unless the resilient profile adds one).
"""

from __future__ import annotations

import asyncio
import hmac
import os
import random
from dataclasses import dataclass, field

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plumbing.responses import error_response, json_response

TOKEN_ENV = "ARCHBENCH_ADMIN_TOKEN"
TOKEN_HEADER = "x-admin-token"
KINDS = ("latency", "error", "hang")


class InjectedFault(Exception):
    """An error injected on purpose (the ``error`` fault)."""


class FaultSpec(msgspec.Struct):
    component: str
    kind: str
    value: float = 0.0  # latency: seconds; error: share of calls in [0, 1]; hang: unused


@dataclass
class Fault:
    """The faults currently set on one component."""

    latency: float = 0.0
    error_rate: float = 0.0
    hang: asyncio.Event | None = None  # set while hanging; released (set) when the hang is lifted
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def active(self) -> bool:
        return self.latency > 0 or self.error_rate > 0 or self.hang is not None


class Faults:
    """The faults of every component hosted in this process."""

    def __init__(self) -> None:
        self.by_component: dict[str, Fault] = {}
        self.any = False  # hot-path check: one attribute read when no fault is set

    async def enter(self, component: str) -> None:
        """Apply ``component``'s faults to one call into it: wait, fail, or hang."""
        fault = self.by_component.get(component)
        if fault is None:
            return
        if fault.hang is not None:
            await fault.hang.wait()
        if fault.latency > 0:
            await asyncio.sleep(fault.latency)
        if fault.error_rate > 0 and fault.rng.random() < fault.error_rate:
            raise InjectedFault(f"injected error in {component}")

    def set(self, spec: FaultSpec) -> None:
        if spec.kind not in KINDS:
            raise ValueError(f"unknown fault kind {spec.kind!r}; choose from {', '.join(KINDS)}")
        fault = self.by_component.setdefault(spec.component, Fault())
        if spec.kind == "latency":
            if not 0 <= spec.value <= 60:
                raise ValueError("latency must be between 0 and 60 seconds")
            fault.latency = spec.value
        elif spec.kind == "error":
            if not 0 <= spec.value <= 1:
                raise ValueError("error rate must be between 0 and 1")
            fault.error_rate = spec.value
        elif fault.hang is None:
            fault.hang = asyncio.Event()
        self.any = True

    def clear(self) -> None:
        for fault in self.by_component.values():
            if fault.hang is not None:
                fault.hang.set()  # release every call held by the hang
        self.by_component.clear()
        self.any = False

    def describe(self) -> dict[str, dict[str, float | bool]]:
        return {
            name: {"latency": f.latency, "error_rate": f.error_rate, "hang": f.hang is not None}
            for name, f in self.by_component.items()
            if f.active()
        }


FAULTS = Faults()


def admin_token() -> str | None:
    """The admin token this process was started with, or None (admin endpoints disabled)."""
    return os.environ.get(TOKEN_ENV) or None


def admin_routes(token: str | None) -> list[Route]:
    """The admin endpoints, or none at all when no token was configured."""
    if not token:
        return []

    def authorized(request: Request) -> bool:
        given = request.headers.get(TOKEN_HEADER, "")
        return hmac.compare_digest(given.encode(), token.encode())

    async def faults(request: Request) -> Response:
        if not authorized(request):
            return error_response(401, "unauthorized", f"the {TOKEN_HEADER} header is missing or wrong")
        if request.method == "GET":
            return json_response(FAULTS.describe())
        if request.method == "DELETE":
            FAULTS.clear()
            return json_response(FAULTS.describe())
        try:
            spec = msgspec.json.decode(await request.body(), type=FaultSpec)
            FAULTS.set(spec)
        except (msgspec.MsgspecError, ValueError) as exc:
            return error_response(422, "invalid_input", str(exc))
        return json_response(FAULTS.describe(), 201)

    return [Route("/admin/faults", faults, methods=["GET", "POST", "DELETE"])]
