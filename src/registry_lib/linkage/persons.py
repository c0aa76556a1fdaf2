"""Person linkage of feed records: deterministic pass, probabilistic pass, clustering.

1. **Identities.** Records with exactly the same cleaned identifiers (NHS number, names, birth
   date, sex, postcode) are one *identity*; a person with three clean notifications has one
   identity, so matching work scales with distinct identities, not records.
2. **Deterministic pass** (HES style): identities sharing a valid NHS number, birth date and sex
   are the same person (``det_group``).
3. **Probabilistic pass**: Splink scores identity pairs from the blocking rules, skipping pairs
   the deterministic pass already joined (:mod:`registry_lib.linkage.model`).
4. **Clustering**: deterministic links and pairs with ``match_probability >= threshold``;
   identities without an NHS number join the one anchored person they are most strongly
   linked to, so they never chain two NHS numbers into one person (:func:`cluster_identities`).

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

    Example (Ann's two addresses are two identities of one deterministic group):
        >>> recs = pd.DataFrame({"nhs_number": ["9434765919", "9434765919", "9434765919", None],
        ...     "given_name": ["ann", "ann", "ann", "anne"], "family_name": ["lee"] * 4,
        ...     "birth_date": ["1950-01-02"] * 4, "sex": ["2"] * 4,
        ...     "postcode": ["LS6 2AB", "LS1 4AP", "LS6 2AB", "LS6 2AB"]})
        >>> ident, identity_id = identities(recs)
        >>> identity_id.tolist()
        [1, 0, 1, 2]
        >>> print(ident[["nhs_number", "given_name", "postcode", "n_records", "det_group"]].to_string())
           nhs_number given_name postcode  n_records  det_group
        0  9434765919        ann  LS1 4AP          1          0
        1  9434765919        ann  LS6 2AB          2          0
        2        <NA>       anne  LS6 2AB          1          5
    """
    # Arrow text (a national decade in python strings is gigabytes), not copied when it is already
    keys = records[KEY].astype(pd.StringDtype("pyarrow"), copy=False)
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

    Example (three identities, the last without an NHS number; clusters at another threshold
    come from the stored pairs, without scoring again):
        >>> ident = pd.DataFrame({"nhs_number": ["9434765919", None, None], "det_group": [0, 1, 2]})
        >>> pairs = pd.DataFrame({"unique_id_l": [0, 1], "unique_id_r": [1, 2], "match_probability": [0.97, 0.6]})
        >>> linked = PersonLinkage(identity=ident, identity_id=np.array([0, 0, 1, 2]),
        ...                        cluster=np.array([0, 0, 0, 1]), pairs=pairs, model={})
        >>> linked.recluster(0.95).tolist(), linked.recluster(0.5).tolist()
        ([0, 0, 0, 1], [0, 0, 0, 0])
    """

    identity: pd.DataFrame
    identity_id: np.ndarray
    cluster: np.ndarray
    pairs: pd.DataFrame
    model: dict[str, Any]
    stats: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    anchored: bool = True

    def recluster(self, threshold: float) -> np.ndarray:
        """Record clusters at another threshold (no re-scoring)."""
        return cluster_identities(self.identity, self.pairs, threshold, anchored=self.anchored)[self.identity_id]


def cluster_identities(ident: pd.DataFrame, pairs: pd.DataFrame, threshold: float, *,
                       anchored: bool = True) -> np.ndarray:
    """Persons from deterministic groups and pairs at or above ``threshold``.

    ``anchored=False``: plain connected components. ``anchored=True`` (the registry): identities
    with an NHS number are *anchored*; they cluster among themselves (deterministic groups and
    pairs). Each identity without an NHS number that is linked to an anchored one joins the one
    anchored person it is most strongly linked to; the remaining identities cluster among
    themselves and each such group joins the one person it is most strongly linked to. So a
    record without an NHS number that resembles two people (twins, a same-name-same-birthday
    pair) joins one of them instead of chaining the two into one person.

    Example:
        >>> ident = pd.DataFrame({"nhs_number": ["1", "2", None], "det_group": [0, 1, 2]})
        >>> pairs = pd.DataFrame({"unique_id_l": [0, 1], "unique_id_r": [2, 2], "match_probability": [0.97, 0.99]})
        >>> cluster_identities(ident, pairs, 0.95, anchored=False).tolist()
        [0, 0, 0]
        >>> cluster_identities(ident, pairs, 0.95).tolist()
        [0, 1, 1]
    """
    det = ident["det_group"].to_numpy()
    order = np.argsort(det, kind="stable")
    same = det[order][1:] == det[order][:-1]
    det_l, det_r = order[:-1][same], order[1:][same]
    keep = pairs["match_probability"].to_numpy() >= threshold
    pl, pr = pairs["unique_id_l"].to_numpy()[keep], pairs["unique_id_r"].to_numpy()[keep]
    n = len(ident)
    if not anchored or "nhs_number" not in ident.columns:
        return connected_clusters(n, np.concatenate([det_l, pl]), np.concatenate([det_r, pr]))
    has = ident["nhs_number"].notna().to_numpy()
    if has.all() or not has.any():
        return connected_clusters(n, np.concatenate([det_l, pl]), np.concatenate([det_r, pr]))
    prob = pairs["match_probability"].to_numpy()[keep]
    both = has[pl] & has[pr]
    base_l, base_r = np.concatenate([det_l, pl[both]]), np.concatenate([det_r, pr[both]])
    comp = connected_clusters(n, base_l, base_r)
    # 1. each identity without an NHS number linked to an anchored one joins its best (alone)
    cross = np.flatnonzero(has[pl] != has[pr])
    free_end = np.where(has[pl[cross]], pr[cross], pl[cross])
    anch_end = np.where(has[pl[cross]], pl[cross], pr[cross])
    a1 = _best(free_end, comp[anch_end], prob[cross], anch_end)
    attached = np.zeros(n, dtype=bool)
    attached[a1[0]] = True
    # 2. the others cluster among themselves; each such group joins the best attached identity
    free = ~has
    uu = free[pl] & free[pr] & ~attached[pl] & ~attached[pr]
    comp_u = connected_clusters(n, pl[uu], pr[uu])
    ua = free[pl] & free[pr] & (attached[pl] != attached[pr])
    idx = np.flatnonzero(ua)
    u_end = np.where(attached[pl[idx]], pr[idx], pl[idx])
    t_end = np.where(attached[pl[idx]], pl[idx], pr[idx])
    a2 = _best(comp_u[u_end], comp[t_end], prob[idx], t_end, nodes=u_end)
    return connected_clusters(n, np.concatenate([base_l, a1[0], pl[uu], a2[0]]),
                              np.concatenate([base_r, a1[1], pr[uu], a2[1]]))


def _best(group: np.ndarray, target: np.ndarray, prob: np.ndarray, target_node: np.ndarray,
          nodes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One edge per ``group``: to the ``target`` with the highest probability (ties: lowest
    target). Returns (node, target node) arrays."""
    nodes = group if nodes is None else nodes
    df = pd.DataFrame({"g": group, "t": target, "p": prob, "node": nodes, "tn": target_node})
    df = df.sort_values(["g", "p", "t", "node"], ascending=[True, False, True, True], kind="stable")
    df = df.drop_duplicates("g")
    return df["node"].to_numpy(np.int64), df["tn"].to_numpy(np.int64)


def link_persons(records: pd.DataFrame, *, threshold: float, min_probability: float,
                 backend: str = "duckdb", plain: bool = False, deterministic: bool = True,
                 keep_gammas: bool = False, seed: int = 1) -> PersonLinkage:
    """Link person records (cleaned identifiers, see :class:`~registry_lib.linkage.validate.Validated`).

    ``deterministic=False`` skips the HES-style pass (for comparing methods in the bench).

    Example (two people notified three times each: Ann once without her NHS number and once as
    "anne"; Raj once at another postcode and with a misspelt family name):
        >>> recs = pd.DataFrame({"nhs_number": ["9434765919", None, "9434765919", "4010232137", None, "4010232137"],
        ...     "given_name": ["ann", "ann", "anne", "raj", "raj", "raj"],
        ...     "family_name": ["lee", "lee", "lee", "patel", "patel", "patil"],
        ...     "birth_date": ["1950-01-02"] * 3 + ["1961-07-30"] * 3, "sex": ["2"] * 3 + ["1"] * 3,
        ...     "postcode": ["LS6 2AB"] * 3 + ["M1 1AE", "M1 1AE", "M14 5RT"]})
        >>> linked = link_persons(recs, threshold=0.9, min_probability=0.01)
        >>> linked.cluster.tolist()
        [1, 1, 1, 0, 0, 0]
        >>> {k: linked.stats[k] for k in ("identities", "deterministic_groups", "clusters")}
        {'identities': 6, 'deterministic_groups': 4, 'clusters': 2}
    """
    ident, identity_id = identities(records)
    n_records = len(records)
    del records  # only the identities are scored: a caller that handed the records over frees them here
    if not deterministic:
        ident["det_group"] = np.arange(len(ident), dtype=np.int64)
    frame = mdl.prepare(ident, {r: r for r in KEY})
    frame["det_group"] = ident["det_group"].to_numpy()
    roles = mdl.roles_of(frame)
    rules = mdl.prediction_rules(roles, exclude_same_group=deterministic)
    scored = mdl.score(frame, link_type="dedupe_only", backend=backend, plain=plain,
                       min_probability=min_probability, rules=rules, keep_gammas=keep_gammas, seed=seed)
    labels = cluster_identities(ident, scored.pairs, threshold, anchored=not plain)
    ident["cluster"] = labels
    n_det_groups = int(pd.Series(ident["det_group"]).nunique())
    stats = {
        "records": int(n_records),
        "identities": int(len(ident)),
        "deterministic_groups": n_det_groups,
        "identities_joined_deterministically": int(len(ident) - n_det_groups),
        "candidate_pairs_scored": int(len(scored.pairs)),
        "pairs_at_or_above_threshold": int((scored.pairs["match_probability"] >= threshold).sum()),
        "clusters": int(labels.max() + 1) if len(labels) else 0,
    }
    return PersonLinkage(identity=ident, identity_id=identity_id, cluster=labels[identity_id],
                         pairs=scored.pairs, model=scored.model, stats=stats, notes=scored.notes,
                         anchored=not plain)
