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

from shop.connection import LOCK_WAIT
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
    # Replicas of the public component share ``port`` (SO_REUSEPORT: the kernel spreads connections over them, as
    # ``uvicorn --workers`` does over one socket); each then also listens on a port of its own, so that it can be
    # probed and given faults on its own.
    own_port: int | None = None

    @property
    def front(self) -> str:
        """The component served on this process's port."""
        return self.components[0]

    @property
    def control_port(self) -> int:
        """Where this very process answers (probes, /admin), even when it shares ``port`` with replicas."""
        return self.own_port if self.own_port is not None else self.port


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
    # Seconds a unit of work waits for its database's write lock before answering 503 (shop.db.UnitOfWork).
    lock_wait: float = LOCK_WAIT
    # Component -> database URL (``postgresql://role@host:port/db``, never with a password: see db_password_env);
    # a component not listed has a SQLite file of its own in ``run_dir``.
    databases: tuple[tuple[str, str], ...] = ()

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
        return self.urls_of(component)[0]

    def urls_of(self, component: str) -> list[str]:
        """Every address of ``component``: one per replica listening on a port of its own, in replica order."""
        urls = [url for name, url in self.peer_urls if name == component]
        if not urls:
            ports = [p.port for p in self.processes if component in p.components]
            if not ports:
                raise KeyError(f"no process hosts component {component!r} in topology {self.topology!r}")
            urls = [f"http://{self.host}:{port}" for port in dict.fromkeys(ports)]
        return urls

    def replicas_of(self, component: str) -> list[ProcessConfig]:
        """The processes that serve ``component`` on their port (its replicas)."""
        return [p for p in self.processes if p.front == component]

    def db_path(self, component: str) -> Path:
        return Path(self.run_dir) / f"{component}.db"

    def db_url(self, component: str) -> str:
        """Where ``component`` keeps its data: its PostgreSQL database, or its SQLite file in the run directory."""
        for name, url in self.databases:
            if name == component:
                return url
        return f"sqlite://{self.db_path(component)}"

    @property
    def engine(self) -> str:
        return "postgresql" if self.databases else "sqlite"

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
            processes=tuple(
                ProcessConfig(p["name"], int(p["port"]), tuple(p["components"]), p.get("own_port"))
                for p in raw["processes"]
            ),
            seed=SeedSpec(**raw["seed"]),
            stack=raw["stack"],
            host=raw["host"],
            call_timeout=float(raw["call_timeout"]),
            profile=raw.get("profile", "naive"),
            peer_urls=tuple((str(k), str(v)) for k, v in raw.get("peer_urls", ())),
            bind=raw.get("bind"),
            auth=bool(raw.get("auth", False)),
            lock_wait=float(raw.get("lock_wait", LOCK_WAIT)),
            databases=tuple((str(k), str(v)) for k, v in raw.get("databases", ())),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> tuple[RunConfig, str]:
        """A one-process configuration from environment variables (containers); returns it and the process name.

        ``ARCHBENCH_COMPONENT`` (monolith, gateway or a service; required), ``ARCHBENCH_PORT`` (8000),
        ``ARCHBENCH_DATA_DIR`` (/data), ``ARCHBENCH_BIND`` (0.0.0.0), ``ARCHBENCH_PEERS`` (``name=url,...``: where
        the other components are), ``ARCHBENCH_STACK``, ``ARCHBENCH_PROFILE``, ``ARCHBENCH_CALL_TIMEOUT``,
        ``ARCHBENCH_SEED``, ``ARCHBENCH_PRODUCTS``, ``ARCHBENCH_USERS``, ``ARCHBENCH_LOCK_WAIT`` (seconds a write
        waits for the database's write lock before a 503; default :data:`shop.connection.LOCK_WAIT`),
        ``ARCHBENCH_DB_URL`` (the component's PostgreSQL database, ``postgresql://role@host:port/db``; default: a
        SQLite file in the data directory; its password in ``PGPASSWORD`` or :func:`db_password_env`).
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
            lock_wait=float(env.get("ARCHBENCH_LOCK_WAIT", str(LOCK_WAIT))),
            databases=((component, env["ARCHBENCH_DB_URL"]),) if env.get("ARCHBENCH_DB_URL") else (),
        )
        return config, component


def db_password_env(component: str) -> str:
    """The environment variable that carries the password of ``component``'s database role."""
    return f"ARCHBENCH_DB_PASSWORD_{component.upper()}"


def database_components(topology: str) -> tuple[str, ...]:
    """The components of ``topology`` that own a database: the monolith, or each service."""
    return ("monolith",) if topology == "monolith" else SERVICES


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


def replica_names(name: str, count: int) -> list[str]:
    """Process names of ``count`` replicas of the process ``name`` of a layout: the name itself when alone."""
    return [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]


def make_config(
    topology: str,
    run_dir: Path,
    ports: Mapping[str, int],
    seed: SeedSpec,
    stack: str,
    public_port: int | None = None,
    call_timeout: float = 2.0,
    profile: str = "naive",
    auth: bool = False,
    replicas: Mapping[str, int] | None = None,
    databases: Mapping[str, str] | None = None,
) -> RunConfig:
    """A configuration for ``topology`` whose processes listen on ``ports`` (process name -> port).

    ``replicas`` (layout process name -> count, default 1) runs several identical processes of one layout entry, named
    ``NAME-1`` .. ``NAME-k``, sharing its database files. The public one's replicas share the public port (its port in
    ``ports`` under the layout name) and each listens on ``ports[NAME-i]`` too; the others' each listen on
    ``ports[NAME-i]``, and their callers balance over them. ``databases`` (component -> URL) puts components'
    data in PostgreSQL (see :attr:`RunConfig.databases`).
    """
    replicas = dict(replicas or {})
    unknown = set(replicas) - {name for name, _ in layout(topology)}
    if unknown:
        raise ValueError(f"no process {sorted(unknown)} to replicate in topology {topology!r}")
    if any(count < 1 for count in replicas.values()):
        raise ValueError(f"a replica count must be at least 1: {replicas}")
    procs = []
    for name, components in layout(topology):
        public = PUBLIC[topology] in components
        names = replica_names(name, replicas.get(name, 1))
        shared = public_port if public and public_port is not None else None
        for proc_name in names:
            if len(names) == 1:
                procs.append(ProcessConfig(proc_name, shared or ports[name], components))
            elif public:
                procs.append(ProcessConfig(proc_name, shared or ports[name], components, own_port=ports[proc_name]))
            else:
                procs.append(ProcessConfig(proc_name, ports[proc_name], components))
    return RunConfig(
        topology,
        str(run_dir),
        tuple(procs),
        seed,
        stack,
        call_timeout=call_timeout,
        profile=profile,
        auth=auth,
        databases=tuple(sorted((databases or {}).items())),
    )
