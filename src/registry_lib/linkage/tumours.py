"""Tumour consolidation: a person's notifications → primary tumours, with best values.

Simplified IARC/IACR (2004) and ENCR multiple-primary rules, applied per registered person:

1. **Site**: notifications of one IARC topography group (e.g. C19–C20, C33–C34; other
   3-character codes stand alone) may be one tumour; different groups are different tumours.
2. **Laterality**: in a paired organ (breast, lung, kidney, ovary, …) left and right are
   separate primaries; a notification with unknown or bilateral laterality joins the side
   notified nearest in time.
3. **Histology**: different specific IARC histology groups are different tumours; an
   unspecified morphology (groups 17, 5 for carcinomas, 14 for haematopoietic, or missing)
   joins the nearest-in-time compatible specific group.
4. **Time**: within one site/side/histology, notifications more than ``window_days`` after the
   previous one start a new (metachronous) tumour. IARC counts one tumour per organ whatever
   the interval; the window (default 365 days, after the SEER rule for several sites) keeps a
   second primary years later apart, and is a parameter of :func:`consolidate`.

Best values: earliest diagnosis date (the earliest receipt date when no notification of the
tumour carries a usable diagnosis date); site = most often notified 3-character code; morphology,
behaviour and grade from the most specific record (pathology first); stage from the MDT record
first (then pathology, screening, PAS), ``U`` when no source staged it; laterality L/R/B/M
over 9; basis of diagnosis the most valid ENCR code (highest, 9 unknown last); route from
screening/PAS first; performance status from MDT, comorbidity from PAS; diagnosing trust and
area from the earliest notification.

Example:
    >>> import pandas as pd
    >>> n = pd.DataFrame({"record_id": ["a", "b", "c"], "patient_id": [1, 1, 1],
    ...     "site3": ["C50", "C50", "C50"], "laterality": ["L", "R", None],
    ...     "morphology_icdo3": ["8500", "8500", None],
    ...     "diagnosis_value": pd.to_datetime(["2020-01-01", "2020-01-05", "2020-01-02"])})
    >>> tumour_keys(n).tolist()
    [0, 1, 0]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from registry_lib.linkage import codes
from registry_lib.linkage import grouping as G

DEFAULT_WINDOW_DAYS = 365
SOURCE_RANK = {
    "morphology": {"pathology": 0, "mdt": 1, "screening": 2, "pas": 3},
    "stage": {"mdt": 0, "pathology": 1, "screening": 2, "pas": 3},
    "route": {"screening": 0, "pas": 1, "mdt": 2, "pathology": 3},
    "performance": {"mdt": 0, "pathology": 1, "screening": 2, "pas": 3},
    "comorbidity": {"pas": 0, "mdt": 1, "pathology": 2, "screening": 3},
}


def _nearest(unknown: pd.DataFrame, known: pd.DataFrame, on: list[str], value: str) -> pd.Series:
    """For each row of ``unknown``, ``value`` of the ``known`` row with the same ``on`` keys and
    the nearest diagnosis date (ties: smaller value); missing where there is none."""
    if unknown.empty or known.empty:
        return pd.Series(pd.NA, index=unknown.index, dtype=object)
    u = unknown[on + ["diagnosis_value"]].assign(_row=unknown.index)
    k = known[on + ["diagnosis_value", value]].drop_duplicates()
    m = u.merge(k, on=on, suffixes=("", "_k"))
    m["_gap"] = (m["diagnosis_value"] - m["diagnosis_value_k"]).abs()
    m = m.sort_values(["_row", "_gap", value], kind="stable").drop_duplicates("_row")
    return m.set_index("_row")[value].reindex(unknown.index)


def _compatible(group: pd.Series, candidate: pd.Series) -> np.ndarray:
    """Whether an unspecified histology group may join a specific ``candidate`` group."""
    g = group.fillna(17).astype(int).to_numpy()
    c = candidate.astype(int).to_numpy()
    ok = np.zeros(len(g), dtype=bool)
    for unspec, allowed in codes.UNSPECIFIED_HISTOLOGY.items():
        ok |= (g == unspec) & np.isin(c, list(allowed))
    return ok


def _chain(df: pd.DataFrame, keys: list[str], window_days: int) -> pd.Series:
    """Episode number within ``keys``: a gap of more than ``window_days`` starts a new one."""
    group = df.groupby(keys, sort=True, dropna=False).ngroup().to_numpy()
    d = pd.DataFrame({"g": group, "t": df["_date"].to_numpy()}, index=df.index).sort_values(["g", "t"], kind="stable")
    g = d["g"].to_numpy()
    gap = np.diff(d["t"].to_numpy()).astype("timedelta64[D]").astype(np.int64)
    new = np.ones(len(d), dtype=bool)
    new[1:] = (g[1:] != g[:-1]) | (gap > window_days)
    return pd.Series(np.cumsum(new), index=d.index).reindex(df.index)


def tumour_keys(notes: pd.DataFrame, window_days: int = DEFAULT_WINDOW_DAYS) -> pd.Series:
    """Tumour number (0, 1, … over all persons, deterministic) of each notification.

    ``notes`` needs ``patient_id``, ``site3``, ``laterality``, ``morphology_icdo3`` and
    ``diagnosis_value`` (datetime, NaT when unknown) and may have ``diagnosis_proxy`` (the
    receipt date where the diagnosis date is unknown). Dated notifications form tumours by the
    rules in the module docstring; an undated one joins the tumour of its person, site, side and
    histology diagnosed latest before its receipt (else the earliest after), and forms a tumour
    of its own only when there is none.

    Example:
        >>> n = pd.DataFrame({"patient_id": [1, 1, 2], "site3": ["C18", "C18", "C18"],
        ...     "laterality": [None, None, None], "morphology_icdo3": ["8140", "8140", "8140"],
        ...     "diagnosis_value": pd.to_datetime(["2020-01-01", "2020-02-01", "2020-01-01"])})
        >>> tumour_keys(n).tolist()   # the same person's two notifications of one tumour share a key
        [0, 0, 1]
    """
    real = notes["diagnosis_value"]
    proxy = notes["diagnosis_proxy"] if "diagnosis_proxy" in notes.columns else real
    df = notes[["patient_id", "site3", "laterality", "morphology_icdo3"]].assign(
        diagnosis_value=proxy.to_numpy(), _dated=real.notna().to_numpy())
    df.index = pd.RangeIndex(len(df))
    df["grp"] = codes.site_group(df["site3"])
    # 2. laterality: L/R sides of paired organs; unknown joins the nearest known side
    paired = codes.paired_organ(df["site3"])
    lat = df["laterality"].astype("string")
    side = pd.Series(np.where(paired & lat.isin(["L", "R"]).fillna(False).to_numpy(), lat.fillna("*"), "*"),
                     index=df.index, dtype=object)
    unknown = paired & (side == "*").to_numpy()
    known = df.assign(side=side)[side != "*"]
    side[unknown] = _nearest(df[unknown], known, ["patient_id", "grp"], "side").fillna("*")
    df["side"] = side
    # 3. histology: unspecified joins the nearest compatible specific group
    hist = codes.histology_group(df["morphology_icdo3"])
    specific = hist.notna() & ~hist.isin(list(codes.UNSPECIFIED_HISTOLOGY))
    df["hist"] = hist.where(specific).astype("Int64")
    spec = df[specific.to_numpy()]
    unspec_idx = df.index[~specific.to_numpy()]
    if len(unspec_idx) and len(spec):
        u = df.loc[unspec_idx, ["patient_id", "grp", "side", "diagnosis_value"]].assign(
            _row=unspec_idx, _hist=hist[unspec_idx].to_numpy())
        m = u.merge(spec[["patient_id", "grp", "side", "diagnosis_value", "hist"]],
                    on=["patient_id", "grp", "side"], suffixes=("", "_k"))
        m = m[_compatible(m["_hist"], m["hist"])]
        m["_gap"] = (m["diagnosis_value"] - m["diagnosis_value_k"]).abs()
        m = m.sort_values(["_row", "_gap", "hist"], kind="stable").drop_duplicates("_row")
        df.loc[m["_row"].to_numpy(), "hist"] = m["hist"].to_numpy()
    df["hist"] = df["hist"].fillna(-1).astype(np.int64)
    df["_date"] = df["diagnosis_value"]
    keys = ["patient_id", "grp", "side", "hist"]
    # 4. time: dated notifications chain into tumours; a gap over the window starts a new one
    dated = df[df["_dated"]]
    seq = pd.Series(-1, index=df.index, dtype=np.int64)
    seq[dated.index] = _chain(dated, keys, window_days).to_numpy()
    # undated notifications join the tumour diagnosed latest before their receipt (else the earliest after)
    undated = df[~df["_dated"]]
    if len(undated):
        starts = dated.assign(_seq=seq[dated.index]).groupby("_seq").agg(
            **{k: (k, "first") for k in keys}, _start=("_date", "min")).reset_index()
        m = undated[keys + ["_date"]].assign(_row=undated.index).merge(starts, on=keys)
        m["_after"] = (m["_start"] > m["_date"]).astype(int)
        m["_gap"] = (m["_date"] - m["_start"]).abs()
        m = m.sort_values(["_row", "_after", "_gap", "_seq"], kind="stable").drop_duplicates("_row")
        seq[m["_row"].to_numpy()] = m["_seq"].to_numpy()
        alone = undated.index[seq[undated.index].to_numpy() < 0]
        if len(alone):
            own = _chain(df.loc[alone], keys, window_days)
            seq[alone] = own.to_numpy() + int(seq.max()) + 1
    df["seq"] = seq
    # number tumours in order of (person, first diagnosis date, site group, side, histology)
    first = df.groupby("seq").agg(patient_id=("patient_id", "first"), start=("_date", "min"),
                                  grp=("grp", "first"), side=("side", "first"), hist=("hist", "first"))
    first = first.sort_values(["patient_id", "start", "grp", "side", "hist"], kind="stable")
    number = pd.Series(np.arange(len(first)), index=first.index)
    return df["seq"].map(number).rename("tumour_key")


def consolidate(notes: pd.DataFrame, patients: pd.DataFrame, postcode_areas: pd.Series | None = None,
                window_days: int = DEFAULT_WINDOW_DAYS) -> tuple[pd.DataFrame, pd.Series]:
    """Tumours of registered persons from their valid notifications.

    Args:
        notes: validated notifications with ``patient_id`` (see :mod:`~registry_lib.linkage.validate`).
        patients: the patient table (``patient_id``, ``birth_date``, ``area_id``).
        postcode_areas: area of each postcode (index postcode), for the area at diagnosis.
        window_days: see the module docstring.

    Returns:
        ``(tumour table in the TUMOUR schema, tumour_id of each notification)``.

    Example (a left breast cancer notified by PAS and pathology, then a right one by an MDT):
        >>> notes = pd.DataFrame({"record_id": ["a", "b", "c"], "patient_id": [1, 1, 1],
        ...     "source": ["pas", "pathology", "mdt"], "trust_code": ["RR8", "RR8", "RR8"],
        ...     "site3": ["C50", "C50", "C50"], "laterality": ["L", "L", "R"],
        ...     "morphology_icdo3": [None, "8500", "8500"], "behaviour": [None, "3", "3"],
        ...     "diagnosis_value": pd.to_datetime(["2020-01-08", "2020-01-03", "2020-02-01"]),
        ...     "stage": [None, "2", "1"], "grade": [None, "G2", "GX"],
        ...     "route_to_diagnosis": ["GP referral", None, None], "basis_of_diagnosis": ["9", "7", "7"],
        ...     "performance_status": [None, None, "1"], "comorbidity_score": [0, None, None]})
        >>> patients = pd.DataFrame({"patient_id": [1], "birth_date": pd.to_datetime(["1950-06-01"]),
        ...                          "area_id": ["E01011"]})
        >>> tumours, tumour_id = consolidate(notes, patients)
        >>> tumour_id.tolist()
        [1, 1, 2]
        >>> print(tumours[["tumour_id", "diagnosis_date", "age_at_diagnosis", "site_icd10", "laterality",
        ...                "morphology_icdo3", "stage", "grade", "basis_of_diagnosis"]].to_string())
           tumour_id diagnosis_date  age_at_diagnosis site_icd10 laterality morphology_icdo3 stage grade basis_of_diagnosis
        0          1     2020-01-03                69        C50          L             8500     2    G2                  7
        1          2     2020-02-01                69        C50          R             8500     1    GX                  7
        >>> tumours[["route_to_diagnosis", "area_id"]].values.tolist()
        [['GP referral', 'E01011'], [nan, 'E01011']]
    """
    df = notes.reset_index(drop=True)
    tk = tumour_keys(df, window_days).to_numpy(dtype=np.int64)
    n = int(tk.max()) + 1 if len(tk) else 0
    proxy = df["diagnosis_proxy"] if "diagnosis_proxy" in df.columns else df["diagnosis_value"]
    date_k = G.key(proxy)
    pos_k = np.arange(len(df))  # notifications keep their feed order: a deterministic tie-break
    src = df["source"].astype(object)

    base = G.order(tk, date_k, pos_k)  # one full sort; field orders below re-sort it stably

    def rank(name: str) -> np.ndarray:
        return src.map(SOURCE_RANK[name]).fillna(9).to_numpy(dtype=np.int64)

    def ordered(*small: np.ndarray) -> np.ndarray:
        """order(tk, *small, date, position) for small non-negative integer keys."""
        comp = tk.copy()
        for k in small:
            comp = comp * (int(k.max()) + 1 if len(k) else 1) + k
        return base[np.argsort(comp[base], kind="stable")]

    def best(col: pd.Series, *small: np.ndarray) -> pd.Series:
        return G.first_valid(tk, col, ordered(*small), n)

    hist = codes.histology_group(df["morphology_icdo3"])
    unspec = (hist.isna() | hist.isin(list(codes.UNSPECIFIED_HISTOLOGY))).to_numpy(dtype=np.int64)
    first = G.first_row(tk, base, n)
    out = pd.DataFrame(index=pd.RangeIndex(n))
    out["tumour_id"] = np.arange(1, n + 1, dtype=np.int64)
    out["patient_id"] = df["patient_id"].to_numpy()[first]
    earliest_real = G.first_valid(tk, df["diagnosis_value"], base, n)  # the earliest dated one
    out["diagnosis_date"] = pd.to_datetime(earliest_real).fillna(pd.Series(proxy.to_numpy()[first]))
    out["diagnosis_trust"] = df["trust_code"].to_numpy()[first]
    # site: the 3-character code notified most often (ties: earliest, then code)
    code, uniques = pd.factorize(df["site3"], sort=True)
    cnt = pd.DataFrame({"t": tk, "c": code, "d": date_k}).groupby(["t", "c"], sort=False).agg(
        n=("d", "size"), first=("d", "min")).reset_index()
    pick = G.first_row(cnt["t"].to_numpy(), G.order(cnt["t"], -cnt["n"], cnt["first"], cnt["c"]), n)
    out["site_icd10"] = np.asarray(uniques, dtype=object)[cnt["c"].to_numpy()[pick]]
    # morphology and its behaviour from the most specific record (pathology first)
    morph = df["morphology_icdo3"]
    o = ordered(unspec, rank("morphology"))
    o_m = o[morph.notna().to_numpy()[o]]
    row_m = G.first_row(tk, o_m, n)
    has_m = row_m >= 0
    out["morphology_icdo3"] = pd.Series(np.where(has_m, morph.to_numpy(dtype=object, na_value=None)[row_m], None), dtype=object)
    beh_rec = pd.Series(np.where(has_m, df["behaviour"].to_numpy(dtype=object, na_value=None)[row_m], None), dtype=object)
    out["behaviour"] = beh_rec.fillna(best(df["behaviour"], rank("morphology")))
    out["stage"] = best(df["stage"], rank("stage")).fillna("U")
    gx = (df["grade"] == "GX").fillna(True).to_numpy(dtype=np.int64)
    out["grade"] = best(df["grade"], gx, rank("morphology"))
    l9 = (df["laterality"] == "9").fillna(True).to_numpy(dtype=np.int64)
    out["laterality"] = best(df["laterality"], l9)
    out["route_to_diagnosis"] = best(df["route_to_diagnosis"], rank("route"))
    basis = df["basis_of_diagnosis"].astype("string").str.strip()
    b = pd.to_numeric(basis, errors="coerce").where(lambda x: x.between(0, 8)).fillna(-1).to_numpy(dtype=np.int64)
    out["basis_of_diagnosis"] = best(basis, 8 - b)  # most valid (highest) ENCR code; 9 and others last
    out["performance_status"] = best(df["performance_status"], rank("performance"))
    out["comorbidity_score"] = best(df["comorbidity_score"], rank("comorbidity"))
    # area at diagnosis: earliest notification whose postcode is in the directory
    if postcode_areas is not None and "postcode" in df.columns:
        area = df["postcode"].astype(object).map(postcode_areas)
        out["area_id"] = best(area)
    else:
        out["area_id"] = pd.Series(pd.NA, index=out.index, dtype=object)
    pat = patients.set_index("patient_id")
    out["area_id"] = out["area_id"].astype(object).fillna(out["patient_id"].map(pat["area_id"]))
    birth = pd.to_datetime(out["patient_id"].map(pat["birth_date"]))
    out["age_at_diagnosis"] = _age(birth, out["diagnosis_date"])
    out = out.rename(columns={"diagnosis_trust": "diagnosing_trust"})
    cols = ["tumour_id", "patient_id", "diagnosis_date", "age_at_diagnosis", "site_icd10", "morphology_icdo3",
            "behaviour", "stage", "grade", "laterality", "route_to_diagnosis", "basis_of_diagnosis",
            "diagnosing_trust", "area_id", "performance_status", "comorbidity_score"]
    return out[cols], pd.Series(tk + 1, index=notes.index)


def _age(birth: pd.Series, at: pd.Series) -> pd.Series:
    """Age in completed years at ``at`` (missing where the birth date is)."""
    b, a = pd.to_datetime(birth), pd.to_datetime(at)
    years = a.dt.year - b.dt.year
    before = (a.dt.month < b.dt.month) | ((a.dt.month == b.dt.month) & (a.dt.day < b.dt.day))
    return (years - before.astype(int)).astype("Int16")
