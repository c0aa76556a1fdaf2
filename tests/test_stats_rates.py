"""Tests for registry_lib.stats.rates: Poisson limits, SIR, indirect and direct standardisation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from registry_lib.errors import RegistryLabError
from registry_lib.stats import (
    crude_rate,
    direct_standardised_rate,
    indirect_expected,
    poisson_ci,
    sir,
    smoothed_sir,
    stratum_rates,
)

# Garwood (1936) exact 95% limits as tabulated (e.g. Breslow & Day 1987, Appendix;
# Ulm 1990 Table 1), to 3 decimals.
GARWOOD_95 = {
    0: (0.000, 3.689),
    1: (0.025, 5.572),
    2: (0.242, 7.225),
    5: (1.624, 11.668),
    10: (4.795, 18.390),
    20: (12.217, 30.888),
}


@pytest.mark.parametrize("x", sorted(GARWOOD_95))
def test_exact_limits_match_garwood_table(x):
    lo, hi = poisson_ci(x)
    assert float(lo) == pytest.approx(GARWOOD_95[x][0], abs=6e-4)
    assert float(hi) == pytest.approx(GARWOOD_95[x][1], abs=6e-4)


def test_exact_limits_vectorised_and_shape_kept():
    lo, hi = poisson_ci(np.array([[0, 1], [5, 10]]))
    assert lo.shape == (2, 2)
    assert hi[1, 1] == pytest.approx(18.390, abs=6e-4)


def test_byar_by_hand():
    # Byar: L = x(1 - 1/(9x) - z/(3 sqrt x))^3, U = (x+1)(1 - 1/(9(x+1)) + z/(3 sqrt(x+1)))^3
    z = 1.959963984540054
    x = 25.0
    lo_hand = x * (1 - 1 / (9 * x) - z / (3 * np.sqrt(x))) ** 3
    hi_hand = (x + 1) * (1 - 1 / (9 * (x + 1)) + z / (3 * np.sqrt(x + 1))) ** 3
    lo, hi = poisson_ci(25, method="byar")
    assert float(lo) == pytest.approx(lo_hand, rel=1e-12)
    assert float(hi) == pytest.approx(hi_hand, rel=1e-12)
    assert float(lo) == pytest.approx(16.18, abs=0.01)
    assert float(hi) == pytest.approx(36.90, abs=0.01)


def test_byar_zero_count_lower_is_zero():
    lo, hi = poisson_ci([0], method="byar")
    assert lo[0] == 0.0
    assert hi[0] == pytest.approx((1 - 1 / 9 + 1.959964 / 3) ** 3, abs=1e-5)  # 3.668


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=10, max_value=5000))
def test_byar_close_to_exact_from_ten(x):
    lo_e, hi_e = poisson_ci(x)
    lo_b, hi_b = poisson_ci(x, method="byar")
    assert abs(lo_b - lo_e) / lo_e < 0.01
    assert abs(hi_b - hi_e) / hi_e < 0.01


@settings(max_examples=40, deadline=None)
@given(st.floats(min_value=0.05, max_value=60.0), st.sampled_from([0.9, 0.95, 0.99]))
def test_exact_interval_coverage_at_least_nominal(mu, level):
    # Exact coverage of Garwood intervals: sum of P(X = x) over x whose interval holds mu.
    x = np.arange(0, int(mu + 20 * np.sqrt(mu) + 30))
    lo, hi = poisson_ci(x, level=level)
    covered = (lo <= mu) & (mu <= hi)
    assert sps.poisson.pmf(x[covered], mu).sum() >= level - 1e-9


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 500), min_size=2, max_size=20))
def test_limits_monotone_in_count(xs):
    xs = np.sort(np.array(xs))
    for method in ("exact", "byar"):
        lo, hi = poisson_ci(xs, method=method)
        assert np.all(np.diff(lo) >= -1e-12)
        assert np.all(np.diff(hi) >= -1e-12)
        assert np.all(lo <= xs + 1e-12) and np.all(hi >= xs)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(RegistryLabError, match="observed\\[1\\]"):
        poisson_ci([1, -2])
    with pytest.raises(RegistryLabError, match="method"):
        poisson_ci(3, method="wald")
    with pytest.raises(RegistryLabError, match="level"):
        poisson_ci(3, level=95)
    with pytest.raises(RegistryLabError, match="expected\\[0\\]"):
        sir([1], [0.0])
    with pytest.raises(RegistryLabError, match="must match"):
        sir([1, 2], [1.0])


def test_sir_auto_switches_at_ten():
    out = sir([9, 10], [4.5, 5.0])
    assert list(out["method"]) == ["exact", "byar"]
    assert out["sir"].tolist() == [2.0, 2.0]
    # O = 9, exact: limits 4.115, 17.084 (Garwood) / 4.5
    assert out["lower"].iloc[0] == pytest.approx(4.1150 / 4.5, abs=2e-4)
    assert out["upper"].iloc[0] == pytest.approx(17.0848 / 4.5, abs=2e-4)
    lo_b, hi_b = poisson_ci(10, method="byar")
    assert out["lower"].iloc[1] == pytest.approx(float(lo_b) / 5.0)
    assert out["upper"].iloc[1] == pytest.approx(float(hi_b) / 5.0)


def test_sir_keeps_series_index_and_forced_method():
    o = pd.Series([3, 30], index=["band0", "band1"])
    out = sir(o, [1.0, 20.0], method="exact")
    assert list(out.index) == ["band0", "band1"]
    assert set(out["method"]) == {"exact"}
    assert list(out.columns) == ["observed", "expected", "sir", "lower", "upper", "method"]


def test_smoothed_sir_by_hand():
    o, e = np.array([0, 2, 10, 30]), np.array([2.0, 2.0, 10.0, 10.0])
    m = 42 / 24  # overall SIR
    s2 = (2 * m**2 + 2 * (1 - m) ** 2 + 10 * (1 - m) ** 2 + 10 * (3 - m) ** 2) / 24
    a = s2 - m / 6
    want = m + (o / e - m) * a / (a + m / e)
    np.testing.assert_allclose(smoothed_sir(o, e), want, rtol=1e-12)
    # no extra-Poisson variation: everything shrinks to the overall SIR
    np.testing.assert_allclose(smoothed_sir([5, 5, 5], [5.0, 5.0, 5.0]), 1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.floats(0.2, 50.0)), min_size=2, max_size=30))
def test_smoothed_sir_lies_between_raw_and_overall(pairs):
    o = np.array([p[0] for p in pairs], dtype=float)
    e = np.array([p[1] for p in pairs])
    sm = smoothed_sir(o, e)
    m = o.sum() / e.sum()
    r = o / e
    assert np.all(sm >= np.minimum(r, m) - 1e-9) and np.all(sm <= np.maximum(r, m) + 1e-9)


def test_stratum_rates_and_indirect_expected_by_hand():
    ref = pd.DataFrame(
        {
            "age_band": ["0-49", "0-49", "50+", "50+"],
            "sex": ["F", "M", "F", "M"],
            "count": [10, 20, 300, 400],
            "population": [100_000, 100_000, 50_000, 50_000],
        }
    )
    rates = stratum_rates(ref, "count", "population", ["age_band", "sex"])
    assert rates["rate"].tolist() == [1e-4, 2e-4, 6e-3, 8e-3]
    study = pd.DataFrame(
        {
            "area_id": ["A", "A", "A", "B", "B"],
            "age_band": ["0-49", "50+", "50+", "0-49", "50+"],
            "sex": ["F", "F", "M", "M", "M"],
            "population": [1000, 500, 250, 2000, 100],
        }
    )
    exp_rows = indirect_expected(study, rates, ["age_band", "sex"])
    assert exp_rows.tolist() == pytest.approx([0.1, 3.0, 2.0, 0.4, 0.8])
    by_area = indirect_expected(study, rates, ["age_band", "sex"], group="area_id")
    assert by_area.to_dict() == pytest.approx({"A": 5.1, "B": 1.2})


def test_indirect_missing_stratum_names_it():
    rates = pd.DataFrame({"sex": ["F"], "rate": [0.01]})
    study = pd.DataFrame({"sex": ["F", "M"], "population": [10, 10]})
    with pytest.raises(RegistryLabError, match="'sex': 'M'"):
        indirect_expected(study, rates, ["sex"])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=6, max_size=6),
    st.lists(st.integers(1, 10_000), min_size=6, max_size=6),
)
def test_internal_standardisation_expected_equals_observed_total(counts, pops):
    # Two areas × 3 strata; with the study population as its own reference, ΣE = ΣO.
    df = pd.DataFrame(
        {
            "area": ["a"] * 3 + ["b"] * 3,
            "stratum": [1, 2, 3] * 2,
            "count": counts,
            "population": pops,
        }
    )
    rates = stratum_rates(df, "count", "population", ["stratum"])
    exp = indirect_expected(df, rates, ["stratum"], group="area")
    assert exp.sum() == pytest.approx(sum(counts), abs=1e-9)


def test_crude_rate_matches_exact_limits():
    out = crude_rate([0, 10], [20_000, 50_000])
    assert out["rate"].tolist() == [0.0, 20.0]
    assert out["upper"].iloc[0] == pytest.approx(3.689 / 20_000 * 1e5, abs=1e-2)
    assert out["lower"].iloc[1] == pytest.approx(4.795 / 50_000 * 1e5, abs=1e-2)
    assert out["upper"].iloc[1] == pytest.approx(18.390 / 50_000 * 1e5, abs=1e-2)
    with pytest.raises(RegistryLabError, match="population\\[0\\]"):
        crude_rate(3, 0)


def test_dsr_dobson_by_hand():
    d = pd.DataFrame(
        {
            "area": ["x", "x", "y", "y"],
            "age": ["young", "old"] * 2,
            "n": [10, 40, 5, 5],
            "pop": [50_000, 10_000, 20_000, 5_000],
            "esp": [60_000, 40_000] * 2,
        }
    )
    out = direct_standardised_rate(d, "n", "pop", "esp", by="area").set_index("area")
    # area x by hand: DSR = 0.6*10/50000 + 0.4*40/10000 = 0.00172
    # Var = 0.36*10/50000^2 + 0.16*40/10000^2 = 6.544e-8; O = 50, Garwood (37.1112, 65.9189)
    dsr = 0.00172
    s = np.sqrt(6.544e-8 / 50)
    assert out.loc["x", "dsr"] == pytest.approx(172.0)
    assert out.loc["x", "lower"] == pytest.approx((dsr + s * (37.1112 - 50)) * 1e5, abs=0.01)
    assert out.loc["x", "upper"] == pytest.approx((dsr + s * (65.9189 - 50)) * 1e5, abs=0.01)
    assert out.loc["x", "crude_rate"] == pytest.approx(50 / 60_000 * 1e5)
    assert out.loc["y", "count"] == 10 and out.loc["y", "population"] == 25_000
    assert list(out.reset_index().columns) == [
        "area",
        "count",
        "population",
        "crude_rate",
        "dsr",
        "lower",
        "upper",
    ]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 300), st.integers(100, 10**6), st.integers(1, 10**5))
def test_dsr_single_stratum_reduces_to_crude_exact(x, n, w):
    d = pd.DataFrame({"n": [x], "pop": [n], "w": [w]})
    out = direct_standardised_rate(d, "n", "pop", "w")
    cr = crude_rate(x, n)
    assert out["dsr"].iloc[0] == pytest.approx(cr["rate"].iloc[0])
    assert out["lower"].iloc[0] == pytest.approx(cr["lower"].iloc[0], rel=1e-9, abs=1e-9)
    assert out["upper"].iloc[0] == pytest.approx(cr["upper"].iloc[0], rel=1e-9)


def test_dsr_rejects_zero_population():
    d = pd.DataFrame({"age": [1, 2], "n": [1, 2], "pop": [10, 0], "w": [1, 1]})
    with pytest.raises(RegistryLabError, match="population must be > 0"):
        direct_standardised_rate(d, "n", "pop", "w")


def test_docstring_examples_run():
    import doctest

    import registry_lib.stats.rates as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
