"""Screening histories and CPES responses: validation and registry tables.

The two feeds go through the same person linkage as every other feed (NHS number first, then
demographics; :mod:`~registry_lib.linkage.persons`); a record whose person is not registered is
quarantined (``NO_REGISTERED_PERSON``) like a treatment record. This module adds what is
particular to them:

* :func:`validate_linked` checks the feed's own fields: an invitation or episode date that is
  not a real date, or a survey answer out of range, quarantines the record
  (:data:`LINKED_FATAL`);
* :func:`screening_rows` and :func:`cpes_rows` make the registry tables ``screening`` (one row
  per invitation) and ``cpes`` (one row per sampled patient and survey year, with the answers;
  ``tumour_id`` is the registry tumour of the episode, chosen as for treatments).

Example:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"record_id": ["B1"], "programme": ["breast"], "invitation_date": ["2019-02-30"],
    ...                    "attended": [True], "test_date": ["2019-03-01"], "result": ["negative"]})
    >>> from registry_lib.linkage.validate import _Checks
    >>> checks = _Checks("screening", df["record_id"])
    >>> out = validate_linked("screening", df, checks)
    >>> checks.reason[0]
    'INVALID_SCREENING_RECORD'
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from registry_lib.linkage import codes
from registry_lib.linkage import standardise as std
from registry_lib.schema import Column as C
from registry_lib.schema import Table, register

S, I8, I16, I64, D, B = pa.string(), pa.int8(), pa.int16(), pa.int64(), pa.date32(), pa.bool_()

LINKED_FEEDS = {"screening": "invitation_date", "cpes": "episode_date"}
LINKED_REQUIRED = {"screening": ("record_id", "programme", "invitation_date"),
                   "cpes": ("record_id", "trust_code", "survey_year", "episode_date")}
LINKED_FATAL = {
    "INVALID_SCREENING_RECORD": "screening record with an unreal invitation or test date, an unknown programme "
                                "or result, or a test date without attendance",
    "INVALID_SURVEY_RECORD": "CPES record with an unreal episode date or an answer out of range",
}
PROGRAMMES = ("breast", "bowel", "cervical")
ITEMS = ("cns_name", "told_sensitively", "involved_decisions", "support_after_treatment")

SCREENING = register(Table("screening", "Screening invitations, tests and results of registered persons.", [
    C("screening_id", I64, False, "registry screening record id"),
    C("patient_id", I64, False, "registry person id"),
    C("programme", S, False, "breast | bowel | cervical"),
    C("invitation_date", D, False, "date of the invitation"),
    C("attended", B, False, "tested after this invitation"),
    C("test_type", S, True, "mammogram | FIT | cytology | HPV"),
    C("test_date", D, True, "date of the test"),
    C("result", S, True, "negative | positive"),
], stage="registry", key=("screening_id",)))

CPES = register(Table("cpes", "Cancer Patient Experience Survey sample and answers of registered persons.", [
    C("response_id", I64, False, "registry survey record id"),
    C("patient_id", I64, False, "registry person id"),
    C("tumour_id", I64, True, "registry tumour of the sampled episode (null if none matched)"),
    C("survey_year", I16, False, "survey year"),
    C("trust_code", S, False, "trust of the sampled episode"),
    C("site_icd10", S, True, "ICD-10 site of the episode (3 characters)"),
    C("episode_date", D, False, "date of the episode"),
    C("responded", B, False, "returned the questionnaire"),
    C("overall_rating", I8, True, "overall rating of care 0-10"),
    C("cns_name", B, True, "given the name of a clinical nurse specialist"),
    C("told_sensitively", B, True, "told sensitively that they had cancer"),
    C("involved_decisions", B, True, "involved as much as wanted in treatment decisions"),
    C("support_after_treatment", B, True, "given enough support after treatment"),
], stage="registry", key=("response_id",)))

LINKED_TABLES = {t.name: t for t in (SCREENING, CPES)}


def _date(df: pd.DataFrame, name: str) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    raw = df[name] if name in df.columns else pd.Series(pd.NA, index=df.index, dtype="string")
    value = std.parse_date(raw.reset_index(drop=True))
    blank = raw.isna().to_numpy() | (raw.astype("string").str.strip() == "").fillna(True).to_numpy()
    return value, blank, ~blank & value.isna().to_numpy()


def validate_linked(feed: str, df: pd.DataFrame, checks: Any) -> pd.DataFrame:
    """Cleaned rows of the screening or CPES feed; bad records quarantined through ``checks``.

    Example:
        >>> from registry_lib.linkage.validate import _Checks
        >>> cpes = pd.DataFrame({"record_id": ["C1", "C2", "C3"], "trust_code": ["RR8"] * 3,
        ...                      "survey_year": [2019] * 3, "episode_date": ["2019-03-02", "2019-04-31", "2019-05-06"],
        ...                      "site_icd10": ["C509", "C18", "C34"], "overall_rating": [9, 7, 12]})
        >>> checks = _Checks("cpes", cpes["record_id"])
        >>> rows = validate_linked("cpes", cpes, checks)
        >>> checks.reason.tolist(), rows["site3"].tolist()
        ([None, 'INVALID_SURVEY_RECORD', 'INVALID_SURVEY_RECORD'], ['C50', 'C18', 'C34'])
    """
    out = df.reset_index(drop=True).copy()
    if feed == "screening":
        inv, _, inv_bad = _date(df, "invitation_date")
        test, test_blank, test_bad = _date(df, "test_date")
        attended = out["attended"].fillna(False).to_numpy(dtype=bool) if "attended" in out else np.zeros(len(out), bool)
        prog_bad = ~out["programme"].astype("string").isin(PROGRAMMES).fillna(False).to_numpy(dtype=bool)
        result = out["result"].astype("string") if "result" in out else pd.Series(pd.NA, index=out.index)
        res_bad = (result.notna() & ~result.isin(["negative", "positive"])).fillna(False).to_numpy(dtype=bool)
        bad = inv_bad | test_bad | prog_bad | res_bad | (~attended & ~test_blank)
        checks.fatal(bad, "INVALID_SCREENING_RECORD",
                     "invitation_date or test_date not a real date, unknown programme or result, or a test "
                     "without attendance")
        out["invitation_value"] = inv
        out["test_value"] = test
        out["start_value"] = inv
        out["site3"] = pd.Series(pd.NA, index=out.index, dtype="string")
    else:
        ep, _, ep_bad = _date(df, "episode_date")
        rating = pd.to_numeric(out["overall_rating"], errors="coerce") if "overall_rating" in out else None
        r_bad = np.zeros(len(out), bool) if rating is None else (
            rating.notna() & ((rating < 0) | (rating > 10))).to_numpy(dtype=bool)
        checks.fatal(ep_bad | r_bad, "INVALID_SURVEY_RECORD",
                     "episode_date not a real date or overall_rating outside 0-10")
        out["start_value"] = ep
        site_raw = out["site_icd10"].astype("string") if "site_icd10" in out else pd.Series(pd.NA, index=out.index,
                                                                                             dtype="string")
        ok = codes.valid_site(site_raw)
        out["site3"] = codes.site3(site_raw).where(ok)
    return out


def screening_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The registry ``screening`` table from linked, validated screening rows (with ``patient_id``).

    Example:
        >>> from registry_lib.linkage.validate import _Checks
        >>> feed = pd.DataFrame({"record_id": ["S1", "S2"], "programme": ["bowel", "breast"],
        ...                      "invitation_date": ["2019-05-01", "2018-01-10"], "attended": [False, True],
        ...                      "test_type": [None, "mammogram"], "test_date": [None, "2018-01-24"],
        ...                      "result": [None, "negative"]})
        >>> rows = validate_linked("screening", feed, _Checks("screening", feed["record_id"]))
        >>> print(screening_rows(rows.assign(patient_id=[7, 7])).to_string())
           screening_id  patient_id programme invitation_date  attended  test_type  test_date    result
        0             1           7     bowel      2019-05-01     False       <NA>        NaT      <NA>
        1             2           7    breast      2018-01-10      True  mammogram 2018-01-24  negative
    """
    out = pd.DataFrame({
        "patient_id": rows["patient_id"].astype("int64").to_numpy(),
        "programme": rows["programme"].astype("string").to_numpy(),
        "invitation_date": pd.to_datetime(rows["invitation_value"]).to_numpy(),
        "attended": rows["attended"].fillna(False).astype(bool).to_numpy(),
        "test_type": rows["test_type"].astype("string").to_numpy(),
        "test_date": pd.to_datetime(rows["test_value"]).to_numpy(),
        "result": rows["result"].astype("string").to_numpy(),
        "record_id": rows["record_id"].astype(str).to_numpy(),
    })
    out = out.sort_values(["patient_id", "programme", "invitation_date", "record_id"], kind="stable",
                          ignore_index=True)
    out.insert(0, "screening_id", np.arange(1, len(out) + 1, dtype=np.int64))
    return out.drop(columns="record_id")


def cpes_rows(rows: pd.DataFrame, tumour_id: pd.Series) -> pd.DataFrame:
    """The registry ``cpes`` table from linked, validated CPES rows and their registry tumours.

    Example:
        >>> from registry_lib.linkage.validate import _Checks
        >>> feed = pd.DataFrame({"record_id": ["C1", "C2"], "trust_code": ["RR8", "RR8"], "survey_year": [2019, 2019],
        ...                      "episode_date": ["2019-03-02", "2019-04-01"], "site_icd10": ["C509", "C18"],
        ...                      "responded": [True, False], "overall_rating": [9, None], "cns_name": [True, None],
        ...                      "told_sensitively": [True, None], "involved_decisions": [False, None],
        ...                      "support_after_treatment": [True, None]})
        >>> rows = validate_linked("cpes", feed, _Checks("cpes", feed["record_id"])).assign(patient_id=[3, 2])
        >>> table = cpes_rows(rows, tumour_id=pd.Series([11, None]))
        >>> print(table[["response_id", "patient_id", "tumour_id", "site_icd10", "responded", "cns_name"]].to_string())
           response_id  patient_id  tumour_id site_icd10  responded cns_name
        0            1           2       <NA>        C18      False     <NA>
        1            2           3         11        C50       True     True
    """
    out = pd.DataFrame({
        "patient_id": rows["patient_id"].astype("int64").to_numpy(),
        "tumour_id": pd.array(tumour_id.to_numpy(), dtype="Int64"),
        "survey_year": rows["survey_year"].astype("int16").to_numpy(),
        "trust_code": rows["trust_code"].astype("string").to_numpy(),
        "site_icd10": rows["site3"].astype("string").to_numpy(),
        "episode_date": pd.to_datetime(rows["start_value"]).to_numpy(),
        "responded": rows["responded"].fillna(False).astype(bool).to_numpy(),
        "overall_rating": pd.to_numeric(rows["overall_rating"], errors="coerce").astype("Int8").to_numpy(),
        **{item: rows[item].astype("boolean").to_numpy() for item in ITEMS},
        "record_id": rows["record_id"].astype(str).to_numpy(),
    })
    out = out.sort_values(["patient_id", "survey_year", "episode_date", "record_id"], kind="stable",
                          ignore_index=True)
    out.insert(0, "response_id", np.arange(1, len(out) + 1, dtype=np.int64))
    return out.drop(columns="record_id")


def empty_table(name: str) -> pd.DataFrame:
    """An empty registry table with the schema's columns (a cohort without the feed).

    Example:
        >>> table = empty_table("screening")
        >>> len(table), list(table.columns)
        (0, ['screening_id', 'patient_id', 'programme', 'invitation_date', 'attended', 'test_type', 'test_date', 'result'])
    """
    return pd.DataFrame({c.name: pd.Series(dtype="object") for c in LINKED_TABLES[name].columns})
