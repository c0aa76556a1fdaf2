"""Linkage quality assurance: summaries of what ``registry-lab link --evaluate`` leaves in
``synthetic/<cohort>/registry/``.

Pure functions on those tables (plus one reader), used by ``notebooks/01_linkage_quality``:

* :func:`reconciliation` — per feed, input = linked + quarantined + opt-out removed + blocked;
* :func:`model_parameters` — m and u probabilities, Bayes factors and match weights of every
  comparison level of the Fellegi–Sunter model (``linkage_model.json``); :func:`score_check`
  recomputes the pairs' match weights from it;
* :func:`threshold_tradeoff` — precision, recall, F1, false and missed match rates of the
  scored candidate pairs (``match_weights.parquet`` with its truth labels) as the threshold
  varies, counted in record pairs;
* :func:`clustered_tradeoff` — the same after clustering, for every record (the link report's
  ``threshold_curve``);
* :func:`errors_by_kind_pairs` / :func:`errors_by_kind_records` — missed and false matches by
  the kind of identifier error injected into the records;
* :func:`review_band_summary` — size and make-up of a clerical review band;
* :func:`count_phrase` — a count written for a sentence under the disclosure rules.

Pairwise conventions follow :mod:`registry_lib.linkage.evaluate`: false match rate = false
pairs / linked pairs (= 1 − precision), missed match rate = missed pairs / true pairs
(= 1 − recall); with nothing linked precision is 1, with no true pairs recall is 1.

Example:
    >>> import pandas as pd
    >>> pairs = pd.DataFrame({"match_probability": [0.99, 0.6, 0.2], "is_match": [True, False, True],
    ...                       "n_records_l": [1, 1, 2], "n_records_r": [1, 1, 1]})
    >>> t = threshold_tradeoff(pairs, [0.5, 0.9])
    >>> t[["threshold", "linked_pairs", "false_pairs", "missed_pairs", "precision", "recall"]]
       threshold  linked_pairs  false_pairs  missed_pairs  precision    recall
    0        0.5             2            1             2        0.5  0.333333
    1        0.9             1            0             2        1.0  0.333333
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.release.disclosure import DEFAULT_ROUNDING, DEFAULT_THRESHOLD, protect_counts

#: Record statuses of the link report's per-feed counts, in reconciliation order.
STATUSES = ("linked", "quarantined", "optout_removed", "optout_blocked")
#: Comparison roles of the match-weights table (``gamma_<role>``).
ROLES = ("nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode")
_TRUTH_COLUMNS = ("is_match", "errors_l", "errors_r")


@dataclass
class LinkageOutputs:
    """The QA inputs of one cohort's ``registry/`` folder.

    Example:
        >>> import os, shutil, tempfile
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> root = Path(tempfile.mkdtemp())   # a project root whose synthetic/tiny is a copy of the tiny cohort
        >>> _ = shutil.copytree(tiny_cohort(), root / "synthetic" / "tiny", ignore=shutil.ignore_patterns("feeds", "releases"))
        >>> env = mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": str(root)})
        >>> with env:
        ...     out = load_linkage_outputs("tiny")
        >>> isinstance(out, LinkageOutputs), out.evaluated
        (True, False)
        >>> shutil.rmtree(root)
    """

    report: dict[str, Any]
    model: dict[str, Any]
    match_weights: pd.DataFrame
    clerical_review: pd.DataFrame
    quarantine: pd.DataFrame
    validation_issues: pd.DataFrame
    death_flags: pd.DataFrame

    @property
    def evaluated(self) -> bool:
        """Whether the registry was built with ``--evaluate`` (truth labels present)."""
        return "evaluation" in self.report


def load_linkage_outputs(cohort: str, *, require_evaluation: bool = False) -> LinkageOutputs:
    """Read the link report, model and QA tables of ``synthetic/<cohort>/registry/``.

    Raises :class:`RegistryLabError` naming the command to run when the registry is missing
    (or, with ``require_evaluation``, was built without ``--evaluate``).

    Example:
        >>> import os, shutil, tempfile
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> root = Path(tempfile.mkdtemp())   # a project root whose synthetic/tiny is a copy of the tiny cohort
        >>> _ = shutil.copytree(tiny_cohort(), root / "synthetic" / "tiny", ignore=shutil.ignore_patterns("feeds", "releases"))
        >>> env = mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": str(root)})
        >>> with env:
        ...     out = load_linkage_outputs("tiny")
        >>> out.report["threshold"] > 0, len(out.match_weights) > 0
        (True, True)
        >>> shutil.rmtree(root)
    """
    from registry_lib.io import read_parquet
    from registry_lib.paths import require_cohort

    folder = require_cohort(cohort, "registry") / "registry"
    missing = [n for n in ("link_report.json", "linkage_model.json", "match_weights.parquet")
               if not (folder / n).exists()]
    if missing:
        raise RegistryLabError(f"synthetic/{cohort}/registry: {', '.join(missing)} not found; "
                               f"rebuild it with `registry-lab link --cohort {cohort} --evaluate`")

    def table(name: str) -> pd.DataFrame:
        return read_parquet(folder / f"{name}.parquet")

    report = json.loads((folder / "link_report.json").read_text())
    if require_evaluation and "evaluation" not in report:
        raise RegistryLabError(f"synthetic/{cohort}/registry was built without truth evaluation; rebuild it "
                               f"with `registry-lab link --cohort {cohort} --evaluate`")
    return LinkageOutputs(
        report=report,
        model=json.loads((folder / "linkage_model.json").read_text()),
        match_weights=table("match_weights"), clerical_review=table("clerical_review"),
        quarantine=table("quarantine"), validation_issues=table("validation_issues"),
        death_flags=table("death_flags"),
    )


# ---------------------------------------------------------------------------------------------
# counts
# ---------------------------------------------------------------------------------------------
def reconciliation(report: dict[str, Any]) -> pd.DataFrame:
    """Per feed: ``input`` and the records ``linked``, ``quarantined``, ``optout_removed``,
    ``optout_blocked``, and whether they add up (``reconciles``).

    Example:
        >>> r = {"counts": {"sact": {"input": 10, "linked": 8, "quarantined": 1,
        ...                          "optout_removed": 0, "optout_blocked": 1}}}
        >>> reconciliation(r).loc["sact"].to_dict()
        {'input': 10, 'linked': 8, 'quarantined': 1, 'optout_removed': 0, 'optout_blocked': 1, 'reconciles': True}
    """
    counts = report.get("counts")
    if not counts:
        raise RegistryLabError("link report: no per-feed `counts` (was it written by `registry-lab link`?)")
    df = pd.DataFrame.from_dict(counts, orient="index")
    missing = [c for c in ("input", *STATUSES) if c not in df.columns]
    if missing:
        raise RegistryLabError(f"link report counts: missing {', '.join(missing)}")
    df = df[["input", *STATUSES]].astype(np.int64)
    df["reconciles"] = df["input"] == df[list(STATUSES)].sum(axis=1)
    df.index.name = "feed"
    return df


def count_phrase(n: int, threshold: int = DEFAULT_THRESHOLD, rounding: int = DEFAULT_ROUNDING) -> str:
    """A count for a sentence, under the disclosure rules: ``"0"``, ``"1–7"`` (suppressed) or
    the count rounded (``"about 1,235"``; exact when rounding leaves it unchanged).

    Example:
        >>> [count_phrase(n) for n in (0, 3, 10, 1234)]
        ['0', '1–7', '10', 'about 1,235']
    """
    n = int(n)
    if n == 0:
        return "0"
    if 1 <= n <= threshold:
        return f"1–{threshold}"
    r = int(protect_counts([n], threshold, rounding)[0])
    return f"{r:,}" if r == n else f"about {r:,}"


def protected_count(n: int | None, threshold: int = DEFAULT_THRESHOLD,
                    rounding: int = DEFAULT_ROUNDING) -> int | None:
    """One count protected for ``results.json`` (``None`` when suppressed or missing); a
    negative count (a difference) is protected on its absolute value and keeps its sign.

    Example:
        >>> [protected_count(n) for n in (0, 4, -4, 12, -13, None)]
        [0, None, None, 10, -15, None]
    """
    if n is None or pd.isna(n):
        return None
    n = int(n)
    p = protect_counts([abs(n)], threshold, rounding)[0]
    return None if pd.isna(p) else int(np.sign(n) or 1) * int(p)


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
def weight_from_probability(p: Any) -> np.ndarray:
    """Match weight (log2 odds) of a match probability: ``log2(p / (1 - p))``.

    Example:
        >>> weight_from_probability([0.5, 0.9]).round(3).tolist()
        [0.0, 3.17]
    """
    p = np.asarray(p, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log2(p) - np.log2(1.0 - p)


def probability_from_weight(w: Any) -> np.ndarray:
    """Match probability of a match weight: ``2**w / (1 + 2**w)``.

    Example:
        >>> probability_from_weight([0.0, 3.169925]).round(3).tolist()
        [0.5, 0.9]
    """
    return 1.0 / (1.0 + np.exp2(-np.asarray(w, dtype=float)))


def model_parameters(model: dict[str, Any]) -> pd.DataFrame:
    """Every comparison level of a Splink model: ``comparison``, ``gamma`` (the level's value in
    ``gamma_<comparison>``: -1 null, then the highest for the closest agreement down to 0),
    ``label``, ``m_probability``, ``u_probability``, ``bayes_factor`` (m/u) and
    ``match_weight`` (log2 of it). Null levels carry no evidence (Bayes factor 1).

    Example:
        >>> model = {"comparisons": [{"output_column_name": "sex", "comparison_levels": [
        ...     {"is_null_level": True, "label_for_charts": "null"},
        ...     {"label_for_charts": "exact", "m_probability": 0.98, "u_probability": 0.49},
        ...     {"label_for_charts": "else", "m_probability": 0.02, "u_probability": 0.51}]}]}
        >>> model_parameters(model)[["gamma", "label", "bayes_factor"]].round(3).values.tolist()
        [[-1, 'null', 1.0], [1, 'exact', 2.0], [0, 'else', 0.039]]
    """
    rows = []
    for comp in model.get("comparisons", []):
        name = comp.get("output_column_name") or comp.get("comparison_description", "?")
        levels = comp.get("comparison_levels", [])
        n_non_null = sum(not lv.get("is_null_level", False) for lv in levels)
        k = 0
        for lv in levels:
            null = bool(lv.get("is_null_level", False))
            gamma = -1 if null else n_non_null - 1 - k
            k += 0 if null else 1
            m = np.nan if null else float(lv.get("m_probability", np.nan))
            u = np.nan if null else float(lv.get("u_probability", np.nan))
            bf = 1.0 if null else m / u
            rows.append({"comparison": name, "gamma": gamma, "label": lv.get("label_for_charts", ""),
                         "m_probability": m, "u_probability": u, "bayes_factor": bf,
                         "match_weight": float(np.log2(bf)), "tf_adjusted": "tf_adjustment_column" in lv})
    if not rows:
        raise RegistryLabError("linkage model: no comparisons with levels (is this a Splink settings file?)")
    return pd.DataFrame(rows)


def prior_match_weight(model: dict[str, Any]) -> float:
    """The prior's match weight: log2 odds that two random records match (the model's
    ``probability_two_random_records_match``).

    Example:
        >>> prior_match_weight({"probability_two_random_records_match": 1 / 1025})
        -10.0
    """
    lam = model.get("probability_two_random_records_match")
    if lam is None:
        raise RegistryLabError("linkage model: no probability_two_random_records_match")
    return float(weight_from_probability(float(lam)))


def score_check(pairs: pd.DataFrame, model: dict[str, Any]) -> pd.DataFrame:
    """Recompute each pair's match weight from the model: the prior plus the match weight of
    each comparison's level (``gamma_<comparison>`` columns). Term-frequency adjustments (on
    exact agreement of a name or postcode) are not in the model file, so only pairs with no
    term-frequency-adjusted level (``tf_free``) must agree exactly.

    Returns:
        ``model_weight`` (prior + levels), ``residual`` (``match_weight - model_weight``) and
        ``tf_free`` per pair, in the order of ``pairs``.

    Example:
        >>> model = {"probability_two_random_records_match": 0.5, "comparisons": [
        ...     {"output_column_name": "sex", "comparison_levels": [
        ...         {"is_null_level": True}, {"m_probability": 0.9, "u_probability": 0.45},
        ...         {"m_probability": 0.1, "u_probability": 0.55}]}]}
        >>> pairs = pd.DataFrame({"gamma_sex": [1, -1], "match_weight": [1.0, 0.0]})
        >>> score_check(pairs, model).values.tolist()
        [[1.0, 0.0, True], [0.0, 0.0, True]]
    """
    params = model_parameters(model)
    total = np.full(len(pairs), prior_match_weight(model))
    tf_free = np.ones(len(pairs), dtype=bool)
    for comp, levels in params.groupby("comparison", sort=False):
        col = f"gamma_{comp}"
        if col not in pairs.columns:
            raise RegistryLabError(f"match weights: no column {col} for the model's comparison {comp!r}")
        lookup = levels.set_index("gamma")
        g = pairs[col].astype("Int64").fillna(-1).to_numpy(np.int64)
        unknown = sorted(int(x) for x in set(np.unique(g)) - set(lookup.index))
        if unknown:
            raise RegistryLabError(f"match weights: {col} holds level(s) {unknown} the model does not have")
        total += lookup.loc[g, "match_weight"].to_numpy(float)
        tf_free &= ~lookup.loc[g, "tf_adjusted"].to_numpy(bool)
    if "match_weight" not in pairs.columns:
        raise RegistryLabError("match weights: no match_weight column")
    return pd.DataFrame({"model_weight": total, "residual": pairs["match_weight"].to_numpy(float) - total,
                         "tf_free": tf_free}, index=pairs.index)


# ---------------------------------------------------------------------------------------------
# the candidate pairs (match_weights.parquet)
# ---------------------------------------------------------------------------------------------
def _labelled(pairs: pd.DataFrame, need: Sequence[str] = ("match_probability", "is_match")) -> pd.DataFrame:
    missing = [c for c in need if c not in pairs.columns]
    if missing:
        raise RegistryLabError(f"match weights: missing column(s) {', '.join(missing)}")
    if "is_match" in need:
        if pairs["is_match"].isna().all() and len(pairs):
            raise RegistryLabError("match weights carry no truth labels (is_match): build the registry "
                                   "with `registry-lab link --evaluate`")
        pairs = pairs[pairs["is_match"].notna()]
    return pairs


def _match_weight(pairs: pd.DataFrame) -> np.ndarray:
    if "match_weight" in pairs.columns:
        return pairs["match_weight"].to_numpy(float)
    return weight_from_probability(pairs["match_probability"].to_numpy(float))


def pair_weights(pairs: pd.DataFrame, count: str = "record_pairs") -> np.ndarray:
    """How many pairs each row stands for: ``"record_pairs"`` (``n_records_l * n_records_r``,
    every record of one identity against every record of the other) or ``"identity_pairs"`` (1).

    Example:
        >>> pair_weights(pd.DataFrame({"n_records_l": [2, 1], "n_records_r": [3, 1]})).tolist()
        [6, 1]
    """
    if count == "identity_pairs":
        return np.ones(len(pairs), dtype=np.int64)
    if count != "record_pairs":
        raise RegistryLabError(f"count={count!r}: use 'record_pairs' or 'identity_pairs'")
    if not {"n_records_l", "n_records_r"} <= set(pairs.columns):
        raise RegistryLabError("match weights: n_records_l and n_records_r are needed to count record pairs")
    return pairs["n_records_l"].to_numpy(np.int64) * pairs["n_records_r"].to_numpy(np.int64)


def _rates(tp: np.ndarray, linked: np.ndarray, true: float) -> dict[str, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(linked > 0, tp / np.maximum(linked, 1), 1.0)
        recall = np.full(tp.shape, 1.0) if true == 0 else tp / true
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1,
            "false_match_rate": 1.0 - precision, "missed_match_rate": 1.0 - recall}


def threshold_tradeoff(pairs: pd.DataFrame, thresholds: Sequence[float], *,
                       count: str = "record_pairs") -> pd.DataFrame:
    """Pairwise accuracy of the scored candidate pairs when every pair with
    ``match_probability >= threshold`` is linked (no clustering), one row per threshold.

    Args:
        pairs: ``match_weights`` with ``match_probability``, ``is_match`` (truth; rows without a
            label are left out) and, for record pairs, ``n_records_l``, ``n_records_r``.
        thresholds: match probabilities in (0, 1].
        count: ``"record_pairs"`` (default) or ``"identity_pairs"``, see :func:`pair_weights`.

    Returns:
        ``threshold``, ``match_weight_threshold``, ``linked_pairs``, ``true_positive_pairs``,
        ``false_pairs`` (linked, not a match), ``missed_pairs`` (a match, not linked),
        ``true_pairs``, ``precision``, ``recall``, ``f1``, ``false_match_rate``,
        ``missed_match_rate``. Recall counts only true matches that were scored: pairs joined
        before scoring (same identifiers, deterministic pass) or never blocked together are
        outside this table — see :func:`clustered_tradeoff` for every record.

    Example:
        >>> pairs = pd.DataFrame({"match_probability": [0.99, 0.7, 0.2], "is_match": [True, True, False],
        ...                       "n_records_l": [1, 1, 1], "n_records_r": [1, 1, 1]})
        >>> threshold_tradeoff(pairs, [0.5, 0.95])[["threshold", "linked_pairs", "missed_pairs", "recall"]].values.tolist()
        [[0.5, 2.0, 0.0, 1.0], [0.95, 1.0, 1.0, 0.5]]
    """
    t = np.asarray(thresholds, dtype=float)
    if t.size == 0 or np.any(~np.isfinite(t)) or np.any((t <= 0) | (t > 1)):
        raise RegistryLabError(f"thresholds {list(thresholds)!r}: match probabilities in (0, 1] needed")
    pairs = _labelled(pairs)
    w = pair_weights(pairs, count)
    p = pairs["match_probability"].to_numpy(float)
    match = pairs["is_match"].to_numpy(bool)
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    # cumulative totals from the top: pairs with probability >= t are those at and after `first`
    cum_w = np.concatenate([[0], np.cumsum(w[order])])
    cum_tp = np.concatenate([[0], np.cumsum((w * match)[order])])
    first = np.searchsorted(p_sorted, t, side="left")
    linked = cum_w[-1] - cum_w[first]
    tp = cum_tp[-1] - cum_tp[first]
    true = int(cum_tp[-1])
    out = pd.DataFrame({"threshold": t, "match_weight_threshold": weight_from_probability(t),
                        "linked_pairs": linked.astype(np.int64), "true_positive_pairs": tp.astype(np.int64),
                        "false_pairs": (linked - tp).astype(np.int64),
                        "missed_pairs": (true - tp).astype(np.int64), "true_pairs": true})
    for k, v in _rates(tp.astype(float), linked.astype(float), true).items():
        out[k] = v
    return out


def clustered_tradeoff(report: dict[str, Any]) -> pd.DataFrame:
    """The link report's threshold curve: accuracy over every evaluated record after
    re-clustering persons at each threshold (``threshold``, ``precision``, ``recall``, ``f1``,
    ``false_match_rate``, ``missed_match_rate``, ``persons_split``, ``persons_merged``).

    Example:
        >>> r = {"evaluation": {"threshold_curve": [{"threshold": 0.5, "precision": 0.99,
        ...      "recall": 1.0, "f1": 0.995, "false_match_rate": 0.01, "persons_split": 0,
        ...      "persons_merged": 2}]}}
        >>> clustered_tradeoff(r)["missed_match_rate"].tolist()
        [0.0]
    """
    curve = (report.get("evaluation") or {}).get("threshold_curve")
    if not curve:
        raise RegistryLabError("link report: no evaluation.threshold_curve (build the registry with --evaluate)")
    df = pd.DataFrame(curve).sort_values("threshold", ignore_index=True)
    if "missed_match_rate" not in df.columns:
        df["missed_match_rate"] = 1.0 - df["recall"]
    return df


def value_at_thresholds(curve: pd.DataFrame, thresholds: Sequence[float], column: str = "f1",
                        digits: int = 6) -> dict[str, float]:
    """``{str(threshold): value}`` of ``column`` for the thresholds of ``thresholds`` that the
    curve holds (matched to 1e-9), rounded: the "F1 at alternative thresholds" of a report.

    Example:
        >>> c = pd.DataFrame({"threshold": [0.5, 0.9], "f1": [0.99, 0.995]})
        >>> value_at_thresholds(c, [0.9, 0.95])
        {'0.9': 0.995}
    """
    out = {}
    grid = curve["threshold"].to_numpy(float)
    for t in thresholds:
        hit = np.flatnonzero(np.abs(grid - float(t)) < 1e-9)
        if hit.size:
            out[f"{float(t):g}"] = round(float(curve[column].iloc[hit[0]]), digits)
    return out


def _kinds_long(errors_l: pd.Series, errors_r: pd.Series) -> pd.DataFrame:
    """One row per (pair position, error kind): the union of both sides' ``;``-separated error
    kinds, ``none`` for a pair with no error on either side."""
    both = (errors_l.fillna("").astype(str).to_numpy() + ";" + errors_r.fillna("").astype(str).to_numpy())
    s = pd.Series(both).str.split(";").explode()
    s = s[s != ""]
    long = pd.DataFrame({"pos": s.index.to_numpy(), "kind": s.to_numpy()}).drop_duplicates()
    none = np.setdiff1d(np.arange(len(both)), long["pos"].to_numpy())
    return pd.concat([long, pd.DataFrame({"pos": none, "kind": "none"})], ignore_index=True)


def errors_by_kind_pairs(pairs: pd.DataFrame, threshold: float, *,
                         count: str = "record_pairs") -> pd.DataFrame:
    """Missed and false matches among the scored candidate pairs at ``threshold``, by the kind
    of identifier error injected into either side's records (a pair with several kinds counts
    under each; ``none``: no error on either side).

    Returns:
        One row per ``error_kind``: ``candidate_pairs`` (all scored pairs with it), ``true_pairs``, ``missed_pairs``, ``missed_match_rate``
        (missed / true pairs), ``linked_pairs``, ``false_pairs``, ``false_match_rate`` (false /
        linked pairs), ``median_weight_true_pairs`` (median match weight of the true matches:
        how much evidence the error leaves). Sorted by missed, then false pairs.

    Example:
        >>> pairs = pd.DataFrame({"match_probability": [0.99, 0.3, 0.95], "is_match": [True, True, False],
        ...     "errors_l": ["", "dob_swap", ""], "errors_r": ["nhs_missing", "", ""],
        ...     "n_records_l": [1, 1, 1], "n_records_r": [1, 1, 1]})
        >>> e = errors_by_kind_pairs(pairs, 0.9).set_index("error_kind")
        >>> e[["true_pairs", "missed_pairs", "linked_pairs", "false_pairs"]].values.tolist()
        [[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]]
        >>> e.index.tolist()
        ['dob_swap', 'none', 'nhs_missing']
    """
    if not 0.0 < float(threshold) <= 1.0:
        raise RegistryLabError(f"threshold {threshold!r}: a match probability in (0, 1] needed")
    pairs = _labelled(pairs, ("match_probability", "is_match", "errors_l", "errors_r"))
    w = pair_weights(pairs, count)
    linked = pairs["match_probability"].to_numpy(float) >= float(threshold)
    match = pairs["is_match"].to_numpy(bool)
    per_pair = pd.DataFrame({"w": w, "true": w * match, "missed": w * (match & ~linked), "linked": w * linked,
                             "false": w * (linked & ~match),
                             "weight": np.where(match, _match_weight(pairs), np.nan)})
    long = _kinds_long(pairs["errors_l"], pairs["errors_r"])
    df = per_pair.iloc[long["pos"].to_numpy()].assign(kind=long["kind"].to_numpy())
    g = df.groupby("kind").agg(candidate_pairs=("w", "sum"), true_pairs=("true", "sum"), missed_pairs=("missed", "sum"),
                               linked_pairs=("linked", "sum"), false_pairs=("false", "sum"),
                               median_weight_true_pairs=("weight", "median"))
    g = g.astype({c: np.int64 for c in ("candidate_pairs", "true_pairs", "missed_pairs", "linked_pairs", "false_pairs")})
    with np.errstate(invalid="ignore", divide="ignore"):
        g["missed_match_rate"] = np.where(g["true_pairs"] > 0, g["missed_pairs"] / g["true_pairs"].clip(lower=1), np.nan)
        g["false_match_rate"] = np.where(g["linked_pairs"] > 0, g["false_pairs"] / g["linked_pairs"].clip(lower=1), np.nan)
    g = g.reset_index().rename(columns={"kind": "error_kind"})
    g = g.sort_values(["missed_pairs", "false_pairs", "error_kind"], ascending=[False, False, True], ignore_index=True)
    return g[["error_kind", "candidate_pairs", "true_pairs", "missed_pairs", "missed_match_rate", "linked_pairs", "false_pairs",
              "false_match_rate", "median_weight_true_pairs"]]


def true_match_weights_by_kind(pairs: pd.DataFrame) -> pd.DataFrame:
    """The match weight of every scored true-match identity pair, once under each error kind
    of its records (``error_kind``, ``match_weight``): how much evidence each kind of error
    leaves for the model (for box plots).

    Example:
        >>> pairs = pd.DataFrame({"match_probability": [0.99, 0.3], "match_weight": [6.6, -1.2],
        ...     "is_match": [True, True], "errors_l": ["nhs_missing", "dob_swap;house_move"], "errors_r": ["", ""]})
        >>> true_match_weights_by_kind(pairs).values.tolist()
        [['nhs_missing', 6.6], ['dob_swap', -1.2], ['house_move', -1.2]]
    """
    pairs = _labelled(pairs, ("match_probability", "is_match", "errors_l", "errors_r"))
    pairs = pairs[pairs["is_match"].to_numpy(bool)]
    long = _kinds_long(pairs["errors_l"], pairs["errors_r"]).sort_values(["pos", "kind"], kind="stable")
    return pd.DataFrame({"error_kind": long["kind"].to_numpy(),
                         "match_weight": _match_weight(pairs)[long["pos"].to_numpy()]})


def errors_by_kind_records(report: dict[str, Any]) -> pd.DataFrame:
    """The link report's record-level errors by injected error kind, at the threshold in use:
    ``error_kind``, ``records``, ``records_missed`` (outside their person's main cluster),
    ``records_false_merged`` (in another person's cluster), sorted by errors.

    Example:
        >>> r = {"evaluation": {"errors_by_kind": {"dob_swap": {"records": 20, "missed": 2,
        ...      "false_merged": 0}, "none": {"records": 900, "missed": 0, "false_merged": 1}}}}
        >>> errors_by_kind_records(r)["error_kind"].tolist()
        ['dob_swap', 'none']
    """
    ebk = (report.get("evaluation") or {}).get("errors_by_kind")
    if ebk is None:
        raise RegistryLabError("link report: no evaluation.errors_by_kind (build the registry with --evaluate)")
    df = pd.DataFrame.from_dict(ebk, orient="index")
    df = df.rename(columns={"missed": "records_missed", "false_merged": "records_false_merged"})
    df = df[["records", "records_missed", "records_false_merged"]].astype(np.int64)
    df = df.rename_axis("error_kind").reset_index()
    return df.sort_values(["records_missed", "records_false_merged", "error_kind"], ascending=[False, False, True],
                          ignore_index=True)


def review_band_summary(pairs: pd.DataFrame, band: Sequence[float], threshold: float) -> dict[str, Any]:
    """The clerical review workload of a band ``[low, high)`` of match probability: identity
    pairs in it, how many of those the threshold links, and (with truth labels) how many are
    true matches and how many the threshold gets wrong — the errors review could catch.

    Example:
        >>> pairs = pd.DataFrame({"match_probability": [0.99, 0.6, 0.3, 0.01],
        ...                       "is_match": [True, False, True, False]})
        >>> review_band_summary(pairs, (0.05, 0.95), 0.5)
        {'band': [0.05, 0.95], 'n_pairs': 2, 'n_pairs_linked': 1, 'n_pairs_true_match': 1, 'n_pairs_wrong': 2}
    """
    low, high = (float(x) for x in band)
    if not 0.0 <= low <= high <= 1.0:
        raise RegistryLabError(f"review band {list(band)!r}: two probabilities low <= high in [0, 1]")
    p = pairs["match_probability"].to_numpy(float)
    inside = (p >= low) & (p < high)
    linked = inside & (p >= float(threshold))
    out: dict[str, Any] = {"band": [low, high], "n_pairs": int(inside.sum()), "n_pairs_linked": int(linked.sum())}
    if "is_match" in pairs.columns and pairs["is_match"].notna().any():
        match = pairs["is_match"].fillna(False).to_numpy(bool)
        out["n_pairs_true_match"] = int((inside & match).sum())
        out["n_pairs_wrong"] = int((inside & (linked != match)).sum())
    return out


def strip_truth(pairs: pd.DataFrame) -> pd.DataFrame:
    """The match-weights table without its truth columns (``is_match``, ``errors_l/r``): what
    the registry knows without the truth.

    Example:
        >>> pairs = pd.DataFrame({"match_probability": [0.99], "is_match": [True], "errors_l": [""], "errors_r": ["typo"]})
        >>> list(strip_truth(pairs).columns)
        ['match_probability']
    """
    return pairs.drop(columns=[c for c in _TRUTH_COLUMNS if c in pairs.columns])


# ---------------------------------------------------------------------------------------------
# methods compared, clerical evidence and decisions (issue 12)
# ---------------------------------------------------------------------------------------------
def methods_table(report: dict[str, Any]) -> pd.DataFrame:
    """Exact NHS-number matching, plain Splink (when the link step compared it) and this model on
    the same records: precision, recall, F1, false match rate, persons split and merged.

    Example:
        >>> rep = {"evaluation": {"methods": [{"method": "exact NHS number", "precision": 1.0, "recall": 0.9,
        ...     "f1": 0.947, "false_match_rate": 0.0, "persons_split": 10, "persons_merged": 0}]}}
        >>> methods_table(rep)["method"].tolist()
        ['exact NHS number']
    """
    rows = report.get("evaluation", {}).get("methods")
    if not rows:
        raise RegistryLabError("link report: no method comparison (re-run `registry-lab link --evaluate`)")
    return pd.DataFrame(rows)[["method", "precision", "recall", "f1", "false_match_rate",
                               "persons_split", "persons_merged"]]


def review_evidence(review: pd.DataFrame) -> pd.DataFrame:
    """How the clerical review pairs compare, identifier by identifier: pairs per level.

    Example:
        >>> rv = pd.DataFrame({"level_sex": ["exact", "exact", "else"], "weight_sex": [1.0, 1.0, -5.0]})
        >>> review_evidence(rv).values.tolist()
        [['sex', 'else', 1, -5.0], ['sex', 'exact', 2, 1.0]]
    """
    rows = []
    for col in [c for c in review.columns if c.startswith("level_")]:
        role = col.removeprefix("level_")
        g = review.groupby(review[col].fillna("missing"))
        for level, grp in g:
            rows.append({"identifier": role, "level": level, "n_pairs": int(len(grp)),
                         "weight": float(grp[f"weight_{role}"].iloc[0]) if f"weight_{role}" in grp else np.nan})
    return pd.DataFrame(rows, columns=["identifier", "level", "n_pairs", "weight"])


def decisions_effect(report: dict[str, Any]) -> tuple[dict[str, int], pd.DataFrame | None]:
    """Clerical decisions honoured by the last link: counts, and pairwise precision, recall and
    F1 without and with them (when the link was evaluated). ``({}, None)`` when none were read.

    Example:
        >>> rep = {"clerical_decisions": {"file": "x.csv", "decisions": 3, "applied_match": 2,
        ...        "applied_non_match": 1, "without_decisions": {"precision": 0.9, "recall": 0.9, "f1": 0.9},
        ...        "with_decisions": {"precision": 1.0, "recall": 0.95, "f1": 0.974}}}
        >>> counts, eff = decisions_effect(rep)
        >>> counts["decisions"], eff["change"].round(3).tolist()
        (3, [0.1, 0.05, 0.074])
    """
    d = report.get("clerical_decisions")
    if not d:
        return {}, None
    counts = {k: v for k, v in d.items() if isinstance(v, int | np.integer)}
    if "without_decisions" not in d:
        return counts, None
    rows = [{"measure": k, "without_decisions": float(d["without_decisions"][k]),
             "with_decisions": float(d["with_decisions"][k])} for k in ("precision", "recall", "f1")]
    eff = pd.DataFrame(rows)
    eff["change"] = eff["with_decisions"] - eff["without_decisions"]
    return counts, eff
