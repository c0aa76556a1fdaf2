"""Clerical review: the evidence behind each uncertain pair, and the officers' decisions.

The registry writes the pairs in the review band to ``registry/clerical_review.parquet`` with,
for every identifier, the comparison level the pair reached (``level_<role>``, e.g.
``nickname`` for Bob and Robert) and the weight of evidence it carried (``weight_<role>``: log2
of m/u, positive for agreement, negative against, 0 when either side is missing), and a one-line
``evidence`` summary. ``review_key`` names the pair by the first record of each side
(``notifications:N000012|deaths:D000345``), which stays the same from one run to the next.

A registration officer records decisions in a CSV (default ``params/linkage/decisions/<cohort>.csv``)
with columns ``record_l``, ``record_r`` (``feed:record_id``), ``decision`` (``match`` or
``non-match``), ``reviewer`` and ``decided_at``; :func:`read_decisions` checks it and the next
``registry-lab link`` honours it (:func:`apply_decisions`): a ``match`` links the two records'
persons whatever their score, a ``non-match`` removes that scored pair (the two can still end in
one person through other links, which the link report counts as ``overruled``).

Example:
    >>> model = {"comparisons": [{"output_column_name": "sex", "comparison_levels": [
    ...     {"is_null_level": True, "label_for_charts": "null"},
    ...     {"label_for_charts": "exact", "m_probability": 0.98, "u_probability": 0.49},
    ...     {"label_for_charts": "else", "m_probability": 0.02, "u_probability": 0.51}]}]}
    >>> ev = evidence(pd.DataFrame({"gamma_sex": [1, 0, -1]}), model)
    >>> ev["level_sex"].tolist(), ev["weight_sex"].round(2).tolist()
    (['exact', 'else', 'missing'], [1.0, -4.67, 0.0])

A level Splink labels "All other comparisons" is shown as ``disagrees``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

#: Roles whose evidence the review file shows (those of the registry's person linkage).
REVIEW_ROLES = ("nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode")
DECISIONS = ("match", "non-match")
DECISION_COLUMNS = ("record_l", "record_r", "decision", "reviewer", "decided_at")


def levels(model: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Per comparison: a table indexed by gamma (-1 null, then highest = closest) with the
    level's ``label`` and ``weight`` (log2 m/u; 0 for the null level).

    Example:
        >>> model = {"comparisons": [{"output_column_name": "birth_date", "comparison_levels": [
        ...     {"is_null_level": True, "label_for_charts": "null"},
        ...     {"label_for_charts": "exact", "m_probability": 0.9, "u_probability": 0.001},
        ...     {"label_for_charts": "day and month swapped", "m_probability": 0.05, "u_probability": 0.0001},
        ...     {"label_for_charts": "All other comparisons", "m_probability": 0.05, "u_probability": 0.9989}]}]}
        >>> print(levels(model)["birth_date"].round(2).reset_index().to_string(index=False))
         gamma                 label  weight
            -1               missing    0.00
             2                 exact    9.81
             1 day and month swapped    8.97
             0             disagrees   -4.32
    """
    out = {}
    for comp in model.get("comparisons", []):
        name = comp.get("output_column_name") or comp.get("comparison_description", "?")
        lv = comp.get("comparison_levels", [])
        n_non_null = sum(not x.get("is_null_level", False) for x in lv)
        rows, k = [], 0
        for x in lv:
            if x.get("is_null_level", False):
                rows.append((-1, "missing", 0.0))
                continue
            m, u = float(x.get("m_probability", np.nan)), float(x.get("u_probability", np.nan))
            label = str(x.get("label_for_charts", ""))
            label = "disagrees" if label == "All other comparisons" else label
            rows.append((n_non_null - 1 - k, label, float(np.log2(m / u))))
            k += 1
        out[name] = pd.DataFrame(rows, columns=["gamma", "label", "weight"]).set_index("gamma")
    return out


def evidence(pairs: pd.DataFrame, model: dict[str, Any], roles: tuple[str, ...] = REVIEW_ROLES) -> pd.DataFrame:
    """``level_<role>``, ``weight_<role>`` and a one-line ``evidence`` for pairs with ``gamma_<role>``.

    Roles the model has no comparison for get missing level and weight.

    Example:
        >>> model = {"comparisons": [{"output_column_name": "birth_date", "comparison_levels": [
        ...     {"is_null_level": True, "label_for_charts": "null"},
        ...     {"label_for_charts": "exact", "m_probability": 0.9, "u_probability": 0.001},
        ...     {"label_for_charts": "day and month swapped", "m_probability": 0.05, "u_probability": 0.0001},
        ...     {"label_for_charts": "All other comparisons", "m_probability": 0.05, "u_probability": 0.9989}]}]}
        >>> ev = evidence(pd.DataFrame({"gamma_birth_date": [2, 1, -1]}), model, roles=("birth_date", "sex"))
        >>> print(ev.to_string())
                level_birth_date  weight_birth_date level_sex  weight_sex                                 evidence
        0                  exact              9.814      <NA>         NaN                  birth_date exact (+9.8)
        1  day and month swapped              8.966      <NA>         NaN  birth_date day and month swapped (+9.0)
        2                missing              0.000      <NA>         NaN                birth_date missing (+0.0)
    """
    table = levels(model)
    out = pd.DataFrame(index=pairs.index)
    parts = []
    for role in roles:
        col = f"gamma_{role}"
        if role in table and col in pairs.columns:
            g = pairs[col].astype("Int64").fillna(-1).to_numpy(np.int64)
            t = table[role]
            unknown = sorted(set(np.unique(g).tolist()) - set(t.index.tolist()))
            if unknown:
                raise RegistryLabError(f"clerical review: {col} holds level(s) {unknown} the model does not have")
            out[f"level_{role}"] = pd.array(t.loc[g, "label"].to_numpy(), dtype="string")
            out[f"weight_{role}"] = t.loc[g, "weight"].to_numpy(float).round(3)
            w = out[f"weight_{role}"].map("{:+.1f}".format)
            parts.append(role + " " + out[f"level_{role}"].astype(str) + " (" + w + ")")
        else:
            out[f"level_{role}"] = pd.array([pd.NA] * len(pairs), dtype="string")
            out[f"weight_{role}"] = np.nan
    joined = parts[0].str.cat(parts[1:], sep="; ") if parts else pd.Series("", index=pairs.index)
    out["evidence"] = joined.astype("string")
    return out


def read_decisions(path: Path | str) -> pd.DataFrame:
    """A reviewed decisions CSV, checked: one sentence naming the file and row on a problem.

    Returns the rows with ``record_l``/``record_r`` ordered (smaller first) and the last
    decision kept where a pair was decided twice.

    Example (the second reviewer overrules the first on D9/N1):
        >>> import tempfile
        >>> sheet = pd.DataFrame({"record_l": ["deaths:D9", "notifications:N2", "notifications:N1"],
        ...                       "record_r": ["notifications:N1", "notifications:N3", "deaths:D9"],
        ...                       "decision": ["Match", "nonmatch", "non-match"], "reviewer": ["jo", "jo", "al"],
        ...                       "decided_at": ["2024-03-01", "2024-03-01", "2024-03-02"]})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "decisions.csv")
        ...     sheet.to_csv(path, index=False)
        ...     print(read_decisions(path).to_string())
        ...     sheet.assign(decision="maybe").to_csv(path, index=False)
        ...     try:
        ...         read_decisions(path)
        ...     except RegistryLabError as exc:
        ...         print(str(exc).split(": ", 1)[1])  # after the file's path
                   record_l          record_r   decision reviewer  decided_at
        0  notifications:N2  notifications:N3  non-match       jo  2024-03-01
        1         deaths:D9  notifications:N1  non-match       al  2024-03-02
        row 2 has decision 'maybe'; write 'match' or 'non-match'
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, comment="#")
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RegistryLabError(f"{path}: cannot read the decisions file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in DECISION_COLUMNS if c not in df.columns]
    if missing:
        raise RegistryLabError(f"{path}: missing column(s) {', '.join(missing)}; expected {', '.join(DECISION_COLUMNS)}")
    df = df[list(DECISION_COLUMNS) + [c for c in df.columns if c not in DECISION_COLUMNS]].copy()
    for c in DECISION_COLUMNS:
        df[c] = df[c].str.strip()
    df["decision"] = df["decision"].str.lower().replace({"nonmatch": "non-match", "non_match": "non-match",
                                                         "no match": "non-match"})
    bad = ~df["decision"].isin(DECISIONS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise RegistryLabError(f"{path}: row {i + 2} has decision {df['decision'].iloc[i]!r}; write 'match' or 'non-match'")
    for c in ("record_l", "record_r"):
        bad = ~df[c].str.fullmatch(r"[A-Za-z_]+:\S+")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise RegistryLabError(f"{path}: row {i + 2} has {c} {df[c].iloc[i]!r}; expected feed:record_id, "
                                   "as in clerical_review.parquet's review_key")
    for c in ("reviewer", "decided_at"):
        bad = df[c] == ""
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise RegistryLabError(f"{path}: row {i + 2} has no {c}; every decision says who made it and when")
    a, b = df["record_l"].to_numpy(object), df["record_r"].to_numpy(object)
    first = a <= b
    lo, hi = np.where(first, a, b), np.where(first, b, a)
    df["record_l"], df["record_r"] = lo, hi
    return df.drop_duplicates(["record_l", "record_r"], keep="last").reset_index(drop=True)


def apply_decisions(pairs: pd.DataFrame, decisions: pd.DataFrame,
                    identity_of: pd.Series) -> tuple[pd.DataFrame, dict[str, int]]:
    """Scored identity pairs with the decisions honoured, and counts for the link report.

    ``identity_of`` maps ``feed:record_id`` to identity id. A ``match`` sets the pair's
    probability to 1 (adding the pair if it was not scored), a ``non-match`` to 0. Decisions
    naming an unknown record, or two records of one identity, are counted, not applied.

    Example:
        >>> pairs = pd.DataFrame({"unique_id_l": [0, 1], "unique_id_r": [1, 2], "match_weight": [3.2, 8.0],
        ...                       "match_probability": [0.9, 0.997]})
        >>> decisions = pd.DataFrame({
        ...     "record_l": ["notifications:N1", "notifications:N2", "deaths:D9", "notifications:N1"],
        ...     "record_r": ["notifications:N2", "treatments:T4", "notifications:N5", "notifications:N7"],
        ...     "decision": ["non-match", "match", "match", "match"]})
        >>> identity_of = pd.Series({"notifications:N1": 0, "notifications:N2": 1, "deaths:D9": 2,
        ...                          "notifications:N5": 2, "treatments:T4": 3})
        >>> out, counts = apply_decisions(pairs, decisions, identity_of)
        >>> print(out.to_string())
           unique_id_l  unique_id_r  match_weight  match_probability
        0            0            1         -99.0              0.000
        1            1            2           8.0              0.997
        2            1            3          99.0              1.000
        >>> counts
        {'decisions': 4, 'unknown_records': 1, 'same_identity': 1, 'applied_match': 1, 'applied_non_match': 1, 'added_pairs': 1}
    """
    il = decisions["record_l"].map(identity_of)
    ir = decisions["record_r"].map(identity_of)
    known = il.notna().to_numpy() & ir.notna().to_numpy()
    d = decisions[known].assign(a=il[known].astype(np.int64), b=ir[known].astype(np.int64))
    same = (d["a"] == d["b"]).to_numpy()
    d = d[~same]
    lo = np.minimum(d["a"], d["b"]).to_numpy(np.int64)
    hi = np.maximum(d["a"], d["b"]).to_numpy(np.int64)
    want = pd.DataFrame({"unique_id_l": lo, "unique_id_r": hi,
                         "_p": np.where(d["decision"].to_numpy() == "match", 1.0, 0.0)})
    want = want.drop_duplicates(["unique_id_l", "unique_id_r"], keep="last")
    out = pairs.merge(want, on=["unique_id_l", "unique_id_r"], how="outer", indicator=True)
    new = (out["_merge"] == "right_only").to_numpy()
    decided = out["_p"].notna().to_numpy()
    out.loc[decided, "match_probability"] = out.loc[decided, "_p"]
    out.loc[decided, "match_weight"] = np.where(out.loc[decided, "_p"] > 0, 99.0, -99.0)
    for c in out.columns:
        if c.startswith("gamma_"):
            out[c] = out[c].fillna(-1).astype(np.int8)
    counts = {"decisions": int(len(decisions)), "unknown_records": int((~known).sum()),
              "same_identity": int(same.sum()),
              "applied_match": int((want["_p"] == 1.0).sum()), "applied_non_match": int((want["_p"] == 0.0).sum()),
              "added_pairs": int((new & (out["_p"].to_numpy() == 1.0)).sum())}
    out = out[~(new & (out["_p"].to_numpy() == 0.0))]  # a non-match never scored needs nothing
    out = out.drop(columns=["_p", "_merge"]).sort_values(["unique_id_l", "unique_id_r"], ignore_index=True)
    return out, counts


def decisions_template(review: pd.DataFrame) -> pd.DataFrame:
    """A decisions sheet for the pairs of ``clerical_review.parquet``: one row per pair, the
    evidence to read and empty ``decision``, ``reviewer``, ``decided_at`` to fill in.

    Example:
        >>> rv = pd.DataFrame({"review_key": ["notifications:N1|deaths:D9"], "match_probability": [0.7],
        ...                    "evidence": ["given_name exact (+7.1)"]})
        >>> decisions_template(rv)[["record_l", "record_r", "decision"]].values.tolist()
        [['notifications:N1', 'deaths:D9', '']]
    """
    keys = review["review_key"].astype(str).str.split("|", n=1, expand=True)
    return pd.DataFrame({"record_l": keys[0], "record_r": keys[1], "decision": "", "reviewer": "",
                         "decided_at": "", "match_probability": review["match_probability"].to_numpy(),
                         "evidence": review["evidence"].to_numpy()})


def simulated_decisions(review: pd.DataFrame, record_truth: pd.DataFrame, *, reviewer: str,
                        decided_at: str, limit: int | None = None) -> pd.DataFrame:
    """Decisions a perfectly informed officer would make (validation and demonstration only:
    it reads the synthetic truth). ``limit``: only the first pairs, most probable first.

    Example:
        >>> rv = pd.DataFrame({"review_key": ["a:1|b:2", "a:3|b:4"], "match_probability": [0.9, 0.6]})
        >>> rt = pd.DataFrame({"feed": ["a", "b", "a", "b"], "record_id": ["1", "2", "3", "4"],
        ...                    "patient_id": [10, 10, 11, 12]})
        >>> simulated_decisions(rv, rt, reviewer="x", decided_at="2024-01-01")["decision"].tolist()
        ['match', 'non-match']
    """
    rv = review.sort_values("match_probability", ascending=False, kind="stable")
    if limit is not None:
        rv = rv.head(int(limit))
    keys = rv["review_key"].astype(str).str.split("|", n=1, expand=True)
    who = pd.Series(record_truth["patient_id"].to_numpy(),
                    index=record_truth["feed"].astype(str) + ":" + record_truth["record_id"].astype(str))
    who = who[~who.index.duplicated()]
    a, b = keys[0].map(who), keys[1].map(who)
    known = a.notna() & b.notna()
    return pd.DataFrame({"record_l": keys[0][known].to_numpy(), "record_r": keys[1][known].to_numpy(),
                         "decision": np.where((a == b)[known], "match", "non-match"),
                         "reviewer": reviewer, "decided_at": decided_at})
