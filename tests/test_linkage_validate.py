"""Validation and quarantine: every reason code on a hand-made record, and the code lists."""

from __future__ import annotations

import pandas as pd
import pytest

from registry_lib.errors import RegistryLabError
from registry_lib.linkage import codes
from registry_lib.linkage.validate import FATAL, FLAGS, validate_feeds
from registry_lib.synth.tables import DEATHS, NOTIFICATIONS, REGISTRATION_OPTOUTS, SACT

GOOD_NHS = "9434765919"  # valid check digit (worked example of the modulus-11 rule)
BAD_CHECK = "9434765911"

BASE_PERSON = {"nhs_number": GOOD_NHS, "given_name": "Ann", "family_name": "Lee",
               "birth_date": "1950-01-02", "sex": "2", "postcode": "LS6 2AB"}


def _frame(table, rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in table.column_names:
        if c not in df.columns:
            df[c] = None
    return df[table.column_names]


def _note(rid: str, **changes) -> dict:
    row = {"record_id": rid, "trust_code": "RA1", "source": "mdt", "received_date": "2020-03-01",
           **BASE_PERSON, "diagnosis_date": "2020-02-01", "site_icd10": "C509", "morphology_icdo3": "8500",
           "behaviour": "3", "stage": "2", "grade": "G2", "laterality": "L"}
    row.update(changes)
    return row


def _sact(rid: str, **changes) -> dict:
    row = {"record_id": rid, "trust_code": "RA1", **BASE_PERSON, "site_icd10": "C50", "regimen": "AC",
           "intent": "adjuvant", "cycles": 4, "start_date": "2020-03-10"}
    row.update(changes)
    return row


def _death(rid: str, **changes) -> dict:
    row = {"record_id": rid, **BASE_PERSON, "death_date": "2021-05-01", "underlying_cause_icd10": "C509",
           "registration_date": "2021-05-04"}
    row.update(changes)
    return row


@pytest.fixture(scope="module")
def validated():
    notes = [
        _note("ok"),
        _note("no_ids", nhs_number=None, given_name=None, family_name=None, birth_date=None, postcode=None),
        _note("name_only", nhs_number=None, birth_date=None, postcode=None),
        _note("bad_nhs_but_usable", nhs_number=BAD_CHECK),
        _note("bad_nhs_unusable", nhs_number=BAD_CHECK, given_name=None, family_name=None, birth_date=None),
        _note("no_site", site_icd10=None),
        _note("bad_site", site_icd10="C99"),
        _note("letter_o_site", site_icd10="C5O"),
        _note("before_birth", diagnosis_date="1949-12-31"),
        _note("no_received", received_date=None),
        _note("no_diag", diagnosis_date=None),
        _note("bad_diag", diagnosis_date="2020-02-30"),
        _note("future_diag", diagnosis_date="2020-03-05"),
        _note("swapped_dob", birth_date="1950-23-04"),
        _note("future_dob", birth_date="2021-01-01"),
        _note("bad_sex", sex="X"),
        _note("sex_9", sex="9"),
        _note("bad_postcode", postcode="NOT A POSTCODE"),
        _note("bad_morph", morphology_icdo3="8O14"),
        _note("bad_behaviour", behaviour="7"),
        _note("bad_stage", stage="5"),
        _note("unknown_stage", stage="U"),
        _note("bad_grade", grade="G7"),
        _note("bad_laterality", laterality="Q"),
    ]
    sact = [
        _sact("s_ok"),
        _sact("s_bad_date", start_date="2020-13-01"),
        _sact("s_future", start_date="2030-01-01"),
        _sact("s_before_birth", start_date="1949-01-01"),
        _sact("s_bad_site", site_icd10="X50"),
    ]
    deaths = [
        _death("d_ok"),
        _death("d_bad_date", death_date="2021-02-30"),
        _death("d_after_registration", death_date="2021-05-10"),
        _death("d_before_birth", death_date="1949-05-01"),
        _death("d_bad_cause", underlying_cause_icd10="Q999"),
        _death("d_covid", underlying_cause_icd10="U071"),
        _death("d_other_cause", underlying_cause_icd10="I219"),
    ]
    optouts = [{"record_id": "o_bad_date", "nhs_number": GOOD_NHS, "given_name": "Ann", "family_name": "Lee",
                "birth_date": "1950-01-02", "request_date": "not a date"}]
    feeds = {"notifications": _frame(NOTIFICATIONS, notes), "sact": _frame(SACT, sact),
             "deaths": _frame(DEATHS, deaths), "registration_optouts": _frame(REGISTRATION_OPTOUTS, optouts)}
    return validate_feeds(feeds)


def _reason(v, rid):
    r = v.records.set_index("record_id").loc[rid, "reason"]
    return None if pd.isna(r) else r


def _flags(v, rid):
    return set(v.issues.loc[v.issues["record_id"] == rid, "reason"])


@pytest.mark.parametrize("rid, reason", [
    ("no_ids", "NO_IDENTIFIERS"),
    ("name_only", "NO_IDENTIFIERS"),
    ("bad_nhs_unusable", "NO_IDENTIFIERS"),
    ("no_site", "MISSING_SITE"),
    ("bad_site", "INVALID_SITE"),
    ("letter_o_site", "INVALID_SITE"),
    ("before_birth", "DIAGNOSIS_BEFORE_BIRTH"),
    ("no_received", "MISSING_REQUIRED_FIELD"),
    ("s_bad_date", "INVALID_TREATMENT_DATE"),
    ("s_future", "TREATMENT_IN_FUTURE"),
    ("s_before_birth", "TREATMENT_BEFORE_BIRTH"),
    ("d_bad_date", "INVALID_DEATH_DATE"),
    ("d_after_registration", "DEATH_IN_FUTURE"),
    ("d_before_birth", "DEATH_BEFORE_BIRTH"),
])
def test_fatal_reason_codes(validated, rid, reason):
    assert reason in FATAL
    assert _reason(validated, rid) == reason


@pytest.mark.parametrize("rid, flag", [
    ("bad_nhs_but_usable", "INVALID_NHS_NUMBER"),
    ("no_diag", "MISSING_DIAGNOSIS_DATE"),
    ("bad_diag", "INVALID_DIAGNOSIS_DATE"),
    ("future_diag", "DIAGNOSIS_IN_FUTURE"),
    ("swapped_dob", "INVALID_BIRTH_DATE"),
    ("future_dob", "BIRTH_DATE_IN_FUTURE"),
    ("bad_sex", "INVALID_SEX"),
    ("bad_postcode", "INVALID_POSTCODE"),
    ("bad_morph", "INVALID_MORPHOLOGY"),
    ("bad_behaviour", "INVALID_BEHAVIOUR"),
    ("bad_stage", "INVALID_STAGE"),
    ("bad_grade", "INVALID_GRADE"),
    ("bad_laterality", "INVALID_LATERALITY"),
    ("s_bad_site", "INVALID_SITE_ON_TREATMENT"),
    ("d_bad_cause", "INVALID_CAUSE_OF_DEATH"),
    ("o_bad_date", "INVALID_REQUEST_DATE"),
])
def test_flags_keep_the_record(validated, rid, flag):
    assert flag in FLAGS
    assert _flags(validated, rid) == {flag}
    assert _reason(validated, rid) is None


def test_clean_records_have_no_reason_and_no_flag(validated):
    for rid in ("ok", "s_ok", "d_ok", "d_covid", "d_other_cause", "sex_9", "unknown_stage"):
        assert _reason(validated, rid) is None
        assert _flags(validated, rid) == set()


def test_invalid_nhs_number_is_missing_for_matching(validated):
    rec = validated.records.set_index("record_id")
    assert pd.isna(rec.loc["bad_nhs_but_usable", "nhs_number"])
    assert rec.loc["ok", "nhs_number"] == GOOD_NHS


def test_swapped_birth_date_kept_for_matching_not_as_value(validated):
    rec = validated.records.set_index("record_id")
    assert rec.loc["swapped_dob", "birth_date"] == "1950-23-04"
    assert pd.isna(rec.loc["swapped_dob", "birth_date_value"])
    assert pd.isna(rec.loc["future_dob", "birth_date_value"])


def test_invalid_clinical_values_become_missing(validated):
    notes = validated.feeds["notifications"].set_index("record_id")
    assert pd.isna(notes.loc["bad_morph", "morphology_icdo3"])
    assert pd.isna(notes.loc["bad_stage", "stage"])
    assert notes.loc["ok", "stage"] == "2" and notes.loc["ok", "site3"] == "C50"
    # a date after receipt is unusable: the receipt date places the record in time
    assert pd.isna(notes.loc["future_diag", "diagnosis_value"])
    assert notes.loc["future_diag", "diagnosis_proxy"] == pd.Timestamp("2020-03-01")
    deaths = validated.feeds["deaths"].set_index("record_id")
    assert pd.isna(deaths.loc["d_bad_cause", "cause"]) and deaths.loc["d_covid", "cause"] == "U071"


def test_details_never_copy_identifiers(validated):
    text = " ".join(validated.records["detail"].dropna().tolist() + validated.issues["detail"].dropna().tolist())
    for value in (GOOD_NHS, BAD_CHECK, "Lee", "1950-01-02", "LS6 2AB"):
        assert value not in text
    assert "site_icd10 C99 is not a valid ICD-10 neoplasm code" in text


def test_duplicate_and_null_record_ids_are_quarantined_not_fatal():
    notes = _frame(NOTIFICATIONS, [_note("x"), _note("x"), _note("y")])
    notes.loc[2, "record_id"] = None
    v = validate_feeds({"notifications": notes})
    assert v.records["reason"].tolist() == [None, "DUPLICATE_RECORD_ID", "MISSING_RECORD_ID"] or \
        v.records["reason"].astype(object).where(v.records["reason"].notna(), None).tolist() == \
        [None, "DUPLICATE_RECORD_ID", "MISSING_RECORD_ID"]
    assert v.records["record_id"].tolist()[2] == "(no record_id: row 3)"


def test_missing_required_column_is_an_error():
    notes = _frame(NOTIFICATIONS, [_note("x")]).drop(columns=["received_date"])
    with pytest.raises(RegistryLabError, match="received_date"):
        validate_feeds({"notifications": notes})


def test_icd10_list_is_complete_for_neoplasms():
    three = [f"C{i:02d}" for i in range(98) if i not in (27, 28, 29, 35, 36, 42, 59, 87, 89)]
    three += [f"D{i:02d}" for i in range(49) if i != 8]
    assert codes.valid_site(pd.Series(three)).all()
    assert not codes.valid_site(pd.Series(["C98", "C99", "D49", "D08", "C27", "I21", "C3", "C509X"])).any()
    assert codes.valid_site(pd.Series(["C50.9", "c18.7", "D05.1"])).all()
    assert codes.valid_cause_of_death(pd.Series(["U071", "I21", "I219", "J189", "C61", "C509"])).all()
    assert not codes.valid_cause_of_death(pd.Series(["Q999", "U99", "C99"])).any()


def test_morphology_list_and_groups():
    assert codes.valid_morphology(pd.Series(["8140", "8140/3", "9650", "8000"])).all()
    assert not codes.valid_morphology(pd.Series(["8O14", "814", "9999", "1234", None])).any()
    groups = codes.histology_group(pd.Series(["8070", "8090", "8140", "8010", "9050", "9680", "9650", "8000"]))
    assert groups.tolist() == [1, 2, 3, 5, 7, 9, 11, 17]
    assert codes.site_group(pd.Series(["C19", "C20", "C34", "C33", "C50"])).tolist() == \
        ["C19-C20", "C19-C20", "C33-C34", "C33-C34", "C50"]
