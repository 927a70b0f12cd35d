"""The progress bar of a run: the time it says is left follows the plan, phase by phase."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import pytest
from rich.console import Console
from rich.progress import Progress, Task, TaskID

from bench.run import PhaseProgress, PlannedTimeLeft


@dataclass
class Bar:
    """A progress bar of 60 planned seconds on a clock the test moves (``now[0]``)."""

    now: list[float]
    bar: Progress
    task_id: TaskID
    phases: PhaseProgress

    @property
    def task(self) -> Task:
        return self.bar.tasks[0]


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> Bar:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    bar = Progress(console=Console(file=io.StringIO()))
    task_id = bar.add_task("run", total=60.0)
    return Bar(now, bar, task_id, PhaseProgress(bar, task_id))


def test_time_left_is_the_plan_less_the_running_phase_and_never_grows_while_a_phase_runs(planned: Bar) -> None:
    now, phases, task = planned.now, planned.phases, planned.task
    assert phases.seconds_left(task) == 60.0
    phases("first", 10.0)
    now[0] += 4.0
    assert phases.seconds_left(task) == 56.0  # 4 s into a 10 s phase
    now[0] += 20.0
    assert phases.seconds_left(task) == 50.0  # the phase overran its plan: the estimate waits, it does not grow
    phases("second", 5.0)  # the first phase's 10 s are done
    assert task.completed == 10.0
    assert phases.seconds_left(task) == 50.0
    now[0] += 2.0
    assert phases.seconds_left(task) == 48.0
    phases.experiment_done("one", 30.0)  # the experiment's plan, whatever its phases added up to
    assert phases.seconds_left(task) == 30.0
    assert PlannedTimeLeft(phases).render(task).plain == "0:00:30"


def test_a_replanned_experiment_moves_the_time_left_and_where_the_bar_stands_when_it_ends(planned: Bar) -> None:
    now, phases, task = planned.now, planned.phases, planned.task
    phases("first", 10.0)
    phases.replan(15.0)  # the experiment found a slower machine than its plan assumed
    assert phases.seconds_left(task) == 75.0
    now[0] += 4.0
    assert phases.seconds_left(task) == 71.0
    phases.experiment_done("one", 45.0)  # its plan before it ran, and what it added since
    assert task.completed == 45.0
    assert phases.seconds_left(task) == 30.0
    phases.replan(-5.0)  # the next one needs less
    assert phases.seconds_left(task) == 25.0
    planned.bar.update(planned.task_id, completed=task.total)
    assert PlannedTimeLeft(phases).render(task).plain == "0:00:00"  # finished: nothing left, not "unknown"


def test_the_knee_is_planned_longer_where_the_knees_are_lower() -> None:
    from bench.experiments.network import QUICK, NetworkParams

    for params in (QUICK, NetworkParams()):
        fast, slow = params.knee_seconds([5000.0, 2500.0, 1200.0]), params.knee_seconds([3500.0, 1500.0, 600.0])
        assert slow > fast
        # Probes hold 1,000 requests: on the slow machine the microservices' alone last a second more each.
        probes = min(params.max_probes, 6) + params.recheck_rounds * 3
        assert slow - fast > probes * (1000 / 600 - 1000 / 1200)
