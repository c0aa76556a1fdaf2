"""Tumour characteristics: route, stage, morphology, grade, laterality, basis, trust.

Everything is drawn by site from params/epidemiology/tumour.yaml, vectorised over tumours:
route first (with the COVID-19 reweighting by month), then the true stage with a proportional-
odds shift for route, deprivation and the COVID-19 stage shift, then the recorded stage
(site-specific completeness), morphology, grade, laterality, basis of diagnosis and the
diagnosing trust (mostly the nearest to home). Patient state at diagnosis (WHO performance
status, Charlson comorbidity) and ethnicity are drawn here too.

Example:
    >>> import numpy as np
    >>> p = np.array([[0.2, 0.8], [0.5, 0.5]])
    >>> categorical(p, np.random.default_rng(0)).tolist()
    [1, 0]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ROUTE_DCO = "Death certificate only"


def categorical(prob: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of a probability matrix (rows need not be normalised).

    Example:
        >>> draws = categorical(np.tile([1.0, 3.0], (10000, 1)), np.random.default_rng(0))   # rows need not sum to 1
        >>> round(float(draws.mean()), 2)
        0.75
    """
    cum = np.cumsum(prob, axis=1)
    u = rng.random(len(prob)) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), prob.shape[1] - 1)


def route_table(sites: list[str], expected: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """``[site, route]`` shares: listed sites as given; all others one common mix solved so that
    the national mix (weighted by ``expected`` counts) equals the published shares, with no
    screen-detected route for unscreened sites.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> sites = ["C18", "C50", "C61"]
        >>> t = route_table(sites, np.array([1000.0, 1500.0, 1200.0]), p)
        >>> t.shape == (3, len(p["tumour"]["routes"])), bool(np.allclose(t.sum(axis=1), 1))
        (True, True)
    """
    tp = params["tumour"]
    routes = tp["routes"]
    target = np.asarray(tp["national_route_shares"], dtype=float)
    listed = tp["route_shares"]
    table = np.zeros((len(sites), len(routes)))
    known = np.array([s in listed for s in sites])
    for i, s in enumerate(sites):   # loop over sites
        if s in listed:
            table[i] = np.asarray(listed[s], dtype=float)
    n_known = (expected[known, None] * table[known]).sum(axis=0)
    n_other = expected[~known].sum()
    other = (target * expected.sum() - n_known) / max(n_other, 1e-9)
    other[routes.index("Screen detected")] = 0.0
    other = np.clip(other, 0.001, None)
    table[~known] = other / other.sum()
    return table / table.sum(axis=1, keepdims=True)


def _ordered(latent: np.ndarray, cutpoints: list[float], rng: np.random.Generator) -> np.ndarray:
    u = rng.random(len(latent))
    noise = np.log(u / (1 - u))
    return (latent[:, None] + noise[:, None] > np.asarray(cutpoints)[None, :]).sum(axis=1)


def patient_state(age: np.ndarray, quintile: np.ndarray, stage: np.ndarray, params: dict[str, Any],
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(WHO performance status 0-4, Charlson 0-3) at diagnosis, by ordered logit.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> ps, cci = patient_state(np.array([50.0, 85.0]), np.array([1, 5]), np.array([1, 4]), p,
        ...                         np.random.default_rng(0))
        >>> ps.dtype.name, bool(((ps >= 0) & (ps <= 4)).all()), bool(((cci >= 0) & (cci <= 3)).all())
        ('int8', True, True)
    """
    out = []
    for key in ("performance_status", "comorbidity"):   # two scores
        sp = params["tumour"][key]
        latent = (sp["age_per_10y"] * (age - 65.0) / 10.0 + sp["deprivation_per_quintile"] * (quintile - 3)
                  + sp["stage4"] * (stage == 4))
        out.append(_ordered(latent, sp["cutpoints"], rng).astype(np.int8))
    return out[0], out[1]


def ethnicity(age: np.ndarray, london: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """ONS 5-group ethnicity by region (London vs elsewhere) and age.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> e = ethnicity(np.array([30.0, 70.0, 45.0]), np.array([True, False, False]), p, np.random.default_rng(1))
        >>> len(e), set(e) <= set(p["tumour"]["ethnicity"]["groups"])
        (3, True)
    """
    ep = params["tumour"]["ethnicity"]
    groups = np.array(ep["groups"], dtype=object)
    p = np.where(london[:, None], np.asarray(ep["london"])[None, :], np.asarray(ep["england"])[None, :])
    older = age >= 60
    shift = ep["older_than_60_white_extra"]
    p = p.copy()
    p[older, 0] += shift
    p[older, 1:] *= (1 - p[older, 0:1] + 0.0) / np.maximum(p[older, 1:].sum(axis=1, keepdims=True), 1e-9)
    p = np.clip(p, 0, None)
    return groups[categorical(p, rng)]


def tumour_characteristics(site_codes: np.ndarray, dates: np.ndarray, quintile: np.ndarray,
                           area_trusts: np.ndarray, area_region: np.ndarray, trusts: pd.DataFrame,
                           route_shares: np.ndarray, site_index: np.ndarray, params: dict[str, Any],
                           covid: dict[str, Any] | None, rng: np.random.Generator) -> pd.DataFrame:
    """The tumour fields for tumours of sites ``site_codes`` (str) diagnosed on ``dates``.

    ``site_index`` indexes rows of ``route_shares``; ``area_trusts`` is (n, 3) nearest trusts
    (indices into ``trusts``) of each tumour's home area; ``area_region`` its region name.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> sites = ["C50", "C34"]
        >>> shares = route_table(sites, np.array([1500.0, 1000.0]), p)
        >>> n = 1000   # half breast, half lung cancers of 2019, homes in the North West (quintile 3)
        >>> codes = np.array(["C50", "C34"] * (n // 2), dtype=object)
        >>> trusts = pd.DataFrame({"trust_code": ["RA1", "RB2", "RC3", "RD4"], "region": ["North West"] * 4})
        >>> t = tumour_characteristics(codes, np.full(n, np.datetime64("2019-06-01")), np.full(n, 3),
        ...                            np.tile([0, 1, 2], (n, 1)), np.full(n, "North West", dtype=object), trusts,
        ...                            shares, np.array([0, 1] * (n // 2)), p, None, np.random.default_rng(0))
        >>> print(t.head(4)[["site_icd10", "stage", "stage_recorded", "grade", "laterality", "route_to_diagnosis"]].to_string())
          site_icd10  stage stage_recorded grade laterality      route_to_diagnosis
        0        C50      4              U    G2          R        Other outpatient
        1        C34      2              2    G3          R  Emergency presentation
        2        C50      2              U    G1          L           Two week wait
        3        C34      4              4    G2          L  Emergency presentation
        >>> pd.crosstab(t["site_icd10"], t["stage"]).to_dict("index")   # lung cancers are found later
        {'C34': {1: 105, 2: 32, 3: 96, 4: 267}, 'C50': {1: 218, 2: 208, 3: 38, 4: 36}}
        >>> t["diagnosing_trust"].value_counts().to_dict()   # mostly the nearest trust
        {'RA1': 843, 'RB2': 135, 'RC3': 12, 'RD4': 10}
    """
    tp = params["tumour"]
    n = len(site_codes)
    routes = np.array(tp["routes"], dtype=object)
    months = np.asarray(dates).astype("datetime64[M]")
    prob = route_shares[site_index].copy()
    late_shift = np.zeros(n)
    if covid is not None:
        cm = np.array(covid["months"], dtype="datetime64[M]")
        pos = np.searchsorted(cm, months)
        pos = np.where((pos < len(cm)) & (cm[np.minimum(pos, len(cm) - 1)] == months), pos, -1)
        inside = pos >= 0
        for route, fac in covid["route_factors"].items():   # loop over routes
            j = list(routes).index(route)
            f = np.asarray(fac, dtype=float)
            prob[inside, j] *= f[pos[inside]]
        ss = covid["stage_shift"]
        in_shift = (months >= np.datetime64(ss["start"], "M")) & (months <= np.datetime64(ss["end"], "M"))
        late_shift = np.where(in_shift, np.log(ss["late_stage_odds_ratio"]), 0.0)
    route_idx = categorical(prob, rng)
    route = routes[route_idx]

    # true stage: proportional odds shift of the site distribution
    n_sites = route_shares.shape[0]
    site_of_index = np.empty(n_sites, dtype=object)
    site_of_index[site_index] = site_codes            # site code of each index that occurs
    stage_tab = np.array([tp["stage"].get(s, tp["stage"]["default"]) for s in site_of_index], dtype=float)
    stage_tab = stage_tab / stage_tab.sum(axis=1, keepdims=True)
    base = stage_tab[site_index]
    # route shifts are centred per site (expected shift under the site's route mix), so the
    # site's stage shares in tumour.yaml stay its marginal distribution
    shift = late_shift + tp["deprivation_stage_log_odds_per_quintile"] * (quintile - 3)
    centre = np.zeros(route_shares.shape[0])
    for r, lo in tp["route_stage_log_odds"].items():   # three routes
        j = list(routes).index(r)
        shift = shift + np.where(route == r, lo, 0.0)
        centre = centre + route_shares[:, j] * lo
    shift = shift - centre[site_index]
    surv = np.clip(1.0 - np.cumsum(base, axis=1)[:, :3], 1e-12, 1 - 1e-12)    # P(stage > k)
    logit = np.log(surv / (1 - surv)) + shift[:, None]
    surv_new = 1.0 / (1.0 + np.exp(-logit))
    surv_new = np.where(np.cumsum(base, axis=1)[:, :3] >= 1 - 1e-12, 0.0, surv_new)
    surv_new = np.where(np.cumsum(base, axis=1)[:, :3] <= 1e-12, 1.0, surv_new)
    u = rng.random(n)
    stage = 1 + (u[:, None] < surv_new).sum(axis=1)

    years = np.asarray(dates).astype("datetime64[Y]").astype(int) + 1970
    comp_tab = np.array([tp["stage_completeness"].get(s, tp["stage_completeness"]["default"]) for s in site_of_index],
                        dtype=float)
    comp = comp_tab[site_index]
    comp = np.where(years < tp["historic_completeness_before"], comp * tp["historic_completeness_factor"], comp)
    recorded = (rng.random(n) < comp) & (route != ROUTE_DCO)
    stage_recorded = np.where(recorded, stage.astype(str), "U")

    morph = np.empty(n, dtype=object)
    grade = np.full(n, "GX", dtype=object)
    grades = np.array(["G1", "G2", "G3", "G4"], dtype=object)
    gp = np.asarray(tp["grade_by_stage"], dtype=float)
    g = grades[categorical(gp[stage - 1], rng)]
    graded = ~np.isin(site_codes, tp["ungraded_sites"]) & (rng.random(n) >= tp["grade_missing"])
    grade[graded] = g[graded]
    mdefault = tp["morphology"]["default"]
    order = np.argsort(site_index, kind="stable")
    bounds = np.searchsorted(site_index[order], np.arange(n_sites + 1))
    for j in range(n_sites):   # loop over sites
        idx = order[bounds[j]:bounds[j + 1]]
        if len(idx) == 0:
            continue
        s = site_of_index[j]
        spec = tp["morphology"].get(s, mdefault)
        codes = np.array(spec["codes"], dtype=object)
        morph[idx] = codes[categorical(np.tile(np.asarray(spec["shares"], dtype=float), (len(idx), 1)), rng)]

    lat = np.full(n, "9", dtype=object)
    u = rng.random(n)
    paired = np.isin(site_codes, tp["paired_sites"])
    b = tp["bilateral_share"]
    lat[paired] = np.where(u[paired] < b, "B", np.where(u[paired] < b + (1 - b) / 2, "L", "R"))
    mid = np.isin(site_codes, tp["midline_sites"])
    lat[mid] = np.where(u[mid] < 0.1, "M", np.where(u[mid] < 0.55, "L", "R"))

    basis_codes = np.array(tp["basis_codes"], dtype=object)
    basis = basis_codes[categorical(np.tile(np.asarray(tp["basis_shares"], dtype=float), (n, 1)), rng)]
    basis[route == ROUTE_DCO] = "0"

    gp_t = params["geography"]["trusts"]
    u = rng.random(n)
    pick = np.where(u < gp_t["nearest_share"], 0, np.where(u < gp_t["nearest_share"] + gp_t["second_nearest_share"], 1, 2))
    trust_idx = area_trusts[np.arange(n), pick]
    # the remaining share: any trust in the home region
    anywhere = pick == 2
    t_region = trusts["region"].to_numpy()
    for region in np.unique(area_region[anywhere]):   # loop over regions
        rows = np.flatnonzero(anywhere & (area_region == region))
        options = np.flatnonzero(t_region == region)
        trust_idx[rows] = options[rng.integers(0, len(options), len(rows))]
    trust = trusts["trust_code"].to_numpy()[trust_idx]

    return pd.DataFrame({
        "site_icd10": site_codes, "stage": stage.astype(np.int8), "stage_recorded": stage_recorded,
        "morphology_icdo3": morph, "behaviour": "3", "grade": grade, "laterality": lat,
        "route_to_diagnosis": route, "basis_of_diagnosis": basis, "diagnosing_trust": trust,
    })
