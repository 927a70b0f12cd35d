"""``archbench serve`` run as a user runs it: a real subprocess, stopped by a signal or failing at start.

The launcher leaves no process behind after SIGINT, after SIGTERM, and when one of its services fails to
start; bad arguments get one line and exit status 2.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from bench.system import postgres
from tests.bench.test_supervisor import port_is_free, read_pids

pytestmark = pytest.mark.sockets

START_TIMEOUT = 30.0
"""Seconds for a launch to print its URL (or to fail); start-up takes about 1-3 s on the 2-core machine."""
STOP_TIMEOUT = 15.0
"""Seconds for the launcher to exit after a signal: its processes get a 5 s grace period, then SIGKILL."""
SMALL_SHOP = ("--products", "50", "--users", "5")

SERVICE_DATABASES_NAMES = ("users", "inventory", "payments", "notifications", "orders")
SERVICE_DATABASES = {"users.db", "inventory.db", "payments.db", "notifications.db", "orders.db"}
PROCESSES = {
    "monolith": {"monolith"},
    "colocated": {"colocated"},
    "microservices": {"gateway", "users", "inventory", "payments", "notifications", "orders"},
}
DATABASES = {"monolith": {"monolith.db"}, "colocated": SERVICE_DATABASES, "microservices": SERVICE_DATABASES}


def archbench_argv() -> list[str]:
    """The installed console script next to this interpreter, or the module if it is not installed as a script."""
    script = Path(sys.executable).with_name("archbench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bench.cli"]


@dataclass
class Launch:
    """One ``archbench serve`` subprocess; its stdout and stderr go to files so a full pipe never blocks it."""

    proc: subprocess.Popen[bytes]
    run_dir: Path
    stdout_path: Path
    stderr_path: Path

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def config_path(self) -> Path:
        return self.run_dir.resolve() / "topology.json"

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"archbench did not exit within {timeout} s; stderr:\n{self.stderr}")

    def wait_banner(self) -> tuple[str, Path]:
        """The public URL and run directory printed on stdout once every process is ready."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            url = re.search(r"^public URL: (http://127\.0\.0\.1:\d+)$", self.stdout, re.MULTILINE)
            run_dir = re.search(r"^run directory: (.+)$", self.stdout, re.MULTILINE)
            if url and run_dir:
                return url.group(1), Path(run_dir.group(1))
            if self.proc.poll() is not None:
                pytest.fail(f"archbench exited with status {self.proc.returncode} at start; stderr:\n{self.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"archbench printed no URL within {START_TIMEOUT} s; stderr:\n{self.stderr}")
            time.sleep(0.05)


def processes_of_run(config_path: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes started for the run: every host process names the run's topology.json."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if str(config_path) in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def is_gone(proc: psutil.Process) -> bool:
    """Dead or a zombie; ``is_running`` compares creation times, so a reused pid does not count as alive."""
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_all(processes: list[psutil.Process]) -> None:
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            proc.kill()


@contextlib.contextmanager
def launched(tmp_path: Path, *args: str) -> Iterator[Launch]:
    """Start ``archbench serve ARGS --run-dir tmp_path/run``; whatever happens, leave no process of it running."""
    run_dir = tmp_path / "run"
    stdout_path, stderr_path = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    argv = [*archbench_argv(), "serve", *args, "--run-dir", str(run_dir)]
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=tmp_path)
    launch = Launch(proc, run_dir, stdout_path, stderr_path)
    try:
        yield launch
    finally:
        if proc.poll() is None:
            proc.kill()  # its children follow: PR_SET_PDEATHSIG, and we sweep them below anyway
            proc.wait(timeout=STOP_TIMEOUT)
        kill_all(processes_of_run(launch.config_path()))


def run_archbench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*archbench_argv(), *args], capture_output=True, text=True, cwd=tmp_path, timeout=START_TIMEOUT, check=False
    )


def http_get(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5.0)
    try:
        connection.request("GET", path, headers=headers or {})
        with connection.getresponse() as response:
            return response.status, response.read()
    finally:
        connection.close()


def assert_one_line_error(stderr: str) -> str:
    assert len(stderr.splitlines()) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return stderr.strip()


# --- Serving and stopping ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topology", "signum"),
    [
        ("monolith", signal.SIGINT),
        ("colocated", signal.SIGINT),
        ("microservices", signal.SIGINT),
        ("microservices", signal.SIGTERM),
    ],
    ids=["monolith-SIGINT", "colocated-SIGINT", "microservices-SIGINT", "microservices-SIGTERM"],
)
def test_serves_then_stops_everything_on_signal(tmp_path: Path, topology: str, signum: signal.Signals) -> None:
    with launched(tmp_path, topology, *SMALL_SHOP) as launch:
        url, run_dir = launch.wait_banner()

        assert run_dir == launch.run_dir.resolve()
        assert http_get(url, "/readyz")[0] == 200
        key = re.search(r"^API key: (\S+)$", launch.stdout, re.MULTILINE)
        assert key is not None, launch.stdout
        assert http_get(url, "/products/1")[0] == 401  # the public API needs the key the launcher printed
        status, body = http_get(url, "/products/1", {"X-API-Key": key.group(1)})
        assert status == 200
        assert json.loads(body)["id"] == 1

        assert (run_dir / "topology.json").is_file()
        pids = read_pids(run_dir)
        assert set(pids) == PROCESSES[topology]
        processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        for name, proc in processes.items():
            cmdline = proc.cmdline()
            assert str(launch.config_path()) in cmdline
            assert cmdline[cmdline.index("--process") + 1] == name
        assert {log.name for log in (run_dir / "logs").iterdir()} == {f"{name}.log" for name in pids}
        assert {db.name for db in run_dir.glob("*.db")} == DATABASES[topology]

        launch.proc.send_signal(signum)
        status = launch.wait_exit(STOP_TIMEOUT)

        # Checked at once, not waited for: once the launcher has exited, nothing of the run may be left.
        assert status == 0, launch.stderr
        assert "Traceback" not in launch.stderr
        assert [name for name, proc in processes.items() if not is_gone(proc)] == []
        assert processes_of_run(launch.config_path()) == []
        assert port_is_free(int(url.rsplit(":", 1)[1]))


# --- A process that cannot start ---------------------------------------------------------------------------------


def test_a_process_failing_at_start_stops_the_others(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with launched(tmp_path, "microservices", "--port", str(port), *SMALL_SHOP) as launch:
            # The others start, then stop once the gateway has failed: catch what pids.json shows meanwhile.
            seen: dict[str, psutil.Process] = {}
            deadline = time.monotonic() + START_TIMEOUT
            while launch.proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(OSError, ValueError, psutil.Error):
                    for name, pid in read_pids(launch.run_dir).items():
                        seen.setdefault(name, psutil.Process(pid))
                time.sleep(0.02)
            status = launch.wait_exit(STOP_TIMEOUT)

            assert status == 1
            line = assert_one_line_error(launch.stderr)
            assert line.startswith("archbench: error: gateway ")
            assert str(launch.run_dir.resolve() / "logs" / "gateway.log") in line
            assert "public URL" not in launch.stdout
            assert set(seen) == PROCESSES["microservices"]  # so the others really had to be stopped
            assert [name for name, proc in seen.items() if not is_gone(proc)] == []
            assert processes_of_run(launch.config_path()) == []
            assert read_pids(launch.run_dir) == {}


# --- Refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["nosuchtopology"],
        ["monolith", "--port", "0"],
        ["monolith", "--port", "70000"],
        ["monolith", "--products", "-1"],
        ["monolith", "--replicas", "monolith"],
        ["monolith", "--replicas", "monolith=0"],
        ["monolith", "--replicas", "inventory=2"],
    ],
    ids=[
        "unknown-topology",
        "port-0",
        "port-70000",
        "negative-products",
        "replicas-no-count",
        "replicas-0",
        "replicas-of-nothing",
    ],
)
def test_bad_arguments_get_one_line_and_status_2(tmp_path: Path, args: list[str]) -> None:
    run_dir = tmp_path / "run"

    result = run_archbench(tmp_path, "serve", *args, "--run-dir", str(run_dir))

    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert result.stdout == ""
    assert not run_dir.exists()


def test_run_dir_holding_databases_is_refused(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "monolith.db").write_bytes(b"earlier results")

    result = run_archbench(tmp_path, "serve", "monolith", *SMALL_SHOP, "--run-dir", str(run_dir))

    assert result.returncode == 2
    assert str(run_dir) in assert_one_line_error(result.stderr)
    assert (run_dir / "monolith.db").read_bytes() == b"earlier results"
    assert sorted(path.name for path in run_dir.iterdir()) == ["monolith.db"]


def test_serves_replicas_and_stops_them_all(tmp_path: Path) -> None:
    with launched(tmp_path, "microservices", *SMALL_SHOP, "--replicas", "inventory=2,gateway=2") as launch:
        url, run_dir = launch.wait_banner()
        key = re.search(r"^API key: (\S+)$", launch.stdout, re.MULTILINE)
        assert key is not None, launch.stdout
        assert http_get(url, "/products/1", {"X-API-Key": key.group(1)})[0] == 200
        pids = read_pids(run_dir)
        expected = PROCESSES["microservices"] - {"inventory", "gateway"}
        assert set(pids) == expected | {"inventory-1", "inventory-2", "gateway-1", "gateway-2"}
        processes = [psutil.Process(pid) for pid in pids.values()]
        launch.proc.send_signal(signal.SIGINT)
        assert launch.wait_exit(STOP_TIMEOUT) == 0, launch.stderr
        assert [proc for proc in processes if not is_gone(proc)] == []


# --- On PostgreSQL ---------------------------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.skipif(not postgres.available(), reason=f"no PostgreSQL server binaries: {postgres.INSTALL_HINT}")
def test_serves_on_its_own_postgres_servers_and_stops_them_too(tmp_path: Path) -> None:
    args = ("--db", "postgres", "--db-servers", "per-service")
    with launched(tmp_path, "microservices", *SMALL_SHOP, *args) as launch:
        url, run_dir = launch.wait_banner()
        key = re.search(r"^API key: (\S+)$", launch.stdout, re.MULTILINE)
        assert key is not None, launch.stdout
        status, body = http_get(url, "/products/1", {"X-API-Key": key.group(1)})
        assert status == 200, body

        pids = read_pids(run_dir)
        servers = {f"postgres-{service}" for service in SERVICE_DATABASES_NAMES}
        assert set(pids) == PROCESSES["microservices"] | servers
        assert list(run_dir.glob("*.db")) == []
        assert "password" not in (run_dir / "topology.json").read_text()
        processes = {name: psutil.Process(pid) for name, pid in pids.items()}

        launch.proc.send_signal(signal.SIGINT)
        assert launch.wait_exit(STOP_TIMEOUT) == 0, launch.stderr
        assert [name for name, proc in processes.items() if not is_gone(proc)] == []


def test_postgres_missing_is_one_line_and_status_2(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "ARCHBENCH_PG_BINDIR": str(tmp_path)}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bench.system import postgres; postgres.SEARCHED = (); "
            "from bench.cli import main; raise SystemExit(main())",
            "serve",
            "monolith",
            "--db",
            "postgres",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "apt-get install postgresql" in result.stderr, result.stderr
