"""Registered persons and their best values.

A registered person is a linked cluster holding at least one usable notification. Patient ids
are 1, 2, … in order of each person's earliest notification (receipt date, then record id), so
they are deterministic and carry no meaning.

Best values over all of a person's linked records (notifications, treatments, deaths):

* NHS number, birth date, sex, given name: the value on most records (ties: the latest record);
  birth dates only where they are real dates;
* family name and postcode: the value on the latest record (a marriage or a house move
  replaces the old one); area and deprivation from the postcode directory;
* ethnicity: the most frequent stated value on notifications.

Example:
    >>> import pandas as pd
    >>> recs = pd.DataFrame({"person": [7, 7, 7], "event_date": pd.to_datetime(["2020-01-01", "2020-02-01", "2021-01-01"]),
    ...                      "record_id": ["a", "b", "c"], "family_name": ["lee", "lee", "stone"]})
    >>> latest_value(recs, "person", "family_name").tolist()
    ['stone']
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _order(df: pd.DataFrame) -> np.ndarray:
    """A deterministic integer tie-breaker: the row label (records keep their feed order)."""
    return np.asarray(df.index, dtype=np.int64)


def _event(df: pd.DataFrame) -> np.ndarray:
    """Event dates as int64 nanoseconds; a missing date sorts before every real one."""
    return pd.to_datetime(df["event_date"]).to_numpy(dtype="datetime64[ns]").astype(np.int64)


def _first_per_key(keys: np.ndarray, order_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, position of each key's first row in ``order_idx`` order)."""
    k = keys[order_idx]
    uniq, first = np.unique(k, return_index=True)
    return uniq, order_idx[first]


def most_frequent(df: pd.DataFrame, key: str, col: str) -> pd.Series:
    """Per ``key``: the most frequent non-missing ``col`` (ties: latest event, then later row).

    Example:
        >>> recs = pd.DataFrame({"person": [7, 7, 7], "event_date": pd.to_datetime(["2020-01-01", "2020-02-01", "2021-01-01"]),
        ...                      "record_id": ["a", "b", "c"], "ethnicity": ["A", "A", "B"]})
        >>> most_frequent(recs, "person", "ethnicity").tolist()
        ['A']
    """
    code, uniques = pd.factorize(df[col])
    ok = code >= 0
    d = pd.DataFrame({"k": df[key].to_numpy()[ok], "c": code[ok], "e": _event(df)[ok], "o": _order(df)[ok]})
    agg = d.groupby(["k", "c"], sort=False).agg(n=("o", "size"), e=("e", "max"), o=("o", "max")).reset_index()
    k = agg["k"].to_numpy()
    idx = np.lexsort((-agg["o"].to_numpy(), -agg["e"].to_numpy(), -agg["n"].to_numpy(), k))
    uniq, rows = _first_per_key(k, idx)
    return pd.Series(np.asarray(uniques, dtype=object)[agg["c"].to_numpy()[rows]], index=uniq, name=col)


def latest_value(df: pd.DataFrame, key: str, col: str) -> pd.Series:
    """Per ``key``: ``col`` on the latest record that has one (ties: later row).

    Example:
        >>> recs = pd.DataFrame({"person": [1, 1], "event_date": pd.to_datetime(["2020-01-01", "2021-01-01"]),
        ...                      "record_id": ["a", "b"], "postcode": ["LS6 2AB", None]})
        >>> latest_value(recs, "person", "postcode").tolist()
        ['LS6 2AB']
    """
    ok = df[col].notna().to_numpy()
    k = df[key].to_numpy()[ok]
    idx = np.lexsort((-_order(df)[ok], -_event(df)[ok], k))
    uniq, rows = _first_per_key(k, idx)
    return pd.Series(df[col].to_numpy(dtype=object)[ok][rows], index=uniq, name=col)


def patient_ids(records: pd.DataFrame, person_col: str = "person") -> pd.Series:
    """Registry patient id (1, 2, …) for each person with a usable notification.

    Example:
        >>> recs = pd.DataFrame({"feed": ["notifications", "notifications", "deaths", "notifications"],
        ...     "record_id": ["n1", "n2", "d1", "n3"], "person": [4, 9, 5, 4], "reason": [None, None, None, None],
        ...     "event_date": pd.to_datetime(["2020-05-01", "2019-01-01", "2020-01-01", "2021-01-01"])})
        >>> patient_ids(recs).to_dict()   # person 9 was notified first; person 5 only died
        {9: 1, 4: 2}
    """
    notes = records[(records["feed"] == "notifications") & records["reason"].isna()]
    first = (notes.sort_values(["event_date", "record_id"], kind="stable")
             .drop_duplicates(person_col)[person_col].to_numpy())
    return pd.Series(np.arange(1, len(first) + 1, dtype=np.int64), index=first, name="patient_id")


def best_values(records: pd.DataFrame, notifications: pd.DataFrame, postcodes: pd.DataFrame | None,
                areas: pd.DataFrame | None, raw_names: pd.DataFrame) -> pd.DataFrame:
    """The patient table (without death and opt-out columns) from linked records.

    ``records`` are validated person records with ``patient_id``; ``raw_names`` holds the names
    as sent (``given_name_raw``, ``family_name_raw``) aligned with ``records``.

    Example (patient 1 married and moved: the latest family name and postcode win; her name
    as sent in capitals is shown as sent elsewhere):
        >>> recs = pd.DataFrame({"patient_id": [1, 1, 1, 2], "record_id": ["n1", "n2", "d1", "n3"],
        ...     "event_date": pd.to_datetime(["2019-03-01", "2020-06-01", "2021-01-05", "2020-02-02"]),
        ...     "nhs_number": ["9434765919", "9434765919", None, "4010232137"],
        ...     "given_name": ["ann", "ann", "anne", "bob"], "family_name": ["lee", "stone", "stone", "khan"],
        ...     "birth_date_value": pd.to_datetime(["1950-01-02", "1950-01-02", "1950-02-01", "1961-04-23"]),
        ...     "sex": ["2", "2", "2", "1"], "postcode": ["LS6 2AB", "LS1 4AP", None, "M1 1AA"]})
        >>> raw = pd.DataFrame({"given_name_raw": ["ANN", "Ann", "Anne", "Bob"],
        ...                     "family_name_raw": ["LEE", "STONE", "Stone", "Khan"]})
        >>> notes = recs[recs["record_id"].str.startswith("n")].assign(
        ...     received_value=lambda d: d["event_date"], ethnicity=["A", "Not stated", "B"])
        >>> postcodes = pd.DataFrame({"postcode": ["LS1 4AP", "M1 1AA"], "area_id": ["E01011", "E01005"]})
        >>> areas = pd.DataFrame({"area_id": ["E01011", "E01005"], "deprivation_quintile": [3, 1]})
        >>> patients = best_values(recs, notes, postcodes, areas, raw)
        >>> print(patients[["patient_id", "nhs_number", "given_name", "family_name", "birth_date", "sex"]].to_string())
           patient_id  nhs_number given_name family_name birth_date  sex
        0           1  9434765919        Ann       Stone 1950-01-02    2
        1           2  4010232137        Bob        Khan 1961-04-23    1
        >>> print(patients[["patient_id", "ethnicity", "postcode", "area_id", "deprivation_quintile"]].to_string())
           patient_id ethnicity postcode area_id  deprivation_quintile
        0           1         A  LS1 4AP  E01011                     3
        1           2         B   M1 1AA  E01005                     1
    """
    recs = records.assign(given_name_raw=raw_names["given_name_raw"].to_numpy(),
                          family_name_raw=raw_names["family_name_raw"].to_numpy())
    key = "patient_id"
    ids = np.sort(recs[key].dropna().unique()).astype(np.int64)
    out = pd.DataFrame(index=pd.Index(ids, name=key))
    out["nhs_number"] = most_frequent(recs, key, "nhs_number")
    given = most_frequent(recs, key, "given_name")
    out["given_name"] = _display(recs, key, "given_name", "given_name_raw", given)
    family = latest_value(recs, key, "family_name")
    out["family_name"] = _display(recs, key, "family_name", "family_name_raw", family)
    out["birth_date"] = pd.to_datetime(most_frequent(recs, key, "birth_date_value"))
    sex = most_frequent(recs, key, "sex")
    out["sex"] = pd.to_numeric(sex).astype("Int8")
    notes = notifications.assign(event_date=notifications["received_value"],
                                 ethnicity=notifications["ethnicity"].astype("string").str.strip()
                                 .replace({"": pd.NA, "Unknown": pd.NA, "Not stated": pd.NA}))
    out["ethnicity"] = most_frequent(notes, key, "ethnicity")
    out["postcode"] = latest_value(recs, key, "postcode")
    if postcodes is not None:
        area = out["postcode"].map(postcodes.set_index("postcode")["area_id"])
        out["area_id"] = area
    else:
        out["area_id"] = pd.NA
    if areas is not None:
        out["deprivation_quintile"] = out["area_id"].map(areas.set_index("area_id")["deprivation_quintile"]).astype("Int8")
    else:
        out["deprivation_quintile"] = pd.array([pd.NA] * len(out), dtype="Int8")
    return out.reset_index()


def _display(recs: pd.DataFrame, key: str, clean: str, raw: str, chosen: pd.Series) -> pd.Series:
    """The name as sent (title case when sent in capitals) on a record carrying the chosen value."""
    ok = recs[clean].notna().to_numpy()
    d = recs[ok]
    d = d[d[clean].to_numpy() == d[key].map(chosen).to_numpy()]
    text = d[raw].astype("string[pyarrow]").str.strip()
    shouting = text.str.isupper().fillna(False).to_numpy(dtype=bool)
    show = text.where(~shouting, text.str.title()).to_numpy(dtype=object)
    k = d[key].to_numpy()
    idx = np.lexsort((-_order(d), -_event(d), shouting.astype(np.int8), k))
    uniq, rows = _first_per_key(k, idx)
    return pd.Series(show[rows], index=uniq)
