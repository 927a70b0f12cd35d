"""The ``archbench`` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from bench.deploy import default_run_dir, deploy
from bench.supervisor import ShutdownRequested, StartupError, shutdown_on_signals
from plumbing.client import DEFAULT_STACK, STACKS
from plumbing.topology import TOPOLOGIES
from shop.seed import SeedSpec


class Parser(argparse.ArgumentParser):
    """Bad arguments get one line and exit status 2, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


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
        "--stack",
        choices=[s for s in STACKS if s != "asgi"],
        default=DEFAULT_STACK,
        help=f"inter-service HTTP client of the microservices (default {DEFAULT_STACK})",
    )
    return parser


def cmd_serve(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir or default_run_dir(args.topology)
    if run_dir.exists() and any(run_dir.glob("*.db")):
        print(f"archbench: error: {run_dir} already holds databases; choose another --run-dir", file=sys.stderr)
        return 2
    seed = SeedSpec(seed=args.seed, products=args.products, users=args.users)
    try:
        with (
            shutdown_on_signals(),
            deploy(args.topology, run_dir, seed=seed, stack=args.stack, public_port=args.port) as d,
        ):
            print(f"public URL: {d.public_url}", flush=True)
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
        print(f"archbench: error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
