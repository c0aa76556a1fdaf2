"""Fast "best value per group" helpers on numpy arrays (no per-group Python, no string sorts).

pandas sorts on several keys by factorising each one; at a million rows that dominates the
registry build. These helpers sort integer and date keys with ``numpy.lexsort`` and pick the
first non-missing value per group with ``numpy.unique``.

Example:
    >>> import pandas as pd
    >>> g = np.array([0, 0, 1, 1])
    >>> o = order(g, np.array([3, 1, 2, 5]))          # by group, then the second key
    >>> first_valid(g, pd.Series(["a", None, "c", "d"]), o, 2).tolist()
    ['a', 'c']
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def key(values: pd.Series | np.ndarray, *, descending: bool = False) -> np.ndarray:
    """An int64/float sort key: dates as nanoseconds, missing values last (in either direction).

    Example:
        >>> key(pd.Series([3.0, None, 1.0])).tolist()
        [3.0, inf, 1.0]
        >>> key(pd.Series(["b", "a", None]), descending=True).tolist()
        [-1.0, -0.0, inf]
    """
    s = pd.Series(values) if not isinstance(values, pd.Series) else values
    if pd.api.types.is_datetime64_any_dtype(s):
        arr = s.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
        arr[s.isna().to_numpy()] = np.nan
    elif pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        arr = pd.to_numeric(s, errors="coerce").astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        codes, _ = pd.factorize(s, sort=True)
        arr = codes.astype(np.float64)
        arr[codes < 0] = np.nan
    if descending:
        arr = -arr
    return np.where(np.isnan(arr), np.inf, arr)


def order(*keys: np.ndarray) -> np.ndarray:
    """Indices that sort by the first key, then the second, … (stable).

    Example:
        >>> order(np.array([1, 0, 1]), np.array([5, 9, 2])).tolist()
        [1, 2, 0]
    """
    return np.lexsort(tuple(np.asarray(k) for k in reversed(keys)))


def first_valid(group: np.ndarray, values: pd.Series, order_idx: np.ndarray, n_groups: int) -> pd.Series:
    """Per group 0..n_groups-1: the first non-missing value of ``values`` in ``order_idx`` order.

    Example:
        >>> g = np.array([0, 1, 1])
        >>> first_valid(g, pd.Series([None, "x", "y"]), np.array([0, 2, 1]), 2).tolist()
        [nan, 'y']
    """
    valid = values.notna().to_numpy()
    o = order_idx[valid[order_idx]]
    rows = first_row(group, o, n_groups)
    taken = values.array.take(rows, allow_fill=True)
    return pd.Series(taken, index=pd.RangeIndex(n_groups), name=values.name)


def first_row(group: np.ndarray, order_idx: np.ndarray, n_groups: int) -> np.ndarray:
    """Per group: the position (in the input) of its first row in ``order_idx`` order (-1 if empty).

    Example:
        >>> first_row(np.array([1, 1, 0]), np.array([1, 0, 2]), 3).tolist()
        [2, 1, -1]
    """
    g = np.asarray(group)[order_idx]
    uniq, first = np.unique(g, return_index=True)
    out = np.full(n_groups, -1, dtype=np.int64)
    out[uniq] = order_idx[first]
    return out
