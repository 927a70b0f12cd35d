"""``--db-url``: the shop on a PostgreSQL server that archbench did not start, prepared as docs/postgres.md says.

The server is one of archbench's own (``running_server``), but nothing of the run starts or administers it: the test
prepares it with the documentation's own commands (``psql``, ``createdb``), then ``archbench serve --db-url`` runs as a
user runs it, the checkout goes over HTTP, and the rows are read back from that server as the role the URL names.
A URL that cannot be used is one line before anything starts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from bench.system import postgres
from bench.system.audit import audit
from bench.system.deploy import deploy
from bench.system.postgres import ADMIN, PostgresServer, running_server
from plumbing.topology import database_components
from shop.seed import SeedSpec
from tests.bench.test_serve import SMALL_SHOP, STOP_TIMEOUT, assert_one_line_error, launched, run_archbench

pytestmark = [
    pytest.mark.sockets,
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres.available(), reason=f"no PostgreSQL server binaries: {postgres.INSTALL_HINT}"),
]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "postgres.md"
ROLE, PASSWORD = "shop", "change-me"  # what the documentation's commands make
SECTION = "## An existing server"


def documented_preparation() -> str:
    """The first shell block of the documentation's section on an existing server: what a user runs there."""
    text = DOCS.read_text()
    assert SECTION in text, f"{DOCS.name} has no section {SECTION!r}"
    block = re.search(r"^```sh\n(.*?)^```$", text[text.index(SECTION) :], re.MULTILINE | re.DOTALL)
    assert block is not None, f"no shell block under {SECTION!r} in {DOCS.name}"
    return block.group(1)


def prepare_as_documented(server: PostgresServer) -> None:
    """Run the documentation's commands as the server's superuser (libpq's variables point them at the server)."""
    env = {
        **os.environ,
        "PATH": f"{server.bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": str(server.socket_dir),
        "PGPORT": str(server.port),
        "PGUSER": ADMIN,
        "PGDATABASE": "postgres",
    }
    env.pop("PGPASSWORD", None)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", documented_preparation()],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def url_of(server: PostgresServer, role: str = ROLE, database: str = "shop_{component}") -> str:
    return f"postgresql://{role}@127.0.0.1:{server.port}/{database}"


def as_role(server: PostgresServer, database: str) -> psycopg.Connection[tuple[object, ...]]:
    """A connection to ``database`` as the documented role, over TCP with its password, as any client of the server."""
    return psycopg.connect(server.url(database, ROLE), password=PASSWORD, autocommit=True, connect_timeout=5)


def database_of(topology: str, context: str) -> str:
    return f"shop_{'monolith' if topology == 'monolith' else context}"


def read_order(server: PostgresServer, topology: str, order_id: int) -> dict[str, object]:
    """What each context's database holds about ``order_id``, read from the server as the documented role."""
    queries = {
        "orders": "SELECT status, total_cents FROM orders WHERE id = %s",
        "payments": "SELECT status, amount_cents FROM charges WHERE order_id = %s",
        "inventory": "SELECT status FROM reservations WHERE order_id = %s",
        "notifications": "SELECT count(*) FROM notifications WHERE key = 'order-' || %s",
    }
    found: dict[str, object] = {}
    for context, sql in queries.items():
        with as_role(server, database_of(topology, context)) as conn:
            found[context] = conn.execute(sql, (order_id,)).fetchone()
    return found


def files_holding(directory: Path, secret: str) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]


@pytest.fixture
def existing_server(tmp_path: Path) -> Iterator[PostgresServer]:
    """A server of its own for the test, prepared with the documentation's commands and nothing else."""
    with running_server(tmp_path / "pg", name="existing") as server:
        prepare_as_documented(server)
        yield server


@pytest.mark.parametrize("topology", ["monolith", "microservices"])
def test_serve_runs_on_an_existing_server_prepared_as_documented(
    topology: str, existing_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = existing_server
    monkeypatch.setenv("PGPASSWORD", PASSWORD)  # the URL has no password: libpq's own source, as documented
    with launched(tmp_path, topology, *SMALL_SHOP, "--db-url", url_of(server)) as launch:
        url, run_dir = launch.wait_banner()
        key = re.search(r"^API key: (\S+)$", launch.stdout, re.MULTILINE)
        assert key is not None, launch.stdout
        with httpx.Client(base_url=url, headers={"X-API-Key": key.group(1)}, timeout=10) as client:
            body = {"user_id": 1, "items": [{"product_id": 2, "quantity": 3}]}
            reply = client.post("/orders", json=body, headers={"Idempotency-Key": "first-order"})
        assert reply.status_code == 201, reply.text
        order = reply.json()
        assert order["status"] == "CONFIRMED", order

        # The rows are in that server's databases, each written by the shop as the role the URL names.
        total = order["total_cents"]
        assert read_order(server, topology, int(order["id"])) == {
            "orders": ("CONFIRMED", total),
            "payments": ("CHARGED", total),
            "inventory": ("COMMITTED",),
            "notifications": (1,),
        }
        with server.admin() as admin:
            sessions = admin.execute("SELECT DISTINCT datname FROM pg_stat_activity WHERE usename = %s", (ROLE,))
            databases = {str(row[0]) for row in sessions.fetchall()}
        assert databases == {f"shop_{component}" for component in database_components(topology)}
        assert list(run_dir.glob("*.db")) == []  # nothing fell back to SQLite
        assert files_holding(run_dir, PASSWORD) == []

        launch.proc.send_signal(signal.SIGINT)
        assert launch.wait_exit(STOP_TIMEOUT) == 0, launch.stderr

    # The audit reads the same databases with the run's record and libpq's password: the ledger adds up.
    report = audit(run_dir, topology)
    assert report.ok, report.summary()
    assert report.counts["orders_confirmed"] == 1


def test_a_password_in_the_url_reaches_the_processes_and_the_audit_not_the_disk(
    existing_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the deploy API the CLI calls (``archbench run`` deploys this way): no ``PGPASSWORD`` anywhere."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    url = url_of(existing_server, role=f"{ROLE}:{PASSWORD}")
    seed = SeedSpec(seed=3, products=20, users=5)
    with deploy("colocated", tmp_path / "run", seed=seed, db_url=url) as deployment:
        headers = dict(deployment.auth_headers)
        with httpx.Client(base_url=deployment.public_url, headers=headers, timeout=10) as client:
            body = {"user_id": 2, "items": [{"product_id": 5, "quantity": 1}]}
            reply = client.post("/orders", json=body, headers={"Idempotency-Key": "in-the-url"})
        assert reply.status_code == 201, reply.text
        report = audit(deployment.run_dir, "colocated")
        assert report.ok, report.summary()
        assert report.counts["orders_confirmed"] == 1
        assert files_holding(deployment.run_dir, PASSWORD) == []
    order = reply.json()
    assert read_order(existing_server, "colocated", int(order["id"]))["payments"] == ("CHARGED", order["total_cents"])


# --- What cannot be used: one line, status 2, nothing started ------------------------------------------------------


def free_port() -> int:
    """A loopback port that nothing listens on (bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_refused(tmp_path: Path, topology: str, url: str) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    run_dir = tmp_path / "run"
    result = run_archbench(tmp_path, "serve", topology, *SMALL_SHOP, "--db-url", url, "--run-dir", str(run_dir))
    assert result.returncode == 2, result.stderr
    line = assert_one_line_error(result.stderr)
    assert line.startswith(("archbench: error: ", "archbench serve: error: ")), line  # the latter: the shape
    assert result.stdout == ""
    assert not run_dir.exists()  # nothing was made, so nothing was started
    return line


@pytest.mark.parametrize("topology", ["monolith", "microservices"])
def test_a_url_where_nothing_listens_is_one_line(topology: str, tmp_path: Path) -> None:
    port = free_port()
    line = assert_refused(tmp_path, topology, f"postgresql://{ROLE}@127.0.0.1:{port}/shop_{{component}}")
    assert f"port {port} failed: Connection refused" in line
    assert f"postgresql://{ROLE}@127.0.0.1:{port}/shop_" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://shop@127.0.0.1:5432/shop", "{component}"),
        ("mysql://shop@127.0.0.1:3306/shop_{component}", "not a PostgreSQL URL"),
    ],
    ids=["no-component", "not-postgresql"],
)
def test_a_url_of_the_wrong_shape_is_one_line(url: str, says: str, tmp_path: Path) -> None:
    assert says in assert_refused(tmp_path, "microservices", url)


def test_what_the_server_refuses_is_one_line(
    existing_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = existing_server
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    assert "password authentication failed" in assert_refused(tmp_path / "a", "microservices", url_of(server))

    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    missing = assert_refused(tmp_path / "b", "monolith", url_of(server, database="nosuch_{component}"))
    assert 'database "nosuch_monolith" does not exist' in missing

    # A database the role may enter but does not own: it could not create the shop's tables.
    with server.admin() as admin:
        admin.execute("CREATE DATABASE foreign_monolith")
    line = assert_refused(tmp_path / "c", "monolith", url_of(server, database="foreign_{component}"))
    assert f"role {ROLE} may not create tables in schema public" in line
