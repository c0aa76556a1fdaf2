"""A small hand-built registry (and its reference tables) for examples and tests.

It follows the registry schemas (``registry_lib.linkage.tables``) and the reference schemas
(``registry_lib.synth.tables``), so releases and aggregation can be shown and tested without
running the generator and linkage. The numbers mean nothing epidemiologically; the standard
population is the real ESP 2013 (``params/epidemiology/standard_populations.yaml``).

Example:
    >>> reg, ref = example_registry(n_patients=30, seed=0)
    >>> sorted(reg), sorted(ref)
    (['patient', 'treatment', 'tumour'], ['areas', 'population', 'standard_populations'])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from registry_lib.config import load_yaml
from registry_lib.io import write_parquet
from registry_lib.linkage.tables import PATIENT, TREATMENT, TUMOUR
from registry_lib.nhs_number import generate_nhs_numbers
from registry_lib.paths import project_root
from registry_lib.synth.tables import AREAS, POPULATION, STANDARD_POPULATIONS

_REGIONS = ("North West", "London", "South West")
_SITES = ("C18", "C34", "C50", "C61", "C81")
_GIVEN = ("Alice", "Bilal", "Chen", "Dafydd", "Eve", "Fatima", "George", "Hannah")
_FAMILY = ("Smith", "Khan", "Jones", "Patel", "Evans", "Brown", "Nowak", "Taylor")
_ETHNICITY = ("White", "Asian", "Black", "Mixed", "Other")
YEARS = (2015, 2020)


def standard_population_table(root: Path | None = None) -> pd.DataFrame:
    """The standard populations of ``params/epidemiology/standard_populations.yaml`` as a table."""
    spec = load_yaml((root or project_root()) / "params" / "epidemiology" / "standard_populations.yaml")
    parts = [
        pd.DataFrame({"standard": name, "age_band": s["age_bands"], "weight": s["weights"]})
        for name, s in spec.items()
        if isinstance(s, dict) and "weights" in s
    ]
    df = pd.concat(parts, ignore_index=True)
    df["age_band"] = df["age_band"].astype("int8")
    df["weight"] = df["weight"].astype(float)
    return df


def example_registry(
    n_patients: int = 200, seed: int = 0, *, ndop_share: float = 0.1, n_areas: int = 12
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """A random registry (patient, tumour, treatment) and reference (areas, population, standards).

    Every patient has one or two tumours diagnosed in 2015–2020; about ``ndop_share`` are on the
    national data opt-out; about 3% lack an NHS number; treatments (0–2 per tumour) sometimes
    have no tumour. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    n = int(n_patients)
    area_ids = np.array([f"E0100{k:04d}" for k in range(1, n_areas + 1)])
    areas = pd.DataFrame({
        "area_id": area_ids,
        "region": np.array(_REGIONS)[np.arange(n_areas) % len(_REGIONS)],
        "x": rng.uniform(3e5, 6e5, n_areas),
        "y": rng.uniform(1e5, 6e5, n_areas),
        "deprivation_quintile": (np.arange(n_areas) % 5 + 1).astype("int8"),
        "urban": rng.random(n_areas) < 0.6,
    })
    years = np.arange(YEARS[0], YEARS[1] + 1)
    bands = np.arange(0, 95, 5)
    grid = pd.MultiIndex.from_product([area_ids, years, [1, 2], bands],
                                      names=["area_id", "year", "sex", "age_band"]).to_frame(index=False)
    grid["population"] = rng.integers(40, 400, len(grid)).astype("int32")
    population = grid.astype({"year": "int16", "sex": "int8", "age_band": "int8"})

    nhs = generate_nhs_numbers(n, rng).astype(object)
    nhs[rng.random(n) < 0.03] = None
    birth = pd.Timestamp("1930-01-01") + pd.to_timedelta(rng.integers(0, 60 * 365, n), unit="D")
    area = rng.choice(area_ids, n)
    dep = areas.set_index("area_id").loc[area, "deprivation_quintile"].to_numpy()
    dies = rng.random(n) < 0.3
    death = pd.Series(pd.Timestamp("2021-01-01") + pd.to_timedelta(rng.integers(0, 700, n), unit="D"))
    patient = pd.DataFrame({
        "patient_id": np.arange(1, n + 1, dtype=np.int64),
        "nhs_number": nhs,
        "given_name": rng.choice(_GIVEN, n),
        "family_name": rng.choice(_FAMILY, n),
        "birth_date": birth,
        "sex": rng.integers(1, 3, n).astype("int8"),
        "ethnicity": rng.choice(_ETHNICITY, n),
        "postcode": ("LS" + pd.Series(rng.integers(1, 30, n)).astype(str) + " "
                     + pd.Series(rng.integers(1, 10, n)).astype(str)
                     + rng.choice(list("ABDEFG"), n) + rng.choice(list("HJLNPQ"), n)),
        "area_id": area,
        "deprivation_quintile": dep.astype("int8"),
        "death_date": death.where(dies),
        "death_cause_icd10": pd.Series(rng.choice(_SITES, n)).where(dies),
        "ndop_opted_out": rng.random(n) < ndop_share,
    })

    per = rng.integers(1, 3, n)
    owner = np.repeat(patient["patient_id"].to_numpy(), per)
    m = len(owner)
    diag = pd.Timestamp(f"{YEARS[0]}-01-01") + pd.to_timedelta(rng.integers(0, 6 * 365, m), unit="D")
    born = patient.set_index("patient_id").loc[owner, "birth_date"].to_numpy()
    age = ((diag.to_numpy() - born) / np.timedelta64(1, "D") // 365.25).astype(int)
    tumour = pd.DataFrame({
        "tumour_id": np.arange(101, 101 + m, dtype=np.int64),
        "patient_id": owner,
        "diagnosis_date": diag,
        "age_at_diagnosis": age.astype("int16"),
        "site_icd10": rng.choice(_SITES, m),
        "morphology_icdo3": rng.choice(["8140", "8070", "8500", "9650"], m),
        "behaviour": "3",
        "stage": rng.choice(["1", "2", "3", "4", "U"], m),
        "grade": rng.choice(["G1", "G2", "G3", "GX"], m),
        "laterality": rng.choice(["L", "R", "9"], m),
        "route_to_diagnosis": rng.choice(["TWW", "GP referral", "Emergency presentation"], m),
        "basis_of_diagnosis": rng.choice(["7", "9"], m),
        "diagnosing_trust": rng.choice(["R0A", "RRV", "RTH"], m),
        "area_id": patient.set_index("patient_id").loc[owner, "area_id"].to_numpy(),
        "performance_status": rng.integers(0, 5, m).astype("int8"),
        "comorbidity_score": rng.integers(0, 4, m).astype("int8"),
    })

    per_t = rng.integers(0, 3, m)
    t_idx = np.repeat(np.arange(m), per_t)
    k = len(t_idx)
    modality = rng.choice(["surgery", "sact", "radiotherapy"], k)
    rt = modality == "radiotherapy"
    tid = pd.Series(tumour["tumour_id"].to_numpy()[t_idx], dtype="Int64")
    tid[rng.random(k) < 0.05] = pd.NA
    treatment = pd.DataFrame({
        "treatment_id": np.arange(1001, 1001 + k, dtype=np.int64),
        "patient_id": tumour["patient_id"].to_numpy()[t_idx],
        "tumour_id": tid,
        "modality": modality,
        "start_date": tumour["diagnosis_date"].to_numpy()[t_idx]
        + pd.to_timedelta(rng.integers(5, 200, k), unit="D").to_numpy(),
        "intent": rng.choice(["curative", "adjuvant", "palliative"], k),
        "details": None,
        "regimen": pd.Series(rng.choice(["FOLFOX", "CAPOX", "AC"], k)).where(modality == "sact"),
        "rt_region": pd.Series(rng.choice(["chest", "breast", "pelvis"], k)).where(rt),
        "dose_gy": pd.Series(rng.choice([26.0, 40.0, 50.0], k)).where(rt),
        "fractions": pd.Series(rng.choice([5, 15, 25], k), dtype="Int16").where(rt),
        "procedure_code": pd.Series(rng.choice(["H33.3", "E54.1", "B28.1"], k)).where(modality == "surgery"),
    })
    reference = {
        "areas": areas,
        "population": population,
        "standard_populations": standard_population_table(),
    }
    return {"patient": patient, "tumour": tumour, "treatment": treatment}, reference


def write_example_cohort(path: Path | str, n_patients: int = 200, seed: int = 0, **kwargs) -> Path:
    """Write :func:`example_registry` as a cohort folder (``registry/`` and ``reference/``).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     c = write_example_cohort(Path(d) / "toy", n_patients=20)
        ...     sorted(p.name for p in (c / "registry").iterdir())
        ['patient.parquet', 'treatment.parquet', 'tumour.parquet']
    """
    path = Path(path)
    registry, reference = example_registry(n_patients, seed, **kwargs)
    for name, schema in (("patient", PATIENT), ("tumour", TUMOUR), ("treatment", TREATMENT)):
        write_parquet(registry[name], path / "registry" / f"{name}.parquet", schema)
    for name, schema in (("areas", AREAS), ("population", POPULATION),
                         ("standard_populations", STANDARD_POPULATIONS)):
        write_parquet(reference[name], path / "reference" / f"{name}.parquet", schema)
    return path
