"""A small release-shaped example (patient, tumour, treatment) for docstrings and tests.

Example:
    >>> t = example_release(20, seed=1)
    >>> sorted(t), len(t["patient"])
    (['patient', 'treatment', 'tumour'], 20)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["example_release", "with_linked_tables"]



def _ids(prefix: str, n: int) -> np.ndarray:
    """``prefix`` followed by 0, 1, ... zero-padded to six digits, as an object array."""
    return np.char.mod(f"{prefix}%06d", np.arange(n)).astype(object)


def example_release(n_patients: int = 200, seed: int = 0) -> dict[str, pd.DataFrame]:
    """A research-release-shaped set of tables with the rules real data obey.

    Breast (women), prostate (men) and colon (both) cancers; stage drives treatment and
    survival; a tenth of patients have a second tumour.

    Example:
        >>> t = example_release(100, seed=3)
        >>> {name: table.shape for name, table in t.items()}
        {'patient': (100, 8), 'tumour': (106, 11), 'treatment': (94, 6)}
        >>> tumours = t["tumour"].merge(t["patient"][["pseudo_id", "sex"]], on="pseudo_id")
        >>> {site: sorted(int(x) for x in sex.unique()) for site, sex in tumours.groupby("site_icd10")["sex"]}
        {'C18': [1, 2], 'C50': [2], 'C61': [1]}
        >>> starts = t["treatment"].merge(t["tumour"][["tumour_id", "diagnosis_date"]], on="tumour_id")
        >>> bool((starts["start_date"] > starts["diagnosis_date"]).all())
        True
    """
    rng = np.random.default_rng(seed)
    n = int(n_patients)
    pid = _ids("p", n)
    sex = rng.choice([1, 2], n)
    area = rng.choice([f"E{i:03d}" for i in range(20)], n)
    region = np.array([f"R{int(a[1:]) % 4}" for a in area], dtype=object)
    dep = np.array([int(a[1:]) % 5 + 1 for a in area])
    site = np.where(sex == 2, rng.choice(["C50", "C18"], n, p=[0.6, 0.4]), rng.choice(["C61", "C18"], n, p=[0.6, 0.4]))
    age = np.clip(rng.normal(67, 11, n).round(), 20, 99).astype(int)
    diag = pd.Timestamp("2013-01-01") + pd.to_timedelta(rng.integers(0, 3650, n), unit="D")
    stage = rng.choice(["1", "2", "3", "4"], n, p=[0.3, 0.3, 0.25, 0.15])
    surg = (stage != "4") & (rng.random(n) < 0.8)
    sact = (stage >= "3") & (rng.random(n) < 0.6)
    hazard = 0.02 * np.exp(0.8 * (stage.astype(int) - 1) + 0.03 * (age - 67) - 0.3 * sact)
    surv_days = rng.exponential(365.25 / hazard)
    last_treat = np.where(sact, 150, np.where(surg, 30, 0))
    death_day = np.minimum(np.maximum(surv_days, last_treat + 1), 40_000)
    death = diag + pd.to_timedelta(death_day.astype(int), unit="D")
    end = pd.Timestamp("2024-06-30")
    death = pd.Series(death).where(death <= end)
    patient = pd.DataFrame({"pseudo_id": pid, "sex": sex, "ethnicity": rng.choice(["A", "B", "W"], n, p=[.1, .1, .8]),
                            "deprivation_quintile": dep, "area_id": area, "region": region,
                            "death_date": death.to_numpy(),
                            "death_cause_icd10": np.where(death.notna(), site, None)})
    second = rng.random(n) < 0.1
    t2 = pd.DataFrame({"pseudo_id": pid[second], "diagnosis_date": diag[second] + pd.to_timedelta(400, unit="D"),
                       "age_at_diagnosis": age[second] + 1, "site_icd10": "C18", "stage": "2"})
    tumour = pd.DataFrame({"pseudo_id": pid, "diagnosis_date": diag, "age_at_diagnosis": age, "site_icd10": site,
                           "stage": stage})
    tumour = pd.concat([tumour, t2], ignore_index=True)
    tumour["tumour_id"] = _ids("t", len(tumour))
    tumour["morphology_icdo3"] = np.where(tumour["site_icd10"] == "C50", "8500", "8140")
    tumour["route_to_diagnosis"] = rng.choice(["GP", "Emergency", "Screening"], len(tumour))
    tumour["area_id"] = tumour["pseudo_id"].map(patient.set_index("pseudo_id")["area_id"])
    tumour["performance_status"] = rng.choice(["0", "1", "2"], len(tumour))
    tumour["comorbidity_score"] = rng.integers(0, 4, len(tumour))
    first = tumour.iloc[:n]
    rows = []
    for flag, modality, offset in ((surg, "surgery", 30), (sact, "sact", 90)):
        t = first[flag]
        rows.append(pd.DataFrame({"pseudo_id": t["pseudo_id"].to_numpy(), "tumour_id": t["tumour_id"].to_numpy(),
                                  "modality": modality,
                                  "start_date": t["diagnosis_date"].to_numpy() + pd.to_timedelta(offset, unit="D"),
                                  "intent": "adjuvant" if modality == "sact" else "curative"}))
    treatment = pd.concat(rows, ignore_index=True)
    treatment["treatment_id"] = _ids("r", len(treatment))
    return {"patient": patient, "tumour": tumour[["tumour_id", *[c for c in tumour.columns if c != "tumour_id"]]],
            "treatment": treatment[["treatment_id", "pseudo_id", "tumour_id", "modality", "start_date", "intent"]]}


def with_linked_tables(tables: dict[str, pd.DataFrame], seed: int = 0) -> dict[str, pd.DataFrame]:
    """The example release plus a breast screening history and a CPES survey, as issue 14's.

    Women with breast cancer (C50) aged 50-70 at diagnosis have up to four invitations three
    years apart before it; the latest test is positive a month before diagnosis when the route
    is "Screening", negative otherwise. The survey samples each patient's first treatment of a
    year started in April-June if the patient was alive on 1 October; emergency presentations
    rate their care lower.

    Example:
        >>> t = with_linked_tables(example_release(300, seed=1), seed=1)
        >>> {name: len(t[name]) for name in ("screening", "cpes")}
        {'screening': 135, 'cpes': 66}
        >>> s = t["screening"].merge(t["tumour"][["pseudo_id", "diagnosis_date"]], on="pseudo_id")
        >>> bool((s["invitation_date"] < s["diagnosis_date"]).all()), sorted(t["screening"]["result"].dropna().unique())
        (True, ['negative', 'positive'])
    """
    rng = np.random.default_rng(seed)
    pat, tum, trt = tables["patient"], tables["tumour"], tables["treatment"]
    first = tum.drop_duplicates("pseudo_id").merge(pat[["pseudo_id", "sex", "death_date"]], on="pseudo_id")
    women = first[(first["site_icd10"] == "C50") & first["age_at_diagnosis"].between(50, 70)].reset_index(drop=True)
    rounds = rng.integers(1, 5, len(women))
    rows = women.loc[women.index.repeat(rounds)].reset_index(drop=True)
    k = rows.groupby("pseudo_id").cumcount().to_numpy()
    screened = (rows["route_to_diagnosis"] == "Screening").to_numpy()
    back = np.where(screened, 30, rng.integers(30, 1095, len(rows)))       # days from the latest test to diagnosis
    back = pd.Series(back).groupby(rows["pseudo_id"].to_numpy()).transform("first").to_numpy() + 1095 * k
    test = rows["diagnosis_date"].to_numpy() - pd.to_timedelta(back, unit="D")
    attended = (k == 0) & screened | (rng.random(len(rows)) < 0.8)
    screening = pd.DataFrame({
        "screening_id": _ids("s", len(rows)), "pseudo_id": rows["pseudo_id"].to_numpy(),
        "programme": "breast", "invitation_date": test - pd.to_timedelta(21, unit="D"), "attended": attended,
        "test_type": np.where(attended, "mammogram", None), "test_date": pd.Series(test).where(attended).to_numpy(),
        "result": np.where(attended, np.where((k == 0) & screened, "positive", "negative"), None)})
    start = pd.to_datetime(trt["start_date"])
    ep = trt[start.dt.month.isin([4, 5, 6]).to_numpy()].assign(survey_year=start.dt.year)
    ep = ep.sort_values(["pseudo_id", "survey_year", "start_date"]).drop_duplicates(["pseudo_id", "survey_year"])
    death = ep["pseudo_id"].map(pat.set_index("pseudo_id")["death_date"])
    ep = ep[(death.isna() | (death > pd.to_datetime(ep["survey_year"].astype(str) + "-10-01"))).to_numpy()]
    ep = ep.merge(tum[["tumour_id", "site_icd10", "route_to_diagnosis"]], on="tumour_id")
    responded = rng.random(len(ep)) < 0.6
    rating = np.clip(np.rint(9 - 1.5 * (ep["route_to_diagnosis"] == "Emergency") + rng.normal(0, 1, len(ep))), 0, 10)
    cpes = pd.DataFrame({
        "response_id": _ids("c", len(ep)), "pseudo_id": ep["pseudo_id"].to_numpy(),
        "tumour_id": ep["tumour_id"].to_numpy(), "survey_year": ep["survey_year"].to_numpy(),
        "trust_code": "RX1", "site_icd10": ep["site_icd10"].to_numpy(), "episode_date": ep["start_date"].to_numpy(),
        "responded": responded, "overall_rating": pd.array(np.where(responded, rating, np.nan)).astype("Int8"),
        "cns_name": pd.array(np.where(responded, rng.random(len(ep)) < 0.9, None), dtype="boolean")})
    return {**tables, "screening": screening, "cpes": cpes}
