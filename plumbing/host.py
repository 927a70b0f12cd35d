"""A process of the shop: builds the components the topology places in it, and serves the first one.

``python -m plumbing.host --config RUN_DIR/topology.json --process NAME`` is the entry point of every process of every
topology (the container image uses it too). Which components a process holds comes from the configuration alone.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import uvicorn
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from plumbing import tracing
from plumbing.auth import AuthConfig
from plumbing.balance import BalancedTransport
from plumbing.limits import Limits, protocol
from plumbing.resilience import Policy, wrap_transport
from plumbing.topology import COMPONENTS, ProcessConfig, RunConfig, db_password_env
from plumbing.transports import Transport, open_transport

log = logging.getLogger(__name__)

# Component name -> "module:factory". Imported lazily so that plumbing does not import the deployments.
FACTORIES = {
    "monolith": "monolith.app:build",
    "gateway": "microservices.gateway:build",
    "users": "microservices.users:build",
    "inventory": "microservices.inventory:build",
    "payments": "microservices.payments:build",
    "notifications": "microservices.notifications:build",
    "orders": "microservices.orders:build",
}


class Component(Protocol):
    """What a factory returns: an ASGI app and its start-up and shutdown work (seeding, background loops)."""

    @property
    def app(self) -> ASGIApp: ...

    async def startup(self) -> None: ...

    async def shutdown(self) -> None: ...


@dataclass
class ComponentContext:
    """What a component factory may know: its name, its database, and how to reach its peers."""

    name: str
    config: RunConfig
    local: dict[str, Component] = field(default_factory=dict)
    transports: list[Transport] = field(default_factory=list)
    auth: AuthConfig = field(default_factory=AuthConfig)
    process: str = ""  # the name of the process hosting the component (unique among the run's live processes)

    @property
    def instance(self) -> str:
        """This component in this process, unique among those alive at one time: the host (the pod in Kubernetes,
        where every replica has the same process name) and the process name (a replica on this machine)."""
        return f"{socket.gethostname()}/{self.process or self.name}/{self.name}"

    @property
    def credential(self) -> str | None:
        """What this component presents to the peers it calls."""
        return self.auth.credential(self.name) if self.auth.enabled else None

    @property
    def db_path(self) -> Path:
        return self.config.db_path(self.name)

    @property
    def db_url(self) -> str:
        return self.config.db_url(self.name)

    @property
    def db_password(self) -> str | None:
        """The password of this component's database role, from the environment (None: libpq's own sources)."""
        return os.environ.get(db_password_env(self.name))

    def peer(self, component: str, policy: Policy | None = None) -> Transport:
        """A transport to ``component``: in-process ASGI when it lives here, HTTP on the configured stack otherwise,
        wrapped by the run's resilience profile (one breaker per caller and dependency)."""
        urls = self.config.urls_of(component)
        inner: Transport
        if component in self.local:
            inner = open_transport("asgi", urls[0], app=self.local[component].app, timeout=self.config.call_timeout)
        elif len(urls) == 1:
            inner = open_transport(self.config.stack, urls[0], timeout=self.config.call_timeout)
        else:  # several replicas, each on its own port: balanced by the caller
            replicas = [open_transport(self.config.stack, url, timeout=self.config.call_timeout) for url in urls]
            inner = BalancedTransport(replicas)
        transport = wrap_transport(inner, component, self.config.profile, policy)
        self.transports.append(transport)
        return transport


class ProcessApp:
    """The ASGI app of one process: serves its front component and runs every hosted component's lifespan."""

    def __init__(self, config: RunConfig, process: ProcessConfig, auth: AuthConfig | None = None) -> None:
        self.config = config
        self.process = process
        if auth is None:
            auth = AuthConfig.from_env(os.environ, enabled=config.auth)
        self.contexts: list[ComponentContext] = []
        self.components: dict[str, Component] = {}
        for name in sorted(process.components, key=COMPONENTS.index):
            ctx = ComponentContext(name, config, local=self.components, auth=auth, process=process.name)
            self.components[name] = load_factory(name)(ctx)
            self.contexts.append(ctx)
        self.front = self.components[process.front].app

    async def startup(self) -> None:
        for name in self.components:
            await self.components[name].startup()

    async def shutdown(self) -> None:
        for name in reversed(self.components):
            try:
                await self.components[name].shutdown()
            except Exception:
                log.exception("shutdown of %s failed", name)
        for ctx in self.contexts:
            for transport in ctx.transports:
                await transport.aclose()
        tracing.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            # A client that went away (or was cut off by plumbing.limits) while its body was read: nothing to answer,
            # and nothing wrong with this process.
            with contextlib.suppress(ClientDisconnect):
                await self.front(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def load_factory(name: str) -> ComponentFactory:
    module_name, _, attr = FACTORIES[name].partition(":")
    factory: ComponentFactory = getattr(importlib.import_module(module_name), attr)
    return factory


class ComponentFactory(Protocol):
    def __call__(self, ctx: ComponentContext) -> Component: ...


def listen(host: str, port: int, *, shared: bool) -> socket.socket:
    """A listening socket; ``shared`` lets replicas listen on the same port, the kernel spreading connections."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve(config: RunConfig, process: ProcessConfig) -> None:
    """Serve ``process`` until SIGINT or SIGTERM.

    On SIGTERM uvicorn stops gracefully: it closes its listening sockets (so a replica sharing the port gets the new
    connections), closes idle keep-alive connections, and lets requests in progress finish (up to 5 s).

    What a connection may hold (keep-alive and request timeouts, head size, number of connections) comes from the
    ``ARCHBENCH_*`` variables of :mod:`plumbing.limits`.
    """
    limits = Limits.from_env(os.environ)
    tracing.configure(Path(config.run_dir) / "spans" / f"{process.name}.jsonl")
    app = ProcessApp(config, process)
    host = config.bind or config.host
    sockets = None
    if process.own_port is not None:
        sockets = [listen(host, process.port, shared=True), listen(host, process.own_port, shared=False)]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=process.port,
            loop="uvloop",
            http=protocol(limits),
            lifespan="on",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
            backlog=2048,
        )
    )
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(3)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m plumbing.host", description=__doc__)
    parser.add_argument("--config", type=Path, help="topology.json written by the launcher")
    parser.add_argument("--process", help="name of the process to run, as in the configuration")
    parser.add_argument(
        "--from-env", action="store_true", help="one component configured by ARCHBENCH_* variables (containers)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        if args.from_env:
            config, name = RunConfig.from_env(os.environ)
            Path(config.run_dir).mkdir(parents=True, exist_ok=True)
        elif args.config is not None and args.process is not None:
            config, name = RunConfig.load(args.config), args.process
        else:
            parser.error("give --config and --process, or --from-env")
        process = config.process(name)
    except (OSError, KeyError, ValueError) as exc:
        parser.exit(2, f"plumbing.host: {exc}\n")
    serve(config, process)


if __name__ == "__main__":
    main()
