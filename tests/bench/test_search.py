"""The rate search: the ladders today's callers climb, retries, the refinement and the highest passing rate."""

from __future__ import annotations

from bench.load.search import Judged, Search, bracketing, highest_passing, interleave, rising, search


def probe_passing_up_to(limit: float, tried: list[float]):
    def probe(rate: float) -> Judged[float]:
        tried.append(rate)
        return Judged(rate, rate <= limit, "" if rate <= limit else "too fast", rate)

    return probe


def test_a_grid_is_climbed_until_the_first_miss() -> None:
    tried: list[float] = []
    runs = search(probe_passing_up_to(1000, tried), (250, 500, 1000, 1500, 2000))
    assert tried == [250, 500, 1000, 1500]
    assert highest_passing(runs) == Judged(1000, True, "", 1000)


def test_doubling_then_halving_the_gap() -> None:
    tried: list[float] = []
    runs = search(probe_passing_up_to(1000, tried), rising(300.0, 2.0, digits=-1, compound=True), max_runs=12, refine=3)
    assert tried == [300.0, 600.0, 1200.0, 900.0, 1050.0, 980.0]
    best = highest_passing(runs)
    assert best is not None
    assert best.rate == 980.0


def test_the_runs_are_bounded() -> None:
    tried: list[float] = []
    search(probe_passing_up_to(1e9, tried), rising(100.0, 4.0, digits=-1, compound=True), max_runs=2, refine=3)
    assert tried == [100.0, 400.0]


def test_a_geometric_sweep_retries_a_miss_and_stops_after_two_in_a_row() -> None:
    tried: list[float] = []
    runs = search(
        probe_passing_up_to(3000, tried), rising(2000.0, 1.3, digits=-2, maximum=100_000), misses_to_stop=2, retries=1
    )
    assert tried == [2000.0, 2600.0, 3400.0, 3400.0, 4400.0, 4400.0]
    assert [r.passed for r in runs] == [True, True, False, False, False, False]


def test_rates_rise_by_a_factor_rounded_each_time_or_compounded() -> None:
    assert list(rising(4000, 1.3, digits=-1, maximum=9000)) == [4000.0, 5200.0, 6760.0, 8790.0]
    assert list(rising(1000, 1.3, digits=-2, maximum=2000)) == [1000.0, 1300.0, 1700.0]


def test_no_pass_no_answer() -> None:
    assert highest_passing([Judged(100.0, False, "errors", None)]) is None


def test_doubling_then_bisecting_brackets_the_knee_within_ten_percent() -> None:
    tried: list[float] = []
    runs = search(probe_passing_up_to(1234, tried), rising(200.0, 2.0, digits=0, compound=True), within=0.10, digits=0)
    passed = max(r.rate for r in runs if r.passed)
    failed = min(r.rate for r in runs if not r.passed)
    assert passed <= 1234 < failed <= passed * 1.10
    assert tried[:4] == [200.0, 400.0, 800.0, 1600.0]
    assert len(tried) <= 8


def test_when_the_first_rate_fails_the_search_halves_down_to_a_pass() -> None:
    tried: list[float] = []
    runs = search(probe_passing_up_to(150, tried), rising(1000.0, 2.0, digits=0, compound=True), within=0.10, digits=0)
    assert tried[:4] == [1000.0, 500.0, 250.0, 125.0]
    best = highest_passing(runs)
    assert best is not None
    assert 150 / 1.1 <= best.rate <= 150


def test_a_search_that_never_passes_stops_at_its_floor() -> None:
    tried: list[float] = []
    runs = search(probe_passing_up_to(1, tried), [400.0], within=0.10, floor=50.0, digits=0)
    assert tried == [400.0, 200.0, 100.0, 50.0]
    assert highest_passing(runs) is None


def test_interleaved_searches_take_turns_in_the_order_of_each_round() -> None:
    tried: list[tuple[str, float]] = []
    limits = {"a": 1000.0, "b": 300.0}
    searches = {name: Search[float](rising(100.0, 2.0, digits=0, compound=True), within=0.10) for name in limits}

    def probe(name: str, rate: float) -> Judged[float]:
        tried.append((name, rate))
        return Judged(rate, rate <= limits[name], "", rate)

    interleave(searches, probe, lambda names: sorted(names, reverse=True))
    assert tried[:4] == [("b", 100.0), ("a", 100.0), ("b", 200.0), ("a", 200.0)]
    for name, limit in limits.items():
        passed, failed = searches[name].bracket
        assert passed is not None
        assert failed is not None
        assert passed <= limit < failed <= passed * 1.10


def test_a_miss_tried_again_that_passes_does_not_close_the_bracket() -> None:
    knee, unlucky = 5000.0, {3200.0}

    def probe(rate: float) -> Judged[None]:
        if rate in unlucky:  # the host took the CPU: a miss below the knee, once
            unlucky.remove(rate)
            return Judged(rate, False, "", None)
        return Judged(rate, rate <= knee, "", None)

    runs = search(probe, rising(1600.0, 2.0, digits=0, compound=True), retries=1, within=0.1, max_runs=12)
    rates = [run.rate for run in runs]
    assert rates[:5] == [1600.0, 3200.0, 3200.0, 6400.0, 6400.0]  # each miss tried once more
    passed, failed = bracketing(runs)
    assert passed is not None
    assert failed is not None
    assert passed.rate <= knee < failed.rate <= passed.rate * 1.1


def test_a_miss_that_a_retry_cannot_mend_is_not_tried_again() -> None:
    def probe(rate: float) -> Judged[None]:  # past 5,000 req/s even the median request misses: an overload
        return Judged(rate, rate <= 5000, "", None, retry=rate <= 6000)

    runs = search(probe, rising(1600.0, 2.0, digits=0, compound=True), retries=1, within=0.1, max_runs=12)
    rates = [run.rate for run in runs]
    assert rates[:4] == [1600.0, 3200.0, 6400.0, 4530.0]  # 6,400 once: the bisection starts at once
    assert rates.count(6400.0) == 1
