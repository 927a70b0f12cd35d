"""The Kubernetes manifests over PostgreSQL keep their promises: every component is stateless, so replicated, rolled
one pod at a time, protected by a disruption budget and scaled on CPU; the data lives in the database server alone."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from plumbing.topology import PUBLIC, SERVICES, RunConfig
from tests.deploy.test_manifests import K8S_VERSIONS, prestop_pause

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s-postgres"
TOPOLOGIES = ("monolith", "microservices")
COMPONENTS = {"monolith": ("monolith",), "microservices": ("gateway", *SERVICES)}


def paths() -> list[Path]:
    return sorted(DEPLOY.glob("*/*.yaml"))


@functools.cache
def objects(topology: str) -> tuple[dict[str, Any], ...]:
    return tuple(
        doc
        for path in sorted((DEPLOY / topology).glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    )


def of_kind(topology: str, kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects(topology) if obj["kind"] == kind}


def test_both_topologies_have_postgres_manifests() -> None:
    assert {path.parent.name for path in paths()} == set(TOPOLOGIES)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", paths(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_object_validates_against_the_schemas(path: Path, version: str) -> None:
    for obj in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_no_component_is_pinned_to_one_replica_or_recreated(topology: str) -> None:
    deployments = of_kind(topology, "Deployment")
    assert set(deployments) == set(COMPONENTS[topology])
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["replicas"] >= 2, name
        assert spec["strategy"]["type"] == "RollingUpdate", name
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        volumes = spec["template"]["spec"]["volumes"]
        assert not any("persistentVolumeClaim" in volume for volume in volumes), f"{name} keeps state on a volume"
    assert of_kind(topology, "PersistentVolumeClaim") == {}


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_each_component_has_a_disruption_budget_and_scales_on_cpu(topology: str) -> None:
    budgets, scalers = of_kind(topology, "PodDisruptionBudget"), of_kind(topology, "HorizontalPodAutoscaler")
    for name, deployment in of_kind(topology, "Deployment").items():
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert budgets[name]["spec"]["selector"]["matchLabels"] == labels
        assert budgets[name]["spec"]["minAvailable"] < deployment["spec"]["replicas"]
        scaler = scalers[name]["spec"]
        assert scaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert scaler["minReplicas"] >= 2
        assert [m["resource"]["name"] for m in scaler["metrics"]] == ["cpu"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert "cpu" in container["resources"]["requests"]  # what a CPU utilization target is a share of


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_the_public_entry_pauses_before_sigterm(topology: str) -> None:
    deployment = of_kind(topology, "Deployment")[PUBLIC[topology]]
    pod = deployment["spec"]["template"]["spec"]
    pause = prestop_pause(pod["containers"][0])
    assert 3 <= pause <= pod["terminationGracePeriodSeconds"] - 5


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_each_database_owner_reaches_its_database_with_a_password_from_the_secret(topology: str) -> None:
    (secret,) = of_kind(topology, "Secret").values()
    (server,) = of_kind(topology, "StatefulSet").values()
    server_env = {e["name"] for e in server["spec"]["template"]["spec"]["containers"][0]["env"]}
    owners = [name for name in of_kind(topology, "Deployment") if name != "gateway"]
    for name in owners:
        container = of_kind(topology, "Deployment")[name]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        plain = {k: v["value"] for k, v in env.items() if "value" in v}
        config, component = RunConfig.from_env({**plain, "ARCHBENCH_DATA_DIR": "/data"})
        assert config.db_url(component) == f"postgresql://archbench_{name}@postgres:5432/{name}"
        key = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
        assert key == f"ARCHBENCH_DB_PASSWORD_{name.upper()}"
        assert secret["stringData"][key].startswith("CHANGE-ME")
        assert key in server_env  # the server's first start makes the role with the same password
    gateway = of_kind(topology, "Deployment").get("gateway")
    if gateway is not None:
        env = {e["name"] for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert not {"PGPASSWORD", "ARCHBENCH_DB_URL"} & env  # the gateway owns no data


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_compose_over_postgres_keeps_no_state_in_the_components(topology: str) -> None:
    path = DEPLOY.parent / "compose" / f"{topology}-postgres.yaml"
    services = yaml.safe_load(path.read_text())["services"]
    assert set(services) == {"postgres", *COMPONENTS[topology]}
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    for name in COMPONENTS[topology]:
        service = services[name]
        assert "volumes" not in service, name  # nothing durable in a component
        env = service["environment"]
        if name != "gateway":
            config, component = RunConfig.from_env({k: str(v) for k, v in env.items() if "${" not in str(v)})
            assert config.db_url(component) == f"postgresql://archbench_{name}@postgres:5432/{name}"
            assert env["PGPASSWORD"].startswith("${ARCHBENCH_DB_PASSWORD")
