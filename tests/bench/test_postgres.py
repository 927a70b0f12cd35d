"""archbench's own PostgreSQL server: found or named in one line, started as an unprivileged user, its roles confined
to their databases, and gone with the harness however the harness ends."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import psycopg
import pytest

from bench.system import postgres
from bench.system.postgres import PostgresMissing, find_bindir, running_server, server_processes

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres.available(), reason=f"no PostgreSQL server binaries: {postgres.INSTALL_HINT}"),
]


def test_missing_binaries_are_one_line_that_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(PostgresMissing) as missing:
        find_bindir({"PATH": str(tmp_path)}, searched=())

    message = str(missing.value)
    assert "\n" not in message
    assert "apt-get install postgresql" in message


def test_the_server_binaries_are_found_off_path() -> None:
    bindir = find_bindir({"PATH": "/nonexistent"})

    assert (bindir / "postgres").exists()
    assert (bindir / "initdb").exists()


def test_each_role_reaches_its_own_database_only(tmp_path: Path) -> None:
    with running_server(tmp_path / "pg") as server:
        users = server.create_database("users", "archbench_users", "secret-u")
        server.create_database("payments", "archbench_payments", "secret-p")

        with psycopg.connect(users, password="secret-u") as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == ("archbench_users", "users")
        with pytest.raises(psycopg.OperationalError, match="CONNECT privilege"):
            psycopg.connect(server.url("payments", "archbench_users"), password="secret-u")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(users, password="wrong")
    assert not (tmp_path / "pg").is_symlink(), "the private directory (and its link) outlived the server"


@pytest.mark.skipif(os.geteuid() != 0, reason="the switch of user happens only when the harness is root")
def test_as_root_the_server_runs_as_an_unprivileged_user(tmp_path: Path) -> None:
    with running_server(tmp_path / "pg") as server:
        pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        uid = os.stat(f"/proc/{pid}").st_uid
        owner = os.stat(server.data_dir).st_uid

    assert uid != 0
    assert owner == uid


HARNESS = """
import sys, time
from pathlib import Path
from bench.system.postgres import running_server
with running_server(Path(sys.argv[1])) as server, server.admin():  # a client connection: a backend of its own
    print(server.data_dir, flush=True)
    time.sleep(600)
"""


def _server_pids(data_dir: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode()
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            if data_dir in cmdline and stat[stat.rindex(")") + 2] not in "ZX":
                pids.append(int(entry))
    return pids


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_no_server_process_outlives_a_killed_harness(tmp_path: Path) -> None:
    harness = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HARNESS), str(tmp_path / "pg")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    data_dir = ""
    try:
        assert harness.stdout is not None
        data_dir = harness.stdout.readline().strip()
        assert data_dir, "the harness did not start its server"
        (postmaster,) = _server_pids(data_dir)
        # The backends and auxiliary processes each have a session of their own: they are not in the postmaster's
        # process group, and their command lines no longer name the data directory.
        processes = [psutil.Process(pid) for pid in server_processes(postmaster)]
        assert len(processes) >= 4, processes  # postmaster, checkpointer, ..., the client's backend

        harness.send_signal(signal.SIGKILL)
        harness.wait()

        deadline = time.monotonic() + 10
        while any(_alive(p) for p in processes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p.pid for p in processes if _alive(p)] == []
    finally:
        harness.kill()
        harness.wait()
        if harness.stdout is not None:
            harness.stdout.close()
        if data_dir:  # the killed harness could not remove its cluster (a private directory when we are root)
            shutil.rmtree(Path(data_dir).parent, ignore_errors=True)
