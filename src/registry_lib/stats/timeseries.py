"""Interrupted time series of monthly registry counts.

The building blocks of a study of a service shock (such as the COVID-19 pandemic):

1. :func:`monthly_counts` — from a table of event dates (diagnoses, SACT starts, operations)
   to a complete month × group grid with zeros filled and the number of days in each month;
2. :func:`seasonal_design` and the GLM fit they share with the counterfactual of
   :mod:`registry_lib.stats.counterfactual` (Poisson or negative-binomial GLM with linear
   trend, seasonality and a log(days in month) offset, HAC (Newey–West) standard errors);
3. :func:`segmented_regression` — level change and slope change at the interruption on the
   whole series, as rate ratios.

References:
    Bernal JL, Cummins S, Gasparrini A (2017). Interrupted time series regression for the
    evaluation of public health interventions: a tutorial. Int J Epidemiol 46:348-355.
    Newey WK, West KD (1994). Automatic lag selection in covariance matrix estimation.
    Rev Econ Stud 61:631-653 (the default lag ``floor(4 (n/100)^(2/9))``).
    Cameron AC, Trivedi PK (2013). Regression analysis of count data, 2nd ed., §3.2
    (moment estimator of the negative-binomial dispersion).
    Angrist JD, Pischke J-S (2009). Mostly harmless econometrics, §8.1 (use the larger of
    the robust and the conventional standard error in small samples).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2020-01-05", "2020-03-02"])})
    >>> monthly_counts(df)["count"].tolist()
    [1, 0, 1]
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError

MONTH = "month"
COUNT = "count"
DAYS = "days_in_month"

_FAMILIES = ("poisson", "negbin")
_SEASONALITY = ("month", "fourier", "none")
_METHODS = ("glm", "sarimax")
_COV_TYPES = ("HAC", "HC0", "HC1", "nonrobust")
_MONTH_TEXT = re.compile(r"^\d{4}-\d{2}(-\d{2}([ T].*)?)?$")
#: below this the negative-binomial dispersion is treated as zero (Poisson sampling).
_ALPHA_FLOOR = 1e-8


# --------------------------------------------------------------------------------------------
# months
# --------------------------------------------------------------------------------------------

def _py(value: Any) -> Any:
    """A numpy scalar as the plain Python value, so messages read ``11`` not ``np.int64(11)``."""
    return value.item() if isinstance(value, np.generic) else value

def to_month(value: Any, name: str = "month") -> pd.Period:
    """A calendar month from ``"2020-04"``, a date, a Timestamp or a Period.

    Example:
        >>> str(to_month("2020-04-17"))
        '2020-04'
    """
    if isinstance(value, str) and not _MONTH_TEXT.match(value.strip()):
        raise RegistryLabError(f"{name}={value!r}: not a month (use 'YYYY-MM')")
    try:
        if isinstance(value, pd.Period):
            return value.asfreq("M")
        stamp = pd.Timestamp(value)
        if pd.isna(stamp):
            raise ValueError("missing")
        return pd.Period(stamp, freq="M")
    except (ValueError, TypeError) as exc:
        raise RegistryLabError(f"{name}={value!r}: not a month (use 'YYYY-MM')") from exc


def _window(window: Sequence[Any], name: str) -> tuple[pd.Period, pd.Period]:
    if isinstance(window, str) or len(window) != 2:
        raise RegistryLabError(f"{name}={window!r}: give a (first month, last month) pair")
    first, last = to_month(window[0], f"{name}[0]"), to_month(window[1], f"{name}[1]")
    if last < first:
        raise RegistryLabError(f"{name}={window!r}: the last month is before the first")
    return first, last


def _month_index(values: Any, name: str) -> pd.PeriodIndex:
    try:
        if isinstance(values, pd.PeriodIndex):
            return values.asfreq("M")
        s = pd.Series(values)
        if isinstance(s.dtype, pd.PeriodDtype):
            return pd.PeriodIndex(s).asfreq("M")
        return pd.PeriodIndex(pd.to_datetime(s), freq="M")
    except (ValueError, TypeError) as exc:
        raise RegistryLabError(f"column {name!r}: values are not months ({exc})") from exc


def _ordinal(months: pd.PeriodIndex) -> np.ndarray:
    return (months.year.to_numpy() * 12 + months.month.to_numpy() - 1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# monthly grid
# --------------------------------------------------------------------------------------------
def monthly_counts(
    df: pd.DataFrame,
    date: str = "diagnosis_date",
    by: str | Sequence[str] | None = None,
    *,
    start: Any = None,
    end: Any = None,
    levels: Mapping[str, Sequence[Any]] | None = None,
) -> pd.DataFrame:
    """Count events by calendar month (and group) on a complete grid, zeros filled.

    Every combination of month × group levels appears once, so a group with no events in a
    month gets a 0 rather than a missing row. Rows dated outside ``[start, end]`` are left out
    (that is the window you asked for); a missing date raises.

    Args:
        df: one row per event (tumour, treatment, ...).
        date: column of event dates.
        by: grouping column(s), e.g. ``"site_icd10"`` or ``["site_icd10", "route_to_diagnosis"]``.
        start, end: first and last month of the grid (default: the first and last month seen).
        levels: for some ``by`` columns, the full list of levels to lay out (so a level with no
            events at all still gets a row of zeros); a value outside the list raises.

    Returns:
        DataFrame ``[*by, month, days_in_month, count]`` sorted by group then month; ``month``
        is the first day of the month (``datetime64``).

    Example:
        >>> df = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2020-01-05", "2020-03-02"]),
        ...                    "site": ["C50", "C18"]})
        >>> monthly_counts(df, by="site", levels={"site": ["C18", "C50"]}).head(3)
          site      month  days_in_month  count
        0  C18 2020-01-01             31      0
        1  C18 2020-02-01             29      0
        2  C18 2020-03-01             31      1
    """
    by_cols = [by] if isinstance(by, str) else list(by or [])
    missing = [c for c in [date, *by_cols] if c not in df.columns]
    if missing:
        raise RegistryLabError(f"monthly_counts input: missing column(s) {missing}")
    dates = pd.to_datetime(df[date], errors="coerce")
    bad = dates.isna()
    if bad.any():
        i = df.index[bad.to_numpy()][0]
        raise RegistryLabError(
            f"record at index {_py(i)!r}: {date}={_py(df.at[i, date])!r} is missing or not a date"
        )
    months = pd.PeriodIndex(dates, freq="M")
    seen = len(months) > 0
    first = to_month(start, "start") if start is not None else (months.min() if seen else None)
    last = to_month(end, "end") if end is not None else (months.max() if seen else None)
    if first is None or last is None:
        raise RegistryLabError("monthly_counts: no events and no start/end months given")
    if last < first:
        raise RegistryLabError(f"start={first} is after end={last}")
    keep = ((months >= first) & (months <= last))
    sub = df.loc[keep, by_cols].copy()
    sub[MONTH] = months[keep]

    levels = dict(levels or {})
    level_lists: list[list[Any]] = []
    for c in by_cols:
        values = sub[c]
        if values.isna().any():
            i = values.index[values.isna().to_numpy()][0]
            raise RegistryLabError(
                f"record at index {_py(i)!r}: grouping column {c!r} is missing; fill it "
                "(e.g. with 'unknown') before counting"
            )
        if c in levels:
            allowed = list(levels[c])
            outside = ~values.isin(allowed)
            if outside.any():
                i = values.index[outside.to_numpy()][0]
                raise RegistryLabError(
                    f"record at index {_py(i)!r}: {c}={_py(values.at[i])!r} is not in levels[{c!r}]"
                )
            level_lists.append(allowed)
        else:
            level_lists.append(sorted(pd.unique(values)))

    grid_months = pd.period_range(first, last, freq="M")
    names = [*by_cols, MONTH]
    if by_cols:
        grid = pd.MultiIndex.from_product([*level_lists, grid_months], names=names)
        counted = sub.groupby(names, observed=True, sort=False).size()
    else:
        grid = pd.Index(grid_months, name=MONTH)
        counted = sub.groupby(MONTH, sort=False).size()
    out = counted.reindex(grid, fill_value=0).rename(COUNT).reset_index()
    out[DAYS] = out[MONTH].dt.days_in_month.astype(np.int64)
    out[MONTH] = out[MONTH].dt.to_timestamp()
    out[COUNT] = out[COUNT].astype(np.int64)
    return out[[*by_cols, MONTH, DAYS, COUNT]]


# --------------------------------------------------------------------------------------------
# design
# --------------------------------------------------------------------------------------------
def seasonal_design(
    months: Any,
    origin: Any,
    seasonality: str = "month",
    harmonics: int = 2,
) -> pd.DataFrame:
    """Intercept, linear trend (years since ``origin``) and seasonal terms for each month.

    Args:
        months: months (strings, dates or Periods).
        origin: the month where the trend is 0 (usually the first baseline month).
        seasonality: ``"month"`` (11 calendar-month indicators, January the reference),
            ``"fourier"`` (``harmonics`` sine/cosine pairs of period 12 months) or ``"none"``.
        harmonics: number of Fourier pairs, 1–6 (the sixth has a cosine only).

    Example:
        >>> seasonal_design(["2020-01", "2020-07"], "2019-01", "fourier", 1).round(3)
           const  trend  sin_1  cos_1
        0    1.0    1.0    0.0    1.0
        1    1.0    1.5    0.0   -1.0
    """
    idx = _month_index(months, "months")
    origin_p = to_month(origin, "origin")
    t = (_ordinal(idx) - _ordinal(pd.PeriodIndex([origin_p]))[0]) / 12.0
    cols: dict[str, np.ndarray] = {"const": np.ones(len(idx)), "trend": t}
    moy = idx.month.to_numpy()
    if seasonality == "month":
        for m in range(2, 13):
            cols[f"month_{m:02d}"] = (moy == m).astype(float)
    elif seasonality == "fourier":
        if not 1 <= int(harmonics) <= 6:
            raise RegistryLabError(f"harmonics={harmonics!r}: must be between 1 and 6")
        for k in range(1, int(harmonics) + 1):
            angle = 2 * np.pi * k * (moy - 1) / 12.0
            if k < 6:
                cols[f"sin_{k}"] = np.round(np.sin(angle), 12)
            cols[f"cos_{k}"] = np.round(np.cos(angle), 12)
    elif seasonality != "none":
        raise RegistryLabError(f"seasonality={seasonality!r}: must be one of {_SEASONALITY}")
    return pd.DataFrame(cols)


def newey_west_lags(n: int) -> int:
    """Newey–West (1994) default HAC lag: ``floor(4 (n/100)^(2/9))``.

    Example:
        >>> newey_west_lags(62)
        3
    """
    return int(np.floor(4 * (n / 100.0) ** (2.0 / 9.0)))


def _nb_alpha(y: np.ndarray, mu: np.ndarray, n_params: int) -> float:
    """Moment estimator of the NB2 dispersion from a Poisson fit: Var = mu + alpha mu^2."""
    n = len(y)
    if n <= n_params:
        return 0.0
    pearson = float(np.sum((y - mu) ** 2 / mu))
    alpha = (pearson * n / (n - n_params) - n) / float(np.sum(mu))
    return max(alpha, 0.0)


def _glm_fit(
    y: np.ndarray,
    X: pd.DataFrame,
    offset: np.ndarray,
    family: str,
    cov_type: str,
    maxlags: int | None,
    conservative: bool = True,
) -> tuple[Any, float, int | None, np.ndarray]:
    import statsmodels.api as sm

    if family not in _FAMILIES:
        raise RegistryLabError(f"family={family!r}: must be one of {_FAMILIES}")
    if cov_type not in _COV_TYPES:
        raise RegistryLabError(f"cov_type={cov_type!r}: must be one of {_COV_TYPES}")
    lags = None
    kwds: dict[str, Any] = {}
    if cov_type == "HAC":
        lags = newey_west_lags(len(y)) if maxlags is None else int(maxlags)
        kwds = {"cov_kwds": {"maxlags": lags, "use_correction": True}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pois = sm.GLM(y, X, family=sm.families.Poisson(), offset=offset).fit()
        alpha = 0.0
        if family == "negbin":
            alpha = _nb_alpha(y, np.asarray(pois.fittedvalues), X.shape[1])
        if alpha > _ALPHA_FLOOR:
            fam = sm.families.NegativeBinomial(alpha=alpha)
            start = np.asarray(pois.params)
        else:
            alpha, fam, start = 0.0, sm.families.Poisson(), np.asarray(pois.params)
        glm = sm.GLM(y, X, family=fam, offset=offset)
        res = glm.fit(start_params=start, cov_type=cov_type, **kwds)
        cov = np.asarray(res.cov_params(), dtype=float)
        if conservative and cov_type != "nonrobust":
            model_cov = np.asarray(
                glm.fit(start_params=np.asarray(res.params)).cov_params(), dtype=float
            )
            cov = _floor_variances(cov, model_cov)
    return res, alpha, lags, cov


def _floor_variances(robust: np.ndarray, model: np.ndarray) -> np.ndarray:
    """Robust covariance with each variance raised to at least the model-based one.

    Keeps the robust correlations (so the matrix stays positive semi-definite) and takes, per
    coefficient, the larger of the robust and the model-based standard error (Angrist &
    Pischke 2009, §8.1): sandwich estimators are biased downwards in short series.
    """
    rv, mv = np.clip(np.diag(robust), 0, None), np.clip(np.diag(model), 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        sd = np.sqrt(rv)
        corr = np.where(np.outer(sd, sd) > 0, robust / np.outer(sd, sd), 0.0)
    np.fill_diagonal(corr, 1.0)
    out_sd = np.sqrt(np.maximum(rv, mv))
    return corr * np.outer(out_sd, out_sd)


def _tidy_coefficients(
    names: Sequence[str], est: np.ndarray, se: np.ndarray, level: float
) -> pd.DataFrame:
    z = sps.norm.ppf(0.5 + level / 2)
    est, se = np.asarray(est, float), np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * sps.norm.sf(np.abs(est / se))
    return pd.DataFrame(
        {
            "term": list(names),
            "estimate": est,
            "std_error": se,
            "rate_ratio": np.exp(est),
            "lower": np.exp(est - z * se),
            "upper": np.exp(est + z * se),
            "p_value": p,
        }
    )


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise RegistryLabError(f"level={level!r}: must lie strictly between 0 and 1")
    return float(level)


# --------------------------------------------------------------------------------------------
# one series
# --------------------------------------------------------------------------------------------
def _series_arrays(
    series: pd.DataFrame, what: str
) -> tuple[pd.PeriodIndex, np.ndarray, np.ndarray]:
    missing = [c for c in (MONTH, DAYS, COUNT) if c not in series.columns]
    if missing:
        raise RegistryLabError(f"{what}: missing column(s) {missing} (use monthly_counts)")
    months = _month_index(series[MONTH], MONTH)
    if months.has_duplicates:
        dup = months[months.duplicated()][0]
        raise RegistryLabError(f"{what}: month {dup} appears more than once")
    order = np.argsort(_ordinal(months), kind="stable")
    months = months[order]
    days = series[DAYS].to_numpy(dtype=float)[order]
    y = series[COUNT].to_numpy(dtype=float)[order]
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        i = int(np.flatnonzero(~np.isfinite(y) | (y < 0))[0])
        raise RegistryLabError(f"{what}: count in {months[i]} is {y[i]!r}; counts must be >= 0")
    if np.any(days <= 0):
        i = int(np.flatnonzero(days <= 0)[0])
        raise RegistryLabError(f"{what}: days_in_month in {months[i]} is {days[i]!r}")
    gaps = np.flatnonzero(np.diff(_ordinal(months)) != 1)
    if len(gaps):
        raise RegistryLabError(
            f"{what}: months jump from {months[gaps[0]]} to {months[gaps[0] + 1]}; "
            "the series must be complete (use monthly_counts)"
        )
    return months, days, y


# --------------------------------------------------------------------------------------------
# many series
# --------------------------------------------------------------------------------------------
def _infer_by(counts: pd.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return [c for c in counts.columns if c not in (MONTH, DAYS, COUNT)]
    return [by] if isinstance(by, str) else list(by)


def _groups(counts: pd.DataFrame, by: list[str]):
    missing = [c for c in by if c not in counts.columns]
    if missing:
        raise RegistryLabError(f"counts: missing grouping column(s) {missing}")
    if not by:
        yield (), counts
        return
    for key, sub in counts.groupby(by, sort=True, observed=True):
        yield (key if isinstance(key, tuple) else (key,)), sub


# --------------------------------------------------------------------------------------------
# segmented regression
# --------------------------------------------------------------------------------------------
SEGMENT_TERMS = ("baseline_trend", "level_change", "slope_change")


def segmented_regression(
    counts: pd.DataFrame,
    interruption: Any,
    *,
    by: str | Sequence[str] | None = None,
    start: Any = None,
    end: Any = None,
    family: str = "negbin",
    seasonality: str = "month",
    harmonics: int = 2,
    cov_type: str = "HAC",
    maxlags: int | None = None,
    conservative_se: bool = True,
    level: float = 0.95,
) -> pd.DataFrame:
    """Segmented (interrupted time series) regression on the whole monthly series.

    ``log E[count] = b0 + b1·t + b2·step + b3·(t − t0)+ + seasonality + log(days)`` with
    ``t`` in years, ``step`` = 1 from the interruption month on and ``(t − t0)+`` the years
    since it. Reported as rate ratios: ``baseline_trend`` (per year before), ``level_change``
    (immediate multiplicative change at the interruption) and ``slope_change`` (change of the
    yearly trend), with HAC (Newey–West) standard errors by default.

    Args:
        counts: output of :func:`monthly_counts`.
        interruption: first month of the new regime, e.g. ``"2020-03"``.
        by: grouping columns (default: inferred as in :func:`fit_counterfactual`).
        start, end: months to use (default: the whole series).
        family, seasonality, harmonics, cov_type, maxlags, conservative_se: as in
            :class:`CounterfactualModel`.
        level: CI level.

    Returns:
        DataFrame ``[*by, term, estimate, std_error, rate_ratio, lower, upper, p_value,
        n_months, alpha]`` with the three terms above per group.

    Example:
        >>> s = pd.DataFrame({"month": pd.period_range("2017-01", "2021-12", freq="M")
        ...                   .to_timestamp()})
        >>> s["days_in_month"] = s["month"].dt.days_in_month
        >>> s["count"] = (np.where(s["month"] >= "2020-03", 0.5, 1.0) * 20
        ...               * s["days_in_month"]).round()
        >>> t = segmented_regression(s, "2020-03", family="poisson", seasonality="none")
        >>> round(float(t.set_index("term").at["level_change", "rate_ratio"]), 3)
        0.5
    """
    level = _check_level(level)
    t0 = to_month(interruption, "interruption")
    by_cols = _infer_by(counts, by)
    first_req = to_month(start, "start") if start is not None else None
    last_req = to_month(end, "end") if end is not None else None
    parts = []
    for key, sub in _groups(counts, by_cols):
        what = "counts" + (f" for {dict(zip(by_cols, key, strict=True))}" if by_cols else "")
        months, days, y = _series_arrays(sub, what)
        use = np.ones(len(months), bool)
        if first_req is not None:
            use &= months >= first_req
        if last_req is not None:
            use &= months <= last_req
        months, days, y = months[use], days[use], y[use]
        before, after = int((months < t0).sum()), int((months >= t0).sum())
        if before < 12 or after < 2:
            raise RegistryLabError(
                f"{what}: {before} months before and {after} from interruption={t0}; "
                "need at least 12 before and 2 after"
            )
        X = seasonal_design(months, months[0], seasonality, harmonics)
        since = (_ordinal(months) - _ordinal(pd.PeriodIndex([t0]))[0]) / 12.0
        X.insert(2, "level_change", (since >= 0).astype(float))
        X.insert(3, "slope_change", np.where(since >= 0, since, 0.0))
        X = X.rename(columns={"trend": "baseline_trend"})
        res, alpha, _, cov = _glm_fit(
            y, X, np.log(days), family, cov_type, maxlags, conservative_se
        )
        se = np.sqrt(np.clip(np.diag(cov), 0, None))
        t = _tidy_coefficients(list(X.columns), np.asarray(res.params), se, level)
        t = t.loc[t["term"].isin(SEGMENT_TERMS)].reset_index(drop=True)
        t["n_months"] = len(months)
        t["alpha"] = alpha
        for i, (c, v) in enumerate(zip(by_cols, key, strict=True)):
            t.insert(i, c, v)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)
