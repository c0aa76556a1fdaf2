"""Counterfactual of a monthly series: observed against expected after a shock.

:func:`fit_counterfactual` fits a model on the pre-shock *baseline* months only (Poisson or
negative-binomial GLM with linear trend, seasonality and a log(days in month) offset, HAC
(Newey–West) standard errors; or a SARIMAX alternative) and projects it forward. The returned
:class:`CounterfactualResults` gives observed against expected by month with prediction
intervals, the observed/expected ratio of any month with a CI, and cumulative missing events
over any window with a CI *by simulation*: parameters are drawn from their sampling
distribution, then counts, and the deficit is summed inside each draw — monthly bounds are
never added up. The monthly grid and the GLM fit come from :mod:`registry_lib.stats.timeseries`.

References:
    Bernal JL, Cummins S, Gasparrini A (2017). Interrupted time series regression for the
    evaluation of public health interventions: a tutorial. Int J Epidemiol 46:348-355.
    Cameron AC, Trivedi PK (2013). Regression analysis of count data, 2nd ed., §3.2
    (moment estimator of the negative-binomial dispersion).

Example:
    >>> import numpy as np, pandas as pd
    >>> from registry_lib.stats.timeseries import monthly_counts
    >>> days = pd.date_range("2017-01-01", "2020-12-31", freq="D")
    >>> rng = np.random.default_rng(1)
    >>> dates = np.repeat(days.values, rng.poisson(30, len(days)))
    >>> counts = monthly_counts(pd.DataFrame({"diagnosis_date": dates}))
    >>> cf = fit_counterfactual(counts, baseline=("2017-01", "2019-12"), family="poisson",
    ...                         seasonality="none", n_sims=500, seed=1)
    >>> row = cf.ratio("2020-04").iloc[0]
    >>> bool(row.oe_lower < 1 < row.oe_upper)
    True
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.stats.timeseries import (
    _ALPHA_FLOOR,
    _COV_TYPES,
    _FAMILIES,
    _METHODS,
    _SEASONALITY,
    COUNT,
    DAYS,
    MONTH,
    _check_level,
    _glm_fit,
    _groups,
    _infer_by,
    _month_index,
    _ordinal,
    _py,
    _series_arrays,
    _tidy_coefficients,
    _window,
    seasonal_design,
    to_month,
)


@dataclass
class _Draws:
    expected: np.ndarray  # point expected count per month
    mean_draws: np.ndarray  # S x T expected counts under parameter uncertainty
    count_draws: np.ndarray  # S x T counterfactual counts (parameter + sampling)
    # S x T draws of the observed/expected multiplier, for its lower and upper limits: the
    # observed month's Poisson mean drawn from Gamma(obs) and Gamma(obs + 1) (Garwood's exact
    # limits; Gamma(obs + 1) = Gamma(obs) + Exp(1), so high >= low in every draw)
    ratio_draws: np.ndarray
    ratio_high_draws: np.ndarray


@dataclass
class CounterfactualModel:
    """Specification of the counterfactual: what to fit on the baseline months.

    Args:
        method: ``"glm"`` (Poisson / negative-binomial regression, the default) or
            ``"sarimax"`` (Gaussian regression with ARMA errors on log(count / days)).
        family: ``"negbin"`` (NB2, dispersion by moments; Poisson if no overdispersion) or
            ``"poisson"`` — GLM only.
        seasonality: ``"month"``, ``"fourier"`` or ``"none"`` (see :func:`seasonal_design`).
        harmonics: Fourier pairs when ``seasonality="fourier"``.
        cov_type: ``"HAC"`` (Newey–West, small-sample corrected), ``"HC0"``, ``"HC1"`` (robust)
            or ``"nonrobust"`` — GLM only.
        maxlags: HAC lags (default: Newey–West rule on the number of baseline months).
        order: ARMA order ``(p, 0, q)`` of the SARIMAX errors.
        conservative_se: per coefficient, use the larger of the robust (HAC/HC) and the
            model-based standard error (Angrist & Pischke 2009, §8.1), because sandwich
            estimators are biased downwards in series of a few dozen months — GLM only.

    Example:
        >>> CounterfactualModel(family="poisson", seasonality="fourier").harmonics
        2
    """

    method: str = "glm"
    family: str = "negbin"
    seasonality: str = "month"
    harmonics: int = 2
    cov_type: str = "HAC"
    maxlags: int | None = None
    order: tuple[int, int, int] = (1, 0, 0)
    conservative_se: bool = True

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise RegistryLabError(f"method={self.method!r}: must be one of {_METHODS}")
        if self.family not in _FAMILIES:
            raise RegistryLabError(f"family={self.family!r}: must be one of {_FAMILIES}")
        if self.seasonality not in _SEASONALITY:
            raise RegistryLabError(
                f"seasonality={self.seasonality!r}: must be one of {_SEASONALITY}"
            )
        if self.cov_type not in _COV_TYPES:
            raise RegistryLabError(f"cov_type={self.cov_type!r}: must be one of {_COV_TYPES}")
        if len(self.order) != 3 or self.order[1] != 0:
            raise RegistryLabError(f"order={self.order!r}: give (p, 0, q); no differencing")

    def fit(self, series: pd.DataFrame, baseline: Sequence[Any]) -> FittedCounterfactual:
        """Fit on the baseline months of one monthly series (``month, days_in_month, count``).

        Example:
            >>> s = pd.DataFrame({"month": pd.period_range("2018-01", "2020-12", freq="M")
            ...                   .to_timestamp()})
            >>> s["days_in_month"] = s["month"].dt.days_in_month
            >>> s["count"] = 10 * s["days_in_month"]
            >>> m = CounterfactualModel(family="poisson", seasonality="none")
            >>> f = m.fit(s, ("2018-01", "2019-12"))
            >>> round(float(f.predict(["2020-02"], [29])[0]), 6)
            290.0
        """
        first, last = _window(baseline, "baseline")
        months, days, y = _series_arrays(series, "series")
        in_base = (months >= first) & (months <= last)
        if not in_base.any():
            raise RegistryLabError(f"baseline={baseline!r}: no months of the series fall in it")
        missing = pd.period_range(first, last, freq="M").difference(months[in_base])
        if len(missing):
            raise RegistryLabError(f"baseline month {missing[0]} is missing from the series")
        bm, bd, by_ = months[in_base], days[in_base], y[in_base]
        if by_.sum() == 0:
            raise RegistryLabError(f"baseline={baseline!r}: no events in the baseline months")
        X = seasonal_design(bm, first, self.seasonality, self.harmonics)
        if self.seasonality == "month" and len(set(bm.month)) < 12:
            raise RegistryLabError(
                f"baseline={baseline!r}: month-of-year terms need all 12 calendar months"
            )
        if len(bm) < X.shape[1] + 4:
            raise RegistryLabError(
                f"baseline={baseline!r}: {len(bm)} months is too short for "
                f"{X.shape[1]} parameters"
            )
        if self.method == "glm":
            res, alpha, lags, cov = _glm_fit(
                by_, X, np.log(bd), self.family, self.cov_type, self.maxlags,
                self.conservative_se,
            )
            fit = FittedCounterfactual(self, first, last, res, alpha, lags, list(X.columns))
            fit._extra["cov"] = cov
            return fit
        return _fit_sarimax(self, first, last, bm, bd, by_, X)


@dataclass
class FittedCounterfactual:
    """A counterfactual fitted to one series (returned by :meth:`CounterfactualModel.fit`).

    Example:
        >>> months = pd.period_range("2017-01", "2020-12", freq="M")
        >>> s = pd.DataFrame({"month": months.to_timestamp(), "days_in_month": months.days_in_month,
        ...                   "count": 3 * months.days_in_month})
        >>> fit = CounterfactualModel(family="poisson", seasonality="none").fit(s, ("2017-01", "2019-12"))
        >>> round(float(fit.predict(pd.PeriodIndex(["2020-04"], freq="M"), [30])[0]), 1)
        90.0
    """

    model: CounterfactualModel
    baseline_start: pd.Period
    baseline_end: pd.Period
    result: Any  # the statsmodels results object
    alpha: float  # NB2 dispersion (0 = Poisson); for SARIMAX the error variance
    maxlags: int | None
    terms: list[str]
    _extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def params(self) -> np.ndarray:
        return np.asarray(self.result.params, dtype=float)[: len(self.terms)]

    @property
    def cov_params(self) -> np.ndarray:
        k = len(self.terms)
        cov = self._extra.get("cov")
        if cov is None:
            cov = np.asarray(self.result.cov_params(), dtype=float)
        cov = np.asarray(cov, dtype=float)[:k, :k]
        return (cov + cov.T) / 2

    def coefficients(self, level: float = 0.95) -> pd.DataFrame:
        """Tidy table of the regression terms (log scale and as rate ratios)."""
        level = _check_level(level)
        se = np.sqrt(np.clip(np.diag(self.cov_params), 0, None))
        return _tidy_coefficients(self.terms, self.params, se, level)

    def _X(self, months: pd.PeriodIndex) -> np.ndarray:
        X = seasonal_design(months, self.baseline_start, self.model.seasonality,
                            self.model.harmonics)
        return X.to_numpy()

    def predict(self, months: Any, days: Any) -> np.ndarray:
        """Expected counts (point estimate) for the given months and days in month.

        For SARIMAX this is the regression (unconditional) mean; the counterfactual of
        :func:`fit_counterfactual` is the forecast conditional on the last baseline months.
        """
        idx = _month_index(months, "months")
        d = np.asarray(days, dtype=float)
        eta = self._X(idx) @ self.params
        if self.model.method == "glm":
            return np.exp(eta + np.log(d))
        var = self._noise_var(idx)
        return np.maximum(np.exp(eta + var / 2) * d - 0.5, 0.0)

    def _noise_var(self, idx: pd.PeriodIndex) -> np.ndarray:
        return np.full(len(idx), float(self._extra.get("sigma2", 0.0)))

    def simulate(
        self,
        months: Any,
        days: Any,
        observed: Any,
        n_sims: int,
        rng: np.random.Generator,
    ) -> _Draws:
        """Draw expected counts, counterfactual counts and O/E multipliers (S × months)."""
        idx = _month_index(months, "months")
        d = np.asarray(days, dtype=float)
        obs = np.asarray(observed, dtype=float)
        if self.model.method == "sarimax":
            return _simulate_sarimax(self, idx, d, obs, n_sims, rng)
        X = self._X(idx)
        beta = rng.multivariate_normal(self.params, self.cov_params, size=n_sims, method="eigh")
        mu = np.exp(beta @ X.T + np.log(d))
        if self.alpha > _ALPHA_FLOOR:
            shape = 1.0 / self.alpha
            counts = rng.poisson(rng.gamma(shape, self.alpha * mu))
            extra = rng.gamma(shape, self.alpha, size=mu.shape)
        else:
            counts = rng.poisson(mu)
            extra = 1.0
        # the observed month's own noise: exact (Garwood) gamma limits for its Poisson mean,
        # and the NB gamma frailty when the series is overdispersed.
        low, high = _exact_poisson_draws(obs, mu.shape, rng)
        return _Draws(self.predict(idx, d), mu, counts.astype(np.float64), low / (mu * extra),
                      high / (mu * extra))


def _exact_poisson_draws(obs: np.ndarray, shape: tuple[int, ...],
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draws of a Poisson mean given ``obs`` events for its lower and upper limits.

    ``Gamma(obs)`` (0 when nothing was observed) and ``Gamma(obs) + Exp(1) = Gamma(obs + 1)``:
    their 2.5% and 97.5% quantiles are Garwood's exact 95% limits, which cover at least 95% for
    any mean (the Jeffreys ``Gamma(obs + 0.5)`` used before missed April 2020 ratios resting on
    0-2 diagnoses in ``benchmarks/bench_truth_recovery.py``: its upper limit for 0 is 2.5, not 3.7).
    """
    low = rng.gamma(np.broadcast_to(obs, shape), 1.0) if np.any(obs > 0) else np.zeros(shape)
    return low, low + rng.exponential(1.0, size=shape)


def _fit_sarimax(
    model: CounterfactualModel,
    first: pd.Period,
    last: pd.Period,
    months: pd.PeriodIndex,
    days: np.ndarray,
    y: np.ndarray,
    X: pd.DataFrame,
) -> FittedCounterfactual:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    z = np.log((y + 0.5) / days)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = SARIMAX(z, exog=X.to_numpy(), order=tuple(model.order), trend="n")
        res = mod.fit(disp=False, method="bfgs", maxiter=200)
        if not res.mle_retvals.get("converged", True):
            res = mod.fit(disp=False)
    sigma2 = float(res.params[list(res.model.param_names).index("sigma2")])
    fit = FittedCounterfactual(model, first, last, res, sigma2, None, list(X.columns))
    fit._extra.update({"sigma2": sigma2, "n_base": len(y), "last": last})
    return fit


def _simulate_sarimax(
    fit: FittedCounterfactual,
    idx: pd.PeriodIndex,
    d: np.ndarray,
    obs: np.ndarray,
    n_sims: int,
    rng: np.random.Generator,
) -> _Draws:
    from statsmodels.tsa.arima_process import arma2ma

    res = fit.result
    last = fit.baseline_end
    X = fit._X(idx)
    beta = rng.multivariate_normal(fit.params, fit.cov_params, size=n_sims, method="eigh")
    shift = (beta - fit.params) @ X.T  # parameter uncertainty of the regression part
    noise = np.empty((n_sims, len(idx)))
    centre = np.empty(len(idx))
    inside = (idx >= fit.baseline_start) & (idx <= last)
    before = idx < fit.baseline_start
    if before.any():
        raise RegistryLabError("sarimax counterfactual: months before the baseline are not used")
    if inside.any():
        pos = _ordinal(idx[inside]) - _ordinal(pd.PeriodIndex([fit.baseline_start]))[0]
        pred = res.get_prediction()
        m = np.asarray(pred.predicted_mean)[pos]
        v = np.asarray(pred.var_pred_mean)[pos]
        centre[inside] = m
        noise[:, inside] = rng.normal(0.0, 1.0, (n_sims, int(inside.sum()))) * np.sqrt(v)
    after = idx > last
    if after.any():
        steps = _ordinal(idx[after]) - _ordinal(pd.PeriodIndex([last]))[0]
        h = int(steps.max())
        fut = pd.period_range(last + 1, periods=h, freq="M")
        Xf = fit._X(fut)
        mean_f = np.asarray(res.get_forecast(h, exog=Xf).predicted_mean)
        # future ARMA errors given the observed past: innovations propagated through the
        # MA(inf) weights psi (the filtered end state is taken as known).
        psi = arma2ma(np.asarray(res.polynomial_ar), np.asarray(res.polynomial_ma), lags=h)
        j = np.arange(h)
        lag = j[:, None] - j[None, :]
        weights = np.where(lag >= 0, psi[np.clip(lag, 0, None)], 0.0)  # h x h, lower triangle
        eps = rng.normal(0.0, np.sqrt(fit._extra["sigma2"]), (n_sims, h))
        paths = eps @ weights.T
        centre[after] = mean_f[steps - 1]
        noise[:, after] = paths[:, steps - 1]
    v = noise.var(axis=0)  # forecast-error variance of each month's log rate
    mean_draws = np.maximum(np.exp(centre + shift + v / 2) * d - 0.5, 0.0)
    counts = np.maximum(np.exp(centre + shift + noise) * d - 0.5, 0.0)
    expected = np.maximum(np.exp(centre + v / 2) * d - 0.5, 0.0)
    # O/E multiplier: the observed month's Poisson noise (exact gamma limits) plus the part of the
    # model's error variance that is not Poisson (log-scale Poisson variance ~ 1 / expected).
    with np.errstate(divide="ignore", invalid="ignore"):
        excess = np.clip(v - 1.0 / np.maximum(expected, 0.5), 0, None)
        scale = np.sqrt(np.where(v > 0, excess / v, 0.0))
    rate = np.exp(centre + shift + noise * scale) * d
    low, high = _exact_poisson_draws(obs, counts.shape, rng)
    return _Draws(expected, mean_draws, counts, low / rate, high / rate)


def group_seed(seed: int, key: tuple) -> np.random.Generator:
    """The random generator of one group's simulation: the same for a group whatever else is
    fitted alongside it (so a study can re-draw exactly the draws behind a group's intervals).

    Example:
        >>> float(group_seed(1, ("C50",)).random()) == float(group_seed(1, ("C50",)).random())
        True
    """
    tag = zlib.crc32(repr(tuple(_py(k) for k in key)).encode("utf-8"))
    return np.random.default_rng(np.random.SeedSequence([int(seed), tag]))


@dataclass
class CounterfactualResults:
    """Observed against counterfactual for one or many monthly series.

    Attributes:
        monthly: one row per group × month from the first baseline month on, with
            ``period`` (``"baseline"`` or ``"after"``), ``observed``, ``expected`` (point),
            ``expected_lower/upper`` (CI of the expected count: parameter uncertainty),
            ``pi_lower/upper`` (prediction interval of the counterfactual count: parameters
            and Poisson/NB sampling), ``oe_ratio`` and ``oe_lower/upper`` (CI of the
            observed/expected multiplier, including the observed month's own sampling noise).
        fits: the fitted model of each group, keyed by the tuple of group values.

    Example:
        >>> months = pd.period_range("2017-01", "2020-12", freq="M")
        >>> s = pd.DataFrame({"month": months.to_timestamp(), "days_in_month": months.days_in_month,
        ...                   "count": np.where(months >= pd.Period("2020-04", "M"), 2, 4)
        ...                            * months.days_in_month})
        >>> cf = fit_counterfactual(s, ("2017-01", "2019-12"), family="poisson", seasonality="none",
        ...                         n_sims=200, seed=1)
        >>> round(float(cf.ratio("2020-04")["oe_ratio"].iloc[0]), 2)
        0.5
    """

    monthly: pd.DataFrame
    by: list[str]
    baseline: tuple[pd.Period, pd.Period]
    level: float
    n_sims: int
    fits: dict[tuple, FittedCounterfactual]
    _draws: dict[tuple, tuple[pd.PeriodIndex, np.ndarray, np.ndarray, np.ndarray]] = field(
        default_factory=dict, repr=False
    )

    def ratio(self, month: Any) -> pd.DataFrame:
        """Observed/expected ratio of one month per group, e.g. ``ratio("2020-04")``."""
        m = to_month(month, "month").to_timestamp()
        out = self.monthly.loc[self.monthly[MONTH] == m]
        if out.empty:
            raise RegistryLabError(f"month={month!r}: not in the fitted series")
        cols = [*self.by, MONTH, "observed", "expected", "oe_ratio", "oe_lower", "oe_upper"]
        return out[cols].reset_index(drop=True)

    def cumulative_missing(self, start: Any, end: Any) -> pd.DataFrame:
        """Cumulative missing events (expected − observed) over ``[start, end]`` per group.

        The CI comes from the simulated counterfactual counts: within each draw the missing
        count is ``Σ simulated counterfactual − Σ observed`` over the window, and the limits
        are quantiles of those sums (not the sum of monthly limits). ``missing_pct`` is the
        shortfall as a percentage of the expected count.

        Returns:
            DataFrame ``[*by, start, end, months, observed, expected, missing, missing_lower,
            missing_upper, missing_pct, pct_lower, pct_upper]``.
        """
        first, last = _window((start, end), "window")
        q = [(1 - self.level) / 2, (1 + self.level) / 2]
        rows = []
        for key, (months, obs, expected, counts) in self._draws.items():
            w = (months >= first) & (months <= last)
            if not w.any():
                raise RegistryLabError(f"window {first}–{last}: no fitted months fall in it")
            o, e = float(obs[w].sum()), float(expected[w].sum())
            sim_cf = counts[:, w].sum(axis=1)
            missing = sim_cf - o
            with np.errstate(divide="ignore", invalid="ignore"):
                pct = 100.0 * missing / sim_cf
            lo, hi = np.quantile(missing, q)
            finite = pct[np.isfinite(pct)]
            plo, phi = np.quantile(finite, q) if finite.size else (np.nan, np.nan)
            rows.append(
                {
                    **dict(zip(self.by, key, strict=True)),
                    "start": first.to_timestamp(),
                    "end": last.to_timestamp(),
                    "months": int(w.sum()),
                    "observed": o,
                    "expected": e,
                    "missing": e - o,
                    "missing_lower": float(lo),
                    "missing_upper": float(hi),
                    "missing_pct": 100.0 * (e - o) / e if e > 0 else np.nan,
                    "pct_lower": float(plo),
                    "pct_upper": float(phi),
                }
            )
        return pd.DataFrame(rows)

    def coefficients(self) -> pd.DataFrame:
        """Tidy coefficient table of every group's baseline model."""
        parts = []
        for key, fit in self.fits.items():
            t = fit.coefficients(self.level)
            for c, v in zip(self.by, key, strict=True):
                t[c] = v
            t["alpha"] = fit.alpha
            parts.append(t)
        out = pd.concat(parts, ignore_index=True)
        return out[[*self.by, *[c for c in out.columns if c not in self.by]]]

    def plot(self, group: Any = None, ax: Any = None) -> Any:
        """Observed (points) against expected (line) with the prediction band, one group."""
        import matplotlib.pyplot as plt

        df = self.monthly
        if self.by:
            key = group if isinstance(group, tuple) else (group,)
            if group is None:
                key = next(iter(self.fits))
            mask = np.ones(len(df), bool)
            for c, v in zip(self.by, key, strict=True):
                mask &= (df[c] == v).to_numpy()
            df = df.loc[mask]
            title = ", ".join(str(v) for v in key)
        else:
            title = "all"
        if ax is None:
            _, ax = plt.subplots(figsize=(8, 3.5))
        ax.fill_between(df[MONTH], df["pi_lower"], df["pi_upper"], color="tab:blue",
                        alpha=0.2, label=f"{int(self.level * 100)}% prediction interval")
        ax.plot(df[MONTH], df["expected"], color="tab:blue", label="expected")
        ax.plot(df[MONTH], df["observed"], "o", ms=3, color="black", label="observed")
        ax.axvline((self.baseline[1] + 1).to_timestamp(), color="grey", ls=":")
        ax.set_title(title)
        ax.set_ylabel("count per month")
        ax.legend(loc="lower left", fontsize="small")
        return ax


def fit_counterfactual(
    counts: pd.DataFrame,
    baseline: Sequence[Any],
    *,
    by: str | Sequence[str] | None = None,
    model: CounterfactualModel | None = None,
    n_sims: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    **model_options: Any,
) -> CounterfactualResults:
    """Fit a counterfactual on the baseline months of each group and project it forward.

    Args:
        counts: output of :func:`monthly_counts` (``[*by, month, days_in_month, count]``).
        baseline: ``(first month, last month)`` of the pre-shock window, e.g.
            ``("2015-01", "2020-02")``.
        by: grouping columns (default: every column other than month, days and count).
        model: a :class:`CounterfactualModel`; or give its options as keywords
            (``family=, seasonality=, harmonics=, cov_type=, maxlags=, method=, order=``).
        n_sims: simulation draws (parameters, then counts).
        level: interval level.
        seed: seed of the draws; each group's generator is derived from it and the group's
            values, so a group's results do not depend on which other groups are fitted.

    Returns:
        :class:`CounterfactualResults` (``.monthly``, ``.ratio(month)``,
        ``.cumulative_missing(start, end)``, ``.coefficients()``, ``.plot(group)``).

    Example:
        >>> s = pd.DataFrame({"month": pd.period_range("2018-01", "2020-12", freq="M")
        ...                   .to_timestamp()})
        >>> s["days_in_month"] = s["month"].dt.days_in_month
        >>> s["count"] = np.where(s["month"] >= "2020-04", 5, 10) * s["days_in_month"]
        >>> cf = fit_counterfactual(s, ("2018-01", "2019-12"), family="poisson",
        ...                         seasonality="none", n_sims=200)
        >>> round(float(cf.ratio("2020-04")["oe_ratio"].iloc[0]), 6)
        0.5
    """
    level = _check_level(level)
    if int(n_sims) < 100:
        raise RegistryLabError(f"n_sims={n_sims!r}: use at least 100 simulation draws")
    if model is None:
        model = CounterfactualModel(**model_options)
    elif model_options:
        raise RegistryLabError("give either model= or model options, not both")
    first, last = _window(baseline, "baseline")
    by_cols = _infer_by(counts, by)
    q = [(1 - level) / 2, (1 + level) / 2]
    parts, fits, draws = [], {}, {}
    for key, sub in _groups(counts, by_cols):
        what = "counts" + (f" for {dict(zip(by_cols, key, strict=True))}" if by_cols else "")
        months, days, y = _series_arrays(sub, what)
        try:
            fit = model.fit(
                pd.DataFrame({MONTH: months.to_timestamp(), DAYS: days, COUNT: y}), baseline
            )
        except RegistryLabError as exc:
            raise RegistryLabError(f"{what}: {exc}") from exc
        use = months >= first
        m, d, o = months[use], days[use], y[use]
        sim = fit.simulate(m, d, o, int(n_sims), group_seed(seed, key))
        e_lo, e_hi = np.quantile(sim.mean_draws, q, axis=0)
        p_lo, p_hi = np.quantile(sim.count_draws, q, axis=0)
        r_lo = np.quantile(sim.ratio_draws, q[0], axis=0)
        r_hi = np.quantile(sim.ratio_high_draws, q[1], axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            oe = o / sim.expected
        part = pd.DataFrame(
            {
                MONTH: m.to_timestamp(),
                DAYS: d.astype(np.int64),
                "period": np.where(m <= last, "baseline", "after"),
                "observed": o.astype(np.int64) if np.all(o == np.round(o)) else o,
                "expected": sim.expected,
                "expected_lower": e_lo,
                "expected_upper": e_hi,
                "pi_lower": p_lo,
                "pi_upper": p_hi,
                "oe_ratio": oe,
                "oe_lower": r_lo,
                "oe_upper": r_hi,
            }
        )
        for c, v in zip(by_cols, key, strict=True):
            part.insert(by_cols.index(c), c, v)
        parts.append(part)
        fits[key] = fit
        draws[key] = (m, o, sim.expected, sim.count_draws.astype(np.float32))
    monthly = pd.concat(parts, ignore_index=True)
    return CounterfactualResults(monthly, by_cols, (first, last), level, int(n_sims), fits, draws)
