"""Summaries behind the cohort overview: does synthetic England look like England?

Pure functions on the generator's truth tables and the published figures in
``params/epidemiology/``. The overview notebook is their only caller besides the tests.

Example:
    >>> t = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2019-01-05", "2019-06-01"]),
    ...                   "behaviour": ["3", "3"], "site_icd10": ["C50", "C61"]})
    >>> registrations_vs_published(t, scale=0.001, published={2019: 2100})[["year", "england_equivalent", "ratio"]]
       year  england_equivalent     ratio
    0  2019              2000.0  0.952381
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

AGE_BANDS = np.arange(0, 95, 5)


def _malignant(tumours: pd.DataFrame) -> pd.DataFrame:
    return tumours[tumours["behaviour"].astype(str) == "3"]


def registrations_vs_published(tumours: pd.DataFrame, scale: float, published: Mapping[int, int]) -> pd.DataFrame:
    """Malignant registrations per year, scaled to England (÷ scale), against published totals.

    Example:
        >>> t = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2019-01-05", "2020-06-01", "2020-07-01"]),
        ...                   "behaviour": ["3", "3", "2"], "site_icd10": ["C50", "C61", "D05"]})
        >>> registrations_vs_published(t, 0.001, {2019: 1000, 2020: 2000})["ratio"].tolist()   # in situ D05 left out
        [1.0, 0.5]
    """
    t = _malignant(tumours)
    years = t["diagnosis_date"].dt.year
    counts = years.value_counts().sort_index()
    out = pd.DataFrame({"year": counts.index.astype(int), "generated": counts.to_numpy()})
    out["england_equivalent"] = out["generated"] / scale
    out["published"] = out["year"].map({int(k): v for k, v in published.items()})
    out = out.dropna(subset=["published"]).reset_index(drop=True)
    out["ratio"] = out["england_equivalent"] / out["published"]
    return out


def sites_vs_published(tumours: pd.DataFrame, scale: float, site_params: Mapping[str, Mapping],
                       year: int) -> pd.DataFrame:
    """Registrations by site in ``year``, scaled to England, against the calibration counts.

    Example:
        >>> t = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2019-01-05", "2019-06-01", "2019-07-01"]),
        ...                   "behaviour": ["3", "3", "3"], "site_icd10": ["C50", "C50", "C61"]})
        >>> params = {"C50": {"name": "Breast", "female": 2000}, "C61": {"name": "Prostate", "male": 1000}}
        >>> sites_vs_published(t, 0.001, params, 2019)[["site", "england_equivalent", "ratio"]].values.tolist()
        [['Breast', 2000.0, 1.0], ['Prostate', 1000.0, 1.0]]
    """
    t = _malignant(tumours)
    t = t[t["diagnosis_date"].dt.year == year]
    generated = t["site_icd10"].value_counts()
    rows = []
    for site, p in site_params.items():
        published = float(p.get("male", 0)) + float(p.get("female", 0))
        rows.append({"site_icd10": site, "site": p.get("name", site), "published": published,
                     "england_equivalent": generated.get(site, 0) / scale})
    out = pd.DataFrame(rows)
    out["ratio"] = out["england_equivalent"] / out["published"]
    return out.sort_values("published", ascending=False).reset_index(drop=True)


def age_band(age: pd.Series) -> pd.Series:
    """Lower bound of the 5-year age band (90 = 90+).

    Example:
        >>> age_band(pd.Series([0, 44, 45, 97])).tolist()
        [0, 40, 45, 90]
    """
    return (np.minimum(age.to_numpy() // 5 * 5, 90)).astype(int)


def age_sex_pyramid(tumours: pd.DataFrame, patients: pd.DataFrame) -> pd.DataFrame:
    """Share of tumours by 5-year age band and sex (rows: bands; columns male, female).

    Example:
        >>> tumours = pd.DataFrame({"patient_id": [1, 2, 3, 4], "age_at_diagnosis": [62, 64, 71, 66]})
        >>> patients = pd.DataFrame({"patient_id": [1, 2, 3, 4], "sex": [1, 2, 2, 1]})
        >>> p = age_sex_pyramid(tumours, patients)
        >>> p.loc[60].tolist(), p.loc[70].tolist(), float(p.to_numpy().sum())
        ([0.25, 0.25], [0.0, 0.25], 1.0)
    """
    t = tumours.merge(patients[["patient_id", "sex"]], on="patient_id")
    t = t.assign(age_band=age_band(t["age_at_diagnosis"]), sex=t["sex"].map({1: "male", 2: "female"}))
    table = pd.crosstab(t["age_band"], t["sex"], normalize=True).reindex(AGE_BANDS, fill_value=0)
    return table.reindex(columns=["male", "female"], fill_value=0)


def shares(df: pd.DataFrame, column: str, by: str | None = None) -> pd.DataFrame:
    """Proportions of ``column`` (within each ``by`` group when given).

    Example:
        >>> df = pd.DataFrame({"sex": [1, 1, 2, 2], "stage": ["1", "2", "2", "2"]})
        >>> shares(df, "stage")["share"].to_dict()
        {'2': 0.75, '1': 0.25}
        >>> shares(df, "stage", by="sex").loc[2].tolist()
        [0.0, 1.0]
    """
    if by is None:
        return df[column].value_counts(normalize=True).rename("share").to_frame()
    return pd.crosstab(df[by], df[column], normalize="index")


def optout_rates(patients: pd.DataFrame, on: pd.Timestamp) -> dict[str, pd.Series]:
    """National data opt-out rates overall, by sex and by 10-year age band (age at ``on``).

    Example:
        >>> patients = pd.DataFrame({"birth_date": pd.to_datetime(["1950-06-01", "1980-06-01"]), "sex": [1, 2],
        ...                          "ndop_opted_out": [True, False], "registration_opted_out": [False, False]})
        >>> r = optout_rates(patients, pd.Timestamp("2020-01-01"))
        >>> r["overall"].to_dict(), r["by_age"].to_dict()
        ({'ndop': 0.5, 'registration': 0.0}, {30: 0.0, 60: 1.0})
    """
    p = patients.assign(age=((on - patients["birth_date"]).dt.days // 365.25).astype(int))
    p = p.assign(age_group=np.minimum(p["age"] // 10 * 10, 80), sex=p["sex"].map({1: "male", 2: "female"}))
    return {
        "overall": pd.Series({"ndop": p["ndop_opted_out"].mean(), "registration": p["registration_opted_out"].mean()}),
        "by_sex": p.groupby("sex")["ndop_opted_out"].mean(),
        "by_age": p.groupby("age_group")["ndop_opted_out"].mean(),
    }


def first_primary_survival_frame(tumours: pd.DataFrame, patients: pd.DataFrame, end_of_follow_up) -> pd.DataFrame:
    """One row per patient's first primary: follow-up (years), death, exact age and year, strata.

    Example:
        >>> tumours = pd.DataFrame({"patient_id": [1, 1], "tumour_id": [1, 2], "site_icd10": ["C18", "C50"],
        ...                         "stage": ["2", "1"], "diagnosis_date": pd.to_datetime(["2019-01-01", "2020-01-01"])})
        >>> patients = pd.DataFrame({"patient_id": [1], "sex": [2], "deprivation_quintile": [3],
        ...                          "birth_date": pd.to_datetime(["1949-01-01"]), "death_date": pd.to_datetime(["2021-01-01"])})
        >>> f = first_primary_survival_frame(tumours, patients, "2022-06-30")
        >>> f[["site_icd10", "dead"]].values.tolist(), round(float(f["time"].iloc[0]), 2)
        ([['C18', 1]], 2.0)
    """
    t = tumours.sort_values(["patient_id", "diagnosis_date", "tumour_id"]).drop_duplicates("patient_id")
    t = t.merge(patients[["patient_id", "sex", "deprivation_quintile", "birth_date", "death_date"]], on="patient_id")
    end = pd.Timestamp(end_of_follow_up)
    exit_date = t["death_date"].where(t["death_date"].notna() & (t["death_date"] <= end), end)
    time = (exit_date - t["diagnosis_date"]).dt.days / 365.25
    return pd.DataFrame({
        "site_icd10": t["site_icd10"].to_numpy(), "stage": t["stage"].astype(str).to_numpy(),
        "time": np.maximum(time.to_numpy(), 0.5 / 365.25),
        "dead": (t["death_date"].notna() & (t["death_date"] <= end)).astype(int).to_numpy(),
        "age": ((t["diagnosis_date"] - t["birth_date"]).dt.days / 365.25).to_numpy(),
        "year": t["diagnosis_date"].to_numpy(), "sex": t["sex"].to_numpy(),
        "deprivation_quintile": t["deprivation_quintile"].to_numpy(),
    })
