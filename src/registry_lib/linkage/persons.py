"""Person linkage of feed records: deterministic pass, probabilistic pass, clustering.

1. **Identities.** Records with exactly the same cleaned identifiers (NHS number, names, birth
   date, sex, postcode) are one *identity*; a person with three clean notifications has one
   identity, so matching work scales with distinct identities, not records.
2. **Deterministic pass** (HES style): identities sharing a valid NHS number, birth date and sex
   are the same person (``det_group``).
3. **Probabilistic pass**: Splink scores identity pairs from the blocking rules, skipping pairs
   the deterministic pass already joined (:mod:`registry_lib.linkage.model`).
4. **Clustering**: connected components over deterministic links and pairs with
   ``match_probability >= threshold``.

Example:
    >>> import pandas as pd
    >>> recs = pd.DataFrame({"nhs_number": ["9434765919", "9434765919", None],
    ...     "given_name": ["ann", "ann", "ann"], "family_name": ["lee", "lee", "lee"],
    ...     "birth_date": ["1950-01-02", "1950-01-02", "1950-01-02"], "sex": ["2", "2", "2"],
    ...     "postcode": ["LS6 2AB", "LS6 2AB", "LS6 2AB"]})
    >>> ident, identity_id = identities(recs)
    >>> identity_id.tolist(), ident["det_group"].tolist()
    ([0, 0, 1], [0, 3])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.linkage import model as mdl
from registry_lib.linkage.clustering import connected_clusters

KEY = ["nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode"]


def identities(records: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Distinct identities (sorted, ids 0..n-1) and the identity id of each record.

    The identity table has the :data:`KEY` columns, ``n_records`` and ``det_group`` (shared by
    identities with the same valid NHS number, birth date and sex; unique otherwise).

    Example:
        >>> recs = pd.DataFrame({"nhs_number": [None, None], "given_name": ["ann", "bob"],
        ...     "family_name": ["lee", "lee"], "birth_date": ["1950-01-02", "1950-01-02"],
        ...     "sex": ["2", "1"], "postcode": ["LS6 2AB", "LS6 2AB"]})
        >>> ident, identity_id = identities(recs)
        >>> len(ident), identity_id.tolist()
        (2, [0, 1])
    """
    keys = records[KEY].astype("string")
    identity_id = keys.groupby(KEY, dropna=False, sort=True).ngroup().to_numpy(dtype=np.int64)
    first = pd.Series(np.arange(len(records))).groupby(identity_id).first()
    ident = keys.iloc[first.to_numpy()].reset_index(drop=True)
    ident["n_records"] = np.bincount(identity_id, minlength=len(ident)).astype(np.int64)
    full = ident[["nhs_number", "birth_date", "sex"]].notna().all(axis=1).to_numpy()
    det = np.arange(len(ident), dtype=np.int64) + len(ident)
    if full.any():
        grp = ident.loc[full, ["nhs_number", "birth_date", "sex"]].groupby(
            ["nhs_number", "birth_date", "sex"], sort=True).ngroup().to_numpy()
        det[full] = grp
    ident["det_group"] = det
    return ident, identity_id


@dataclass
class PersonLinkage:
    """Result of :func:`link_persons`.

    Attributes:
        identity: one row per identity (``identity_id`` = row number) with ``det_group`` and
            ``cluster`` (the linked person).
        identity_id: identity of each input record (same order as the input).
        cluster: linked person of each input record.
        pairs: scored identity pairs (``unique_id_l``/``_r`` are identity ids), probability ≥
            the scoring floor, with ``gamma_*`` levels when asked for.
        model: trained Splink model JSON.
        stats: counts for the link report.

    Example:
        >>> recs = pd.DataFrame({"nhs_number": ["9434765919", "9434765919", None, None],
        ...     "given_name": ["ann", "ann", "ann", "bob"], "family_name": ["lee", "lee", "lee", "stone"],
        ...     "birth_date": ["1950-01-02", "1950-01-02", "1950-01-02", "1961-07-08"], "sex": ["2", "2", "2", "1"],
        ...     "postcode": ["LS6 2AB", "LS6 2AB", "LS6 2AB", "M1 1AA"]})
        >>> linked = link_persons(recs, threshold=0.95, min_probability=0.01)
        >>> isinstance(linked, PersonLinkage), len(linked.identity), linked.identity_id.tolist()
        (True, 3, [0, 0, 1, 2])
    """

    identity: pd.DataFrame
    identity_id: np.ndarray
    cluster: np.ndarray
    pairs: pd.DataFrame
    model: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def recluster(self, threshold: float) -> np.ndarray:
        """Record clusters at another threshold (no re-scoring)."""
        return cluster_identities(self.identity, self.pairs, threshold)[self.identity_id]


def cluster_identities(ident: pd.DataFrame, pairs: pd.DataFrame, threshold: float) -> np.ndarray:
    """Connected components over deterministic groups and pairs at or above ``threshold``.

    Example:
        >>> ident = pd.DataFrame({"det_group": [0, 0, 2, 3]})
        >>> pairs = pd.DataFrame({"unique_id_l": [2], "unique_id_r": [3], "match_probability": [0.97]})
        >>> cluster_identities(ident, pairs, threshold=0.95).tolist(), cluster_identities(ident, pairs, threshold=0.99).tolist()
        ([0, 0, 1, 1], [0, 0, 1, 2])
    """
    det = ident["det_group"].to_numpy()
    order = np.argsort(det, kind="stable")
    same = det[order][1:] == det[order][:-1]
    det_l, det_r = order[:-1][same], order[1:][same]
    keep = pairs["match_probability"].to_numpy() >= threshold
    left = np.concatenate([det_l, pairs["unique_id_l"].to_numpy()[keep]])
    right = np.concatenate([det_r, pairs["unique_id_r"].to_numpy()[keep]])
    return connected_clusters(len(ident), left, right)


def link_persons(records: pd.DataFrame, *, threshold: float, min_probability: float,
                 backend: str = "duckdb", plain: bool = False, deterministic: bool = True,
                 keep_gammas: bool = False, seed: int = 1) -> PersonLinkage:
    """Link person records (cleaned identifiers, see :class:`~registry_lib.linkage.validate.Validated`).

    ``deterministic=False`` skips the HES-style pass (for comparing methods in the bench).

    Example:
        >>> recs = pd.DataFrame({"nhs_number": ["9434765919", "9434765919", None, None],
        ...     "given_name": ["ann", "ann", "ann", "bob"], "family_name": ["lee", "lee", "lee", "stone"],
        ...     "birth_date": ["1950-01-02", "1950-01-02", "1950-01-02", "1961-07-08"], "sex": ["2", "2", "2", "1"],
        ...     "postcode": ["LS6 2AB", "LS6 2AB", "LS6 2AB", "M1 1AA"]})
        >>> linked = link_persons(recs, threshold=0.95, min_probability=0.01)
        >>> linked.cluster.tolist()   # the record without an NHS number joins Ann's by name and date
        [0, 0, 0, 1]
    """
    ident, identity_id = identities(records)
    if not deterministic:
        ident["det_group"] = np.arange(len(ident), dtype=np.int64)
    frame = mdl.prepare(ident, {r: r for r in KEY})
    frame["det_group"] = ident["det_group"].to_numpy()
    roles = mdl.roles_of(frame)
    rules = mdl.prediction_rules(roles, exclude_same_group=deterministic)
    scored = mdl.score(frame, link_type="dedupe_only", backend=backend, plain=plain,
                       min_probability=min_probability, rules=rules, keep_gammas=keep_gammas, seed=seed)
    labels = cluster_identities(ident, scored.pairs, threshold)
    ident["cluster"] = labels
    n_det_groups = int(pd.Series(ident["det_group"]).nunique())
    stats = {
        "records": int(len(records)),
        "identities": int(len(ident)),
        "deterministic_groups": n_det_groups,
        "identities_joined_deterministically": int(len(ident) - n_det_groups),
        "candidate_pairs_scored": int(len(scored.pairs)),
        "pairs_at_or_above_threshold": int((scored.pairs["match_probability"] >= threshold).sum()),
        "clusters": int(labels.max() + 1) if len(labels) else 0,
    }
    return PersonLinkage(identity=ident, identity_id=identity_id, cluster=labels[identity_id],
                         pairs=scored.pairs, model=scored.model, stats=stats, notes=scored.notes)
