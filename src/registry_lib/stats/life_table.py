"""Background mortality from a life table, for relative and net survival.

The life table gives ``qx``, the annual probability of death, by single year of age 0–100
(100 = 100+), sex, calendar year and deprivation quintile (any stratum columns can be used).
:class:`BackgroundHazards` converts it to a constant hazard within each cell,
``mu = -log(1 - qx)``. Each patient is followed along their Lexis line: attained age and
calendar year both advance with follow-up time, so the patient's hazard changes at every
birthday and every 1 January; the cumulative background hazard is integrated exactly over
those pieces, vectorised over patients and whole years of follow-up
(:func:`expected_survival`). Years beyond the life table's range use its last (or first) year.
:func:`decimal_year` turns dates into calendar time in years.

Example:
    >>> import pandas as pd
    >>> decimal_year(pd.to_datetime(["2020-07-02"])).round(1).tolist()
    [2020.5]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

MAX_AGE = 100


def decimal_year(dates) -> np.ndarray:
    """Calendar time in decimal years (e.g. 2 July 2020 -> about 2020.5).

    Example:
        >>> decimal_year(pd.to_datetime(["2020-01-01", "2021-07-02"])).round(3).tolist()
        [2020.0, 2021.499]
    """
    d = pd.DatetimeIndex(pd.to_datetime(np.asarray(dates)))
    start = pd.to_datetime(d.year.astype(str) + "-01-01")
    days_in_year = np.where(d.is_leap_year, 366.0, 365.0)
    frac = (d - start).days.to_numpy(dtype=float) / days_in_year
    return d.year.to_numpy(dtype=float) + frac


# ----------------------------------------------------------------------------------------
# life table
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackgroundHazards:
    """Life-table hazards as a dense array ``hazard[stratum, year - first_year, age]``.

    Build with :meth:`from_life_table`. ``strata`` are the life-table columns other than
    year and age that patients are matched on (by default sex and deprivation quintile).

    Example:
        >>> life = pd.DataFrame({"year": 2020, "sex": [1, 1], "age": [0, 1], "qx": [0.1, 0.2]})
        >>> bh = BackgroundHazards.from_life_table(life, strata=("sex",), max_age=1)
        >>> bh.hazard.shape, round(float(bh.hazard[0, 0, 1]), 4)
        ((1, 1, 2), 0.2231)
    """

    strata: tuple[str, ...]
    keys: pd.DataFrame
    first_year: int
    hazard: np.ndarray
    max_age: int = MAX_AGE

    @classmethod
    def from_life_table(
        cls,
        life_table: pd.DataFrame,
        strata: Sequence[str] = ("sex", "deprivation_quintile"),
        *,
        qx: str = "qx",
        max_age: int = MAX_AGE,
    ) -> BackgroundHazards:
        strata = tuple(strata)
        need = ["year", "age", qx, *strata]
        missing = [c for c in need if c not in life_table.columns]
        if missing:
            raise RegistryLabError(f"life table: column(s) {missing} not found")
        lt = life_table[need]
        q = lt[qx].to_numpy(dtype=float)
        bad = ~np.isfinite(q) | (q < 0) | (q >= 1)
        if bad.any():
            row = lt.iloc[int(np.flatnonzero(bad)[0])]
            raise RegistryLabError(
                f"life table: {qx}={row[qx]!r} at {dict(row.drop(qx))}: qx must be in [0, 1)"
            )
        if lt.duplicated(["year", "age", *strata]).any():
            row = lt[lt.duplicated(["year", "age", *strata])].iloc[0]
            raise RegistryLabError(f"life table: cell {dict(row.drop(qx))} appears more than once")
        years = lt["year"].astype(int).to_numpy()
        ages = lt["age"].astype(int).to_numpy()
        if ages.min() != 0 or ages.max() != max_age:
            raise RegistryLabError(f"life table: ages must run from 0 to {max_age}")
        if strata:
            keys = lt[list(strata)].drop_duplicates().sort_values(list(strata)).reset_index(drop=True)
            sidx = keys.reset_index().merge(lt[list(strata)], on=list(strata), how="right")["index"]
            sidx = sidx.to_numpy()
        else:
            keys = pd.DataFrame(index=[0])
            sidx = np.zeros(len(lt), dtype=np.int64)
        y0, y1 = int(years.min()), int(years.max())
        ny = y1 - y0 + 1
        hazard = np.full((len(keys), ny, max_age + 1), np.nan)
        hazard[sidx, years - y0, ages] = -np.log1p(-q)
        if np.isnan(hazard).any():
            s, y, a = (int(v[0]) for v in np.nonzero(np.isnan(hazard)))
            cell = {**keys.iloc[s].to_dict(), "year": y0 + y, "age": a} if strata else {
                "year": y0 + y, "age": a}
            raise RegistryLabError(f"life table: no qx for cell {cell}; every cell is needed")
        return cls(strata, keys, y0, hazard, max_age)

    def stratum_index(self, df: pd.DataFrame) -> np.ndarray:
        """Index of each patient's stratum (error naming the first unmatched patient)."""
        if not self.strata:
            return np.zeros(len(df), dtype=np.int64)
        missing = [c for c in self.strata if c not in df.columns]
        if missing:
            raise RegistryLabError(f"patients: column(s) {missing} needed to match the life table")
        left = df[list(self.strata)].reset_index(drop=True)
        keys = self.keys.reset_index()
        for c in self.strata:
            try:
                left[c] = left[c].astype(keys[c].dtype)
            except (ValueError, TypeError):
                pass
        merged = left.merge(keys, on=list(self.strata), how="left")
        if merged["index"].isna().any():
            i = int(np.flatnonzero(merged["index"].isna().to_numpy())[0])
            raise RegistryLabError(
                f"patient row {df.index[i]!r}: no life table for "
                f"{dict(df[list(self.strata)].iloc[i])}"
            )
        return merged["index"].to_numpy(dtype=np.int64)


# ----------------------------------------------------------------------------------------
# cumulative background hazard along each patient's Lexis line
# ----------------------------------------------------------------------------------------
class _LexisPaths:
    """Per-patient background hazard pieces by whole year of follow-up."""

    def __init__(self, bh: BackgroundHazards, sidx, age0, year0, n_years: int):
        self.n_years = n_years
        fa = np.mod(-age0, 1.0)  # follow-up fraction of a year to the next birthday
        fy = np.mod(-year0, 1.0)  # ... and to the next 1 January
        self.p1 = np.minimum(fa, fy)
        self.p2 = np.maximum(fa, fy)
        j = np.arange(n_years, dtype=float)[None, :]
        ny = bh.hazard.shape[1]
        base = sidx[:, None] * (ny * (bh.max_age + 1))
        flat = bh.hazard.reshape(-1)
        hz = []
        for mid in (self.p1 / 2, (self.p1 + self.p2) / 2, (self.p2 + 1) / 2):
            t = j + mid[:, None]
            yi = np.clip(np.floor(year0[:, None] + t).astype(np.int64) - bh.first_year, 0, ny - 1)
            ai = np.clip(np.floor(age0[:, None] + t).astype(np.int64), 0, bh.max_age)
            hz.append(flat[base + yi * (bh.max_age + 1) + ai])
        self.h0, self.h1, self.h2 = hz
        per_year = (self.h0 * self.p1[:, None] + self.h1 * (self.p2 - self.p1)[:, None]
                    + self.h2 * (1 - self.p2)[:, None])
        self.cum = np.concatenate(
            [np.zeros((len(age0), 1)), np.cumsum(per_year, axis=1)[:, :-1]], axis=1)

    def at(self, i: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Cumulative background hazard of patient(s) ``i`` at follow-up time(s) ``t``."""
        j = np.minimum(np.floor(t).astype(np.int64), self.n_years - 1)
        u = t - j
        p1, p2 = self.p1[i], self.p2[i]
        return (self.cum[i, j] + self.h0[i, j] * np.minimum(u, p1)
                + self.h1[i, j] * np.clip(u - p1, 0.0, p2 - p1)
                + self.h2[i, j] * np.maximum(u - p2, 0.0))


def expected_survival(
    df: pd.DataFrame,
    life_table: pd.DataFrame | BackgroundHazards,
    times: Sequence[float],
    *,
    age: str = "age",
    year: str = "year",
    strata: Sequence[str] = ("sex", "deprivation_quintile"),
) -> np.ndarray:
    """Background survival ``S_P,i(t)`` of each patient at each time (array patients × times).

    Example:
        >>> life = pd.DataFrame({"year": 2020, "age": range(101), "qx": 0.1})
        >>> df = pd.DataFrame({"age": [50.0], "year": [2020.0]})
        >>> expected_survival(df, life, [1, 2], strata=()).round(4).tolist()
        [[0.9, 0.81]]
    """
    bh = life_table if isinstance(life_table, BackgroundHazards) else \
        BackgroundHazards.from_life_table(life_table, strata)
    a0, y0 = _age_year(df, age, year)
    ts = np.asarray(times, dtype=float)
    if np.any(ts < 0):
        raise RegistryLabError("times must be >= 0")
    paths = _LexisPaths(bh, bh.stratum_index(df), a0, y0, int(np.floor(ts.max())) + 1)
    n = len(df)
    i = np.repeat(np.arange(n), ts.size)
    t = np.tile(ts, n)
    return np.exp(-paths.at(i, t)).reshape(n, ts.size)


def _age_year(df: pd.DataFrame, age: str, year: str) -> tuple[np.ndarray, np.ndarray]:
    for c in (age, year):
        if c not in df.columns:
            raise RegistryLabError(f"patients: column {c!r} not found")
    a0 = pd.to_numeric(df[age], errors="coerce").to_numpy(dtype=float)
    if pd.api.types.is_datetime64_any_dtype(df[year]):
        y0 = decimal_year(df[year])
    else:
        y0 = pd.to_numeric(df[year], errors="coerce").to_numpy(dtype=float)
    for name, v in ((age, a0), (year, y0)):
        bad = ~np.isfinite(v) | (v < 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise RegistryLabError(f"patient row {df.index[i]!r}: {name}={df[name].iloc[i]!r} "
                                   "is missing or negative")
    return a0, y0
