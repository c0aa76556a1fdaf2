"""Utility of a twin: propensity-score mean squared error, distributions side by side, CI overlap.

- :func:`patient_tumour_table` — one record per tumour with its patient's fields, its survival
  and its treatments: the table both data sets are compared on;
- :func:`pmse` — the pMSE, its ratio to the null expectation and the standardised pMSE (Snoke,
  Raab, Nowok, Dibben and Slavkovic 2018, *J. R. Stat. Soc. A* 181:663) from a logistic
  propensity model with main effects and all two-way interactions (synthpop ``utility.gen``,
  ``method = "logit"``, ``maxorder = 1``), variables grouped into at most ``bins`` classes;
- :func:`pairwise_pmse` — the same measures for each pair of variables (saturated model of
  their cross-classification: the propensity of a cell is its share of twin records);
- :func:`compare_distributions` — marginal and two-way shares, original and twin side by side;
- :func:`ci_overlap` — the confidence-interval overlap of Karr, Kohnen, Oganian, Reiter and
  Sanil (2006, *Am. Stat.* 60:224).

Example:
    >>> round(ci_overlap(0.70, 0.90, 0.75, 0.95), 3)
    0.75
"""

from __future__ import annotations

import warnings
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

__all__ = ["ci_overlap", "compare_distributions", "discretise", "follow_up_end", "pairwise_pmse",
           "patient_tumour_table", "permutation_standardised", "permuted_pmse", "pmse"]

UTILITY_VARIABLES = ("sex", "age_at_diagnosis", "site_icd10", "stage", "diagnosis_year", "deprivation_quintile",
                     "ethnicity", "route_to_diagnosis", "grade", "performance_status", "comorbidity_score",
                     "survival_years", "dead", "n_tumours", "surgery", "sact", "radiotherapy")


def follow_up_end(tables: dict[str, pd.DataFrame]) -> pd.Timestamp:
    """The end of follow-up of a release: its last diagnosis or death date.

    Example:
        >>> from registry_lib.twin.example import example_release
        >>> follow_up_end(example_release(50, seed=1)) <= pd.Timestamp("2024-06-30")
        True
    """
    diag = pd.to_datetime(tables["tumour"]["diagnosis_date"])
    death = pd.to_datetime(tables["patient"]["death_date"]) if "death_date" in tables["patient"] else diag.iloc[:0]
    return max(diag.max(), death.max()) if death.notna().any() else diag.max()


def patient_tumour_table(tables: dict[str, pd.DataFrame], patient_key: str,
                         end: pd.Timestamp | None = None) -> pd.DataFrame:
    """One record per tumour with patient fields, survival and treatments received.

    Columns added: ``diagnosis_year``, ``n_tumours``, ``dead`` (death recorded), ``survival_years``
    (diagnosis to death, or to the end of follow-up ``end`` if alive), and one 0/1 column per
    treatment modality (any treatment of that modality for the tumour).

    ``end`` defaults to the release's own last date (:func:`follow_up_end`). A twin is followed
    up to its original's end: compared on the twin's own last date (its last drawn death, a few
    days earlier), every patient alive in the twin would have a shorter survival than in the
    original.

    Example:
        >>> from registry_lib.twin.example import example_release
        >>> t = patient_tumour_table(example_release(50, seed=1), "pseudo_id")
        >>> {"dead", "survival_years", "surgery"} <= set(t.columns)
        True
    """
    pat, tum = tables["patient"], tables["tumour"]
    drop = [c for c in pat.columns if c in tum.columns and c != patient_key]
    t = tum.merge(pat.drop(columns=drop), on=patient_key, how="left")
    diag = pd.to_datetime(t["diagnosis_date"])
    t["diagnosis_year"] = diag.dt.year
    t["n_tumours"] = t.groupby(patient_key)[patient_key].transform("size")
    if "death_date" in t.columns:
        death = pd.to_datetime(t["death_date"])
        end = follow_up_end(tables) if end is None else pd.Timestamp(end)
        t["dead"] = death.notna().astype(int)
        t["survival_years"] = ((death.fillna(end) - diag).dt.days / 365.25).clip(lower=0)
    trt = tables.get("treatment")
    if trt is not None and len(trt) and "modality" in trt.columns:
        for m in sorted(trt["modality"].dropna().astype(str).unique()):
            ids = set(trt.loc[trt["modality"].astype(str) == m, "tumour_id"])
            t[m] = t["tumour_id"].isin(ids).astype(int)
    return t


def discretise(original: pd.Series, twin: pd.Series, bins: int = 5) -> tuple[pd.Series, pd.Series]:
    """Both columns as at most ``bins`` classes defined on the original (missing is a class).

    Numeric columns with more than ``bins`` values are cut at the original's quantiles;
    categorical ones keep their ``bins - 1`` most common original levels and pool the rest.

    Example:
        >>> a, b = discretise(pd.Series([1, 2, 3, 4, 5, 6]), pd.Series([1, 6]), bins=2)
        >>> list(b)
        ['0', '1']
    """
    numeric = pd.api.types.is_numeric_dtype(original) and original.nunique() > bins
    if numeric:
        o = pd.to_numeric(original, errors="coerce").astype(float)
        s = pd.to_numeric(twin, errors="coerce").astype(float)
        edges = np.unique(np.nanquantile(o, np.linspace(0, 1, bins + 1)[1:-1])) if o.notna().any() else []
        def cut(v: pd.Series) -> pd.Series:
            out = pd.Series(np.searchsorted(edges, v.to_numpy(), side="right").astype(str), index=v.index)
            return out.where(v.notna(), "missing")
        return cut(o), cut(s)
    o = original.astype(object).where(original.notna(), "missing").astype(str)
    s = twin.astype(object).where(twin.notna(), "missing").astype(str)
    top = o.value_counts().index[: bins - 1] if o.nunique() > bins else o.unique()
    return o.where(o.isin(top), "other"), s.where(s.isin(top), "other")


def _variables(original: pd.DataFrame, twin: pd.DataFrame, variables: list[str] | None) -> list[str]:
    """The variables compared: those given, else ``UTILITY_VARIABLES`` present, else all shared."""
    shared = [c for c in original.columns if c in twin.columns]
    if variables:
        return [v for v in variables if v in shared]
    return [v for v in UTILITY_VARIABLES if v in shared] or shared


def _null(k: int, n: int, c: float) -> tuple[float, float]:
    """Expected pMSE and its SD under the asymptotic null (Snoke et al. 2018, logistic, k parameters)."""
    k1 = max(k - 1, 1)
    return k1 * (1 - c) ** 2 * c / n, np.sqrt(2 * k1) * (1 - c) ** 2 * c / n


def _design(original: pd.DataFrame, twin: pd.DataFrame, variables: list[str], bins: int,
            interactions: bool) -> tuple[sp.csr_matrix, list[str]]:
    """One-hot main effects (first class dropped) and, optionally, every two-way interaction."""
    blocks, names = [], []
    for v in variables:
        o, s = discretise(original[v], twin[v], bins)
        codes, levels = pd.factorize(pd.concat([o, s], ignore_index=True), sort=True)
        if len(levels) < 2:
            continue
        onehot = sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)),
                               shape=(len(codes), len(levels)))[:, 1:]
        blocks.append(onehot)
        names.append(v)
    columns = list(blocks)
    if interactions:
        for i, j in combinations(range(len(blocks)), 2):
            a, b = blocks[i].tocsc(), blocks[j].tocsc()
            for col in range(a.shape[1]):
                columns.append(b.multiply(a[:, col]).tocsr())
    n = len(original) + len(twin)
    x = sp.hstack(columns).tocsc() if columns else sp.csc_matrix((n, 0))
    used = np.flatnonzero(np.asarray(x.getnnz(axis=0)) > 0)
    return x[:, used].tocsr(), names


def _propensity_pmse(x: sp.csr_matrix, y: np.ndarray) -> tuple[float, bool]:
    """pMSE of the logistic propensity model of ``y`` (1 = twin) on ``x``, and whether its fit converged."""
    c = float(np.mean(y))
    if not x.shape[1]:
        return 0.0, True
    # nearly unpenalised: a baseline far from the original can need many iterations (300 left the
    # Gaussian copula's fit on `small` unconverged, its standardised pMSE 745 instead of 748)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = LogisticRegression(C=1e4, max_iter=2000, solver="lbfgs").fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    p = model.predict_proba(x)[:, 1]
    return float(np.mean((p - c) ** 2)), converged


def permuted_pmse(x: sp.csr_matrix, y: np.ndarray, permutations: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """pMSE of the propensity model refitted after each of ``permutations`` shuffles of the labels ``y``.

    The permutation null of Snoke, Raab, Nowok, Dibben and Slavkovic (2018, *J. R. Stat. Soc. A*
    181:663) as R synthpop's ``utility.gen(..., resamp.method = "perm", nperms)``
    computes it: the original/twin labels of the pooled records are shuffled (``sample(pdata$t)``)
    and the same propensity model is refitted each time. Permutation ``b`` uses
    ``numpy.random.default_rng(seed).permutation(y)``, the ``b``-th call (deterministic).

    Returns the ``permutations`` pMSEs and whether every fit converged.

    Example (one binary variable: the model is saturated, each record's propensity is its cell's
    share of twin records, so each value can be checked by hand):
        >>> x = sp.csr_matrix(np.array([[0], [0], [1], [1], [0], [1], [1], [1]], dtype=float))
        >>> y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
        >>> values, ok = permuted_pmse(x, y, 3, seed=1)
        >>> perm = np.random.default_rng(1).permutation(y)      # the first shuffle
        >>> share = np.where(x.toarray()[:, 0] == 1, perm[x.toarray()[:, 0] == 1].mean(), perm[x.toarray()[:, 0] == 0].mean())
        >>> round(float(values[0]), 4), round(float(np.mean((share - 0.5) ** 2)), 4), ok    # 1/60 by hand
        (0.0167, 0.0167, True)
    """
    rng = np.random.default_rng(seed)
    values, converged = np.empty(int(permutations)), True
    for b in range(int(permutations)):
        values[b], ok = _propensity_pmse(x, rng.permutation(y))
        converged &= ok
    return values, bool(converged)


def permutation_standardised(value: float, simulated: np.ndarray) -> dict[str, float]:
    """Ratio and standardised pMSE of ``value`` against permuted pMSEs (synthpop ``utility.gen``).

    ``expected`` is their mean and ``sd`` their standard deviation (``n - 1`` divisor, as R's
    ``var``); ``ratio = value / expected``, ``standardised = (value - expected) / sd``.
    synthpop divides the permuted pMSEs by 2 (``R/utility.syn.r``: "reduced by factor of 2 for
    logit model" in 1.4-3; later versions halve CART's too, and print ``S_pMSE`` as the *ratio*
    ``pMSE / mean``): that calibrates them to a twin drawn from a model fitted to the original
    itself, which is positively correlated with it (the asymptotic null's case); a permutation,
    like a twin drawn afresh from the population the original came from, is two independent
    samples and doubles the pMSE. Both are returned: ``*_halved`` with synthpop's factor.

    Example (hand-made: permuted pMSEs 1, 2, 3 → mean 2, sd 1):
        >>> r = permutation_standardised(5.0, np.array([1.0, 2.0, 3.0]))
        >>> r["expected"], r["sd"], r["ratio"], r["standardised"], r["ratio_halved"], r["standardised_halved"]
        (2.0, 1.0, 2.5, 3.0, 5.0, 8.0)
    """
    sim = np.asarray(simulated, dtype=float)
    mean = float(sim.mean())
    sd = float(sim.std(ddof=1)) if len(sim) > 1 else float("nan")
    def ratio(e: float) -> float:
        return value / e if e > 0 else float("nan")
    def std(e: float, s: float) -> float:
        return (value - e) / s if s > 0 else float("nan")
    return {"expected": mean, "sd": sd, "ratio": ratio(mean), "standardised": std(mean, sd),
            "ratio_halved": ratio(mean / 2), "standardised_halved": std(mean / 2, sd / 2)}


def pmse(original: pd.DataFrame, twin: pd.DataFrame, variables: list[str] | None = None, *,
         bins: int = 5, interactions: bool = True, max_records: int | None = 25_000,
         seed: int = 0, permutations: int = 0) -> dict[str, Any]:
    """pMSE, pMSE ratio and standardised pMSE of a twin against the original.

    Two nulls (Snoke, Raab, Nowok, Dibben and Slavkovic 2018, *J. R. Stat. Soc. A* 181:663):

    - *asymptotic*: the pMSE of a logistic model with ``k`` parameters is
      ``(k - 1)(1 - c)^2 c / N`` on average, SD ``sqrt(2(k - 1))(1 - c)^2 c / N``. With all two-way
      interactions of 17 variables (~1,250 parameters, many of sparse cells) that approximation
      fails: two disjoint halves of the same release score 18-22 on it, not 0 ± 1;
    - *permutation* (``permutations > 0``; :func:`permuted_pmse`): the mean and SD of the pMSE
      after refitting the same model to shuffled original/twin labels, as synthpop's
      ``utility.gen(resamp.method = "perm", nperms = permutations)``, which Snoke et al. and the
      synthpop authors recommend when the asymptotic null does not hold (CART, saturated or
      sparse logistic models). Its null is that twin and original records are exchangeable (a
      twin as good as a fresh sample from the original's population scores about 0).

    ``ratio`` and ``standardised`` are the permutation figures when ``permutations > 0`` (``null``
    says which); ``*_asymptotic`` and ``*_permutation`` keys hold both, and
    ``*_permutation_halved`` synthpop's logistic convention (see :func:`permutation_standardised`).

    Args:
        original, twin: the same table (e.g. :func:`patient_tumour_table`) from both data sets.
        variables: the columns compared (default: those of ``UTILITY_VARIABLES`` present).
        bins: classes per variable (see :func:`discretise`).
        interactions: add all two-way interactions to the propensity model.
        max_records: at most this many records of each data set, drawn at random with ``seed``
            (the logistic model with every interaction is costly on large releases; the
            standardised pMSE allows for the number of records); ``None`` = all.
        seed: seed of the record draw and of the permutations.
        permutations: number of label permutations for the permutation null (0 = asymptotic only);
            each refits the model (about 3-5 s at 25,000 records a side on default).

    Returns ``{"pmse", "expected", "ratio", "standardised", "null", "expected_asymptotic",
    "ratio_asymptotic", "standardised_asymptotic", "parameters", "n_original", "n_twin",
    "variables", "converged"}`` plus, with permutations, ``"permutations"``,
    ``"expected_permutation"``, ``"sd_permutation"``, ``"ratio_permutation"``,
    ``"standardised_permutation"`` and the ``*_halved`` pair (``converged``: whether every
    propensity fit converged).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> a = pd.DataFrame({"x": rng.integers(0, 3, 2000), "y": rng.integers(0, 2, 2000)})
        >>> b = pd.DataFrame({"x": rng.integers(0, 3, 2000), "y": rng.integers(0, 2, 2000)})
        >>> r = pmse(a, b, permutations=20)
        >>> r["null"], bool(abs(r["standardised_asymptotic"]) < 4), bool(abs(r["standardised"]) < 4)
        ('permutation', True, True)
    """
    variables = _variables(original, twin, variables)
    rng = np.random.default_rng(seed)
    if max_records is not None and len(original) > max_records:
        original = original.iloc[np.sort(rng.choice(len(original), max_records, replace=False))]
    if max_records is not None and len(twin) > max_records:
        twin = twin.iloc[np.sort(rng.choice(len(twin), max_records, replace=False))]
    n_o, n_s = len(original), len(twin)
    x, names = _design(original, twin, variables, bins, interactions)
    y = np.r_[np.zeros(n_o), np.ones(n_s)]
    c = n_s / (n_o + n_s)
    value, converged = _propensity_pmse(x, y)
    k = x.shape[1] + 1
    expected, sd = _null(k, n_o + n_s, c)
    out: dict[str, Any] = {"pmse": value, "expected": expected, "ratio": value / expected,
                           "standardised": (value - expected) / sd, "null": "asymptotic",
                           "expected_asymptotic": expected, "ratio_asymptotic": value / expected,
                           "standardised_asymptotic": (value - expected) / sd, "parameters": int(k),
                           "n_original": int(n_o), "n_twin": int(n_s), "variables": names}
    if permutations:
        simulated, ok = permuted_pmse(x, y, permutations, seed=seed + 1)
        converged &= ok
        perm = permutation_standardised(value, simulated)
        out.update({"null": "permutation", "permutations": int(permutations), "expected": perm["expected"],
                    "ratio": perm["ratio"], "standardised": perm["standardised"],
                    "expected_permutation": perm["expected"], "sd_permutation": perm["sd"],
                    "ratio_permutation": perm["ratio"], "standardised_permutation": perm["standardised"],
                    "ratio_permutation_halved": perm["ratio_halved"],
                    "standardised_permutation_halved": perm["standardised_halved"]})
    out["converged"] = bool(converged)
    return out


def pairwise_pmse(original: pd.DataFrame, twin: pd.DataFrame, variables: list[str] | None = None, *,
                  bins: int = 5) -> pd.DataFrame:
    """pMSE ratio and standardised pMSE for every pair of variables (one row per pair).

    Example:
        >>> a = pd.DataFrame({"x": [0, 1] * 50, "y": [0, 0, 1, 1] * 25})
        >>> pairwise_pmse(a, a)[["variable_1", "variable_2", "ratio"]].round(3).to_dict("records")
        [{'variable_1': 'x', 'variable_2': 'y', 'ratio': 0.0}]
    """
    variables = _variables(original, twin, variables)
    coded = {}
    for v in variables:
        o, s = discretise(original[v], twin[v], bins)
        coded[v] = pd.concat([o, s], ignore_index=True)
    is_twin = np.r_[np.zeros(len(original)), np.ones(len(twin))]
    c, n = len(twin) / (len(original) + len(twin)), len(original) + len(twin)
    rows = []
    for a, b in combinations(variables, 2):
        cell = coded[a] + "\x1f" + coded[b]
        p = pd.Series(is_twin).groupby(cell.to_numpy()).transform("mean").to_numpy()
        value = float(np.mean((p - c) ** 2))
        k = int(cell.nunique())
        expected, sd = _null(k, n, c)
        rows.append({"variable_1": a, "variable_2": b, "pmse": value, "ratio": value / expected,
                     "standardised": (value - expected) / sd, "cells": k})
    return pd.DataFrame(rows)


def compare_distributions(original: pd.DataFrame, twin: pd.DataFrame, variables: list[str], *,
                          bins: int = 5) -> pd.DataFrame:
    """Shares of each class (one variable) or cell (``"a × b"``) in the original and the twin.

    Example:
        >>> t = compare_distributions(pd.DataFrame({"s": [1, 1, 2]}), pd.DataFrame({"s": [1, 2]}), ["s"])
        >>> t[["variable", "level", "original", "twin"]].round(2).values.tolist()
        [['s', '1', 0.67, 0.5], ['s', '2', 0.33, 0.5]]
    """
    rows = []
    for v in variables:
        parts = v.split(" × ")
        pairs = [discretise(original[p], twin[p], bins) for p in parts]
        o = pairs[0][0] if len(parts) == 1 else pairs[0][0] + " / " + pairs[1][0]
        s = pairs[0][1] if len(parts) == 1 else pairs[0][1] + " / " + pairs[1][1]
        table = pd.concat([o.value_counts(normalize=True).rename("original"),
                           s.value_counts(normalize=True).rename("twin")], axis=1).fillna(0.0)
        table = table.sort_index()
        for level, r in table.iterrows():
            rows.append({"variable": v, "level": str(level), "original": float(r["original"]),
                         "twin": float(r["twin"]), "difference": float(r["twin"] - r["original"])})
    return pd.DataFrame(rows)


def ci_overlap(lower_original: float, upper_original: float, lower_twin: float, upper_twin: float) -> float:
    """Karr et al. (2006) interval overlap: mean share of each interval covered by their overlap.

    1 for identical intervals, 0 when they only touch, negative when they are apart.

    Example:
        >>> ci_overlap(0, 1, 2, 3)
        -1.0
    """
    lo, hi = max(lower_original, lower_twin), min(upper_original, upper_twin)
    w_o, w_s = upper_original - lower_original, upper_twin - lower_twin
    if not (w_o > 0 and w_s > 0):
        return float("nan")
    return float(0.5 * ((hi - lo) / w_o + (hi - lo) / w_s))
