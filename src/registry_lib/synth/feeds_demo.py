"""A small hand-built synthetic truth for examples and tests of the feeds (no incidence model).

:func:`demo_truth` makes areas, trusts, postcodes and a few thousand true patients, tumours and
treatments with the ``truth/`` schemas, using the real identity and opt-out functions, so feed
code can be exercised without the full generator. Its clinical content is deliberately crude
(uniform dates, a handful of sites): do not use it for epidemiology.

Example:
    >>> reference, truth = demo_truth(n_patients=20, seed=0)
    >>> sorted(truth), len(truth["patients"])
    (['patients', 'treatments', 'tumours'], 20)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.synth.identities import assign_identities, make_postcodes
from registry_lib.synth.optouts import assign_optouts
from registry_lib.synth.tables import TRUE_PATIENTS, TRUE_TREATMENTS, TRUE_TUMOURS

DEMO_END = "2023-12-31"
_REGIONS = ("North West", "London", "South West")
_SITES = {  # site: (morphology, laterality)
    "C50": ("8500", "L"), "C61": ("8140", "9"), "C34": ("8070", "R"), "C18": ("8140", "9"),
    "C43": ("8720", "9"), "C81": ("9650", "9"), "C25": ("8140", "9"),
}
_ROUTES = ("Two week wait", "Emergency presentation", "GP referral", "Screening",
           "Other outpatient", "Inpatient elective", "Death certificate only", "Unknown")


def demo_truth(n_patients: int = 2000, seed: int = 0,
               config: dict[str, Any] | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """``(reference, truth)``: areas, trusts, postcodes; patients, tumours and treatments."""
    config = {"end_of_follow_up": DEMO_END, **(config or {})}
    rng = np.random.default_rng(seed)
    n_areas = max(3, n_patients // 20)
    areas = pd.DataFrame({
        "area_id": [f"E01{i:06d}" for i in range(n_areas)],
        "region": np.array(_REGIONS)[np.arange(n_areas) % len(_REGIONS)],
        "x": rng.uniform(0, 600_000, n_areas), "y": rng.uniform(0, 600_000, n_areas),
        "deprivation_quintile": rng.integers(1, 6, n_areas).astype(np.int8),
        "urban": rng.random(n_areas) < 0.8,
    })
    trusts = pd.DataFrame({
        "trust_code": [f"R{c}{d}" for c in "ABC" for d in "AB"],
        "region": np.repeat(_REGIONS, 2),
        "x": rng.uniform(0, 600_000, 6), "y": rng.uniform(0, 600_000, 6),
    })
    postcodes = make_postcodes(areas, rng)

    n = n_patients
    first_diag = np.datetime64("2013-01-01") + rng.integers(0, 3650, n).astype("timedelta64[D]")
    age = rng.integers(20, 95, n)
    birth = first_diag - (age * 365.25 + rng.integers(0, 365, n)).astype(np.int64).astype("timedelta64[D]")
    dies = rng.random(n) < 0.45
    death = first_diag + rng.integers(1, 4000, n).astype("timedelta64[D]")
    death = np.where(dies & (death <= np.datetime64(DEMO_END)), death, np.datetime64("NaT"))
    area_idx = rng.integers(0, n_areas, n)
    patients = pd.DataFrame({
        "patient_id": np.arange(1, n + 1, dtype=np.int64),
        "sex": rng.integers(1, 3, n).astype(np.int8),
        "birth_date": pd.to_datetime(birth),
        "area_id": areas["area_id"].to_numpy()[area_idx],
        "first_diagnosis_date": pd.to_datetime(first_diag),
        "death_date": pd.to_datetime(death),
    })
    patients = assign_identities(patients, postcodes, config, rng)
    patients = assign_optouts(patients, areas, config, rng)
    patients["ethnicity"] = np.array(["White", "Asian", "Black", "Mixed", "Other"])[
        rng.choice(5, n, p=[0.85, 0.07, 0.04, 0.02, 0.02])]
    patients["deprivation_quintile"] = areas["deprivation_quintile"].to_numpy()[area_idx]
    patients["performance_status"] = rng.integers(0, 5, n).astype(np.int8)
    patients["comorbidity_score"] = rng.integers(0, 4, n).astype(np.int8)

    # Tumours: one per patient, plus a later second primary for 8%.
    second = rng.random(n) < 0.08
    t_patient = np.concatenate([np.arange(n), np.flatnonzero(second)])
    t_date = np.concatenate([first_diag, first_diag[second] + rng.integers(200, 2000, int(second.sum())).astype("timedelta64[D]")])
    sites = np.array(list(_SITES))
    t_site = sites[rng.integers(0, len(sites), len(t_patient))]
    nt = len(t_patient)
    stage = rng.integers(1, 5, nt).astype(str)
    tumours = pd.DataFrame({
        "tumour_id": np.arange(1, nt + 1, dtype=np.int64) + 100_000,
        "patient_id": patients["patient_id"].to_numpy()[t_patient],
        "diagnosis_date": pd.to_datetime(t_date),
        "age_at_diagnosis": ((t_date - birth[t_patient]).astype(np.int64) // 365).astype(np.int16),
        "site_icd10": t_site,
        "morphology_icdo3": [_SITES[s][0] for s in t_site],
        "behaviour": "3",
        "stage": stage,
        "stage_recorded": np.where(rng.random(nt) < 0.2, "U", stage),
        "grade": np.array(["G1", "G2", "G3", "G4", "GX"])[rng.integers(0, 5, nt)],
        "laterality": [_SITES[s][1] for s in t_site],
        "route_to_diagnosis": np.array(_ROUTES)[rng.choice(8, nt, p=[0.4, 0.185, 0.15, 0.062, 0.1, 0.05, 0.003, 0.05])],
        "basis_of_diagnosis": np.where(rng.random(nt) < 0.9, "7", "2"),
        "diagnosing_trust": trusts["trust_code"].to_numpy()[
            np.arange(6).reshape(3, 2)[area_idx[t_patient] % 3, rng.integers(0, 2, nt)]],
        "area_id": patients["area_id"].to_numpy()[t_patient],
        "in_cluster": False,
    })
    tumours = tumours[tumours["diagnosis_date"] <= pd.Timestamp(DEMO_END)].reset_index(drop=True)
    # Treatments: 0-3 per tumour, starting within a year of diagnosis.
    k = rng.integers(0, 4, len(tumours))
    tt = np.repeat(np.arange(len(tumours)), k)
    m = len(tt)
    modality = np.array(["surgery", "sact", "radiotherapy"])[rng.integers(0, 3, m)]
    start = tumours["diagnosis_date"].to_numpy().astype("datetime64[D]")[tt] + rng.integers(5, 365, m).astype("timedelta64[D]")
    start = np.minimum(start, np.datetime64(DEMO_END))
    is_s, is_r, is_h = modality == "sact", modality == "radiotherapy", modality == "surgery"
    treatments = pd.DataFrame({
        "treatment_id": np.arange(1, m + 1, dtype=np.int64) + 500_000,
        "patient_id": tumours["patient_id"].to_numpy()[tt],
        "tumour_id": tumours["tumour_id"].to_numpy()[tt],
        "modality": modality,
        "start_date": pd.to_datetime(start),
        "intent": np.array(["curative", "adjuvant", "neoadjuvant", "palliative"])[rng.integers(0, 4, m)],
        "regimen": np.where(is_s, np.array(["FOLFOX", "CAPOX", "AC-T", "ABVD"])[rng.integers(0, 4, m)], None),
        "cycles": pd.arrays.IntegerArray(np.where(is_s, rng.integers(1, 13, m), 0).astype(np.int16), ~is_s),
        "rt_region": np.where(is_r, np.array(["chest", "breast", "pelvis", "mantle"])[rng.integers(0, 4, m)], None),
        "dose_gy": np.where(is_r, 40.0, np.nan),
        "fractions": pd.arrays.IntegerArray(np.where(is_r, 15, 0).astype(np.int16), ~is_r),
        "procedure_code": np.where(is_h, np.array(["B274", "H333", "E541", "M611"])[rng.integers(0, 4, m)], None),
    })
    # A patient's treatments and death: drop treatments after death.
    pdeath = patients.set_index("patient_id")["death_date"].reindex(treatments["patient_id"]).to_numpy()
    keep = pd.isna(pdeath) | (treatments["start_date"].to_numpy() <= pdeath)
    treatments = treatments[keep].reset_index(drop=True)
    cause = np.where(rng.random(n) < 0.7, tumours.groupby("patient_id")["site_icd10"].first()
                     .reindex(patients["patient_id"]).fillna("C80").to_numpy(), "I21")
    patients["death_cause_icd10"] = np.where(patients["death_date"].notna(), cause, None)
    truth = {
        "patients": patients[TRUE_PATIENTS.column_names],
        "tumours": tumours[TRUE_TUMOURS.column_names],
        "treatments": treatments[TRUE_TREATMENTS.column_names],
    }
    reference = {"areas": areas, "trusts": trusts, "postcodes": postcodes}
    return reference, truth
