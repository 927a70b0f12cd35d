"""Deploy a topology on this machine: choose ports, write the configuration, start and probe every process.

The topology (which components run in which process) comes from :mod:`plumbing.topology`; this module only decides
ports, CPU pinning and the run directory, and leaves the processes to :class:`bench.system.supervisor.Supervisor`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from bench.common.names import PLACEMENT_COLUMNS
from bench.system.postgres import (
    DB_CHOICES,
    PostgresServer,
    RunDatabases,
    check_databases,
    external_databases,
    start_databases,
    url_passwords,
)
from bench.system.supervisor import ProcessSpec, Supervisor, free_port
from plumbing import tracing
from plumbing.auth import API_KEY_HEADER, API_KEYS_ENV, SERVICE_SECRET_ENV
from plumbing.faults import TOKEN_ENV
from plumbing.topology import RunConfig, layout, make_config, replica_names
from plumbing.transports import DEFAULT_STACK
from shop.seed import SeedSpec

CONFIG_FILE = "topology.json"
DB_ENV = "ARCHBENCH_DB"
"""The default database of :func:`deploy`: ``sqlite``, ``postgres`` (archbench's own server, shared by the run's
databases) or ``postgres-per-service`` (one server per database)."""
DB_URL_ENV = "ARCHBENCH_DB_URL"
"""The default existing PostgreSQL server of :func:`deploy` (see :func:`bench.system.postgres.external_databases`)."""


class Deployed(Protocol):
    """What the experiments use of a running system: a :class:`Deployment` started here, or an external target
    (:class:`bench.system.target.ExternalDeployment`) that was deployed elsewhere and that nothing here starts or stops.

    ``supervisor`` and ``run_dir`` are None for a target: no process to kill, pause or meter, no file to read.
    """

    @property
    def topology(self) -> str: ...

    @property
    def public_url(self) -> str: ...

    @property
    def auth_headers(self) -> tuple[tuple[str, str], ...]: ...

    @property
    def admin_token(self) -> str | None: ...

    @property
    def trace_headers(self) -> tuple[tuple[str, str], ...]:
        """What a traced request adds to have its traceparent honoured at the public edge (see plumbing.tracing)."""
        ...

    @property
    def supervisor(self) -> Supervisor | None: ...

    @property
    def run_dir(self) -> Path | None: ...

    def process_of(self, component: str) -> str:
        """The name of the process that hosts ``component`` (its first replica when it has several)."""
        ...

    def replicas_of(self, component: str) -> list[str]:
        """The names of every process that hosts ``component``."""
        ...

    def admin_url(self, process: str) -> str | None:
        """The base URL where ``process`` serves its admin endpoints (None when unknown)."""
        ...


@dataclass
class Deployment:
    """A running topology: its configuration and the supervisor of its processes."""

    config: RunConfig
    supervisor: Supervisor
    ready_seconds: float
    admin_token: str | None = None
    api_key: str | None = None
    secrets: Secrets | None = None  # this run's credentials (kept in memory only), for tests that play a caller
    databases: RunDatabases | None = None  # its PostgreSQL databases (None: SQLite files in the run directory)

    def database_process(self, component: str) -> str | None:
        """The supervisor's name of the server holding ``component``'s database (None: SQLite, or not ours)."""
        if self.databases is None:
            return None
        return self.databases.servers.get("monolith" if self.topology == "monolith" else component)

    @property
    def auth_headers(self) -> tuple[tuple[str, str], ...]:
        """What a client of the public API sends to be let in (nothing when auth is off)."""
        return api_key_headers(self.api_key)

    @property
    def trace_headers(self) -> tuple[tuple[str, str], ...]:
        """The harness's credential under this run's service secret: the edge samples only what it asks for."""
        return tracing.harness_headers(self.secrets.service_secret if self.secrets else None)

    @property
    def topology(self) -> str:
        return self.config.topology

    @property
    def public_url(self) -> str:
        return self.config.public_url

    @property
    def run_dir(self) -> Path:
        return Path(self.config.run_dir)

    def process_names(self) -> list[str]:
        return [p.name for p in self.config.processes]

    def process_of(self, component: str) -> str:
        return self.config.process_of(component).name

    def replicas_of(self, component: str) -> list[str]:
        return [p.name for p in self.config.processes if component in p.components]

    def admin_url(self, process: str) -> str:
        # The process's own port: a replica of the public process shares the public port with its siblings.
        return f"http://{self.config.host}:{self.config.process(process).control_port}"


def placement(deployment: Deployment) -> pd.DataFrame:
    """Where each component of ``deployment`` runs: one row per component with the process that hosts it (its first
    replica) and the file name of its database ("" when it has none); see :data:`PLACEMENT_COLUMNS`."""
    config = deployment.config
    components = dict.fromkeys(c for p in config.processes for c in p.components)
    rows = []
    for component in components:
        database = config.db_path(component)
        name = database.name if database.exists() else ""
        rows.append((config.topology, component, config.process_of(component).name, name))
    return pd.DataFrame(rows, columns=list(PLACEMENT_COLUMNS))


def api_key_headers(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """The headers that present ``api_key`` to the public API (none without a key)."""
    return ((API_KEY_HEADER, api_key),) if api_key else ()


def default_run_dir(topology: str, base: Path = Path("runs")) -> Path:
    return base / f"{topology}-{time.strftime('%Y%m%d-%H%M%S')}"


def process_spec(
    config: RunConfig, config_path: Path, name: str, cpus: frozenset[int] | None, env: Mapping[str, str]
) -> ProcessSpec:
    argv = [sys.executable, "-m", "plumbing.host", "--config", str(config_path), "--process", name]
    return ProcessSpec(name, argv, port=config.process(name).control_port, cpus=cpus, env=env)


@dataclass(frozen=True)
class Secrets:
    """Credentials made for one run, handed to its processes through the environment (never written to disk)."""

    api_key: str
    service_secret: str
    admin_token: str | None

    @classmethod
    def generate(cls, admin_token: str | None) -> Secrets:
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(32), admin_token)

    def env(self) -> dict[str, str]:
        env = {API_KEYS_ENV: self.api_key, SERVICE_SECRET_ENV: self.service_secret}
        if self.admin_token:
            env[TOKEN_ENV] = self.admin_token
        return env


def _clean_up(servers: list[PostgresServer]) -> None:
    for server in servers:
        server.cleanup()


@contextmanager
def deploy(
    topology: str,
    run_dir: Path,
    *,
    seed: SeedSpec | None = None,
    stack: str = DEFAULT_STACK,
    public_port: int | None = None,
    cpus: frozenset[int] | None = None,
    ready_timeout: float = 60.0,
    call_timeout: float = 2.0,
    admin_token: str | None = None,
    profile: str = "naive",
    auth: bool = True,
    replicas: Mapping[str, int] | None = None,
    db: str | None = None,
    db_url: str | None = None,
) -> Iterator[Deployment]:
    """Start ``topology`` in ``run_dir`` and yield it once every process answers ``/readyz``; stop all on exit.

    ``db``: ``sqlite`` (a file per database in ``run_dir``), ``postgres`` (archbench's own PostgreSQL server in
    ``run_dir``, started first and stopped with the rest) or ``postgres-per-service`` (one server per database);
    default ``ARCHBENCH_DB`` or ``sqlite``. ``db_url`` (default ``ARCHBENCH_DB_URL``): an existing PostgreSQL server
    instead (see :func:`bench.system.postgres.external_databases`), each database checked before anything starts
    (:class:`bench.system.postgres.DatabaseUnusable` says what is wrong).

    With ``admin_token``, every process serves the fault-injection endpoint guarded by that token; without, none does.
    ``replicas`` (process name of the layout -> count) runs several replicas of a process (see
    :func:`plumbing.topology.make_config`); the first replica of each starts (and creates and seeds its database)
    before the others.
    """
    run_dir = run_dir.resolve()
    db = db or os.environ.get(DB_ENV) or "sqlite"
    db_url = db_url or os.environ.get(DB_URL_ENV) or None
    engine, _, servers = db.partition("-")
    if engine not in DB_CHOICES or servers not in ("", "per-service"):
        raise ValueError(f"db must be sqlite, postgres or postgres-per-service, not {db!r}")
    external: RunDatabases | None = None
    if db_url is not None:  # checked before anything is made or started: a bad one is one line (DatabaseUnusable)
        external = external_databases(topology, db_url)
        check_databases(external)
    run_dir.mkdir(parents=True, exist_ok=True)
    names = [name for name, _ in layout(topology)]
    replicas = dict(replicas or {})
    ports = {proc: free_port() for name in names for proc in {name, *replica_names(name, replicas.get(name, 1))}}
    credentials = Secrets.generate(admin_token)
    first = [replica_names(name, replicas.get(name, 1))[0] for name in names]
    own_servers: list[PostgresServer] = []
    with contextlib.ExitStack() as cleanup, Supervisor(run_dir) as supervisor:
        cleanup.callback(_clean_up, own_servers)  # once every process (the servers too) has stopped
        started = time.monotonic()
        databases: RunDatabases | None = external
        if external is not None:
            cleanup.enter_context(url_passwords(run_dir, external))  # for the audit of this run
        elif engine == "postgres":
            databases, servers_started = start_databases(
                supervisor, run_dir, topology, servers or "shared", cpus, timeout=ready_timeout
            )
            own_servers.extend(servers_started)
        if databases is not None:
            databases.write(run_dir)
        config = make_config(
            topology,
            run_dir,
            ports,
            seed or SeedSpec(),
            stack,
            public_port,
            call_timeout,
            profile,
            auth,
            replicas,
            databases=databases.urls if databases else None,
        )
        config_path = run_dir / CONFIG_FILE
        config.save(config_path)
        others = [p.name for p in config.processes if p.name not in first]
        env = {**credentials.env(), **(databases.env() if databases else {})}
        for batch in (first, others):
            for name in batch:
                supervisor.start(process_spec(config, config_path, name, cpus, env))
            supervisor.wait_ready(batch, timeout=ready_timeout)
        api_key = credentials.api_key if auth else None
        yield Deployment(config, supervisor, time.monotonic() - started, admin_token, api_key, credentials, databases)
