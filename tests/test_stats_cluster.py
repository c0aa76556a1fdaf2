"""Tests for registry_lib.stats.cluster: distance bands, SIR by band, homogeneity, trend, Stone."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from registry_lib.errors import RegistryLabError
from registry_lib.stats import (
    area_observed_expected,
    assign_bands,
    band_sir,
    band_sir_from_areas,
    distance_to_nearest_source,
    homogeneity_test,
    poisson_ci,
    stone_test,
    stratum_rates,
    trend_test,
)

# --------------------------------------------------------------------------------------------
# Distances and bands
# --------------------------------------------------------------------------------------------


def test_distance_to_nearest_of_pooled_sources():
    areas = pd.DataFrame(
        {"x": [0.0, 10_000.0, 20_000.0], "y": [0.0, 0.0, 0.0]}, index=["A", "B", "C"]
    )
    sources = pd.DataFrame({"x": [1_000.0, 19_000.0], "y": [0.0, 3_000.0]}, index=["S1", "S2"])
    out = distance_to_nearest_source(areas, sources)
    assert out["nearest_source"].tolist() == ["S1", "S1", "S2"]
    assert out["distance_km"].tolist() == pytest.approx([1.0, 9.0, math.hypot(1, 3)])
    km = distance_to_nearest_source(areas / 1000, sources / 1000, units="km")
    np.testing.assert_allclose(km["distance_km"], out["distance_km"])


def test_haversine_distance_one_degree_of_latitude():
    areas = pd.DataFrame({"lat": [51.0], "lon": [-1.0]})
    src = pd.DataFrame({"lon": [-1.0], "lat": [52.0]})  # column order does not matter
    out = distance_to_nearest_source(areas, src, metric="haversine")
    assert out["distance_km"].iloc[0] == pytest.approx(6367 * math.pi / 180, rel=1e-12)


def test_assign_bands_left_closed_and_outside():
    d = pd.Series([0.0, 1.999, 2.0, 4.99, 5.0, 10.0, 24.999, 25.0, 40.0])
    bands = assign_bands(d)
    assert bands.astype(object).tolist() == [
        "0-2",
        "0-2",
        "2-5",
        "2-5",
        "5-10",
        "10-25",
        "10-25",
        np.nan,
        np.nan,
    ]
    assert list(assign_bands([0.5, 1.5], [0, 1, 2.5]).cat.categories) == ["0-1", "1-2.5"]
    with pytest.raises(RegistryLabError, match="bands_km"):
        assign_bands(d, [0, 5, 2])


# --------------------------------------------------------------------------------------------
# Observed and expected per area, SIR by band
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def toy_study():
    # 4 areas on a line east of a source at (0, 0); 2 strata; rates from a comparison region
    areas = pd.DataFrame(
        {"area_id": ["a1", "a2", "a3", "a4"], "x": [500.0, 3_000.0, 7_000.0, 30_000.0], "y": 0.0}
    )
    population = pd.DataFrame(
        {
            "area_id": np.repeat(["a1", "a2", "a3", "a4"], 2),
            "sex": [1, 2] * 4,
            "age_band": 60,
            "population": [1000, 1000, 2000, 2000, 1500, 500, 4000, 4000],
        }
    )
    region = pd.DataFrame(
        {"sex": [1, 2], "age_band": 60, "count": [200, 100], "population": [100_000, 100_000]}
    )
    rates = stratum_rates(region, "count", "population", ["age_band", "sex"])
    cases = pd.DataFrame({"area_id": ["a1"] * 9 + ["a2"] * 4 + ["a3"] * 3 + ["a4"] * 10})
    return areas, population, rates, cases


def test_area_observed_expected_by_hand(toy_study):
    areas, population, rates, cases = toy_study
    oe = area_observed_expected(cases, population, rates)
    # E = 0.002 * male pop + 0.001 * female pop
    assert oe["expected"].to_dict() == pytest.approx({"a1": 3.0, "a2": 6.0, "a3": 3.5, "a4": 12.0})
    assert oe["observed"].to_dict() == {"a1": 9, "a2": 4, "a3": 3, "a4": 10}
    bad = pd.concat([cases, pd.DataFrame({"area_id": ["zz"]})])
    with pytest.raises(RegistryLabError, match="area 'zz' has cases but no population"):
        area_observed_expected(bad, population, rates)


def test_band_sir_by_hand(toy_study):
    areas, population, rates, cases = toy_study
    res = band_sir(cases, population, rates, areas, [[0.0, 0.0]])
    t = res.table.set_index("band")
    assert t["observed"].tolist() == [9, 4, 3, 0]  # a4 at 30 km is outside 25 km
    assert t["expected"].tolist() == pytest.approx([3.0, 6.0, 3.5, 0.0])
    assert t.loc["0-2", "sir"] == pytest.approx(3.0)
    lo, hi = poisson_ci(9)  # O < 10: exact
    assert t.loc["0-2", "lower"] == pytest.approx(float(lo) / 3.0)
    assert t.loc["0-2", "upper"] == pytest.approx(float(hi) / 3.0)
    assert t.loc["0-2", "method"] == "exact"
    assert np.isnan(t.loc["10-25", "sir"]) and t.loc["10-25", "n_areas"] == 0
    # homogeneity over the three bands with E > 0, by hand
    o, e = np.array([9, 4, 3]), np.array([3.0, 6.0, 3.5])
    fit = e * o.sum() / e.sum()
    x2 = ((o - fit) ** 2 / fit).sum()
    assert res.homogeneity.statistic == pytest.approx(x2)
    assert res.homogeneity.df == 2
    assert res.homogeneity.p_value == pytest.approx(sps.chi2.sf(x2, 2))
    assert list(res.tests["test"]) == ["homogeneity", "trend"]


def test_band_sir_rejects_cases_without_expected():
    with pytest.raises(RegistryLabError, match="band 0-2 km has cases but no expected"):
        band_sir_from_areas([3], [0.0], [1.0])


def test_trend_test_matches_poisson_glm():
    o = np.array([15, 9, 14, 20])
    e = np.array([6.0, 8.0, 15.0, 25.0])
    x = np.arange(4.0)
    t = trend_test(o, e)
    glm = sm.GLM(o, sm.add_constant(x), family=sm.families.Poisson(), offset=np.log(e)).fit()
    assert t.estimate == pytest.approx(math.exp(glm.params[1]), rel=1e-8)
    se = glm.bse[1]
    assert t.lower == pytest.approx(math.exp(glm.params[1] - 1.959964 * se), rel=1e-6)
    # score statistic by hand (Breslow & Day 3.13)
    fit = e * o.sum() / e.sum()
    u = (x * (o - fit)).sum()
    v = (x**2 * fit).sum() - (x * fit).sum() ** 2 / fit.sum()
    assert t.statistic == pytest.approx(u * u / v)
    assert t.p_value == pytest.approx(sps.chi2.sf(u * u / v, 1))
    assert t.p_value_one_sided == pytest.approx(sps.norm.cdf(u / math.sqrt(v)))
    # the score and likelihood-ratio tests agree roughly at this size
    null = sm.GLM(o, np.ones((4, 1)), family=sm.families.Poisson(), offset=np.log(e)).fit()
    lr = 2 * (glm.llf - null.llf)
    assert t.statistic == pytest.approx(lr, rel=0.15)


def test_trend_and_homogeneity_calibrated_under_null():
    rng = np.random.default_rng(12)
    e = np.array([3.0, 8.0, 15.0, 30.0])
    reps = 2000
    draws = rng.poisson(e * 1.3, size=(reps, 4))  # constant SIR 1.3: both nulls hold
    p_trend = np.array([trend_test(d, e).p_value for d in draws])
    p_hom = np.array([homogeneity_test(d, e).p_value for d in draws])
    assert 0.035 <= np.mean(p_trend <= 0.05) <= 0.065
    assert 0.035 <= np.mean(p_hom <= 0.05) <= 0.065


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 60), min_size=2, max_size=6),
    st.lists(st.floats(0.5, 40.0), min_size=6, max_size=6),
)
def test_homogeneity_zero_when_sirs_equal_and_scale_invariant(o, e_all):
    o = np.array(o, dtype=float)
    e = np.array(e_all[: len(o)])
    h = homogeneity_test(o, e)
    if o.sum() == 0:
        return
    # scaling every E leaves the homogeneity and trend tests unchanged
    h2 = homogeneity_test(o, e * 3.7)
    assert h.statistic == pytest.approx(h2.statistic, rel=1e-9, abs=1e-12)
    t1, t2 = trend_test(o, e), trend_test(o, e * 3.7)
    assert t1.statistic == pytest.approx(t2.statistic, rel=1e-9, abs=1e-12)
    # O proportional to E gives zero statistics
    assert homogeneity_test(e * 2, e).statistic == pytest.approx(0, abs=1e-9)
    assert trend_test(e * 2, e).statistic == pytest.approx(0, abs=1e-9)


# --------------------------------------------------------------------------------------------
# Stone's test
# --------------------------------------------------------------------------------------------


def stone_exact_p(o, e):
    """Exact conditional p-value by enumerating every multinomial outcome."""
    n, k = int(sum(o)), len(o)
    probs = np.asarray(e) / np.sum(e)
    cum_e = np.cumsum(e)

    def stat(x):
        return max(np.cumsum(x) / cum_e)

    t = stat(o)
    p = 0.0
    for cut in itertools.combinations(range(n + k - 1), k - 1):
        x = np.diff([-1, *cut, n + k - 1]) - 1
        if stat(x) >= t - 1e-12:
            p += sps.multinomial.pmf(x, n, probs)
    return p


def test_stone_statistic_by_hand_and_exact_p():
    o = [3, 1, 0, 1]
    e = [0.8, 1.2, 1.5, 1.5]
    d = [0.4, 1.1, 2.5, 4.0]
    res = stone_test(o, e, d, n_sim=9999, seed=4)
    # cumulative O/E: 3/0.8, 4/2.0, 4/3.5, 5/5.0 -> max 3.75 at the first area
    assert res.statistic == pytest.approx(3.75)
    assert res.n_units == 1 and res.distance_km == 0.4
    assert res.table["cum_sir"].tolist() == pytest.approx([3.75, 2.0, 4 / 3.5, 1.0])
    p_exact = stone_exact_p(o, e)
    assert abs(res.p_value - p_exact) <= 4 * math.sqrt(p_exact * (1 - p_exact) / 9999)


def test_stone_ties_enter_together():
    res = stone_test([4, 0, 1], [1.0, 1.0, 1.0], [1.0, 1.0, 2.0], n_sim=0)
    # units 1 and 2 are both at 1 km: the first set is both (4/2), not unit 1 alone (4/1)
    assert res.statistic == pytest.approx(2.0)
    assert res.n_units == 2


def test_stone_null_calibration_both_nulls():
    rng = np.random.default_rng(8)
    e = rng.uniform(0.5, 4.0, 25)
    d = np.sort(rng.uniform(0, 20, 25))
    for null in ("multinomial", "poisson"):
        ps = np.array(
            [
                stone_test(rng.poisson(e), e, d, n_sim=199, seed=i, null=null).p_value
                for i in range(400)
            ]
        )
        assert 0.02 <= np.mean(ps <= 0.05) <= 0.08, null


def test_stone_detects_excess_near_source():
    e = np.full(30, 2.0)
    d = np.arange(30.0)
    rng = np.random.default_rng(1)
    o = rng.poisson(e * np.where(d < 3, 4.0, 1.0))
    res = stone_test(o, e, d, n_sim=999, seed=2)
    assert res.p_value <= 0.01
    assert res.n_units <= 5


def test_stone_bad_inputs():
    with pytest.raises(RegistryLabError, match="null"):
        stone_test([1], [1.0], [0.0], null="binomial")
    with pytest.raises(RegistryLabError, match="whole numbers"):
        stone_test([1.5], [1.0], [0.0])


def test_docstring_examples_run():
    import doctest

    import registry_lib.stats.cluster as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
