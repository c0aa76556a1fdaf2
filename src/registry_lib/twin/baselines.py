"""The two baselines a twin is measured against: independent marginals and a Gaussian copula.

Both work on one flat table (e.g. :func:`registry_lib.twin.utility.patient_tumour_table`):

- :func:`independent_marginals` draws every column on its own from the original's empirical
  distribution (keeps every marginal, breaks every association);
- :func:`gaussian_copula` keeps the marginals and the rank correlations: each column is turned
  into normal scores through its empirical distribution (categories ordered by frequency, a
  record placed uniformly within its category's band), the correlation matrix of the scores is
  estimated, and new scores drawn from that multivariate normal are turned back through the
  empirical quantiles (the Gaussian copula of ``sdv``/``copulas``, with empirical margins).

Example:
    >>> df = pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100.0) * 2, "s": ["a", "b"] * 50})
    >>> g = gaussian_copula(df, 500, seed=1)
    >>> round(float(np.corrcoef(g["x"], g["y"])[0, 1]), 2) > 0.95, sorted(g["s"].unique())
    (True, ['a', 'b'])
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = ["gaussian_copula", "independent_marginals"]


def independent_marginals(table: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` records, each column drawn independently from the original column.

    Example:
        >>> independent_marginals(pd.DataFrame({"a": [1, 2, 3]}), 4, seed=0).shape
        (4, 1)
    """
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: table[c].to_numpy()[rng.integers(0, len(table), n)] for c in table.columns})


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def gaussian_copula(table: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` records from a Gaussian copula with the original's empirical margins.

    Example (stage rises with age in the original; it still does in the copula's records):
        >>> age = np.arange(40.0, 90.0)
        >>> original = pd.DataFrame({"age": age, "stage": np.select([age < 55, age < 70, age < 80], ["1", "2", "3"], "4")})
        >>> g = gaussian_copula(original, 1000, seed=1)
        >>> g.shape, float(g["age"].min()), float(g["age"].max())
        ((1000, 2), 40.0, 89.0)
        >>> g["stage"].value_counts(normalize=True).round(2).sort_index().to_dict()   # original: .3 .3 .2 .2
        {'1': 0.32, '2': 0.29, '3': 0.2, '4': 0.2}
        >>> g.groupby("stage")["age"].median().to_dict()
        {'1': 47.0, '2': 63.0, '3': 75.0, '4': 84.0}
    """
    rng = np.random.default_rng(seed)
    m = len(table)
    scores, margins = [], []
    for c in table.columns:
        s = table[c]
        if _is_numeric(s) and s.notna().all():
            ranks = s.rank(method="average").to_numpy()
            u = ranks / (m + 1)
            margins.append(("num", np.sort(s.to_numpy(dtype=float))))
        else:
            v = s.astype(object).where(s.notna(), None)
            freq = v.value_counts(dropna=False)
            levels = list(freq.index)
            cum = np.r_[0, np.cumsum(freq.to_numpy())] / m
            code = pd.Index(levels).get_indexer(v)
            u = cum[code] + rng.random(m) * (cum[code + 1] - cum[code])
            u = np.clip(u, 1e-6, 1 - 1e-6)
            margins.append(("cat", (np.array(levels, dtype=object), cum)))
        scores.append(norm.ppf(u))
    z = np.column_stack(scores)
    corr = np.corrcoef(z, rowvar=False)
    corr = np.nan_to_num(corr) + np.eye(len(table.columns)) * 1e-9
    draws = rng.multivariate_normal(np.zeros(len(table.columns)), corr, size=n, method="cholesky")
    u = norm.cdf(draws)
    out = {}
    for j, c in enumerate(table.columns):
        kind, info = margins[j]
        if kind == "num":
            idx = np.clip(np.floor(u[:, j] * len(info)).astype(int), 0, len(info) - 1)
            # drawn from the original values, so whole-number columns stay whole numbers (and their
            # dtype): 1.0 and 1 would be different levels to the utility measures
            out[c] = pd.Series(info[idx]).astype(table[c].dtype).to_numpy()
        else:
            levels, cum = info
            idx = np.clip(np.searchsorted(cum, u[:, j], side="right") - 1, 0, len(levels) - 1)
            out[c] = levels[idx]
    return pd.DataFrame(out)
