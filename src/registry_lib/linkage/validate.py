"""Validation of feed records: reason codes, quarantine, and the person records linkage uses.

Every feed record is checked. A problem either makes the record unusable (it goes to
``quarantine`` with a reason code) or only makes one field unusable (the field is treated as
missing, the record is kept, and the problem is listed in ``validation_issues``). An invalid
NHS number never drops a record: it is treated as missing for matching.

Reason codes that quarantine a record (:data:`FATAL`) and those that only flag a field
(:data:`FLAGS`) are listed with their meaning below; ``detail`` names the field and, for
clinical fields, the value (identifier values are never copied into the detail).

Example:
    >>> import pandas as pd
    >>> feed = pd.DataFrame({"record_id": ["N1", "N2"], "trust_code": ["RA1", "RA1"],
    ...     "source": ["mdt", "mdt"], "received_date": ["2020-02-01", "2020-02-01"],
    ...     "nhs_number": ["9434765919", None], "given_name": ["Ann", None], "family_name": ["Lee", None],
    ...     "birth_date": ["1950-01-02", None], "sex": ["2", None], "postcode": ["LS6 2AB", None],
    ...     "diagnosis_date": ["2020-01-10", "2020-01-10"], "site_icd10": ["C509", "C50"]})
    >>> v = validate_feeds({"notifications": feed})
    >>> v.records[["record_id", "reason"]].values.tolist()
    [['N1', <NA>], ['N2', 'NO_IDENTIFIERS']]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.linkage import codes
from registry_lib.linkage import standardise as std
from registry_lib.linkage.linked_feeds import (
    LINKED_FATAL,
    LINKED_FEEDS,
    LINKED_REQUIRED,
    validate_linked,
)
from registry_lib.nhs_number import is_valid_nhs_number

#: Reason codes that send a record to quarantine.
FATAL: dict[str, str] = {
    "NO_IDENTIFIERS": "no valid NHS number and fewer than two of: a name, a birth date, a postcode",
    "MISSING_REQUIRED_FIELD": "a field the feed must always carry is empty",
    "MISSING_SITE": "notification without an ICD-10 site",
    "INVALID_SITE": "ICD-10 site not in the shipped code list (C00–C97, D00–D48)",
    "DIAGNOSIS_BEFORE_BIRTH": "diagnosis date before the birth date (which of the two is wrong is unknown)",
    "INVALID_TREATMENT_DATE": "treatment start or procedure date is not a real date",
    "TREATMENT_IN_FUTURE": "treatment date after the extract date (the cohort's configured extract date)",
    "TREATMENT_BEFORE_BIRTH": "treatment date before the birth date",
    "INVALID_DEATH_DATE": "death date is not a real date",
    "DEATH_IN_FUTURE": "death date after the date the death was registered",
    "DEATH_BEFORE_BIRTH": "death date before the birth date",
    "NO_REGISTERED_PERSON": "treatment or death record that links to no registered person",
    "MISSING_RECORD_ID": "record without a record_id (named by its row in the feed file)",
    "DUPLICATE_RECORD_ID": "a record_id already used by an earlier record of the same feed",
    "INVALID_DATE": "a date the record must carry (receipt, registration) is not a real date",
    "DATE_AFTER_EXTRACT": "a receipt, registration or death date after the extract date",
    "IMPLAUSIBLE_DATE": "a date before 1900",
    "INVALID_NUMBER": "text or an impossible value in a numeric field (e.g. dose_gy)",
    **LINKED_FATAL,
}
#: Reason codes that flag a field (treated as missing); the record is kept.
FLAGS: dict[str, str] = {
    "INVALID_NHS_NUMBER": "NHS number fails the format or modulus-11 check: treated as missing",
    "INVALID_BIRTH_DATE": "birth date is not a real date: used for matching as sent, never as a value",
    "BIRTH_DATE_IN_FUTURE": "birth date after the record's own date: not used as a value",
    "INVALID_SEX": "sex code not 1, 2 or 9: treated as missing",
    "INVALID_POSTCODE": "postcode not in UK format: treated as missing",
    "MISSING_DIAGNOSIS_DATE": "notification without a diagnosis date: its receipt date places it in time",
    "INVALID_DIAGNOSIS_DATE": "diagnosis date is not a real date: treated as missing",
    "DIAGNOSIS_IN_FUTURE": "diagnosis date after the date the registry received the record: treated as missing",
    "INVALID_MORPHOLOGY": "ICD-O-3 morphology not in the shipped list: treated as missing",
    "INVALID_BEHAVIOUR": "ICD-O-3 behaviour not 0, 1, 2, 3, 6 or 9: treated as missing",
    "INVALID_STAGE": "stage not 1–4: treated as missing",
    "INVALID_GRADE": "grade not G1–G4 or GX: treated as missing",
    "INVALID_LATERALITY": "laterality not L, R, B, M or 9: treated as missing",
    "INVALID_SITE_ON_TREATMENT": "ICD-10 site on a treatment record not in the code list: treated as missing",
    "INVALID_CAUSE_OF_DEATH": "underlying cause not a listed ICD-10 code: treated as missing",
    "INVALID_REQUEST_DATE": "opt-out request date is not a real date: the opt-out applies from the start",
}

PERSON_FEEDS = ("notifications", "sact", "radiotherapy", "surgery", "deaths", "registration_optouts", *LINKED_FEEDS)
TREATMENT_FEEDS = {"sact": "start_date", "radiotherapy": "start_date", "surgery": "procedure_date"}
EVENT_DATE = {"notifications": "received_date", "sact": "start_date", "radiotherapy": "start_date",
              "surgery": "procedure_date", "deaths": "registration_date",
              "registration_optouts": "request_date", **LINKED_FEEDS}
REQUIRED = {
    "notifications": ("record_id", "received_date"),
    "sact": ("record_id", "start_date"),
    "radiotherapy": ("record_id", "start_date"),
    "surgery": ("record_id", "procedure_date"),
    "deaths": ("record_id", "death_date", "registration_date"),
    "registration_optouts": ("record_id",),
    **LINKED_REQUIRED,
}
IDENTIFIERS = ("nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode")

#: The feed contract: every column a feed must carry and its kind (``text``, ``date`` as
#: YYYY-MM-DD text, ``number``); a missing column refuses the file, a bad value quarantines the
#: record. Columns not listed are optional (missing ones are treated as empty and named in the
#: link report). Numbers have plausible ranges; dates must lie in [1900-01-01, extract date].
FEED_CONTRACT: dict[str, dict[str, str]] = {
    "notifications": {"record_id": "text", "received_date": "date",
                      **dict.fromkeys(IDENTIFIERS, "text"), "birth_date": "date",
                      "diagnosis_date": "date", "site_icd10": "text"},
    "sact": {"record_id": "text", **dict.fromkeys(IDENTIFIERS, "text"), "birth_date": "date",
             "start_date": "date", "site_icd10": "text"},
    "radiotherapy": {"record_id": "text", **dict.fromkeys(IDENTIFIERS, "text"), "birth_date": "date",
                     "start_date": "date", "site_icd10": "text"},
    "surgery": {"record_id": "text", **dict.fromkeys(IDENTIFIERS, "text"), "birth_date": "date",
                "procedure_date": "date", "site_icd10": "text"},
    "deaths": {"record_id": "text", **dict.fromkeys(IDENTIFIERS, "text"), "birth_date": "date",
               "death_date": "date", "registration_date": "date"},
    "registration_optouts": {"record_id": "text", "nhs_number": "text", "given_name": "text",
                             "family_name": "text", "birth_date": "date", "request_date": "date"},
    "ndop": {"nhs_number": "text", "optout_date": "date"},
    # the screening programmes and the Cancer Patient Experience Survey (their own fields are
    # checked by registry_lib.linkage.linked_feeds.validate_linked)
    "screening": {"record_id": "text", **dict.fromkeys(IDENTIFIERS, "text"), "birth_date": "date",
                  "programme": "text", "invitation_date": "date"},
    "cpes": {"record_id": "text", **dict.fromkeys(IDENTIFIERS, "text"), "birth_date": "date",
             "trust_code": "text", "episode_date": "date"},
}
#: Optional columns every feed may carry, with their kind.
OPTIONAL: dict[str, dict[str, str]] = {
    "notifications": {"trust_code": "text", "source": "text", "ethnicity": "text", "morphology_icdo3": "text",
                      "behaviour": "text", "stage": "text", "grade": "text", "laterality": "text",
                      "route_to_diagnosis": "text", "basis_of_diagnosis": "text",
                      "performance_status": "number", "comorbidity_score": "number"},
    "sact": {"trust_code": "text", "regimen": "text", "intent": "text", "cycles": "number",
             "performance_status": "number"},
    "radiotherapy": {"trust_code": "text", "rt_region": "text", "dose_gy": "number", "fractions": "number",
                     "intent": "text"},
    "surgery": {"trust_code": "text", "procedure_code": "text"},
    "deaths": {"underlying_cause_icd10": "text"},
    "registration_optouts": {},
    "ndop": {},
    "screening": {"test_type": "text", "test_date": "text", "result": "text"},
    "cpes": {"ethnicity": "text", "site_icd10": "text"},
}
#: Numeric fields that are counts or codes (whole numbers).
INTEGER_COLUMNS = ("performance_status", "comorbidity_score", "cycles", "fractions")
#: Plausible ranges of numeric fields (inclusive).
NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "performance_status": (0, 4), "comorbidity_score": (0, 40), "cycles": (0, 200),
    "dose_gy": (0, 200), "fractions": (1, 100),
}
#: The registry's own dates a record must carry (receipt, registration): unparseable = unusable.
SYSTEM_DATES = ("received_date", "registration_date")
#: Dates before this are impossible for any record.
EARLIEST_DATE = pd.Timestamp("1900-01-01")
#: Dates that must not lie after the extract date (the record's own system dates and death).
NOT_AFTER_EXTRACT = {"notifications": ("received_date",), "deaths": ("registration_date", "death_date"),
                     "registration_optouts": ("request_date",)}


def check_contract(feeds: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], dict[str, list[str]]]:
    """Refuse a feed that breaks the contract's shape; return the feeds with every contract and
    optional column present (missing optional ones empty) and dates as text, plus the optional
    columns each feed lacked.

    Example:
        >>> check_contract({"ndop": pd.DataFrame({"optout_date": ["2020-01-01"]})})
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: feeds/ndop.parquet: required column nhs_number is missing
    """
    out: dict[str, pd.DataFrame] = {}
    absent: dict[str, list[str]] = {}
    for feed, df in feeds.items():
        contract = FEED_CONTRACT.get(feed)
        if contract is None:
            out[feed] = df
            continue
        for col in contract:
            if col not in df.columns:
                raise RegistryLabError(f"feeds/{feed}.parquet: required column {col} is missing")
        df = df.reset_index(drop=True).copy()
        for col, kind in {**OPTIONAL.get(feed, {}), **contract}.items():
            if col not in df.columns:
                absent.setdefault(feed, []).append(col)
                df[col] = pd.Series(pd.NA, index=df.index, dtype="Float64" if kind == "number" else std.TEXT)
            elif kind in ("text", "date"):
                series = df[col]
                if pd.api.types.is_datetime64_any_dtype(series.dtype):
                    series = series.dt.strftime("%Y-%m-%d")
                df[col] = _txt(series)
        out[feed] = df
    return out, absent


def _numbers(feed: str, df: pd.DataFrame, checks: _Checks) -> pd.DataFrame:
    """Numeric fields as numbers; text or an impossible value quarantines the record."""
    for col, kind in OPTIONAL.get(feed, {}).items():
        if kind != "number" or col not in df.columns:
            continue
        raw = df[col]
        if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
            value = raw.astype("Float64")
            present = value.notna().to_numpy()
        else:
            present = ~_blank(raw)
            value = pd.to_numeric(_txt(raw).astype(object), errors="coerce").astype("Float64")
        lo, hi = NUMBER_RANGES.get(col, (-np.inf, np.inf))
        ok = ((value >= lo) & (value <= hi)).fillna(False).to_numpy(dtype=bool)
        checks.fatal(present & ~ok, "INVALID_NUMBER",
                     (f"{col} ", _txt(raw), f" is not a number in [{lo:g}, {hi:g}]"))
        value = value.where(ok)
        if col in INTEGER_COLUMNS:
            whole = (value.round() == value).fillna(True).to_numpy(dtype=bool)
            checks.fatal(present & ok & ~whole, "INVALID_NUMBER", (f"{col} ", _txt(raw), " is not a whole number"))
            value = value.where(whole).round().astype("Int64")
        df[col] = value
    return df


def _date_ranges(feed: str, df: pd.DataFrame, checks: _Checks, as_of: pd.Timestamp) -> None:
    """Dates the record must carry must be real; no date may precede 1900; system dates and
    death dates may not follow the extract date."""
    for col, kind in FEED_CONTRACT[feed].items():
        if kind != "date":
            continue
        value, missing, bad = _dates(df, col)
        if col in SYSTEM_DATES:  # treatment and death dates have their own reasons
            checks.fatal(bad, "INVALID_DATE", (f"{col} ", _col(df, col), " is not a real date"))
        checks.fatal((value < EARLIEST_DATE).fillna(False).to_numpy(dtype=bool), "IMPLAUSIBLE_DATE",
                     (f"{col} ", _col(df, col), " is before 1900"))
        if col in NOT_AFTER_EXTRACT.get(feed, ()):
            checks.fatal((value > as_of).fillna(False).to_numpy(dtype=bool), "DATE_AFTER_EXTRACT",
                         (f"{col} ", _col(df, col), f" is after the extract date {as_of.date()}"))


@dataclass
class Validated:
    """Validated feeds.

    Attributes:
        records: one row per person-bearing feed record (all feeds but ndop): ``feed``,
            ``record_id``, ``event_date``, cleaned identifiers (``nhs_number`` valid or missing,
            ``given_name``, ``family_name`` lower-case letters, ``birth_date`` as sent when shaped
            YYYY-MM-DD, ``birth_date_value`` real date or NaT, ``sex`` "1"/"2", ``postcode``),
            and ``reason``/``detail`` for quarantined records (missing when usable).
        feeds: each feed with cleaned clinical fields added (``*_value`` dates, for notifications
            ``diagnosis_proxy`` = diagnosis date or else the receipt date, ``site3``,
            normalised codes with invalid ones set missing), same row order as ``records``.
        issues: field-level flags: ``feed``, ``record_id``, ``reason``, ``detail``.
        as_of: the extract date (the cohort's configured extract date, or the run date).

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.build import read_feeds
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> feeds, _ = read_feeds(tiny_cohort())
        >>> v = validate_feeds(feeds, as_of="2022-06-30")
        >>> isinstance(v, Validated), len(v.records) > 0, "reason" in v.records.columns
        (True, True, True)
    """

    records: pd.DataFrame
    feeds: dict[str, pd.DataFrame]
    issues: pd.DataFrame
    as_of: pd.Timestamp


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    if name in df.columns:
        return df[name].reset_index(drop=True)
    return pd.Series(pd.NA, index=pd.RangeIndex(len(df)), dtype=std.TEXT)


def _txt(series: pd.Series) -> pd.Series:
    """Arrow-backed text, stripped (numbers become their text)."""
    if not (pd.api.types.is_string_dtype(series.dtype) or series.dtype == object):
        series = series.astype(object).where(series.notna(), None).astype(str).where(series.notna(), None)
    return std.text(series).str.strip()


def _blank(series: pd.Series) -> np.ndarray:
    t = _txt(series)
    return (t.isna() | (t == "")).fillna(True).to_numpy(dtype=bool)


Detail = str | tuple  # a sentence, or parts (str or Series) joined only for the rows at fault


def _detail(detail: Detail, mask: np.ndarray) -> np.ndarray | str:
    if isinstance(detail, str):
        return detail
    out = pd.Series("", index=pd.RangeIndex(int(mask.sum())), dtype=object)
    for part in detail:
        if isinstance(part, str):
            out = out + part
        else:
            out = out + part[mask].astype(object).fillna("(missing)").astype(str).to_numpy()
    return out.to_numpy(dtype=object)


class _Checks:
    """Collects fatal reasons (first one wins) and field flags for one feed."""

    def __init__(self, feed: str, record_id: pd.Series) -> None:
        self.feed = feed
        self.record_id = record_id.astype(object).reset_index(drop=True)
        self.reason = np.full(len(record_id), None, dtype=object)
        self.detail = np.full(len(record_id), None, dtype=object)
        self.flags: list[pd.DataFrame] = []

    def fatal(self, mask: np.ndarray, reason: str, detail: Detail) -> None:
        mask = np.asarray(mask, dtype=bool) & pd.isna(self.reason)
        if not mask.any():
            return
        self.reason[mask] = reason
        self.detail[mask] = _detail(detail, mask)

    def flag(self, mask: np.ndarray, reason: str, detail: Detail) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        self.flags.append(pd.DataFrame({"feed": self.feed, "record_id": self.record_id[mask].to_numpy(),
                                        "reason": reason, "detail": _detail(detail, mask)}))


def _check_columns(feed: str, df: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED.get(feed, ("record_id",)) if c not in df.columns]
    if missing:
        raise RegistryLabError(f"feeds/{feed}.parquet: required column(s) {', '.join(missing)} missing")


def _identity(feed: str, df: pd.DataFrame, checks: _Checks, event: pd.Series) -> pd.DataFrame:
    """Cleaned identifiers of one feed, flags for invalid ones, NO_IDENTIFIERS when unusable."""
    nhs_raw = _txt(_col(df, "nhs_number")).str.replace(r"\s", "", regex=True)
    nhs_raw = nhs_raw.where(nhs_raw.str.len() > 0)
    shaped = nhs_raw.str.fullmatch(r"\d{10}").fillna(False).to_numpy(dtype=bool)
    nhs_ok = np.zeros(len(nhs_raw), dtype=bool)
    nhs_ok[shaped] = is_valid_nhs_number(nhs_raw[shaped].astype(object))
    checks.flag(nhs_raw.notna().to_numpy() & ~nhs_ok, "INVALID_NHS_NUMBER",
                "nhs_number fails the format or modulus-11 check")
    given = std.clean_name(_col(df, "given_name"))
    family = std.clean_name(_col(df, "family_name"))
    dob_raw = _col(df, "birth_date")
    dob = std.date_pattern(dob_raw)
    dob_value = std.parse_date(dob_raw)
    bad_dob = ~_blank(dob_raw) & dob_value.isna().to_numpy()
    checks.flag(bad_dob, "INVALID_BIRTH_DATE", "birth_date is not a real date")
    future_dob = (dob_value > event).fillna(False).to_numpy(dtype=bool)
    checks.flag(future_dob, "BIRTH_DATE_IN_FUTURE", "birth_date after the record's own date")
    dob_value = dob_value.where(~future_dob)
    sex_raw = _txt(_col(df, "sex"))
    sex = std.clean_sex(sex_raw)
    checks.flag(~_blank(sex_raw) & sex.isna().to_numpy() & (sex_raw != "9").fillna(True).to_numpy(),
                "INVALID_SEX", ("sex code ", sex_raw, " is not 1, 2 or 9"))
    pc_raw = _col(df, "postcode")
    pc = std.clean_postcode(pc_raw)
    checks.flag(~_blank(pc_raw) & pc.isna().to_numpy(), "INVALID_POSTCODE", "postcode not in UK format")

    has_name = given.notna() | family.notna()
    n_ids = has_name.astype(int) + dob.notna().astype(int) + pc.notna().astype(int)
    unusable = ~nhs_ok & (n_ids < 2).to_numpy()
    checks.fatal(unusable, "NO_IDENTIFIERS",
                 "no valid NHS number and fewer than two of name, birth date, postcode")
    return pd.DataFrame({
        "nhs_number": nhs_raw.where(nhs_ok).astype(std.TEXT),
        "given_name": given, "family_name": family,
        "birth_date": dob, "birth_date_value": dob_value,
        "sex": sex, "postcode": pc,
    })


def _dates(df: pd.DataFrame, name: str) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """(parsed date, missing mask, present-but-invalid mask)."""
    raw = _col(df, name)
    value = std.parse_date(raw)
    missing = _blank(raw)
    return value, missing, ~missing & value.isna().to_numpy()


def _required(checks: _Checks, feed: str, df: pd.DataFrame) -> None:
    for name in REQUIRED[feed]:
        checks.fatal(_blank(_col(df, name)), "MISSING_REQUIRED_FIELD", f"{name} is empty")


def _notifications(df: pd.DataFrame, checks: _Checks, ident: pd.DataFrame) -> pd.DataFrame:
    out = df.reset_index(drop=True).copy()
    received, _, _ = _dates(df, "received_date")
    diag, diag_missing, diag_bad = _dates(df, "diagnosis_date")
    site_raw = _txt(_col(df, "site_icd10"))
    site_ok = codes.valid_site(site_raw)
    checks.fatal(_blank(site_raw), "MISSING_SITE", "site_icd10 is empty")
    checks.fatal(~site_ok, "INVALID_SITE", ("site_icd10 ", site_raw, " is not a valid ICD-10 neoplasm code"))
    diag_text = _col(df, "diagnosis_date")
    checks.fatal((diag < ident["birth_date_value"]).fillna(False).to_numpy(dtype=bool), "DIAGNOSIS_BEFORE_BIRTH",
                 ("diagnosis_date ", diag_text, " is before the birth date"))
    checks.flag(diag_missing, "MISSING_DIAGNOSIS_DATE", "diagnosis_date is empty")
    checks.flag(diag_bad, "INVALID_DIAGNOSIS_DATE", ("diagnosis_date ", diag_text, " is not a real date"))
    future = (diag > received).fillna(False).to_numpy(dtype=bool)
    checks.flag(future, "DIAGNOSIS_IN_FUTURE", ("diagnosis_date ", diag_text, " is after received_date ",
                                                 _col(df, "received_date")))
    diag = diag.where(~future)
    out["received_value"] = received
    out["diagnosis_value"] = diag
    out["diagnosis_proxy"] = diag.fillna(received)
    out["site3"] = codes.site3(site_raw).where(site_ok)
    morph = _txt(_col(df, "morphology_icdo3")).str.slice(0, 4)
    m_ok = codes.valid_morphology(morph)
    checks.flag(~_blank(morph) & ~m_ok, "INVALID_MORPHOLOGY",
                ("morphology_icdo3 ", _col(df, "morphology_icdo3"), " is not in the ICD-O-3 list"))
    out["morphology_icdo3"] = morph.where(m_ok)
    _enum(out, checks, df, "behaviour", ["0", "1", "2", "3", "6", "9"], "INVALID_BEHAVIOUR")
    stage = _txt(_col(df, "stage")).str.upper().str.replace("STAGE", "").str.strip()
    stage = stage.str.slice(0, 1).where(stage.str.len() > 0)
    _enum(out, checks, df, "stage", ["1", "2", "3", "4"], "INVALID_STAGE", values=stage,
          ignore=["U", "X", "9", "?"])
    grade = _txt(_col(df, "grade")).str.upper()
    grade = grade.where(~grade.isin(["1", "2", "3", "4"]).fillna(False), "G" + grade)
    _enum(out, checks, df, "grade", ["G1", "G2", "G3", "G4", "GX"], "INVALID_GRADE", values=grade)
    _enum(out, checks, df, "laterality", ["L", "R", "B", "M", "9"], "INVALID_LATERALITY",
          values=_txt(_col(df, "laterality")).str.upper())
    return out


def _enum(out: pd.DataFrame, checks: _Checks, df: pd.DataFrame, name: str, allowed: list[str],
          reason: str, values: pd.Series | None = None, ignore: list[str] | None = None) -> None:
    raw = _col(df, name)
    vals = std.text(values if values is not None else _txt(raw))
    ok = vals.isin(allowed).fillna(False).to_numpy(dtype=bool)
    ignored = vals.isin(ignore or []).fillna(False).to_numpy(dtype=bool)
    checks.flag(~_blank(raw) & ~ok & ~ignored, reason, (f"{name} ", raw, " is not allowed"))
    out[name] = vals.where(ok)


def _treatment(feed: str, df: pd.DataFrame, checks: _Checks, ident: pd.DataFrame,
               as_of: pd.Timestamp) -> pd.DataFrame:
    out = df.reset_index(drop=True).copy()
    date_col = TREATMENT_FEEDS[feed]
    start, _, bad = _dates(df, date_col)
    raw = _col(df, date_col)
    checks.fatal(bad, "INVALID_TREATMENT_DATE", (f"{date_col} ", raw, " is not a real date"))
    checks.fatal((start > as_of).fillna(False).to_numpy(dtype=bool), "TREATMENT_IN_FUTURE",
                 (f"{date_col} ", raw, f" is after the extract date {as_of.date()}"))
    checks.fatal((start < ident["birth_date_value"]).fillna(False).to_numpy(dtype=bool),
                 "TREATMENT_BEFORE_BIRTH", (f"{date_col} ", raw, " is before the birth date"))
    out["start_value"] = start
    site_raw = _txt(_col(df, "site_icd10"))
    ok = codes.valid_site(site_raw)
    checks.flag(~_blank(site_raw) & ~ok, "INVALID_SITE_ON_TREATMENT",
                ("site_icd10 ", site_raw, " is not a valid ICD-10 neoplasm code"))
    out["site3"] = codes.site3(site_raw).where(ok)
    return out


def _deaths(df: pd.DataFrame, checks: _Checks, ident: pd.DataFrame) -> pd.DataFrame:
    out = df.reset_index(drop=True).copy()
    death, _, bad = _dates(df, "death_date")
    registered, _, _ = _dates(df, "registration_date")
    raw = _col(df, "death_date")
    checks.fatal(bad, "INVALID_DEATH_DATE", ("death_date ", raw, " is not a real date"))
    checks.fatal((death > registered).fillna(False).to_numpy(dtype=bool), "DEATH_IN_FUTURE",
                 ("death_date ", raw, " is after registration_date ", _col(df, "registration_date")))
    checks.fatal((death < ident["birth_date_value"]).fillna(False).to_numpy(dtype=bool),
                 "DEATH_BEFORE_BIRTH", ("death_date ", raw, " is before the birth date"))
    out["death_value"] = death
    cause_raw = _txt(_col(df, "underlying_cause_icd10"))
    ok = codes.valid_cause_of_death(cause_raw)
    checks.flag(~_blank(cause_raw) & ~ok, "INVALID_CAUSE_OF_DEATH",
                ("underlying_cause_icd10 ", cause_raw, " is not a listed ICD-10 code"))
    out["cause"] = codes.normalise_code(cause_raw).where(ok)
    return out


def _optouts(df: pd.DataFrame, checks: _Checks) -> pd.DataFrame:
    out = df.reset_index(drop=True).copy()
    date, _, bad = _dates(df, "request_date")
    checks.flag(bad | _blank(_col(df, "request_date")), "INVALID_REQUEST_DATE",
                "request_date is missing or not a real date")
    out["request_value"] = date
    return out


def extract_date(configured: str | pd.Timestamp | None = None) -> pd.Timestamp:
    """The extract date: the configured one (the cohort's), else today (the run date); never a
    date read from the feeds themselves, so one record dated 2099 cannot move it.

    Example:
        >>> extract_date("2024-06-30")
        Timestamp('2024-06-30 00:00:00')
    """
    if configured is None:
        return pd.Timestamp.today().normalize()
    value = pd.to_datetime(configured, errors="coerce")
    if pd.isna(value):
        raise RegistryLabError(f"extract date {configured!r} is not a date (YYYY-MM-DD)")
    return pd.Timestamp(value).normalize()


def validate_feed(feed: str, df: pd.DataFrame, as_of: pd.Timestamp, *, first_row: int = 0,
                  duplicate: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame, list[pd.DataFrame]]:
    """Validate the rows of one feed (all of it, or a slice of a feed read in parts).

    ``df`` has passed :func:`check_contract`. A slice starting at row ``first_row`` (0-based) of
    its feed names a record without an id by its row in the whole feed, and ``duplicate`` marks
    its records whose id an earlier row of the whole feed already used (default: within ``df``).
    Returns ``(records, cleaned feed rows, field flags)`` as :func:`validate_feeds` assembles them.

    Example:
        >>> feed = pd.DataFrame({"record_id": ["D1", "D1"], "nhs_number": [None, None], "given_name": ["ann", "ann"],
        ...     "family_name": ["lee", "lee"], "birth_date": ["1950-01-02"] * 2, "sex": ["2", "2"],
        ...     "postcode": [None, None], "death_date": ["2020-01-01"] * 2,
        ...     "underlying_cause_icd10": ["C50"] * 2, "registration_date": ["2020-01-05"] * 2})
        >>> feed, _ = check_contract({"deaths": feed})
        >>> rec, rows, flags = validate_feed("deaths", feed["deaths"], pd.Timestamp("2021-01-01"))
        >>> rec["reason"].tolist()
        [<NA>, 'DUPLICATE_RECORD_ID']
    """
    record_id = _txt(df["record_id"])
    no_id = record_id.isna() | (record_id == "")
    record_id = record_id.where(~no_id, "(no record_id: row " + pd.Series(
        np.arange(first_row + 1, first_row + len(df) + 1), index=record_id.index).astype(str) + ")")
    checks = _Checks(feed, record_id)
    checks.fatal(no_id.to_numpy(dtype=bool), "MISSING_RECORD_ID", "record_id is empty")
    if duplicate is None:
        duplicate = record_id.duplicated().to_numpy(dtype=bool)
    first = ~np.asarray(duplicate, dtype=bool) | no_id.to_numpy(dtype=bool)
    checks.fatal(~first, "DUPLICATE_RECORD_ID", "record_id already used by an earlier record of this feed")
    _required(checks, feed, df)
    _date_ranges(feed, df, checks, as_of)
    df = _numbers(feed, df, checks)
    event, _, _ = _dates(df, EVENT_DATE[feed])
    # a birth date is "in the future" after the record's own system date (receipt,
    # registration, request); treatment dates are clinical, so the extract date serves
    now = pd.Series(as_of, index=event.index) if feed in TREATMENT_FEEDS else event.fillna(as_of)
    ident = _identity(feed, df, checks, now)
    if feed == "notifications":
        cleaned = _notifications(df, checks, ident)
    elif feed in TREATMENT_FEEDS:
        cleaned = _treatment(feed, df, checks, ident, as_of)
    elif feed == "deaths":
        cleaned = _deaths(df, checks, ident)
    elif feed in LINKED_FEEDS:
        cleaned = validate_linked(feed, df, checks)
    else:
        cleaned = _optouts(df, checks)
    rec = ident.copy()
    rec.insert(0, "feed", feed)
    rec.insert(1, "record_id", checks.record_id)
    rec.insert(2, "event_date", event)
    rec["reason"] = pd.array(checks.reason, dtype=std.TEXT)
    rec["detail"] = pd.array(checks.detail, dtype=std.TEXT)
    return rec, cleaned, checks.flags


def validate_feeds(feeds: dict[str, pd.DataFrame], as_of: str | pd.Timestamp | None = None) -> Validated:
    """Check every record of every person-bearing feed; see the module docstring.

    ``as_of`` is the extract date (default: today). A feed that breaks the contract's shape is
    refused (:func:`check_contract`); a bad record is quarantined with a reason.

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.build import read_feeds
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> feeds, _ = read_feeds(tiny_cohort())
        >>> v = validate_feeds(feeds, as_of="2022-06-30")
        >>> sorted(v.records["feed"].unique())[:3], str(v.as_of.date())
        (['cpes', 'deaths', 'notifications'], '2022-06-30')
    """
    feeds, _ = check_contract(feeds)
    as_of = extract_date(as_of)
    records, cleaned, issues = [], {}, []
    for feed in PERSON_FEEDS:
        if feed not in feeds:
            continue
        rec, cleaned[feed], flags = validate_feed(feed, feeds[feed], as_of)
        records.append(rec)
        issues.extend(flags)
    if not records:
        raise RegistryLabError("feeds/: no person-bearing feed found (expected notifications.parquet at least)")
    records_df = pd.concat(records, ignore_index=True)
    issues_df = (pd.concat(issues, ignore_index=True) if issues else
                 pd.DataFrame({"feed": [], "record_id": [], "reason": [], "detail": []}).astype(object))
    return Validated(records=records_df, feeds=cleaned, issues=issues_df, as_of=as_of)
