"""Disclosure control: rounding, primary and secondary suppression, the LP attack, KM export."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import linprog

from registry_lib.errors import RegistryLabError
from registry_lib.release import (
    UnsafeTableError,
    check_table,
    protect_counts,
    protect_km,
    protect_table,
    round_counts,
    suppression_intervals,
)

THRESHOLD = 7


# ---------------------------------------------------------------------------------------------
# an attacker written independently of the library: LP bounds from published cells and margins
# ---------------------------------------------------------------------------------------------
def extended(x: np.ndarray) -> np.ndarray:
    r, c = x.shape
    e = np.zeros((r + 1, c + 1), dtype=np.int64)
    e[:r, :c] = x
    e[:r, c] = x.sum(1)
    e[r, :c] = x.sum(0)
    e[r, c] = x.sum()
    return e


def attack(published: np.ndarray) -> dict[tuple[int, int], tuple[float, float]]:
    """Min and max of every missing cell of a (R+1)×(C+1) table with margins (exact values)."""
    hidden = np.argwhere(np.isnan(published))
    pos = {tuple(map(int, h)): k for k, h in enumerate(hidden)}
    n_r, n_c = published.shape
    a_eq, b_eq = [], []
    lines = [[(i, j, 1.0) for j in range(n_c - 1)] + [(i, n_c - 1, -1.0)] for i in range(n_r)]
    lines += [[(i, j, 1.0) for i in range(n_r - 1)] + [(n_r - 1, j, -1.0)] for j in range(n_c)]
    for line in lines:
        row, rhs = np.zeros(len(pos)), 0.0
        for i, j, coef in line:
            if (i, j) in pos:
                row[pos[(i, j)]] += coef
            else:
                rhs -= coef * published[i, j]
        if row.any():
            a_eq.append(row)
            b_eq.append(rhs)
        else:
            assert abs(rhs) < 1e-9, "published values contradict the margins"
    out = {}
    for cell, k in pos.items():
        c = np.zeros(len(pos))
        c[k] = 1.0
        kw = {"A_eq": np.array(a_eq), "b_eq": np.array(b_eq)} if a_eq else {}
        lo = linprog(c, bounds=[(0, None)] * len(pos), method="highs", **kw)
        hi = linprog(-c, bounds=[(0, None)] * len(pos), method="highs", **kw)
        assert lo.status == 0
        out[cell] = (lo.fun, np.inf if hi.status == 3 else -hi.fun)
    return out


def assert_protected(x: np.ndarray) -> int:
    """Protect x with exact counts and check every primary cell against the LP attack."""
    prot = protect_table(pd.DataFrame(x), threshold=THRESHOLD, rounding=None, secondary=True)
    pub = prot.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    ext = extended(x)
    primary = (ext >= 1) & (ext <= THRESHOLD)
    assert np.isnan(pub[primary]).all()
    shown = ~np.isnan(pub)
    np.testing.assert_array_equal(pub[shown], ext[shown])  # nothing else altered
    bounds = attack(pub)
    for i, j in np.argwhere(primary):
        lo, hi = bounds[(int(i), int(j))]
        assert lo <= ext[i, j] + 1e-6 and hi >= ext[i, j] - 1e-6
        assert hi - lo >= THRESHOLD - 1e-6, (x, (i, j), lo, hi)
    return int(primary.sum())


def random_table(rng: np.random.Generator) -> np.ndarray:
    r, c = rng.integers(1, 8, size=2)
    kind = rng.integers(0, 3)
    if kind == 0:  # mostly small counts
        return rng.poisson(rng.uniform(1, 8), size=(r, c))
    if kind == 1:  # a mix of zeros, small and large
        return rng.choice([0, 0, 1, 2, 3, 5, 6, 7, 8, 9, 15, 30, 120], size=(r, c))
    return rng.negative_binomial(1, rng.uniform(0.02, 0.3), size=(r, c))


# ---------------------------------------------------------------------------------------------
# exact examples
# ---------------------------------------------------------------------------------------------
def test_rounding_to_5_exact_values():
    assert round_counts([0, 1, 2, 3, 4, 5, 7, 8, 12, 13, 102, 103], 5).tolist() == [
        0, 0, 0, 5, 5, 5, 5, 10, 10, 15, 100, 105]


def test_midpoint6_exact_values():
    x = np.arange(0, 20)
    expected = [0] + [3] * 6 + [9] * 6 + [15] * 6 + [21]
    assert round_counts(x, "midpoint6").tolist() == expected
    # the published formula, literally
    assert round_counts(x, "midpoint6").tolist() == [int(np.ceil(v / 6) * 6 - 3 * (v != 0)) for v in x]


def test_primary_suppression_and_rounding_exact():
    t = pd.DataFrame({"F": [3, 40, 0], "M": [25, 8, 12]}, index=["C18", "C34", "C50"])
    out = protect_table(t, threshold=7, rounding=5, secondary=False)
    assert list(out.index) == ["C18", "C34", "C50", "Total"]
    assert list(out.columns) == ["F", "M", "Total"]
    assert str(out.dtypes.iloc[0]) == "Int64"
    expected = pd.DataFrame(
        {"F": [pd.NA, 40, 0, 45], "M": [25, 10, 10, 45], "Total": [30, 50, 10, 90]},
        index=["C18", "C34", "C50", "Total"], dtype="Int64")
    pd.testing.assert_frame_equal(out, expected)


def test_zeros_are_kept_and_threshold_inclusive():
    out = protect_table(pd.DataFrame({"a": [0, 7, 8]}), rounding=5, secondary=False)
    assert out["a"].tolist()[:3] == [0, pd.NA, 10]


def test_midpoint6_table():
    out = protect_table(pd.DataFrame({"a": [8, 13], "b": [20, 0]}), rounding="midpoint6", secondary=False)
    assert out.to_numpy().tolist() == [[9, 21, 27], [15, 0, 15], [21, 21, 39]]


def test_secondary_exact_example():
    t = pd.DataFrame({"male": [3, 40, 25], "female": [12, 38, 30]}, index=["C18", "C19", "C20"])
    out = protect_table(t, rounding=None)
    # the cheapest protecting rectangle for (C18, male) goes through C20 (25 + 30 < 40 + 38)
    assert out.isna().to_numpy().tolist() == [
        [True, True, False], [False, False, False], [True, True, False], [False, False, False]]
    assert out.loc["Total", "Total"] == 148


def test_margins_are_suppressed_when_needed():
    # one row: a column total equals its cell, so the cell's column margin is primary too
    out = protect_table(pd.DataFrame([[3, 20, 30]]), rounding=None)
    assert out.loc[0].isna().tolist() == [True, True, False, False]
    assert out.loc["Total"].isna().tolist() == [True, True, False, False]
    # a tiny whole table: the grand total itself is small and must go
    tiny = protect_table(pd.DataFrame([[2]]), rounding=None)
    assert tiny.isna().all().all()


def test_rounding_none_requires_secondary():
    with pytest.raises(RegistryLabError, match="secondary suppression is mandatory"):
        protect_table(pd.DataFrame([[1, 2]]), rounding=None, secondary=False)


@pytest.mark.parametrize("bad", [pd.DataFrame([[1, -1]]), pd.DataFrame([[1.5, 2]]),
                                 pd.DataFrame([[1, None]]), pd.DataFrame({"a": ["x"]})])
def test_bad_input_is_refused(bad):
    with pytest.raises(RegistryLabError, match="protect_table"):
        protect_table(bad)


def test_existing_total_is_refused():
    with pytest.raises(RegistryLabError, match="already has"):
        protect_table(pd.DataFrame({"a": [10, 20]}, index=["x", "Total"]))


def test_protect_counts_long():
    assert protect_counts([0, 1, 7, 8, 23, 100]).tolist() == [0, pd.NA, pd.NA, 10, 25, 100]
    assert protect_counts([0, 5, 13], rounding="midpoint6").tolist() == [0, pd.NA, 15]


# ---------------------------------------------------------------------------------------------
# the LP attack on many random tables
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lp_attack_on_random_tables():
    rng = np.random.default_rng(20240605)
    tried = primaries = 0
    for _ in range(240):
        primaries += assert_protected(random_table(rng))
        tried += 1
    assert tried == 240 and primaries > 500  # enough primary cells were actually attacked


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 5), st.integers(1, 5)),
              elements=st.one_of(st.integers(0, 9), st.integers(0, 300))))
def test_suppressed_cells_cannot_be_recovered(x):
    assert_protected(x)


@settings(max_examples=80, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 6)),
              elements=st.one_of(st.integers(0, 9), st.integers(0, 500))),
       st.sampled_from([5, "midpoint6", None]), st.booleans())
def test_protected_tables_never_contain_1_to_7(x, rounding, secondary):
    if rounding is None:
        secondary = True
    out = protect_table(pd.DataFrame(x), rounding=rounding, secondary=secondary)
    v = out.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    assert not ((v >= 1) & (v <= 7)).any()
    check_table(out, rounding=rounding, secondary=secondary)  # the gate agrees


def test_library_intervals_match_the_independent_attack():
    rng = np.random.default_rng(5)
    for _ in range(10):
        x = random_table(rng)
        prot = protect_table(pd.DataFrame(x), rounding=None)
        mine = attack(prot.astype("Float64").to_numpy(dtype=float, na_value=np.nan))
        lib = suppression_intervals(prot)
        assert len(lib) == len(mine)
        for row in lib.itertuples():
            i = prot.index.get_loc(row.row)
            j = prot.columns.get_loc(row.column)
            lo, hi = mine[(i, j)]
            assert row.lower == pytest.approx(lo, abs=1e-6)
            assert row.upper == pytest.approx(hi, abs=1e-6) or (np.isinf(row.upper) and np.isinf(hi))


# ---------------------------------------------------------------------------------------------
# check_table: the gate before writing
# ---------------------------------------------------------------------------------------------
def test_check_table_refuses_small_counts_and_unrounded_values():
    with pytest.raises(UnsafeTableError, match="counts 1-7"):
        check_table(pd.DataFrame({"n": [10, 4]}), count_columns=["n"])
    with pytest.raises(UnsafeTableError, match="not rounded"):
        check_table(pd.DataFrame({"n": [10, 12]}), count_columns=["n"])
    assert check_table(pd.DataFrame({"n": [10, 12]}), rounding=None, count_columns=["n"]) is not None


def test_check_table_refuses_recoverable_suppression():
    # primary suppression alone, exact counts: the suppressed cell is the margin minus the rest
    t = pd.DataFrame({"a": [pd.NA, 20], "b": [30, 40], "Total": [33, 60]},
                     index=[0, 1], dtype="Int64")
    t.loc["Total"] = [23, 70, 93]
    with pytest.raises(UnsafeTableError, match="can be bounded"):
        check_table(t, rounding=None)


def test_check_table_accepts_protected_rounded_table():
    rng = np.random.default_rng(11)
    for _ in range(5):
        out = protect_table(pd.DataFrame(random_table(rng)), rounding=5, secondary=True)
        check_table(out, rounding=5, secondary=True)


# ---------------------------------------------------------------------------------------------
# Kaplan–Meier export
# ---------------------------------------------------------------------------------------------
def km_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.ceil(rng.exponential(400, n))
    cens = np.ceil(rng.uniform(0, 1500, n))
    time = np.minimum(t, cens)
    event = t <= cens
    df = pd.DataFrame({"time": time, "event": event})
    g = df.groupby("time").agg(n_events=("event", "sum"), n=("event", "size")).reset_index()
    g["n_censored"] = g["n"] - g["n_events"]
    g["n_at_risk"] = n - g["n"].cumsum().shift(fill_value=0)
    g["survival"] = np.cumprod(1 - g["n_events"] / g["n_at_risk"])
    return g[["time", "n_at_risk", "n_events", "n_censored", "survival"]]


def test_protect_km_is_safe_and_faithful():
    km = km_table(500, 1)
    out = protect_km(km)
    counts = out[["n_at_risk", "n_events", "n_censored"]].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    assert not ((counts >= 1) & (counts <= 7)).any()
    assert (out["n_events"].iloc[1:] >= 9).all()                 # every step holds >= 8 events
    assert ((out["n_at_risk"] % 6 == 3) | (out["n_at_risk"] == 0)).all()  # midpoint-6 values
    assert out["time"].is_monotonic_increasing and out["survival"].is_monotonic_decreasing
    # survival at each published step is the exact KM estimate at that time
    exact = km.set_index("time")["survival"]
    for t, s in zip(out["time"].iloc[1:], out["survival"].iloc[1:], strict=True):
        assert s == pytest.approx(exact.loc[t], abs=5e-4)
    # the curve stops before the number at risk falls to the threshold
    last = km[km["time"] <= out["time"].iloc[-1]]
    assert (last["n_at_risk"] > 7).all()
    check_table(out, rounding="midpoint6", count_columns=["n_at_risk", "n_events", "n_censored"])


def test_protect_km_by_group_and_grid():
    km = pd.concat([km_table(300, 2).assign(stage="1"), km_table(200, 3).assign(stage="4")])
    out = protect_km(km, time_grid=30)
    assert set(out["stage"]) == {"1", "4"}
    assert (out.loc[out["time"] > 0, "time"] % 30 == 0).all()
    assert out.groupby("stage")["time"].first().eq(0).all()


def test_protect_km_rejects_bad_input():
    with pytest.raises(RegistryLabError, match="lacks column"):
        protect_km(pd.DataFrame({"time": [1]}))
    with pytest.raises(RegistryLabError, match="min_events"):
        protect_km(km_table(50, 1), min_events=5)
