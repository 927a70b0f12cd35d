"""What an experiment is: one record per experiment module, which ``archbench run`` and its command line loop over.

An experiment measures a running system and returns tidy tables. Its record says what it is called, its parameters
(full and ``--quick``), whether it runs by default and on an external target, whether it runs per topology or once
over all of them, which tables of earlier experiments it reads, how long it should take, how to run it, which of its
runs were invalid and how to summarize it in the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Literal, Protocol, TypeVar

import pandas as pd
from rich import box
from rich.table import Table

from bench.experiments.context import RunContext

P = TypeVar("P")


class Progress(Protocol):
    """What an experiment tells the run's progress bar."""

    def __call__(self, description: str, expected: float) -> None:
        """``description`` runs now and is expected to take ``expected`` seconds."""

    def replan(self, seconds: float) -> None:
        """What is left of the experiment is now expected to take ``seconds`` more than planned (fewer when negative):
        the experiment measured something its plan could only assume (e.g. how fast the system under test is)."""


Tables = Mapping[str, pd.DataFrame]
Scope = Literal["topology", "run"]
"""``topology``: runs on each topology in turn (given a context narrowed to it); ``run``: once over them all."""


def unchanged(context: RunContext, params: P) -> P:
    return params


def no_objection(context: RunContext, params: Any) -> str | None:
    return None


def no_summary(tables: Tables, meta: Mapping[str, Any]) -> Table | None:
    return None


def no_facts(context: RunContext, tables: Tables) -> dict[str, Any]:
    return {}


@dataclass(frozen=True, kw_only=True)
class Experiment(Generic[P]):
    """One experiment (see the module docstring).

    ``injects_faults``: on an external target it needs the admin token, checked before anything runs.
    ``options`` maps a command-line option (its argparse destination) to the parameter it sets when given.
    ``uses`` names the settings of the :class:`RunContext` it reads, recorded beside its parameters in the results.
    ``configure`` adapts the parameters to the context (e.g. to what an external target was deployed with);
    ``check`` says why the experiment cannot run in this context (None when it can), before anything runs.
    ``facts`` derives what ``meta.json`` records at its top level from the run's tables (e.g. the sustainable
    throughput per topology).
    """

    name: str
    help: str
    params: P
    quick: P
    runs_by_default: bool = True
    #: Whether ``archbench run --quick`` without ``--experiments`` runs it (the quick run gives the network and
    #: failure rows in about 90 s on 2 cores, and names what it left out).
    quick_by_default: bool = False
    on_target: bool = False
    injects_faults: bool = False  # on a target, needs its admin token
    scope: Scope = "topology"
    reads: tuple[str, ...] = ()
    options: Mapping[str, str] = field(default_factory=dict)
    uses: tuple[str, ...] = ("seed", "products", "users")
    planned_seconds: Callable[[RunContext, P], float]
    run: Callable[[RunContext, P, Progress], dict[str, pd.DataFrame]]
    invalid_runs: Callable[[Tables], list[dict[str, Any]]]
    summary: Callable[[Tables, Mapping[str, Any]], Table | None] = no_summary
    configure: Callable[[RunContext, P], P] = unchanged
    check: Callable[[RunContext, P], str | None] = no_objection
    facts: Callable[[RunContext, Tables], dict[str, Any]] = no_facts

    def parameters(self, quick: bool, given: Mapping[str, Any] | None = None) -> P:
        """The parameters for a run: quick or full, with the command-line options it takes that were ``given``."""
        given = given or {}
        chosen = {
            field: tuple(value) if isinstance(value, list) else value
            for option, field in self.options.items()
            if (value := given.get(option))
        }
        return replace(self.quick if quick else self.params, **chosen)  # type: ignore[type-var]


def summary_table(title: str, caption: str | None = None) -> Table:
    """A table of the terminal summary, in the one style that keeps three topologies under 80 columns."""
    return Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
        caption_justify="left",
    )


def each_topology(
    run_one: Callable[[RunContext, str, P, Progress], dict[str, pd.DataFrame]],
) -> Callable[[RunContext, P, Progress], dict[str, pd.DataFrame]]:
    """An experiment's ``run`` from the function that runs it on one topology: the tables of every topology of the
    context, concatenated."""

    def run(context: RunContext, params: P, progress: Progress) -> dict[str, pd.DataFrame]:
        parts: dict[str, list[pd.DataFrame]] = {}
        for topology in context.topologies:
            for name, frame in run_one(context, topology, params, progress).items():
                parts.setdefault(name, []).append(frame)
        return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}

    return run


def rows_where_invalid(tables: Tables, table: str, column: str = "valid") -> list[dict[str, Any]]:
    """The rows of ``table`` (when present) whose ``column`` is false, as records."""
    if table not in tables:
        return []
    frame = tables[table]
    return [{str(k): v for k, v in row.items()} for row in frame[~frame[column].astype(bool)].to_dict(orient="records")]
