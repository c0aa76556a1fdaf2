"""Outcomes: cancer deaths, background deaths, COVID-19 deaths and subsequent primaries.

Times are simulated by inverting cumulative hazards against unit exponential draws, one draw
per person and process, vectorised over people (loops run over calendar years or months only):

* cancer (excess) hazard of each tumour: a cure-type curve ``H(t) = k·a·(1 − e^(−b t))`` with
  ``a, b`` solved per site and stage from 1- and 5-year net survival (survival.yaml) and ``k``
  the patient's covariates and treatments; the injected treatment effect multiplies it by the
  hazard ratio from the SACT start;
* background hazard from the life table (attained age, sex, calendar year, deprivation);
* subsequent primaries at the population incidence × a small ratio, and the late effect
  (breast cancer after chest radiotherapy for Hodgkin lymphoma) at its relative risk;
* COVID-19 deaths (U07.1) month by month in 2020-2021.

Example:
    >>> import numpy as np
    >>> a, b = cure_curve(np.array([0.9]), np.array([0.7]))
    >>> bool(np.isclose(np.exp(-a * (1 - np.exp(-b))), 0.9)[0])
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

YEAR_DAYS = 365.25


def cure_curve(s1: np.ndarray, s5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``a, b`` so that ``exp(−a(1 − e^(−b t)))`` equals ``s1`` at 1 and ``s5`` at 5 years.

    Example:
        >>> a, b = cure_curve(np.array([0.8]), np.array([0.6]))
        >>> s = lambda t: np.exp(-a * (1 - np.exp(-b * t)))
        >>> [round(float(s(t)[0]), 3) for t in (1, 5)]
        [0.8, 0.6]
    """
    s1 = np.clip(np.asarray(s1, dtype=float), 1e-6, 1 - 1e-9)
    s5 = np.clip(np.asarray(s5, dtype=float), 1e-6, s1 - 1e-9)
    r = np.log(s5) / np.log(s1)
    lo, hi = np.full(r.shape, 1e-4), np.full(r.shape, 30.0)
    for _ in range(80):   # bisection steps, vectorised over sites and stages
        mid = (lo + hi) / 2
        g = (1 - np.exp(-5 * mid)) / (1 - np.exp(-mid))
        lo = np.where(g > r, mid, lo)
        hi = np.where(g > r, hi, mid)
    b = (lo + hi) / 2
    b = np.where(r >= 4.99, 0.01, b)
    a = np.where(r >= 4.99, -np.log(s5) / (1 - np.exp(-5 * b)), -np.log(s1) / (1 - np.exp(-b)))
    return a, b


def excess_curves(sites: list[str], params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` arrays ``[site, stage-1]`` from survival.yaml.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> a, b = excess_curves(["C18", "C50"], p)
        >>> a.shape, bool((a > 0).all() and (b > 0).all())
        ((2, 4), True)
    """
    table = params["survival"]["net_survival_by_stage"]
    ns = np.array([table.get(s, table["default"]) for s in sites], dtype=float)   # [site, 4, 2]
    return cure_curve(ns[..., 0], ns[..., 1])


def cancer_death_years(a: np.ndarray, b: np.ndarray, k: np.ndarray, e: np.ndarray,
                       hr: np.ndarray | float = 1.0, start: np.ndarray | float = np.inf) -> np.ndarray:
    """Years from diagnosis to death from the cancer (inf if never), hazard × ``hr`` after ``start``.

    Example:
        >>> a, b = cure_curve(np.array([0.9]), np.array([0.7]))
        >>> e = np.array([0.01, 5.0])   # unit-exponential draws: small dies early, large never
        >>> t = cancer_death_years(np.repeat(a, 2), np.repeat(b, 2), np.ones(2), e)
        >>> bool(0 < t[0] < 1), bool(np.isinf(t[1]))
        (True, True)
    """
    cap = k * a
    def h0(t: np.ndarray) -> np.ndarray:
        return cap * (1 - np.exp(-b * t))
    def inv(h: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -np.log1p(-h / cap) / b
        return np.where(h < cap, t, np.inf)
    start = np.broadcast_to(np.asarray(start, dtype=float), e.shape)
    hr = np.broadcast_to(np.asarray(hr, dtype=float), e.shape)
    hs = np.where(np.isfinite(start), h0(np.where(np.isfinite(start), start, 0.0)), np.inf)
    before = e <= hs
    with np.errstate(invalid="ignore"):
        target = np.where(before, e, hs + (e - hs) / np.where(hr > 0, hr, 1e-12))
    return inv(target)


def segment_event(e: np.ndarray, t0: np.ndarray, t1: np.ndarray, h: np.ndarray, split: np.ndarray,
                  m_before: np.ndarray | float, m_after: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constant hazard ``h`` on [t0, t1), multiplied by ``m_before``/``m_after`` either side of
    ``split``: returns (event happens, event time, cumulative hazard used).

    Example:
        >>> event, time, used = segment_event(np.array([0.5, 5.0]), np.zeros(2), np.full(2, 2.0), np.ones(2),
        ...                                   np.ones(2), 1.0, 2.0)
        >>> event.tolist(), float(time[0])   # the second draw exceeds the segment's hazard 1 + 2
        ([True, False], 0.5)
    """
    sp = np.clip(split, t0, t1)
    hb, ha = h * m_before, h * m_after
    c1 = hb * (sp - t0)
    c2 = ha * (t1 - sp)
    event = e <= c1 + c2
    with np.errstate(divide="ignore", invalid="ignore"):
        time = np.where(e <= c1, t0 + e / hb, sp + (e - c1) / ha)
    return event, np.where(event, time, np.inf), c1 + c2


def _year_start(year: int) -> int:
    return int(np.datetime64(f"{year}-01-01", "D").astype(np.int64))


def background_deaths(d0: np.ndarray, birth: np.ndarray, sex: np.ndarray, quintile: np.ndarray,
                      end: int, mu: np.ndarray, mu_first_year: int, e: np.ndarray,
                      split: np.ndarray, hr_after: np.ndarray) -> np.ndarray:
    """Day (since 1970) of death from background causes, inf if after ``end``.

    ``mu[year - mu_first_year, sex-1, quintile-1, age]`` is the annual hazard; the hazard is
    multiplied by ``hr_after`` from day ``split`` (the injected treatment effect).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> from registry_lib.synth.population import mortality_hazard
        >>> mu = mortality_hazard(np.arange(2019, 2023), epidemiology_params())
        >>> d0 = np.array(["2019-01-01"] * 2, dtype="datetime64[D]")
        >>> birth = np.array(["1940-01-01"] * 2, dtype="datetime64[D]")
        >>> end = int(np.datetime64("2022-06-30", "D").astype(int))
        >>> death = background_deaths(d0, birth, np.array([1, 1]), np.array([3, 3]), end, mu, 2019,
        ...                           np.array([0.01, 10.0]), np.full(2, np.inf), np.ones(2))
        >>> bool(death[0] < end), bool(np.isinf(death[1]))   # a small draw dies in follow-up, a huge one never
        (True, True)
    """
    n = len(d0)
    death = np.full(n, np.inf)
    left = e.astype(float).copy()
    if n == 0:
        return death
    y_first = int((d0.min().astype("datetime64[D]")).astype("datetime64[Y]").astype(int) + 1970)
    y_last = int(np.datetime64(end, "D").astype("datetime64[Y]").astype(int) + 1970)
    d0 = d0.astype(np.int64).astype(float)
    birth = birth.astype(np.int64).astype(float)
    for year in range(y_first, y_last + 1):   # loop over calendar years
        t0 = np.maximum(d0, _year_start(year))
        t1 = np.full(n, float(min(_year_start(year + 1), end + 1)))
        act = np.isinf(death) & (t1 > t0)
        if not act.any():
            continue
        idx = np.flatnonzero(act)
        mid = (t0[idx] + t1[idx]) / 2
        age = np.clip(((mid - birth[idx]) / YEAR_DAYS).astype(int), 0, mu.shape[-1] - 1)
        yi = min(max(year - mu_first_year, 0), mu.shape[0] - 1)
        h = mu[yi, sex[idx] - 1, quintile[idx] - 1, age] / YEAR_DAYS
        ev, time, used = segment_event(left[idx], t0[idx], t1[idx], h, split[idx], 1.0, hr_after[idx])
        death[idx[ev]] = time[ev]
        left[idx] = left[idx] - used
    return death


def covid_deaths(start: np.ndarray, alive_until: np.ndarray, birth: np.ndarray, sex: np.ndarray,
                 comorbidity: np.ndarray, sact_days: list[np.ndarray], covid: dict[str, Any],
                 end: int, e: np.ndarray) -> np.ndarray:
    """Day of COVID-19 death (inf if none) for people at risk from ``start`` to ``alive_until``.

    ``sact_days`` lists arrays (one per tumour slot) of SACT start days (nan if none).

    Example:
        >>> from registry_lib.synth.config import load_config
        >>> covid = load_config("params/cohort/tiny.yaml")["effects"]["covid"]
        >>> day = lambda s: int(np.datetime64(s, "D").astype(int))
        >>> n = 2
        >>> death = covid_deaths(np.full(n, day("2020-01-01")), np.full(n, day("2022-06-30")),
        ...                      np.full(n, day("1945-01-01")), np.array([1, 1]), np.array([1, 1]), [np.full(n, np.nan)],
        ...                      covid, day("2022-06-30"), np.array([1e-9, 50.0]))
        >>> bool(day(covid["months"][0] + "-01") <= death[0] < day("2022-06-30")), bool(np.isinf(death[1]))
        (True, True)
    """
    n = len(start)
    death = np.full(n, np.inf)
    left = e.astype(float).copy()
    recent = float(covid["recent_sact_days"])
    for i, month in enumerate(covid["months"]):   # loop over the COVID-19 months
        m0 = int(np.datetime64(f"{month}-01", "D").astype(np.int64))
        m1 = int((np.datetime64(f"{month}", "M") + 1).astype("datetime64[D]").astype(np.int64))
        t0 = np.maximum(start, m0)
        t1 = np.minimum(np.minimum(alive_until, m1), end + 1)
        act = np.isinf(death) & (t1 > t0)
        if not act.any():
            continue
        age = (t0 - birth) / YEAR_DAYS
        on_sact = np.zeros(n, dtype=bool)
        for sd in sact_days:   # one or two tumour slots
            on_sact |= (sd > m0 - recent) & (sd <= m1)
        h = (covid["death_monthly_hazard"][i] / (m1 - m0) * np.exp(covid["death_age_per_year"] * (age - 70.0))
             * np.where(sex == 1, covid["death_male_hr"], 1.0)
             * covid["death_comorbidity_hr"] ** (comorbidity - 1.0)
             * np.where(on_sact, covid["death_recent_sact_hr"], 1.0))
        ev, time, used = segment_event(left, t0, np.maximum(t1, t0), h, np.full(n, np.inf), 1.0, 1.0)
        ev &= act
        death[ev] = time[ev]
        left = np.where(act, left - used, left)
    return death
