"""A sequential (synthpop-style) synthesiser of a record-level release: patient → tumours → treatments.

The release's three tables are turned into records the synthesiser can draw one variable at a
time, each from a CART model conditional on the variables drawn before it (the visit sequence):

1. **first tumours** (one record per patient), stratified by the site of the first tumour (a
   separate visit sequence per site with enough patients, the rest pooled): site, sex, age,
   diagnosis date, area, ethnicity, the tumour's fields, its treatment profile (days from
   diagnosis to the first treatment of each modality, number of treatments of each modality)
   and the patient's number of tumours;
2. **later tumours** (``rank`` 2, 3, ...): interval since the first diagnosis, site and fields,
   treatment profile, given the patient's first-tumour record;
3. **treatments**: further treatments of a modality as intervals from its first one, then
   **death**: the interval from the patient's last event (diagnosis or treatment) to death, or
   none, and the cause, given the first tumour and the treatment profile; then the treatment
   details (intent, regimen, radiotherapy region, dose, fractions, procedure);
4. **linked tables**, where the release has them (:mod:`registry_lib.twin.linked`): screening
   histories given the patient's first tumour of the programme's sites (invitations as
   intervals back from its diagnosis), and the CPES survey (who was sampled, who responded and
   the answers) given the episode, a treatment of the twin in the survey's months.

Dates are intervals (from diagnosis, from the first treatment, from the last event), so the
within-patient order of dates holds by construction: later tumours after the first, treatments
on or after their tumour's diagnosis, death on or after every diagnosis and treatment. Numeric
values are smoothed and kept within the original range; values derived from another (region of
an area, deprivation quintile of an area, age at a later diagnosis) are derived, not drawn.
Direct identifiers (NHS number, names, postcode) and free text are never synthesised (left
blank); a birth date, where the release has one, is derived from the twin's own age and date at
first diagnosis; patient and record ids of the twin are new random ids.

Example:
    >>> from registry_lib.twin.example import example_release
    >>> tables = example_release(n_patients=300, seed=1)
    >>> model = fit(tables, patient_key="pseudo_id", seed=7)
    >>> twin = model.sample(200, seed=3)
    >>> len(twin["patient"]), bool(twin["patient"]["pseudo_id"].isin(tables["patient"]["pseudo_id"]).any())
    (200, False)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.twin.cart import CartSampler, SplitSampler, encode_column
from registry_lib.twin.linked import (
    anchors,
    cpes_candidates,
    invitation_days,
    programme_sites,
    screening_records,
)

__all__ = ["IDENTIFIERS", "Synthesiser", "fit", "prepare"]

EPOCH = pd.Timestamp("1970-01-01")
DAY = np.timedelta64(1, "D")
# Never synthesised: left blank in the twin. (A birth date, where a release has one, is not drawn
# from the original either: it is derived from the twin's own age and date at first diagnosis.)
IDENTIFIERS = ("nhs_number", "given_name", "family_name", "postcode", "address", "free_text", "notes")
PATIENT_VARS = ("sex", "ethnicity", "deprivation_quintile", "area_id", "region", "death_date",
                "death_cause_icd10")
TUMOUR_FIELDS = ("morphology_icdo3", "behaviour", "stage", "grade", "laterality", "route_to_diagnosis",
                 "basis_of_diagnosis", "diagnosing_trust", "performance_status", "comorbidity_score")
NUMERIC = {"age_at_diagnosis", "comorbidity_score", "dose_gy", "fractions"}
# Variables drawn within exact cells of their predictors (too many levels for a tree).
AREA_KEYS = ("deprivation_quintile", "region")    # fixed by the area (see Synthesiser.fit)
GROUPED = {"area_id": list(AREA_KEYS), "diagnosing_trust": ["region"]}
# The predictor matrix (synthpop ``predictor.matrix``): a variable is drawn given the variables
# before it that are in CORE or in its own EXTRA list (high-cardinality codes such as area,
# trust or morphology only where they matter), which keeps the trees fast on large releases.
# Ethnicity is in it: a record that lacks ethnicity mostly lacks comorbidity and route too (one
# incomplete notification), a pattern no other predictor carries.
# Stage is drawn given the morphology: a morphology recorded only as "other" lacks a grade twice
# as often and a stage more often; drawn without it, stage was spread evenly over morphologies,
# and the twin had a stage for the records that lacked a grade (stage x grade: the worst pair,
# standardised pMSE 32; 1 given the morphology).
CORE = {"site_icd10", "sex", "age_at_diagnosis", "first_day", "stage", "grade", "deprivation_quintile", "ethnicity",
        "route_to_diagnosis", "performance_status", "comorbidity_score", "rank", "diag_gap", "p_site_icd10",
        "p_sex", "p_age_at_diagnosis", "p_first_day", "p_stage", "p_ethnicity", "modality", "k", "day", "intent",
        "last_gap", "last_extra", "n_tumours", "p_last_gap", "p_death_gap"}
PROFILE = ("first_", "n_")
EXTRA = {"ethnicity": ("region",), "stage": ("morphology_icdo3",), "behaviour": ("morphology_icdo3",), "grade": ("morphology_icdo3",),
         "laterality": ("morphology_icdo3",), "regimen": ("regimen",), "dose_gy": ("rt_region",),
         "fractions": ("rt_region", "dose_gy"), "death_cause_icd10": ("death_gap",),
         "gap_same": ("first",)}
# Few predictors for a many-class target (a classification tree's cost grows with the classes).
NARROW = {"death_cause_icd10": ("site_icd10", "sex", "age_at_diagnosis", "death_gap"),
          "morphology_icdo3": ("site_icd10", "sex", "age_at_diagnosis"),
          "procedure_code": ("site_icd10", "modality", "intent"),
          "regimen": ("site_icd10", "stage", "intent", "k")}


def _predictors(name: str, before: list[str]) -> list[str]:
    """The variables ``name`` is drawn given (see CORE, EXTRA, NARROW)."""
    if name in NARROW:
        return [p for p in before if p in NARROW[name]]
    extra = EXTRA.get(name, ())
    profile = name.startswith(PROFILE) or name in ("death_gap", "last_gap", "last_extra", "intent", "n_tumours")
    return [p for p in before if p in CORE or p in extra or (profile and p.startswith(PROFILE))
            or (p.startswith(PROFILE) and name in TREATMENT_DETAILS)]
TREATMENT_DETAILS = ("intent", "regimen", "rt_region", "dose_gy", "fractions", "procedure_code")
# A treatment's details (intent above all) and further treatments are drawn given the tumour's
# performance status and comorbidity too, not only site, stage and age: chemotherapy for stage 3
# colorectal cancer is adjuvant for 90% of PS 0 patients and 50% of PS 3 in the original, and
# drawn without them the intent lost that gradient, so treatment in the target trial depended less
# on PS and comorbidity than in the original and their adjustment removed less confounding (the
# adjusted HR fell towards the naive one: 0.58-0.75 over twin seeds against 0.746; issue 15).
TREATMENT_COVARIATES = ("performance_status", "comorbidity_score")
# Categorical predictors split on their levels ordered by the target (rpart), see cart.target_order.
ORDER_LEVELS = True
# The last event (as an interval from the first diagnosis) and death are drawn with the first
# tumour, given all of it: drawn after the twin's own treatments, death was conditioned on a last
# event the original's death had cut short (a patient who died early had few treatments), not on
# the original's, which attenuated the effect of stage on death. Later tumours and further
# treatments are then drawn before that last event.
DEATH_IN_FIRST = True
# Variables drawn with a first split forced on one predictor (a tree per stage within the site).
SPLIT_BY: dict[str, str] = {"death_gap": "stage"}
LATER_WITHIN_LAST = True
# The patient's last event is drawn as days after the first tumour's latest first treatment
# (``last_extra``, 0 for three patients in four), and ``last_gap`` derived from it: drawn as a
# smoothed interval from diagnosis, the last event fell before the twin's own first treatments
# for 17% of patients (it was the same day as the latest of them for 74% in the original, 33% in
# the twin), and each such treatment moved the last event, and death after it, later.
LAST_EXTRA = True
# Numeric predictors of the first tumour's trees with many values (date, days to each treatment, last
# event) are seen in at most this many classes (quantiles of the stratum's records); the values
# drawn are still the donors' own. A fully grown tree on a date with thousands of distinct days
# spends most of its splits on it (the date had 40-65% of the impurity decrease of stage, grade,
# route and performance status in the breast stratum), so the leaves mixed the levels of the
# predictors that matter, and associations were diluted (surgery in PS 4 0.25 in the twin vs 0.17,
# death in PS 3 0.75 vs 0.81). Not for later tumours and treatments: their intervals must fit
# within the patient's own (a later tumour before the last event).
PREDICTOR_BINS: int | None = 8
# Only a predictor with more distinct values than this is binned (a date, days to a treatment):
# age (at most ~100 values) stays exact, as incidence rates by age band and age x route need it
# (in 4 classes age x route became the worst pair, standardised pMSE 174).
BIN_MIN_VALUES = 120
# Each site stratum gets its share of the twin's patients exactly (largest remainders), as
# synthpop keeps stratum sizes; drawn at random (multinomial), the number of breast cancers varied
# by +-0.5% from draw to draw on top of the models' own variation, and with it the incidence rates
# the CI overlap compares.
EXACT_STRATA = True


def _latest_first(frame: pd.DataFrame) -> pd.Series:
    """Days from diagnosis to the latest first treatment of any modality (0 without treatment).

    Example:
        >>> _latest_first(pd.DataFrame({"first_day": [1.0, 2.0], "first_sact": [30.0, np.nan],
        ...                             "first_surgery": [12.0, np.nan]})).tolist()
        [30.0, 0.0]
    """
    cols = [c for c in frame.columns if c.startswith("first_") and c != "first_day"]
    if not cols:
        return pd.Series(0.0, index=frame.index)
    days = frame[cols].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    latest = np.where(np.isnan(days).all(axis=1), 0.0, np.nanmax(np.where(np.isnan(days), -np.inf, days), axis=1))
    return pd.Series(np.floor(np.maximum(latest, 0.0)), index=frame.index)
# Draws of a record the original could not hold (after the data's end) repeated at most this often.
REDRAWS = 10
# Linked tables (issue 14): a screening history is drawn given its anchor tumour and patient, a
# CPES episode given its tumour and patient (see registry_lib.twin.linked).
ANCHOR_PATIENT = ("sex", "ethnicity", "deprivation_quintile", "region")
ANCHOR = ("sex", "age_at_diagnosis", "diag_day", "site_icd10", "stage", "route_to_diagnosis",
          "deprivation_quintile", "region", "ethnicity")
CPES_EPISODE = ("survey_year", "trust_code", "site_icd10", "episode_date")   # the rest: response and answers
CPES_GIVEN = (*ANCHOR, "diagnosing_trust", "survey_year", "month", "day", "age_at_episode", "death_after")
# Release columns of the linked tables drawn as days (the rest: drawn, derived or new ids).
LINKED_DATES = {"invitation_date": "inv_day", "test_date": "test_day", "episode_date": "episode_day"}
LINKED_DERIVED = {"trust_code": "diagnosing_trust"}    # a CPES episode's trust is its tumour's


def _is_duration(name: str) -> bool:
    """An interval in days (smoothed on a log scale), not a date or a measurement.

    Example:
        >>> [_is_duration(n) for n in ("death_gap", "first_surgery", "first_day", "dose_gy")]
        [True, True, False, False]
    """
    return name in ("death_gap", "diag_gap", "gap_same", "last_gap", "last_extra", "lag", "wait") or (name.startswith("first_")
                                                                         and name != "first_day")


def _days(s: pd.Series) -> pd.Series:
    return (pd.to_datetime(s) - EPOCH) / DAY


def _dates(days: np.ndarray) -> pd.Series:
    d = np.asarray(days, dtype=float)
    out = pd.Series(pd.NaT, index=range(len(d)), dtype="datetime64[ns]")
    ok = ~np.isnan(d)
    out[ok] = EPOCH + pd.to_timedelta(np.floor(d[ok]), unit="D")
    return out


def _slug(value: Any) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in str(value).lower())


@dataclass
class Prepared:
    """The release as records for the synthesiser (see :func:`prepare`).

    Example:
        >>> from registry_lib.twin.example import example_release
        >>> prep = prepare(example_release(200, seed=1), "pseudo_id")
        >>> len(prep.first), len(prep.later), len(prep.treat), prep.modalities
        (200, 21, 186, ['sact', 'surgery'])
        >>> prep.bounds["age_at_diagnosis"], sorted(prep.lookups)    # region and quintile follow the area
        ((28.0, 98.0), ['deprivation_quintile', 'region'])
    """

    first: pd.DataFrame        # one record per patient: patient fields + first tumour + profile
    later: pd.DataFrame        # later tumours (rank >= 2) with their patient's first-tumour fields
    treat: pd.DataFrame        # treatments with tumour fields, modality rank and day
    modalities: list[str]
    columns: dict[str, list[str]]
    lookups: dict[str, pd.Series]
    bounds: dict[str, tuple[float, float]]
    dropped: dict[str, int] = field(default_factory=dict)
    dtypes: dict[str, dict[str, Any]] = field(default_factory=dict)
    linked: dict[str, dict[str, Any]] = field(default_factory=dict)   # screening, cpes (see linked.py)
    site_first: pd.Series | None = None    # first diagnosis day of each site in the release


def prepare(tables: dict[str, pd.DataFrame], patient_key: str) -> Prepared:
    """Turn a release's ``patient``, ``tumour`` and ``treatment`` tables into synthesiser records.

    Records that cannot take part (a tumour or treatment of no released patient, a treatment of
    no released tumour, a patient with no tumour) are counted in ``dropped`` — the report shows
    them — never silently lost.

    Example (a woman with breast then colon cancer, a man with prostate cancer, a patient with
    no tumour, a tumour of no released patient and a treatment of no released tumour):
        >>> patient = pd.DataFrame({"pseudo_id": ["a", "b", "c"], "sex": [2, 1, 2]})
        >>> tumour = pd.DataFrame({"tumour_id": ["t1", "t2", "t3", "t4"], "pseudo_id": ["a", "a", "b", "z"],
        ...     "diagnosis_date": pd.to_datetime(["2019-01-10", "2020-03-01", "2019-06-01", "2019-07-01"]),
        ...     "age_at_diagnosis": [61, 62, 70, 50], "site_icd10": ["C50", "C18", "C61", "C34"]})
        >>> treatment = pd.DataFrame({"treatment_id": ["r1", "r2", "r3"], "pseudo_id": ["a", "a", "b"],
        ...     "tumour_id": ["t1", "t1", "t9"], "modality": ["surgery", "sact", "surgery"],
        ...     "start_date": pd.to_datetime(["2019-02-09", "2019-04-10", "2019-07-01"])})
        >>> prep = prepare({"patient": patient, "tumour": tumour, "treatment": treatment}, "pseudo_id")
        >>> prep.dropped
        {'patients_without_tumour': 1, 'tumours_without_patient': 1, 'tumours_without_diagnosis_date': 0, 'treatments_without_tumour': 1}
        >>> print(prep.first[["sex", "site_icd10", "n_tumours", "first_surgery", "first_sact", "last_gap"]].to_string())
           sex site_icd10  n_tumours  first_surgery  first_sact  last_gap
        0    2        C50          2           30.0        90.0     416.0
        1    1        C61          1            NaN         NaN       0.0
        >>> print(prep.later[["site_icd10", "rank", "diag_gap", "p_site_icd10"]].to_string())
          site_icd10  rank  diag_gap p_site_icd10
        0        C18     2     416.0          C50
    """
    for name in ("patient", "tumour"):
        if name not in tables:
            raise RegistryLabError(f"twin: the release has no {name} table; a twin needs patient and tumour")
    pat = tables["patient"].copy()
    tum = tables["tumour"].copy()
    trt = tables.get("treatment", pd.DataFrame(columns=[patient_key, "tumour_id", "modality", "start_date"]))
    trt = trt.copy()
    for name, df in (("patient", pat), ("tumour", tum)):
        if patient_key not in df.columns:
            raise RegistryLabError(f"twin: release table {name} has no patient key column {patient_key!r}")
    # integer codes of the patient key and the tumour id: sorting and grouping on them is fast
    pidx = pd.Index(pat[patient_key])
    pat["_p"] = np.arange(len(pat))
    tum["_p"] = pidx.get_indexer(tum[patient_key])
    if len(trt) and patient_key in trt.columns:
        trt["_p"] = pidx.get_indexer(trt[patient_key])
    tum["_t"] = np.arange(len(tum))
    if len(trt) and "tumour_id" in trt.columns:
        trt["_t"] = pd.Index(tum["tumour_id"]).get_indexer(trt["tumour_id"]) if tum["tumour_id"].is_unique \
            else pd.Series(tum["_t"].to_numpy(), index=tum["tumour_id"]).groupby(level=0).first().reindex(
                trt["tumour_id"]).fillna(-1).to_numpy(int)
    dropped = {"patients_without_tumour": int((~pat["_p"].isin(tum["_p"])).sum()),
               "tumours_without_patient": int((tum["_p"] < 0).sum())}
    tum = tum[tum["_p"].isin(pat["_p"])].copy()
    tum["diag_day"] = _days(tum["diagnosis_date"])
    dropped["tumours_without_diagnosis_date"] = int(tum["diag_day"].isna().sum())
    tum = tum[tum["diag_day"].notna()]
    tum = tum.sort_values(["_p", "diag_day", "_t"], kind="stable")
    tum["rank"] = tum.groupby("_p").cumcount() + 1
    tum["n_tumours"] = tum.groupby("_p")["rank"].transform("max")
    first_day = tum.groupby("_p")["diag_day"].transform("min")
    tum["diag_gap"] = tum["diag_day"] - first_day
    if "area_id" in tum.columns and "area_id" in pat.columns:
        pa = pat.set_index("_p")["area_id"]
        tum["same_area"] = (tum["area_id"].astype(object) == tum["_p"].map(pa).astype(object)).astype(int)
        tum = tum.rename(columns={"area_id": "tumour_area_id"})
    # treatments: day from their tumour's diagnosis, order within tumour and modality
    modalities: list[str] = []
    if len(trt) and {"_t", "modality", "start_date"} <= set(trt.columns):
        trt = trt.merge(tum[["_t", "diag_day"]], on="_t", how="left")  # _t -1: no tumour
        dropped["treatments_without_tumour"] = int(trt["diag_day"].isna().sum())
        trt = trt[trt["diag_day"].notna()].copy()
        trt["day"] = _days(trt["start_date"]) - trt["diag_day"]
        trt = trt.sort_values(["_t", "modality", "day"], kind="stable", na_position="last")
        trt["k"] = trt.groupby(["_t", "modality"]).cumcount()
        trt["gap_same"] = trt["day"] - trt.groupby(["_t", "modality"])["day"].transform("first")
        modalities = sorted(trt["modality"].dropna().astype(str).unique())
        for m in modalities:
            sub = trt[trt["modality"] == m]
            tum[f"first_{_slug(m)}"] = tum["_t"].map(sub[sub["k"] == 0].set_index("_t")["day"])
            tum[f"n_{_slug(m)}"] = tum["_t"].map(sub.groupby("_t").size()).fillna(0)
    else:
        trt = pd.DataFrame()
    # last event of each patient (diagnosis or treatment), death as an interval after it
    last = tum.groupby("_p")["diag_day"].max()
    if len(trt):
        tday = (trt["diag_day"] + trt["day"]).groupby(trt["_p"]).max()
        last = pd.concat([last, tday], axis=1).max(axis=1)
    p = pat.set_index("_p")
    lookups: dict[str, pd.Series] = {}
    if "area_id" in p.columns:
        for derived in ("region", "deprivation_quintile"):
            if derived in p.columns:
                m = p.groupby("area_id")[derived].nunique()
                if (m <= 1).all():
                    lookups[derived] = p.dropna(subset=["area_id"]).groupby("area_id")[derived].first()
    first = tum[tum["rank"] == 1].set_index("_p")
    pcols = [c for c in PATIENT_VARS if c in p.columns and c != "death_date"]
    first = first.join(p[pcols])
    first["first_day"] = first["diag_day"]
    first["last_gap"] = last.reindex(first.index) - first["diag_day"]
    # the last event as days after the first tumour's latest first treatment (see LAST_EXTRA)
    first["last_extra"] = first["last_gap"] - _latest_first(first)
    if "death_date" in p.columns:
        first["death_gap"] = _days(p["death_date"]).reindex(first.index) - last.reindex(first.index)
    first = first.reset_index()
    keep = ["sex", "age_at_diagnosis", "first_day", "site_icd10", "stage", "deprivation_quintile",
            "ethnicity", "n_tumours", "area_id", "last_gap", "death_gap"]
    keep = [c for c in keep if c in first.columns]
    later = tum[tum["rank"] >= 2].merge(first[["_p", *keep]].rename(
        columns={c: f"p_{c}" for c in keep}), on="_p", how="left")
    if len(trt):
        tcols = [c for c in ("site_icd10", "stage", "age_at_diagnosis", *TREATMENT_COVARIATES) if c in tum.columns]
        tcols += [c for c in tum.columns if c.startswith(("first_", "n_")) and c != "n_tumours"]
        trt = trt.merge(tum[["_t", *tcols]], on="_t", how="left")
    bounds = {}
    for name, frame in (("age_at_diagnosis", tum), ("diag_day", tum), ("day", trt), ("dose_gy", trt),
                        ("fractions", trt), ("comorbidity_score", tum)):
        if name in frame.columns and frame[name].notna().any():
            v = pd.to_numeric(frame[name], errors="coerce")
            bounds[name] = (float(v.min()), float(v.max()))
    if len(trt) and trt["day"].notna().any():
        bounds["treatment_day"] = (-np.inf, float((trt["diag_day"] + trt["day"]).max()))
    if "death_date" in p.columns and p["death_date"].notna().any():
        bounds["death_day"] = (-np.inf, float(_days(p["death_date"]).max()))
    linked_tables = _prepare_linked(tables, patient_key, pidx, tum.join(p[[c for c in ANCHOR_PATIENT if c in p.columns
                                                                       and c not in tum.columns]], on="_p"),
                                    trt, p, dropped)
    columns = {n: list(tables[n].columns) for n in tables}
    dtypes = {n: dict(tables[n].dtypes) for n in tables}
    site_first = tum.groupby(tum["site_icd10"].astype(str))["diag_day"].min()
    return Prepared(first, later, trt, modalities, columns, lookups, bounds, dropped=dropped, dtypes=dtypes,
                    linked=linked_tables, site_first=site_first)


def _prepare_linked(tables: dict[str, pd.DataFrame], key: str, pidx: pd.Index, tum: pd.DataFrame, trt: pd.DataFrame,
                    p: pd.DataFrame, dropped: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Screening and CPES records (see :mod:`registry_lib.twin.linked`); counts what is left out."""
    out: dict[str, dict[str, Any]] = {}
    scr = tables.get("screening")
    if scr is not None and len(scr) and {key, "programme", "invitation_date"} <= set(scr.columns):
        s = scr.copy()
        s["_p"] = pidx.get_indexer(s[key])
        s["programme"] = s["programme"].astype(str)
        s["inv_day"] = _days(s["invitation_date"])
        s["test_day"] = _days(s["test_date"]) if "test_date" in s.columns else np.nan
        dropped["screening_without_patient"] = int((s["_p"] < 0).sum())
        s = s[(s["_p"] >= 0) & s["inv_day"].notna()]
        sites = programme_sites(tum, s)
        info: dict[str, Any] = {"sites": sites, "anchors": {}, "rows": {}, "sexes": {},
                                "first_day": float(s["inv_day"].min())}
        kept = 0
        for prog, prog_sites in sites.items():
            a = anchors(tum, prog_sites)
            rows = screening_records(s[s["programme"] == prog], a)
            a["n_invitations"] = a["_p"].map(rows.groupby("_p").size()).fillna(0).to_numpy()
            feats = [c for c in ANCHOR if c in a.columns]
            info["anchors"][prog] = a[["_p", *feats, "n_invitations"]]
            info["rows"][prog] = rows.drop(columns=[c for c in feats if c in rows.columns]).merge(
                a[["_p", *feats]], on="_p", how="left")
            info["sexes"][prog] = sorted(a.loc[a["n_invitations"] > 0, "sex"].astype(str).unique()) \
                if "sex" in a.columns else None
            kept += len(rows)
        dropped["screening_without_anchor"] = int(len(s) - kept)
        out["screening"] = info
    cp = tables.get("cpes")
    if cp is not None and len(cp) and len(trt) and {key, "survey_year", "episode_date"} <= set(cp.columns):
        c = cp.copy()
        c["_p"] = pidx.get_indexer(c[key])
        ep = pd.to_datetime(c["episode_date"])
        months = sorted(int(m) for m in ep.dt.month.dropna().unique())
        years = (int(c["survey_year"].min()), int(c["survey_year"].max()))
        cand = cpes_candidates(trt[["_p", "_t", "diag_day", "day"]], months, years)
        cand = _episode_features(cand, tum.set_index("_t"), _days(p["death_date"]) if "death_date" in p.columns
                                 else pd.Series(np.nan, index=p.index), "_p", "_t")
        pairs = pd.MultiIndex.from_arrays([c["_p"], c["survey_year"].astype(int)])
        cand["sampled"] = pd.MultiIndex.from_arrays([cand["_p"], cand["survey_year"]]).isin(pairs).astype(int)
        answers = [a for a in c.columns if a not in (key, "_p", *CPES_EPISODE) and not a.endswith("_id")]
        answers = sorted(answers, key=lambda a: a != "responded")     # the response first, then answers
        first_row = c.drop_duplicates(["_p", "survey_year"]).set_index(["_p", "survey_year"])[answers]
        got = first_row.reindex(pd.MultiIndex.from_arrays([cand["_p"], cand["survey_year"]]))
        for a in answers:
            cand[a] = got[a].to_numpy()
        dropped["cpes_without_episode"] = int(len(c) - cand["sampled"].sum())
        out["cpes"] = {"candidates": cand, "months": months, "years": years, "answers": answers}
    return out


def _episode_features(cand: pd.DataFrame, tum: pd.DataFrame, death_day: pd.Series, patient: str,
                      tumour: str) -> pd.DataFrame:
    """A CPES candidate's tumour and patient fields, age at the episode and days to death."""
    cols = [c for c in (*ANCHOR, "diagnosing_trust") if c in tum.columns and c not in cand.columns]
    cand = cand.join(tum[cols], on=tumour)
    cand["age_at_episode"] = cand["age_at_diagnosis"].astype(float) + cand["day"] / 365.25
    cand["death_after"] = cand[patient].map(death_day).to_numpy(float) - cand["episode_day"].to_numpy(float)
    return cand


@dataclass
class _Step:
    name: str
    kind: str
    predictors: list[str]
    sampler: CartSampler
    integer: bool = False


class _Sequence:
    """A visit sequence fitted on one set of records."""

    def __init__(self, steps: list[_Step], levels: dict[str, pd.Index],
                 derived: dict[str, tuple[str, ...]] | None = None,
                 edges: dict[str, np.ndarray] | None = None) -> None:
        self.steps, self.levels, self.derived = steps, levels, derived or {}
        self.edges = edges or {}

    def encode(self, name: str, values: pd.Series) -> np.ndarray:
        """A predictor as the trees see it (a numeric one by its class, see PREDICTOR_BINS)."""
        return _encode(values, self.levels.get(name), self.edges.get(name))

    @staticmethod
    def _matrix(enc: dict[str, np.ndarray], preds: list[str], n: int) -> np.ndarray:
        return np.column_stack([enc[p] for p in preds]) if preds else np.zeros((n, 0))

    @classmethod
    def fit(cls, data: pd.DataFrame, variables: list[tuple[str, str, bool]], given: list[str],
            min_leaf: int, seed: int, levels: dict[str, pd.Index],
            derived: dict[str, tuple[str, ...]] | None = None, allow: tuple[str, ...] = (),
            bins: int | None = None) -> _Sequence:
        """Fit each variable in turn given those before it (``allow``: predictors beyond CORE;
        ``bins``: numeric predictors seen by the trees in at most this many classes)."""
        steps = []
        before = [g for g in given if g in data.columns]
        edges: dict[str, np.ndarray] = {}

        def encode(name: str) -> np.ndarray:
            if name not in levels and name not in edges:
                edges[name] = _predictor_edges(data[name], bins)
            return _encode(data[name], levels.get(name), edges.get(name))
        enc = {g: encode(g) for g in before}
        for i, (name, kind, integer) in enumerate(variables):
            if name not in data.columns:
                continue
            method = "cart"
            chosen = set(_predictors(name, before)) | set(allow)
            preds = [b for b in before if b in chosen]
            if name in GROUPED:
                method, preds = "group", [c for c in GROUPED[name] if c in enc]
            x = cls._matrix(enc, preds, len(data))
            smooth = kind == "num" and not integer
            options = {"method": method, "min_leaf": min_leaf, "smooth": smooth, "log": _is_duration(name),
                       "seed": seed + i}
            cats = [p in levels for p in preds] if ORDER_LEVELS else None
            split = SPLIT_BY.get(name)
            sampler = SplitSampler(preds.index(split), kind, **options).fit(x, data[name], cats) \
                if split in preds and method == "cart" else CartSampler(kind, **options).fit(x, data[name], cats)
            steps.append(_Step(name, kind, preds, sampler, integer))
            before.append(name)
            enc[name] = encode(name)
            for d in (derived or {}).get(name, ()):
                if d in data.columns:
                    enc[d] = encode(d)
                    if d not in before:   # (drawn before the area it follows from: already there)
                        before.append(d)
        return cls(steps, levels, derived, {k: v for k, v in edges.items() if v is not None})

    def sample(self, frame: pd.DataFrame, rng: np.random.Generator,
               derive: Any = None) -> pd.DataFrame:
        enc: dict[str, np.ndarray] = {}
        for step in self.steps:
            for p in step.predictors:
                if p not in enc:
                    enc[p] = self.encode(p, frame[p])
            values = step.sampler.sample(self._matrix(enc, step.predictors, len(frame)), rng)
            if step.integer:
                values = np.round(values.astype(float))
            frame[step.name] = values
            enc[step.name] = self.encode(step.name, frame[step.name])
            if derive is not None:
                derive(frame, step.name)
            for d in self.derived.get(step.name, ()):
                if d in frame.columns:
                    enc[d] = self.encode(d, frame[d])
        return frame


    def sample_until(self, frame: pd.DataFrame, rng: np.random.Generator, ok: Any,
                     rounds: int = 10) -> tuple[pd.DataFrame, np.ndarray]:
        """Sample, then draw again the records ``ok(frame)`` rejects (at most ``rounds`` times).

        A record the original could not hold (a later tumour after the data's end) is drawn
        again from the same conditional distribution, which is what the original's records
        are: draws conditional on being observed. Returns the frame and the final ``ok`` mask.
        """
        base = frame.copy()
        out = self.sample(frame, rng)
        good = np.asarray(ok(out), dtype=bool)
        for _ in range(rounds):
            if good.all():
                break
            rows = out.index[~good]
            again = self.sample(base.loc[rows].copy(), rng)
            for step in self.steps:
                if step.kind == "cat":
                    out[step.name] = out[step.name].astype(object)
                out.loc[rows, step.name] = again[step.name].to_numpy()
            good = np.asarray(ok(out), dtype=bool)
        return out, good


def _predictor_edges(values: pd.Series, bins: int | None) -> np.ndarray | None:
    """Class edges of a numeric predictor with more than ``bins`` and ``BIN_MIN_VALUES`` values (else None).

    Example (days over 2 years in 4 classes; an age of 80 values stays as it is):
        >>> _predictor_edges(pd.Series(np.arange(730.0)), 4).tolist(), _predictor_edges(pd.Series(np.arange(80.0)), 4)
        ([182.25, 364.5, 546.75], None)
    """
    if not bins:
        return None
    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    v = v[~np.isnan(v)]
    if len(np.unique(v)) <= max(bins, BIN_MIN_VALUES):
        return None
    return np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1]))


def _encode(values: pd.Series, levels: pd.Index | None, edges: np.ndarray | None) -> np.ndarray:
    """:func:`encode_column`, a binned numeric predictor by its class (missing stays below all)."""
    out = encode_column(values, levels)
    if edges is None or levels is not None:
        return out
    return np.where(out > -1e8, np.searchsorted(edges, out, side="right").astype(float), -1.0)


def _allocate(n: int, sizes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``n`` records over strata in proportion to ``sizes`` (largest remainders, ties at random).

    Example:
        >>> _allocate(10, np.array([5.0, 3.0, 2.0]), np.random.default_rng(0)).tolist()
        [5, 3, 2]
        >>> int(_allocate(7, np.array([1.0, 1.0, 1.0]), np.random.default_rng(0)).sum())
        7
    """
    share = n * sizes / sizes.sum()
    out = np.floor(share).astype(int)
    left = n - int(out.sum())
    if left > 0:
        order = np.lexsort((rng.random(len(sizes)), -(share - out)))
        out[order[:left]] += 1
    return out


def _site_strata(first: pd.DataFrame, min_stratum: int) -> pd.Series:
    counts = first["site_icd10"].astype(object).value_counts()
    big = set(counts[counts >= min_stratum].index)
    return first["site_icd10"].astype(object).where(first["site_icd10"].isin(big), "other")


class Synthesiser:
    """A fitted twin model of one release (see :func:`fit`); ``sample(n, seed)`` draws a twin.

    Example:
        >>> from registry_lib.twin.example import example_release
        >>> tables = example_release(100, seed=1)
        >>> model = Synthesiser(prepare(tables, "pseudo_id"), "pseudo_id", seed=1).fit()
        >>> twin = model.sample(60, seed=2)
        >>> {name: list(t.columns) == list(tables[name].columns) for name, t in twin.items()}
        {'patient': True, 'tumour': True, 'treatment': True}
        >>> len(twin["patient"]), model.sample(60, seed=2)["tumour"].equals(twin["tumour"])   # same seed, same twin
        (60, True)
        >>> model.sample(0)
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: twin: size must be a positive number of patients, not 0
    """

    def __init__(self, prepared: Prepared, patient_key: str, *, min_leaf: int = 5,
                 min_stratum: int = 200, seed: int = 0) -> None:
        self.prep, self.patient_key = prepared, patient_key
        self.min_leaf, self.min_stratum, self.seed = min_leaf, min_stratum, seed

    # -- the variables -------------------------------------------------------------------------
    def _tumour_vars(self, df: pd.DataFrame) -> list[tuple[str, str, bool]]:
        out = []
        for c in TUMOUR_FIELDS:
            if c in df.columns:
                out.append((c, "num" if c in NUMERIC else "cat", c in NUMERIC))
        if "same_area" in df.columns:
            out.append(("same_area", "cat", False))
        for m in self.prep.modalities:
            out.append((f"first_{_slug(m)}", "num", False))
            out.append((f"n_{_slug(m)}", "num", True))
        return out

    def _levels(self) -> dict[str, pd.Index]:
        prep = self.prep
        levels = {}
        frames = [prep.first, prep.later, prep.treat]
        cats = {"site_icd10", "sex", "ethnicity", "area_id", "region", "tumour_area_id", "death_cause_icd10",
                "modality", "intent", "regimen", "rt_region", "procedure_code", "same_area",
                *[c for c in TUMOUR_FIELDS if c not in NUMERIC]}
        if "screening" in prep.linked:
            frames += list(prep.linked["screening"]["rows"].values())
            cats |= {"test_type", "result"}
        if "cpes" in prep.linked:
            cand = prep.linked["cpes"]["candidates"]
            frames.append(cand)
            cats |= {a for a in prep.linked["cpes"]["answers"]
                     if not pd.api.types.is_numeric_dtype(cand[a]) or pd.api.types.is_bool_dtype(cand[a])}
        for c in cats:
            series = [f[c] for f in frames if c in f.columns] + [f[f"p_{c}"] for f in frames if f"p_{c}" in f.columns]
            if not series:
                continue
            vals = pd.unique(pd.concat([x.astype(object) for x in series], ignore_index=True).dropna())
            levels[c] = pd.Index(sorted(vals, key=lambda v: (str(type(v)), v)), dtype=object)
        for c in list(levels):
            levels[f"p_{c}"] = levels[c]
        return levels

    def fit(self) -> Synthesiser:
        """Fit every visit sequence (called by :func:`fit`)."""
        prep, seed, ml = self.prep, self.seed, self.min_leaf
        self.levels_ = self._levels()
        first = prep.first = self._strings(prep.first)
        # an area's deprivation quintile and region (fixed by the area) are drawn before it, given
        # sex, age and date, and the area within their cell: drawn from the site's marginal, the
        # area made deprivation independent of age, sex and date
        area_keys = [d for d in AREA_KEYS if d in prep.lookups and d in first.columns]
        head = [("sex", "cat", False), ("age_at_diagnosis", "num", True), ("first_day", "num", False),
                *[(d, "cat", False) for d in area_keys], ("area_id", "cat", False), ("ethnicity", "cat", False)]
        if "area_id" in first.columns:
            for d in ("region", "deprivation_quintile"):
                if d in first.columns and d not in prep.lookups:
                    head.append((d, "cat", False))
        vars1 = head + self._tumour_vars(first) + [("n_tumours", "num", True)]
        if DEATH_IN_FIRST:   # the last event and death, given the whole first record (see DEATH_IN_FIRST)
            vars1 += [("last_extra" if LAST_EXTRA else "last_gap", "num", False), ("death_gap", "num", False),
                      ("death_cause_icd10", "cat", False)]
        self.strata_ = _site_strata(first, self.min_stratum)
        self.first_models_: dict[str, _Sequence] = {}
        self.stratum_sizes_ = self.strata_.value_counts().sort_index()
        given = ["site_icd10"]
        derived = [d for d in ("region", "deprivation_quintile") if d in prep.lookups]
        for j, (stratum, idx) in enumerate(first.groupby(self.strata_, sort=True).groups.items()):
            data = first.loc[idx].copy()
            site_step = CartSampler("cat", method="sample").fit(np.zeros((len(data), 0)), data["site_icd10"])
            seq = _Sequence.fit(data, vars1, given, ml, seed + 1000 * j, self.levels_,
                                derived={"area_id": tuple(derived), "last_extra": ("last_gap",)}, bins=PREDICTOR_BINS)
            self.first_models_[str(stratum)] = (site_step, seq)
        # later tumours
        later = self._strings(prep.later)
        lgiven = [c for c in later.columns if c.startswith("p_")] + ["rank"]
        lvars = [("diag_gap", "num", False), ("site_icd10", "cat", False), ("age_at_diagnosis", "num", True)] \
            + self._tumour_vars(later)
        self.later_model_ = _Sequence.fit(later, lvars, lgiven, ml, seed + 50_000, self.levels_) \
            if len(later) >= 2 * ml else None
        # further treatments of a modality (intervals from the first), then details
        treat = self._strings(prep.treat)
        profile = [c for c in treat.columns if c.startswith(("first_", "n_")) and c != "n_tumours"]
        tgiven = [c for c in ("modality", "k", "site_icd10", "stage", "age_at_diagnosis", *TREATMENT_COVARIATES,
                              *profile) if c in treat.columns]
        more = treat[treat["k"] >= 1] if len(treat) else treat
        self.gap_model_ = _Sequence.fit(more, [("gap_same", "num", False)], tgiven, ml, seed + 60_000,
                                        self.levels_) if len(more) >= 2 * ml else None
        # details one modality at a time (a radiotherapy dose never comes from a surgery record)
        self.detail_models_: dict[str, _Sequence] = {}
        for j, m in enumerate(prep.modalities):
            sub = treat[treat["modality"].astype(str) == m] if len(treat) else treat
            dvars = [(c, "num" if c in NUMERIC else "cat", c == "fractions") for c in TREATMENT_DETAILS
                     if c in sub.columns and sub[c].notna().any()]
            if len(sub) >= 2 * ml and dvars:
                self.detail_models_[m] = _Sequence.fit(sub, dvars, [*tgiven, "day"], ml, seed + 70_000 + 100 * j,
                                                       self.levels_)
        # death, given the first tumour, treatment profile and the last event
        dgiven = ["sex", "age_at_diagnosis", "first_day", "site_icd10", "stage", "grade", "route_to_diagnosis",
                  "deprivation_quintile", "ethnicity", "performance_status", "comorbidity_score", "n_tumours", "last_gap",
                  *[c for c in first.columns if c.startswith(("first_", "n_")) and c not in ("first_day", "n_tumours")]]
        dvars2 = [("death_gap", "num", False), ("death_cause_icd10", "cat", False)]
        # one death model per site stratum: the effect of a treatment on survival differs by site
        # (adjuvant chemotherapy in stage 3 colon cancer vs palliative chemotherapy elsewhere)
        dpred = [c for c in dgiven if c in first.columns]
        self.death_models_: dict[str, _Sequence] = {}
        for j, (stratum, idx) in enumerate(first.groupby(self.strata_, sort=True).groups.items()
                                           if not DEATH_IN_FIRST else []):
            self.death_models_[str(stratum)] = _Sequence.fit(first.loc[idx], dvars2, dpred, ml,
                                                             seed + 80_000 + 10 * j, self.levels_)
        self._fit_linked()
        return self

    def _fit_linked(self) -> None:
        """Screening histories and the CPES survey, where the release has them (linked.py)."""
        prep, ml, seed = self.prep, self.min_leaf, self.seed
        self.screening_models_: dict[str, tuple[_Sequence, _Sequence, _Sequence | None]] = {}
        info = prep.linked.get("screening")
        for j, prog in enumerate(sorted(info["anchors"]) if info else []):
            a, rows = self._strings(info["anchors"][prog]), self._strings(info["rows"][prog])
            feats = [c for c in ANCHOR if c in a.columns]
            if len(a) < 2 * ml:
                continue
            count = _Sequence.fit(a, [("n_invitations", "num", True)], feats, ml, seed + 90_000 + 100 * j,
                                  self.levels_, allow=tuple(feats))
            visits = _Sequence.fit(rows, [("lag", "num", False), ("attended", "cat", False)], [*feats, "k"], ml,
                                   seed + 90_010 + 100 * j, self.levels_, allow=(*feats, "k", "lag"))
            tested = rows[_flag(rows["attended"])]
            tvars = [(c, "num" if c == "wait" else "cat", False) for c in ("wait", "test_type", "result")
                     if c in tested.columns]
            tests = _Sequence.fit(tested, tvars, [*feats, "k", "lag"], ml, seed + 90_020 + 100 * j, self.levels_,
                                  allow=(*feats, "k", "lag", "wait", "test_type")) if len(tested) >= 2 * ml else None
            self.screening_models_[prog] = (count, visits, tests)
        self.cpes_models_: list[tuple[str, _Sequence]] = []
        info = prep.linked.get("cpes")
        if info and info["candidates"]["sampled"].sum() >= 2 * ml:
            cand = self._strings(info["candidates"])
            feats = [c for c in CPES_GIVEN if c in cand.columns]
            answers = info["answers"]
            self.cpes_models_.append(("sampled", _Sequence.fit(cand, [("sampled", "cat", False)], feats, ml,
                                                               seed + 95_000, self.levels_, allow=tuple(feats))))
            rows = cand[cand["sampled"] == 1]
            if "responded" in answers:
                self.cpes_models_.append(("responded", _Sequence.fit(
                    rows, [("responded", "cat", False)], feats, ml, seed + 95_010, self.levels_, allow=tuple(feats))))
                rows = rows[_flag(rows["responded"])]
            avars = [(a, "num" if pd.api.types.is_numeric_dtype(info["candidates"][a])
                      and not pd.api.types.is_bool_dtype(info["candidates"][a]) else "cat", True)
                     for a in answers if a != "responded"]
            avars = [(a, kind, kind == "num") for a, kind, _ in avars]
            if avars and len(rows) >= 2 * ml:
                self.cpes_models_.append(("answers", _Sequence.fit(rows, avars, feats, ml, seed + 95_020, self.levels_,
                                                                   allow=(*feats, *answers))))

    def _strings(self, df: pd.DataFrame) -> pd.DataFrame:
        """Categorical columns as plain Python objects (missing as None) so levels match."""
        df = df.copy()
        for c in self.levels_:
            if c in df.columns:
                df[c] = df[c].astype(object).where(df[c].notna(), None)
        return df

    def _derive(self, frame: pd.DataFrame, name: str) -> None:
        if name == "last_extra":
            frame["last_gap"] = _latest_first(frame) + np.floor(np.maximum(frame["last_extra"].fillna(0), 0))
        if name == "area_id":
            for d, table in self.prep.lookups.items():
                frame[d] = frame["area_id"].map(table)

    # -- generation ----------------------------------------------------------------------------
    def sample(self, n: int, seed: int = 0) -> dict[str, pd.DataFrame]:
        """A twin of ``n`` patients (with their tumours and treatments) as release tables."""
        if int(n) < 1:
            raise RegistryLabError(f"twin: size must be a positive number of patients, not {n}")
        rng = np.random.default_rng([int(seed), int(self.seed)])
        n = int(n)
        prep = self.prep
        # 1. first tumours, stratum by stratum in the original proportions
        sizes = self.stratum_sizes_
        counts = _allocate(n, sizes.to_numpy(float), rng) if EXACT_STRATA else pd.Series(rng.choice(
            np.arange(len(sizes)), size=n, p=(sizes / sizes.sum()).to_numpy())).value_counts().reindex(
            range(len(sizes)), fill_value=0).to_numpy()
        parts = []
        for stratum, m in zip(sizes.index, counts, strict=True):
            m = int(m)
            if not m:
                continue
            site_step, seq = self.first_models_[str(stratum)]
            frame = pd.DataFrame({"site_icd10": site_step.sample(np.zeros((m, 0)), rng)})
            parts.append(seq.sample(frame, rng, self._derive))
        first = pd.concat(parts, ignore_index=True)
        first = first.iloc[rng.permutation(len(first))].reset_index(drop=True)
        self._clip(first, "age_at_diagnosis")
        self._clip(first, "first_day", "diag_day")
        first["first_day"] = np.floor(first["first_day"])
        self._fix_sex_sites(first, rng, self.first_models_)
        if LAST_EXTRA and "last_extra" in first.columns:
            self._last_before_end(first, rng)
        first["n_tumours"] = first["n_tumours"].clip(lower=1).fillna(1).astype(int)
        first["pid"] = np.arange(n)
        first["rank"] = 1
        first["diag_gap"] = 0.0
        # 2. later tumours
        extra = first.loc[first.index.repeat(first["n_tumours"] - 1)]
        if len(extra) and self.later_model_ is not None:
            later = pd.DataFrame({"pid": extra["pid"].to_numpy()})
            later["rank"] = later.groupby("pid").cumcount() + 2
            for c in ("sex", "age_at_diagnosis", "first_day", "site_icd10", "stage", "deprivation_quintile",
                      "ethnicity", "n_tumours", "area_id", "last_gap", "death_gap"):
                if c in extra.columns:
                    later[f"p_{c}"] = extra[c].to_numpy()
            # a later tumour drawn after the data's last diagnosis would not be in the release
            # (the original's later tumours are all before it): it is drawn again, and one still
            # after it is left out, not moved to the last day, where it piled up as a patient
            # just diagnosed and alive
            hi = prep.bounds.get("diag_day", (0, np.inf))[1]
            def fits(f: pd.DataFrame) -> np.ndarray:   # before the data's end (and the patient's last event)
                gap = np.floor(np.maximum(f["diag_gap"].fillna(0), 0))
                room = f["p_last_gap"].fillna(np.inf) if "p_last_gap" in f.columns and LATER_WITHIN_LAST else np.inf
                # nor before the site was first registered (colon cancers in 2005 of a woman with
                # breast cancer from the historic cohort: only C50 and C81 go back before 2013)
                since = f["site_icd10"].astype(str).map(prep.site_first).fillna(-np.inf) \
                    if prep.site_first is not None else -np.inf
                return ((f["p_first_day"] + gap <= hi) & (gap <= room) & (f["p_first_day"] + gap >= since)).to_numpy()
            later, seen = self.later_model_.sample_until(later, rng, fits, REDRAWS)
            # still outside after the redraws (a first tumour late in the data whose leaf's donors
            # all had more time): the interval is drawn uniformly within the room it has, which
            # keeps the drawn number of tumours; none is left where the data's end leaves no room
            room = np.minimum(hi - later["p_first_day"].to_numpy(float),
                              later["p_last_gap"].fillna(np.inf).to_numpy(float)
                              if "p_last_gap" in later.columns and LATER_WITHIN_LAST else np.inf)
            since = (later["site_icd10"].astype(str).map(prep.site_first).fillna(-np.inf).to_numpy(float)
                     if prep.site_first is not None else np.full(len(later), -np.inf))
            low = np.maximum(since - later["p_first_day"].to_numpy(float), 0)
            stuck = ~seen & (room >= low)
            later.loc[stuck, "diag_gap"] = low[stuck] + np.floor(rng.random(int(stuck.sum()))
                                                                 * (room[stuck] - low[stuck] + 1))
            later = later[seen | stuck]
            later["diag_gap"] = np.floor(np.maximum(later["diag_gap"].fillna(0), 0))
            later = later.sort_values(["pid", "diag_gap"], kind="stable")
            later["rank"] = later.groupby("pid").cumcount() + 2
            later["age_at_diagnosis"] = np.floor(later["p_age_at_diagnosis"] + 0.5 + later["diag_gap"] / 365.25)
            self._clip(later, "age_at_diagnosis")
            later["sex"] = later["p_sex"]
            self._fix_sex_sites(later, rng, None)
            for c in ("area_id", "deprivation_quintile", "ethnicity"):
                if f"p_{c}" in later.columns:
                    later[c] = later[f"p_{c}"]
        else:
            later = pd.DataFrame(columns=["pid", "rank", "diag_gap"])
            first["n_tumours"] = 1
        tum_cols = ["pid", "rank", "diag_gap", "site_icd10", "age_at_diagnosis", "sex",
                    *[c for c in first.columns if c in TUMOUR_FIELDS or c.startswith(("first_", "n_"))
                      or c in ("same_area",)]]
        tum = pd.concat([first[[c for c in tum_cols if c in first.columns]],
                         later[[c for c in tum_cols if c in later.columns]]], ignore_index=True)
        tum = tum.sort_values(["pid", "rank"], kind="stable").reset_index(drop=True)
        tum["tid"] = np.arange(len(tum))
        tum["diag_day"] = tum["pid"].map(first.set_index("pid")["first_day"]) + tum["diag_gap"]
        if "last_gap" in first.columns:   # the patient's last event drawn with the first tumour
            tum["limit"] = tum["pid"].map(first.set_index("pid")["first_day"]
                                          + np.floor(np.maximum(first.set_index("pid")["last_gap"].fillna(0), 0)))
        n_t = tum.groupby("pid").size()
        first["n_tumours"] = first["pid"].map(n_t).astype(int)
        # 3. treatments: first of each modality from the profile, further ones as intervals
        trt = self._treatments(tum, rng)
        # 4. death after the last event
        last = tum.groupby("pid")["diag_day"].max()
        if len(trt):
            last = pd.concat([last, (trt["diag_day"] + trt["day"]).groupby(trt["pid"]).max()], axis=1).max(axis=1)
        realised = first["pid"].map(last) - first["first_day"]
        if DEATH_IN_FIRST and "last_gap" in first.columns:   # death after the drawn last event, or a later one
            first["last_gap"] = np.maximum(np.floor(np.maximum(first["last_gap"].fillna(0), 0)), realised)
        else:
            first["last_gap"] = realised
        strata = first["site_icd10"].astype(object).where(
            first["site_icd10"].isin(set(self.death_models_) - {"other"}), "other")
        parts = []
        for stratum in sorted(self.death_models_):
            rows = first[(strata == stratum).to_numpy()]
            if len(rows):
                parts.append(self.death_models_[stratum].sample(rows.copy(), rng))
        first = pd.concat(parts).loc[first.index] if parts else first
        if "death_gap" in first.columns:
            hi = prep.bounds.get("death_day", (0, np.inf))[1]
            if DEATH_IN_FIRST:
                self._deaths_before_end(first, hi, rng)
            gap = np.maximum(first["death_gap"].to_numpy(float), 0)
            death = first["first_day"] + first["last_gap"] + np.floor(gap)
            death = death.where(death <= hi)
            first["death_day"] = death
            first.loc[first["death_day"].isna(), "death_cause_icd10"] = None
        if len(trt):
            for c in TREATMENT_DETAILS:
                trt[c] = np.nan if c in NUMERIC else None
            trt[[c for c in TREATMENT_DETAILS if c not in NUMERIC]] = trt[
                [c for c in TREATMENT_DETAILS if c not in NUMERIC]].astype(object)
            for m, model in self.detail_models_.items():
                rows = np.flatnonzero((trt["modality"] == m).to_numpy())
                if len(rows):
                    sub = model.sample(trt.iloc[rows].copy(), rng)
                    for step in model.steps:
                        trt.iloc[rows, trt.columns.get_loc(step.name)] = sub[step.name].to_numpy()
            for c in ("dose_gy", "fractions"):
                self._clip(trt, c)
        linked = self._sample_linked(first, tum, trt, rng)
        return self._tables(first, tum, trt, rng, linked)

    def _sample_linked(self, first: pd.DataFrame, tum: pd.DataFrame, trt: pd.DataFrame,
                       rng: np.random.Generator) -> dict[str, pd.DataFrame]:
        """The twin's screening histories and CPES rows, linked to its own patients and tumours."""
        out: dict[str, pd.DataFrame] = {}
        pf = first.set_index("pid")
        tp = tum.join(pf[[c for c in ANCHOR_PATIENT if c in pf.columns and c not in tum.columns]], on="pid")
        tp = self._strings(tp)
        info = self.prep.linked.get("screening")
        parts = []
        for prog, (count, visits, tests) in sorted(self.screening_models_.items()):
            a = anchors(tp, info["sites"][prog], patient="pid")
            if info["sexes"][prog] is not None:   # a sex the programme never screens gets no history
                a = a[a["sex"].astype(str).isin(info["sexes"][prog]).to_numpy()]
            if not len(a):
                continue
            a = count.sample(a.reset_index(drop=True), rng)
            n = np.maximum(np.nan_to_num(a["n_invitations"].to_numpy(float)), 0).astype(int)
            rows = a.loc[a.index.repeat(n)].reset_index(drop=True)
            if not len(rows):
                continue
            rows["k"] = rows.groupby("pid").cumcount()
            rows = visits.sample(rows, rng)
            rows["inv_day"] = np.floor(invitation_days(rows["diag_day"].to_numpy(float), rows["pid"].to_numpy(),
                                                       rows["lag"].to_numpy(float)))
            # an invitation before the data's first one would not be recorded (as a later tumour
            # after the data's end): left out
            rows = rows[(rows["inv_day"] >= info["first_day"]).to_numpy()].reset_index(drop=True)
            tested = _flag(rows["attended"])
            for c in ("wait", "test_type", "result"):
                rows[c] = np.nan if c == "wait" else None
            rows[["test_type", "result"]] = rows[["test_type", "result"]].astype(object)
            if tests is not None and tested.any():
                sub = tests.sample(rows[tested].copy(), rng)
                for step in tests.steps:
                    rows.loc[tested, step.name] = sub[step.name].to_numpy()
            rows["test_day"] = rows["inv_day"] + np.floor(np.maximum(rows["wait"].to_numpy(float), 0))
            rows["programme"] = prog
            parts.append(rows)
        if parts:
            out["screening"] = pd.concat(parts, ignore_index=True).sort_values(
                ["pid", "programme", "inv_day"], kind="stable").reset_index(drop=True)
        info = self.prep.linked.get("cpes")
        if self.cpes_models_ and len(trt):
            cand = cpes_candidates(trt[["pid", "tid", "diag_day", "day"]], info["months"], info["years"], "pid", "tid")
            death = pf["death_day"] if "death_day" in pf.columns else pd.Series(np.nan, index=pf.index)
            cand = self._strings(_episode_features(cand, tp.set_index("tid"), death, "pid", "tid"))
            models = dict(self.cpes_models_)
            cand = models["sampled"].sample(cand, rng)
            cand = cand[pd.to_numeric(cand["sampled"]).to_numpy() == 1].reset_index(drop=True)
            said = np.ones(len(cand), dtype=bool)
            if "responded" in models and len(cand):
                cand = models["responded"].sample(cand, rng)
                said = _flag(cand["responded"])
            if "answers" in models:
                steps = models["answers"].steps
                sub = models["answers"].sample(cand[said].copy(), rng) if said.any() else None
                for step in steps:     # no answers without a response
                    values = np.full(len(cand), np.nan if step.kind == "num" else None, dtype=object)
                    if sub is not None:
                        values[said] = sub[step.name].to_numpy()
                    cand[step.name] = values
            out["cpes"] = cand
        return out

    def _last_before_end(self, first: pd.DataFrame, rng: np.random.Generator) -> None:
        """A last event drawn after the data's end is drawn again (up to ``REDRAWS`` times).

        The interval from the latest first treatment to the last event (a later tumour and its
        treatments, for a patient with two) comes from donors diagnosed earlier in the leaf: a
        twin patient diagnosed late got a last event after the data's end and then no death
        (103 of the 2,200 dead patients with two tumours in the default twin, whose deaths fell
        from 0.61 to 0.55). One still after the end is drawn uniformly within the room left.
        """
        end = max(self.prep.bounds.get("diag_day", (0, -np.inf))[1],
                  self.prep.bounds.get("treatment_day", (0, -np.inf))[1])
        if not np.isfinite(end):
            return
        strata = first["site_icd10"].astype(object).where(first["site_icd10"].isin(set(self.first_models_)), "other")
        base = (first["first_day"] + _latest_first(first)).to_numpy(float)
        for _ in range(REDRAWS + 1):
            extra = np.floor(np.maximum(first["last_extra"].fillna(0).to_numpy(float), 0))
            late = base + extra > end
            if not late.any():
                break
            for stratum in sorted(pd.unique(strata[late])):
                rows = np.flatnonzero(late & (strata == stratum).to_numpy())
                seq = self.first_models_[str(stratum)][1]
                step = next((st for st in seq.steps if st.name == "last_extra"), None)
                if step is None:
                    continue
                sub = first.iloc[rows]
                x = np.column_stack([seq.encode(c, sub[c]) for c in step.predictors]) \
                    if step.predictors else np.zeros((len(rows), 0))
                first.iloc[rows, first.columns.get_loc("last_extra")] = step.sampler.sample(x, rng)
        extra = np.floor(np.maximum(first["last_extra"].fillna(0).to_numpy(float), 0))
        room = end - base
        late = (base + extra > end) & (room >= 0)
        extra[late] = np.floor(rng.random(int(late.sum())) * (room[late] + 1))
        first["last_extra"] = extra
        first["last_gap"] = _latest_first(first) + extra

    def _deaths_before_end(self, first: pd.DataFrame, hi: float, rng: np.random.Generator) -> None:
        """A death drawn after the data's end is drawn again, given death (up to ``REDRAWS`` times).

        Whether a patient died was drawn given the whole first record; the interval comes from
        the leaf's donors, whose deaths all fell before the data's end but after diagnoses
        spread over years: a twin patient diagnosed late in a leaf got a donor's long interval
        and a death after the end, so deaths among recent diagnoses fell short. One that stays
        after the end is drawn uniformly within the room left.
        """
        strata = first["site_icd10"].astype(object).where(first["site_icd10"].isin(set(self.first_models_)), "other")
        for _ in range(REDRAWS + 1):
            gap = first["death_gap"].to_numpy(float)
            late = ~np.isnan(gap) & (first["first_day"] + first["last_gap"] + np.floor(np.maximum(gap, 0)) > hi
                                     ).to_numpy()
            if not late.any():
                return
            for stratum in sorted(pd.unique(strata[late])):
                rows = np.flatnonzero(late & (strata == stratum).to_numpy())
                seq = self.first_models_[str(stratum)][1]
                step = next((st for st in seq.steps if st.name == "death_gap"), None)
                if step is None:
                    continue
                sub = first.iloc[rows]
                x = np.column_stack([seq.encode(c, sub[c]) for c in step.predictors]) \
                    if step.predictors else np.zeros((len(rows), 0))
                first.iloc[rows, first.columns.get_loc("death_gap")] = step.sampler.sample(x, rng, present=True)
        room = hi - (first["first_day"] + first["last_gap"]).to_numpy(float)
        gap = first["death_gap"].to_numpy(float)
        late = ~np.isnan(gap) & (np.floor(np.maximum(gap, 0)) > room) & (room >= 0)
        first.loc[late, "death_gap"] = np.floor(rng.random(int(late.sum())) * (room[late] + 1))

    def _treatments(self, tum: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        rows = []
        hi = self.prep.bounds.get("day", (0, np.inf))[1]
        present = [m for m in self.prep.modalities if f"first_{_slug(m)}" in tum.columns]
        for m in present:  # a profile consistent with itself: days on or after diagnosis, counts >= 1
            s = _slug(m)
            first_day = np.floor(np.clip(tum[f"first_{s}"].to_numpy(float), 0, hi))
            tum[f"first_{s}"] = first_day
            tum[f"n_{s}"] = np.where(np.isnan(first_day), 0,
                                     np.maximum(np.nan_to_num(tum[f"n_{s}"].to_numpy(float)), 1))
        for m in present:
            s = _slug(m)
            first_day = tum[f"first_{s}"].to_numpy(float)
            count = tum[f"n_{s}"].to_numpy(float)
            idx = np.repeat(np.arange(len(tum)), count.astype(int))
            if not len(idx):
                continue
            keep = [c for c in ("pid", "tid", "site_icd10", "stage", "age_at_diagnosis", *TREATMENT_COVARIATES,
                                "diag_day", "limit") if c in tum.columns]
            keep += [c for c in tum.columns if c.startswith(("first_", "n_")) and c != "n_tumours"]
            part = tum.iloc[idx][keep].reset_index(drop=True)
            part["modality"] = m
            part["k"] = part.groupby("tid").cumcount()
            part["first"] = np.floor(np.clip(first_day[idx], 0, hi))
            rows.append(part)
        if not rows:
            return pd.DataFrame()
        trt = pd.concat(rows, ignore_index=True)
        trt["gap_same"] = 0.0
        more = trt["k"] >= 1
        if more.any() and self.gap_model_ is not None:
            last = self.prep.bounds.get("treatment_day", (0, np.inf))[1]   # drawn again after the data end
            sub, _ = self.gap_model_.sample_until(
                trt.loc[more].copy(), rng,
                lambda f: f["diag_day"] + np.floor(f["first"] + np.maximum(f["gap_same"].fillna(0), 0))
                <= np.minimum(last, f["limit"] if "limit" in f.columns else np.inf),
                REDRAWS)
            trt.loc[more, "gap_same"] = np.maximum(sub["gap_same"].fillna(0).to_numpy(float), 0)
        trt["day"] = np.floor(np.minimum(trt["first"] + trt["gap_same"], hi))
        last = self.prep.bounds.get("treatment_day", (0, np.inf))[1]   # no treatment after the data end:
        trt = trt[(trt["diag_day"] + trt["day"] <= last).to_numpy()]      # not recorded, as a later tumour
        return trt.sort_values(["pid", "tid", "day", "modality"], kind="stable").reset_index(drop=True)

    def _clip(self, frame: pd.DataFrame, column: str, bound: str | None = None) -> None:
        b = self.prep.bounds.get(bound or column)
        if b is not None and column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").clip(b[0], b[1])

    def _fix_sex_sites(self, frame: pd.DataFrame, rng: np.random.Generator, _models: Any) -> None:
        """Sex-specific sites keep their sex: a site the other sex cannot have is re-drawn.

        Female genital organs (C51-C58) only in women (sex 2), male genital organs (C60-C63) only
        in men (sex 1), and no pair of sex and site the original never has; a bad site is
        re-drawn from the original first tumours of that sex that obey the rule.
        """
        donors = self.prep.first[["sex", "site_icd10"]].dropna().astype(str)
        donors = donors[~_wrong_sex(donors["sex"], donors["site_icd10"])]
        seen = pd.MultiIndex.from_arrays([donors["sex"], donors["site_icd10"]]).unique()
        for _ in range(20):
            sex, site = frame["sex"].astype(str), frame["site_icd10"].astype(str)
            known = pd.MultiIndex.from_arrays([sex, site]).isin(seen)
            bad = ~known | _wrong_sex(sex, site).to_numpy()
            if not bad.any():
                return
            for sx in pd.unique(sex[bad]):
                rows = np.flatnonzero(bad & (sex == sx).to_numpy())
                pool = donors.loc[donors["sex"] == sx, "site_icd10"].to_numpy()
                if len(pool):
                    frame.iloc[rows, frame.columns.get_loc("site_icd10")] = pool[rng.integers(0, len(pool), len(rows))]
        # what is left cannot be fixed by re-drawing (no donor of that sex): reported by check_rules

    def _tables(self, first: pd.DataFrame, tum: pd.DataFrame, trt: pd.DataFrame,
                rng: np.random.Generator, linked: dict[str, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
        key, cols = self.patient_key, self.prep.columns
        pids = _new_ids(len(first), rng, 16)
        tids = _new_ids(len(tum), rng, 16)
        pid_of = pd.Series(pids, index=first["pid"].to_numpy())
        tid_of = pd.Series(tids, index=tum["tid"].to_numpy())
        out: dict[str, pd.DataFrame] = {}
        pat = pd.DataFrame({key: pids})
        for c in cols["patient"]:
            if c == key:
                continue
            if c == "death_date":
                pat[c] = _dates(first["death_day"].to_numpy()) if "death_day" in first.columns else pd.NaT
            elif c == "birth_date":
                age = first["age_at_diagnosis"].to_numpy(float) + rng.random(len(first))
                pat[c] = _dates(np.floor(first["first_day"].to_numpy(float) - age * 365.25))
            elif c in first.columns and c not in IDENTIFIERS:
                pat[c] = first[c].to_numpy()
            else:
                pat[c] = None
        out["patient"] = pat
        t = pd.DataFrame({"tumour_id": tids, key: tum["pid"].map(pid_of).to_numpy()})
        area = tum["pid"].map(first.set_index("pid")["area_id"]) if "area_id" in first.columns else None
        for c in cols["tumour"]:
            if c in ("tumour_id", key):
                continue
            if c == "diagnosis_date":
                t[c] = _dates(tum["diag_day"].to_numpy())
            elif c == "area_id" and area is not None:
                t[c] = area.to_numpy()
            elif c in tum.columns and c not in IDENTIFIERS:
                t[c] = tum[c].to_numpy()
            else:
                t[c] = None
        out["tumour"] = t
        if "treatment" in cols:
            tr = pd.DataFrame({"treatment_id": _new_ids(len(trt), rng, 16)})
            if len(trt):
                tr[key] = trt["pid"].map(pid_of).to_numpy()
                tr["tumour_id"] = trt["tid"].map(tid_of).to_numpy()
                for c in cols["treatment"]:
                    if c in ("treatment_id", key, "tumour_id"):
                        continue
                    if c == "start_date":
                        tr[c] = _dates((trt["diag_day"] + trt["day"]).to_numpy())
                    elif c in trt.columns and c not in IDENTIFIERS:
                        tr[c] = trt[c].to_numpy()
                    else:
                        tr[c] = None
            else:
                tr = pd.DataFrame(columns=cols["treatment"])
            out["treatment"] = tr[cols["treatment"]]
        for name in self.prep.linked:
            if name not in cols:
                continue
            frame = (linked or {}).get(name, pd.DataFrame(columns=["pid", "tid"]))
            t = pd.DataFrame(index=range(len(frame)))
            for c in cols[name]:
                if c == key:
                    t[c] = frame["pid"].map(pid_of).to_numpy()
                elif c == "tumour_id" and "tid" in frame.columns:
                    t[c] = frame["tid"].map(tid_of).to_numpy()
                elif c in LINKED_DATES:
                    t[c] = _dates(frame[LINKED_DATES[c]].to_numpy()) if LINKED_DATES[c] in frame.columns else pd.NaT
                elif LINKED_DERIVED.get(c) in frame.columns:
                    t[c] = frame[LINKED_DERIVED[c]].to_numpy()
                elif c in frame.columns and c not in IDENTIFIERS:
                    t[c] = frame[c].to_numpy()
                elif c.endswith("_id"):
                    t[c] = _new_ids(len(frame), rng, 16)
                else:
                    t[c] = None
            out[name] = t
        return {n: _cast(df[cols[n]], self.prep.dtypes.get(n, {})) for n, df in out.items()}


def _wrong_sex(sex: pd.Series, site: pd.Series) -> pd.Series:
    """A site of the other sex's genital organs (ICD-10 C51-C58 female, C60-C63 male).

    Sex as a number, whatever its type (a release with a missing sex stores it as 2.0: compared
    as text, "2.0" was never "2" and a woman with prostate cancer copied from the original's
    error passed).

    Example:
        >>> _wrong_sex(pd.Series(["2.0", "1", 2.0, "1.0"]), pd.Series(["C61", "C61", "C50", "C53"])).tolist()
        [True, False, False, True]
    """
    s3 = site.astype(str).str[:3]
    code = pd.to_numeric(sex.astype(object), errors="coerce")
    return (s3.between("C51", "C58") & (code == 1)) | (s3.between("C60", "C63") & (code == 2))


def _cast(df: pd.DataFrame, dtypes: dict[str, Any]) -> pd.DataFrame:
    """Columns back to the original release's dtypes (where the values allow it)."""
    df = df.copy()
    for c, dtype in dtypes.items():
        if c in df.columns and df[c].dtype != dtype:
            try:
                df[c] = df[c].astype(dtype)
            except (TypeError, ValueError):
                if pd.api.types.is_integer_dtype(dtype):
                    df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64" if df[c].isna().any() else dtype)
    return df


def _new_ids(n: int, rng: np.random.Generator, length: int) -> np.ndarray:
    """``n`` distinct new random hexadecimal ids (never an id of the original)."""
    raw = rng.integers(0, 16, size=(n, length), dtype=np.int8)
    ascii_digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[raw]    # one byte per digit
    text = np.ascontiguousarray(ascii_digits).view(f"S{length}").ravel().astype(str)
    ids = np.char.add("tw", text).astype(object)
    if pd.Index(ids).has_duplicates:  # astronomically unlikely; a counter suffix makes them distinct
        ids = np.char.add(ids.astype(str), np.char.mod("%x", np.arange(n))).astype(object)
    return ids


def fit(tables: dict[str, pd.DataFrame], patient_key: str, *, min_leaf: int = 5, min_stratum: int = 200,
        seed: int = 0) -> Synthesiser:
    """Fit the sequential CART synthesiser to a release's tables.

    Args:
        tables: ``{"patient": ..., "tumour": ..., "treatment": ...}`` as :func:`load_release` gives.
        patient_key: the release's patient key column (``release.json`` ``patient_key``).
        min_leaf: minimum records per leaf of every tree (synthpop ``minbucket``).
        min_stratum: first tumours of a site with fewer patients than this share one stratum.
        seed: seed of the trees (the twin's own seed is given to ``sample``).

    Example (a twin obeys the rules real data obey, and none of its ids is an original one):
        >>> from registry_lib.twin.example import example_release
        >>> from registry_lib.twin.run import check_rules
        >>> tables = example_release(100, seed=1)
        >>> twin = fit(tables, "pseudo_id", seed=1).sample(80, seed=2)
        >>> len(twin["patient"]), check_rules(twin, "pseudo_id", (20, 99))
        (80, {'death_before_diagnosis': 0, 'sex_specific_site_wrong_sex': 0, 'age_out_of_range': 0, 'treatment_before_diagnosis': 0, 'treatment_after_death': 0})
        >>> bool(twin["tumour"]["tumour_id"].isin(tables["tumour"]["tumour_id"]).any())
        False
        >>> fit({"tumour": tables["tumour"]}, "pseudo_id")
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: twin: the release has no patient table; a twin needs patient and tumour
    """
    return Synthesiser(prepare(tables, patient_key), patient_key, min_leaf=min_leaf,
                       min_stratum=min_stratum, seed=seed).fit()


def _flag(values: pd.Series) -> np.ndarray:
    """A yes/no column (bool, 0/1 or objects, missing as no) as a boolean array.

    Example:
        >>> _flag(pd.Series([True, None, False, 1], dtype=object)).tolist()
        [True, False, False, True]
    """
    v = values.astype(object)
    return v.where(v.notna(), False).astype(bool).to_numpy()
