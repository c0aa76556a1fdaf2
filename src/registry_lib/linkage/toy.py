"""A tiny cohort with known answers, for examples and tests of linkage.

:func:`toy_cohort` makes persons with one or two tumours, several notifications per tumour,
treatments and deaths, in the ``feeds/`` schemas, with a few identifier errors of each kind
(missing or transposed NHS number, nickname, typo, day–month swap, surname change, house move),
one registration opt-out with a later notification, unusable records and an invalid site code;
``truth/record_truth`` says who every record belongs to. Deliberately simple clinical content:
it is not synthetic England (use ``registry_lib.synth`` for that).

Example:
    >>> feeds, truth = toy_cohort(n_persons=30, seed=2)
    >>> sorted(feeds)[:3], len(truth["record_truth"]) == sum(len(f) for k, f in feeds.items() if k != "ndop")
    (['deaths', 'ndop', 'notifications'], True)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from registry_lib.io import write_parquet
from registry_lib.nhs_number import generate_nhs_numbers
from registry_lib.synth import tables as ST

GIVEN_F = np.array(["Elizabeth", "Margaret", "Susan", "Patricia", "Jennifer", "Mary", "Sarah", "Ann"])
GIVEN_M = np.array(["Robert", "William", "James", "John", "Richard", "Thomas", "Edward", "David"])
NICK = {"Elizabeth": "Liz", "Margaret": "Peggy", "Susan": "Sue", "Patricia": "Pat", "Jennifer": "Jenny",
        "Mary": "Molly", "Sarah": "Sally", "Ann": "Annie", "Robert": "Bob", "William": "Bill", "James": "Jim",
        "John": "Jack", "Richard": "Dick", "Thomas": "Tom", "Edward": "Ted", "David": "Dave"}
FAMILY = np.array(["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
                   "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall"])
SITES = np.array(["C50", "C18", "C34", "C61", "C43", "C20"])
MORPH = {"C50": "8500", "C18": "8140", "C34": "8070", "C61": "8140", "C43": "8720", "C20": "8140"}
DAY = np.timedelta64(1, "D")


def _dates(values: np.ndarray) -> np.ndarray:
    return pd.to_datetime(values).strftime("%Y-%m-%d").to_numpy(dtype=object)


def toy_cohort(n_persons: int = 60, seed: int = 0) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """``(feeds, truth)`` for ``n_persons`` persons (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n = n_persons
    sex = rng.integers(1, 3, n)
    given = np.where(sex == 2, rng.choice(GIVEN_F, n), rng.choice(GIVEN_M, n))
    family = rng.choice(FAMILY, n)
    birth = np.datetime64("1930-01-01") + rng.integers(0, 60 * 365, n) * DAY
    nhs = generate_nhs_numbers(n, rng)
    pc_num = rng.integers(1, 9, n)
    postcode = np.char.add(np.char.add("LS", pc_num.astype(str)), np.char.add(" ", rng.choice(["1AB", "2CD", "3EF", "4GH"], n)))
    married = (sex == 2) & (rng.random(n) < 0.15)
    family_later = np.where(married, rng.choice(FAMILY, n), family)
    optout = np.zeros(n, dtype=bool)
    optout[rng.integers(0, n)] = True
    patients = pd.DataFrame({"patient_id": np.arange(1, n + 1), "nhs_number": nhs, "given_name": given,
                             "family_name": family, "birth_date": pd.to_datetime(birth), "sex": sex.astype(np.int8),
                             "postcode": postcode, "registration_opted_out": optout})
    # tumours: one each, a second for some
    n2 = rng.random(n) < 0.15
    t_person = np.concatenate([np.arange(n), np.flatnonzero(n2)])
    t_site = rng.choice(SITES, len(t_person))
    t_date = np.datetime64("2015-01-01") + rng.integers(0, 6 * 365, len(t_person)) * DAY
    t_date[n:] = t_date[t_person[n:]] + rng.integers(800, 1500, n2.sum()) * DAY
    t_lat = np.where(t_site == "C50", rng.choice(["L", "R"], len(t_person)), "9")
    tumours = pd.DataFrame({"tumour_id": np.arange(1, len(t_person) + 1), "patient_id": t_person + 1,
                            "diagnosis_date": pd.to_datetime(t_date), "site_icd10": t_site})
    # notifications: 1-4 per tumour
    k = rng.integers(1, 5, len(t_person))
    nt = np.repeat(np.arange(len(t_person)), k)
    np_ = t_person[nt]
    m = len(nt)
    diag = t_date[nt]
    recv = diag + rng.integers(5, 120, m) * DAY
    src = rng.choice(["pathology", "mdt", "pas"], m)

    def err(name: str, p: float, size: int) -> np.ndarray:
        return rng.random(size) < p

    g_sent = given[np_].astype(object)
    f_sent = np.where(recv > t_date[np_] + 400 * DAY, family_later[np_], family[np_]).astype(object)
    nhs_sent = nhs[np_].astype(object)
    dob_sent = _dates(birth[np_])
    pc_sent = postcode[np_].astype(object)
    kinds = np.array([""] * m, dtype=object)

    def mark(mask: np.ndarray, kind: str) -> None:
        kinds[mask] = np.where(kinds[mask] == "", kind, kinds[mask] + ";" + kind)

    mark(f_sent != family[np_], "surname_change")
    e = err("nhs_missing", 0.12, m)
    nhs_sent[e] = None
    mark(e, "nhs_missing")
    e = err("nhs_transposed", 0.03, m) & ~e
    t = pd.Series(nhs_sent[e], dtype="string")
    nhs_sent[e] = (t.str[:3] + t.str[4] + t.str[3] + t.str[5:]).to_numpy(dtype=object)
    mark(e, "nhs_transposed")
    e = err("given_nickname", 0.08, m)
    g_sent[e] = pd.Series(g_sent[e]).map(NICK).to_numpy(dtype=object)
    mark(e, "given_nickname")
    e = err("family_typo", 0.04, m)
    t = pd.Series(f_sent[e], dtype="string")
    f_sent[e] = (t.str[:-1] + np.where(t.str[-1] != "x", "x", "y")).to_numpy(dtype=object)
    mark(e, "family_typo")
    e = err("dob_swap", 0.04, m)
    t = pd.Series(dob_sent[e], dtype="string")
    dob_sent[e] = (t.str[:5] + t.str[8:10] + "-" + t.str[5:7]).to_numpy(dtype=object)
    mark(e, "dob_swap")
    e = err("house_move", 0.05, m)
    pc_sent[e] = "LS9 9ZZ"
    mark(e, "house_move")
    site_sent = t_site[nt].astype(object)
    bad_site = rng.random(m) < 0.02
    site_sent[bad_site] = "C99"
    mark(bad_site, "icd10_invalid")
    unusable = rng.random(m) < 0.02
    for arr in (nhs_sent, g_sent, f_sent, dob_sent):
        arr[unusable] = None
    mark(unusable, "unusable")
    notes = pd.DataFrame({
        "record_id": [f"N{i:06d}" for i in range(m)], "trust_code": "RA1", "source": src,
        "received_date": _dates(recv), "nhs_number": nhs_sent, "given_name": g_sent, "family_name": f_sent,
        "birth_date": dob_sent, "sex": sex[np_].astype(str), "postcode": pc_sent, "ethnicity": "White",
        "diagnosis_date": _dates(diag), "site_icd10": site_sent, "morphology_icdo3": pd.Series(t_site[nt]).map(MORPH).to_numpy(),
        "behaviour": "3", "stage": np.where(src == "mdt", rng.choice(["1", "2", "3", "4"], m), None),
        "grade": "G2", "laterality": t_lat[nt], "route_to_diagnosis": None, "basis_of_diagnosis": "7",
        "performance_status": pd.array([pd.NA] * m, dtype="Int8"),
        "comorbidity_score": pd.array([pd.NA] * m, dtype="Int8"),
    })
    # one later notification for the opted-out person, after the request
    req_date = np.datetime64("2022-06-01")
    po = int(np.flatnonzero(optout)[0])
    late = pd.DataFrame([{**notes.iloc[0].to_dict(), "record_id": f"N{m:06d}", "received_date": "2023-01-10",
                          "diagnosis_date": "2023-01-02", "nhs_number": nhs[po], "given_name": given[po],
                          "family_name": family[po], "birth_date": _dates(birth[[po]])[0], "sex": str(sex[po]),
                          "postcode": postcode[po], "site_icd10": "C34", "morphology_icdo3": "8070"}])
    notes = pd.concat([notes, late], ignore_index=True)
    note_truth = pd.DataFrame({"feed": "notifications", "record_id": notes["record_id"],
                               "patient_id": np.append(np_ + 1, po + 1),
                               "tumour_id": pd.array(np.append(nt + 1, -1), dtype="Int64"),
                               "errors": np.append(kinds, "")})
    note_truth.loc[note_truth["tumour_id"] == -1, "tumour_id"] = pd.NA
    # treatments (SACT) for half the tumours, a few days after diagnosis
    treated = np.flatnonzero(rng.random(len(t_person)) < 0.5)
    sp = t_person[treated]
    sact = pd.DataFrame({
        "record_id": [f"S{i:06d}" for i in range(len(treated))], "trust_code": "RA1",
        "nhs_number": np.where(rng.random(len(sp)) < 0.1, None, nhs[sp]).astype(object),
        "given_name": given[sp], "family_name": family[sp], "birth_date": _dates(birth[sp]),
        "sex": sex[sp].astype(str), "postcode": postcode[sp], "site_icd10": t_site[treated],
        "regimen": "FOLFOX", "intent": "adjuvant", "cycles": pd.array(rng.integers(2, 8, len(sp)), dtype="Int16"),
        "start_date": _dates(t_date[treated] + 30 * DAY), "performance_status": pd.array([pd.NA] * len(sp), dtype="Int8"),
    })
    sact_truth = pd.DataFrame({"feed": "sact", "record_id": sact["record_id"], "patient_id": sp + 1,
                               "tumour_id": pd.array(treated + 1, dtype="Int64"), "errors": ""})
    # deaths for a third
    dead = np.flatnonzero((rng.random(n) < 0.3) & ~optout)
    ddate = t_date[:n][dead] + 2000 * DAY
    deaths = pd.DataFrame({
        "record_id": [f"D{i:06d}" for i in range(len(dead))], "nhs_number": nhs[dead], "given_name": given[dead],
        "family_name": family_later[dead], "birth_date": _dates(birth[dead]), "sex": sex[dead].astype(str),
        "postcode": postcode[dead], "death_date": _dates(ddate), "underlying_cause_icd10": "I21",
        "registration_date": _dates(ddate + 5 * DAY),
    })
    death_truth = pd.DataFrame({"feed": "deaths", "record_id": deaths["record_id"], "patient_id": dead + 1,
                                "tumour_id": pd.array([pd.NA] * len(dead), dtype="Int64"), "errors": ""})
    optouts = pd.DataFrame({"record_id": ["O000001"], "nhs_number": [nhs[po]], "given_name": [given[po]],
                            "family_name": [family[po]], "birth_date": _dates(birth[[po]]),
                            "request_date": _dates(np.array([req_date]))})
    opt_truth = pd.DataFrame({"feed": "registration_optouts", "record_id": ["O000001"], "patient_id": [po + 1],
                              "tumour_id": pd.array([pd.NA], dtype="Int64"), "errors": [""]})
    ndop = pd.DataFrame({"nhs_number": nhs[:2], "optout_date": ["2019-01-01", "2019-01-01"]})
    empty_rt = pd.DataFrame({c: pd.Series(dtype="object") for c in ST.RADIOTHERAPY.column_names})
    empty_su = pd.DataFrame({c: pd.Series(dtype="object") for c in ST.SURGERY.column_names})
    feeds = {"notifications": notes, "sact": sact, "radiotherapy": empty_rt, "surgery": empty_su,
             "deaths": deaths, "registration_optouts": optouts, "ndop": ndop}
    record_truth = pd.concat([note_truth, sact_truth, death_truth, opt_truth], ignore_index=True)
    record_truth["treatment_id"] = pd.array([pd.NA] * len(record_truth), dtype="Int64")
    return feeds, {"record_truth": record_truth[ST.RECORD_TRUTH.column_names], "patients": patients,
                   "tumours": tumours}


def write_empty_reference(path: Path) -> Path:
    """``reference/postcodes`` and ``reference/areas`` with no rows under ``path``: data with no
    geography say so explicitly (linkage refuses a cohort without ``reference/``)."""
    path = Path(path)
    for name in ("postcodes", "areas"):
        table = ST.REFERENCE[name]
        empty = pd.DataFrame({c.name: pd.Series([], dtype=c.type.to_pandas_dtype()) for c in table.columns})
        write_parquet(empty, path / "reference" / f"{name}.parquet", table)
    return path / "reference"


def write_toy_cohort(path: Path, n_persons: int = 60, seed: int = 0) -> Path:
    """Write a toy cohort's ``feeds/``, ``truth/record_truth.parquet`` and an empty
    ``reference/`` (postcodes and areas with no rows: toy patients have no area) under ``path``."""
    path = Path(path)
    feeds, truth = toy_cohort(n_persons, seed)
    for name, df in feeds.items():
        write_parquet(df, path / "feeds" / f"{name}.parquet", ST.FEEDS[name])
    write_empty_reference(path)
    write_parquet(truth["record_truth"], path / "truth" / "record_truth.parquet", ST.RECORD_TRUTH)
    return path
