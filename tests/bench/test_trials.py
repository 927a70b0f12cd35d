"""Interleaved rounds: every topology once per round in a seeded random order; disturbed trials repeated, bounded."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

import pytest

from bench.experiments.trials import Rounds, orders, run_rounds
from bench.system.noise import Noise, Stalls

TOPOLOGIES = ("monolith", "colocated", "microservices")
QUIET = Noise(0.0, Stalls(0.2, 0, 0.0, 0.0), 50e-6, 90e-6)
STOLEN = Noise(0.10, Stalls(0.2, 0, 0.0, 0.0), 50e-6, 90e-6)


class ScriptedMeter:
    """A fake noise meter that reports the noises of a script, one per trial, in order."""

    def __init__(self, script: list[Noise]) -> None:
        self.script = script

    def __call__(self, cpus: Collection[int] | None, probe_seconds: float) -> ScriptedMeter:
        return self

    def before(self) -> None:
        pass

    def after(self) -> Noise:
        return self.script.pop(0) if self.script else QUIET


def test_every_round_runs_every_topology_once_in_a_seeded_random_order() -> None:
    rounds = list(orders(TOPOLOGIES, 12, seed=3))
    assert all(sorted(r) == sorted(TOPOLOGIES) for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # not one fixed order
    assert rounds == list(orders(TOPOLOGIES, 12, seed=3))  # repeatable
    assert rounds != list(orders(TOPOLOGIES, 12, seed=4))


def test_rows_carry_round_position_and_noise() -> None:
    seen: list[tuple[str, int]] = []

    def trial(topology: str, index: int) -> dict[str, object]:
        seen.append((topology, index))
        return {"p50": 0.001}

    rows = run_rounds(TOPOLOGIES, trial, Rounds(rounds=4, seed=9), meter=ScriptedMeter([]))
    assert len(rows) == 12
    assert Counter(r["topology"] for r in rows) == dict.fromkeys(TOPOLOGIES, 4)
    assert [(r["topology"], r["round"]) for r in rows] == seen
    assert {r["position"] for r in rows} == {0, 1, 2}
    assert all(r["attempts"] == 1 and not r["disturbed"] and r["noise_steal_share"] == 0.0 for r in rows)


def test_a_disturbed_trial_is_repeated_and_the_repeat_kept() -> None:
    calls: list[str] = []

    def trial(topology: str, index: int) -> dict[str, object]:
        calls.append(topology)
        return {"try": len(calls)}

    rows = run_rounds(("monolith",), trial, Rounds(rounds=1, retries=2), meter=ScriptedMeter([STOLEN, QUIET]))
    assert calls == ["monolith", "monolith"]
    assert rows[0]["attempts"] == 2
    assert rows[0]["try"] == 2
    assert not rows[0]["disturbed"]
    assert "steal 10.0%" in rows[0]["repeated_reasons"]  # why the first attempt was run again


def test_repeats_are_bounded_and_the_last_attempt_keeps_its_flag() -> None:
    rows = run_rounds(
        ("monolith",), lambda t, i: {}, Rounds(rounds=1, retries=1), meter=ScriptedMeter([STOLEN, STOLEN, STOLEN])
    )
    assert rows[0]["attempts"] == 2
    assert rows[0]["disturbed"]
    assert "steal 10.0%" in rows[0]["disturbed_reasons"]
    assert rows[0]["repeated_reasons"].count("steal 10.0%") == 1  # the first attempt's; the kept one's is above


def test_a_plan_needs_at_least_one_round() -> None:
    with pytest.raises(ValueError, match="rounds"):
        Rounds(rounds=0)
