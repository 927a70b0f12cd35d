"""The supervisor with tiny real child processes: start, readiness, faults, and cleanup whatever happens."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil
import pytest

from bench.system.supervisor import (
    ProcessSpec,
    ShutdownRequested,
    StartupError,
    Supervisor,
    free_port,
    shutdown_on_signals,
)

pytestmark = pytest.mark.sockets

DEADLINE = 10.0

# An HTTP server answering 200 on /readyz. Flags: --ignore-term (needs SIGKILL), --grandchild (forks a sleeper
# into its process group and logs its pid).
SERVER = r"""
import http.server, signal, subprocess, sys
port, flags = int(sys.argv[1]), sys.argv[2:]
if "--ignore-term" in flags:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--grandchild" in flags:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print(f"grandchild {sleeper.pid}", flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
print(f"serving on {port}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

BROKEN = "import sys; print('boom: cannot open shop.db', file=sys.stderr); sys.exit(3)"


def server_spec(name: str, *flags: str, cpus: frozenset[int] | None = None) -> ProcessSpec:
    port = free_port()
    return ProcessSpec(name, [sys.executable, "-c", SERVER, str(port), *flags], port=port, cpus=cpus)


def is_gone(pid: int) -> bool:
    """Dead or a zombie (this container's init never reaps orphans; a zombie holds no port)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


def assert_gone(pids: Iterable[int]) -> None:
    for pid in pids:
        wait_until(functools.partial(is_gone, pid), f"pid {pid} is gone")


def port_is_free(port: int) -> bool:
    """Whether a server could listen on the port again (SO_REUSEADDR, as servers do, so TIME_WAIT is fine)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def assert_ports_free(ports: Iterable[int]) -> None:
    for port in ports:
        wait_until(functools.partial(port_is_free, port), f"port {port} is free")


def read_pids(run_dir: Path) -> dict[str, int]:
    pids: dict[str, int] = json.loads((run_dir / "pids.json").read_text())
    return pids


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture
def sup(run_dir: Path) -> Iterator[Supervisor]:
    with Supervisor(run_dir) as supervisor:
        yield supervisor


def test_start_wait_ready_and_pids_json(sup: Supervisor, run_dir: Path) -> None:
    sup.start(server_spec("a"))
    sup.start(server_spec("b"))

    waited = sup.wait_ready(timeout=DEADLINE)

    assert waited >= 0
    assert read_pids(run_dir) == sup.pids() == {"a": sup.pid("a"), "b": sup.pid("b")}
    for pid in sup.pids().values():
        assert os.getpgid(pid) == pid  # its own process group
    assert "starting a:" in sup.log_path("a").read_text()


def test_spec_env_and_cpus_reach_the_child(sup: Supervisor) -> None:
    cpu = min(os.sched_getaffinity(0))
    script = "import os, time; print('VALUE=' + os.environ['ARCHBENCH_X'], flush=True); time.sleep(60)"
    sup.start(ProcessSpec("env", [sys.executable, "-c", script], env={"ARCHBENCH_X": "42"}, cpus=frozenset({cpu})))

    wait_until(lambda: "VALUE=42" in sup.log_path("env").read_text(), "the child logged its env")
    assert psutil.Process(sup.pid("env")).cpu_affinity() == [cpu]


def test_process_exiting_at_start_raises_with_log_tail(sup: Supervisor, run_dir: Path) -> None:
    sup.start(server_spec("good"))
    sup.start(ProcessSpec("broken", [sys.executable, "-c", BROKEN], port=free_port()))

    with pytest.raises(StartupError, match=r"(?s)broken exited with status 3.*boom: cannot open shop\.db") as info:
        sup.wait_ready(timeout=DEADLINE)

    assert info.value.name == "broken"
    assert "broken" not in read_pids(run_dir)
    good = sup.pid("good")
    sup.stop_all()
    assert_gone([good])
    assert sup.pids() == {} == read_pids(run_dir)


def test_readiness_timeout_raises(sup: Supervisor) -> None:
    sup.start(ProcessSpec("mute", [sys.executable, "-c", "import time; time.sleep(60)"], port=free_port()))

    with pytest.raises(StartupError, match="mute was not ready after"):
        sup.wait_ready(timeout=0.2)


def test_kill_reaps_and_frees_the_port(sup: Supervisor, run_dir: Path) -> None:
    spec = server_spec("a")
    sup.start(spec)
    sup.wait_ready()
    pid = sup.pid("a")

    sup.kill("a")

    assert not psutil.pid_exists(pid)  # reaped, not a zombie
    assert read_pids(run_dir) == {}
    assert spec.port is not None
    assert port_is_free(spec.port)
    with pytest.raises(KeyError, match="not running"):
        sup.pid("a")


def test_reap_exited_reports_a_crash(sup: Supervisor, run_dir: Path) -> None:
    sup.start(server_spec("a"))
    sup.start(ProcessSpec("crash", [sys.executable, "-c", "raise SystemExit(7)"]))
    wait_until(lambda: psutil.Process(sup.pid("crash")).status() == psutil.STATUS_ZOMBIE, "crash exited")

    assert sup.reap_exited() == {"crash": 7}
    assert read_pids(run_dir) == {"a": sup.pid("a")}


def test_pause_and_resume(sup: Supervisor) -> None:
    sup.start(server_spec("a"))
    sup.wait_ready()
    process = psutil.Process(sup.pid("a"))

    sup.pause("a")
    wait_until(lambda: process.status() == psutil.STATUS_STOPPED, "the process is stopped")
    sup.resume("a")
    wait_until(lambda: process.status() != psutil.STATUS_STOPPED, "the process runs again")

    sup.wait_ready(timeout=DEADLINE)


def test_stop_of_a_paused_process(sup: Supervisor) -> None:
    sup.start(server_spec("a"))
    sup.wait_ready()
    pid = sup.pid("a")
    sup.pause("a")

    sup.stop("a", grace=DEADLINE)

    assert not psutil.pid_exists(pid)


def test_restart_returns_duration_and_new_pid(sup: Supervisor, run_dir: Path) -> None:
    sup.start(server_spec("a"))
    sup.wait_ready()
    old = sup.pid("a")

    took = sup.restart("a", timeout=DEADLINE)

    assert took > 0
    assert sup.pid("a") != old
    assert not psutil.pid_exists(old)
    assert read_pids(run_dir) == {"a": sup.pid("a")}
    assert sup.log_path("a").read_text().count("starting a:") == 2  # appended across restarts


def test_restart_after_kill(sup: Supervisor) -> None:
    sup.start(server_spec("a"))
    sup.wait_ready()
    sup.kill("a")

    assert sup.restart("a", timeout=DEADLINE) > 0
    assert sup.pids().keys() == {"a"}


def test_stop_escalates_to_sigkill(sup: Supervisor) -> None:
    sup.start(server_spec("stubborn", "--ignore-term"))
    sup.wait_ready()
    pid = sup.pid("stubborn")

    sup.stop("stubborn", grace=0.2)

    assert not psutil.pid_exists(pid)


def test_stop_kills_the_whole_process_group(sup: Supervisor) -> None:
    sup.start(server_spec("parent", "--grandchild"))
    sup.wait_ready()
    log = sup.log_path("parent").read_text()
    match = re.search(r"^grandchild (\d+)$", log, re.MULTILINE)
    assert match, log
    grandchild = int(match[1])
    assert not is_gone(grandchild)

    sup.stop("parent")

    assert is_gone(grandchild)


def test_unknown_names_raise(sup: Supervisor) -> None:
    with pytest.raises(KeyError):
        sup.stop("nope")
    with pytest.raises(KeyError):
        sup.restart("nope")


def test_start_twice_is_refused(sup: Supervisor) -> None:
    spec = server_spec("a")
    sup.start(spec)
    with pytest.raises(ValueError, match="already running"):
        sup.start(spec)


def test_child_started_from_a_short_lived_thread_outlives_it(sup: Supervisor) -> None:
    # PDEATHSIG follows the forking *thread*; the supervisor forks on its own long-lived thread.
    spec = server_spec("a")
    native_ids: list[int] = []

    def starter() -> None:
        native_ids.append(threading.get_native_id())
        sup.start(spec)

    thread = threading.Thread(target=starter)
    thread.start()
    thread.join()
    wait_until(lambda: not Path(f"/proc/self/task/{native_ids[0]}").exists(), "the starter thread is gone")

    with pytest.raises(psutil.TimeoutExpired):  # a bounded check that no SIGKILL follows
        psutil.Process(sup.pid("a")).wait(timeout=0.3)
    sup.wait_ready(timeout=DEADLINE)


def test_exception_in_with_block_leaves_nothing_behind(run_dir: Path) -> None:
    specs = [server_spec("a"), server_spec("b")]
    pids: list[int] = []

    def failing_experiment() -> None:
        with Supervisor(run_dir) as sup:
            for spec in specs:
                sup.start(spec)
            sup.wait_ready(timeout=DEADLINE)
            pids.extend(sup.pids().values())
            raise RuntimeError("experiment failed")

    with pytest.raises(RuntimeError, match="experiment failed"):
        failing_experiment()

    assert len(pids) == 2
    assert_gone(pids)
    assert_ports_free(spec.port for spec in specs if spec.port is not None)
    assert read_pids(run_dir) == {}


def test_signal_during_cleanup_is_held_until_cleanup_ends(run_dir: Path) -> None:
    # A SIGTERM that arrives while the supervisor stops its children must not abort the cleanup half-way:
    # it is raised once the cleanup is over.
    pids: list[int] = []

    def signalled_during_cleanup() -> None:
        with shutdown_on_signals(), Supervisor(run_dir) as sup:
            sup.start(server_spec("a"))
            sup.wait_ready(timeout=DEADLINE)
            pids.append(sup.pid("a"))
            stop_all = sup.stop_all

            def stop_all_with_signal(grace: float = 5.0) -> None:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler runs during this sleep, inside the cleanup
                stop_all(grace)

            sup.stop_all = stop_all_with_signal  # type: ignore[method-assign]

    with pytest.raises(ShutdownRequested, match="SIGTERM"):
        signalled_during_cleanup()
    assert_gone(pids)
    assert read_pids(run_dir) == {}


HARNESS = r"""
import json, signal, sys
from pathlib import Path
from bench.system.supervisor import ProcessSpec, Supervisor, free_port, shutdown_on_signals
server = Path(sys.argv[2]).read_text()
with shutdown_on_signals(), Supervisor(Path(sys.argv[1])) as sup:
    ports = {}
    for name in ("a", "b"):
        ports[name] = free_port()
        sup.start(ProcessSpec(name, [sys.executable, "-c", server, str(ports[name])], port=ports[name]))
    sup.wait_ready(timeout=30)
    print(json.dumps({"pids": sup.pids(), "ports": ports}), flush=True)
    while True:
        signal.pause()
"""


@contextlib.contextmanager
def harness_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[int], list[int]]]:
    """A harness subprocess that supervises two servers; yields it with the servers' pids and ports."""
    (tmp_path / "harness.py").write_text(HARNESS)
    (tmp_path / "server.py").write_text(SERVER)
    stderr = (tmp_path / "harness.err").open("w")
    harness = subprocess.Popen(
        [sys.executable, str(tmp_path / "harness.py"), str(tmp_path / "run"), str(tmp_path / "server.py")],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )
    pids: list[int] = []
    try:
        assert harness.stdout is not None
        line = harness.stdout.readline()
        assert line, f"harness died: {(tmp_path / 'harness.err').read_text()}"
        started = json.loads(line)
        pids.extend(started["pids"].values())
        yield harness, pids, list(started["ports"].values())
    finally:
        for pid in [harness.pid, *pids]:  # only matters if the test failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        harness.wait(timeout=DEADLINE)
        assert harness.stdout is not None
        harness.stdout.close()
        stderr.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_harness_signal_leaves_no_child(tmp_path: Path, signum: signal.Signals) -> None:
    with harness_process(tmp_path) as (harness, pids, ports):
        assert len(pids) == 2
        assert all(not is_gone(pid) for pid in pids)

        harness.send_signal(signum)
        harness.wait(timeout=DEADLINE)

        assert_gone(pids)
        assert_ports_free(ports)
        if signum != signal.SIGKILL:  # a clean shutdown also leaves pids.json empty
            assert read_pids(tmp_path / "run") == {}
            assert "ShutdownRequested" in (tmp_path / "harness.err").read_text()
