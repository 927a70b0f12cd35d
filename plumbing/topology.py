"""Where each component runs: the one place that decides the topology.

A component is the monolith, the gateway, or one service. A process hosts one or several components and serves the
first one on its port; a component calls a peer in the same process through the in-process ASGI transport and a peer
elsewhere over HTTP. So ``colocated`` and ``microservices`` run the same code and differ only in this configuration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shop.seed import SeedSpec

TOPOLOGIES = ("monolith", "colocated", "microservices")
SERVICES = ("users", "inventory", "payments", "notifications", "orders")
# Build order: every component after the peers it calls.
COMPONENTS = ("monolith", *SERVICES, "gateway")
PUBLIC = {"monolith": "monolith", "colocated": "gateway", "microservices": "gateway"}


@dataclass(frozen=True)
class ProcessConfig:
    name: str
    port: int
    components: tuple[str, ...]

    @property
    def front(self) -> str:
        """The component served on this process's port."""
        return self.components[0]


@dataclass(frozen=True)
class RunConfig:
    topology: str
    run_dir: str
    processes: tuple[ProcessConfig, ...]
    seed: SeedSpec = field(default_factory=SeedSpec)
    stack: str = "aiohttp"
    host: str = "127.0.0.1"
    call_timeout: float = 2.0
    profile: str = "naive"  # resilience profile of every call between components (plumbing.resilience)
    # Where peers live when they are not on ``host`` (containers, a cluster): component -> base URL.
    peer_urls: tuple[tuple[str, str], ...] = ()
    bind: str | None = None  # address to listen on; default: ``host`` (loopback)
    auth: bool = False  # API keys at the edge and service credentials inside (keys from the environment)

    def process_of(self, component: str) -> ProcessConfig:
        for proc in self.processes:
            if component in proc.components:
                return proc
        raise KeyError(f"no process hosts component {component!r} in topology {self.topology!r}")

    def process(self, name: str) -> ProcessConfig:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise KeyError(f"no process named {name!r} in topology {self.topology!r}")

    def url_of(self, component: str) -> str:
        for name, url in self.peer_urls:
            if name == component:
                return url
        return f"http://{self.host}:{self.process_of(component).port}"

    def db_path(self, component: str) -> Path:
        return Path(self.run_dir) / f"{component}.db"

    @property
    def public_url(self) -> str:
        return self.url_of(PUBLIC[self.topology])

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        raw = json.loads(path.read_text())
        return cls(
            topology=raw["topology"],
            run_dir=raw["run_dir"],
            processes=tuple(ProcessConfig(p["name"], int(p["port"]), tuple(p["components"])) for p in raw["processes"]),
            seed=SeedSpec(**raw["seed"]),
            stack=raw["stack"],
            host=raw["host"],
            call_timeout=float(raw["call_timeout"]),
            profile=raw.get("profile", "naive"),
            peer_urls=tuple((str(k), str(v)) for k, v in raw.get("peer_urls", ())),
            bind=raw.get("bind"),
            auth=bool(raw.get("auth", False)),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> tuple[RunConfig, str]:
        """A one-process configuration from environment variables (containers); returns it and the process name.

        ``ARCHBENCH_COMPONENT`` (monolith, gateway or a service; required), ``ARCHBENCH_PORT`` (8000),
        ``ARCHBENCH_DATA_DIR`` (/data), ``ARCHBENCH_BIND`` (0.0.0.0), ``ARCHBENCH_PEERS`` (``name=url,...``: where
        the other components are), ``ARCHBENCH_STACK``, ``ARCHBENCH_PROFILE``, ``ARCHBENCH_CALL_TIMEOUT``,
        ``ARCHBENCH_SEED``, ``ARCHBENCH_PRODUCTS``, ``ARCHBENCH_USERS``.
        """
        component = env.get("ARCHBENCH_COMPONENT", "")
        if component not in COMPONENTS:
            raise ValueError(f"ARCHBENCH_COMPONENT must be one of {', '.join(COMPONENTS)}, not {component!r}")
        port = int(env.get("ARCHBENCH_PORT", "8000"))
        peers = tuple(
            (name.strip(), url.strip())
            for name, _, url in (item.partition("=") for item in env.get("ARCHBENCH_PEERS", "").split(",") if item)
        )
        seed = SeedSpec(
            seed=int(env.get("ARCHBENCH_SEED", "1")),
            products=int(env.get("ARCHBENCH_PRODUCTS", "1000")),
            users=int(env.get("ARCHBENCH_USERS", "200")),
        )
        topology = "monolith" if component == "monolith" else "microservices"
        config = cls(
            topology=topology,
            run_dir=env.get("ARCHBENCH_DATA_DIR", "/data"),
            processes=(ProcessConfig(component, port, (component,)),),
            seed=seed,
            stack=env.get("ARCHBENCH_STACK", "raw"),
            call_timeout=float(env.get("ARCHBENCH_CALL_TIMEOUT", "2.0")),
            profile=env.get("ARCHBENCH_PROFILE", "naive"),
            peer_urls=peers,
            bind=env.get("ARCHBENCH_BIND", "0.0.0.0"),
            auth=env.get("ARCHBENCH_AUTH", "on") != "off",
        )
        return config, component


def layout(topology: str) -> list[tuple[str, tuple[str, ...]]]:
    """``(process name, components)`` for each process of ``topology``."""
    if topology == "monolith":
        return [("monolith", ("monolith",))]
    if topology == "colocated":
        return [("colocated", ("gateway", *SERVICES))]
    if topology == "microservices":
        procs: list[tuple[str, tuple[str, ...]]] = [("gateway", ("gateway",))]
        return procs + [(s, (s,)) for s in SERVICES]
    raise ValueError(f"unknown topology {topology!r}; choose one of {', '.join(TOPOLOGIES)}")


def make_config(
    topology: str,
    run_dir: Path,
    ports: dict[str, int],
    seed: SeedSpec,
    stack: str,
    public_port: int | None = None,
    call_timeout: float = 2.0,
    profile: str = "naive",
    auth: bool = False,
) -> RunConfig:
    """A configuration for ``topology`` whose processes listen on ``ports`` (process name -> port)."""
    procs = []
    for name, components in layout(topology):
        port = public_port if public_port is not None and PUBLIC[topology] in components else ports[name]
        procs.append(ProcessConfig(name, port, components))
    return RunConfig(
        topology, str(run_dir), tuple(procs), seed, stack, call_timeout=call_timeout, profile=profile, auth=auth
    )
