"""The generic API: deduplicate one table or link two, on data that is not ours.

Tell it which of your columns plays which identifier role (all optional): ``nhs_number`` (any
stable person identifier), ``given_name``, ``family_name``, ``birth_date``, ``sex``,
``postcode``, ``address``. The Fellegi–Sunter model (:mod:`registry_lib.linkage.model`) is
EM-trained on your data, term-frequency adjusted, and scored on the pairs the blocking rules
generate. Pairs carry your index labels in ``id_l`` and ``id_r``.

The default threshold is ``match_probability >= 0.5`` (a pair is more likely a match than not).

Example:
    >>> import pandas as pd
    >>> people = pd.DataFrame({
    ...     "first": ["Robert", "Bob", "Mary", "Robert", "Jane", "Ann"],
    ...     "last": ["Smith", "Smith", "Jones", "Brown", "Smith", "Lee"],
    ...     "dob": ["1950-02-01", "1950-02-01", "1961-04-23", "1972-12-30", "1950-02-01", "1980-05-05"],
    ...     "sex": ["1", "1", "2", "1", "2", "2"],
    ... }, index=list("abcdef"))
    >>> result = dedupe(people, columns={"given_name": "first", "family_name": "last",
    ...                                  "birth_date": "dob", "sex": "sex"})
    >>> bool(result.clusters["a"] == result.clusters["b"]), bool(result.clusters["a"] == result.clusters["e"])
    (True, False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.linkage import model as mdl
from registry_lib.linkage.clustering import connected_clusters

DEFAULT_THRESHOLD = 0.5
#: Candidate pairs scoring below this are not kept at all.
MIN_PROBABILITY = 0.001


@dataclass
class DedupeResult:
    """What :func:`dedupe` returns.

    Attributes:
        pairs: matched pairs (``match_probability >= threshold``): ``id_l``, ``id_r`` (input
            index labels), ``match_probability``, ``match_weight``.
        candidates: every scored candidate pair (probability ≥ 0.001), same columns, for
            choosing another threshold.
        clusters: a Series indexed like the input: the cluster id of each row (rows in the same
            cluster are the same person); ids are 0, 1, … in order of first appearance.
        threshold: the threshold used.
        model: Splink's settings JSON with the trained m and u probabilities.
        notes: training steps that could not run on these data (empty when all ran).

    Example:
        >>> cand = pd.DataFrame({"id_l": ["a"], "id_r": ["b"], "match_probability": [0.8], "match_weight": [2.0]})
        >>> r = DedupeResult(pairs=cand, candidates=cand, clusters=pd.Series([0, 0, 1], index=list("abc")),
        ...                  threshold=0.5, model={})
        >>> r.cluster_at(0.9).tolist()
        [0, 1, 2]
    """

    pairs: pd.DataFrame
    candidates: pd.DataFrame
    clusters: pd.Series
    threshold: float
    model: dict[str, Any] = field(repr=False)
    notes: list[str] = field(default_factory=list)

    def cluster_at(self, threshold: float) -> pd.Series:
        """Cluster ids at another threshold (from the stored candidates, no re-scoring)."""
        return _clusters(self.clusters.index, self.candidates, threshold)


def _check_threshold(threshold: float) -> float:
    if not 0.0 <= float(threshold) <= 1.0:
        raise RegistryLabError(f"threshold {threshold!r}: must be a match probability between 0 and 1")
    return float(threshold)


def _check_index(df: pd.DataFrame, where: str) -> None:
    if not df.index.is_unique:
        dup = df.index[df.index.duplicated()][0]
        raise RegistryLabError(f"{where}: index label {dup!r} occurs more than once; pairs are reported by index label")


def _clusters(index: pd.Index, candidates: pd.DataFrame, threshold: float) -> pd.Series:
    pos = pd.Series(np.arange(len(index)), index=index)
    keep = candidates[candidates["match_probability"] >= threshold]
    labels = connected_clusters(len(index), pos[keep["id_l"]].to_numpy(), pos[keep["id_r"]].to_numpy())
    return pd.Series(labels, index=index, name="cluster_id")


def dedupe(df: pd.DataFrame, columns: Mapping[str, str], *, threshold: float = DEFAULT_THRESHOLD,
           backend: str = "duckdb", plain: bool = False, seed: int = 1) -> DedupeResult:
    """Find the rows of ``df`` that are the same person and cluster them.

    Args:
        df: one row per record; index labels identify records in the result.
        columns: ``{role: column}``, e.g. ``{"family_name": "surname", "birth_date": "dob"}``.
        threshold: link pairs with ``match_probability >= threshold`` (default 0.5).
        backend: ``"duckdb"`` (default) or ``"spark"`` (pyspark local mode; needs Java).
        plain: use Splink's out-of-the-box comparisons instead of ours.
        seed: seed of the random sampling that estimates u probabilities.

    Returns:
        A :class:`DedupeResult` with ``pairs``, ``candidates``, ``clusters``, ``model``.

    Example:
        >>> people = pd.DataFrame({"surname": ["Smith", "Smith", "Jones", "Patel"],
        ...                        "dob": ["1950-02-01", "1950-02-01", "1961-04-23", "1972-12-30"]},
        ...                       index=["r1", "r2", "r3", "r4"])
        >>> result = dedupe(people, columns={"family_name": "surname", "birth_date": "dob"})
        >>> result.clusters.tolist(), result.pairs[["id_l", "id_r"]].values.tolist()
        ([0, 0, 1, 2], [['r1', 'r2']])
    """
    threshold = _check_threshold(threshold)
    _check_index(df, "dedupe input")
    frame = mdl.prepare(df, columns)
    scored = mdl.score(frame, link_type="dedupe_only", backend=backend, plain=plain,
                       min_probability=MIN_PROBABILITY, seed=seed)
    labels = df.index.to_numpy()
    cand = pd.DataFrame({
        "id_l": labels[scored.pairs["unique_id_l"].to_numpy()],
        "id_r": labels[scored.pairs["unique_id_r"].to_numpy()],
        "match_probability": scored.pairs["match_probability"].to_numpy(),
        "match_weight": scored.pairs["match_weight"].to_numpy(),
    })
    clusters = _clusters(df.index, cand, threshold)
    pairs = cand[cand["match_probability"] >= threshold].reset_index(drop=True)
    return DedupeResult(pairs=pairs, candidates=cand, clusters=clusters, threshold=threshold,
                        model=scored.model, notes=scored.notes)


def link(left: pd.DataFrame, right: pd.DataFrame, columns: Mapping[str, str], *,
         threshold: float = DEFAULT_THRESHOLD, backend: str = "duckdb", plain: bool = False,
         seed: int = 1, right_columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Pairs of a ``left`` and a ``right`` record that are the same person.

    ``columns`` maps roles to column names (in both frames, unless ``right_columns`` gives the
    right frame's own names). Returns ``id_l`` (left index label), ``id_r`` (right index label),
    ``match_probability`` and ``match_weight`` for pairs with ``match_probability >=
    threshold``, sorted by ``id_l`` then descending probability. A left record can match several
    right records; keep the best with ``pairs.drop_duplicates("id_r")`` if each right record
    is one person.

    Example:
        >>> import pandas as pd
        >>> a = pd.DataFrame({"name": ["Ann Lee", "Bob Stone"], "dob": ["1950-01-02", "1960-03-04"]})
        >>> b = pd.DataFrame({"name": ["Bob Stone"], "dob": ["1960-03-04"]}, index=["x"])
        >>> a[["given", "family"]] = a["name"].str.split(" ", expand=True)
        >>> b[["given", "family"]] = b["name"].str.split(" ", expand=True)
        >>> link(a, b, {"given_name": "given", "family_name": "family", "birth_date": "dob"})[["id_l", "id_r"]].values.tolist()
        [[1, 'x']]
    """
    threshold = _check_threshold(threshold)
    _check_index(left, "link left input")
    _check_index(right, "link right input")
    right_columns = dict(right_columns) if right_columns is not None else dict(columns)
    if set(right_columns) != set(columns):
        raise RegistryLabError("link: `columns` and `right_columns` must name the same roles")
    fl = mdl.prepare(left, columns)
    fr = mdl.prepare(right, right_columns)
    scored = mdl.score([fl, fr], link_type="link_only", backend=backend, plain=plain,
                       min_probability=max(threshold, MIN_PROBABILITY) if threshold > 0 else MIN_PROBABILITY,
                       seed=seed)
    p = scored.pairs
    flip = p["source_dataset_l"].astype(str) != "left_input"
    uid_left = np.where(flip, p["unique_id_r"], p["unique_id_l"])
    uid_right = np.where(flip, p["unique_id_l"], p["unique_id_r"])
    out = pd.DataFrame({
        "id_l": left.index.to_numpy()[uid_left],
        "id_r": right.index.to_numpy()[uid_right],
        "match_probability": p["match_probability"].to_numpy(),
        "match_weight": p["match_weight"].to_numpy(),
        "_l": uid_left, "_r": uid_right,
    })
    out = out[out["match_probability"] >= threshold]
    out = out.sort_values(["_l", "match_probability", "_r"], ascending=[True, False, True])
    return out.drop(columns=["_l", "_r"]).reset_index(drop=True)
