"""Small simulators with a known truth, for validating the survival methods.

These are not the synthetic-England generator (``registry_lib.synth``): they are minimal,
fast, vectorised simulations whose true effect is known exactly, used by the tests, the
benchmark and the methods notes of the treatment-effects notebook.

- :func:`synthetic_life_table` — a Gompertz life table by calendar year × sex × deprivation
  quintile × single age 0–100, in the registry's ``reference/life_table`` layout.
- :func:`simulate_treatment_cohort` — registry-like ``tumours``, ``patients`` and
  ``treatments`` tables for one site and stage, with confounded treatment (fitter, younger,
  less deprived patients treated more) and a known conditional hazard ratio acting from the
  start of treatment.

Example:
    >>> sim = simulate_treatment_cohort(200, seed=1)
    >>> sorted(sim)
    ['patients', 'treatments', 'truth', 'tumours']
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_life_table(
    years: tuple[int, int] = (1990, 2040),
    *,
    gompertz_a: float = 5e-5,
    gompertz_b: float = 0.095,
    male_ratio: float = 1.3,
    deprivation_step: float = 0.12,
    annual_improvement: float = 0.01,
) -> pd.DataFrame:
    """Gompertz life table: ``mu = a exp(b age) x sex x deprivation x trend`` as ``qx``.

    Example:
        >>> lt = synthetic_life_table((2000, 2001))
        >>> len(lt), list(lt.columns)
        (2020, ['year', 'sex', 'deprivation_quintile', 'age', 'qx'])
    """
    y = np.arange(years[0], years[1] + 1)
    yy, ss, dd, aa = np.meshgrid(y, [1, 2], [1, 2, 3, 4, 5], np.arange(101), indexing="ij")
    mu = (gompertz_a * np.exp(gompertz_b * aa) * np.where(ss == 1, male_ratio, 1.0)
          * (1 + deprivation_step * (dd - 3)) * np.exp(-annual_improvement * (yy - 2010)))
    qx = 1 - np.exp(-np.minimum(mu, 5.0))
    return pd.DataFrame({
        "year": yy.ravel().astype(np.int16), "sex": ss.ravel().astype(np.int8),
        "deprivation_quintile": dd.ravel().astype(np.int8), "age": aa.ravel().astype(np.int8),
        "qx": qx.ravel(),
    })


def simulate_treatment_cohort(
    n: int,
    seed: int,
    *,
    hr: float = 0.7,
    baseline_hazard: float = 0.12,
    years: tuple[int, int] = (2013, 2019),
    end_of_follow_up: str = "2022-12-31",
    treatment_window: tuple[int, int] = (21, 110),
    late_start_share: float = 0.0,
    confounding: float = 1.0,
    strategy: int | None = None,
    site: str = "C18",
    stage: str = "3",
) -> dict:
    """Registry-like tables of a confounded treatment comparison with a known HR.

    Patients (one tumour each) get age, sex, deprivation quintile, WHO performance status
    and comorbidity. Treatment (adjuvant SACT) is more likely in younger, fitter, less
    comorbid, less deprived patients; its start day is uniform in ``treatment_window`` days
    after diagnosis (a share ``late_start_share`` starts 150–300 days after instead). The
    hazard of death is ``baseline_hazard x exp(0.035 (age-68) + 0.35 PS + 0.25 comorbidity +
    0.06 (deprivation-3))``, multiplied by ``hr`` from the start of treatment — so the true
    conditional HR of treatment is ``hr`` and the naive comparison is biased towards benefit.
    A patient who dies before their planned start is untreated. ``strategy=1`` (or 0)
    gives the same patients, all (or none) planned for treatment: the potential outcomes
    under each strategy, from which the true strategy effect can be computed.

    Returns:
        dict with ``tumours``, ``patients``, ``treatments`` (DataFrames following the
        release schemas) and ``truth`` (``hr``, ``end_of_follow_up``, covariate names).

    Example:
        >>> sim = simulate_treatment_cohort(500, seed=3)
        >>> sim["truth"]["hr"], len(sim["tumours"])
        (0.7, 500)
    """
    rng = np.random.default_rng(seed)
    age = np.clip(np.round(rng.normal(68, 11, n)), 25, 95).astype(int)
    sex = rng.integers(1, 3, n)
    dep = rng.integers(1, 6, n)
    ps = np.minimum(rng.poisson(0.5 + 0.02 * np.maximum(age - 60, 0), n), 3)
    com = np.minimum(rng.poisson(0.3 + 0.02 * np.maximum(age - 60, 0), n), 3)
    first, last = (pd.Timestamp(f"{years[0]}-01-01"), pd.Timestamp(f"{years[1]}-12-31"))
    dx = first + pd.to_timedelta(rng.integers(0, (last - first).days + 1, n), unit="D")
    lin = 0.6 + confounding * (1.0 - 0.07 * (age - 68) - 0.9 * ps - 0.5 * com
                               - 0.15 * (dep - 3))
    planned = rng.random(n) < 1 / (1 + np.exp(-lin))
    if strategy is not None:  # potential outcomes: everyone (1) or no one (0) planned
        planned = np.full(n, bool(strategy))
    start = rng.integers(treatment_window[0], treatment_window[1] + 1, n).astype(float)
    late = rng.random(n) < late_start_share
    start[late] = rng.integers(150, 301, int(late.sum()))
    risk = baseline_hazard * np.exp(0.035 * (age - 68) + 0.35 * ps + 0.25 * com
                                    + 0.06 * (dep - 3))
    e = rng.exponential(1.0, n)
    s_years = start / 365.25
    before = ~planned | (e < risk * s_years)
    t_death = np.where(before, e / risk, s_years + (e - risk * s_years) / (risk * hr))
    treated = planned & ~before
    death_day = np.floor(t_death * 365.25).astype(np.int64)
    end = pd.Timestamp(end_of_follow_up)
    death_date = dx + pd.to_timedelta(death_day, unit="D")
    death_date = pd.Series(death_date).where(death_date <= end)
    pid = np.arange(1, n + 1)
    tumours = pd.DataFrame({
        "tumour_id": pid + 100_000, "patient_id": pid, "diagnosis_date": dx,
        "age_at_diagnosis": age, "site_icd10": site, "stage": stage,
        "performance_status": ps, "comorbidity_score": com,
    })
    patients = pd.DataFrame({"patient_id": pid, "sex": sex, "deprivation_quintile": dep,
                             "death_date": death_date.to_numpy()})
    tr_idx = np.flatnonzero(treated)
    treatments = pd.DataFrame({
        "treatment_id": np.arange(tr_idx.size) + 1, "patient_id": pid[tr_idx],
        "tumour_id": pid[tr_idx] + 100_000, "modality": "sact", "intent": "adjuvant",
        "start_date": dx[tr_idx] + pd.to_timedelta(start[tr_idx], unit="D"),
    })
    truth = {"hr": hr, "end_of_follow_up": end_of_follow_up,
             "covariates": ["age_at_diagnosis", "sex", "deprivation_quintile",
                            "performance_status", "comorbidity_score"]}
    return {"tumours": tumours, "patients": patients, "treatments": treatments, "truth": truth}
