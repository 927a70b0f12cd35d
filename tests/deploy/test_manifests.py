"""The deployment files (deploy/), checked offline: no Docker engine and no cluster are needed.

Every Kubernetes object is validated against the Kubernetes JSON schemas bundled by ``kubernetes-validate`` (strict:
unknown fields are errors), at the oldest and the newest version this suite targets, and every compose file against
the Compose Specification's JSON schema that ``check-jsonschema`` vendors. Then what a schema cannot see:
probes on the right paths, resources, security context, one replica per SQLite file, every container's environment
accepted by ``RunConfig.from_env`` with peers that resolve to Services, the admin token from a Secret, one image
everywhere, and a Dockerfile whose entry point and health check really work against a process started from the
compose environment.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate.utils import latest_version  # type: ignore[import-untyped]

from bench.system.complexity import COLUMNS, complexity_table
from bench.system.supervisor import free_port
from plumbing.auth import API_KEYS_ENV, SERVICE_SECRET_ENV
from plumbing.faults import TOKEN_ENV
from plumbing.topology import PUBLIC, SERVICES, RunConfig

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TOPOLOGIES = ("monolith", "microservices")
EXPECTED_COMPONENTS = {"monolith": {"monolith"}, "microservices": {"gateway", *SERVICES}}
# The oldest Kubernetes minor this suite targets, and the newest whose schemas the validator bundles.
K8S_VERSIONS = ("1.29", latest_version())
PLACEHOLDER_MARK = "CHANGE-ME"
SECRET_VARIABLES = (API_KEYS_ENV, SERVICE_SECRET_ENV, TOKEN_ENV)
# Values the loopback tests give the variables that compose takes from the operator's shell.
TEST_SECRETS = {API_KEYS_ENV: "deploy-test-key", SERVICE_SECRET_ENV: "deploy-test-secret"}
START_TIMEOUT = 30.0  # seconds for processes to answer /readyz; start-up takes 1-3 s on the 2-core machine


# --- loading -------------------------------------------------------------------------------------------------------


def k8s_paths(topology: str) -> list[Path]:
    return sorted((DEPLOY / "k8s" / topology).glob("*.yaml"))


@functools.cache
def load_all(path: Path) -> tuple[dict[str, Any], ...]:
    """The YAML documents of ``path``, parsed once per session: tests read them and must not change them."""
    return tuple(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)


def k8s_objects(topology: str) -> list[dict[str, Any]]:
    return [doc for path in k8s_paths(topology) for doc in load_all(path)]


def of_kind(topology: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in k8s_objects(topology) if obj["kind"] == kind]


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def deployments() -> list[tuple[str, dict[str, Any]]]:
    return [(t, d) for t in TOPOLOGIES for d in of_kind(t, "Deployment")]


def containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """``(topology, deployment, container)`` for every container of every Deployment."""
    return [(t, d, c) for t, d in deployments() for c in pod_spec(d)["containers"]]


def compose(topology: str) -> dict[str, Any]:
    (doc,) = load_all(DEPLOY / "compose" / f"{topology}.yaml")
    return doc


def ident(value: object) -> str:
    """A readable test id: an object's name, or the value itself."""
    if isinstance(value, dict):
        return str(value.get("metadata", value).get("name", "?"))
    return str(value)


def container_env(topology: str, container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets: its ConfigMaps and Secrets (envFrom), then its own ``env`` entries."""
    stores = {
        (o["kind"], o["metadata"]["name"]): o for o in k8s_objects(topology) if o["kind"] in ("ConfigMap", "Secret")
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        kind, ref = (
            ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
        )
        store = stores[(kind, ref["name"])]
        env.update({k: str(v) for k, v in {**store.get("data", {}), **store.get("stringData", {})}.items()})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            store = stores[("Secret", ref["name"])]
            env[item["name"]] = str(store["stringData"][ref["key"]])
    return env


def known_variables() -> set[str]:
    """Every ARCHBENCH_* variable the shared plumbing names (from_env, faults, auth): a misspelt one is not."""
    plumbing_dir = Path(inspect.getfile(RunConfig)).parent
    return {name for path in plumbing_dir.glob("*.py") for name in re.findall(r"ARCHBENCH_[A-Z_]+", path.read_text())}


def required_secrets(topology: str, component: str) -> set[str]:
    """With auth on (the default): API keys at the public component, a service secret in every multi-process one."""
    needed = {API_KEYS_ENV} if component == PUBLIC[topology] else set()
    return needed | ({SERVICE_SECRET_ENV} if topology == "microservices" else set())


def peers_of(env: dict[str, str]) -> dict[str, str]:
    config, _ = RunConfig.from_env(env)
    return dict(config.peer_urls)


# --- Kubernetes: schemas ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", [p for t in TOPOLOGIES for p in k8s_paths(t)], ids=lambda p: p.name)
def test_every_kubernetes_object_validates_against_the_schemas(path: Path, version: str) -> None:
    objects = load_all(path)
    assert objects, f"{path} holds no object"
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_rejects_what_it_should() -> None:
    """Guards the guard: a misspelt field and a wrong type are caught offline, so the test above can fail."""
    _, deployment = deployments()[0]
    misspelt = copy.deepcopy(deployment)
    container = pod_spec(misspelt)["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "one"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_both_topologies_have_manifests_and_one_namespace_each() -> None:
    namespaces = set()
    for topology in TOPOLOGIES:
        assert k8s_paths(topology), topology
        (namespace,) = of_kind(topology, "Namespace")
        namespaces.add(namespace["metadata"]["name"])
        for obj in k8s_objects(topology):
            if obj["kind"] != "Namespace":
                assert obj["metadata"]["namespace"] == namespace["metadata"]["name"], obj["metadata"]["name"]
    assert len(namespaces) == len(TOPOLOGIES)


# --- Kubernetes: what the schemas do not check -----------------------------------------------------------------------


@pytest.mark.parametrize(("topology", "deployment", "container"), containers(), ids=ident)
def test_every_container_has_probes_on_the_right_paths(
    topology: str, deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    port_names = {p.get("name") for p in container["ports"]} | {p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        action = container[probe]["httpGet"]
        assert action["path"] == path, (probe, action)
        assert action["port"] in port_names, (probe, action)


@pytest.mark.parametrize(("topology", "deployment", "container"), containers(), ids=ident)
def test_every_container_has_resource_requests_and_limits(
    topology: str, deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) >= {"cpu", "memory"}, (container["name"], bound)


@pytest.mark.parametrize(("topology", "deployment", "container"), containers(), ids=ident)
def test_every_container_runs_unprivileged_on_a_read_only_root(
    topology: str, deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    pod = pod_spec(deployment)
    security = {**pod.get("securityContext", {}), **container["securityContext"]}
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert security.get("runAsUser", 1) != 0
    # What the process writes (its database, /tmp) is a mounted volume, not the read-only root.
    volumes = {v["name"] for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {"/data", "/tmp"} <= set(mounts), mounts
    assert {mounts["/data"], mounts["/tmp"]} <= volumes
    assert not any(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] in ("/data", "/tmp"))


@pytest.mark.parametrize(("topology", "deployment"), deployments(), ids=ident)
def test_a_stateful_component_has_its_own_claim_and_one_replica(topology: str, deployment: dict[str, Any]) -> None:
    """SQLite is one file per component: two pods would be two diverging databases, or two writers on one volume."""
    name = deployment["metadata"]["name"]
    (data,) = [v for v in pod_spec(deployment)["volumes"] if v["name"] == "data"]
    if name == PUBLIC["microservices"]:
        assert "emptyDir" in data, "the gateway keeps no durable state"
        return
    claim = data["persistentVolumeClaim"]["claimName"]
    assert claim in {c["metadata"]["name"] for c in of_kind(topology, "PersistentVolumeClaim")}
    users = [d for _, d in deployments() if claim in json.dumps(pod_spec(d)["volumes"])]
    assert len(users) == 1, f"{claim} is mounted by {len(users)} Deployments"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.parametrize(("topology", "deployment", "container"), containers(), ids=ident)
def test_every_container_env_selects_a_valid_component_with_known_settings(
    topology: str, deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    env = container_env(topology, container)
    config, component = RunConfig.from_env(env)  # raises on an unknown component or a malformed number
    assert component == deployment["metadata"]["name"]
    assert config.processes[0].port == container["ports"][0]["containerPort"]
    assert set(env) <= known_variables(), set(env) - known_variables()


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_each_topology_deploys_exactly_its_components(topology: str) -> None:
    components = [container_env(topology, c)["ARCHBENCH_COMPONENT"] for t, _, c in containers() if t == topology]
    assert sorted(components) == sorted(EXPECTED_COMPONENTS[topology])


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_peers_resolve_to_services_on_their_target_port(topology: str) -> None:
    services = {s["metadata"]["name"]: s["spec"] for s in of_kind(topology, "Service")}
    pods = {d["metadata"]["name"]: d for d in of_kind(topology, "Deployment")}
    for _, _, container in (x for x in containers() if x[0] == topology):
        peers = peers_of(container_env(topology, container))
        if topology == "microservices":
            assert set(peers) == set(SERVICES)
        for peer, url in peers.items():
            parts = urlsplit(url)
            spec = services[parts.hostname or ""]
            assert spec["selector"].items() <= pods[peer]["spec"]["template"]["metadata"]["labels"].items()
            (port,) = [p for p in spec["ports"] if p["port"] == parts.port]
            (target,) = pod_spec(pods[peer])["containers"][0]["ports"]
            assert port["targetPort"] in (target["name"], target["containerPort"])


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_every_service_selects_its_deployment_and_only_the_public_one_is_exposed(topology: str) -> None:
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in of_kind(topology, "Deployment")}
    exposed = []
    for service in of_kind(topology, "Service"):
        name, spec = service["metadata"]["name"], service["spec"]
        assert spec["selector"].items() <= pods[name].items(), name
        assert not any(spec["selector"].items() <= labels.items() for other, labels in pods.items() if other != name)
        if spec.get("type", "ClusterIP") in ("LoadBalancer", "NodePort"):
            exposed.append(name)
    assert exposed == [PUBLIC[topology]]


@pytest.mark.parametrize(("topology", "deployment", "container"), containers(), ids=ident)
def test_credentials_come_from_a_secret_and_each_container_gets_what_it_needs(
    topology: str, deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    secrets = {s["metadata"]["name"] for s in of_kind(topology, "Secret")}
    from_secrets = {}
    for entry in container["env"]:
        if entry["name"] in SECRET_VARIABLES:
            ref = entry["valueFrom"]["secretKeyRef"]  # never a literal value
            assert ref["name"] in secrets
            from_secrets[entry["name"]] = ref
    config, component = RunConfig.from_env(container_env(topology, container))
    assert config.auth, "auth is on by default and the manifests keep it on"
    assert required_secrets(topology, component) <= set(from_secrets), component
    assert all(not ref.get("optional") for name, ref in from_secrets.items() if name != TOKEN_ENV)
    assert from_secrets[TOKEN_ENV].get("optional") is True, "deleting the admin token turns fault injection off"
    for config_map in of_kind(topology, "ConfigMap"):
        assert not set(SECRET_VARIABLES) & set(config_map["data"]), "a credential in a ConfigMap is not a secret"


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_the_shipped_secret_values_are_clearly_marked_placeholders(topology: str) -> None:
    (secret,) = of_kind(topology, "Secret")
    assert "data" not in secret, "stringData keeps the placeholders readable"
    assert all(PLACEHOLDER_MARK in value for value in secret["stringData"].values())


# --- compose -------------------------------------------------------------------------------------------------------


def images() -> set[str]:
    k8s = {c["image"] for _, _, c in containers()}
    composed = {s["image"] for t in TOPOLOGIES for s in compose(t)["services"].values()}
    return k8s | composed


def test_one_image_everywhere() -> None:
    assert len(images()) == 1, images()


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_compose_runs_each_component_once_with_its_own_volume(topology: str) -> None:
    services = compose(topology)["services"]
    components = {name: str(spec["environment"]["ARCHBENCH_COMPONENT"]) for name, spec in services.items()}
    assert all(name == component for name, component in components.items())
    assert set(components.values()) == EXPECTED_COMPONENTS[topology]
    data_volumes = [
        next(v.split(":")[0] for v in spec["volumes"] if v.endswith(":/data")) for spec in services.values()
    ]
    assert len(set(data_volumes)) == len(services)
    assert set(data_volumes) <= set(compose(topology)["volumes"])


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_compose_publishes_only_the_public_component_on_loopback(topology: str) -> None:
    published = {name: spec.get("ports", []) for name, spec in compose(topology)["services"].items() if "ports" in spec}
    assert list(published) == [PUBLIC[topology]]
    assert all(str(port).startswith("127.0.0.1:") for port in published[PUBLIC[topology]])


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_compose_environment_is_accepted_and_peers_are_compose_services(topology: str) -> None:
    services = compose(topology)["services"]
    for name, spec in services.items():
        env = {k: str(v) for k, v in spec["environment"].items()}
        assert set(env) <= known_variables(), set(env) - known_variables()
        # Credentials come from the operator's shell, never from the file: required ones fail fast when unset.
        assert required_secrets(topology, name) <= set(env), name
        for variable in set(SECRET_VARIABLES) & set(env):
            assert env[variable].startswith("${" + variable + (":-}" if variable == TOKEN_ENV else ":?")), variable
        peers = peers_of(interpolated(env))
        if topology == "microservices":
            assert set(peers) == set(SERVICES), name
        for url in peers.values():
            parts = urlsplit(url)
            assert parts.hostname in services
            assert str(parts.port) == str(services[str(parts.hostname)]["environment"]["ARCHBENCH_PORT"])


COMPOSE_FILES = sorted((DEPLOY / "compose").glob("*.yaml"))


@functools.cache
def compose_validator() -> jsonschema.Draft202012Validator:
    """The Compose Specification's JSON schema (compose-spec/compose-spec, ``schema/compose-spec.json``), as the
    ``check-jsonschema`` package vendors it: the schema ``docker compose`` itself checks a file against, offline."""
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema = json.loads(vendored.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def compose_errors(document: object) -> list[str]:
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in compose_validator().iter_errors(document)]


def test_every_compose_file_is_checked() -> None:
    expected = {f"{t}{variant}.yaml" for t in TOPOLOGIES for variant in ("", "-postgres")}
    assert {path.name for path in COMPOSE_FILES} == expected


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_files_validate_against_the_compose_specification(path: Path) -> None:
    (document,) = load_all(path)
    assert compose_errors(document) == []


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda service: service.update(replica=2), "replica"),  # a misspelled key
        (lambda service: service.update(environment=["A=1", 2]), "environment"),
        (lambda service: service.update(healthcheck={"interval": 10, "retries": "often"}), "healthcheck"),
    ],
    ids=["unknown-key", "environment-item", "healthcheck-types"],
)
def test_the_compose_schema_catches_a_broken_service(change: Callable[[dict[str, Any]], None], what: str) -> None:
    """What the validation is worth: a service that docker compose would refuse fails it."""
    document = copy.deepcopy(compose("monolith"))
    change(document["services"]["monolith"])
    errors = compose_errors(document)
    assert errors, f"a broken service ({what}) passed the compose schema"
    assert all(error.startswith("/services/monolith") for error in errors), errors


def test_compose_files_pass_docker_compose_config_when_it_is_installed() -> None:
    """The compose specification's own check, offline; skipped where no Docker Compose v2 binary is installed."""
    argv = (
        [shutil.which("docker-compose") or ""]
        if shutil.which("docker-compose")
        else [shutil.which("docker") or "", "compose"]
    )
    if not argv[0] or subprocess.run([*argv, "version"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no Docker Compose v2 binary on this machine")
    for topology in TOPOLOGIES:
        done = subprocess.run(
            [*argv, "-f", str(DEPLOY / "compose" / f"{topology}.yaml"), "config", "--quiet"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, **TEST_SECRETS},
        )
        assert done.returncode == 0, done.stderr


# --- Dockerfile ----------------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of deploy/Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in joined.splitlines()]
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(p[0].upper(), p[1] if len(p) > 1 else "") for p in pairs]


def dockerfile(instruction: str) -> list[str]:
    return [args for name, args in dockerfile_instructions() if name == instruction]


def exec_form(arguments: str) -> list[str]:
    argv = json.loads(arguments)
    assert isinstance(argv, list), "exec form, so the process is PID 1 and receives SIGTERM"
    return [str(a) for a in argv]


def entrypoint_argv() -> list[str]:
    (entrypoint,) = dockerfile("ENTRYPOINT")
    return exec_form(entrypoint) + (exec_form(dockerfile("CMD")[-1]) if dockerfile("CMD") else [])


def healthcheck_argv() -> list[str]:
    (healthcheck,) = dockerfile("HEALTHCHECK")
    return exec_form(healthcheck.split(" CMD ", 1)[1])


def test_dockerfile_runs_the_host_from_env_as_a_non_root_user_with_a_health_check() -> None:
    assert entrypoint_argv()[:4] == ["python", "-m", "plumbing.host", "--from-env"]
    health = " ".join(healthcheck_argv())
    assert "urllib" in health
    assert "/healthz" in health
    froms = dockerfile("FROM")
    assert froms[-1].startswith("python:")
    assert "-slim" in froms[-1]
    (user,) = dockerfile("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert "/data" in " ".join(dockerfile("VOLUME"))


# --- the entry point and the environment, for real (loopback) -------------------------------------------------------


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@contextmanager
def started(env: dict[str, str], data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The Dockerfile's entry point with ``env`` on this machine's interpreter; killed on exit, also on failure."""
    argv = [sys.executable, *entrypoint_argv()[1:]]
    full_env = {"PATH": "/usr/bin:/bin", "ARCHBENCH_BIND": "127.0.0.1", **env, "ARCHBENCH_DATA_DIR": str(data_dir)}
    log = (data_dir.parent / f"{env['ARCHBENCH_COMPONENT']}.log").open("wb")
    proc = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def wait_ready(urls: list[str], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not all(get(f"{url}/readyz") == 200 for url in urls):
        assert all(p.poll() is None for p in procs), "a process exited during start-up"
        assert time.monotonic() < deadline, "not ready in time"
        time.sleep(0.1)


def interpolated(env: dict[str, str]) -> dict[str, str]:
    """``env`` with compose's ``${VAR:-default}`` and ``${VAR:?message}`` resolved as an operator's shell would:
    TEST_SECRETS set, every other variable unset."""

    def resolve(match: re.Match[str]) -> str:
        name, operator, rest = match.group(1), match.group(2), match.group(3)
        if name in TEST_SECRETS:
            return TEST_SECRETS[name]
        if operator == ":?":
            raise AssertionError(f"{name} is required: {rest}")
        return rest or ""

    return {key: re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", resolve, value) for key, value in env.items()}


def loopback_env(topology: str, name: str, ports: dict[str, int]) -> dict[str, str]:
    """A compose service's environment, with its port and its peers' hosts moved to free loopback ports."""
    env = interpolated({k: str(v) for k, v in compose(topology)["services"][name]["environment"].items()})
    env["ARCHBENCH_PORT"] = str(ports[name])
    env["ARCHBENCH_PRODUCTS"], env["ARCHBENCH_USERS"] = "40", "5"
    if "ARCHBENCH_PEERS" in env:
        env["ARCHBENCH_PEERS"] = ",".join(f"{peer}=http://127.0.0.1:{ports[peer]}" for peer in peers_of(env))
    return env


@pytest.mark.sockets
def test_the_entry_point_serves_the_monolith_and_the_health_check_tells_up_from_down(tmp_path: Path) -> None:
    ports = {"monolith": free_port()}
    env = loopback_env("monolith", "monolith", ports)
    check = [sys.executable, *healthcheck_argv()[1:]]
    check_env = {"ARCHBENCH_PORT": env["ARCHBENCH_PORT"]}
    with started(env, tmp_path / "data") as proc:
        wait_ready([f"http://127.0.0.1:{ports['monolith']}"], [proc])
        assert subprocess.run(check, env=check_env, timeout=10, check=False).returncode == 0
        assert (tmp_path / "data" / "monolith.db").exists()
    assert subprocess.run(check, env=check_env, capture_output=True, timeout=10, check=False).returncode != 0


@pytest.mark.sockets
def test_the_microservices_compose_environment_wires_a_checkout_end_to_end(tmp_path: Path) -> None:
    services = list(compose("microservices")["services"])
    ports = {name: free_port() for name in services}
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    with ExitStack() as stack:
        procs = [
            stack.enter_context(started(loopback_env("microservices", name, ports), tmp_path / name))
            for name in services
        ]
        wait_ready([f"http://127.0.0.1:{port}" for port in ports.values()], procs)
        user = post(f"{gateway}/users", {"email": "deploy@example.com", "name": "Deploy"})
        post(f"{gateway}/users/{user['id']}/deposits", {"amount_cents": 1_000_000})
        order = post(f"{gateway}/orders", {"user_id": user["id"], "items": [{"product_id": 1, "quantity": 1}]})
        assert order["status"] == "CONFIRMED"
    for name in services:
        if name != "gateway":
            assert (tmp_path / name / f"{name}.db").exists(), f"{name} keeps its database in its own volume"


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "idempotency-key": url, "x-api-key": TEST_SECRETS[API_KEYS_ENV]},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        payload: dict[str, Any] = json.loads(reply.read())
        return payload


# --- complexity figures ----------------------------------------------------------------------------------------------


def test_complexity_table_counts_the_shipped_deployment_files() -> None:
    table = complexity_table(REPO).set_index("topology")
    assert list(table.reset_index().columns) == list(COLUMNS)
    for topology in TOPOLOGIES:
        row = table.loc[topology]
        assert row["processes"] == len(compose(topology)["services"]) == len(of_kind(topology, "Deployment"))
        assert row["databases"] == len(of_kind(topology, "PersistentVolumeClaim"))
        assert row["exposed_ports"] == 1
        assert row["k8s_objects"] == len(k8s_objects(topology))
    mono, micro = table.loc["monolith"], table.loc["microservices"]
    assert (mono["processes"], micro["processes"]) == (1, 6)
    assert (mono["databases"], micro["databases"]) == (1, 5)
    assert (mono["listening_ports"], micro["listening_ports"]) == (1, 6)
    for column in ("replicas", "config_entries", "env_vars", "compose_lines", "k8s_lines", "k8s_objects"):
        assert micro[column] > mono[column], column


def test_complexity_table_counting_rules(tmp_path: Path) -> None:
    """Comments and blank lines are not counted; an absent replica count is 1; env entries add up per container."""
    for topology in TOPOLOGIES:
        (tmp_path / "deploy" / "compose").mkdir(parents=True, exist_ok=True)
        (tmp_path / "deploy" / "compose" / f"{topology}.yaml").write_text(
            "# a comment\nservices:\n\n  a:\n    environment: [X=1, Y=2]\n    volumes: [a:/data]\n"
            "  b:\n    environment: {X: '1'}\n    ports: ['127.0.0.1:1:1']\nvolumes:\n  a:\n"
        )
        folder = tmp_path / "deploy" / "k8s" / topology
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "a.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {K1: v, K2: v}\n---\n"
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {T: x}\n---\n"
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: p}\n---\n"
            "apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
            "spec: {type: NodePort, ports: [{port: 1}, {port: 2}]}\n"
        )
        (folder / "b.yaml").write_text(
            "# only a comment before\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec:\n"
            "  template:\n    spec:\n      containers:\n"
            "        - {name: a, env: [{name: A, value: '1'}], ports: [{containerPort: 1}]}\n"
            "        - {name: b, env: [{name: B, value: '1'}, {name: C, value: '2'}]}\n"
        )
    row = complexity_table(tmp_path).iloc[0].to_dict()
    assert row == {
        "topology": "monolith",
        "processes": 2,
        "replicas": 1,
        "listening_ports": 1,
        "exposed_ports": 2,
        "databases": 1,
        "volumes": 1,
        "config_entries": 3 + 3,
        "env_vars": 3,
        "compose_lines": 9,
        "k8s_lines": 18 + 9,  # three "---" separators count as lines
        "k8s_objects": 5,
    }


def test_complexity_table_refuses_a_missing_deploy_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        complexity_table(tmp_path)


def prestop_pause(container: dict[str, Any]) -> float:
    """Seconds a container's preStop hook pauses (0 without one)."""
    hook = container.get("lifecycle", {}).get("preStop", {})
    command = hook.get("exec", {}).get("command", [])
    if command[:1] == ["sleep"]:
        return float(command[1])
    return float(hook.get("sleep", {}).get("seconds", 0))


def test_the_replicated_public_entry_pauses_before_sigterm_so_endpoints_go_first() -> None:
    public = [
        (topology, deployment, container)
        for topology, deployment, container in containers()
        if container["name"] == PUBLIC[topology] and deployment["spec"].get("replicas", 1) >= 2
    ]
    assert public, "no replicated public component"
    for topology, deployment, container in public:
        pause = prestop_pause(container)
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert 3 <= pause <= grace - 5, (topology, pause, grace)  # and time left to drain
