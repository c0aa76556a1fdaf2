"""Linkage accuracy against the truth.

Pairwise measures count pairs of records: a *predicted* pair is two records put in the same
cluster (or a pair passed in); a *true* pair is two records of the same true person.

* precision = true positive pairs / predicted pairs; recall = true positive pairs / true pairs;
  F1 their harmonic mean;
* false match rate = false positive pairs / predicted pairs (= 1 − precision), missed match rate
  = false negative pairs / true pairs (= 1 − recall) — the definitions of the ONS Census–PDS
  linkage reports (precision 99.95%, recall 99.99%);
* persons split: true persons whose records are in more than one cluster; persons merged: true
  persons whose cluster also holds another true person's records;
* with no predicted pairs precision is 1 (nothing was wrongly linked); with no true pairs recall
  is 1.

Example:
    >>> import pandas as pd
    >>> clusters = pd.Series([1, 1, 2, 3], index=["a", "b", "c", "d"])
    >>> truth = pd.Series([10, 10, 10, 20], index=["a", "b", "c", "d"])
    >>> m = evaluate(clusters, truth)
    >>> m["precision"], round(m["recall"], 3), m["persons_split"], m["persons_merged"]
    (1.0, 0.333, 1, 0)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.linkage.clustering import connected_clusters


def _pairs(n: np.ndarray) -> int:
    n = np.asarray(n, dtype=np.int64)
    return int((n * (n - 1) // 2).sum())


def pair_counts(pred: np.ndarray, true: np.ndarray) -> tuple[int, int, int]:
    """``(true positive pairs, predicted pairs, true pairs)`` of two labellings of the same records.

    Example:
        >>> pair_counts(np.array([1, 1, 2]), np.array([7, 7, 7]))
        (1, 1, 3)
    """
    df = pd.DataFrame({"p": np.asarray(pred), "t": np.asarray(true)})
    tp = _pairs(df.groupby(["p", "t"], sort=False).size().to_numpy())
    pp = _pairs(df.groupby("p", sort=False).size().to_numpy())
    tt = _pairs(df.groupby("t", sort=False).size().to_numpy())
    return tp, pp, tt


def metrics_from_counts(tp: int, predicted: int, true: int) -> dict[str, float]:
    """Precision, recall, F1, false and missed match rates from pair counts.

    Example:
        >>> m = metrics_from_counts(tp=9, predicted=10, true=12)
        >>> m["precision"], m["recall"], round(m["missed_match_rate"], 3)
        (0.9, 0.75, 0.25)
    """
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1,
            "false_match_rate": 1.0 - precision, "missed_match_rate": 1.0 - recall,
            "true_positive_pairs": int(tp), "predicted_pairs": int(predicted), "true_pairs": int(true)}


def cluster_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, int]:
    """Persons split and merged (see the module docstring) and the numbers of clusters.

    Example:
        >>> e = cluster_errors(np.array([1, 1, 2, 2]), np.array([7, 7, 7, 8]))
        >>> e["persons_split"], e["persons_merged"], e["clusters"]
        (1, 2, 2)
    """
    df = pd.DataFrame({"p": np.asarray(pred), "t": np.asarray(true)}).drop_duplicates()
    n_clusters_of_true = df.groupby("t").size()
    n_true_in_cluster = df.groupby("p").size()
    merged_clusters = n_true_in_cluster[n_true_in_cluster > 1].index
    return {
        "persons_split": int((n_clusters_of_true > 1).sum()),
        "persons_merged": int(df.loc[df["p"].isin(merged_clusters), "t"].nunique()),
        "clusters_with_several_persons": int(len(merged_clusters)),
        "clusters": int(n_true_in_cluster.size),
        "true_persons": int(n_clusters_of_true.size),
    }


def evaluate(pairs_or_clusters: pd.DataFrame | pd.Series, truth: pd.Series, *,
             threshold: float | None = None) -> dict[str, Any]:
    """Accuracy of a deduplication against the true person of each record.

    Args:
        pairs_or_clusters: either a Series of cluster ids indexed by record (e.g.
            ``DedupeResult.clusters``), or a DataFrame of predicted pairs with ``id_l``, ``id_r``
            (and ``match_probability`` when ``threshold`` is given).
        truth: the true person of each record, indexed by the same record labels. Records
            missing from ``truth`` are ignored.
        threshold: keep only pairs with ``match_probability >= threshold``.

    Returns:
        ``precision``, ``recall``, ``f1``, ``false_match_rate``, ``missed_match_rate`` and the
        pair counts; ``persons_split``, ``persons_merged`` and cluster counts. For pairs the
        pairwise measures count the pairs as given, and the cluster measures use their
        connected components.

    Example:
        >>> pairs = pd.DataFrame({"id_l": ["a"], "id_r": ["b"], "match_probability": [0.9]})
        >>> m = evaluate(pairs, pd.Series([1, 1, 2], index=["a", "b", "c"]), threshold=0.5)
        >>> m["precision"], m["recall"], m["true_pairs"]
        (1.0, 1.0, 1)
    """
    if not isinstance(truth, pd.Series):
        raise RegistryLabError("evaluate: `truth` must be a Series of true person ids indexed by record")
    if isinstance(pairs_or_clusters, pd.Series):
        clusters = pairs_or_clusters[pairs_or_clusters.index.isin(truth.index)]
        t = truth.reindex(clusters.index).to_numpy()
        out = metrics_from_counts(*pair_counts(clusters.to_numpy(), t))
        out.update(cluster_errors(clusters.to_numpy(), t))
        return out
    pairs = pairs_or_clusters
    missing = {"id_l", "id_r"} - set(pairs.columns)
    if missing:
        raise RegistryLabError(f"evaluate: pairs need columns id_l and id_r (missing {', '.join(sorted(missing))})")
    if threshold is not None:
        pairs = pairs[pairs["match_probability"] >= threshold]
    pairs = pairs[pairs["id_l"].isin(truth.index) & pairs["id_r"].isin(truth.index)]
    pairs = pairs[pairs["id_l"] != pairs["id_r"]]
    uniq = pairs.assign(a=pairs[["id_l", "id_r"]].astype(str).min(axis=1),
                        b=pairs[["id_l", "id_r"]].astype(str).max(axis=1)).drop_duplicates(["a", "b"])
    tl = truth.reindex(uniq["id_l"]).to_numpy()
    tr = truth.reindex(uniq["id_r"]).to_numpy()
    tp = int((tl == tr).sum())
    true_pairs = _pairs(truth.groupby(truth).size().to_numpy())
    out = metrics_from_counts(tp, len(uniq), true_pairs)
    pos = pd.Series(np.arange(len(truth)), index=truth.index)
    comp = connected_clusters(len(truth), pos[uniq["id_l"]].to_numpy(), pos[uniq["id_r"]].to_numpy())
    out.update(cluster_errors(comp, truth.to_numpy()))
    return out


def main_cluster(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per record: whether it is in its true person's main cluster (the one holding most of
    that person's records; ties: smaller cluster id), and whether its cluster's main true person
    (most records) is its own.

    Example:
        >>> in_main, own = main_cluster(np.array([1, 1, 2]), np.array([7, 7, 7]))
        >>> in_main.tolist(), own.tolist()
        ([True, True, False], [True, True, True])
    """
    df = pd.DataFrame({"p": np.asarray(pred), "t": np.asarray(true)})
    cnt = df.groupby(["t", "p"]).size().rename("n").reset_index()
    main_p = cnt.sort_values(["t", "n", "p"], ascending=[True, False, True]).drop_duplicates("t").set_index("t")["p"]
    main_t = cnt.sort_values(["p", "n", "t"], ascending=[True, False, True]).drop_duplicates("p").set_index("p")["t"]
    in_main = df["p"].to_numpy() == df["t"].map(main_p).to_numpy()
    own = df["t"].to_numpy() == df["p"].map(main_t).to_numpy()
    return in_main, own


def errors_by_kind(pred: np.ndarray, true: np.ndarray, errors: pd.Series) -> dict[str, dict[str, float]]:
    """Per injected error kind (``errors`` is ``;``-separated, ``""`` for none): records with
    it, how many ended outside their person's main cluster (missed) or in another person's
    cluster (false merged), and those shares.

    Example:
        >>> out = errors_by_kind(np.array([1, 1, 2]), np.array([7, 7, 7]), pd.Series(["", "typo", "typo;swap"]))
        >>> out["typo"]["records"], out["typo"]["missed"], out["none"]["missed_share"]
        (2, 1, 0.0)
    """
    in_main, own = main_cluster(pred, true)
    # counted per distinct error string (a few hundred), never per record: at national scale a
    # list per record would take gigabytes
    kinds = errors.astype("category") if not isinstance(errors.dtype, pd.CategoricalDtype) else errors
    text = [*map(str, kinds.cat.categories), ""]  # code -1 (missing) is no error
    df = pd.DataFrame({"code": kinds.cat.codes.to_numpy(), "missed": ~in_main, "merged": ~own})
    g = df.groupby("code").agg(records=("missed", "size"), missed=("missed", "sum"), false_merged=("merged", "sum"))
    totals: dict[str, list[int]] = {}
    for code, row in zip(g.index, g.itertuples(index=False), strict=True):
        for kind in text[code].split(";"):
            t = totals.setdefault(kind or "none", [0, 0, 0])
            t[0] += int(row.records)
            t[1] += int(row.missed)
            t[2] += int(row.false_merged)
    out = {}
    for kind in sorted(totals):
        n, missed, merged = totals[kind]
        out[kind] = {"records": n, "missed": missed, "false_merged": merged,
                     "missed_share": missed / n, "false_merged_share": merged / n}
    return out
