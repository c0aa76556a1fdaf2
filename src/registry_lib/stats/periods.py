"""Comparing periods: period labels, shares with Wilson CIs, medians and follow-up times.

Generic helpers for a study that compares calendar periods (e.g. before and during a service
shock), each returning a tidy DataFrame:

- :func:`assign_period` — label dates with named periods (``baseline``, ``pandemic``, ...);
- :func:`wilson_ci`, :func:`share_by_period` — share of records with a flag by group, with
  Wilson CIs;
- :func:`median_iqr` — median and IQR of a value by group;
- :func:`survival_times` — follow-up time and death indicator on a common horizon.

Adjusted odds and hazard ratio tables are in :mod:`registry_lib.stats.regression`.

References:
    Wilson EB (1927). Probable inference, the law of succession, and statistical inference.
    J Am Stat Assoc 22:209-212.

Example:
    >>> df = pd.DataFrame({"period": ["baseline"] * 4 + ["pandemic"] * 2,
    ...                    "emergency": [True, False, False, False, True, True]})
    >>> share_by_period(df, "emergency")[["period", "n", "events", "share"]]
         period  n  events  share
    0  baseline  4       1   0.25
    1  pandemic  2       2   1.00
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError

PERIOD = "period"



def _py(value: Any) -> Any:
    """A numpy scalar as the plain Python value, so messages read ``11`` not ``np.int64(11)``."""
    return value.item() if isinstance(value, np.generic) else value

def _cols(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RegistryLabError(f"{what}: missing column(s) {missing}")


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise RegistryLabError(f"level={level!r}: must lie strictly between 0 and 1")
    return float(level)


def _as_dates(s: pd.Series, name: str, allow_missing: bool = False) -> pd.Series:
    out = pd.to_datetime(s, errors="coerce")
    bad = out.isna() & s.notna() if allow_missing else out.isna()
    if bad.any():
        i = s.index[bad.to_numpy()][0]
        raise RegistryLabError(f"record at index {_py(i)!r}: {name}={_py(s.at[i])!r} is not a date")
    return out


# --------------------------------------------------------------------------------------------
# periods and shares
# --------------------------------------------------------------------------------------------
def _period_bounds(window: Sequence[Any], name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    if isinstance(window, str) or len(window) != 2:
        raise RegistryLabError(f"periods[{name!r}]={window!r}: give a (start, end) pair")
    bounds = []
    for j, v in enumerate(window):
        text = str(v)
        try:
            if len(text) == 7 and text[4] == "-":  # a whole month, 'YYYY-MM'
                p = pd.Period(text, freq="M")
                bounds.append(p.start_time if j == 0 else p.end_time.normalize())
            else:
                bounds.append(pd.Timestamp(v).normalize())
        except (ValueError, TypeError) as exc:
            raise RegistryLabError(f"periods[{name!r}]={window!r}: {v!r} is not a date") from exc
    if bounds[1] < bounds[0]:
        raise RegistryLabError(f"periods[{name!r}]={window!r}: end is before start")
    return bounds[0], bounds[1]


def assign_period(dates: Any, periods: Mapping[str, Sequence[Any]]) -> pd.Series:
    """Label each date with the named period it falls in (missing if none).

    Args:
        dates: dates (Series, array or list).
        periods: ``{name: (start, end)}``, both ends inclusive; ``"YYYY-MM"`` means the whole
            month, e.g. ``{"baseline": ("2015-01", "2020-02"), "pandemic": ("2020-03",
            "2021-02")}``. Periods must not overlap.

    Returns:
        A categorical Series (categories in the order given), index kept from ``dates``.

    Example:
        >>> p = {"baseline": ("2019-01", "2020-02"), "pandemic": ("2020-03", "2020-12")}
        >>> assign_period(pd.Series(pd.to_datetime(["2020-02-29", "2020-03-01", "2021-01-01"])),
        ...               p).tolist()
        ['baseline', 'pandemic', nan]
    """
    s = dates if isinstance(dates, pd.Series) else pd.Series(dates)
    d = _as_dates(s, "date", allow_missing=True)
    if not periods:
        raise RegistryLabError("periods: give at least one named period")
    bounds = {name: _period_bounds(w, name) for name, w in periods.items()}
    ordered = sorted(bounds.items(), key=lambda kv: kv[1][0])
    for (n1, (_, e1)), (n2, (s2, _)) in zip(ordered, ordered[1:], strict=False):
        if s2 <= e1:
            raise RegistryLabError(f"periods {n1!r} and {n2!r} overlap")
    labels = np.full(len(d), None, dtype=object)
    values = d.to_numpy()
    for name, (lo, hi) in bounds.items():
        inside = (values >= lo.to_datetime64()) & (values <= hi.to_datetime64())
        labels[inside] = name
    return pd.Series(pd.Categorical(labels, categories=list(periods)), index=s.index, name=PERIOD)


def wilson_ci(events: Any, n: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion (vectorised; NaN where n = 0).

    Example:
        >>> lo, hi = wilson_ci(5, 10)
        >>> round(float(lo), 4), round(float(hi), 4)
        (0.2366, 0.7634)
    """
    level = _check_level(level)
    x, m = np.asarray(events, float), np.asarray(n, float)
    z = sps.norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / m
        centre = (p + z * z / (2 * m)) / (1 + z * z / m)
        half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / (1 + z * z / m)
    return centre - half, centre + half


def share_by_period(
    df: pd.DataFrame,
    flag: str,
    by: str | Sequence[str] | None = PERIOD,
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """Share of records with ``flag`` true, by group, with Wilson CIs.

    Records whose flag is missing are left out of the denominator and counted in
    ``n_missing``; records whose group is missing (e.g. outside every period) are dropped.

    Returns:
        DataFrame ``[*by, n, events, share, lower, upper, n_missing]``.

    Example:
        >>> df = pd.DataFrame({"period": ["a", "a", "a", "b"], "f": [True, None, False, True]})
        >>> share_by_period(df, "f")[["period", "n", "events", "n_missing"]]
          period  n  events  n_missing
        0      a  2       1          1
        1      b  1       1          0
    """
    by_cols = _cols(by)
    _require(df, [flag, *by_cols], "share_by_period input")
    f = df[flag]
    known = f.notna()
    flag_values = f.where(known, False)
    valid = flag_values.isin([True, False]).to_numpy()
    if not valid.all():
        bad = df.index[~valid][0]
        raise RegistryLabError(
            f"record at index {_py(bad)!r}: {flag}={_py(f.at[bad])!r} is not true/false"
        )
    work = pd.DataFrame(
        {
            "_n": known.astype(np.int64),
            "_events": (flag_values.astype(bool) & known).astype(np.int64),
            "_missing": (~known).astype(np.int64),
        },
        index=df.index,
    )
    if by_cols:
        for c in by_cols:
            work[c] = df[c]
        g = work.groupby(by_cols, observed=True, sort=True)[["_n", "_events", "_missing"]].sum()
        g = g.reset_index()
    else:
        g = work[["_n", "_events", "_missing"]].sum().to_frame().T
    g = g.rename(columns={"_n": "n", "_events": "events", "_missing": "n_missing"})
    with np.errstate(divide="ignore", invalid="ignore"):
        g["share"] = g["events"] / g["n"]
    g["lower"], g["upper"] = wilson_ci(g["events"], g["n"], level)
    return g[[*by_cols, "n", "events", "share", "lower", "upper", "n_missing"]]


def median_iqr(
    df: pd.DataFrame, value: str, by: str | Sequence[str] | None = PERIOD
) -> pd.DataFrame:
    """Median and interquartile range of ``value`` by group (linear-interpolation quantiles).

    Example:
        >>> d = pd.DataFrame({"period": ["a"] * 4 + ["b"], "days": [1, 2, 3, 10, 7]})
        >>> median_iqr(d, "days")
          period  n  median    q1    q3
        0      a  4     2.5  1.75  4.75
        1      b  1     7.0  7.00  7.00
    """
    by_cols = _cols(by)
    _require(df, [value, *by_cols], "median_iqr input")
    v = pd.to_numeric(df[value], errors="coerce")
    work = df[by_cols].assign(_v=v.to_numpy())
    work = work.loc[work["_v"].notna().to_numpy()]
    if by_cols:
        g = work.groupby(by_cols, observed=True, sort=True)["_v"]
        out = pd.DataFrame({
            "n": g.size(),
            "median": g.median(),
            "q1": g.quantile(0.25),
            "q3": g.quantile(0.75),
        }).reset_index()
    else:
        x = work["_v"]
        out = pd.DataFrame({"n": [len(x)], "median": [x.median()],
                            "q1": [x.quantile(0.25)], "q3": [x.quantile(0.75)]})
    out["n"] = out["n"].astype(np.int64)
    return out


# --------------------------------------------------------------------------------------------
# follow-up
# --------------------------------------------------------------------------------------------
def survival_times(
    df: pd.DataFrame,
    *,
    start: str = "diagnosis_date",
    death: str = "death_date",
    censor_date: Any,
    horizon_days: int | None = None,
) -> pd.DataFrame:
    """Follow-up time (days) and death indicator from ``start`` to death, censoring or horizon.

    Follow-up stops at the earliest of death, ``censor_date`` (end of data) and
    ``start + horizon_days``; deaths after that stop are censored. Negative follow-up (death
    recorded before ``start``) raises.

    Example:
        >>> d = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2020-01-01", "2020-01-01"]),
        ...                   "death_date": pd.to_datetime(["2020-03-01", None])})
        >>> survival_times(d, censor_date="2020-12-31", horizon_days=365)
           time_days   dead
        0       60.0   True
        1      365.0  False
    """
    _require(df, [start, death], "survival_times input")
    s = _as_dates(df[start], start)
    d = _as_dates(df[death], death, allow_missing=True)
    c = pd.Timestamp(censor_date)
    stop = pd.Series(c, index=df.index)
    if horizon_days is not None:
        stop = np.minimum(stop, s + pd.Timedelta(days=int(horizon_days)))
    dead = d.notna() & (d <= stop)
    end = d.where(dead, stop)
    t = (end - s).dt.days.astype(float)
    if (t < 0).any():
        i = df.index[(t < 0).to_numpy()][0]
        raise RegistryLabError(
            f"record at index {_py(i)!r}: {death} or censor_date is before {start}"
        )
    return pd.DataFrame({"time_days": t.to_numpy(), "dead": dead.to_numpy()}, index=df.index)


