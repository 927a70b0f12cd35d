"""The ``archbench`` command line."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from bench.experiments import (
    DEFAULT,
    EXPERIMENTS,
    NAMES,
    ON_TARGET,
    ON_TARGET_BY_DEFAULT,
    QUICK_DEFAULT,
    check_on_target,
    named,
)
from bench.experiments.context import RunContext, Slo
from bench.report import render_report
from bench.report.results import load_results
from bench.run import plan, run, summary_tables
from bench.system.deploy import DB_ENV, DB_URL_ENV, default_run_dir, deploy
from bench.system.postgres import DatabaseUnusable, PostgresMissing
from bench.system.resources import default_cpu_split
from bench.system.supervisor import ShutdownRequested, StartupError, shutdown_on_signals
from bench.system.target import FILE_FORMAT, ExternalDeployment, TargetError, TargetSpec, connect, load_targets
from plumbing.resilience import PROFILES
from plumbing.topology import SERVICES, TOPOLOGIES, layout
from plumbing.transports import DEFAULT_STACK, STACKS
from shop.seed import SeedSpec


class Parser(argparse.ArgumentParser):
    """Bad arguments get one line and exit status 2, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class Formatter(argparse.HelpFormatter):
    """Fills paragraphs as usual, and keeps those whose lines are indented (examples) as they are written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text
        return "\n\n".join(b if b.startswith(" ") else fill(b, width, indent) for b in text.split("\n\n"))


TARGET_HELP = f"""\
Against a system deployed elsewhere (the compose files or Kubernetes manifests in deploy/, another machine), \
nothing is started here: --target URL with --topologies NAME gives its public URL and topology, --targets FILE \
describes it, with the admin URL of each process for dependency faults. Experiments: {", ".join(ON_TARGET)}. \
Process faults (kill, pause), CPU and memory per process, the per-hop breakdown and the consistency audit need \
processes and files on this machine: they are skipped, and the notes table of the results says so. The API key \
and the admin token come from the environment (ARCHBENCH_API_KEY, ARCHBENCH_ADMIN_TOKEN by default).

{FILE_FORMAT}"""


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def postgres_url(text: str) -> str:
    """A PostgreSQL URL's shape, checked while the command line is read (the server is checked before anything
    starts)."""
    if not text.startswith(("postgresql://", "postgres://")):
        shown = text.split("@")[-1]  # never echo a password
        raise argparse.ArgumentTypeError(f"not a PostgreSQL URL (postgresql://ROLE@HOST:PORT/DB): {shown!r}")
    return text


def add_stack_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack",
        choices=[s for s in STACKS if s != "asgi"],
        default=DEFAULT_STACK,
        help=f"inter-service HTTP client of the microservices (default {DEFAULT_STACK})",
    )


def add_db_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        choices=["sqlite", "postgres"],
        help="the shop's databases: SQLite files in the run directory (default), or archbench's own PostgreSQL "
        "server in the run directory, stopped with everything else",
    )
    parser.add_argument(
        "--db-servers",
        choices=["shared", "per-service"],
        help="with --db postgres: one server for the run (default), or one per service's database",
    )
    parser.add_argument(
        "--db-url",
        metavar="URL",
        type=postgres_url,
        help="an existing PostgreSQL server instead (default ARCHBENCH_DB_URL), each service's database named by "
        "{component}: postgresql://ROLE@HOST:5432/shop_{component}; the password from PGPASSWORD or the URL",
    )


def db_conflict(args: argparse.Namespace) -> str | None:
    """Database options that cannot go together (taking one silently over the other would measure another setup)."""
    if args.db_servers is not None and args.db != "postgres":
        return "--db-servers is for archbench's own PostgreSQL: add --db postgres"
    if args.db_url and args.db == "sqlite":
        return "--db-url names a PostgreSQL server: it cannot go with --db sqlite"
    if args.db_url and args.db_servers == "per-service":
        return "--db-servers per-service starts archbench's own servers: it cannot go with --db-url"
    return None


def apply_db_arguments(args: argparse.Namespace) -> None:
    """Hand the database options to every deployment of this command (``deploy`` reads them from the environment)."""
    if args.db == "postgres":
        os.environ[DB_ENV] = "postgres-per-service" if args.db_servers == "per-service" else "postgres"
    elif args.db == "sqlite":
        os.environ[DB_ENV] = "sqlite"
    if args.db_url:
        os.environ[DB_URL_ENV] = args.db_url


def build_parser() -> Parser:
    parser = Parser(
        prog="archbench",
        description="Measure what splitting a system into microservices costs and buys.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    serve = sub.add_parser(
        "serve",
        help="run one topology of the shop until Ctrl-C",
        description="Start the shop as TOPOLOGY on 127.0.0.1, seed it, print its public URL and run directory, and "
        "run until Ctrl-C or SIGTERM, then stop every process it started. The run directory holds the databases, "
        "one log per process and pids.json (process name -> pid) for injecting faults by hand.",
    )
    serve.add_argument("topology", choices=TOPOLOGIES, help="monolith, colocated or microservices")
    serve.add_argument("--port", type=port_number, help="public port (default: a free one)")
    serve.add_argument("--seed", type=int, default=1, help="seed of the deterministic catalog and users (default 1)")
    serve.add_argument("--products", type=positive_int, default=1000, help="catalog size (default 1000)")
    serve.add_argument("--users", type=positive_int, default=200, help="seeded, funded users (default 200)")
    serve.add_argument("--run-dir", type=Path, help="run directory (default: runs/<topology>-<time>)")
    serve.add_argument(
        "--replicas",
        type=replica_counts,
        default={},
        metavar="NAME=N[,NAME=N]",
        help="run N replicas of a process, e.g. monolith=2 or inventory=2,gateway=2: the public one's share its "
        "port, the others' callers balance over them; `kill -TERM` one (pids.json) to restart it by hand",
    )
    add_stack_argument(serve)
    add_db_arguments(serve)
    run = sub.add_parser(
        "run",
        help="measure the topologies and write a results directory",
        description="Start the topologies on the same pinned CPUs, run the experiments with the open-loop generator "
        "on the other CPUs, stop everything, and write tidy results (Parquet + meta.json). --quick measures the "
        "network and failure experiments in about a minute and a half on 2 cores; without --quick, every default "
        "experiment takes about nine minutes (the soak, opt-in, ten more per topology).",
        epilog=TARGET_HELP,
        formatter_class=Formatter,
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="network and failure, short phases and fewer rounds (about 90 s on 2 cores)",
    )
    run.add_argument(
        "--topologies",
        type=names_of(TOPOLOGIES),
        help=f"comma-separated, from {','.join(TOPOLOGIES)} (default: all; with --target, the one deployed)",
    )
    run.add_argument(
        "--experiments",
        type=names_of(NAMES),
        help=f"comma-separated, from {','.join(NAMES)} (default: {','.join(DEFAULT)}, against a target "
        f"{','.join(ON_TARGET_BY_DEFAULT)}): " + "; ".join(f"{e.name}: {e.help}" for e in EXPERIMENTS),
    )
    run.add_argument("--out", type=Path, help="results directory (default: results/run-<time>)")
    run.add_argument("--seed", type=int, default=1, help="seed of the catalog, users and workload (default 1)")
    run.add_argument("--slo-ms", type=positive_int, default=50, help="p99 SLO for sustainable throughput (default 50)")
    run.add_argument("--sut-cpus", type=cpu_set, help="CPUs of the system under test, e.g. 0 or 0-1 (default: half)")
    run.add_argument("--generator-cpus", type=cpu_set, help="CPUs of the load generator (default: the other half)")
    run.add_argument(
        "--profiles",
        type=names_of(PROFILES),
        help=f"resilience profiles the failure experiment compares, from {','.join(PROFILES)} (default: both; "
        "with --quick, resilient)",
    )
    run.add_argument(
        "--scale-to",
        type=positive_int,
        metavar="N",
        help="scaling: measure 1..N workers / replicas on 1..N CPUs (default: the system's CPUs, at least 2; beyond "
        "them the generator shares a CPU, and the results say so)",
    )
    run.add_argument(
        "--restart-service",
        choices=SERVICES,
        default="inventory",
        metavar="SERVICE",
        help=f"deployment: the microservice restarted alone and in a rolling restart of 2 replicas, one of "
        f"{', '.join(SERVICES)} (default inventory)",
    )
    where = run.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="URL", help="measure the system deployed at URL (see below)")
    where.add_argument("--targets", metavar="FILE", type=Path, help="measure the system FILE describes (see below)")
    run.add_argument("--no-report", action="store_true", help="do not render the HTML report at the end")
    add_stack_argument(run)
    add_db_arguments(run)
    report = sub.add_parser(
        "report",
        help="render the HTML report of a results directory",
        description="Render ONE self-contained HTML file (charts inlined, no network needed to open it) from a results "
        "directory written by `archbench run`, without rerunning anything.",
    )
    report.add_argument("results", type=Path, help="results directory (holds meta.json and *.parquet)")
    report.add_argument("-o", "--output", type=Path, help="HTML file to write (default: RESULTS/report.html)")
    return parser


def cmd_report(args: argparse.Namespace) -> int:
    try:
        path = render_report(args.results, args.output)
    except FileNotFoundError as exc:
        print(f"archbench: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def names_of(valid: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in valid]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {unknown or text!r}; choose from {','.join(valid)}")
        return list(dict.fromkeys(names))

    return parse


def discard_empty(out: Path, created: bool) -> None:
    """Remove the results directory this run created where the run ended before writing anything in it (the run
    directories of deployments that never started included)."""
    if not created or not out.is_dir():
        return
    for path in sorted(out.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.is_dir() or any(path.iterdir()):
            return  # a file: something was written, keep it all
        path.rmdir()
    out.rmdir()


def unusable_out(out: Path) -> str | None:
    """Why ``out`` cannot take a run's results (a file, under a file, not empty, not creatable), or None.

    Checked before anything starts: finding it out when the results are written would lose the run."""
    existing = next(part for part in (out, *out.parents) if part.exists())  # "." or "/" at the latest
    if not existing.is_dir():
        return f"{existing} is a file, not a directory"
    if out.is_dir() and any(out.iterdir()):
        return f"{out} is not empty"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {out} ({exc.strerror or exc})"
    if not os.access(out, os.W_OK | os.X_OK):
        return f"cannot write in {out}"
    return None


def cpu_set(text: str) -> frozenset[int]:
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            cpus.update(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a CPU list like 0 or 0-1 or 0,2: {text!r}") from None
    available = os.sched_getaffinity(0)
    if not cpus or not cpus <= available:
        raise argparse.ArgumentTypeError(f"CPUs {sorted(cpus)} are not all available (have {sorted(available)})")
    return frozenset(cpus)


def cmd_run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    external = args.target is not None or args.targets is not None
    default = ON_TARGET_BY_DEFAULT if external else QUICK_DEFAULT if args.quick else DEFAULT
    experiments = named(args.experiments or default)
    try:
        target = external_target(args, [e.name for e in experiments]) if external else None
    except TargetError as exc:
        print(f"archbench: error: {exc}", file=sys.stderr)
        return 2
    sut_cpus: frozenset[int] | None
    gen_cpus: frozenset[int] | None
    if target is None:
        sut, gen = default_cpu_split()
        sut_cpus, gen_cpus = args.sut_cpus or sut, args.generator_cpus or gen
        if sut_cpus & gen_cpus:
            shared = sorted(sut_cpus & gen_cpus)
            console.print(f"warning: the generator shares CPUs {shared} with the system under test")
    else:  # the system runs elsewhere: the generator may have this whole machine
        sut_cpus, gen_cpus = None, args.generator_cpus
    out: Path = args.out or Path("results") / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    context = run_context(args, out, target, sut_cpus, gen_cpus)
    planned = plan(context, experiments, vars(args))
    for p in planned:  # before anything runs
        why = p.experiment.check(context, p.params)
        if why is not None:
            print(f"archbench: error: {p.name}: {why}", file=sys.stderr)
            return 2
    created = not out.exists()
    refused = unusable_out(out)
    if refused is not None:
        print(f"archbench: error: {refused}; choose another --out", file=sys.stderr)
        return 2
    if target is not None:
        console.print(f"external target: {target.topology} at {target.public_url}; nothing is started here")
    try:
        with shutdown_on_signals():
            path = run(context, planned, console)
    except ShutdownRequested:
        print("interrupted; every process was stopped, no results written", file=sys.stderr)
        discard_empty(out, created)
        return 130
    except StartupError as exc:
        print(f"archbench: error: {startup_failure(exc)}", file=sys.stderr)
        discard_empty(out, created)
        return 1
    except (PostgresMissing, DatabaseUnusable):  # said in one line by main
        discard_empty(out, created)
        raise
    results = load_results(path)
    for table in summary_tables(experiments, results.tables, results.meta):
        Console().print(table)
    print(f"results: {path}")
    if not args.no_report:
        print(f"report: {render_report(path)}")
    left_out = [name for name in (ON_TARGET if external else DEFAULT) if name not in {e.name for e in experiments}]
    if left_out and not args.experiments:
        print(f"not measured by this run: {', '.join(left_out)}")
        print(f"  to measure them: archbench run --experiments {','.join(left_out)}")
    if args.quick and not external:
        print("the quick run: fewer rounds, one fault (a kill), one resilience profile")
        print("  in full (about nine minutes): archbench run")
    return 0


def run_context(
    args: argparse.Namespace,
    out: Path,
    target: ExternalDeployment | None,
    sut_cpus: frozenset[int] | None,
    gen_cpus: frozenset[int] | None,
) -> RunContext:
    """The one context of the run, from the command line: a target is seeded as it was deployed and is the one
    topology measured."""
    seed = SeedSpec(seed=args.seed)
    if target is not None:
        seed = SeedSpec(seed=args.seed, products=target.spec.products, users=target.spec.users)
    return RunContext(
        out=out,
        topologies=(target.topology,) if target is not None else tuple(args.topologies or TOPOLOGIES),
        seed=seed,
        slo=Slo(p99=args.slo_ms / 1000),
        stack=args.stack,
        sut_cpus=sut_cpus,
        gen_cpus=gen_cpus,
        admin_token=secrets.token_hex(16),  # enables the fault endpoints of this run's processes, and only of them
        target=target,
        quick=args.quick,
    )


def external_target(args: argparse.Namespace, experiments: Sequence[str]) -> ExternalDeployment:
    """The system that --target or --targets names, once it answers; a :class:`TargetError` says what is wrong."""
    for option, value in (("--sut-cpus", args.sut_cpus), ("--profiles", args.profiles)):
        if value is not None:
            raise TargetError(f"{option} does not apply to an external target: it was set where it was deployed")
    if args.targets is not None:
        spec = load_targets(args.targets)
        if args.topologies not in (None, [spec.topology]):
            raise TargetError(f"--topologies {','.join(args.topologies)} but {args.targets} says {spec.topology}")
    elif not args.topologies:
        raise TargetError(
            "--target needs the topology deployed there: add --topologies monolith|colocated|microservices"
        )
    elif len(args.topologies) > 1:
        raise TargetError(f"--target is one deployed system: give one topology, not {','.join(args.topologies)}")
    else:
        spec = TargetSpec.from_url(args.target, args.topologies[0])
    check_on_target(experiments)
    return connect(spec, faults=any(e.injects_faults for e in named(experiments)))


def startup_failure(exc: StartupError) -> str:
    """One line for the terminal: which process failed and how, its last log line, and where its log is.

    The log tail can hold the child's traceback; it stays in the log, so the user reads one line, not a dump.
    """
    what = str(exc).partition("; last lines of ")[0].splitlines()[0]
    last = next((" ".join(line.split()) for line in reversed(exc.log_tail.splitlines()) if line.strip()), "")
    return f"{what}: {last} (log: {exc.log_path})" if last else f"{what} (log: {exc.log_path})"


def replica_counts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, count = item.partition("=")
        if not sep or not name:
            raise argparse.ArgumentTypeError(f"not NAME=N: {item!r}")
        counts[name.strip()] = positive_int(count.strip())
    return counts


def cmd_serve(args: argparse.Namespace) -> int:
    names = [name for name, _ in layout(args.topology)]
    unknown = sorted(set(args.replicas) - set(names))
    if unknown:
        print(
            f"archbench: error: {args.topology} has no process {', '.join(unknown)} to replicate "
            f"(its processes: {', '.join(names)})",
            file=sys.stderr,
        )
        return 2
    run_dir: Path = args.run_dir or default_run_dir(args.topology)
    if run_dir.exists() and any(run_dir.glob("*.db")):
        print(f"archbench: error: {run_dir} already holds databases; choose another --run-dir", file=sys.stderr)
        return 2
    seed = SeedSpec(seed=args.seed, products=args.products, users=args.users)
    try:
        with (
            shutdown_on_signals(),
            deploy(
                args.topology, run_dir, seed=seed, stack=args.stack, public_port=args.port, replicas=args.replicas
            ) as d,
        ):
            print(f"public URL: {d.public_url}", flush=True)
            if d.api_key:
                print(f"API key: {d.api_key}", flush=True)
            print(f"run directory: {d.run_dir}", flush=True)
            print(
                f"{args.topology}: {len(d.process_names())} process(es) ready in {d.ready_seconds:.2f} s; "
                "Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
            while True:
                time.sleep(3600)
    except ShutdownRequested:
        print("stopped; no process left running", file=sys.stderr)
        return 0
    except StartupError as exc:
        print(f"archbench: error: {startup_failure(exc)}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("serve", "run"):
        conflict = db_conflict(args)
        if conflict is not None:  # as the parser says what it refuses: one line, exit 2
            print(f"{parser.prog} {args.command}: error: {conflict} (see --help)", file=sys.stderr)
            return 2
        apply_db_arguments(args)
    try:
        if args.command == "serve":
            return cmd_serve(args)
        if args.command == "run":
            return cmd_run(args)
    except (PostgresMissing, DatabaseUnusable) as exc:
        print(f"archbench: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "report":
        return cmd_report(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
