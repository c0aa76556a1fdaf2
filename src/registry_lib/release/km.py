"""Disclosure-safe Kaplan–Meier export: rounded numbers at risk and coarsened steps.

A Kaplan–Meier table (one row per distinct time, as ``registry_lib.stats`` produces it, with
``time, n_at_risk, n_events, n_censored, survival`` and optionally ``lower, upper`` and group
columns) shows every single death as a step. :func:`protect_km` publishes instead:

1. the curve only while more than ``threshold`` people are at risk (the tail is cut);
2. steps that each hold at least ``min_events`` events (default ``threshold + 1``): consecutive
   event times are merged, and the published survival is the estimate at the end of the merged
   step (optionally times are first coarsened to a grid, e.g. 30 days);
3. counts rounded with OpenSAFELY's midpoint-6 rule (``ceil(x/6)*6 - 3*(x != 0)``); censored
   counts in 1..threshold are suppressed.

So no published count lies in 1..threshold, and no single event time or event is shown.

Example:
    >>> km = pd.DataFrame({"time": [1, 2, 3, 4, 5, 6],
    ...                    "n_at_risk": [40, 36, 31, 25, 19, 12],
    ...                    "n_events": [4, 5, 5, 5, 6, 2], "n_censored": [0, 0, 1, 1, 1, 10],
    ...                    "survival": [0.9, 0.775, 0.65, 0.52, 0.356, 0.296]})
    >>> protect_km(km)
       time  n_at_risk  n_events  n_censored  survival
    0     0         39         0           0     1.000
    1     2         39         9           0     0.775
    2     4         33         9        <NA>     0.520
    3     6         21         9           9     0.296
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.release.disclosure import (
    DEFAULT_THRESHOLD,
    Rounding,
    protect_counts,
    round_counts,
)

KM_COUNTS = ("n_at_risk", "n_events", "n_censored")
KM_REQUIRED = ("time", *KM_COUNTS, "survival")
KM_ESTIMATES = ("survival", "lower", "upper")


def _coarsen_one(
    g: pd.DataFrame, threshold: int, rounding: Rounding, min_events: int, time_grid: float | None,
    decimals: int,
) -> pd.DataFrame:
    g = g.sort_values("time", kind="stable")
    g = g[g["n_at_risk"] > threshold]
    estimates = [c for c in KM_ESTIMATES if c in g.columns]
    start = {"time": 0, "n_at_risk": 0, "n_events": 0, "n_censored": 0, "survival": 1.0}
    start.update({c: 1.0 for c in estimates})
    if g.empty:
        return pd.DataFrame(columns=["time", *KM_COUNTS, *estimates])
    start["n_at_risk"] = int(g["n_at_risk"].iloc[0])
    if time_grid:
        grid = np.ceil(g["time"].to_numpy(dtype=float) / time_grid) * time_grid
        g = g.assign(time=grid).groupby("time", sort=True, as_index=False).agg(
            {"n_at_risk": "first", "n_events": "sum", "n_censored": "sum",
             **{c: "last" for c in estimates}}
        )
    events = g["n_events"].to_numpy(dtype=np.int64)
    cum = np.cumsum(events)
    # Step ends: the first row where the events since the previous step end reach min_events.
    ends, done = [], 0
    while True:
        k = int(np.searchsorted(cum, done + min_events, side="left"))
        if k >= len(cum):
            break
        ends.append(k)
        done = int(cum[k])
    if not ends:
        return pd.DataFrame([start])[["time", *KM_COUNTS, *estimates]]
    ends_arr = np.asarray(ends)
    starts = np.concatenate([[0], ends_arr[:-1] + 1])
    cens = np.concatenate([[0], np.cumsum(g["n_censored"].to_numpy(dtype=np.int64))])
    cum0 = np.concatenate([[0], cum])
    steps = pd.DataFrame({
        "time": g["time"].to_numpy()[ends_arr],
        "n_at_risk": g["n_at_risk"].to_numpy(dtype=np.int64)[starts],
        "n_events": cum0[ends_arr + 1] - cum0[starts],
        "n_censored": cens[ends_arr + 1] - cens[starts],
        **{c: g[c].to_numpy(dtype=float)[ends_arr] for c in estimates},
    })
    out = pd.concat([pd.DataFrame([start]), steps], ignore_index=True)[["time", *KM_COUNTS, *estimates]]
    out["n_at_risk"] = pd.array(round_counts(out["n_at_risk"].to_numpy(), rounding), dtype="Int64")
    out["n_events"] = pd.array(round_counts(out["n_events"].to_numpy(), rounding), dtype="Int64")
    out["n_censored"] = protect_counts(out["n_censored"].to_numpy(), threshold, rounding)
    for c in estimates:
        out[c] = out[c].round(decimals)
    return out


def protect_km(
    km_table: pd.DataFrame,
    *,
    threshold: int = DEFAULT_THRESHOLD,
    rounding: Rounding = "midpoint6",
    min_events: int | None = None,
    time_grid: float | None = None,
    by: Sequence[str] | None = None,
    decimals: int = 3,
) -> pd.DataFrame:
    """Make a Kaplan–Meier table safe to publish (see the module docstring).

    Args:
        km_table: columns ``time, n_at_risk, n_events, n_censored, survival`` (and optionally
            ``lower, upper`` and group columns); one row per distinct time.
        threshold: counts 1..threshold are never shown; the curve stops once no more than
            ``threshold`` are at risk.
        rounding: rounding of the published counts (default midpoint-6).
        min_events: minimum events per published step (default ``threshold + 1``).
        time_grid: if given, times are first rounded up to multiples of it (e.g. 30 days).
        by: group columns (default: every column that is not a KM column).
        decimals: decimals of the published survival and limits.

    Returns:
        One row per published step per group, starting at time 0 with survival 1; counts
        ``Int64`` (suppressed censored counts are ``<NA>``).

    Example:
        >>> km = pd.DataFrame({"time": [1, 2, 3], "n_at_risk": [30, 25, 20],
        ...                    "n_events": [5, 5, 4], "n_censored": [0, 0, 16],
        ...                    "survival": [0.833, 0.667, 0.533]})
        >>> protect_km(km, rounding=None)["n_events"].tolist()
        [0, 10]
    """
    missing = [c for c in KM_REQUIRED if c not in km_table.columns]
    if missing:
        raise RegistryLabError(f"protect_km: the Kaplan–Meier table lacks column(s) {missing}")
    min_events = int(min_events if min_events is not None else threshold + 1)
    if min_events <= threshold:
        raise RegistryLabError(
            f"protect_km: min_events={min_events} must exceed threshold={threshold} so that no "
            "step shows a small number of events"
        )
    known = {*KM_REQUIRED, *KM_ESTIMATES}
    groups = list(by) if by is not None else [c for c in km_table.columns if c not in known]
    for c in KM_COUNTS:
        if km_table[c].isna().any() or (km_table[c] < 0).any():
            raise RegistryLabError(f"protect_km: column {c} has missing or negative counts")
    args = (int(threshold), rounding, min_events, time_grid, decimals)
    if not groups:
        return _coarsen_one(km_table, *args).reset_index(drop=True)
    parts = []
    for key, g in km_table.groupby(groups, sort=True, observed=True, dropna=False):
        one = _coarsen_one(g, *args)
        key = key if isinstance(key, tuple) else (key,)
        for col, value in zip(groups, key, strict=True):
            one.insert(groups.index(col), col, value)
        parts.append(one)
    return pd.concat(parts, ignore_index=True)
