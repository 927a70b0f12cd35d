"""The registry of experiments and the records the run and the command line loop over."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from bench.cli import build_parser
from bench.experiments import DEFAULT, EXPERIMENTS, NAMES, ON_TARGET, ON_TARGET_BY_DEFAULT, check_on_target, named
from bench.experiments.context import RunContext
from bench.run import plan
from bench.system.target import ExternalDeployment, TargetError, TargetSpec
from shop.seed import SeedSpec

SHARED = {"seed", "products", "users", "slo_p99", "error_budget"}


def test_every_experiment_is_registered_once_in_the_order_a_run_makes_them() -> None:
    assert NAMES == ("network", "failure", "security", "soak", "scaling", "deployment")
    assert DEFAULT == ("network", "failure", "security", "scaling", "deployment")  # the soak is opt-in
    assert ON_TARGET == ("network", "failure", "soak")
    assert ON_TARGET_BY_DEFAULT == ("network", "failure")
    assert [e.name for e in named(["deployment", "network"])] == ["network", "deployment"]


def test_each_record_is_consistent() -> None:
    for experiment in EXPERIMENTS:
        assert type(experiment.quick) is type(experiment.params), experiment.name
        own = {f.name for f in fields(experiment.params)}
        assert not own & SHARED, f"{experiment.name} keeps a copy of a shared setting: {own & SHARED}"
        assert set(experiment.options.values()) <= own, experiment.name
        assert set(experiment.uses) <= SHARED, experiment.name
        assert experiment.scope in ("topology", "run"), experiment.name
        # What an experiment reads of others' tables must be written before it, on the same topology.
        earlier = EXPERIMENTS[: EXPERIMENTS.index(experiment)]
        assert not experiment.reads or any(e.scope == "topology" for e in earlier), experiment.name


def test_the_command_line_offers_the_registry() -> None:
    args = build_parser().parse_args(["run", "--experiments", ",".join(NAMES)])
    assert args.experiments == list(NAMES)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--experiments", "nope"])


def test_a_plan_takes_quick_params_and_the_options_given(tmp_path: Path) -> None:
    context = RunContext(out=tmp_path, topologies=("monolith",), quick=True)
    given = {"profiles": ["naive"], "scale_to": None, "restart_service": "payments"}
    planned = {p.name: p.params for p in plan(context, EXPERIMENTS, given)}
    assert planned["network"] == named(["network"])[0].quick
    assert planned["failure"].profiles == ("naive",)
    assert planned["scaling"].max_replicas == 0  # not given: the default
    assert planned["deployment"].service == "payments"


def test_a_target_runs_the_failure_experiment_with_the_profile_it_was_deployed_with(tmp_path: Path) -> None:
    target = ExternalDeployment(TargetSpec("monolith", "http://127.0.0.1:9", profile="resilient"))
    context = RunContext(out=tmp_path, topologies=("monolith",), seed=SeedSpec(products=60), target=target)
    (failure,) = plan(context, named(["failure"]), {})
    assert failure.params.profiles == ("resilient",)


def test_what_starts_systems_is_refused_on_a_target() -> None:
    check_on_target(list(ON_TARGET))
    with pytest.raises(TargetError, match="the scaling experiment cannot run against an external target"):
        check_on_target(["network", "scaling"])
