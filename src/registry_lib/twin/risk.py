"""Disclosure risk of a twin: replicated uniques, distance to closest record, TCAP.

- :func:`replicated_uniques` — twin records equal, on the key variables, to a record that is
  unique in the original (synthpop ``replicated.uniques``);
- :func:`distance_to_closest` — for each record of one table, the Gower distance to its nearest
  record in another (compared, in the report, with the distances of a hold-out sample of the
  original that the synthesiser never saw);
- :func:`tcap` — the targeted correct attribution probability (Elliot 2014; Taub, Elliot,
  Pampaka and Smith 2018): an intruder who knows a person's key variables looks them up in the
  twin and, where every twin record with those keys has the same sensitive value, guesses it;
  TCAP is the share of such guesses that are right for the original records, against the
  baseline of guessing from the marginal distribution.

Example:
    >>> o = pd.DataFrame({"sex": [1, 1, 2], "age": [50, 60, 70]})
    >>> t = pd.DataFrame({"sex": [1, 2, 2], "age": [50, 70, 71]})
    >>> replicated_uniques(o, t, ["sex", "age"]).tolist()
    [True, True, False]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

__all__ = ["distance_to_closest", "key_frame", "replicated_uniques", "tcap"]


def _keys(df: pd.DataFrame, keys: list[str]) -> pd.Series:
    parts = [df[k].astype(object).where(df[k].notna(), "\x00").astype(str) for k in keys]
    out = parts[0]
    for p in parts[1:]:
        out = out + "\x1f" + p
    return out


def key_frame(table: pd.DataFrame) -> pd.DataFrame:
    """The key variables an intruder is assumed to know, from a patient-tumour table.

    Sex, age at diagnosis, site, month of diagnosis and area (the release policy's
    quasi-identifiers, at their finest released detail).

    Example:
        >>> key_frame(pd.DataFrame({"sex": [1], "age_at_diagnosis": [50], "site_icd10": ["C50"],
        ...     "diagnosis_date": pd.to_datetime(["2020-03-05"]), "area_id": ["A1"]})).iloc[0].astype(str).tolist()
        ['1', '50', 'C50', '2020-03', 'A1']
    """
    out = pd.DataFrame(index=table.index)
    for c in ("sex", "age_at_diagnosis", "site_icd10"):
        if c in table.columns:
            out[c] = table[c]
    if "diagnosis_date" in table.columns:
        out["diagnosis_month"] = pd.to_datetime(table["diagnosis_date"]).dt.strftime("%Y-%m")
    if "area_id" in table.columns:
        out["area_id"] = table["area_id"]
    return out


def replicated_uniques(original: pd.DataFrame, twin: pd.DataFrame, keys: list[str]) -> pd.Series:
    """Boolean per twin record: equal on ``keys`` to a record unique in the original.

    Example:
        >>> replicated_uniques(pd.DataFrame({"k": [1, 2, 2]}), pd.DataFrame({"k": [1, 2, 3]}), ["k"]).tolist()
        [True, False, False]
    """
    ko, kt = _keys(original, keys), _keys(twin, keys)
    counts = ko.value_counts()
    uniques = counts.index[counts.to_numpy() == 1]
    return pd.Series(kt.isin(uniques).to_numpy(), index=twin.index)


def _gower_matrix(a: pd.DataFrame, b: pd.DataFrame, variables: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Both tables as vectors whose L1 distance / len(variables) is the Gower distance."""
    cols_a, cols_b = [], []
    for v in variables:
        if pd.api.types.is_numeric_dtype(a[v]) and pd.api.types.is_numeric_dtype(b[v]):
            x, y = a[v].astype(float), b[v].astype(float)
            span = float(np.nanmax(x) - np.nanmin(x)) or 1.0
            lo = float(np.nanmin(x))
            cols_a.append(((x - lo) / span).fillna(-1).to_numpy()[:, None])
            cols_b.append(((y - lo) / span).fillna(-1).to_numpy()[:, None])
        else:
            x, y = a[v].astype(str), b[v].astype(str)
            levels = pd.Index(sorted(set(x) | set(y)))
            ea = np.zeros((len(x), len(levels)))
            eb = np.zeros((len(y), len(levels)))
            ea[np.arange(len(x)), levels.get_indexer(x)] = 0.5   # L1 between two one-hots: 2 x 0.5 = 1
            eb[np.arange(len(y)), levels.get_indexer(y)] = 0.5
            cols_a.append(ea)
            cols_b.append(eb)
    return np.hstack(cols_a), np.hstack(cols_b)


def distance_to_closest(records: pd.DataFrame, reference: pd.DataFrame, variables: list[str]) -> np.ndarray:
    """Gower distance from each record to its nearest record in ``reference`` (0 = identical).

    Example:
        >>> distance_to_closest(pd.DataFrame({"a": [1.0, 3.0], "s": ["x", "y"]}),
        ...                     pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "x"]}), ["a", "s"]).round(2).tolist()
        [0.0, 0.75]
    """
    a, b = _gower_matrix(records, reference, variables)
    nn = NearestNeighbors(n_neighbors=1, metric="manhattan", algorithm="auto").fit(b)
    dist, _ = nn.kneighbors(a)
    return dist[:, 0] / len(variables)


def tcap(original: pd.DataFrame, twin: pd.DataFrame, keys: list[str], target: str) -> dict[str, float]:
    """TCAP of one sensitive ``target`` given ``keys`` and its marginal baseline.

    Returns ``{"tcap", "baseline", "matched"}``: the share of correct guesses among original
    records whose keys select a twin class with a single target value, the chance of guessing
    right from the original's marginal distribution (sum of squared shares), and how many
    original records could be guessed at all.

    Example:
        >>> o = pd.DataFrame({"k": [1, 1, 2], "t": ["a", "a", "b"]})
        >>> s = pd.DataFrame({"k": [1, 2, 2], "t": ["a", "b", "c"]})
        >>> tcap(o, s, ["k"], "t")["tcap"]
        1.0
    """
    ko, kt = _keys(original, keys), _keys(twin, keys)
    to = original[target].astype(object).where(original[target].notna(), "missing").astype(str)
    ts = twin[target].astype(object).where(twin[target].notna(), "missing").astype(str)
    classes = pd.DataFrame({"k": kt.to_numpy(), "t": ts.to_numpy()}).groupby("k")["t"].agg(["nunique", "first"])
    single = classes[classes["nunique"] == 1]["first"]
    guess = ko.map(single)
    matched = guess.notna()
    correct = (guess[matched] == to[matched]).mean() if matched.any() else float("nan")
    shares = to.value_counts(normalize=True)
    return {"tcap": float(correct), "baseline": float((shares ** 2).sum()), "matched": int(matched.sum())}
