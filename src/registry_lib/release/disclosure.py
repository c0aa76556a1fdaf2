"""Statistical disclosure control for published count tables.

The rules (``/work/shared/reference/epidemiology.md``, "Disclosure control conventions"):

- **Primary suppression**: counts from 1 to ``threshold`` (7: NHS England and OpenSAFELY) are
  suppressed; zeros are kept.
- **Rounding**: every other count is rounded, to the nearest 5 (``rounding=5``, NHS England) or
  with OpenSAFELY's midpoint-6 rule ``ceil(x/6)*6 - 3*(x != 0)`` (``rounding="midpoint6"``, for
  survival and life tables). ``rounding=None`` publishes exact counts and then secondary
  suppression is mandatory.
- **Secondary (complementary) suppression**, as sdcTable and τ-Argus do: further cells, and
  margins where needed, are suppressed so that an attacker who solves for the bounds of a
  suppressed cell from every published value (margins included, with non-negativity) gets an
  interval at least ``threshold`` wide.

How secondary suppression is chosen (and why it is safe). Write the table with its margins as
an extended (R+1)×(C+1) table and negate the row and column totals: every row and every column
of that signed table then sums to zero. Adding ``+t, -t, -t, +t`` to the four corners of any
rectangle keeps every published equation true, so if all four corners are suppressed the
attacker cannot tell the true table from the shifted one for any ``t`` that keeps the cells
non-negative. For each primary cell we choose the cheapest rectangle (cost = the values newly
suppressed, zero for cells already suppressed) through it whose shift range, ``min`` of the
cells that fall plus ``min`` of the cells that rise, is at least ``threshold``, preferring
rectangles that let the cell fall to zero (so the attacker's lower bound stays 0). The attacker's
LP interval contains that shift range, so it is at least ``threshold`` wide: the guarantee is
proven, and :func:`suppression_intervals` checks it by linear programming. A rectangle through
the row total, column total and grand total always qualifies (all four rise together, so the
interval is unbounded), which is how margins get suppressed when nothing cheaper works.

Rounding is applied after the suppression pattern is chosen on the exact counts; an attacker
who sees rounded values knows less than one who sees exact ones, so the guarantee still holds.
Margins are the totals of the exact counts, rounded like any other count.

Example:
    >>> t = pd.DataFrame({"male": [3, 40, 25], "female": [12, 38, 30]}, index=["C18", "C19", "C20"])
    >>> protect_table(t, rounding=None)
           male  female  Total
    C18    <NA>    <NA>     15
    C19      40      38     78
    C20    <NA>    <NA>     55
    Total    68      80    148
    >>> protect_table(t, rounding=5, secondary=False)
           male  female  Total
    C18    <NA>      10     15
    C19      40      40     80
    C20      25      30     55
    Total    70      80    150
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

#: Counts 1..THRESHOLD are suppressed (NHS England, OpenSAFELY).
DEFAULT_THRESHOLD = 7
#: Other counts are rounded to the nearest DEFAULT_ROUNDING (NHS England).
DEFAULT_ROUNDING = 5
MARGIN = "Total"

Rounding = int | str | None


class UnsafeTableError(RegistryLabError):
    """A table would disclose a small count: it must not be written.

    Example:
        >>> issubclass(UnsafeTableError, RegistryLabError)
        True
    """


# ---------------------------------------------------------------------------------------------
# rounding
# ---------------------------------------------------------------------------------------------
def _check_rounding(rounding: Rounding) -> Rounding:
    if rounding is None or rounding == "midpoint6":
        return rounding
    if isinstance(rounding, bool) or not isinstance(rounding, int | np.integer) or rounding < 1:
        raise RegistryLabError(
            f"rounding={rounding!r}: use a positive integer base (e.g. 5), 'midpoint6' or None"
        )
    return int(rounding)


def round_counts(values: Any, rounding: Rounding = DEFAULT_ROUNDING) -> np.ndarray:
    """Round non-negative integer counts: to the nearest ``rounding`` or by midpoint-6.

    ``midpoint6`` is ``ceil(x/6)*6 - 3*(x != 0)``: 0→0, 1–6→3, 7–12→9, 13–18→15. Rounding to
    the nearest 5 never meets a tie for integers. ``None`` returns the counts unchanged.

    Example:
        >>> round_counts([0, 1, 2, 3, 8, 12, 13], 5).tolist()
        [0, 0, 0, 5, 10, 10, 15]
        >>> round_counts([0, 1, 6, 7, 12, 13], "midpoint6").tolist()
        [0, 3, 3, 9, 9, 15]
    """
    rounding = _check_rounding(rounding)
    x = np.asarray(values, dtype=np.int64)
    if rounding is None:
        return x.copy()
    if rounding == "midpoint6":
        return -(-x // 6) * 6 - 3 * (x != 0)
    return (x + rounding // 2) // rounding * rounding


def rounding_interval(values: Any, rounding: Rounding) -> tuple[np.ndarray, np.ndarray]:
    """The range of true counts that a published (rounded) value can stand for.

    Example:
        >>> lo, hi = rounding_interval([0, 10], 5)
        >>> lo.tolist(), hi.tolist()
        ([0, 8], [2, 12])
        >>> lo, hi = rounding_interval([0, 3, 9], "midpoint6")
        >>> lo.tolist(), hi.tolist()
        ([0, 1, 7], [0, 6, 12])
    """
    rounding = _check_rounding(rounding)
    v = np.asarray(values, dtype=np.int64)
    if rounding is None:
        return v.copy(), v.copy()
    if rounding == "midpoint6":
        top = v + 3
        return np.where(v == 0, 0, top - 5), np.where(v == 0, 0, top)
    half = rounding // 2
    return np.maximum(v - half, 0), v - half + rounding - 1


def _on_grid(values: np.ndarray, rounding: Rounding) -> np.ndarray:
    if rounding is None:
        return np.ones(values.shape, dtype=bool)
    if rounding == "midpoint6":
        return (values == 0) | (values % 6 == 3)
    return values % rounding == 0


# ---------------------------------------------------------------------------------------------
# cell-wise protection (long tables)
# ---------------------------------------------------------------------------------------------
def protect_counts(
    values: Any, threshold: int = DEFAULT_THRESHOLD, rounding: Rounding = DEFAULT_ROUNDING
) -> pd.array:
    """Primary suppression and rounding of counts one by one (no additive structure).

    Use for long tables (one count per row). Suppressed values are ``<NA>``.

    Example:
        >>> protect_counts([0, 3, 8, 23]).tolist()
        [0, <NA>, 10, 25]
    """
    raw = pd.Series(values, dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    x = _as_count_array(raw, "counts")
    small = (x >= 1) & (x <= threshold)
    out = pd.array(round_counts(x, rounding), dtype="Int64")
    out[small] = pd.NA
    return out


def _as_count_array(x: np.ndarray, what: str) -> np.ndarray:
    if x.size and not np.all(np.isfinite(x)):
        raise RegistryLabError(f"{what}: missing or non-finite count at position {int(np.flatnonzero(~np.isfinite(x))[0])}")
    if x.size and (np.any(x < 0) or np.any(x != np.round(x))):
        bad = int(np.flatnonzero((x < 0) | (x != np.round(x)))[0])
        raise RegistryLabError(f"{what}: value {x.flat[bad]!r} at position {bad} is not a non-negative whole count")
    return x.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# 2-D tables with margins
# ---------------------------------------------------------------------------------------------
def _counts_matrix(table: pd.DataFrame) -> np.ndarray:
    if not isinstance(table, pd.DataFrame) or table.ndim != 2:
        raise RegistryLabError("protect_table: expects a 2-D DataFrame of counts (rows × columns)")
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise RegistryLabError("protect_table: the table is empty")
    try:
        values = table.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        bad = next(c for c in table.columns if not pd.api.types.is_numeric_dtype(table[c]))
        raise RegistryLabError(f"protect_table: column {bad!r} is not numeric counts") from None
    bad = ~np.isfinite(values) | (values < 0) | (values != np.round(values))
    if bad.any():
        i, j = (int(v[0]) for v in np.nonzero(bad))
        raise RegistryLabError(
            f"protect_table: cell ({table.index[i]!r}, {table.columns[j]!r}) = {values[i, j]!r} is "
            "not a non-negative whole count"
        )
    return values.astype(np.int64)


def _extended(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The table with margins, and the sign of each cell in the zero-sum signed table."""
    r, c = x.shape
    ext = np.zeros((r + 1, c + 1), dtype=np.int64)
    ext[:r, :c] = x
    ext[:r, c] = x.sum(axis=1)
    ext[r, :c] = x.sum(axis=0)
    ext[r, c] = x.sum()
    sign = np.ones_like(ext)
    sign[:r, c] = -1
    sign[r, :c] = -1
    return ext, sign


def _secondary_pattern(ext: np.ndarray, sign: np.ndarray, primary: np.ndarray, threshold: int) -> np.ndarray:
    """Suppression pattern: primary cells plus, for each, a protecting rectangle (see module doc)."""
    suppressed = primary.copy()
    val = ext.astype(float)
    cost = val + 1.0
    for i, j in zip(*np.nonzero(primary), strict=True):
        sp = sign[i, j]
        # Direction (+1 rises with the primary cell, -1 falls) of the three other corners
        # (i, l), (k, j), (k, l) of every rectangle (k, l).
        corners = (
            (np.broadcast_to(val[i, :][None, :], val.shape), np.broadcast_to(-sign[i, :][None, :] * sp, val.shape)),
            (np.broadcast_to(val[:, j][:, None], val.shape), np.broadcast_to(-sign[:, j][:, None] * sp, val.shape)),
            (val, sign * sp),
        )
        up = np.full(val.shape, np.inf)
        down = np.full(val.shape, val[i, j])
        for v, d in corners:
            up = np.where(d < 0, np.minimum(up, v), up)
            down = np.where(d > 0, np.minimum(down, v), down)
        valid = up + down >= threshold
        valid[i, :] = False
        valid[:, j] = False
        add = (
            np.where(suppressed[i, :], 0.0, cost[i, :])[None, :]
            + np.where(suppressed[:, j], 0.0, cost[:, j])[:, None]
            + np.where(suppressed, 0.0, cost)
        )
        # Prefer rectangles that let the cell fall all the way to zero, so the attacker's lower
        # bound stays 0 (a zero or small partner cell would reveal "at least x").
        full = valid & (down >= val[i, j])
        add = np.where(full if full.any() else valid, add, np.inf)
        k, m = np.unravel_index(int(np.argmin(add)), add.shape)
        if not np.isfinite(add[k, m]):  # cannot happen: the margins rectangle always qualifies
            raise RegistryLabError("protect_table: no protecting rectangle found (internal error)")
        suppressed[i, m] = suppressed[k, j] = suppressed[k, m] = True
    return suppressed


def _margin_label(index: pd.Index, label: str) -> Any:
    if isinstance(index, pd.MultiIndex):
        return (label,) + ("",) * (index.nlevels - 1)
    return label


def _with_margin(index: pd.Index, label: str) -> pd.Index:
    lab = _margin_label(index, label)
    if lab in index:
        raise RegistryLabError(f"protect_table: the table already has a {label!r} row or column; pass the table without margins")
    if isinstance(index, pd.MultiIndex):
        return index.append(pd.MultiIndex.from_tuples([lab], names=index.names))
    return pd.Index([*index.astype(object), lab], name=index.name)


def protect_table(
    table: pd.DataFrame,
    threshold: int = DEFAULT_THRESHOLD,
    rounding: Rounding = DEFAULT_ROUNDING,
    secondary: bool = True,
    *,
    margin_label: str = MARGIN,
) -> pd.DataFrame:
    """Disclosure-control a 2-D table of counts (without margins) and add its margins.

    Args:
        table: counts, rows × columns (non-negative whole numbers, no margins, no missing).
        threshold: counts 1..threshold are suppressed (primary suppression); zeros are kept.
        rounding: ``5`` (nearest 5), any positive base, ``"midpoint6"``, or ``None`` (exact
            counts; then ``secondary`` must be True).
        secondary: add complementary suppressions (cells, and margins where needed) so that no
            primary-suppressed cell can be bounded to an interval narrower than ``threshold``
            from the published cells and margins.
        margin_label: label of the added total row and column.

    Returns:
        The protected table with a total row, a total column and the grand total, as pandas
        ``Int64``; suppressed cells are ``<NA>``. Margins are totals of the exact counts,
        rounded like any other count (so they need not add up after rounding).

    Example:
        >>> t = pd.DataFrame({"a": [5, 20], "b": [30, 40]}, index=["x", "y"])
        >>> protect_table(t, rounding=None)
                  a     b  Total
        x      <NA>  <NA>     35
        y      <NA>  <NA>     60
        Total    25    70     95
    """
    rounding = _check_rounding(rounding)
    if rounding is None and not secondary:
        raise RegistryLabError(
            "protect_table: rounding=None publishes exact counts, so secondary suppression is "
            "mandatory (secondary=True)"
        )
    if int(threshold) < 0:
        raise RegistryLabError(f"protect_table: threshold={threshold!r} must be >= 0")
    x = _counts_matrix(table)
    ext, sign = _extended(x)
    primary = (ext >= 1) & (ext <= threshold)
    suppressed = _secondary_pattern(ext, sign, primary, int(threshold)) if secondary else primary
    published = round_counts(ext, rounding)
    out = pd.DataFrame(
        published,
        index=_with_margin(table.index, margin_label),
        columns=_with_margin(table.columns, margin_label),
    ).astype("Int64")
    out = out.mask(suppressed)
    out.columns.name = table.columns.name
    return out


# ---------------------------------------------------------------------------------------------
# the attacker: bounds of every suppressed cell by linear programming
# ---------------------------------------------------------------------------------------------
def _has_margins(table: pd.DataFrame, label: str) -> bool:
    return (
        table.shape[0] >= 2
        and table.shape[1] >= 2
        and table.index[-1] == _margin_label(table.index, label)
        and table.columns[-1] == _margin_label(table.columns, label)
    )


def suppression_intervals(
    protected: pd.DataFrame, rounding: Rounding = None, *, margin_label: str = MARGIN
) -> pd.DataFrame:
    """What an attacker can learn: LP bounds of every suppressed cell of a table with margins.

    The attacker knows every published value (if ``rounding`` is given, only that the true
    value lies in the rounding interval of the published one), that every row and column adds
    up to its margin, and that counts are non-negative. For each suppressed cell,
    ``scipy.optimize.linprog`` (HiGHS) finds the smallest and largest value consistent with
    all of that. An unbounded maximum is ``inf``.

    Returns:
        DataFrame with columns ``row, column, lower, upper, width`` (one row per suppressed cell).

    Example:
        >>> p = protect_table(pd.DataFrame({"a": [5, 20], "b": [30, 40]}), rounding=None)
        >>> suppression_intervals(p)[["row", "column", "lower", "upper"]]
           row column  lower  upper
        0    0      a    0.0   25.0
        1    0      b   10.0   35.0
        2    1      a    0.0   25.0
        3    1      b   35.0   60.0
    """
    from scipy.optimize import linprog

    rounding = _check_rounding(rounding)
    if not _has_margins(protected, margin_label):
        raise RegistryLabError(f"suppression_intervals: the table has no {margin_label!r} row and column")
    values = protected.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    n_r, n_c = values.shape
    hidden = np.isnan(values)
    lo, hi = rounding_interval(np.where(hidden, 0, values).astype(np.int64), rounding)
    bounds = [
        (0.0, None) if hidden.flat[k] else (float(lo.flat[k]), float(hi.flat[k]))
        for k in range(values.size)
    ]
    idx = np.arange(values.size).reshape(n_r, n_c)
    rows = []
    for i in range(n_r):  # each row of cells minus its total is zero
        a = np.zeros(values.size)
        a[idx[i, :-1]] = 1.0
        a[idx[i, -1]] = -1.0
        rows.append(a)
    for j in range(n_c):
        a = np.zeros(values.size)
        a[idx[:-1, j]] = 1.0
        a[idx[-1, j]] = -1.0
        rows.append(a)
    a_eq = np.vstack(rows)
    b_eq = np.zeros(len(rows))
    out = []
    for k in np.flatnonzero(hidden.ravel()):
        c = np.zeros(values.size)
        c[k] = 1.0
        res_min = linprog(c, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        res_max = linprog(-c, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        if res_min.status == 2 or res_max.status == 2:
            raise RegistryLabError(
                "suppression_intervals: the published values contradict the margins (wrong rounding?)"
            )
        lower = float(res_min.fun)
        upper = np.inf if res_max.status == 3 else float(-res_max.fun)
        i, j = divmod(int(k), n_c)
        out.append((protected.index[i], protected.columns[j], lower, upper))
    df = pd.DataFrame(out, columns=["row", "column", "lower", "upper"])
    df["width"] = df["upper"] - df["lower"]
    return df


# ---------------------------------------------------------------------------------------------
# the gate before writing
# ---------------------------------------------------------------------------------------------
def check_table(
    table: pd.DataFrame,
    threshold: int = DEFAULT_THRESHOLD,
    rounding: Rounding = DEFAULT_ROUNDING,
    secondary: bool = True,
    *,
    count_columns: Sequence[str] | None = None,
    margin_label: str = MARGIN,
    name: str = "table",
    attack: bool = True,
) -> pd.DataFrame:
    """Refuse (raise :class:`UnsafeTableError`) a table that could disclose a small count.

    Checks, on the count cells (``count_columns`` of a long table, or every cell of a 2-D table):
    no value in 1..threshold; with ``rounding``, every value lies on the rounding grid (multiple
    of 5, or 0 / 3 mod 6 for midpoint-6); for a 2-D table with margins and ``secondary``, the LP
    attack of :func:`suppression_intervals` bounds no suppressed cell to an interval narrower
    than ``threshold`` (``attack=False`` skips this LP check, e.g. for a table just made by
    :func:`protect_table`, whose pattern is safe by construction). Returns the table unchanged
    when it is safe.

    Example:
        >>> check_table(pd.DataFrame({"count": [0, 10, None]}), count_columns=["count"]).shape
        (3, 1)
        >>> try:
        ...     check_table(pd.DataFrame({"count": [0, 3]}), count_columns=["count"])
        ... except UnsafeTableError as exc:
        ...     print(exc)
        table: unsafe to publish: column 'count' row 1 is 3 (counts 1-7 must be suppressed)
    """
    rounding = _check_rounding(rounding)
    cols = list(count_columns) if count_columns is not None else list(table.columns)
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise RegistryLabError(f"{name}: count column(s) {missing} not in the table")
    problems: list[str] = []
    for col in cols:
        series = table[col]
        if not pd.api.types.is_numeric_dtype(series):
            problems.append(f"column {col!r} is not numeric")
            continue
        v = series.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        ok = ~np.isnan(v)
        small = ok & (v >= 1) & (v <= threshold)
        for pos in np.flatnonzero(small)[:3]:
            problems.append(
                f"column {col!r} row {table.index[pos]!r} is {v[pos]:g} (counts 1-{threshold} must be suppressed)"
            )
        frac = ok & (v != np.round(v))
        for pos in np.flatnonzero(frac)[:3]:
            problems.append(f"column {col!r} row {table.index[pos]!r} is {v[pos]:g}, not a whole count")
        if rounding is not None:
            off = ok & ~frac & ~small & ~_on_grid(np.where(ok, v, 0).astype(np.int64), rounding)
            for pos in np.flatnonzero(off)[:3]:
                problems.append(
                    f"column {col!r} row {table.index[pos]!r} is {v[pos]:g}, not rounded ({rounding})"
                )
    if not problems and attack and count_columns is None and secondary and _has_margins(table, margin_label):
        intervals = suppression_intervals(table, rounding, margin_label=margin_label)
        narrow = intervals[intervals["width"] < threshold]
        for row in narrow.head(3).itertuples():
            problems.append(
                f"suppressed cell ({row.row!r}, {row.column!r}) can be bounded to "
                f"[{row.lower:g}, {row.upper:g}] from the margins (narrower than {threshold})"
            )
    if problems:
        raise UnsafeTableError(f"{name}: unsafe to publish: " + "; ".join(problems))
    return table


def percentages(
    protected: pd.DataFrame, of: str = "row", *, margin_label: str = MARGIN, decimals: int = 1
) -> pd.DataFrame:
    """Percentages of a protected table's row (or column) totals, from the protected values.

    Percentages are never computed from the exact counts (a percentage of an exact total can
    reveal a suppressed cell); a suppressed cell or total gives a missing percentage.

    Example:
        >>> p = protect_table(pd.DataFrame({"a": [3, 40], "b": [25, 50]}), secondary=False)
        >>> percentages(p, "row")
                  a     b  Total
        0      <NA>  83.3  100.0
        1      44.4  55.6  100.0
        Total  37.5  62.5  100.0
    """
    if not _has_margins(protected, margin_label):
        raise RegistryLabError(f"percentages: the table has no {margin_label!r} row and column (use protect_table)")
    values = protected.astype("Float64")
    if of == "row":
        denom = values.iloc[:, -1].mask(values.iloc[:, -1] == 0)
        out = values.div(denom, axis=0)
    elif of == "column":
        denom = values.iloc[-1, :].mask(values.iloc[-1, :] == 0)
        out = values.div(denom, axis=1)
    else:
        raise RegistryLabError(f"percentages: of={of!r} must be 'row' or 'column'")
    return (out * 100).round(decimals)
