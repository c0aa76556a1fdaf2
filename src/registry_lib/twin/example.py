"""A small release-shaped example (patient, tumour, treatment) for docstrings and tests.

Example:
    >>> t = example_release(20, seed=1)
    >>> sorted(t), len(t["patient"])
    (['patient', 'treatment', 'tumour'], 20)
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["example_release"]


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
    pid = np.array([f"p{i:06d}" for i in range(n)], dtype=object)
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
    tumour["tumour_id"] = [f"t{i:06d}" for i in range(len(tumour))]
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
    treatment["treatment_id"] = [f"r{i:06d}" for i in range(len(treatment))]
    return {"patient": patient, "tumour": tumour[["tumour_id", *[c for c in tumour.columns if c != "tumour_id"]]],
            "treatment": treatment[["treatment_id", "pseudo_id", "tumour_id", "modality", "start_date", "intent"]]}
