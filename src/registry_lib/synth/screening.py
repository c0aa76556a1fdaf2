"""The three NHS cancer screening programmes: screening histories, detection mode and statistics.

:func:`assign_screening` decides, for every true tumour of a screened site (breast C50, bowel
C18-C20, cervix C53), how it was found, from the programme's rules in
``params/epidemiology/screening.yaml``:

* the tumour would surface clinically on its diagnosis date; the last routine screen before it
  fell ``g`` years earlier, ``g`` uniform over the screening interval (the woman's phase);
* she attended that screen with the programme's coverage probability (lower in deprived areas
  and London); the screen found the cancer with probability ``1 - PI_k``, ``PI_k`` the
  published proportional incidence in year ``k = floor(g)`` after a screen, tilted towards early
  stages (the tilt is centred so that the mean detection in each year equals ``1 - PI_k``
  exactly);
* found: **screen-detected** (route "Screen detected", a positive test a few weeks before the
  diagnosis date); missed: **interval** cancer (a negative test ``g`` years before); not
  attended: **lapsed** (attended an earlier round) or **never screened**; outside the ages or
  years of the programme: **not eligible**. Lead-time pool (``sojourn_years``): a cancer after a
  missed round or after the woman left the programme's ages was detectable at her last attended
  round with probability ``exp(-lead time / mean sojourn)`` and is screen-detected if found there
  (:func:`_lead_time_pool`); interval cancers are not touched. Routes of tumours that were "Screen detected" but
  are no longer are redrawn among the symptomatic routes of their site. Screens due in the
  COVID-19 pause (the "Screen detected" route factors of ``covid.yaml``) did not happen.

Earlier routine rounds are added to each history (attended with ``earlier_attendance``).
:func:`screening_statistics` gives the programme statistics (women tested per year, area, age
band), drawn with the same coverage, so that rates per 1,000 women screened and the
proportional incidence method can be computed. Diagnosis dates are not moved (no lead time):
the notebook says so.

Example:
    >>> from registry_lib.synth.params import epidemiology_params
    >>> p = epidemiology_params()["screening"]["programmes"]["breast"]
    >>> p["interval_years"], round(sensitivity(p), 3)
    (3, 0.613)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import ConfigError

YEAR = 365.25
CATEGORIES = ("screen_detected", "interval", "lapsed", "never_screened", "not_eligible")
TEST_TYPE = {"breast": "mammogram", "bowel": "FIT", "cervical": "cytology"}
MAX_EARLIER_ROUNDS = 8


def sensitivity(programme: dict[str, Any]) -> float:
    """Programme sensitivity implied by the proportional incidence: ``1 - mean(PI_k)``.

    Example:
        >>> sensitivity({"proportional_incidence": [0.2, 0.4]})
        0.7
    """
    pi = np.asarray(programme["proportional_incidence"], dtype=float)
    return round(float(1.0 - pi.mean()), 12)


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))


def centred_probabilities(base: np.ndarray, tilt: np.ndarray, groups: np.ndarray, targets: np.ndarray,
                          iterations: int = 60) -> np.ndarray:
    """Probabilities ``expit(logit(target) + tilt + c_g)`` whose mean in each group is its target.

    ``c_g`` is found by bisection per group (vectorised over groups); ``base`` is unused apart from
    its length and kept for clarity of the call.

    Example:
        >>> p = centred_probabilities(np.zeros(4), np.array([1.0, -1.0, 0.5, -0.5]), np.array([0, 0, 1, 1]),
        ...                           np.array([0.7, 0.4]))
        >>> [round(float(p[:2].mean()), 6), round(float(p[2:].mean()), 6)]
        [0.7, 0.4]
    """
    n_groups = len(targets)
    lo = np.full(n_groups, -20.0)
    hi = np.full(n_groups, 20.0)
    logit_t = np.log(targets / (1 - targets))
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    for _ in range(iterations):   # bisection steps, vectorised over groups
        mid = (lo + hi) / 2
        p = _expit(logit_t[groups] + tilt + mid[groups])
        mean = np.bincount(groups, weights=p, minlength=n_groups) / np.maximum(counts, 1)
        too_high = mean > targets
        hi = np.where(too_high, mid, hi)
        lo = np.where(too_high, lo, mid)
    return _expit(logit_t[groups] + tilt + ((lo + hi) / 2)[groups])


def age_limits(programme: dict[str, Any], years: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum (inclusive) age of the programme in each calendar year.

    Example:
        >>> lo, hi = age_limits({"ages": [[2006, 60, 74], [2021, 56, 74]]}, np.array([2010, 2022]))
        >>> lo.tolist(), hi.tolist()
        ([60.0, 56.0], [74.0, 74.0])
    """
    rows = sorted(programme["ages"])
    lo = np.full(len(years), np.inf)
    hi = np.full(len(years), -np.inf)
    for start, a, b in rows:   # loop over the phases of the programme (a few)
        hit = years >= start
        lo = np.where(hit, a, lo)
        hi = np.where(hit, b, hi)
    return lo, hi


def interval_at(programme: dict[str, Any], age: np.ndarray) -> np.ndarray:
    """Screening interval in years at each age (cervical: 3 years to 49, then 5).

    Example:
        >>> interval_at({"interval_years": 3, "interval_by_age": [[50, 5]]}, np.array([30.0, 55.0])).tolist()
        [3.0, 5.0]
    """
    out = np.full(len(age), float(programme["interval_years"]))
    for a, years in programme.get("interval_by_age") or []:   # one or two age steps
        out = np.where(age >= a, float(years), out)
    return out


def coverage_probability(programme: dict[str, Any], quintile: np.ndarray, london: np.ndarray) -> np.ndarray:
    """Probability of being screened in the last interval, by deprivation quintile and London.

    Example:
        >>> p = {"coverage": 0.7, "coverage_deprivation_per_quintile": -0.2, "coverage_london": -0.4}
        >>> coverage_probability(p, np.array([3, 5]), np.array([False, True])).round(3).tolist()
        [0.7, 0.512]
    """
    lo = (_logit(float(programme["coverage"])) + float(programme["coverage_deprivation_per_quintile"])
          * (quintile.astype(float) - 3.0) + float(programme["coverage_london"]) * london.astype(float))
    return _expit(lo)


@dataclass
class ScreeningResult:
    """Output of :func:`assign_screening`.

    Attributes:
        routes: the tumours' routes to diagnosis after screening (same order as the input).
        episodes: one row per invitation: ``patient_id``, ``tumour_id``, ``programme``,
            ``invitation_day``, ``attended``, ``test_day`` (NaN if not attended), ``result``.
        detection: one row per tumour of a screened site: ``tumour_id``, ``programme``,
            ``detection`` (:data:`CATEGORIES`), ``screen_day`` (the last routine screen before
            diagnosis, NaN if none), ``years_since_screen``.

    Example:
        >>> det = pd.DataFrame({"tumour_id": [1, 2], "programme": "bowel", "detection": ["interval", "not_eligible"],
        ...                     "screen_day": [17000.0, np.nan], "years_since_screen": [1.2, np.nan]})
        >>> r = ScreeningResult(routes=np.array(["GP referral", "Emergency presentation"], dtype=object),
        ...                     episodes=pd.DataFrame(), detection=det)
        >>> r.routes.tolist(), bool(r.detection["detection"].isin(CATEGORIES).all())
        (['GP referral', 'Emergency presentation'], True)
    """

    routes: np.ndarray
    episodes: pd.DataFrame
    detection: pd.DataFrame


def _covid_pause(screen_day: np.ndarray, covid: dict[str, Any] | None) -> np.ndarray:
    """Probability that a routine screen on this day went ahead (COVID-19 pause)."""
    out = np.ones(len(screen_day))
    if not covid:
        return out
    factors = covid.get("route_factors", {}).get("Screen detected")
    if not factors:
        return out
    month = np.floor(screen_day).astype(np.int64).astype("datetime64[D]").astype("datetime64[M]")
    for key, f in zip(covid["months"], factors, strict=True):   # loop over COVID-19 months
        out = np.where(month == np.datetime64(str(key), "M"), min(float(f), 1.0), out)
    return out


def _symptomatic_routes(site: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """A symptomatic route for each tumour, drawn from its site's route shares without screening."""
    tp = params["tumour"]
    routes = np.array(tp["routes"], dtype=object)
    keep = np.isin(routes, ["Emergency presentation", "Two week wait", "GP referral", "Other outpatient",
                            "Inpatient elective"])
    out = np.empty(len(site), dtype=object)
    u = rng.random(len(site))
    for s in np.unique(site):   # loop over sites (three programmes' sites)
        shares = np.asarray(tp["route_shares"].get(str(s), tp["national_route_shares"]), dtype=float) * keep
        cum = np.cumsum(shares / shares.sum())
        hit = site == s
        out[hit] = routes[np.minimum(np.searchsorted(cum, u[hit], side="right"), len(routes) - 1)]
    return out


def _lead_time_pool(p: dict[str, Any], g: np.ndarray, interval: np.ndarray, eligible: np.ndarray,
                    attended: np.ndarray, lapsed: np.ndarray, prev_ok: np.ndarray, screen_day: np.ndarray,
                    screen_age: np.ndarray, cov: np.ndarray, pi: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cancers found at an earlier screen, in their preclinical (detectable) phase: the lead-time pool.

    A cancer that surfaced clinically after a missed round (lapsed: lead time ``L = g + interval``)
    or after the woman had left the programme's ages (her last round within the ages, ``j`` rounds
    back, attended with the programme's coverage: ``L = g + j * interval``) was detectable at
    that round if its preclinical sojourn time exceeded ``L``: probability ``exp(-L / sojourn_years)``
    (exponential sojourn), found with the year-1 sensitivity ``1 - PI_1``. Interval cancers (a
    negative screen at ``g``) are not touched, so the proportional incidence is unchanged.
    ``sojourn_years: null``: no pool. Returns ``(found, aged_out_and_attended)``.
    """
    n = len(g)
    sojourn = p.get("sojourn_years")
    if not sojourn:
        return np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if float(sojourn) <= 0:
        raise ConfigError(f"screening.yaml: sojourn_years must be positive or null, got {sojourn!r}")
    year = np.floor(screen_day).astype(np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    _, hi = age_limits(p, year)
    # rounds back to the last one within the ages (j >= 1 where the screen at g was past them)
    # (before the programme started hi is -inf: one round back, excluded below by the start year)
    j = np.where(np.isfinite(hi), np.maximum(np.floor((screen_age - (hi + 1)) / interval) + 1, 1.0), 1.0)
    last_day = screen_day - j * interval * YEAR
    last_age = screen_age - j * interval
    last_year = np.floor(last_day).astype(np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(
        np.int64) + 1970
    llo, lhi = age_limits(p, last_year)
    aged_out = (~eligible & (year >= int(p["start_year"])) & (screen_age >= hi + 1) & (last_year >= int(p["start_year"]))
                & (last_age >= llo) & (last_age < lhi + 1))
    went = aged_out & (rng.random(n) < cov)
    u = rng.random(n)
    lead = np.where(aged_out, g + j * interval, g + interval)
    candidate = went | (eligible & ~attended & lapsed & prev_ok)
    prob = (1.0 - float(pi[0])) * np.exp(-lead / float(sojourn))
    return candidate & (u < prob), went


def assign_screening(tumours: pd.DataFrame, patients: pd.DataFrame, areas: pd.DataFrame,
                     config: dict[str, Any], params: dict[str, Any], rng: np.random.Generator) -> ScreeningResult:
    """Detection mode, routes and screening histories of the tumours; see the module docstring.

    ``tumours`` needs TRUE_TUMOURS columns; ``patients`` ``patient_id``, ``birth_date``, ``sex``;
    ``areas`` ``area_id``, ``region``, ``deprivation_quintile``. ``config["effects"]["screening"]``
    lists the programmes (null: none, routes unchanged).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> params = epidemiology_params()
        >>> n = 200   # women with breast cancer diagnosed in 2018 aged 51-69 (one aged 35), quintile 3, not London
        >>> tumours = pd.DataFrame({"tumour_id": range(n), "patient_id": range(n), "site_icd10": "C50", "stage": "2",
        ...                         "diagnosis_date": pd.Timestamp("2018-07-01"), "area_id": "A",
        ...                         "route_to_diagnosis": ["Screen detected", "GP referral"] * (n // 2)})
        >>> patients = pd.DataFrame({"patient_id": range(n), "sex": 2,
        ...                          "birth_date": pd.to_datetime(["1983-01-01"] + [f"{1948 + i % 20}-01-01" for i in range(1, n)])})
        >>> areas = pd.DataFrame({"area_id": ["A"], "region": ["North West"], "deprivation_quintile": [3]})
        >>> config = {"effects": {"screening": {"programmes": ["breast"]}, "covid": None}}
        >>> result = assign_screening(tumours, patients, areas, config, params, np.random.default_rng(5))
        >>> result.detection["detection"].value_counts().sort_index().to_dict()
        {'interval': 55, 'lapsed': 14, 'never_screened': 27, 'not_eligible': 5, 'screen_detected': 99}
        >>> result.detection.loc[0, "detection"]   # 35 at diagnosis: outside the programme's ages
        'not_eligible'
        >>> bool(((result.routes == "Screen detected") == (result.detection["detection"] == "screen_detected")).all())
        True
        >>> assign_screening(tumours, patients, areas, {"effects": {"screening": None}}, params,
        ...                  np.random.default_rng(5)).detection.empty   # screening switched off
        True
    """
    eff = config["effects"].get("screening")
    routes = tumours["route_to_diagnosis"].to_numpy(dtype=object).copy()
    empty_ep = pd.DataFrame({"patient_id": pd.Series(dtype=np.int64), "tumour_id": pd.Series(dtype=np.int64),
                             "programme": pd.Series(dtype=object), "invitation_day": pd.Series(dtype=float),
                             "attended": pd.Series(dtype=bool), "test_day": pd.Series(dtype=float),
                             "result": pd.Series(dtype=object)})
    empty_det = pd.DataFrame({"tumour_id": pd.Series(dtype=np.int64), "programme": pd.Series(dtype=object),
                              "detection": pd.Series(dtype=object), "screen_day": pd.Series(dtype=float),
                              "years_since_screen": pd.Series(dtype=float)})
    if eff is None:
        return ScreeningResult(routes, empty_ep, empty_det)
    progs = params["screening"]["programmes"]
    unknown = [p for p in eff["programmes"] if p not in progs]
    if unknown:
        raise ConfigError(f"effects.screening.programmes: unknown programme(s) {unknown} (known: {sorted(progs)})")
    pat = patients.set_index("patient_id")
    pid = tumours["patient_id"].to_numpy()
    birth = pat["birth_date"].reindex(pid).to_numpy().astype("datetime64[D]").astype(np.int64).astype(float)
    sex = pat["sex"].reindex(pid).to_numpy().astype(np.int64)
    area = areas.set_index("area_id")
    quint = area["deprivation_quintile"].reindex(tumours["area_id"]).to_numpy().astype(np.int64)
    london = (area["region"].reindex(tumours["area_id"]).to_numpy() == "London")
    dx = tumours["diagnosis_date"].to_numpy().astype("datetime64[D]").astype(np.int64).astype(float)
    site = tumours["site_icd10"].to_numpy(dtype=object)
    stage = pd.to_numeric(tumours["stage"], errors="coerce").fillna(2).to_numpy().astype(np.int64)
    covid = config["effects"].get("covid")
    old_sd = routes == "Screen detected"
    new_sd = np.zeros(len(tumours), dtype=bool)
    episodes, detections = [], []
    for name in eff["programmes"]:   # loop over the (three) programmes
        p = progs[name]
        sel = np.isin(site, p["sites"])
        if p["sex"] is not None:
            sel &= sex == int(p["sex"])
        idx = np.flatnonzero(sel)
        # first tumour of the programme per patient: later ones are outside routine screening
        order = idx[np.lexsort((dx[idx], pid[idx]))]
        first = order[np.r_[True, pid[order][1:] != pid[order][:-1]]] if len(order) else order
        first = np.sort(first)
        n = len(first)
        age_dx = (dx[first] - birth[first]) / YEAR
        interval = interval_at(p, age_dx)
        g = rng.random(n) * interval
        screen_day = dx[first] - g * YEAR
        screen_age = age_dx - g
        screen_year = np.floor(screen_day).astype(np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(
            np.int64) + 1970
        lo, hi = age_limits(p, screen_year)
        eligible = (screen_year >= int(p["start_year"])) & (screen_age >= lo) & (screen_age < hi + 1)
        cov = coverage_probability(p, quint[first], london[first])
        went_ahead = rng.random(n) < _covid_pause(screen_day, covid)
        attended = eligible & (rng.random(n) < cov) & went_ahead
        pi = np.asarray(p["proportional_incidence"], dtype=float)
        k = np.minimum(np.floor(g).astype(np.int64), len(pi) - 1)
        tilt = np.asarray(p["stage_log_odds"], dtype=float)[np.clip(stage[first], 1, 4) - 1]
        u_detect = rng.random(n)
        # lapsed: attended the round before, which must itself have been within the programme
        prev_day = screen_day - interval * YEAR
        prev_year = np.floor(prev_day).astype(np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(
            np.int64) + 1970
        plo, phi = age_limits(p, prev_year)
        prev_ok = (prev_year >= int(p["start_year"])) & (screen_age - interval >= plo) & (screen_age - interval < phi + 1)
        lapsed = (rng.random(n) < float(p["lapsed_share"])) & prev_ok
        a = np.flatnonzero(attended)
        found = np.zeros(n, dtype=bool)
        if len(a):
            prob = centred_probabilities(np.zeros(len(a)), tilt[a], k[a], 1.0 - pi)
            found[a] = u_detect[a] < prob
        pool, aged_out = _lead_time_pool(p, g, interval, eligible, attended, lapsed, prev_ok, screen_day,
                                         screen_age, cov, pi, rng)
        found |= pool
        attended |= pool
        # a screen-detected cancer's test is dated just before diagnosis: if screening was paused
        # then (COVID-19), the test did not happen and the cancer presented otherwise
        recall = rng.uniform(float(p["recall_days"][0]), float(p["recall_days"][1]), n)
        paused = found & ~(rng.random(n) < _covid_pause(dx[first], covid))   # by diagnosis month, as the routes
        found &= ~paused
        attended &= ~paused
        lapsed |= paused & prev_ok
        eligible |= aged_out & found     # found at her last screen within the programme's ages
        cat = np.where(~eligible, "not_eligible",
                       np.where(found, "screen_detected",
                                np.where(attended, "interval", np.where(lapsed, "lapsed", "never_screened"))))
        new_sd[first[found]] = True
        last_test = np.where(found, dx[first] - recall, screen_day)
        detections.append(pd.DataFrame({
            "tumour_id": tumours["tumour_id"].to_numpy()[first], "programme": name, "detection": cat,
            "screen_day": np.where(attended, np.floor(last_test), np.nan),
            "years_since_screen": np.where(attended & ~found, g, np.where(found, 0.0, np.nan)),
        }))
        episodes.append(_histories(name, p, first, pid, tumours["tumour_id"].to_numpy(), birth, last_test, eligible,
                                   attended, found, lapsed, rng))
    # routes: screen-detected only where a screen found it; others that were redrawn get a symptomatic route
    redraw = old_sd & ~new_sd
    routes[redraw] = _symptomatic_routes(site[redraw], params, rng)
    routes[new_sd] = "Screen detected"
    episodes = [e for e in episodes if len(e)]
    ep = pd.concat(episodes, ignore_index=True) if episodes else empty_ep
    det = pd.concat(detections, ignore_index=True) if detections else empty_det
    return ScreeningResult(routes, ep, det)


def _histories(name: str, p: dict[str, Any], first: np.ndarray, pid: np.ndarray, tid: np.ndarray, birth: np.ndarray,
               last_test: np.ndarray, eligible: np.ndarray, attended: np.ndarray, found: np.ndarray,
               lapsed: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Invitations and tests of each woman/man: the last round and earlier routine rounds."""
    parts = []
    base = np.flatnonzero(eligible)
    for j in range(MAX_EARLIER_ROUNDS + 1):   # loop over screening rounds (at most 9)
        day = last_test[base] - j * interval_at(p, (last_test[base] - birth[first[base]]) / YEAR) * YEAR
        age = (day - birth[first[base]]) / YEAR
        year = np.floor(day).astype(np.int64).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
        lo, hi = age_limits(p, year)
        # the last round is the one eligibility was decided on (a screen-detected cancer's test is
        # dated at diagnosis, no lead time): always kept; earlier rounds only within the programme
        ok = np.ones(len(base), dtype=bool) if j == 0 else (year >= int(p["start_year"])) & (age >= lo) & (age < hi + 1)
        if j == 0:
            att = attended[base]
            positive = found[base]
        elif j == 1:
            # lapsed: attended the round before the missed one; never screened: never attended
            att = np.where(attended[base], rng.random(len(base)) < float(p["earlier_attendance"]), lapsed[base])
            positive = np.zeros(len(base), dtype=bool)
        else:
            att = np.where(attended[base] | lapsed[base], rng.random(len(base)) < float(p["earlier_attendance"]),
                           False)
            positive = np.zeros(len(base), dtype=bool)
        wait = rng.uniform(7, 42, len(base))
        sel = ok
        if not sel.any():
            break
        parts.append(pd.DataFrame({
            "patient_id": pid[first[base]][sel], "tumour_id": tid[first[base]][sel], "programme": name,
            "invitation_day": np.floor(day - wait)[sel], "attended": att[sel],
            "test_day": np.where(att, np.floor(day), np.nan)[sel],
            "result": np.where(att, np.where(positive, "positive", "negative"), None)[sel],
        }))
    if not parts:
        return pd.DataFrame(columns=["patient_id", "tumour_id", "programme", "invitation_day", "attended",
                                     "test_day", "result"])
    return pd.concat(parts, ignore_index=True)


def screening_statistics(population: pd.DataFrame, areas: pd.DataFrame, config: dict[str, Any],
                         params: dict[str, Any], rng: np.random.Generator) -> pd.DataFrame:
    """Programme statistics: people eligible and tested per programme, year, area, sex and age band.

    Tested = Binomial(eligible, coverage / interval) with the same coverage as the histories; in
    a year of the COVID-19 pause the tests are scaled by that year's mean "Screen detected" route
    factor. Bands are the 5-year population bands, the eligible share of a band partly inside the
    programme's ages taken proportionally.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> params = epidemiology_params()
        >>> population = pd.DataFrame({"year": 2019, "area_id": "A", "sex": [2, 2, 2, 1],
        ...                            "age_band": [40, 50, 75, 50], "population": [1000, 1000, 1000, 1000]})
        >>> areas = pd.DataFrame({"area_id": ["A"], "region": ["North West"], "deprivation_quintile": [3]})
        >>> config = {"years": [2019, 2019], "effects": {"screening": {"programmes": ["breast"]}, "covid": None}}
        >>> stats = screening_statistics(population, areas, config, params, np.random.default_rng(0))
        >>> print(stats.to_string())   # women aged 50-70, screened every 3 years: no men, no 40-44s, no 75-79s
          programme  year area_id  sex  age_band  eligible  tested
        0    breast  2019       A    2        50      1000     272
    """
    eff = config["effects"].get("screening")
    cols = ["programme", "year", "area_id", "sex", "age_band", "eligible", "tested"]
    if eff is None:
        return pd.DataFrame({c: [] for c in cols})
    progs = params["screening"]["programmes"]
    y0, y1 = config["years"]
    pop = population[(population["year"] >= y0) & (population["year"] <= y1)]
    area = areas.set_index("area_id")
    covid = config["effects"].get("covid")
    parts = []
    for name in eff["programmes"]:   # loop over programmes
        p = progs[name]
        sub = pop if p["sex"] is None else pop[pop["sex"] == int(p["sex"])]
        years = sub["year"].to_numpy().astype(np.int64)
        lo, hi = age_limits(p, years)
        band = sub["age_band"].to_numpy().astype(float)
        share = np.clip((np.minimum(band + 5, hi + 1) - np.maximum(band, lo)) / 5.0, 0.0, 1.0)
        share = np.where(years >= int(p["start_year"]), share, 0.0)
        keep = share > 0
        sub, share, years = sub[keep], share[keep], years[keep]
        eligible = np.round(sub["population"].to_numpy() * share).astype(np.int64)
        q = area["deprivation_quintile"].reindex(sub["area_id"]).to_numpy().astype(np.int64)
        ldn = area["region"].reindex(sub["area_id"]).to_numpy() == "London"
        mid_age = sub["age_band"].to_numpy().astype(float) + 2.5
        prob = coverage_probability(p, q, ldn) / interval_at(p, mid_age)
        if covid:
            factors = covid.get("route_factors", {}).get("Screen detected") or []
            months = [str(m) for m in covid["months"]]
            for yr in sorted({int(m[:4]) for m in months}):   # the pandemic years
                f = [min(float(v), 1.0) for m, v in zip(months, factors, strict=False) if int(m[:4]) == yr]
                n_months = 12
                scale = (sum(f) + (n_months - len(f))) / n_months
                prob = np.where(years == yr, prob * scale, prob)
        tested = rng.binomial(eligible, np.clip(prob, 0, 1))
        parts.append(pd.DataFrame({"programme": name, "year": years.astype(np.int16),
                                   "area_id": sub["area_id"].to_numpy(), "sex": sub["sex"].to_numpy().astype(np.int8),
                                   "age_band": sub["age_band"].to_numpy().astype(np.int8),
                                   "eligible": eligible.astype(np.int32), "tested": tested.astype(np.int32)}))
    return pd.concat(parts, ignore_index=True)[cols]


def effects_summary(result: ScreeningResult, config: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The configured programme sensitivities and the realised detection counts, for ``effects.json``.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> params = epidemiology_params()
        >>> det = pd.DataFrame({"tumour_id": [1, 2, 3], "programme": "breast",
        ...                     "detection": ["screen_detected", "interval", "screen_detected"],
        ...                     "screen_day": [17500.0, 16800.0, 17600.0], "years_since_screen": [0.0, 1.9, 0.0]})
        >>> result = ScreeningResult(routes=np.array([], dtype=object), episodes=pd.DataFrame(), detection=det)
        >>> s = effects_summary(result, {"effects": {"screening": {"programmes": ["breast"]}}}, params)
        >>> breast = s["programmes"]["breast"]
        >>> round(breast["sensitivity"], 3), breast["interval_years"], breast["counts"]
        (0.613, 3, {'screen_detected': 2, 'interval': 1, 'lapsed': 0, 'never_screened': 0, 'not_eligible': 0})
        >>> effects_summary(result, {"effects": {"screening": None}}, params)
        {'enabled': False}
    """
    eff = config["effects"].get("screening")
    if eff is None:
        return {"enabled": False}
    progs = params["screening"]["programmes"]
    d = result.detection
    out: dict[str, Any] = {"enabled": True, "description": "Screen-detected and interval cancers: detection at a "
                           "routine screen with probability 1 - PI_k (k = years since the screen); sensitivity = "
                           "1 - mean(PI_k).", "programmes": {}}
    for name in eff["programmes"]:   # loop over programmes
        p = progs[name]
        counts = d.loc[d["programme"] == name, "detection"].value_counts()
        out["programmes"][name] = {
            "sensitivity": sensitivity(p),
            "proportional_incidence": [float(v) for v in p["proportional_incidence"]],
            "interval_years": p["interval_years"], "coverage": p["coverage"],
            "counts": {c: int(counts.get(c, 0)) for c in CATEGORIES},
        }
    return out
