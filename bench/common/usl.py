"""The Universal Scalability Law, fitted to the throughput a topology sustained at 1..N replicas.

    X(N) = lambda * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

``lambda`` is the throughput of one replica, ``sigma`` the share of the work that serializes (contention: Amdahl's
law when ``kappa`` is 0), ``kappa`` the cost of keeping replicas coherent (crosstalk: it makes throughput peak and then
fall). The report draws the model beyond the measured replicas, labelled as a model: it is an extrapolation from a few
points, not a measurement.

Plain data in, plain data out: :func:`fit` takes replica counts and throughputs, :func:`model_frame` turns the
``scaling`` table into the ``scaling_model`` table. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import Final, Literal, overload

import numpy as np
import numpy.typing as npt
import pandas as pd

Kind = Literal["usl", "amdahl", "none"]
FloatArray = npt.NDArray[np.float64]

MODEL_COLUMNS: Final = (
    "topology",
    "mix",
    "kind",
    "lambda_rps",
    "sigma",
    "kappa",
    "points",
    "peak_n",
    "rmse_rps",
    "note",
)


@dataclass(frozen=True)
class UslModel:
    """A fitted model: ``kind`` "usl" (sigma and kappa fitted), "amdahl" (kappa fixed at 0) or "none" (too few points:
    every coefficient NaN); ``points`` the measurements it was fitted to, ``rmse_rps`` its error over them."""

    kind: Kind
    lambda_rps: float
    sigma: float
    kappa: float
    points: int
    rmse_rps: float
    note: str = ""

    @overload
    def predict(self, n: float) -> float: ...

    @overload
    def predict(self, n: FloatArray) -> FloatArray: ...

    def predict(self, n: float | FloatArray) -> float | FloatArray:
        """The model's throughput (req/s) at ``n`` replicas (NaN for a model of kind "none")."""
        x = self.lambda_rps * np.asarray(n, dtype=float) / self._contention(np.asarray(n, dtype=float))
        return x if isinstance(n, np.ndarray) else float(x)

    def _contention(self, n: FloatArray) -> FloatArray:
        result: FloatArray = 1.0 + self.sigma * (n - 1.0) + self.kappa * n * (n - 1.0)
        return result

    def peak_n(self) -> float:
        """The replicas at which the model's throughput peaks: sqrt((1 - sigma) / kappa); inf when kappa is 0 (it only
        levels off, at lambda / sigma); 1 when sigma >= 1 (no replica beyond the first adds anything); NaN without a
        model."""
        if self.kind == "none":
            return math.nan
        if self.sigma >= 1.0:
            return 1.0
        if self.kappa <= 0.0:
            return math.inf
        return max(1.0, math.sqrt((1.0 - self.sigma) / self.kappa))


def fit(n: Sequence[float], x: Sequence[float]) -> UslModel:
    """Fit the USL to throughputs ``x`` (req/s) measured at ``n`` replicas.

    Points without a finite, positive throughput (no rate met the SLO) are dropped first. Three or more distinct
    replica counts fit lambda, sigma and kappa; two fit Amdahl's law (kappa = 0); fewer give a model of kind "none".
    sigma and kappa are kept >= 0: a negative one would promise superlinear scaling forever from noise in a few points.
    """
    ns, xs = _usable(n, x)
    dropped = len(n) - len(ns)
    distinct = len(set(ns.tolist()))
    if distinct < 2:
        return UslModel("none", math.nan, math.nan, math.nan, len(ns), math.nan, _join(_few(distinct), dropped))
    kind: Kind = "usl" if distinct >= 3 else "amdahl"
    inverse_lambda, sigma, kappa = _fit_linearised(ns, xs, with_kappa=kind == "usl")
    model = UslModel(kind, 1.0 / inverse_lambda, sigma, kappa, len(ns), math.nan)
    rmse = float(np.sqrt(np.mean((model.predict(ns) - xs) ** 2)))
    return UslModel(kind, model.lambda_rps, sigma, kappa, len(ns), rmse, _join(_bounds(model), dropped))


def _usable(n: Sequence[float], x: Sequence[float]) -> tuple[FloatArray, FloatArray]:
    ns, xs = np.asarray(n, dtype=float), np.asarray(x, dtype=float)
    if ns.shape != xs.shape:
        raise ValueError(f"{len(ns)} replica counts for {len(xs)} throughputs")
    keep = np.isfinite(ns) & np.isfinite(xs) & (xs > 0) & (ns >= 1)
    return ns[keep], xs[keep]


def _fit_linearised(ns: FloatArray, xs: FloatArray, *, with_kappa: bool) -> tuple[float, float, float]:
    """(1/lambda, sigma, kappa) by non-negative least squares on the linearised law.

    N / X = a + b (N - 1) + c N (N - 1) with a = 1/lambda, b = sigma/lambda, c = kappa/lambda is linear in (a, b, c),
    so no optimiser (and no scipy) is needed, and lambda is fitted with the other two rather than anchored on the
    one-replica point alone (which may be missing, or the noisiest). Each row is weighted by X^2 / N so that its
    residual is, to first order, the residual in req/s: close to the fit, least squares here is least squares on the
    throughputs, which the RMSE reports (far from it, on wild data, the two can differ: the RMSE says how well the
    model fits). With two or three unknowns, exact non-negative least squares is cheap: solve every face of the
    constraint set (b and/or c pinned at 0) and keep the feasible solution with the smallest residual; the
    problem is convex, so the optimum is the unconstrained solution of one of those faces.
    """
    columns = [np.ones_like(ns), ns - 1.0] + ([ns * (ns - 1.0)] if with_kappa else [])
    design = np.column_stack(columns)
    weights = xs**2 / ns
    target = ns / xs * weights
    best: tuple[float, FloatArray] | None = None
    for free in product((True, False), repeat=design.shape[1] - 1):
        mask = np.array([True, *free])
        coefficients = np.zeros(design.shape[1])
        coefficients[mask] = np.linalg.lstsq(design[:, mask] * weights[:, None], target, rcond=None)[0]
        if coefficients[0] <= 0 or np.any(coefficients[1:] < 0):
            continue  # infeasible: lambda must be positive, sigma and kappa non-negative
        residual = float(np.sum((design @ coefficients * weights - target) ** 2))
        if best is None or residual < best[0]:
            best = (residual, coefficients)
    # The face with b = c = 0 is always feasible: its a is a weighted mean of N / X > 0.
    assert best is not None
    a, b = float(best[1][0]), float(best[1][1])
    c = float(best[1][2]) if with_kappa else 0.0
    return a, b / a, c / a


def _few(distinct: int) -> str:
    return "no point with a sustainable rate" if distinct == 0 else "one replica count only: no model"


def _bounds(model: UslModel) -> str:
    if model.kind == "amdahl":
        return "two replica counts: Amdahl's law (kappa fixed at 0)" + ("; sigma at 0" if model.sigma == 0 else "")
    pinned = [name for name, value in (("sigma", model.sigma), ("kappa", model.kappa)) if value == 0]
    exact = "three points for three coefficients: exact fit" if model.points == 3 else ""
    bound = f"{' and '.join(pinned)} at the bound 0" if pinned else ""
    return "; ".join(p for p in (exact, bound) if p)


def _join(note: str, dropped: int) -> str:
    parts = [note] if note else []
    if dropped:
        parts.append(f"{dropped} point{'s' if dropped > 1 else ''} without a sustainable rate left out")
    return "; ".join(parts)


def model_frame(scaling: pd.DataFrame) -> pd.DataFrame:
    """The ``scaling_model`` table: the USL fitted per topology and mix to ``sustainable_rps`` against ``replicas``
    of the ``scaling`` table. Every measured point counts, invalid ones included (the note says how many): the
    report flags them rather than letting a model silently disagree with its own chart."""
    rows = []
    if not scaling.empty:
        for (topology, mix), group in scaling.groupby(["topology", "mix"], sort=False):
            model = fit(group["replicas"].astype(float).tolist(), group["sustainable_rps"].astype(float).tolist())
            rows.append(_model_row(str(topology), str(mix), model, _invalid_note(group)))
    return pd.DataFrame(rows, columns=list(MODEL_COLUMNS))


def _invalid_note(group: pd.DataFrame) -> str:
    if "valid" not in group:
        return ""
    invalid = int((~group["valid"].astype(bool) & group["sustainable_rps"].notna()).sum())
    return f"{invalid} of the points from invalid runs" if invalid else ""


def _model_row(topology: str, mix: str, model: UslModel, extra: str) -> dict[str, object]:
    return {
        "topology": topology,
        "mix": mix,
        "kind": model.kind,
        "lambda_rps": model.lambda_rps,
        "sigma": model.sigma,
        "kappa": model.kappa,
        "points": model.points,
        "peak_n": model.peak_n(),
        "rmse_rps": model.rmse_rps,
        "note": "; ".join(p for p in (model.note, extra) if p),
    }


def model_of(row: pd.Series) -> UslModel:
    """A row of ``scaling_model`` back as a :class:`UslModel` (for predictions)."""
    return UslModel(
        _kind(str(row["kind"])),
        float(row["lambda_rps"]),
        float(row["sigma"]),
        float(row["kappa"]),
        int(row["points"]),
        float(row["rmse_rps"]),
        str(row["note"]),
    )


def _kind(text: str) -> Kind:
    if text == "usl":
        return "usl"
    return "amdahl" if text == "amdahl" else "none"
