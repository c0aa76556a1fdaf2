"""Re-identification risk of a record-level release: k-anonymity and local suppression.

The unit is the released tumour record. Its quasi-identifiers (the issue's defaults: age band,
sex, area, diagnosis month and site) are what an outsider might know about a person; records
that share all of them form an equivalence class. A record in a class smaller than ``k`` is at
risk of being singled out. :func:`risk_report` counts them (number and share), the unique
records, the class-size distribution, and how the share at risk would change if each
quasi-identifier were withheld (which one drives the risk).

:func:`local_suppression` blanks quasi-identifier values of records in small classes, one
quasi-identifier at a time in a stated order, until every class reaches ``k`` (or nothing is
left to blank). A blank is treated as its own value, which understates anonymity (sdcMicro
treats it as matching anything), so the result is conservative.

Quasi-identifiers are read from the release tables: ``age_band`` from ``age_at_diagnosis``,
``diagnosis_month`` from ``diagnosis_date``, ``sex`` from the patient table through the patient
key; any other name is a column of the tumour table (or, failing that, of the patient table).

Example:
    >>> tumour = pd.DataFrame({"pid": ["a", "b", "c", "d"], "age_at_diagnosis": [61, 63, 64, 80],
    ...                        "site_icd10": ["C18", "C18", "C18", "C50"]})
    >>> patient = pd.DataFrame({"pid": ["a", "b", "c", "d"], "sex": [1, 1, 1, 2]})
    >>> r = risk_report({"patient": patient, "tumour": tumour}, "pid",
    ...                 ["age_band", "sex", "site_icd10"], k=3)
    >>> r["records"], r["records_in_small_classes"], r["share_in_small_classes"]
    (4, 1, 0.25)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

#: Quasi-identifiers held at patient level (blanking one blanks it for all the patient's rows).
PATIENT_LEVEL = ("sex", "ethnicity", "deprivation_quintile", "region")
#: quasi-identifier -> (table, release column it is derived from)
DERIVED = {"age_band": ("tumour", "age_at_diagnosis"), "diagnosis_month": ("tumour", "diagnosis_date")}


def _source(tables: dict[str, pd.DataFrame], qi: str) -> tuple[str, str] | None:
    if qi in DERIVED and DERIVED[qi][1] in tables["tumour"].columns:
        return DERIVED[qi]
    if qi in tables["tumour"].columns:
        return "tumour", qi
    if "patient" in tables and qi in tables["patient"].columns:
        return "patient", qi
    return None


def _qi_values(tables: dict[str, pd.DataFrame], patient_key: str, qi: str) -> pd.Series | None:
    src = _source(tables, qi)
    if src is None:
        return None
    table, col = src
    tumour = tables["tumour"]
    if table == "patient":
        s = tumour[patient_key].map(tables["patient"].set_index(patient_key)[col])
    else:
        s = tumour[col]
    if qi == "age_band" and col == "age_at_diagnosis":
        s = (s.astype("Int64") // 5 * 5).clip(upper=90)
    elif qi == "diagnosis_month" and col == "diagnosis_date":
        d = pd.to_datetime(s)
        s = (d.dt.year * 100 + d.dt.month).astype("Int64")  # 201903 for March 2019
    return s.reset_index(drop=True)


def quasi_identifier_frame(
    tables: dict[str, pd.DataFrame], patient_key: str, quasi_identifiers: Sequence[str]
) -> tuple[pd.DataFrame, list[str]]:
    """One row per released tumour with its quasi-identifiers (blanks as ``<NA>``).

    Returns the frame and the quasi-identifiers the release does not contain at all.

    Example:
        >>> tumour = pd.DataFrame({"pid": ["a", "b"], "age_at_diagnosis": [61, 80]})
        >>> patient = pd.DataFrame({"pid": ["a", "b"], "sex": [1, 2]})
        >>> frame, absent = quasi_identifier_frame({"patient": patient, "tumour": tumour}, "pid",
        ...                                        ["age_band", "sex", "postcode_district"])
        >>> list(frame.columns), absent
        (['age_band', 'sex'], ['postcode_district'])
    """
    if "tumour" not in tables:
        raise RegistryLabError("risk report: the release has no tumour table")
    cols, absent = {}, []
    for qi in quasi_identifiers:
        s = _qi_values(tables, patient_key, qi)
        if s is None:
            absent.append(qi)
        else:
            cols[qi] = s
    return pd.DataFrame(cols, index=pd.RangeIndex(len(tables["tumour"]))), absent


def class_sizes(frame: pd.DataFrame) -> np.ndarray:
    """Size of each record's equivalence class (blanks are a value of their own).

    Example:
        >>> class_sizes(pd.DataFrame({"sex": [1, 1, 2], "site": ["C18", "C18", None]})).tolist()
        [2, 2, 1]
    """
    return _sizes(_codes(frame), len(frame))


def _codes(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each column's values as integer codes (a blank is a code of its own), factorized once."""
    return {c: pd.factorize(frame[c], use_na_sentinel=True)[0] for c in frame.columns}


def _sizes(codes: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Size of each record's class over the coded columns (one combined integer key per record).

    Example:
        >>> _sizes({"a": np.array([0, 0, 1, -1]), "b": np.array([2, 2, 2, 2])}, 4).tolist()
        [2, 2, 1, 1]
    """
    if not codes:
        return np.full(n, n, dtype=np.int64)
    key = np.zeros(n, dtype=np.int64)
    for c in codes.values():
        c = c.astype(np.int64) + 1   # the blank (-1) becomes 0
        base = int(c.max(initial=0)) + 1
        if base and int(key.max(initial=0)) >= np.iinfo(np.int64).max // base:   # would overflow: re-number
            key = pd.factorize(key)[0].astype(np.int64)
        key = key * base + c
    groups = pd.factorize(key)[0]   # hash-based: no sort
    return np.bincount(groups)[groups].astype(np.int64)


def _summary(codes: dict[str, np.ndarray], k: int, n: int) -> dict[str, Any]:
    """The k-anonymity figures of ``n`` records over the coded quasi-identifiers."""
    size = _sizes(codes, n)
    small = int((size < k).sum())
    dist = {str(s): int((size == s).sum()) for s in range(1, k)}
    dist[f"{k}+"] = int((size >= k).sum())
    return {
        "records": n,
        "equivalence_classes": int(round(float(np.sum(1.0 / size)))) if n else 0,
        "records_in_small_classes": small,
        "share_in_small_classes": round(small / n, 6) if n else 0.0,
        "unique_records": int((size == 1).sum()),
        "share_unique": round(float((size == 1).sum()) / n, 6) if n else 0.0,
        "records_by_class_size": dist,
    }


def risk_report(
    tables: dict[str, pd.DataFrame],
    patient_key: str,
    quasi_identifiers: Sequence[str],
    k: int = 5,
) -> dict[str, Any]:
    """k-anonymity of the released tumour records over the quasi-identifiers.

    Returns a JSON-able dict: ``k``, the quasi-identifiers used and absent, ``records``,
    ``equivalence_classes``, ``records_in_small_classes`` (class size < k) and its share,
    ``unique_records`` and share, ``records_by_class_size``, and ``share_at_risk_without``
    (the share in small classes if each quasi-identifier were withheld).

    Example:
        >>> tumour = pd.DataFrame({"pid": ["a", "b", "c"], "site_icd10": ["C18", "C18", "C50"]})
        >>> patient = pd.DataFrame({"pid": ["a", "b", "c"], "sex": [1, 1, 2]})
        >>> r = risk_report({"patient": patient, "tumour": tumour}, "pid", ["sex", "site_icd10"], k=2)
        >>> r["equivalence_classes"], r["unique_records"]
        (2, 1)
    """
    if int(k) < 2:
        raise RegistryLabError(f"risk report: k={k!r} must be at least 2")
    frame, absent = quasi_identifier_frame(tables, patient_key, quasi_identifiers)
    out = {"k": int(k), "quasi_identifiers": list(frame.columns), "not_released": absent}
    codes, n = _codes(frame), len(frame)   # factorized once for the report and every leave-one-out
    out.update(_summary(codes, int(k), n))
    out["share_at_risk_without"] = {
        qi: _summary({c: v for c, v in codes.items() if c != qi}, int(k), n)["share_in_small_classes"]
        for qi in frame.columns
    }
    return out


def local_suppression(
    tables: dict[str, pd.DataFrame],
    patient_key: str,
    quasi_identifiers: Sequence[str],
    k: int = 5,
    order: Sequence[str] | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Blank quasi-identifiers of records in classes smaller than ``k`` until all reach ``k``.

    Goes through ``order`` (default: the quasi-identifiers as given); at each step the current
    quasi-identifier is blanked in every record still in a small class (for a patient-level one,
    such as sex, in all of that patient's rows). The release columns behind it are blanked
    (``age_at_diagnosis`` for the age band, ``diagnosis_date`` for the diagnosis month).

    Returns the new tables and a summary: values blanked per quasi-identifier and the records
    still in small classes (only possible when even fully blanked records are fewer than k).

    Example:
        >>> tumour = pd.DataFrame({"pid": list("abcd"), "area_id": ["x", "x", "x", "y"],
        ...                        "site_icd10": ["C18", "C18", "C18", "C50"]})
        >>> tables = {"patient": pd.DataFrame({"pid": list("abcd")}), "tumour": tumour}
        >>> new, summary = local_suppression(tables, "pid", ["area_id", "site_icd10"], k=2)
        >>> new["tumour"]["area_id"].tolist(), summary["blanked"]
        (['x', 'x', 'x', <NA>], {'area_id': 1, 'site_icd10': 1})
    """
    frame, _ = quasi_identifier_frame(tables, patient_key, quasi_identifiers)
    order = [q for q in (order or quasi_identifiers) if q in frame.columns]
    keys = tables["tumour"][patient_key].reset_index(drop=True)
    blank = {q: np.zeros(len(frame), dtype=bool) for q in order}
    for q in order:
        fail = class_sizes(frame) < k
        if not fail.any():
            break
        if q in PATIENT_LEVEL and _source(tables, q)[0] == "patient":
            fail = keys.isin(keys[fail]).to_numpy()
        blank[q] |= fail & frame[q].notna().to_numpy()
        frame.loc[fail, q] = pd.NA
    new = {name: df.copy() for name, df in tables.items()}
    for q, mask in blank.items():
        if not mask.any():
            continue
        table, col = _source(tables, q)
        if table == "tumour":
            new["tumour"].loc[new["tumour"].index[mask], col] = pd.NA
        else:
            patients = set(keys[mask])
            p = new["patient"]
            p.loc[p[patient_key].isin(patients), col] = pd.NA
    residual = int((class_sizes(frame) < k).sum())
    return new, {
        "k": int(k),
        "order": order,
        "blanked": {q: int(m.sum()) for q, m in blank.items()},
        "records_still_in_small_classes": residual,
    }
