"""A PostgreSQL server of archbench's own: a cluster in a directory of the run, on a free loopback port.

The server binaries are looked up in ``ARCHBENCH_PG_BINDIR``, on ``PATH``, in ``pg_config --bindir``, then under
``/usr/lib/postgresql/*/bin`` (Debian and Ubuntu keep them off ``PATH``); none found is one line saying what to install.

PostgreSQL refuses to run as root. When the harness is root, ``initdb`` and ``postgres`` run as an unprivileged user
(``nobody``, or ``ARCHBENCH_PG_USER``) that owns the cluster's directory. The switch is made by :mod:`subprocess`
itself (``user=``, ``group=``, no supplementary groups) in the same fork that puts the server in its own session and
sets PDEATHSIG: no ``runuser``/``setpriv`` (a PAM session, another exec, another tool to install) between the
harness and the server, so the server is the harness's child and dies with it. A run directory the user cannot reach
(under a private parent, as pytest's temporary directories are) gets a private directory under the system's
temporary directory instead, linked from the run directory and removed with the server.

Access: the harness administers the cluster through its unix socket (``trust``, in a directory only the server's
user can enter: root and that user); every other client comes over TCP on 127.0.0.1 with a password
(``scram-sha-256``). :meth:`PostgresServer.create_database` makes one database and one role that owns it and alone
may connect to it (``CONNECT`` revoked from ``PUBLIC``), so a service's role reaches its own database and no other.

Durability: ``fsync=off`` with synchronous commits. A commit is written to the kernel before it is acknowledged, so
it survives a crash of the server's processes (the database faults kill them); only a crash of the machine can lose
or corrupt the cluster, which lives as long as one run. It is the counterpart of SQLite's ``synchronous=NORMAL`` in
the other engine (``shop/db.py``); docs/postgres.md gives the reasons and the cost.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psutil
import psycopg
from psycopg import sql

from bench.system.supervisor import ProcessSpec, Supervisor, free_port
from plumbing.topology import database_components, db_password_env

ADMIN = "archbench"
"""The cluster's superuser, reachable only through the unix socket."""
BINARIES = ("initdb", "postgres")
INSTALL_HINT = (
    "install the PostgreSQL server (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install "
    "postgresql-server; macOS: brew install postgresql) or set ARCHBENCH_PG_BINDIR"
)
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "shared_buffers": "32MB",
    "max_connections": "100",
    "log_min_messages": "warning",
    "log_connections": "off",
}
_SOCKET_NAME_MAX = 100  # sun_path holds 108 bytes, and the server adds "/.s.PGSQL.NNNNN"


class PostgresMissing(RuntimeError):
    """The PostgreSQL server binaries are not installed (or not where they are looked for)."""


class DatabaseUnusable(RuntimeError):
    """An existing server's databases (``--db-url``, ``ARCHBENCH_DB_URL``) cannot be used as given: a URL that is not
    PostgreSQL's or does not name each service's database, a server that does not answer, a database or role that is
    missing, a wrong password, a role that may not create the shop's tables. One line that says which and why."""


SEARCHED = ("/usr/lib/postgresql/*/bin",)
"""Where distributions keep the server binaries off PATH (the highest version first)."""


def find_bindir(environ: Mapping[str, str] | None = None, searched: Sequence[str] | None = None) -> Path:
    """The directory holding ``initdb`` and ``postgres``; :class:`PostgresMissing` (one line) when there is none."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if env.get("ARCHBENCH_PG_BINDIR"):
        candidates.append(Path(env["ARCHBENCH_PG_BINDIR"]))
    found = shutil.which("initdb", path=env.get("PATH"))
    if found:
        candidates.append(Path(found).resolve().parent)
    pg_config = shutil.which("pg_config", path=env.get("PATH"))
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        (path for pattern in (SEARCHED if searched is None else searched) for path in glob.glob(pattern)),
        key=lambda p: _version(Path(p).parent.name),
    )
    candidates.extend(Path(p) for p in reversed(versions))
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in BINARIES):
            return directory
    raise PostgresMissing(f"PostgreSQL server binaries (initdb, postgres) not found: {INSTALL_HINT}")


def available() -> bool:
    """Whether a server can be started here (the binaries are installed)."""
    try:
        find_bindir()
    except PostgresMissing:
        return False
    return True


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def server_user(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``(uid, gid)`` the server runs as: None (ours) unless we are root, then ``nobody`` or ``ARCHBENCH_PG_USER``."""
    if os.geteuid() != 0:
        return None
    env = os.environ if environ is None else environ
    entry = pwd.getpwnam(env.get("ARCHBENCH_PG_USER", "nobody"))
    return entry.pw_uid, entry.pw_gid


def _reachable(path: Path, uid: int, gid: int) -> bool:
    """Whether ``uid`` (group ``gid``, no others) may traverse every directory above ``path``."""
    for parent in path.resolve().parents:
        mode = parent.stat()
        if mode.st_uid == uid:
            ok = bool(mode.st_mode & stat.S_IXUSR)
        elif mode.st_gid == gid:
            ok = bool(mode.st_mode & stat.S_IXGRP)
        else:
            ok = bool(mode.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


@dataclass
class PostgresServer:
    """One cluster: ``initdb`` it once, run :meth:`spec` under a supervisor, then create databases and roles."""

    name: str
    directory: Path
    port: int = field(default_factory=free_port)
    bindir: Path = field(default_factory=find_bindir)
    user: tuple[int, int] | None = field(default_factory=server_user)
    _private: Path | None = None  # a directory of our own, when the run directory is out of the user's reach

    def __post_init__(self) -> None:
        self.directory = Path(self.directory).absolute()
        home = self.directory
        if self.user is not None and not _reachable(home, *self.user):
            self._private = Path(tempfile.mkdtemp(prefix=f"archbench-{self.name}-"))
            home = self._private
        if len(str(home / "socket")) > _SOCKET_NAME_MAX - 16:
            self._private = self._private or Path(tempfile.mkdtemp(prefix=f"archbench-{self.name}-"))
            home = self._private
        self.home = home
        if home != self.directory:
            self.directory.parent.mkdir(parents=True, exist_ok=True)
            if not self.directory.is_symlink():
                self.directory.symlink_to(home, target_is_directory=True)

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def socket_dir(self) -> Path:
        return self.home / "socket"

    def initdb(self) -> None:
        """Create the cluster (once: a directory that already holds one is kept, as a restarted server does)."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        for directory in (self.home, self.data_dir, self.socket_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
            if self.user is not None:
                os.chown(directory, *self.user)
        argv = [str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", ADMIN, "-E", "UTF8", "--locale=C"]
        argv += ["--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.home,
            user=self.user[0] if self.user else None,
            group=self.user[1] if self.user else None,
            extra_groups=[] if self.user else None,
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")

    def spec(self, cpus: frozenset[int] | None = None) -> ProcessSpec:
        """How a :class:`Supervisor` runs the server (ready once it accepts a connection)."""
        argv = [str(self.bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        argv += ["-k", str(self.socket_dir)]
        for key, value in SETTINGS.items():
            argv += ["-c", f"{key}={value}"]
        return ProcessSpec(self.name, argv, cpus=cpus, cwd=self.home, ready=self.ready, user=self.user)

    def ready(self) -> bool:
        """One probe: whether the server accepts a connection now."""
        try:
            with self.admin(connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def admin(self, dbname: str = "postgres", connect_timeout: int = 5) -> psycopg.Connection[tuple[object, ...]]:
        """A superuser connection through the unix socket (autocommit)."""
        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=ADMIN,
            dbname=dbname,
            connect_timeout=connect_timeout,
            autocommit=True,
        )

    def create_database(self, database: str, role: str, password: str) -> str:
        """A database owned by ``role`` (made with ``password``), which alone may connect to it; returns its URL
        (without the password: it travels through the environment)."""
        with self.admin() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            verb = "ALTER" if exists else "CREATE"
            conn.execute(
                sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
            )
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(role))
                )
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
        return self.url(database, role)

    def drop_database(self, database: str) -> None:
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))

    def url(self, database: str, role: str) -> str:
        return f"postgresql://{role}@127.0.0.1:{self.port}/{database}"

    def cleanup(self) -> None:
        """Remove the private directory, if one was made (call once the server has stopped)."""
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            with contextlib.suppress(OSError):
                if self.directory.is_symlink():
                    self.directory.unlink()


def server_processes(postmaster: int) -> list[int]:
    """The postmaster and every process it forked. Each backend calls ``setsid`` (it has a session of its own), so
    a signal to the postmaster's process group reaches the postmaster alone: a fault on the whole server (pause it,
    kill it at once) signals each of these."""
    try:
        parent = psutil.Process(postmaster)
        return [postmaster, *(child.pid for child in parent.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def signal_server(postmaster: int, signum: int) -> None:
    for pid in server_processes(postmaster):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@contextlib.contextmanager
def running_server(
    directory: Path, name: str = "postgres", timeout: float = 60.0, supervisor: Supervisor | None = None
) -> Iterator[PostgresServer]:
    """A started, ready server in ``directory``; stopped (and its private directory removed) on exit.

    With ``supervisor`` the server is one of its processes (stopped with the others, faults apply); without, it gets
    a supervisor of its own, logging to ``directory/logs``.
    """
    server = PostgresServer(name, directory)
    try:
        server.initdb()
        with contextlib.ExitStack() as stack:
            sup = supervisor or stack.enter_context(Supervisor(directory))
            sup.start(server.spec())
            try:
                sup.wait_ready([name], timeout=timeout)
                yield server
            finally:
                sup.stop(name)
    finally:
        server.cleanup()


# --- The databases of a run ------------------------------------------------------------------------------------

DB_CHOICES = ("sqlite", "postgres")
SERVER_LAYOUTS = ("shared", "per-service")
DATABASES_FILE = "databases.json"
"""Where a run directory records its PostgreSQL databases (URLs without passwords, and how the harness reaches each
as administrator: the unix socket of its own servers), for the audit."""


@dataclass
class RunDatabases:
    """The PostgreSQL databases of one run: component -> URL (no password), password (environment only), server."""

    urls: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)  # component -> supervisor process of its server
    admin: dict[str, dict[str, object]] = field(default_factory=dict)  # component -> libpq keywords, no password

    def env(self) -> dict[str, str]:
        return {db_password_env(component): password for component, password in self.passwords.items()}

    def write(self, run_dir: Path) -> None:
        record = {
            c: {"url": url, "server": self.servers.get(c), "admin": self.admin.get(c)} for c, url in self.urls.items()
        }
        (run_dir / DATABASES_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def database_name(component: str) -> str:
    return component


def role_name(component: str) -> str:
    return f"archbench_{component}"


def start_databases(
    supervisor: Supervisor,
    run_dir: Path,
    topology: str,
    servers: str = "shared",
    cpus: frozenset[int] | None = None,
    timeout: float = 60.0,
) -> tuple[RunDatabases, list[PostgresServer]]:
    """Start archbench's own server(s) under ``supervisor`` and make each component's database and role.

    ``servers``: ``shared`` (one server for the run) or ``per-service`` (one per component owning a database, so
    that one service's database can be killed or paused alone; the monolith has one either way)."""
    if servers not in SERVER_LAYOUTS:
        raise ValueError(f"servers must be one of {', '.join(SERVER_LAYOUTS)}, not {servers!r}")
    components = database_components(topology)
    if servers == "shared" or len(components) == 1:
        placement = dict.fromkeys(components, "postgres")
    else:
        placement = {c: f"postgres-{c}" for c in components}
    started: dict[str, PostgresServer] = {}
    for name in dict.fromkeys(placement.values()):
        server = PostgresServer(name, run_dir / name)
        server.initdb()
        supervisor.start(server.spec(cpus))
        started[name] = server
    supervisor.wait_ready(list(started), timeout=timeout)
    result = RunDatabases()
    for component, name in placement.items():
        server = started[name]
        password = secrets.token_urlsafe(24)
        db = database_name(component)
        result.urls[component] = server.create_database(db, role_name(component), password)
        result.passwords[component] = password
        result.servers[component] = name
        result.admin[component] = {"host": str(server.socket_dir), "port": server.port, "user": ADMIN, "dbname": db}
    return result, list(started.values())


def external_databases(topology: str, url: str) -> RunDatabases:
    """The databases of a run on an existing server: ``url`` names each component's database with ``{component}``
    (``postgresql://role@host:5432/shop_{component}``); without it, only the monolith (one database) may use it.

    A password in ``url`` is moved to the environment of the processes; without one, libpq's own sources apply
    (``PGPASSWORD``, ``~/.pgpass``). A URL of the wrong shape is :class:`DatabaseUnusable`."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise DatabaseUnusable(f"not a PostgreSQL URL: {url.split('@')[-1]!r}")
    components = database_components(topology)
    if "{component}" not in url and len(components) > 1:
        raise DatabaseUnusable(
            f"each service of {topology} owns its database: the URL must name it with {{component}}, "
            "e.g. postgresql://archbench@db:5432/shop_{component}"
        )
    result = RunDatabases()
    for component in components:
        parts = urlsplit(url.replace("{component}", component))
        netloc = parts.netloc
        if parts.password is not None:
            result.passwords[component] = unquote(parts.password)
            netloc = netloc.replace(f":{parts.password}@", "@", 1)
        result.urls[component] = urlunsplit(parts._replace(netloc=netloc))
    return result


def check_databases(databases: RunDatabases, connect_timeout: int = 5) -> None:
    """Connect to each database of an existing server as its component will, before anything starts: the server
    answers, the database exists, the role logs in with the password it will be given, and it may create the shop's
    tables (it owns the database, or was granted ``CREATE`` on its schema). :class:`DatabaseUnusable` names the first
    database that fails and why, in one line."""
    for component, url in databases.urls.items():
        try:
            with psycopg.connect(
                url, password=databases.passwords.get(component), connect_timeout=connect_timeout, autocommit=True
            ) as conn:
                row = conn.execute(
                    "SELECT current_user, current_schema(), "
                    "current_schema() IS NOT NULL AND has_schema_privilege(current_schema(), 'CREATE')"
                ).fetchone()
        except psycopg.Error as exc:
            raise DatabaseUnusable(f"{component}'s database {url} cannot be used: {_one_line(exc)}") from None
        if row is None or not row[2]:
            user, schema = (row[0], row[1]) if row is not None else ("?", None)
            raise DatabaseUnusable(
                f"{component}'s database {url}: role {user} may not create tables in schema {schema or '(none)'}; "
                "make the role the database's owner (CREATE DATABASE ... OWNER role), see docs/postgres.md"
            )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


_URL_PASSWORDS: dict[tuple[Path, str], str] = {}
"""(run directory, component) -> the password that came in the ``--db-url`` of a run deployed by this process, while
it runs: for :func:`admin_connect` (the audit), since no password is written to the run directory."""


@contextlib.contextmanager
def url_passwords(run_dir: Path, databases: RunDatabases) -> Iterator[None]:
    """Let :func:`admin_connect` use the passwords of ``databases`` (an existing server's) for ``run_dir`` while the
    run lasts."""
    keys = [(run_dir.resolve(), component) for component in databases.passwords]
    _URL_PASSWORDS.update(zip(keys, databases.passwords.values(), strict=True))
    try:
        yield
    finally:
        for key in keys:
            _URL_PASSWORDS.pop(key, None)


def admin_connect(run_dir: Path, component: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection to ``component``'s database of a run: as the cluster's administrator through the unix socket of
    archbench's own server, or with the URL on an existing one, and the password that came in the run's URL (while
    the run lasts, :func:`url_passwords`) or libpq's own sources (``PGPASSWORD``, ``~/.pgpass``)."""
    record = json.loads((run_dir / DATABASES_FILE).read_text())[component]
    if record.get("admin"):
        return psycopg.connect(**record["admin"], autocommit=True, connect_timeout=5)
    password = _URL_PASSWORDS.get((run_dir.resolve(), component))
    return psycopg.connect(record["url"], password=password, autocommit=True, connect_timeout=5)
