"""The Universal Scalability Law fit: known coefficients come back from exact data, the coefficients stay in their
domain whatever the data, and too few points give Amdahl's law or no model at all."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.common.usl import MODEL_COLUMNS, UslModel, fit, model_frame, model_of

REPLICAS = np.arange(1.0, 9.0)


def usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    return np.asarray(lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1)), dtype=float)


def test_recovers_known_coefficients_from_exact_data() -> None:
    model = fit(REPLICAS.tolist(), usl(REPLICAS, 1000.0, 0.05, 0.002).tolist())
    assert model.kind == "usl"
    assert model.points == 8
    assert model.lambda_rps == pytest.approx(1000.0, rel=1e-9)
    assert model.sigma == pytest.approx(0.05, rel=1e-9)
    assert model.kappa == pytest.approx(0.002, rel=1e-9)
    assert model.rmse_rps == pytest.approx(0.0, abs=1e-6)
    assert model.peak_n() == pytest.approx(math.sqrt(0.95 / 0.002))


def test_lambda_is_fitted_without_the_one_replica_point() -> None:
    n = np.arange(2.0, 7.0)
    model = fit(n.tolist(), usl(n, 800.0, 0.1, 0.01).tolist())
    assert (model.lambda_rps, model.sigma, model.kappa) == pytest.approx((800.0, 0.1, 0.01), rel=1e-9)


def test_noisy_data_fits_close_to_the_truth() -> None:
    rng = np.random.default_rng(6)
    truth = usl(REPLICAS, 1000.0, 0.05, 0.002)
    model = fit(REPLICAS.tolist(), (truth * (1 + 0.01 * rng.standard_normal(len(truth)))).tolist())
    assert model.lambda_rps == pytest.approx(1000.0, rel=0.05)
    assert model.sigma == pytest.approx(0.05, abs=0.02)
    # The error is that of the throughputs, in req/s: about 1% of a few thousand.
    assert 5.0 < model.rmse_rps < 60.0


def test_two_points_fit_amdahl() -> None:
    model = fit([1, 2], [1000.0, 1600.0])
    assert model.kind == "amdahl"
    assert model.kappa == 0.0
    assert model.lambda_rps == pytest.approx(1000.0)
    assert model.sigma == pytest.approx(0.25)  # 2 / (1 + sigma) = 1.6
    assert model.predict(2.0) == pytest.approx(1600.0)
    assert model.peak_n() == math.inf
    assert model.predict(1e9) == pytest.approx(1000.0 / 0.25, rel=1e-6)  # it levels off at lambda / sigma
    assert "Amdahl" in model.note


@pytest.mark.parametrize(("n", "x"), [([1], [1000.0]), ([], []), ([1, 2], [math.nan, math.nan]), ([2, 2], [5, 6])])
def test_fewer_than_two_replica_counts_give_no_model(n: list[float], x: list[float]) -> None:
    model = fit(n, x)
    assert model.kind == "none"
    assert all(math.isnan(v) for v in (model.lambda_rps, model.sigma, model.kappa, model.rmse_rps, model.peak_n()))
    assert math.isnan(model.predict(4.0))
    assert np.isnan(model.predict(np.array([1.0, 2.0]))).all()
    assert model.note


def test_points_without_a_sustainable_rate_are_dropped() -> None:
    x = usl(REPLICAS, 1000.0, 0.05, 0.002)
    x[[2, 5]] = math.nan
    model = fit(REPLICAS.tolist(), x.tolist())
    assert model.points == 6
    assert (model.lambda_rps, model.sigma, model.kappa) == pytest.approx((1000.0, 0.05, 0.002), rel=1e-9)
    assert "2 points without a sustainable rate left out" in model.note
    # Two points left: Amdahl.
    assert fit([1, 2, 3], [1000.0, math.nan, 2500.0]).kind == "amdahl"


def test_superlinear_data_pins_the_coefficients_at_zero() -> None:
    model = fit([1, 2, 3, 4], [1000.0, 2100.0, 3300.0, 4500.0])
    assert (model.sigma, model.kappa) == (0.0, 0.0)
    assert model.lambda_rps > 1000.0
    assert model.peak_n() == math.inf
    assert "sigma and kappa at the bound 0" in model.note


def test_retrograde_data_peaks() -> None:
    n = np.array([1.0, 2.0, 3.0, 4.0])
    model = fit(n.tolist(), [1000.0, 1500.0, 1400.0, 1200.0])
    assert model.kappa > 0
    assert 1.5 < model.peak_n() < 3.5
    # No replica count beyond the first adds anything when sigma >= 1.
    assert UslModel("amdahl", 1000.0, 1.2, 0.0, 2, 0.0).peak_n() == 1.0


def test_predict_takes_floats_and_arrays() -> None:
    model = UslModel("usl", 1000.0, 0.05, 0.002, 8, 0.0)
    assert isinstance(model.predict(3.0), float)
    assert model.predict(1.0) == pytest.approx(1000.0)
    grid = np.array([1.0, 2.0, 8.0])
    assert model.predict(grid) == pytest.approx(usl(grid, 1000.0, 0.05, 0.002))


@given(
    lam=st.floats(10.0, 1e5),
    sigma=st.floats(0.0, 0.5),
    kappa=st.floats(0.0, 0.05),
    top=st.integers(3, 12),
)
def test_exact_data_always_comes_back(lam: float, sigma: float, kappa: float, top: int) -> None:
    n = np.arange(1.0, top + 1.0)
    model = fit(n.tolist(), usl(n, lam, sigma, kappa).tolist())
    assert model.lambda_rps == pytest.approx(lam, rel=1e-6)
    assert model.sigma == pytest.approx(sigma, rel=1e-6, abs=1e-9)
    assert model.kappa == pytest.approx(kappa, rel=1e-6, abs=1e-9)
    assert model.rmse_rps <= 1e-6 * lam


@given(st.lists(st.floats(1.0, 1e5), min_size=3, max_size=10), st.floats(1e-3, 1e3))
def test_any_positive_data_gives_coefficients_in_their_domain(x: list[float], scale: float) -> None:
    n = [float(i + 1) for i in range(len(x))]
    model = fit(n, x)
    assert model.kind == "usl"
    assert model.lambda_rps > 0
    assert model.sigma >= 0
    assert model.kappa >= 0
    assert model.peak_n() >= 1.0
    xs = np.array(x)
    assert model.rmse_rps == pytest.approx(float(np.sqrt(np.mean((model.predict(np.array(n)) - xs) ** 2))))
    # Throughput in other units (req/min, req/ms) scales lambda and nothing else.
    scaled = fit(n, (xs * scale).tolist())
    assert scaled.lambda_rps == pytest.approx(model.lambda_rps * scale, rel=1e-6)
    assert (scaled.sigma, scaled.kappa) == pytest.approx((model.sigma, model.kappa), rel=1e-6, abs=1e-9)


def scaling_rows() -> pd.DataFrame:
    rows = []
    for topology, top, (lam, sigma, kappa) in (("monolith", 4, (900.0, 0.1, 0.0)), ("microservices", 2, (400, 0.3, 0))):
        for replicas in range(1, top + 1):
            rate = float(usl(np.array([float(replicas)]), lam, sigma, kappa)[0])
            rows.append(
                {
                    "topology": topology,
                    "mix": "browse-heavy",
                    "replicas": replicas,
                    "sustainable_rps": rate,
                    "valid": replicas != 2,
                }
            )
    rows.append({"topology": "colocated", "mix": "browse-heavy", "replicas": 1, "sustainable_rps": math.nan})
    rows[-1]["valid"] = True
    return pd.DataFrame(rows)


def test_model_frame_has_one_row_per_topology_and_mix() -> None:
    frame = model_frame(scaling_rows())
    assert tuple(frame.columns) == MODEL_COLUMNS
    assert list(frame["topology"]) == ["monolith", "microservices", "colocated"]
    mono, micro, colo = (frame.iloc[i] for i in range(3))
    assert (mono["kind"], mono["points"]) == ("usl", 4)
    assert (mono["lambda_rps"], mono["sigma"]) == pytest.approx((900.0, 0.1), rel=1e-9)
    assert mono["kappa"] == pytest.approx(0.0, abs=1e-12)
    assert mono["peak_n"] == math.inf
    assert "1 of the points from invalid runs" in mono["note"]
    assert (micro["kind"], micro["points"]) == ("amdahl", 2)
    assert micro["sigma"] == pytest.approx(0.3)
    assert colo["kind"] == "none"
    assert math.isnan(colo["lambda_rps"])
    # A row reads back as a model that predicts the measurements.
    assert model_of(mono).predict(4.0) == pytest.approx(float(usl(np.array([4.0]), 900.0, 0.1, 0.0)[0]))


def test_model_frame_of_nothing_is_empty_with_the_columns() -> None:
    frame = model_frame(pd.DataFrame())
    assert frame.empty
    assert tuple(frame.columns) == MODEL_COLUMNS
