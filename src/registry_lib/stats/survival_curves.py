"""Survival curves: Kaplan–Meier by group and cumulative incidence with competing risks.

- :func:`km_table` — Kaplan–Meier estimates (lifelines ``KaplanMeierFitter``) by group as one
  tidy table (``time, n_at_risk, n_events, n_censored, survival, lower, upper``), the form the
  disclosure-safe export (``registry_lib.release.protect_km``) takes.
- :func:`cumulative_incidence` — the Aalen–Johansen estimator of the cumulative incidence of
  one event type with the others as competing risks (e.g. a second cancer with death as the
  competing event), with the delta-method (Marubini–Valsecchi) variance and log(-log)
  limits. Ties between event types are handled exactly (no jitter), unlike lifelines'
  ``AalenJohansenFitter``, against which it is tested on untied data.

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"t": [1, 2, 2, 3, 4], "dead": [1, 1, 0, 1, 0]})
    >>> km_table(df, "t", "dead")[["time", "n_at_risk", "n_events", "survival"]]
       time  n_at_risk  n_events  survival
    0   0.0          5         0       1.0
    1   1.0          5         1       0.8
    2   2.0          4         1       0.6
    3   3.0          2         1       0.3
    4   4.0          1         0       0.3
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError

KM_COLUMNS = ["time", "n_at_risk", "n_events", "n_censored", "survival", "lower", "upper"]
CIF_COLUMNS = [
    "time", "n_at_risk", "n_events", "n_competing", "n_censored", "cif", "se", "lower", "upper",
]


def _z(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise RegistryLabError(f"level={level!r}: confidence level must lie between 0 and 1")
    return float(sps.norm.ppf(0.5 + float(level) / 2.0))


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RegistryLabError(f"{what}: column(s) {missing} not found in the data")


def _durations(df: pd.DataFrame, duration: str) -> np.ndarray:
    t = pd.to_numeric(df[duration], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RegistryLabError(
            f"{duration}: row {df.index[i]!r} has duration {df[duration].iloc[i]!r}; "
            "durations must be finite and >= 0"
        )
    return t


def _groups(df: pd.DataFrame, group: str | Sequence[str] | None):
    if group is None:
        return [], [((), df)]
    cols = [group] if isinstance(group, str) else list(group)
    _require(df, cols, "group")
    if df[cols].isna().any().any():
        col = next(c for c in cols if df[c].isna().any())
        raise RegistryLabError(f"group column {col!r} has missing values: fill or drop them first")
    out = []
    for key, sub in df.groupby(cols, sort=True, observed=True):
        out.append((key if isinstance(key, tuple) else (key,), sub))
    return cols, out


def km_table(
    df: pd.DataFrame,
    duration: str,
    event: str,
    group: str | Sequence[str] | None = None,
    *,
    times: Sequence[float] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Kaplan–Meier survival by group as one tidy table.

    Fits lifelines' ``KaplanMeierFitter`` in each group. Without ``times`` there is one row
    per distinct time (time 0 first) with the number at risk just before it, the events and
    censorings at it, and the survival with its pointwise log(-log) ("exponential
    Greenwood") limits. With ``times`` the step function is read at those times: the number
    at risk is that just before each time and the events and censorings are those in
    ``(previous time, time]``.

    Args:
        df: one row per patient.
        duration: column of follow-up time (any unit, >= 0).
        event: column, 1/True when the follow-up ended with the event.
        group: optional column(s) defining the curves (e.g. the treatment arm).
        times: optional times at which to read the curves.
        level: confidence level of the limits.

    Returns:
        DataFrame with the group column(s) then ``time, n_at_risk, n_events, n_censored,
        survival, lower, upper``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"t": [1, 2, 3, 4], "d": [1, 0, 1, 1], "arm": ["a", "a", "b", "b"]})
        >>> km_table(df, "t", "d", "arm", times=[2])[["arm", "time", "n_at_risk", "survival"]]
          arm  time  n_at_risk  survival
        0   a   2.0          1       0.5
        1   b   2.0          2       1.0
    """
    from lifelines import KaplanMeierFitter

    _require(df, [duration, event], "km_table")
    _z(level)  # validates the level
    cols, groups = _groups(df, group)
    frames = []
    for key, sub in groups:
        t = _durations(sub, duration)
        e = sub[event].astype(float).to_numpy()
        kmf = KaplanMeierFitter(alpha=1.0 - level).fit(t, e)
        table = kmf.event_table
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_survival_function_
        full = pd.DataFrame({
            "time": table.index.to_numpy(dtype=float),
            "n_at_risk": table["at_risk"].to_numpy(dtype=np.int64),
            "n_events": table["observed"].to_numpy(dtype=np.int64),
            "n_censored": table["censored"].to_numpy(dtype=np.int64),
            "survival": sf.reindex(table.index).to_numpy(dtype=float),
            "lower": ci.iloc[:, 0].reindex(table.index).to_numpy(dtype=float),
            "upper": ci.iloc[:, 1].reindex(table.index).to_numpy(dtype=float),
        })
        if full["time"].iloc[0] != 0.0:
            first = pd.DataFrame({"time": [0.0], "n_at_risk": [len(sub)], "n_events": [0],
                                  "n_censored": [0], "survival": [1.0], "lower": [1.0],
                                  "upper": [1.0]})
            full = pd.concat([first, full], ignore_index=True)
        full[["lower", "upper"]] = full[["lower", "upper"]].fillna(1.0)
        if times is not None:
            full = _read_at(full, np.asarray(times, dtype=float), t)
        for c, v in zip(cols, key, strict=True):
            full.insert(cols.index(c), c, v)
        frames.append(full)
    if not frames:
        return pd.DataFrame(columns=[*cols, *KM_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def _read_at(full: pd.DataFrame, times: np.ndarray, t: np.ndarray) -> pd.DataFrame:
    """Read a KM step table at given times (right-continuous survival, at-risk just before)."""
    if np.any(np.diff(times) < 0) or np.any(times < 0):
        raise RegistryLabError("times must be non-negative and increasing")
    pos = np.searchsorted(full["time"].to_numpy(), times, side="right") - 1
    cum_ev = np.cumsum(full["n_events"].to_numpy())
    cum_ce = np.cumsum(full["n_censored"].to_numpy())
    prev_ev = np.concatenate([[0], cum_ev[pos][:-1]])
    prev_ce = np.concatenate([[0], cum_ce[pos][:-1]])
    ts = np.sort(t)
    return pd.DataFrame({
        "time": times,
        "n_at_risk": (ts.size - np.searchsorted(ts, times, side="left")).astype(np.int64),
        "n_events": (cum_ev[pos] - prev_ev).astype(np.int64),
        "n_censored": (cum_ce[pos] - prev_ce).astype(np.int64),
        "survival": full["survival"].to_numpy()[pos],
        "lower": full["lower"].to_numpy()[pos],
        "upper": full["upper"].to_numpy()[pos],
    })


def cumulative_incidence(
    df: pd.DataFrame,
    duration: str,
    event: str,
    event_of_interest: int = 1,
    group: str | Sequence[str] | None = None,
    *,
    times: Sequence[float] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Aalen–Johansen cumulative incidence of one event type with competing risks.

    ``F(t) = sum_{t_j <= t} S(t_j-) d_j / n_j`` where ``S`` is the all-cause Kaplan–Meier
    survival, ``d_j`` the events of interest at ``t_j`` and ``n_j`` the number at risk. The
    variance is the delta-method (Marubini–Valsecchi, as in Collett 2015 and lifelines)
    estimator; limits use the log(-log) transform so they stay inside (0, 1).

    Args:
        df: one row per person.
        duration: column of time to the first event or censoring (>= 0).
        event: integer column: 0 censored, ``event_of_interest`` the event of interest, any
            other positive code a competing event (e.g. 2 = death).
        event_of_interest: the code of the event whose incidence is estimated.
        group: optional grouping column(s).
        times: optional times at which to read the curve (default: every distinct time).
        level: confidence level.

    Returns:
        DataFrame: group column(s), ``time, n_at_risk, n_events, n_competing, n_censored, cif,
        se, lower, upper``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"t": [1, 2, 3, 4], "e": [1, 2, 1, 0]})
        >>> cumulative_incidence(df, "t", "e")[["time", "cif"]]
           time   cif
        0   0.0  0.00
        1   1.0  0.25
        2   2.0  0.25
        3   3.0  0.50
        4   4.0  0.50
    """
    _require(df, [duration, event], "cumulative_incidence")
    z = _z(level)
    cols, groups = _groups(df, group)
    frames = []
    for key, sub in groups:
        t = _durations(sub, duration)
        codes = pd.to_numeric(sub[event], errors="coerce").to_numpy()
        if np.any(~np.isfinite(codes)) or np.any(codes < 0) or np.any(codes != np.round(codes)):
            i = int(np.flatnonzero(~np.isfinite(codes) | (codes < 0)
                                   | (codes != np.round(codes)))[0])
            raise RegistryLabError(
                f"{event}: row {sub.index[i]!r} has code {sub[event].iloc[i]!r}; event codes "
                "must be 0 (censored) or a positive integer"
            )
        out = _aalen_johansen(t, codes.astype(np.int64), int(event_of_interest), z)
        if times is not None:
            out = _read_cif_at(out, np.asarray(times, dtype=float), t)
        for c, v in zip(cols, key, strict=True):
            out.insert(cols.index(c), c, v)
        frames.append(out)
    if not frames:
        return pd.DataFrame(columns=[*cols, *CIF_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def _aalen_johansen(t: np.ndarray, codes: np.ndarray, k: int, z: float) -> pd.DataFrame:
    times, inv = np.unique(t, return_inverse=True)
    m = times.size
    removed = np.bincount(inv, minlength=m)
    d_all = np.bincount(inv, weights=(codes > 0).astype(float), minlength=m)
    d_k = np.bincount(inv, weights=(codes == k).astype(float), minlength=m)
    n = t.size - np.concatenate([[0], np.cumsum(removed)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - d_all / n)
        s_lag = np.concatenate([[1.0], surv[:-1]])
        f = np.cumsum(s_lag * d_k / n)
        # Var F(t) = sum_j [(F(t)-F_j)^2 a_j + c_j - 2 (F(t)-F_j) b_j], with
        # a_j = d_j/(n_j(n_j-d_j)), b_j = S_{j-1} d_kj / n_j^2, c_j = S_{j-1}^2 d_kj (n_j-d_kj)/n_j^3
        a = np.where(n > d_all, d_all / (n * (n - d_all)), 0.0)
        b = s_lag * d_k / n**2
        c = s_lag**2 * d_k * (n - d_k) / n**3
    ca, caf, caf2 = np.cumsum(a), np.cumsum(a * f), np.cumsum(a * f * f)
    cb, cbf, cc = np.cumsum(b), np.cumsum(b * f), np.cumsum(c)
    var = (f * f * ca - 2 * f * caf + caf2) + cc - 2 * (f * cb - cbf)
    var = np.maximum(var, 0.0)
    se = np.sqrt(var)
    lower, upper = _loglog_cif_limits(f, se, z)
    out = pd.DataFrame({
        "time": times.astype(float),
        "n_at_risk": n.astype(np.int64),
        "n_events": d_k.astype(np.int64),
        "n_competing": (d_all - d_k).astype(np.int64),
        "n_censored": (removed - d_all).astype(np.int64),
        "cif": f, "se": se, "lower": lower, "upper": upper,
    })
    if times.size == 0 or times[0] != 0.0:
        first = pd.DataFrame({"time": [0.0], "n_at_risk": [t.size], "n_events": [0],
                              "n_competing": [0], "n_censored": [0], "cif": [0.0], "se": [0.0],
                              "lower": [0.0], "upper": [0.0]})
        out = pd.concat([first, out], ignore_index=True)
    return out


def _loglog_cif_limits(f: np.ndarray, se: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (f > 0) & (f < 1) & (se > 0)
        lf = np.log(-np.log(np.where(ok, f, 0.5)))
        st = se / (np.where(ok, f, 0.5) * np.abs(np.log(np.where(ok, f, 0.5))))
        lower = np.where(ok, np.exp(-np.exp(lf + z * st)), f)
        upper = np.where(ok, np.exp(-np.exp(lf - z * st)), f)
    return lower, upper


def _read_cif_at(full: pd.DataFrame, times: np.ndarray, t: np.ndarray) -> pd.DataFrame:
    if np.any(np.diff(times) < 0) or np.any(times < 0):
        raise RegistryLabError("times must be non-negative and increasing")
    pos = np.searchsorted(full["time"].to_numpy(), times, side="right") - 1
    out = {"time": times}
    ts = np.sort(t)
    out["n_at_risk"] = (ts.size - np.searchsorted(ts, times, side="left")).astype(np.int64)
    for c in ("n_events", "n_competing", "n_censored"):
        cum = np.cumsum(full[c].to_numpy())
        out[c] = (cum[pos] - np.concatenate([[0], cum[pos][:-1]])).astype(np.int64)
    for c in ("cif", "se", "lower", "upper"):
        out[c] = full[c].to_numpy()[pos]
    return pd.DataFrame(out)
