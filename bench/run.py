"""``archbench run``: start each topology, run the experiments, stop everything, save the results, summarize."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from bench.common.names import CODEBASE, COMPLEXITY, COMPLEXITY_LIVE, NOTES, PLACEMENT
from bench.experiments import EXPERIMENTS, check_on_target
from bench.experiments.context import RunContext
from bench.experiments.experiment import Experiment
from bench.report.results import environment, save
from bench.system.codebase import codebase_table
from bench.system.complexity import complexity_table
from bench.system.resources import pin_self


@dataclass(frozen=True)
class Planned:
    """An experiment chosen for the run, with the parameters it runs with."""

    experiment: Experiment[Any]
    params: Any

    @property
    def name(self) -> str:
        return self.experiment.name


def plan(context: RunContext, experiments: Sequence[Experiment[Any]], given: Mapping[str, Any]) -> list[Planned]:
    """The experiments with their parameters: quick or full as the context says, with the command-line options each
    takes that were ``given``, adapted to the context."""
    return [Planned(e, e.configure(context, e.parameters(context.quick, given))) for e in experiments]


class PhaseProgress:
    """Moves the bar by what each finished phase was expected to take, and names the phase running now.

    The time left it shows is what the plan has left: the planned time of the phases not yet finished, less the time
    the running phase has had so far (never more than it was expected to take). Rich's own estimate divides what is
    left by the recent speed of the bar, which swings while a long phase runs and the bar stands still.
    """

    def __init__(self, bar: Progress, task: TaskID) -> None:
        self.bar, self.task, self.pending = bar, task, 0.0
        self.phase_started = time.monotonic()
        self.replanned = 0.0  # seconds the experiments added to their plans (or took from them) while they ran

    def __call__(self, description: str, expected: float) -> None:
        self.bar.update(self.task, description=description, advance=self.pending)
        self.pending, self.phase_started = expected, time.monotonic()

    def replan(self, seconds: float) -> None:
        """The running experiment expects to take ``seconds`` more than planned: the bar's total grows by as much."""
        self.replanned += seconds
        total = self.bar.tasks[self.task].total or 0.0
        self.bar.update(self.task, total=total + seconds)

    def experiment_done(self, name: str, completed: float) -> None:
        """An experiment ended: the bar stands at the planned time of the experiments done so far (``completed``,
        what they re-planned included)."""
        self.bar.update(self.task, completed=completed, description=f"{name}: done")
        self.pending, self.phase_started = 0.0, time.monotonic()

    def seconds_left(self, task: Task) -> float:
        into_phase = min(time.monotonic() - self.phase_started, self.pending)
        return max(0.0, (task.total or 0.0) - task.completed - into_phase)


class PlannedTimeLeft(ProgressColumn):
    """The time the plan has left (:meth:`PhaseProgress.seconds_left`), as h:mm:ss."""

    def __init__(self, phases: PhaseProgress | None = None) -> None:
        super().__init__()
        self.phases = phases

    def render(self, task: Task) -> Text:
        if task.finished:  # nothing is left (a dash would read as "unknown")
            return Text("0:00:00", style="progress.remaining")
        if self.phases is None:
            return Text("-:--:--", style="progress.remaining")
        left = round(self.phases.seconds_left(task))
        return Text(f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}", style="progress.remaining")


def run(context: RunContext, planned: Sequence[Planned], console: Console) -> Path:
    """Run every planned experiment in the registry's order: one over all topologies runs once, one of a single
    topology runs on each topology in turn (or on the target) and reads what earlier experiments measured on it;
    returns the results directory."""
    if context.target is not None:
        check_on_target([p.name for p in planned])
    pin_self(context.gen_cpus)
    started = time.monotonic()
    collected: dict[str, list[pd.DataFrame]] = defaultdict(list)
    left = PlannedTimeLeft()
    columns = (
        TextColumn("{task.description:<40.40}"),
        BarColumn(bar_width=20),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        left,
    )
    # One refresh a second: the bar is drawn by a thread of this process (the generator runs in processes of its own).
    with Progress(*columns, console=console, transient=False, refresh_per_second=1) as bar:
        task = bar.add_task("starting", total=sum(expected_seconds(context, p) for p in planned))
        phases = left.phases = PhaseProgress(bar, task)
        done = 0.0
        timing: dict[str, dict[str, float]] = {}
        for p in planned:
            began, replanned = time.monotonic(), phases.replanned
            for name, frame in run_one(context, p, collected, phases).items():
                collected[name].append(frame)
            planned_here = expected_seconds(context, p)
            timing[p.name] = {
                "planned": planned_here,
                "replanned": planned_here + phases.replanned - replanned,
                "taken": time.monotonic() - began,
            }
            done += timing[p.name]["replanned"]
            phases.experiment_done(p.name, done)
        bar.update(task, completed=done, description="done")
    frames = {name: pd.concat(parts, ignore_index=True) for name, parts in collected.items()}
    if PLACEMENT in frames:  # every experiment that deployed a topology found the same placement: keep it once
        frames[PLACEMENT] = frames[PLACEMENT].drop_duplicates(["topology", "component"], ignore_index=True)
    frames[CODEBASE] = codebase_table()  # static: counted from the sources, no deployment needed
    deploy_files = Path(__file__).resolve().parents[1]
    if (deploy_files / "deploy").is_dir():  # a source checkout: count what it takes to deploy each topology
        frames[COMPLEXITY] = complexity_table(deploy_files)
    if COMPLEXITY_LIVE in frames:  # counted from the running processes by the network experiment
        live = frames.pop(COMPLEXITY_LIVE)
        files = frames.get(COMPLEXITY, pd.DataFrame({"topology": pd.Series(dtype=str)}))
        frames[COMPLEXITY] = files.merge(live, on="topology", how="outer", sort=False)
    meta = metadata(context, planned, frames, time.monotonic() - started, timing)
    save(context.out, frames, meta)
    return context.out


def expected_seconds(context: RunContext, planned: Planned) -> float:
    """What an experiment is expected to take in this run, on every topology it runs on."""
    experiment, params = planned.experiment, planned.params
    if experiment.scope == "run":
        return experiment.planned_seconds(context, params)
    return sum(experiment.planned_seconds(context.on(t), params) for t in context.topologies)


def run_one(
    context: RunContext, planned: Planned, collected: Mapping[str, list[pd.DataFrame]], progress: PhaseProgress
) -> dict[str, pd.DataFrame]:
    """Run one experiment: once over all topologies, or on each in turn with what was measured on it so far."""
    experiment, params = planned.experiment, planned.params
    if experiment.scope == "run":
        return dict(experiment.run(context, params, progress))
    parts: dict[str, list[pd.DataFrame]] = defaultdict(list)
    for topology in context.topologies:
        measured = {
            name: frame[frame["topology"] == topology]
            for name in experiment.reads
            if name in collected and "topology" in (frame := pd.concat(collected[name], ignore_index=True))
        }
        for name, frame in experiment.run(context.on(topology, measured), params, progress).items():
            parts[name].append(frame)
    return {name: pd.concat(frames, ignore_index=True) for name, frames in parts.items()}


def metadata(
    context: RunContext,
    planned: Sequence[Planned],
    frames: Mapping[str, pd.DataFrame],
    seconds: float,
    timing: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """What ``meta.json`` records: the environment, the parameters (every experiment's, beside the shared settings it
    uses), what each experiment derives from its tables (e.g. the sustainable throughput per topology), every
    invalid run, the wall time, and the seconds each experiment was planned to take and took (``timing``)."""
    settings = context.settings()
    target = context.target
    # Every experiment's parameters, run or not (``experiments`` says which ran): those it would have run with.
    chosen = {p.name for p in planned}
    recorded = [*planned, *plan(context, [e for e in EXPERIMENTS if e.name not in chosen], {})]
    recorded.sort(key=lambda p: EXPERIMENTS.index(p.experiment))
    return {
        "environment": environment(),
        "parameters": {
            "topologies": list(context.topologies),
            "experiments": [p.name for p in planned],
            "quick": context.quick,
            "stack": context.stack if target is None else None,  # a target's is set where it runs
            "sut_cpus": sorted(context.sut_cpus) if context.sut_cpus else None,
            "generator_cpus": sorted(context.gen_cpus) if context.gen_cpus else None,
            **settings,
            **{p.name: asdict(p.params) | {key: settings[key] for key in p.experiment.uses} for p in recorded},
            "target": target.spec.describe() if target is not None else None,
        },
        **{key: value for p in recorded for key, value in p.experiment.facts(context, frames).items()},
        "invalid_runs": invalid_runs(planned, frames),
        "wall_seconds": seconds,
        "experiment_seconds": dict(timing or {}),
    }


def invalid_runs(planned: Sequence[Planned], frames: Mapping[str, pd.DataFrame]) -> list[dict[str, Any]]:
    """Every load run flagged invalid, whatever the experiment."""
    return [row for p in planned for row in p.experiment.invalid_runs(frames)]


def summary_tables(
    experiments: Sequence[Experiment[Any]], frames: Mapping[str, pd.DataFrame], meta: Mapping[str, Any]
) -> list[Table]:
    """The short tables printed at the end of a run, one per experiment that has one, then the notes."""
    tables = [table for e in experiments if (table := e.summary(frames, meta)) is not None]
    if NOTES in frames:
        tables.append(notes_table(frames))
    return tables


def notes_table(frames: Mapping[str, pd.DataFrame]) -> Table:
    table = Table(title="archbench: not measured on the external target")
    for column in ("topology", "experiment", "subject", "note"):
        table.add_column(column)
    for row in frames[NOTES].itertuples(index=False):
        table.add_row(*(str(value) for value in row))
    return table
