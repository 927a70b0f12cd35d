"""External targets: run the experiments against a system deployed elsewhere, without starting anything here.

A target is a running shop (the compose files or Kubernetes manifests in ``deploy/``, ``archbench serve``, another
machine) reached by URL. The experiments see it through the same :class:`bench.system.deploy.Deployed` interface as a
deployment of their own, except that a target has no supervisor and no run directory, so:

* process faults (kill, pause) are skipped: they need the harness's supervisor;
* dependency faults (latency, error, hang) work through the admin endpoint of each process, given by its URL;
* CPU and memory per process are not measured (NaN), the per-hop breakdown of traced requests is skipped (the span
  files are on the target's hosts), and the consistency audit does not run (its databases are not here either).

What was skipped is recorded in the ``notes`` table of the results, and printed at the end of the run.

A targets file describes a target: :data:`FILE_FORMAT` (shown by ``archbench run --help``), with an example in
``deploy/targets.example.toml``.
"""

from __future__ import annotations

import http.client
import json
import os
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from bench.system.deploy import Deployed, api_key_headers
from bench.system.faults import admin_faults
from plumbing.faults import TOKEN_ENV
from plumbing.resilience import PROFILES
from plumbing.topology import PUBLIC, TOPOLOGIES, layout
from shop.seed import SeedSpec

API_KEY_ENV = "ARCHBENCH_API_KEY"
NOTE_COLUMNS = ("topology", "experiment", "subject", "note")
NOT_METERED = "not measured: the target's processes are not on this machine"
PROBE_TIMEOUT = 5.0


FILE_FORMAT = """\
A targets file is TOML (JSON with the same keys when its name ends in .json);
secrets never go in it:

  # required: monolith, colocated or microservices, and the public API
  topology = "microservices"
  public_url = "http://127.0.0.1:8000"
  # the resilience profile it runs (ARCHBENCH_PROFILE): a label
  profile = "naive"
  # how it was seeded (ARCHBENCH_PRODUCTS, ARCHBENCH_USERS; defaults as in
  # deploy/)
  products = 1000
  users = 200
  # the environment variables that hold the API key and the admin token
  # (these are the defaults)
  api_key_env = "ARCHBENCH_API_KEY"
  admin_token_env = "ARCHBENCH_ADMIN_TOKEN"

  # process -> base URL of its admin endpoint (dependency faults); processes:
  # monolith | colocated | gateway and the five services; the public process
  # defaults to public_url
  [admin]
  gateway = "http://127.0.0.1:8000"
  payments = "http://127.0.0.1:8003"

A fault on a process without an admin URL is skipped with a note."""


class TargetError(ValueError):
    """A target that cannot be used as described; the message is one line for the terminal."""


@dataclass(frozen=True)
class TargetSpec:
    """What the targets file says: where the system is and how it was deployed. It holds no secret, only the names of
    the environment variables that hold them."""

    topology: str
    public_url: str
    admin_urls: Mapping[str, str] = field(default_factory=dict)
    profile: str = "naive"
    products: int = SeedSpec.products
    users: int = SeedSpec.users
    api_key_env: str = API_KEY_ENV
    admin_token_env: str = TOKEN_ENV

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise TargetError(f"key 'topology': {self.topology!r} is not one of {', '.join(TOPOLOGIES)}")
        check_url("key 'public_url'", self.public_url)
        processes = [name for name, _ in layout(self.topology)]
        for process, url in self.admin_urls.items():
            if process not in processes:
                known = ", ".join(processes)
                raise TargetError(f"key 'admin.{process}': no such process in {self.topology} (it has {known})")
            check_url(f"key 'admin.{process}'", url)
        if self.profile not in PROFILES:
            raise TargetError(f"key 'profile': {self.profile!r} is not one of {', '.join(PROFILES)}")
        for key in ("products", "users"):
            if getattr(self, key) < 1:
                raise TargetError(f"key {key!r}: must be at least 1")

    @classmethod
    def from_url(cls, url: str, topology: str) -> TargetSpec:
        """A target known by its public URL alone (the admin URL of the public process is that URL)."""
        check_url("--target", url)
        return cls(topology, url)

    @property
    def public_process(self) -> str:
        return next(name for name, components in layout(self.topology) if PUBLIC[self.topology] in components)

    def admin_url(self, process: str) -> str | None:
        """The base URL of ``process``'s admin endpoint: as given, else the public URL for the public process."""
        url = self.admin_urls.get(process)
        if url is None and process == self.public_process:
            url = self.public_url
        return url.rstrip("/") if url is not None else None

    def known_admin_urls(self) -> dict[str, str]:
        """Process -> admin URL, for every process whose admin URL is known."""
        urls = {name: self.admin_url(name) for name, _ in layout(self.topology)}
        return {name: url for name, url in urls.items() if url is not None}

    def describe(self) -> dict[str, Any]:
        """What the results record about the target (no secret)."""
        return {
            "topology": self.topology,
            "public_url": self.public_url,
            "admin_urls": self.known_admin_urls(),
            "profile": self.profile,
            "products": self.products,
            "users": self.users,
        }


def check_url(what: str, url: object) -> None:
    """``url`` must be what the load generator can send to: ``http://host[:port]``, no path."""
    problem = f"{what}: {url!r} is not an http://host[:port] URL"
    if not isinstance(url, str):
        raise TargetError(problem)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        raise TargetError(problem) from None
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise TargetError(problem)


KEYS: dict[str, type] = {
    "topology": str,
    "public_url": str,
    "admin": dict,
    "profile": str,
    "products": int,
    "users": int,
    "api_key_env": str,
    "admin_token_env": str,
}


def load_targets(path: Path) -> TargetSpec:
    """Read and check a targets file (see the module docstring); a problem is a :class:`TargetError` naming the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetError(f"targets file {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise TargetError(f"targets file {path}: not valid {kind}: {exc}") from None
    try:
        return spec_from_mapping(raw)
    except TargetError as exc:
        raise TargetError(f"targets file {path}: {exc}") from None


def spec_from_mapping(raw: object) -> TargetSpec:
    if not isinstance(raw, dict):
        raise TargetError("expected a table of keys at the top")
    for key, value in raw.items():
        kind = KEYS.get(key)
        if kind is None:
            raise TargetError(f"unknown key {key!r} (known: {', '.join(KEYS)})")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TargetError(f"key {key!r}: expected {'a table' if kind is dict else kind.__name__}, not {value!r}")
    for key in ("topology", "public_url"):
        if key not in raw:
            raise TargetError(f"key {key!r} is missing")
    admin = raw.get("admin", {})
    for process, url in admin.items():
        if not isinstance(url, str):
            raise TargetError(f"key 'admin.{process}': expected a URL string, not {url!r}")
    values = {key: value for key, value in raw.items() if key != "admin"}
    return TargetSpec(admin_urls=dict(admin), **values)


@dataclass(frozen=True)
class ExternalDeployment:
    """A system deployed elsewhere as the experiments see it (:class:`bench.system.deploy.Deployed`): URLs and
    credentials, no supervisor and no run directory."""

    spec: TargetSpec
    api_key: str | None = None
    admin_token: str | None = None
    supervisor: None = None
    run_dir: None = None

    @property
    def topology(self) -> str:
        return self.spec.topology

    @property
    def public_url(self) -> str:
        return self.spec.public_url.rstrip("/")

    @property
    def auth_headers(self) -> tuple[tuple[str, str], ...]:
        return api_key_headers(self.api_key)

    @property
    def trace_headers(self) -> tuple[tuple[str, str], ...]:
        return ()  # the run's service secret stays with the target (and its span files on its hosts)

    def process_of(self, component: str) -> str:
        for name, components in layout(self.topology):
            if component in components:
                return name
        raise KeyError(f"no process hosts component {component!r} in topology {self.topology!r}")

    def replicas_of(self, component: str) -> list[str]:
        return [self.process_of(component)]  # a replicated process is one admin URL behind its balancer

    def admin_url(self, process: str) -> str | None:
        return self.spec.admin_url(process)


def connect(spec: TargetSpec, *, faults: bool, environ: Mapping[str, str] = os.environ) -> ExternalDeployment:
    """The target with its credentials from the environment, once it is known to answer: the public URL is ready
    and takes the API key, and with ``faults`` every known admin endpoint takes the admin token.

    Every check is one request, so a wrong URL or credential fails here, in a second, before anything is measured.
    """
    target = ExternalDeployment(spec, environ.get(spec.api_key_env) or None, environ.get(spec.admin_token_env) or None)
    url = target.public_url
    status = http_status(url, "/readyz")
    if status != 200:
        raise TargetError(f"{url} is not ready: /readyz answered {status}")
    status = http_status(url, "/products?limit=1", target.auth_headers)
    if status == 401:
        key = f"the API key in ${spec.api_key_env}" if target.api_key else f"no API key (${spec.api_key_env} is unset)"
        raise TargetError(f"{url} refused the public API with {key}")
    if status != 200:
        raise TargetError(f"{url}/products answered {status}")
    if faults:
        if target.admin_token is None:
            raise TargetError(f"the failure experiment needs the admin token: set ${spec.admin_token_env}")
        for process, admin in spec.known_admin_urls().items():
            check_admin(process, admin, target.admin_token, spec.admin_token_env)
    return target


def http_status(url: str, path: str, headers: Iterable[tuple[str, str]] = ()) -> int:
    """The status of ``GET url+path``; a connection that fails is a :class:`TargetError` ("cannot reach ...")."""
    request = urllib.request.Request(f"{url}{path}", headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, http.client.HTTPException) as exc:
        raise TargetError(f"cannot reach {url}: {reason(exc)}") from None


def check_admin(process: str, url: str, token: str, token_env: str) -> None:
    try:
        admin_faults(url, token, "GET", retry_seconds=0.0)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise TargetError(f"{url} ({process}) has no fault endpoint: it was started without {TOKEN_ENV}") from None
        if exc.code == 401:
            raise TargetError(f"{url} ({process}) refused the admin token in ${token_env}") from None
        raise TargetError(f"{url}/admin/faults ({process}) answered {exc.code}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise TargetError(f"cannot reach {url} (admin of {process}): {reason(exc)}") from None


def reason(exc: Exception) -> str:
    """Why a connection failed, in a few words: "connection refused", "timed out", "name or service not known"."""
    cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    if isinstance(cause, http.client.HTTPException):
        return f"no HTTP reply ({type(cause).__name__})"
    return str(cause) or type(cause).__name__


def running(
    target: Deployed | None, start: Callable[[], AbstractContextManager[Deployed]]
) -> AbstractContextManager[Deployed]:
    """``target`` as it is when there is one (nothing to start or stop), else the deployment that ``start`` makes."""
    return nullcontext(target) if target is not None else start()


def notes(topology: str, experiment: str, items: Iterable[tuple[str, str]]) -> pd.DataFrame:
    """The ``notes`` table: what an experiment did not measure, and why (one row per ``(subject, note)``)."""
    rows = [(topology, experiment, subject, note) for subject, note in items]
    return pd.DataFrame(rows, columns=list(NOTE_COLUMNS))
