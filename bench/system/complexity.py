"""Operational complexity of each topology, counted from its deployment files: what there is to run and configure.

Static: nothing is built or started. For each topology (``monolith``, ``microservices``) it reads the compose file
``deploy/compose/<topology>.yaml`` and the Kubernetes manifests ``deploy/k8s/<topology>/*.yaml`` and counts

- ``processes``: compose services, one process each; ``replicas``: pods the Deployments ask for;
- ``listening_ports``: container ports the Deployments' pods declare; ``exposed_ports``: ports of the Services
  reachable from outside the cluster (type LoadBalancer or NodePort);
- ``databases``: PersistentVolumeClaims (one SQLite file each); ``volumes``: compose named volumes;
- ``config_entries``: what an operator writes in Kubernetes: ConfigMap and Secret keys plus each container's ``env``;
  ``env_vars``: environment variables the processes receive, summed over compose services (after YAML merges);
- ``compose_lines``, ``k8s_lines``: non-blank, non-comment lines; ``k8s_objects``: Kubernetes objects.

:func:`live_counts` counts the same kind of figures from a running deployment instead (processes, listening ports,
open databases, connections between the processes), for the report to set beside the files' figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import yaml

from bench.system.codebase import count_lines

TOPOLOGIES = ("monolith", "microservices")
EXPOSED_SERVICE_TYPES = ("LoadBalancer", "NodePort")
COLUMNS = (
    "topology",
    "processes",
    "replicas",
    "listening_ports",
    "exposed_ports",
    "databases",
    "volumes",
    "config_entries",
    "env_vars",
    "compose_lines",
    "k8s_lines",
    "k8s_objects",
)


def compose_file(repo_root: Path, topology: str) -> Path:
    return repo_root / "deploy" / "compose" / f"{topology}.yaml"


def k8s_files(repo_root: Path, topology: str) -> list[Path]:
    folder = repo_root / "deploy" / "k8s" / topology
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        raise FileNotFoundError(f"no Kubernetes manifests in {folder}")
    return paths


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (empty documents skipped); each must be a mapping."""
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    return [as_mapping(doc, str(path)) for doc in docs]


def as_mapping(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping, found {type(value).__name__}")
    return {str(key): item for key, item in value.items()}


def as_list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list, found {type(value).__name__}")
    return value


def compose_counts(path: Path) -> dict[str, int]:
    """Processes, named volumes, environment variables and lines of one compose file."""
    (doc,) = load_documents(path)
    services = as_mapping(doc.get("services"), f"{path}: services")
    specs = [as_mapping(spec, f"{path}: {name}") for name, spec in services.items()]
    return {
        "processes": len(specs),
        "volumes": len(as_mapping(doc.get("volumes") or {}, f"{path}: volumes")),
        # A list-form environment has one entry per item, a mapping one per key: len() counts both.
        "env_vars": sum(len(spec.get("environment") or ()) for spec in specs),
        "compose_lines": count_lines(path),
    }


def pod_containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = as_mapping(deployment.get("spec"), "Deployment spec")
    pod = as_mapping(as_mapping(spec.get("template"), "template").get("spec"), "pod spec")
    return [as_mapping(c, "container") for c in as_list(pod.get("containers"), "containers")]


def k8s_counts(paths: list[Path]) -> dict[str, int]:
    """Replicas, ports, databases, configuration entries, objects and lines of a set of Kubernetes manifests."""
    objects = [doc for path in paths for doc in load_documents(path)]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(str(obj.get("kind")), []).append(obj)
    deployments = by_kind.get("Deployment", [])
    containers = [c for d in deployments for c in pod_containers(d)]
    services = [as_mapping(s.get("spec"), "Service spec") for s in by_kind.get("Service", [])]
    stored_keys = [
        key for obj in by_kind.get("ConfigMap", []) + by_kind.get("Secret", []) for key in stored_data_keys(obj)
    ]
    return {
        # The API server defaults an absent replica count to 1.
        "replicas": sum(int(as_mapping(d.get("spec"), "spec").get("replicas", 1)) for d in deployments),
        "listening_ports": sum(len(as_list(c.get("ports"), "ports")) for c in containers),
        "exposed_ports": sum(
            len(as_list(s.get("ports"), "ports")) for s in services if s.get("type") in EXPOSED_SERVICE_TYPES
        ),
        "databases": len(by_kind.get("PersistentVolumeClaim", [])),
        "config_entries": len(stored_keys) + sum(len(as_list(c.get("env"), "env")) for c in containers),
        "k8s_lines": sum(count_lines(path) for path in paths),
        "k8s_objects": len(objects),
    }


def stored_data_keys(obj: dict[str, Any]) -> list[str]:
    """The keys a ConfigMap or Secret holds, whichever of its data fields carries them."""
    keys: list[str] = []
    for field in ("data", "stringData", "binaryData"):
        keys += as_mapping(obj.get(field) or {}, field)
    return keys


def complexity_table(repo_root: Path) -> pd.DataFrame:
    """One row per topology: processes, ports, databases, configuration entries and deployment-file lines.

    Counted from ``repo_root/deploy`` (compose file and Kubernetes manifests of each topology); see the module docstring
    for what each column counts.
    """
    rows = []
    for topology in TOPOLOGIES:
        compose = compose_counts(compose_file(repo_root, topology))
        k8s = k8s_counts(k8s_files(repo_root, topology))
        rows.append({"topology": topology, **compose, **k8s})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def live_counts(topology: str, pids: Mapping[str, int]) -> dict[str, Any]:
    """What a running deployment of ``topology`` holds, counted by the kernel from its processes' ``pids``.

    ``live_listening_ports``: TCP ports the processes listen on; ``live_databases``: distinct SQLite files they hold
    open; ``live_connections``: TCP connections established between two of them (the call graph's open edges).
    """
    listening: set[int] = set()
    databases: set[str] = set()
    local_ends: set[tuple[str, int]] = set()
    remote_ends: list[tuple[str, int]] = []
    for pid in pids.values():
        try:
            process = psutil.Process(pid)
            connections = process.net_connections(kind="tcp")
            files = process.open_files()
        except psutil.Error:  # gone meanwhile: counted as nothing
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN:
                listening.add(conn.laddr.port)
            elif conn.status == psutil.CONN_ESTABLISHED and conn.raddr:
                local_ends.add((conn.laddr.ip, conn.laddr.port))
                remote_ends.append((conn.raddr.ip, conn.raddr.port))
        databases.update(f.path for f in files if f.path.endswith(".db"))
    return {
        "topology": topology,
        "live_processes": len(pids),
        "live_listening_ports": len(listening),
        "live_databases": len(databases),
        "live_connections": sum(end in local_ends for end in remote_ends),
    }
