"""The scale-out experiment: CPU budgets, the search for the sustainable rate, and real replicas under load."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.experiments import scaling as scale_out
from bench.experiments.network import MeteredRun
from bench.experiments.scaling import ScalingParams, budget, busiest
from bench.load.search import Judged
from bench.system.resources import Usage
from tests.bench.contexts import silent, small_context


def test_the_budget_of_a_step_takes_the_systems_cpus_first_then_the_generators() -> None:
    assert budget(1, [0], [1]) == (frozenset({0}), False)
    assert budget(2, [0], [1]) == (frozenset({0, 1}), True)  # a 2-core machine: the generator shares at k = 2
    assert budget(2, [0, 1], [2, 3]) == (frozenset({0, 1}), False)
    with pytest.raises(ValueError, match="need 3 CPUs"):
        budget(3, [0], [1])


def test_replicas_default_to_the_systems_cpus_and_at_least_two() -> None:
    assert ScalingParams().replicas([0]) == 2
    assert ScalingParams().replicas([0, 1, 2]) == 3
    assert ScalingParams(max_replicas=1).replicas([0, 1, 2]) == 1


TINY = ScalingParams(
    mixes=("browse-heavy",),
    max_replicas=2,
    start_rate=100.0,
    growth=4.0,
    max_runs=2,
    step_duration=0.6,
    step_warmup=0.2,
    pause=0.1,
)


@pytest.mark.sockets
def test_scaling_runs_replicas_and_fits_a_model(tmp_path: Path) -> None:
    context = small_context(tmp_path, ["monolith", "microservices"], sut_cpus=frozenset({0}), gen_cpus=frozenset({1}))
    tables = scale_out.EXPERIMENT.run(context, TINY, silent)
    scaling = tables["scaling"].set_index(["topology", "replicas"])
    assert list(scaling.index) == [("monolith", 1), ("monolith", 2), ("microservices", 1), ("microservices", 2)]
    assert scaling.loc[("monolith", 2), "processes"] == 2
    assert scaling.loc[("microservices", 1), "processes"] == 6
    assert scaling.loc[("microservices", 2), "processes"] == 7  # one more replica of the busiest service only
    assert scaling.loc[("monolith", 2), "generator_shares_cpu"]
    assert scaling["sustainable_rps"].notna().all()  # 100 req/s of the browse mix passes everywhere
    scaled = scaling.loc[("microservices", 2), "scaled"]
    processes = tables["scaling_processes"]
    two = processes[(processes["topology"] == "microservices") & (processes["replicas"] == 2)]
    assert (two["component"] == scaled).sum() == 2
    assert (two.loc[two["component"] == scaled, "cpu_seconds"] > 0).all()  # both replicas served
    mono = processes[(processes["topology"] == "monolith") & (processes["replicas"] == 2)]
    assert sorted(mono["process"]) == ["monolith-1", "monolith-2"]
    assert (mono["cpu_seconds"] > 0).all()
    steps = tables["scaling_steps"]
    first = steps[(steps["topology"] == "monolith") & (steps["replicas"] == 1)]["target_rate"].tolist()
    second = steps[(steps["topology"] == "monolith") & (steps["replicas"] == 2)]["target_rate"].tolist()
    assert first[:2] == [100.0, 400.0]  # rising by the growth factor
    assert second[0] == scaling.loc[("monolith", 1), "sustainable_rps"]  # step 2 starts where step 1 ended
    model = tables["scaling_model"].set_index("topology")
    assert model.loc["monolith", "points"] == 2
    assert not math.isnan(model.loc["monolith", "lambda_rps"])


def test_the_busiest_process_is_the_one_scaled() -> None:
    def probe(rate: float, cpu: dict[str, float]) -> Judged[MeteredRun]:
        usage = {name: Usage(seconds, 0) for name, seconds in cpu.items()}
        return Judged(rate, True, "", MeteredRun("scaling", 0, None, usage))  # type: ignore[arg-type]

    probes = [probe(100, {"gateway": 0.9, "inventory": 0.1}), probe(400, {"gateway": 0.5, "inventory": 0.7})]
    assert busiest(probes, {"gateway": "gateway", "inventory": "inventory"}) == "inventory"


def test_a_budget_this_machine_cannot_give_is_refused_before_anything_runs(tmp_path: Path) -> None:
    context = small_context(tmp_path, ["monolith"], sut_cpus=frozenset({0}), gen_cpus=frozenset({1}))
    assert scale_out.check(context, ScalingParams(max_replicas=2)) is None
    assert scale_out.check(context, ScalingParams(max_replicas=3)) == "3 replicas need 3 CPUs; this machine gives 2"
    assert scale_out.check(small_context(tmp_path, ["monolith"], sut_cpus=None), ScalingParams(max_replicas=9)) is None
