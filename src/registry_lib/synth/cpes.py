"""The National Cancer Patient Experience Survey (CPES) in synthetic England.

:func:`survey` draws, for each survey year, the CPES sample as run in England: adults (16+) with
a cancer who had an inpatient or day-case episode for cancer treatment (here: a surgery, SACT or
radiotherapy start) in April-June, alive when the questionnaires are mailed, one row per patient
and year, attributed to the trust that diagnosed the tumour. Then:

* **response** depends on age (lower in the young and the very old), sex, deprivation,
  ethnicity and site, the intercept solved so that the national response rate is the published
  one (``params/epidemiology/cpes.yaml``);
* the **overall rating of care** (0-10) is a rounded, clipped latent score depending on stage,
  age, deprivation, the route to diagnosis (the injected emergency-presentation shift) and the
  trust (the injected outlier trust), its mean solved to the published national mean;
* four **yes/no items** (clinical nurse specialist named, told sensitively, involved in
  decisions, support after treatment) are logistic in the same covariates, each intercept
  solved to the published % yes.

The true effects on the observed 0-10 scale (the mean change among the affected respondents,
the same respondents' ratings computed without the shift) go to ``truth/effects.json``.

Example:
    >>> age_log_odds(np.array([20.0, 60.0, 90.0]), {"age_bands": [16, 55, 85], "age_log_odds": [-1, 0, -0.5]})
    array([-1. ,  0. , -0.5])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.synth.screening import YEAR, centred_probabilities

ITEMS = ("cns_name", "told_sensitively", "involved_decisions", "support_after_treatment")
EMERGENCY = "Emergency presentation"


def age_log_odds(age: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Log-odds by age band (``age_bands`` lower bounds, ``age_log_odds`` one value per band).

    Example:
        >>> spec = {"age_bands": [16, 25, 35, 45, 55, 65, 75, 85], "age_log_odds": [-0.9, -0.7, -0.45, -0.2, 0.0, 0.15, 0.0, -0.45]}
        >>> age_log_odds(np.array([16.0, 24.9, 25.0, 70.0, 101.0, 10.0]), spec).tolist()   # below 16: the first band
        [-0.9, -0.9, -0.7, 0.15, -0.45, -0.9]
    """
    bands = np.asarray(spec["age_bands"], dtype=float)
    values = np.asarray(spec["age_log_odds"], dtype=float)
    return values[np.clip(np.searchsorted(bands, age, side="right") - 1, 0, len(values) - 1)]


def sample_frame(tumours: pd.DataFrame, treatments: pd.DataFrame, patients: pd.DataFrame,
                 config: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """The CPES sample: one row per patient and survey year (see the module docstring).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> params = epidemiology_params()   # CPES: April-June episodes, mailed in October
        >>> patients = pd.DataFrame({"patient_id": [1, 2, 3], "sex": [2, 1, 1], "ethnicity": ["White", "Asian", "White"],
        ...                          "deprivation_quintile": [1, 4, 2], "birth_date": pd.to_datetime(["1950-01-01"] * 3),
        ...                          "death_date": pd.to_datetime([None, "2019-08-01", None])})
        >>> tumours = pd.DataFrame({"tumour_id": [10, 20, 30], "site_icd10": ["C50", "C34", "C18"], "stage": ["2", "4", "U"],
        ...                         "route_to_diagnosis": ["Screen detected", "Emergency presentation", "GP referral"],
        ...                         "diagnosing_trust": ["RA1", "RB2", "RA1"]})
        >>> treatments = pd.DataFrame({"patient_id": [1, 1, 2, 3], "tumour_id": [10, 10, 20, 30],
        ...                            "start_date": pd.to_datetime(["2019-05-02", "2019-06-20", "2019-05-10", "2019-09-01"])})
        >>> f = sample_frame(tumours, treatments, patients, {"years": [2015, 2020], "end_of_follow_up": "2021-12-31"}, params)
        >>> print(f[["patient_id", "survey_year", "episode_date", "sex", "site_icd10", "stage", "trust_code"]].to_string())   # 2 died before mailing, 3 was treated in September
           patient_id  survey_year episode_date  sex site_icd10  stage trust_code
        0           1         2019   2019-05-02    2        C50      2        RA1
    """
    sp = params["cpes"]["survey"]
    y0, y1 = config["years"]
    eof = np.datetime64(config["end_of_follow_up"], "D")
    start = treatments["start_date"].to_numpy().astype("datetime64[D]")
    month = start.astype("datetime64[M]").astype(np.int64) % 12 + 1
    year = start.astype("datetime64[Y]").astype(np.int64) + 1970
    keep = np.isin(month, sp["sample_months"]) & (year >= max(y0, int(sp["first_year"]))) & (year <= y1)
    t = treatments.loc[keep, ["patient_id", "tumour_id", "start_date"]].assign(survey_year=year[keep])
    t = t.sort_values(["patient_id", "survey_year", "start_date", "tumour_id"], kind="stable")
    t = t.drop_duplicates(["patient_id", "survey_year"])
    mailing = (t["survey_year"].astype(str) + "-" + str(sp["mailing_month_day"])).to_numpy().astype("datetime64[D]")
    t = t[mailing <= eof]
    mailing = mailing[mailing <= eof]
    pat = patients.set_index("patient_id")
    death = pat["death_date"].reindex(t["patient_id"]).to_numpy().astype("datetime64[D]")
    alive = np.isnat(death) | (death > mailing)
    birth = pat["birth_date"].reindex(t["patient_id"]).to_numpy().astype("datetime64[D]")
    age = (t["start_date"].to_numpy().astype("datetime64[D]") - birth).astype(np.int64) / YEAR
    ok = alive & (age >= float(sp["min_age"]))
    t = t[ok].reset_index(drop=True)
    age = age[ok]
    tum = tumours.set_index("tumour_id")
    out = pd.DataFrame({
        "patient_id": t["patient_id"].to_numpy(), "tumour_id": t["tumour_id"].to_numpy(),
        "survey_year": t["survey_year"].to_numpy().astype(np.int64),
        "episode_date": t["start_date"].to_numpy().astype("datetime64[D]"),
        "age": age,
        "sex": pat["sex"].reindex(t["patient_id"]).to_numpy().astype(np.int64),
        "ethnicity": pat["ethnicity"].reindex(t["patient_id"]).to_numpy(dtype=object),
        "deprivation_quintile": pat["deprivation_quintile"].reindex(t["patient_id"]).to_numpy().astype(np.int64),
        "site_icd10": tum["site_icd10"].reindex(t["tumour_id"]).to_numpy(dtype=object),
        "stage": pd.to_numeric(tum["stage"].reindex(t["tumour_id"]), errors="coerce").fillna(2).to_numpy().astype(
            np.int64),
        "route_to_diagnosis": tum["route_to_diagnosis"].reindex(t["tumour_id"]).to_numpy(dtype=object),
        "trust_code": tum["diagnosing_trust"].reindex(t["tumour_id"]).to_numpy(dtype=object),
    })
    return out


def _rating(latent: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(latent), 0, 10)


def _solve_mean(base: np.ndarray, target: float, iterations: int = 60) -> float:
    """Shift ``c`` with ``mean(clip(round(base + c))) == target`` (bisection; monotone in c)."""
    lo, hi = -20.0, 20.0
    for _ in range(iterations):   # bisection steps
        mid = (lo + hi) / 2
        if _rating(base + mid).mean() > target:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def survey(tumours: pd.DataFrame, treatments: pd.DataFrame, patients: pd.DataFrame,
           config: dict[str, Any], params: dict[str, Any],
           rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The CPES sample with response and answers, and the true effects; see the module docstring.

    Returns ``(frame, effects)``: ``frame`` is :func:`sample_frame` plus ``responded``,
    ``overall_rating`` (NaN for non-respondents) and the :data:`ITEMS` (1.0/0.0, NaN).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> params = epidemiology_params()
        >>> n = 40
        >>> patients = pd.DataFrame({"patient_id": range(n), "sex": [1, 2] * (n // 2), "ethnicity": "White",
        ...                          "deprivation_quintile": [1, 2, 3, 4, 5] * (n // 5),
        ...                          "birth_date": pd.Timestamp("1950-01-01"), "death_date": pd.NaT})
        >>> tumours = pd.DataFrame({"tumour_id": range(n), "site_icd10": "C50", "stage": "2",
        ...                         "route_to_diagnosis": ["GP referral", "Emergency presentation"] * (n // 2),
        ...                         "diagnosing_trust": ["RA1", "RB2"] * (n // 2)})
        >>> treatments = pd.DataFrame({"patient_id": range(n), "tumour_id": range(n), "start_date": pd.Timestamp("2019-05-01")})
        >>> config = {"years": [2015, 2020], "end_of_follow_up": "2021-12-31", "effects": {"cpes": None}}
        >>> frame, effects = survey(tumours, treatments, patients, config, params, np.random.default_rng(1))
        >>> effects["sampled"], effects["responded"], effects["enabled"], effects["outlier_trust"]
        (40, 24, False, None)
        >>> bool(frame.loc[~frame["responded"], ["overall_rating", *ITEMS]].isna().all().all())   # no answers without a response
        True
        >>> sorted(frame["overall_rating"].dropna().unique().tolist()), round(effects["mean_overall_rating"], 2)
        ([7.0, 8.0, 9.0, 10.0], 8.92)
    """
    cp = params["cpes"]
    eff = config["effects"].get("cpes")
    frame = sample_frame(tumours, treatments, patients, config, params)
    n = len(frame)
    rp = cp["response"]
    age = frame["age"].to_numpy()
    q = frame["deprivation_quintile"].to_numpy().astype(float)
    eth = frame["ethnicity"].to_numpy(dtype=object)
    site = frame["site_icd10"].to_numpy(dtype=object)
    lo = (age_log_odds(age, rp) + float(rp["female"]) * (frame["sex"].to_numpy() == 2)
          + float(rp["deprivation_per_quintile"]) * (q - 1)
          + pd.Series(eth).map(rp["ethnicity"]).fillna(0.0).to_numpy(dtype=float)
          + pd.Series(site).map(rp["site"]).fillna(0.0).to_numpy(dtype=float))
    u = rng.random(n)
    p_resp = centred_probabilities(np.zeros(n), lo, np.zeros(n, dtype=np.int64),
                                   np.array([float(cp["published"]["response_rate"])])) if n else np.zeros(0)
    responded = u < p_resp
    # who is affected
    emergency = frame["route_to_diagnosis"].to_numpy(dtype=object) == EMERGENCY
    trusts = frame["trust_code"].to_numpy(dtype=object)
    outlier = None
    shift_ep = shift_trust = item_trust = 0.0
    if eff is not None:
        shift_ep = float(eff["emergency_rating_shift"])
        shift_trust = float(eff["outlier_rating_shift"])
        item_trust = float(eff["outlier_item_log_odds"])
        outlier = eff["outlier_trust"]
        if outlier is None and n:
            counts = pd.Series(trusts).value_counts()
            outlier = str(sorted(counts[counts == counts.max()].index)[0])
    is_out = trusts == outlier if outlier is not None else np.zeros(n, dtype=bool)
    # overall rating
    rr = cp["rating"]
    stage = frame["stage"].to_numpy().astype(float)
    base = (float(rr["stage_per_step"]) * (stage - 1) + float(rr["age_per_10y"]) * (age - 65) / 10
            + float(rr["deprivation_per_quintile"]) * (q - 1) + float(rr["sd"]) * rng.standard_normal(n))
    effect = shift_ep * emergency + shift_trust * is_out
    mu = _solve_mean((base + effect)[responded], float(cp["published"]["mean_overall_rating"])) if responded.any() else 0.0
    rating = _rating(base + effect + mu)
    rating_no_ep = _rating(base + shift_trust * is_out + mu)
    rating_no_trust = _rating(base + shift_ep * emergency + mu)
    out = frame.assign(responded=responded, overall_rating=np.where(responded, rating, np.nan))
    # yes/no items
    ip = cp["items"]
    lo_items = (float(ip["stage_per_step"]) * (stage - 1) + float(ip["age_per_10y"]) * (age - 65) / 10
                + float(ip["deprivation_per_quintile"]) * (q - 1) + float(ip["emergency"]) * emergency
                + item_trust * is_out)
    resp_idx = np.flatnonzero(responded)
    for item in ITEMS:   # four items
        uu = rng.random(n)
        val = np.full(n, np.nan)
        if len(resp_idx):
            p = centred_probabilities(np.zeros(len(resp_idx)), lo_items[resp_idx], np.zeros(len(resp_idx), dtype=np.int64),
                                      np.array([float(cp["published"]["items"][item])]))
            val[resp_idx] = (uu[resp_idx] < p).astype(float)
        out[item] = val
    ep_resp = responded & emergency
    tr_resp = responded & is_out
    effects = {
        "description": "CPES: emergency-presentation patients rate their overall care lower; one trust is an "
                       "outlier (lower rating, less positive items). True effects on the observed 0-10 scale: mean "
                       "change among the affected respondents.",
        "enabled": eff is not None,
        "emergency_rating_shift_latent": shift_ep,
        "emergency_rating_effect": float((rating - rating_no_ep)[ep_resp].mean()) if ep_resp.any() else 0.0,
        "outlier_trust": outlier,
        "outlier_rating_shift_latent": shift_trust,
        "outlier_rating_effect": float((rating - rating_no_trust)[tr_resp].mean()) if tr_resp.any() else 0.0,
        "outlier_item_log_odds": item_trust,
        "sampled": int(n), "responded": int(responded.sum()),
        "response_rate": float(responded.mean()) if n else None,
        "mean_overall_rating": float(rating[responded].mean()) if responded.any() else None,
        "items_yes": {item: float(np.nanmean(out[item].to_numpy())) if responded.any() else None for item in ITEMS},
        "published": cp["published"],
    }
    return out, effects
