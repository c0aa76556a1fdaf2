"""Residents and background mortality of synthetic England.

``national_population`` interpolates ONS totals and age structures (params/epidemiology/
population.yaml) so the population ages slowly over time; ``area_population`` spreads it over
the areas, each with its own size and age tilt (cities younger, countryside older), keeping
the national totals. ``life_table`` gives annual death probabilities by single year of age,
sex, year and deprivation quintile from a Gompertz-Makeham model (mortality.yaml).

Example:
    >>> from registry_lib.synth.params import epidemiology_params
    >>> p = epidemiology_params()
    >>> nat = national_population([2019], p)
    >>> round(float(nat.sum()) / 1e6, 1)
    56.3
    >>> lt = life_table([2019], p)
    >>> [round(life_expectancy(lt, 2019, s), 1) for s in (1, 2)]
    [79.4, 83.1]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.synth.params import AGE_BANDS

MAX_AGE = 100


def _interp_years(years: np.ndarray, table: dict[Any, Any]) -> np.ndarray:
    """Linear interpolation of yearly anchors (values may be vectors); flat outside."""
    keys = np.array(sorted(int(k) for k in table))
    vals = np.array([np.atleast_1d(np.asarray(table[k] if k in table else table[str(k)], dtype=float))
                     for k in keys])
    out = np.empty((len(years), vals.shape[1]))
    for j in range(vals.shape[1]):   # loop over columns (bands), not people
        out[:, j] = np.interp(years, keys, vals[:, j])
    return out


def national_population(years: list[int] | np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """England's mid-year population as an array ``[year, sex(0=male,1=female), band]``.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> national_population([2019, 2020], p).shape   # [year, sex, age band]
        (2, 2, 19)
    """
    pp = params["population"]
    years = np.asarray(years, dtype=float)
    totals = _interp_years(years, {int(k): v for k, v in pp["total_population"].items()})[:, 0]
    shares = _interp_years(years, {int(k): v for k, v in pp["age_share_percent"].items()})
    shares = shares / shares.sum(axis=1, keepdims=True)
    male = np.asarray(pp["male_share_by_band"], dtype=float)
    persons = totals[:, None] * shares
    return np.stack([persons * male, persons * (1 - male)], axis=1)


def area_population(nat: np.ndarray, size: np.ndarray, tilt: np.ndarray, scale_people: float) -> np.ndarray:
    """Residents ``[year, area, sex, band]`` (int32) summing to ``nat × scale_people``.

    Each area's share of a band is proportional to ``size × exp(tilt × (mid age − 40)/25)``.

    Example:
        >>> nat = np.full((1, 2, 19), 1000.0)
        >>> pop = area_population(nat, np.array([1.0, 3.0]), np.zeros(2), 0.01)
        >>> pop.shape, pop[0, :, 0, 0].tolist()   # 10 people per band and sex, split 1:3
        ((1, 2, 2, 19), [2, 8])
    """
    mid = (AGE_BANDS + np.where(AGE_BANDS == 90, 5.0, 2.5) - 40.0) / 25.0
    w = size[:, None] * np.exp(tilt[:, None] * mid[None, :])          # [area, band]
    w = w / w.sum(axis=0, keepdims=True)
    expected = nat[:, None, :, :] * scale_people * w[None, :, None, :]  # [year, area, sex, band]
    return np.rint(expected).astype(np.int32)


def population_frame(pop: np.ndarray, years: list[int], area_ids: np.ndarray) -> pd.DataFrame:
    """``reference/population`` rows from the ``[year, area, sex, band]`` array.

    Example:
        >>> pop = np.ones((1, 1, 2, 19), dtype=np.int32)
        >>> f = population_frame(pop, [2019], np.array(["E1"]))
        >>> len(f), int(f["population"].sum()), f.columns.tolist()
        (38, 38, ['area_id', 'year', 'sex', 'age_band', 'population'])
    """
    ny, na, ns, nb = pop.shape
    return pd.DataFrame({
        "area_id": np.tile(np.repeat(area_ids, ns * nb), ny),
        "year": np.repeat(np.asarray(years, dtype=np.int16), na * ns * nb),
        "sex": np.tile(np.repeat(np.array([1, 2], dtype=np.int8), nb), ny * na),
        "age_band": np.tile(AGE_BANDS.astype(np.int8), ny * na * ns),
        "population": pop.reshape(-1),
    })


def mortality_hazard(years: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Annual all-cause hazard ``[year, sex, quintile, age 0-100]`` of the general population.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> mu = mortality_hazard(np.array([2019]), p)
        >>> mu.shape, bool(mu[0, 0, 0, 80] > mu[0, 0, 0, 40]), bool(mu[0, 0, 4, 60] > mu[0, 0, 0, 60])
        ((1, 2, 5, 101), True, True)
    """
    mp = params["mortality"]
    years = np.asarray(years, dtype=float)
    ages = np.arange(MAX_AGE + 1) + 0.5
    imp = mp["improvement"]
    ref, brk = float(mp["reference_year"]), float(imp["break_year"])
    log_m = np.where(years >= brk, -imp["recent_improvement"] * (years - ref),
                     -imp["recent_improvement"] * (brk - ref) + imp["early_improvement"] * (brk - years))
    out = np.empty((len(years), 2, 5, MAX_AGE + 1))
    for s, key in enumerate(("male", "female")):   # loop over sexes
        m = mp[key]
        base = m["makeham"] + m["gompertz_b"] * np.exp(m["gompertz_c"] * ages) + m["infant"] * np.exp(-ages / 0.5)
        dep = np.asarray(m["deprivation_multiplier"], dtype=float)
        out[:, s] = np.exp(log_m)[:, None, None] * dep[None, :, None] * base[None, None, :]
    return out


def life_table(years: list[int] | np.ndarray, params: dict[str, Any]) -> pd.DataFrame:
    """``reference/life_table``: qx by year, sex, deprivation quintile and age 0-100 (100+).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> lt = life_table([2019], p)
        >>> len(lt), bool(lt["qx"].between(0, 1).all())
        (1010, True)
    """
    years = np.asarray(years)
    qx = 1.0 - np.exp(-mortality_hazard(years, params))
    ny = len(years)
    return pd.DataFrame({
        "year": np.repeat(years.astype(np.int16), 2 * 5 * (MAX_AGE + 1)),
        "sex": np.tile(np.repeat(np.array([1, 2], dtype=np.int8), 5 * (MAX_AGE + 1)), ny),
        "deprivation_quintile": np.tile(np.repeat(np.arange(1, 6, dtype=np.int8), MAX_AGE + 1), ny * 2),
        "age": np.tile(np.arange(MAX_AGE + 1, dtype=np.int8), ny * 2 * 5),
        "qx": qx.reshape(-1),
    })


def life_expectancy(table: pd.DataFrame, year: int, sex: int, quintile: int | None = None) -> float:
    """Period life expectancy at birth from ``life_table`` rows (mean over quintiles if None).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> lt = life_table([2019], epidemiology_params())
        >>> life_expectancy(lt, 2019, 1, 1) > life_expectancy(lt, 2019, 1, 5)
        True
    """
    sel = table[(table["year"] == year) & (table["sex"] == sex)]
    quintiles = [quintile] if quintile is not None else [1, 2, 3, 4, 5]
    values = []
    for q in quintiles:   # five quintiles
        qx = sel[sel["deprivation_quintile"] == q].sort_values("age")["qx"].to_numpy()
        survivors = np.concatenate([[1.0], np.cumprod(1.0 - qx)])
        mu_last = -np.log(1.0 - qx[-1])
        values.append(((survivors[:-2] + survivors[1:-1]) / 2).sum() + survivors[-2] / mu_last)
    return float(np.mean(values))


def standard_populations(params: dict[str, Any]) -> pd.DataFrame:
    """``reference/standard_populations``: ESP 2013 and ICSS 1-3 weights.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> sp = standard_populations(p)
        >>> sorted(sp["standard"].unique()), int(sp[sp["standard"] == "esp2013"]["weight"].sum())
        (['esp2013', 'icss1', 'icss2', 'icss3'], 100000)
    """
    rows = []
    for name in ("esp2013", "icss1", "icss2", "icss3"):   # four standards
        sp = params["standard_populations"][name]
        rows.append(pd.DataFrame({"standard": name, "age_band": np.asarray(sp["age_bands"], dtype=np.int8),
                                  "weight": np.asarray(sp["weights"], dtype=float)}))
    return pd.concat(rows, ignore_index=True)
