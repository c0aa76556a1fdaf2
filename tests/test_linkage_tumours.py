"""Tumour consolidation (simplified IARC/ENCR multiple-primary rules), treatments and deaths."""

from __future__ import annotations

import pandas as pd
import pytest

from registry_lib.linkage.deaths import choose_deaths, death_flags
from registry_lib.linkage.treatments import assign_tumours
from registry_lib.linkage.tumours import consolidate, tumour_keys


def notes(rows: list[tuple]) -> pd.DataFrame:
    """rows: (patient, site3, laterality, morphology, diagnosis date or None, receipt date)."""
    df = pd.DataFrame(rows, columns=["patient_id", "site3", "laterality", "morphology_icdo3", "diag", "recv"])
    df["diagnosis_value"] = pd.to_datetime(df["diag"])
    df["diagnosis_proxy"] = df["diagnosis_value"].fillna(pd.to_datetime(df["recv"]))
    return df


def groups(df: pd.DataFrame, window: int = 365) -> list[int]:
    """Tumour numbers relabelled by first appearance, for readable expectations."""
    k = tumour_keys(df, window)
    return pd.factorize(k)[0].tolist()


@pytest.mark.parametrize("rows, expected", [
    # paired organ: left and right breast are two primaries
    ([(1, "C50", "L", "8500", "2020-01-01", "2020-01-10"), (1, "C50", "R", "8500", "2020-01-05", "2020-01-10")], [0, 1]),
    # unknown laterality joins the side notified nearest in time
    ([(1, "C50", "L", "8500", "2020-01-01", "2020-01-10"), (1, "C50", "R", "8500", "2020-03-01", "2020-03-10"),
      (1, "C50", "9", "8500", "2020-01-03", "2020-01-10")], [0, 1, 0]),
    # not a paired organ: laterality is ignored
    ([(1, "C18", "L", "8140", "2020-01-01", "2020-01-10"), (1, "C18", "R", "8140", "2020-01-05", "2020-01-10")], [0, 0]),
    # different specific histology groups (adenocarcinoma, squamous) in one lung: two primaries
    ([(1, "C34", "R", "8140", "2020-01-01", "2020-01-10"), (1, "C34", "R", "8070", "2020-01-05", "2020-01-10")], [0, 1]),
    # unspecified morphology (8000) or none joins the specific group
    ([(1, "C34", "R", "8140", "2020-01-01", "2020-01-10"), (1, "C34", "R", "8000", "2020-01-05", "2020-01-10"),
      (1, "C34", "R", None, "2020-01-07", "2020-01-10")], [0, 0, 0]),
    # unspecified carcinoma (8010) does not join a sarcoma (group 6)
    ([(1, "C49", "9", "8800", "2020-01-01", "2020-01-10"), (1, "C49", "9", "8010", "2020-01-05", "2020-01-10")], [0, 1]),
    # IARC site group: rectosigmoid (C19) and rectum (C20) are one site; colon (C18) is another
    ([(1, "C19", "9", "8140", "2020-01-01", "2020-01-10"), (1, "C20", "9", "8140", "2020-01-05", "2020-01-10"),
      (1, "C18", "9", "8140", "2020-01-06", "2020-01-10")], [0, 0, 1]),
    # time window: more than 365 days after the previous notification starts a new tumour
    ([(1, "C61", "9", "8140", "2015-01-01", "2015-01-10"), (1, "C61", "9", "8140", "2015-06-01", "2015-06-10"),
      (1, "C61", "9", "8140", "2017-01-01", "2017-01-10")], [0, 0, 1]),
    # an undated notification joins the tumour diagnosed before its receipt, however late it arrives
    ([(1, "C50", "L", "8500", "2015-01-01", "2015-01-10"), (1, "C50", "L", None, None, "2016-06-01")], [0, 0]),
    # different persons never share a tumour
    ([(1, "C50", "L", "8500", "2020-01-01", "2020-01-10"), (2, "C50", "L", "8500", "2020-01-01", "2020-01-10")], [0, 1]),
])
def test_multiple_primary_rules(rows, expected):
    assert groups(notes(rows)) == expected


def test_window_is_a_parameter():
    df = notes([(1, "C61", "9", "8140", "2015-01-01", "2015-01-10"), (1, "C61", "9", "8140", "2015-06-01", "2015-06-10")])
    assert groups(df, window=100) == [0, 1]


def _full(df: pd.DataFrame, **cols) -> pd.DataFrame:
    base = {"record_id": [f"n{i}" for i in range(len(df))], "source": "mdt", "trust_code": "RA1",
            "behaviour": "3", "stage": None, "grade": None, "route_to_diagnosis": None,
            "basis_of_diagnosis": None, "performance_status": None, "comorbidity_score": None,
            "postcode": "LS6 2AB"}
    for k, v in {**base, **cols}.items():
        df[k] = v
    return df


def test_best_values():
    df = notes([(1, "C50", "L", "8000", "2020-02-01", "2020-02-10"),
                (1, "C50", "L", "8500", "2020-01-15", "2020-01-20"),
                (1, "C509", "L", None, None, "2020-03-01")])
    df = _full(df, source=["mdt", "pathology", "pas"], stage=["3", "2", None], grade=["GX", "G2", None],
               basis_of_diagnosis=["1", "7", "9"], trust_code=["RB1", "RA1", "RC1"],
               route_to_diagnosis=[None, None, "Two week wait"], comorbidity_score=[None, None, 2])
    df["site3"] = "C50"
    patients = pd.DataFrame({"patient_id": [1], "birth_date": [pd.Timestamp("1950-06-01")], "area_id": ["E1"]})
    tum, note_tumour = consolidate(df, patients, pd.Series({"LS6 2AB": "E9"}))
    assert len(tum) == 1 and note_tumour.nunique() == 1
    t = tum.iloc[0]
    assert t["diagnosis_date"] == pd.Timestamp("2020-01-15")      # earliest
    assert t["morphology_icdo3"] == "8500"                          # specific over 8000
    assert t["stage"] == "3"                                        # MDT stage first
    assert t["grade"] == "G2"                                       # G2 over GX
    assert t["basis_of_diagnosis"] == "7"                           # most valid ENCR code
    assert t["diagnosing_trust"] == "RA1"                           # trust of the earliest notification
    assert t["route_to_diagnosis"] == "Two week wait"
    assert t["comorbidity_score"] == 2
    assert t["age_at_diagnosis"] == 69 and t["area_id"] == "E9" and t["laterality"] == "L"


def test_unstaged_tumour_gets_U():
    df = _full(notes([(1, "C18", "9", "8140", "2020-01-01", "2020-01-10")]))
    patients = pd.DataFrame({"patient_id": [1], "birth_date": [pd.NaT], "area_id": ["E1"]})
    tum, _ = consolidate(df, patients)
    assert tum["stage"].tolist() == ["U"] and pd.isna(tum["age_at_diagnosis"].iloc[0])
    assert tum["area_id"].tolist() == ["E1"]  # no postcode directory: the patient's area


def test_treatment_goes_to_matching_tumour():
    tumours = pd.DataFrame({"tumour_id": [10, 11, 12], "patient_id": [1, 1, 1],
                            "site_icd10": ["C50", "C50", "C18"],
                            "diagnosis_date": pd.to_datetime(["2015-01-01", "2019-01-01", "2018-06-01"])})
    treat = pd.DataFrame({"patient_id": [1, 1, 1, 1, 1],
                          "site3": ["C50", "C50", "C18", None, "C34"],
                          "start_value": pd.to_datetime(["2016-01-01", "2018-11-01", "2018-07-01", "2015-02-01", "2019-01-01"])})
    # 2018-11 starts within 90 days before the 2019 tumour: that one; no site -> latest before start; C34 -> none
    assert assign_tumours(treat, tumours).tolist() == [10, 11, 12, 10, pd.NA]


def test_deaths_choose_and_flag():
    deaths = pd.DataFrame({"patient_id": [1, 1, 2], "record_id": ["d2", "d1", "d3"],
                           "registration_value": pd.to_datetime(["2021-01-10", "2021-01-05", "2020-01-01"]),
                           "death_value": pd.to_datetime(["2021-01-02", "2021-01-01", "2019-12-30"]),
                           "cause": ["C50", "C50", "I21"]})
    chosen, conflicting = choose_deaths(deaths)
    assert chosen["death_date"].tolist() == [pd.Timestamp("2021-01-01"), pd.Timestamp("2019-12-30")]
    assert conflicting == 1
    activity = pd.DataFrame({"patient_id": [1, 2, 2], "date": pd.to_datetime(["2020-06-01", "2019-01-01", "2020-02-01"]),
                             "activity": ["diagnosis", "diagnosis", "radiotherapy"]})
    flags = death_flags(chosen, activity)
    assert flags[["patient_id", "last_activity", "days_before"]].values.tolist() == [[2, "radiotherapy", 33]]
