"""Treatments (SACT, radiotherapy, surgery) of registered persons, linked to their tumours.

A treatment record is linked to a registered person by the person linkage (same machinery as
notifications), then to one of that person's tumours: among the person's tumours of the same
IARC site group as the treatment's ICD-10 site (all tumours when the record has no site), the
latest diagnosed no more than ``lead_days`` after the treatment started; failing that, the
earliest diagnosed after it. A treatment whose site matches none of the person's tumours keeps
``tumour_id`` missing.

Example:
    >>> import pandas as pd
    >>> tr = pd.DataFrame({"patient_id": [1, 1], "site3": ["C50", "C18"],
    ...                    "start_value": pd.to_datetime(["2021-03-01", "2021-03-01"])})
    >>> tu = pd.DataFrame({"tumour_id": [10, 11], "patient_id": [1, 1], "site_icd10": ["C50", "C50"],
    ...                    "diagnosis_date": pd.to_datetime(["2015-01-01", "2021-01-15"])})
    >>> assign_tumours(tr, tu).tolist()
    [11, <NA>]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from registry_lib.linkage import codes

#: A treatment may start up to this many days before the registry's diagnosis date (e.g.
#: neoadjuvant therapy before the pathology date); an assumption.
DEFAULT_LEAD_DAYS = 90


def assign_tumours(treat: pd.DataFrame, tumours: pd.DataFrame, lead_days: int = DEFAULT_LEAD_DAYS) -> pd.Series:
    """Registry tumour id of each treatment (``patient_id``, ``site3``, ``start_value``).

    Example:
        >>> tr = pd.DataFrame({"patient_id": [1], "site3": ["C18"], "start_value": pd.to_datetime(["2020-06-01"])})
        >>> tu = pd.DataFrame({"tumour_id": [5], "patient_id": [1], "site_icd10": ["C18"],
        ...                    "diagnosis_date": pd.to_datetime(["2020-05-01"])})
        >>> assign_tumours(tr, tu).tolist()
        [5]
    """
    t = treat[["patient_id", "site3", "start_value"]].reset_index(drop=True).copy()
    t["_row"] = np.arange(len(t))
    t["grp"] = codes.site_group(t["site3"])
    tu = tumours[["tumour_id", "patient_id", "site_icd10", "diagnosis_date"]].copy()
    tu["grp_t"] = codes.site_group(tu["site_icd10"])
    m = t.merge(tu, on="patient_id", how="inner")
    m = m[m["grp"].isna().to_numpy() | (m["grp"] == m["grp_t"]).fillna(False).to_numpy()]
    gap = (m["start_value"] - m["diagnosis_date"]).dt.days
    m = m.assign(_late=(gap < -lead_days).astype(int), _gap=np.where(gap >= -lead_days, gap, -gap))
    m = m.sort_values(["_row", "_late", "_gap", "tumour_id"], kind="stable").drop_duplicates("_row")
    out = pd.Series(pd.NA, index=t.index, dtype="Int64")
    out[m["_row"].to_numpy()] = m["tumour_id"].to_numpy()
    return out.set_axis(treat.index)


def _fmt(num: pd.Series) -> pd.Series:
    """Numbers as short text: 40.0 → "40", 2.67 → "2.67"."""
    text = num.astype("Float64").round(2).astype("string").str.replace(r"\.0+$", "", regex=True)
    return text


def treatment_rows(feed: str, df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the TREATMENT table (without ids) from one validated treatment feed.

    Example:
        >>> surgery = pd.DataFrame({"patient_id": [1], "start_value": pd.to_datetime(["2020-06-01"]),
        ...                         "record_id": ["S1"], "procedure_code": ["H33"]})
        >>> treatment_rows("surgery", surgery)[["modality", "details"]].values.tolist()
        [['surgery', 'H33']]
    """
    n = len(df)
    na = pd.Series(pd.NA, index=df.index, dtype="string")
    out = pd.DataFrame({"patient_id": df["patient_id"], "modality": feed if feed != "sact" else "sact",
                        "start_date": df["start_value"], "record_id": df["record_id"].astype("string")},
                       index=df.index)
    if feed == "sact":
        cycles = df["cycles"].astype("Int64")
        out["intent"] = df["intent"].astype("string")
        out["regimen"] = df["regimen"].astype("string")
        out["details"] = out["regimen"] + ("; " + cycles.astype("string") + " cycles").fillna("")
    elif feed == "radiotherapy":
        out["intent"] = df["intent"].astype("string")
        out["rt_region"] = df["rt_region"].astype("string")
        out["dose_gy"] = df["dose_gy"].astype("Float64")
        out["fractions"] = df["fractions"].astype("Int16")
        dose = (" " + _fmt(df["dose_gy"]) + " Gy").fillna("")
        fr = (" in " + df["fractions"].astype("Int64").astype("string") + " fractions").fillna("")
        out["details"] = out["rt_region"] + dose + fr
    else:
        out["intent"] = na
        out["procedure_code"] = df["procedure_code"].astype("string")
        out["details"] = out["procedure_code"]
    for col, dtype in (("regimen", "string"), ("rt_region", "string"), ("dose_gy", "Float64"),
                       ("fractions", "Int16"), ("procedure_code", "string")):
        if col not in out.columns:
            out[col] = pd.array([pd.NA] * n, dtype=dtype)
    return out
