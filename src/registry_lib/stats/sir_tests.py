"""Tests across groups of standardised incidence ratios: homogeneity and trend.

- :func:`homogeneity_test` — chi-square test that the SIR is the same in every group
  (J−1 df);
- :func:`trend_test` — 1-df score test for a log-linear trend in the SIR over ordered groups
  (e.g. distance bands around a source), with the fitted rate ratio per unit of score.

Both return a :class:`ChiSquareResult`.

References:
    Breslow NE, Day NE (1987). Statistical methods in cancer research, vol. II, §3.4
    (homogeneity and trend of SMRs).

Example:
    >>> res = homogeneity_test([10, 10, 10], [10.0, 10.0, 10.0])
    >>> float(res.statistic), res.df
    (0.0, 2)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class ChiSquareResult:
    """A chi-square test: statistic, degrees of freedom and p-value (plus extras).

    Example:
        >>> r = ChiSquareResult("homogeneity", statistic=3.2, df=2, p_value=0.2)
        >>> r.as_dict()["test"], r.as_dict()["df"]
        ('homogeneity', 2)
    """

    name: str
    statistic: float
    df: int
    p_value: float
    estimate: float = float("nan")
    lower: float = float("nan")
    upper: float = float("nan")
    p_value_one_sided: float = float("nan")

    def as_dict(self) -> dict:
        """The result as a flat dict (one row of :attr:`BandResult.tests`).

        Example:
            >>> homogeneity_test([10, 10], [5.0, 10.0]).as_dict()["df"]
            1
        """
        return {
            "test": self.name,
            "statistic": self.statistic,
            "df": self.df,
            "p_value": self.p_value,
            "estimate": self.estimate,
            "lower": self.lower,
            "upper": self.upper,
            "p_value_one_sided": self.p_value_one_sided,
        }


def homogeneity_test(observed, expected) -> ChiSquareResult:
    """Chi-square test that the SIR is the same in every group (J−1 df; Breslow & Day 1987).

    ``X² = Σ (O_j − S·E_j)² / (S·E_j)`` with ``S = ΣO/ΣE``. Groups with E = 0 are left out.

    Example:
        >>> t = homogeneity_test([10, 10], [5.0, 10.0])
        >>> round(t.statistic, 4), t.df, round(t.p_value, 4)
        (2.5, 1, 0.1138)
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    keep = e > 0
    o, e = o[keep], e[keep]
    if len(o) < 2 or o.sum() == 0:
        return ChiSquareResult("homogeneity", float("nan"), max(len(o) - 1, 0), float("nan"))
    fitted = e * o.sum() / e.sum()
    x2 = float(np.sum((o - fitted) ** 2 / fitted))
    df = len(o) - 1
    return ChiSquareResult("homogeneity", x2, df, float(sps.chi2.sf(x2, df)))


def trend_test(observed, expected, score=None, level: float = 0.95) -> ChiSquareResult:
    """1-df score test for a log-linear trend in the SIR over ordered groups.

    The score test of ``β = 0`` in the Poisson model ``log μ_j = log E_j + α + β·x_j``
    (Breslow & Day 1987, eq. 3.13): ``X² = U²/V`` with ``U = Σ x_j (O_j − Ê_j)``,
    ``V = Σ x_j² Ê_j − (Σ x_j Ê_j)² / ΣÊ_j``, ``Ê_j = E_j·ΣO/ΣE``. ``score`` defaults to the
    band rank 0, 1, 2, …; ``estimate`` is ``exp(β̂)`` (the SIR ratio per unit of score) from the
    fitted model, with Wald limits; ``p_value_one_sided`` tests for risk falling with the score
    (i.e. with distance).

    Example:
        >>> t = trend_test([12, 8, 5, 5], [4.0, 6.0, 8.0, 10.0])
        >>> round(t.statistic, 3), round(t.estimate, 3), t.p_value < 0.001
        (15.322, 0.524, True)
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    x = np.arange(len(o), dtype=float) if score is None else np.asarray(score, dtype=float)
    keep = e > 0
    o, e, x = o[keep], e[keep], x[keep]
    if len(o) < 2 or o.sum() == 0 or np.ptp(x) == 0:
        return ChiSquareResult("trend", float("nan"), 1, float("nan"))
    fitted = e * o.sum() / e.sum()
    u = float(np.sum(x * (o - fitted)))
    v = float(np.sum(x**2 * fitted) - np.sum(x * fitted) ** 2 / fitted.sum())
    x2 = u * u / v
    z = u / np.sqrt(v)
    beta, se = _poisson_trend_fit(o, e, x)
    zc = sps.norm.ppf(1 - (1 - level) / 2)
    return ChiSquareResult(
        "trend",
        x2,
        1,
        float(sps.chi2.sf(x2, 1)),
        estimate=float(np.exp(beta)),
        lower=float(np.exp(beta - zc * se)),
        upper=float(np.exp(beta + zc * se)),
        p_value_one_sided=float(sps.norm.cdf(z)),
    )


def _poisson_trend_fit(o: np.ndarray, e: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Newton–Raphson fit of log μ = log E + α + βx; returns (β, se(β)).

    Returns NaNs when the maximum-likelihood estimate does not exist (e.g. every case in the
    first band, so β → −∞); the score test is still valid then.
    """
    xc = x - np.average(x, weights=e)  # centring keeps the information matrix well conditioned
    alpha, beta = np.log(max(o.sum(), 0.5) / e.sum()), 0.0
    converged = False
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(60):
            mu = e * np.exp(alpha + beta * xc)
            grad = np.array([np.sum(o - mu), np.sum(xc * (o - mu))])
            info = np.array([[mu.sum(), (xc * mu).sum()], [(xc * mu).sum(), (xc * xc * mu).sum()]])
            if not np.all(np.isfinite(info)) or abs(np.linalg.det(info)) < 1e-300:
                break
            step = np.linalg.solve(info, grad)
            alpha, beta = alpha + step[0], beta + step[1]
            if abs(beta) > 50:
                break
            if np.max(np.abs(step)) < 1e-10:
                converged = True
                break
    if not converged:
        return float("nan"), float("nan")
    mu = e * np.exp(alpha + beta * xc)
    info = np.array([[mu.sum(), (xc * mu).sum()], [(xc * mu).sum(), (xc * xc * mu).sum()]])
    cov = np.linalg.inv(info)
    return float(beta), float(np.sqrt(cov[1, 1]))
