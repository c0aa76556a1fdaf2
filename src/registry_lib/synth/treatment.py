"""Treatment: who gets surgery, SACT and radiotherapy, which regimen or schedule, and when.

Probabilities by site and true stage come from params/epidemiology/treatment.yaml for a
reference patient; age, performance status, comorbidity and deprivation shift the log-odds, so
fitter patients are treated more (confounding). The injected treatment effect's group (by
default stage 3 colorectal cancer after surgery) gets adjuvant SACT from its own, strongly
confounded assignment model and always starts within the grace window. COVID-19 removes some
SACT starts (by month) and moves breast radiotherapy to 26 Gy in 5 fractions.

Example:
    >>> import numpy as np
    >>> expit_shift(np.array([0.5, 0.0, 1.0]), np.array([0.0, 3.0, -3.0])).round(3).tolist()
    [0.5, 0.0, 1.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.synth.tumours import ROUTE_DCO

MODALITIES = ("surgery", "sact", "radiotherapy")


def expit_shift(p: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``expit(logit(p) + shift)``, keeping probabilities of exactly 0 and 1 fixed.

    Example:
        >>> expit_shift(np.array([0.5]), np.array([np.log(3.0)])).round(3).tolist()   # odds 1 -> 3
        [0.75]
    """
    pc = np.clip(p, 1e-9, 1 - 1e-9)
    out = 1.0 / (1.0 + np.exp(-(np.log(pc / (1 - pc)) + shift)))
    return np.where(p <= 0, 0.0, np.where(p >= 1, 1.0, out))


@dataclass
class TreatmentPlan:
    """Planned treatments (one row each) and per-tumour flags used by the outcome model.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> tumours = pd.DataFrame({"site_icd10": ["C18", "C50", "C61"], "stage": [3, 1, 4], "age": [65.0, 55.0, 80.0],
        ...     "sex": [1, 2, 1], "performance_status": [0, 1, 2], "comorbidity_score": [0, 0, 2],
        ...     "deprivation_quintile": [1, 3, 5], "route_to_diagnosis": ["GP referral", "Screen detected", "Emergency presentation"],
        ...     "diagnosis_date": pd.to_datetime(["2019-01-01", "2019-02-01", "2019-03-01"])})
        >>> plan = plan_treatments(tumours, epidemiology_params(), {}, np.random.default_rng(0))
        >>> isinstance(plan, TreatmentPlan), bool(plan.rows["tumour"].between(0, 2).all())
        (True, True)
    """

    rows: pd.DataFrame            # tumour (row index), modality, offset_days, intent, details
    surgery: np.ndarray           # per tumour: planned surgery
    sact: np.ndarray
    radiotherapy: np.ndarray
    target: np.ndarray            # in the injected treatment effect's eligible group
    target_treated: np.ndarray    # ... and given the adjuvant SACT
    target_start: np.ndarray      # days from diagnosis to that SACT start (nan if none)


def _site_spec(tp: dict[str, Any], site: str) -> dict[str, Any]:
    spec = dict(tp["default"])
    spec.update(tp["sites"].get(site, {}))
    return spec


def _uniform_days(rng: np.random.Generator, n: int, lo_hi: list[float]) -> np.ndarray:
    lo, hi = lo_hi
    return rng.uniform(lo, hi, n)


def _choose(options: list[Any], n: int, rng: np.random.Generator) -> np.ndarray:
    arr = np.empty(len(options), dtype=object)
    arr[:] = options
    return arr[rng.integers(0, len(options), n)]


def plan_treatments(tumours: pd.DataFrame, params: dict[str, Any], effects: dict[str, Any],
                    rng: np.random.Generator) -> TreatmentPlan:
    """Plan treatments for ``tumours`` (columns site_icd10, stage, age, sex, performance_status,
    comorbidity_score, deprivation_quintile, route_to_diagnosis, diagnosis_date).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> tumours = pd.DataFrame({"site_icd10": ["C18", "C50", "C61"], "stage": [3, 1, 4], "age": [65.0, 55.0, 80.0],
        ...     "sex": [1, 2, 1], "performance_status": [0, 1, 2], "comorbidity_score": [0, 0, 2],
        ...     "deprivation_quintile": [1, 3, 5], "route_to_diagnosis": ["GP referral", "Screen detected", "Emergency presentation"],
        ...     "diagnosis_date": pd.to_datetime(["2019-01-01", "2019-02-01", "2019-03-01"])})
        >>> plan = plan_treatments(tumours, epidemiology_params(), {}, np.random.default_rng(0))
        >>> len(plan.surgery) == len(tumours), set(plan.rows["modality"]) <= {"surgery", "sact", "radiotherapy"}
        (True, True)
    """
    tp = params["treatment"]
    n = len(tumours)
    site = tumours["site_icd10"].to_numpy()
    stage = tumours["stage"].to_numpy().astype(int)
    cov = tp["covariates_log_odds"]
    shift = (cov["age_per_10y"] * (tumours["age"].to_numpy() - 70.0) / 10.0
             + cov["performance_status"] * (tumours["performance_status"].to_numpy() - 1)
             + cov["comorbidity"] * (tumours["comorbidity_score"].to_numpy() - 1)
             + cov["deprivation"] * (tumours["deprivation_quintile"].to_numpy() - 3))
    diag = tumours["diagnosis_date"].to_numpy().astype("datetime64[D]")
    year = diag.astype("datetime64[Y]").astype(int) + 1970
    dco = tumours["route_to_diagnosis"].to_numpy() == ROUTE_DCO

    prob = {m: np.zeros(n) for m in MODALITIES}
    neo_share = np.zeros(n)
    specs = {s: _site_spec(tp, s) for s in np.unique(site)}
    for s, spec in specs.items():   # loop over sites
        idx = np.flatnonzero(site == s)
        for m in MODALITIES:
            prob[m][idx] = np.asarray(spec[m], dtype=float)[stage[idx] - 1]
        neo_share[idx] = spec.get("neoadjuvant_share", 0.0)
    hh = tp["hodgkin_historic"]
    hist_hl = (site == hh["site"]) & (year < hh["mantle_before"])
    prob["radiotherapy"][hist_hl] = np.asarray(hh["radiotherapy"], dtype=float)[stage[hist_hl] - 1]

    surgery = (rng.random(n) < expit_shift(prob["surgery"], shift)) & ~dco
    sact = (rng.random(n) < expit_shift(prob["sact"], shift)) & ~dco
    rt = (rng.random(n) < expit_shift(prob["radiotherapy"], shift)) & ~dco
    neo = sact & surgery & (stage >= 2) & (stage <= 3) & (rng.random(n) < neo_share)

    te = effects.get("treatment_effect")
    target = np.zeros(n, dtype=bool)
    if te is not None:
        target = np.isin(site, te["sites"]) & (stage == te["stage"]) & surgery
        a = te["assignment"]
        p0 = a["base_probability"]
        lo = (np.log(p0 / (1 - p0)) + a["age_per_10y"] * (tumours["age"].to_numpy() - 70.0) / 10.0
              + a["performance_status"] * (tumours["performance_status"].to_numpy() - 1)
              + a["comorbidity"] * (tumours["comorbidity_score"].to_numpy() - 1)
              + a["deprivation"] * (tumours["deprivation_quintile"].to_numpy() - 3))
        sact = np.where(target, rng.random(n) < 1 / (1 + np.exp(-lo)), sact)
        neo = neo & ~target

    td = tp["timing_days"]
    sact_first = _uniform_days(rng, n, td["sact_first"])
    surgery_day = np.where(neo, sact_first + _uniform_days(rng, n, td["surgery_after_neoadjuvant"]),
                           _uniform_days(rng, n, td["surgery"]))
    after = surgery_day + _uniform_days(rng, n, td["sact_after_surgery"])
    sact_day = np.where(neo, sact_first, np.where(surgery, after, sact_first))
    if te is not None:
        sact_day = np.where(target, np.minimum(sact_day, te["grace_days"] - 1.0), sact_day)
    intent_sact = np.where(neo, "neoadjuvant", np.where(surgery, "adjuvant", np.where(stage == 4, "palliative", "curative")))
    cyc_rng = tp["cycles"]
    cycles = np.zeros(n, dtype=np.int64)
    for intent, (lo_c, hi_c) in cyc_rng.items():   # four intents
        k = intent_sact == intent
        cycles[k] = rng.integers(lo_c, hi_c + 1, int(k.sum()))
    rt_day = np.where(surgery, np.where(sact & ~neo, sact_day + cycles * 21 + 21, surgery_day)
                      + _uniform_days(rng, n, td["rt_after_surgery"]), _uniform_days(rng, n, td["rt_first"]))
    intent_rt = np.where(stage == 4, "palliative", np.where(surgery, "adjuvant", "curative"))

    covid = effects.get("covid")
    if covid is not None:
        start = diag + np.round(sact_day).astype("timedelta64[D]")
        months = start.astype("datetime64[M]")
        keep_p = np.ones(n)
        for month, m in covid["sact_start_multipliers"].items():   # a few months
            keep_p = np.where(months == np.datetime64(str(month), "M"), float(m), keep_p)
        sact = sact & (rng.random(n) < keep_p)

    # regimens, radiotherapy schedules, procedures
    regimen = np.full(n, None, dtype=object)
    rt_region = np.full(n, None, dtype=object)
    dose = np.full(n, np.nan)
    fractions = np.full(n, -1, dtype=np.int64)
    procedure = np.full(n, None, dtype=object)
    for s, spec in specs.items():   # loop over sites
        idx = np.flatnonzero(site == s)
        regs = spec["regimens"]
        for intent in ("adjuvant", "neoadjuvant", "curative", "palliative"):
            k = idx[intent_sact[idx] == intent]
            if len(k) == 0:
                continue
            options = regs.get(intent) or regs.get("curative") or regs.get("adjuvant") or regs.get("palliative") \
                or tp["default"]["regimens"]["palliative"]
            regimen[k] = _choose(options, len(k), rng)
        procedure[idx] = _choose(spec["opcs"], len(idx), rng)
        for pal in (False, True):
            k = idx[(intent_rt[idx] == "palliative") == pal]
            if len(k) == 0:
                continue
            sched = spec.get("rt_palliative" if pal else "rt_curative") or spec.get("rt_palliative") \
                or tp["default"]["rt_palliative" if pal else "rt_curative"]
            pick = rng.integers(0, len(sched), len(k))
            rt_region[k] = np.array([x[0] for x in sched], dtype=object)[pick]
            dose[k] = np.array([x[1] for x in sched], dtype=float)[pick]
            fractions[k] = np.array([x[2] for x in sched], dtype=np.int64)[pick]
    # Hodgkin lymphoma before the mantle cut-off: mantle field; MOPP before its cut-off
    cur_hl = hist_hl & (intent_rt != "palliative")
    ms = hh["mantle_schedule"]
    rt_region[cur_hl], dose[cur_hl], fractions[cur_hl] = ms[0], float(ms[1]), int(ms[2])
    old = (site == hh["site"]) & (year < hh["mopp_before"])
    regimen[old] = hh["historic_regimen"]
    if covid is not None:
        br = covid["breast_rt_5_fraction"]
        breast = (site == "C50") & (rt_region == "breast")
        rt_start = diag + np.round(rt_day).astype("timedelta64[D]")
        after_switch = rt_start >= np.datetime64(str(br["from"]), "D")
        five = rng.random(n) < np.where(after_switch, br["share_after"], br["share_before"])
        dose[breast & five], fractions[breast & five] = 26.0, 5
    else:
        breast = (site == "C50") & (rt_region == "breast")
        five = rng.random(n) < params["covid"]["breast_rt_5_fraction"]["share_before"]
        dose[breast & five], fractions[breast & five] = 26.0, 5

    cols: dict[str, list[np.ndarray]] = {c: [] for c in ("tumour", "modality", "offset_days", "intent", "regimen",
                                                          "cycles", "rt_region", "dose_gy", "fractions",
                                                          "procedure_code")}
    none = np.full(n, None, dtype=object)
    for m, flag, day, intent in (("surgery", surgery, surgery_day, np.where(stage == 4, "palliative", "curative")),
                                 ("sact", sact, sact_day, intent_sact), ("radiotherapy", rt, rt_day, intent_rt)):
        k = np.flatnonzero(flag)
        cols["tumour"].append(k)
        cols["modality"].append(np.full(len(k), m, dtype=object))
        cols["offset_days"].append(np.floor(day[k]))
        cols["intent"].append(intent[k].astype(object))
        cols["regimen"].append((regimen if m == "sact" else none)[k])
        cols["cycles"].append(cycles[k] if m == "sact" else np.full(len(k), -1))
        cols["rt_region"].append((rt_region if m == "radiotherapy" else none)[k])
        cols["dose_gy"].append(dose[k] if m == "radiotherapy" else np.full(len(k), np.nan))
        cols["fractions"].append(fractions[k] if m == "radiotherapy" else np.full(len(k), -1))
        cols["procedure_code"].append((procedure if m == "surgery" else none)[k])
    rows = pd.DataFrame({c: np.concatenate(v) for c, v in cols.items()})
    rows = rows.sort_values(["tumour", "offset_days", "modality"], kind="stable")
    target_treated = target & sact
    return TreatmentPlan(rows.reset_index(drop=True), surgery, sact, rt, target, target_treated,
                         np.where(target_treated, np.floor(sact_day), np.nan))
