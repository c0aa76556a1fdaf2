"""The identifiers a feed record carries: its true patient's as of the record's date, plus errors.

:func:`identifiers_as_sent` returns the six identifier columns (NHS number, given name, family
name, birth date, sex, postcode) of a batch of records and a boolean matrix of the error kinds
injected into each (:data:`ERROR_KINDS`); :func:`errors_text` turns that matrix into the
``;``-joined ``record_truth.errors`` strings.

Example:
    >>> m = np.zeros((1, len(ERROR_KINDS)), dtype=bool); m[0, KIND_INDEX["dob_swap"]] = True
    >>> errors_text(m).tolist()
    ['dob_swap']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.synth.feed_dates import DAY, date_text, to_days
from registry_lib.synth.feed_params import SourceIndex
from registry_lib.synth.feeds_errors import (
    ERROR_KINDS,
    nickname_choices,
    swap_day_month,
    transpose_adjacent_digits,
    typo,
)

KIND_INDEX = {k: i for i, k in enumerate(ERROR_KINDS)}


# --------------------------------------------------------------------------------------------
# The true people, as arrays indexed by patient row
# --------------------------------------------------------------------------------------------
@dataclass
class People:
    """Identifiers of the true patients as object arrays (None where absent), by patient row.

    Example:
        >>> pts = pd.DataFrame({"patient_id": [1, 2], "nhs_number": ["9434765919", "9000000009"],
        ...     "given_name": ["Ann", "Bob"], "family_name": ["Lee", "Stone"], "family_name_later": ["Khan", None],
        ...     "name_change_date": pd.to_datetime(["2021-03-01", None]), "birth_date": pd.to_datetime(["1950-01-02", "1961-07-08"]),
        ...     "sex": [2, 1], "postcode": ["LS6 2AB", "M1 1AA"], "postcode_later": [None, None],
        ...     "move_date": pd.to_datetime([None, None]), "death_date": pd.to_datetime([None, None])})
        >>> people = people_from_patients(pts)
        >>> isinstance(people, People), people.family_later.tolist(), people.birth_text.tolist()
        (True, ['Khan', None], ['1950-01-02', '1961-07-08'])
    """

    ids: pd.Index
    nhs: np.ndarray
    given: np.ndarray
    family: np.ndarray
    family_later: np.ndarray
    change: np.ndarray
    birth: np.ndarray
    birth_text: np.ndarray
    birth_day_ne_month: np.ndarray
    sex: np.ndarray
    postcode: np.ndarray
    postcode_later: np.ndarray
    move: np.ndarray
    ethnicity: np.ndarray
    performance_status: np.ndarray
    comorbidity: np.ndarray
    death: np.ndarray

    def rows(self, patient_ids: np.ndarray, what: str) -> np.ndarray:
        """Row of each patient id; a clear error if one is not a true patient."""
        rows = self.ids.get_indexer(patient_ids)
        if (rows < 0).any():
            bad = patient_ids[rows < 0][0]
            raise RegistryLabError(f"make_feeds: {what} refers to patient {bad}, who is not in truth/patients")
        return rows


def people_from_patients(patients: pd.DataFrame) -> People:
    """The identifier arrays of truth/patients; a clear error where a required one is missing.

    Example:
        >>> people_from_patients(pd.DataFrame({"patient_id": [7, 7]}))
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: make_feeds: truth/patients has patient_id 7 twice
    """
    ids = pd.Index(patients["patient_id"].to_numpy())
    if not ids.is_unique:
        raise RegistryLabError(f"make_feeds: truth/patients has patient_id {ids[ids.duplicated()][0]} twice")
    n = len(patients)

    def text(col: str) -> np.ndarray:
        if col not in patients:
            return np.full(n, None, dtype=object)
        values = patients[col].to_numpy(dtype=object).copy()
        values[pd.isna(values) | (values == "")] = None
        return values

    def small_int(col: str) -> np.ndarray:
        if col not in patients:
            return np.full(n, -1, dtype=np.int64)
        return patients[col].fillna(-1).to_numpy(dtype=np.int64)

    required = {"nhs_number": "an NHS number", "given_name": "a given name", "family_name": "a family name",
                "birth_date": "a birth date", "postcode": "a postcode", "sex": "a sex"}
    for col, what in required.items():
        missing = patients[col].isna().to_numpy() if col in patients else np.ones(n, bool)
        if missing.any():
            raise RegistryLabError(f"make_feeds: true patient {ids[np.flatnonzero(missing)[0]]} has no {what}")
    birth = to_days(patients["birth_date"])
    return People(
        ids=ids, nhs=text("nhs_number"), given=text("given_name"),
        family=text("family_name"), family_later=text("family_name_later"),
        change=to_days(patients["name_change_date"]), birth=birth, birth_text=date_text(birth),
        birth_day_ne_month=(birth - birth.astype("datetime64[M]").astype("datetime64[D]")) / DAY + 1
        != birth.astype("datetime64[M]").astype(np.int64) % 12 + 1,
        sex=patients["sex"].to_numpy(dtype=np.int64), postcode=text("postcode"),
        postcode_later=text("postcode_later"), move=to_days(patients["move_date"]),
        ethnicity=text("ethnicity"), performance_status=small_int("performance_status"),
        comorbidity=small_int("comorbidity_score"), death=to_days(patients["death_date"]),
    )


# --------------------------------------------------------------------------------------------
# Identifiers as sent, with errors
# --------------------------------------------------------------------------------------------
_SEX_TEXT = np.array([None, "1", "2"], dtype=object)


def identifiers_as_sent(people: People, rows: np.ndarray, dates: np.ndarray, sources: SourceIndex,
                        params: dict[str, Any], rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The six identifier columns of each record and an (n × kinds) matrix of injected errors.

    ``rows`` are patient rows of ``people``, ``dates`` the records' dates (``datetime64[D]``),
    ``sources`` their source labels (for per-source error rates).

    Example:
        >>> from registry_lib.synth.feed_params import feed_params
        >>> pts = pd.DataFrame({"patient_id": [1, 2], "nhs_number": ["9434765919", "9000000009"],
        ...     "given_name": ["Ann", "Bob"], "family_name": ["Lee", "Stone"], "family_name_later": ["Khan", None],
        ...     "name_change_date": pd.to_datetime(["2021-03-01", None]), "birth_date": pd.to_datetime(["1950-01-02", "1961-07-08"]),
        ...     "sex": [2, 1], "postcode": ["LS6 2AB", "M1 1AA"], "postcode_later": [None, None],
        ...     "move_date": pd.to_datetime([None, None]), "death_date": pd.to_datetime([None, None])})
        >>> people = people_from_patients(pts)
        >>> dates = np.array(["2020-05-01", "2022-05-01", "2022-05-01"], dtype="datetime64[D]")
        >>> sources = SourceIndex(np.array(["registration_optouts", "registration_optouts", "deaths"], dtype=object))
        >>> cols, kinds = identifiers_as_sent(people, np.array([0, 0, 1]), dates, sources, feed_params(),
        ...                                   np.random.default_rng(0))   # opt-outs carry no errors; ONS sends capitals (here with a typo)
        >>> print(pd.DataFrame(cols).to_string())
           nhs_number given_name family_name  birth_date sex postcode
        0  9434765919        Ann         Lee  1950-01-02   2  LS6 2AB
        1  9434765919        Ann        Khan  1950-01-02   2  LS6 2AB
        2  9000000009        BBO       STONE  1961-07-08   1   M1 1AA
        >>> errors_text(kinds).tolist()
        ['', 'surname_change', 'given_typo']
    """
    n = len(rows)
    err = params["errors"]
    kinds = np.zeros((n, len(ERROR_KINDS)), dtype=bool)

    def rate(kind: str) -> np.ndarray:
        return sources.rates(err[kind])

    # Surname and postcode as of the record's date.
    later = ~np.isnat(people.change[rows]) & (dates >= people.change[rows])
    family = np.where(later, people.family_later[rows], people.family[rows])
    kinds[:, KIND_INDEX["surname_change"]] = later
    moved = ~np.isnat(people.move[rows]) & (dates >= people.move[rows])
    postcode = np.where(moved, people.postcode_later[rows], people.postcode[rows])
    kinds[:, KIND_INDEX["house_move"]] = moved

    # NHS number: missing, or two adjacent digits transposed.
    nhs = people.nhs[rows]
    nhs_missing = rng.random(n) < rate("nhs_missing")
    kinds[:, KIND_INDEX["nhs_missing"]] = nhs_missing
    pick = np.flatnonzero((rng.random(n) < rate("nhs_transposed")) & ~nhs_missing)
    new, changed = transpose_adjacent_digits(nhs[pick].astype("U10"), rng)
    nhs[pick] = new.astype(object)
    kinds[pick[changed], KIND_INDEX["nhs_transposed"]] = True

    # Another person's valid NHS number (drawn only when the profile asks for it, so the
    # default cohort's random stream is unchanged).
    if rate("nhs_wrong").any():
        pick = np.flatnonzero((rng.random(n) < rate("nhs_wrong")) & ~nhs_missing)
        other = rng.integers(0, len(people.nhs), size=len(pick))
        other_nhs = people.nhs[other]
        differs = other_nhs != nhs[pick]
        nhs[pick[differs]] = other_nhs[differs]
        kinds[pick[differs], KIND_INDEX["nhs_wrong"]] = True

    # Given name: nickname (where the name has one), then typos; family name typos.
    given = people.given[rows]
    pick = np.flatnonzero(rng.random(n) < rate("given_nickname"))
    nick, has = nickname_choices(given[pick].astype(str), rng)
    given[pick[has]] = nick[has]
    kinds[pick[has], KIND_INDEX["given_nickname"]] = True
    ops = err["typo_operations"]
    pick = np.flatnonzero(rng.random(n) < rate("given_typo"))
    given[pick] = typo(given[pick].astype(str), rng, ops)
    kinds[pick, KIND_INDEX["given_typo"]] = True
    # A typo can undo a nickname (Anne -> Annie -> Anne): then nothing was changed after all.
    undone = np.flatnonzero(kinds[:, KIND_INDEX["given_nickname"]] & kinds[:, KIND_INDEX["given_typo"]])
    undone = undone[np.strings.lower(given[undone].astype(str))
                    == np.strings.lower(people.given[rows[undone]].astype(str))]
    kinds[undone, KIND_INDEX["given_nickname"]] = False
    kinds[undone, KIND_INDEX["given_typo"]] = False
    pick = np.flatnonzero(rng.random(n) < rate("family_typo"))
    family[pick] = typo(family[pick].astype(str), rng, ops)
    kinds[pick, KIND_INDEX["family_typo"]] = True
    upper = np.flatnonzero(rng.random(n) < rate("uppercase_names"))
    given[upper] = np.strings.upper(given[upper].astype(str))
    family[upper] = np.strings.upper(family[upper].astype(str))

    # Birth date: day-month swap (only where day != month), or another day of the same month.
    birth_days = people.birth[rows]
    birth = people.birth_text[rows]
    swap = np.flatnonzero((rng.random(n) < rate("dob_swap")) & people.birth_day_ne_month[rows])
    birth[swap] = swap_day_month(birth[swap].astype("U10")).astype(object)
    kinds[swap, KIND_INDEX["dob_swap"]] = True
    u = rng.random(n)
    shift = rng.integers(1, 28, size=n)
    pick = np.flatnonzero((u < rate("dob_typo")) & ~kinds[:, KIND_INDEX["dob_swap"]])
    if len(pick):
        d = birth_days[pick]
        first = d.astype("datetime64[M]").astype("datetime64[D]")
        new_day = ((d - first) / DAY).astype(np.int64) + shift[pick]
        birth[pick] = date_text(first + (new_day % 28) * DAY)
        kinds[pick, KIND_INDEX["dob_typo"]] = True

    # Default dates: 1 January of the birth year, or the 1900-01-01 placeholder (profile only).
    if rate("dob_first_january").any() or rate("dob_1900").any():
        u = rng.random(n)
        jan = u < rate("dob_first_january")
        ph = ~jan & (u < rate("dob_first_january") + rate("dob_1900"))
        year = birth_days.astype("datetime64[Y]")
        jan1 = date_text(year.astype("datetime64[D]"))
        new = np.where(ph, "1900-01-01", jan1).astype(object)
        hit = (jan | ph) & (new != birth.astype(str))
        birth[hit] = new[hit]
        kinds[hit, KIND_INDEX["dob_default"]] = True

    # Sex: 1 <-> 2 miscoded, or 9 not specified.
    true_sex = people.sex[rows]
    mis = rng.random(n) < rate("sex_miscoded")
    unknown = (rng.random(n) < rate("sex_unknown")) & ~mis
    sex = _SEX_TEXT[np.where(mis, 3 - true_sex, true_sex)]
    sex[unknown] = "9"
    kinds[:, KIND_INDEX["sex_miscoded"]] = mis
    kinds[:, KIND_INDEX["sex_unknown"]] = unknown

    pc_missing = rng.random(n) < rate("postcode_missing")
    kinds[:, KIND_INDEX["postcode_missing"]] = pc_missing
    postcode[pc_missing] = None

    # Unusable: no name, no birth date, no NHS number.
    unusable = rng.random(n) < rate("unusable")
    kinds[:, KIND_INDEX["unusable"]] = unusable
    nhs[nhs_missing | unusable] = None
    for values in (given, family, birth):
        values[unusable] = None
    cols = {"nhs_number": nhs, "given_name": given, "family_name": family, "birth_date": birth,
            "sex": sex, "postcode": postcode}
    return cols, kinds


def errors_text(kinds: np.ndarray) -> np.ndarray:
    """';'-joined error kinds of each row of a boolean (n × kinds) matrix ('' for none).

    Example:
        >>> m = np.zeros((2, len(ERROR_KINDS)), dtype=bool); m[1, [2, 7]] = True
        >>> errors_text(m).tolist()
        ['', 'nhs_missing;dob_swap']
    """
    names = np.array(list(ERROR_KINDS))
    if len(kinds) == 0:
        return np.array([], dtype=object)
    code = kinds.astype(np.int64) @ (1 << np.arange(kinds.shape[1], dtype=np.int64))
    inverse, uniq = pd.factorize(code)
    text = np.array([";".join(names[(c >> np.arange(len(names))) & 1 == 1]) for c in uniq], dtype=object)
    return text[inverse]


