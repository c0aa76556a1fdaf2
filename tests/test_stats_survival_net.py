"""Net survival: Pohar Perme, Ederer II, Lexis background hazards, ICSS standardisation.

Hand computations follow the estimator's definition (module docstring of
``registry_lib.stats.survival_net``); the validation tests simulate patients whose background
deaths come from a life table (simulated independently, day by day) and whose excess hazard
is known, so the true net survival is known analytically.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from registry_lib.errors import RegistryLabError
from registry_lib.stats.survival import (
    BackgroundHazards,
    age_standardised_net_survival,
    decimal_year,
    expected_survival,
    net_survival,
    synthetic_life_table,
)

# age-band weights used as a test input (the shape of ICSS 1; the published values live in
# params/epidemiology/standard_populations.yaml)
ICSS_LIKE = {15: 0.07, 45: 0.12, 55: 0.23, 65: 0.29, 75: 0.29}


def _flat_life_table(qx_by_sex: dict[int, float], years=(2000, 2001)) -> pd.DataFrame:
    return pd.DataFrame([(y, s, a, q) for y in range(years[0], years[1] + 1)
                         for s, q in qx_by_sex.items() for a in range(101)],
                        columns=["year", "sex", "age", "qx"])


TINY = pd.DataFrame({"time": [0.5, 1.5, 2.0, 3.0], "dead": [1, 0, 1, 1], "sex": [1, 2, 1, 2],
                     "age": [50.0, 60.0, 70.0, 80.0], "year": 2000.2})


def test_pohar_perme_tiny_example_by_hand():
    lt = _flat_life_table({1: 0.1, 2: 0.2})
    m1, m2 = -math.log(0.9), -math.log(0.8)
    e = math.exp
    y0 = 0.5 * (1 + e(0.5 * m1)) / 2 + (1 + e(m2)) / 2 + (1 + e(m1)) / 2 + (1 + e(m2)) / 2
    ex0 = (e(0.5 * m1) - 1) + (e(m2) - 1) + (e(m1) - 1) + (e(m2) - 1)
    d0, v0 = e(0.5 * m1), e(m1)
    y1 = (0.5 * (e(m2) + e(1.5 * m2)) / 2 + (e(m1) + e(2 * m1)) / 2
          + (e(m2) + e(2 * m2)) / 2)
    ex1 = (e(1.5 * m2) - e(m2)) + (e(2 * m1) - e(m1)) + (e(2 * m2) - e(m2))
    d1, v1 = e(2 * m1), e(4 * m1)
    lam1 = (d0 - ex0) / y0
    lam2 = lam1 + (d1 - ex1) / y1
    var2 = v0 / y0**2 + v1 / y1**2
    res = net_survival(TINY, lt, strata=("sex",), times=[1, 1.5, 2], step=1.0, ci="plain")
    tab = res.table.set_index("time")
    assert tab.loc[1.0, "net_survival"] == pytest.approx(math.exp(-lam1), rel=1e-12)
    assert tab.loc[1.5, "net_survival"] == pytest.approx(
        math.exp(-(lam1 + 0.5 * (lam2 - lam1))), rel=1e-12)
    assert tab.loc[2.0, "net_survival"] == pytest.approx(math.exp(-lam2), rel=1e-12)
    s2 = math.exp(-lam2)
    assert tab.loc[2.0, "se"] == pytest.approx(s2 * math.sqrt(var2), rel=1e-12)
    z = 1.959963984540054
    assert tab.loc[2.0, "lower"] == pytest.approx(s2 - z * s2 * math.sqrt(var2), rel=1e-9)
    assert tab.loc[2.0, "n_at_risk"] == 3 and tab.loc[2.0, "n_events"] == 2
    # log-log limits: exp(-L exp(+-z sd/L))
    ll = net_survival(TINY, lt, strata=("sex",), times=[2], step=1.0).table.iloc[0]
    sd = math.sqrt(var2)
    assert ll["lower"] == pytest.approx(math.exp(-lam2 * math.exp(z * sd / lam2)), rel=1e-9)
    assert ll["upper"] == pytest.approx(math.exp(-lam2 * math.exp(-z * sd / lam2)), rel=1e-9)


def test_ederer2_tiny_example_by_hand():
    lt = _flat_life_table({1: 0.1, 2: 0.2})
    m1, m2 = -math.log(0.9), -math.log(0.8)
    y0, ex0 = 3.5, 0.5 * m1 + m2 + m1 + m2
    y1, ex1 = 2.5, 0.5 * m2 + m1 + m2
    lam2 = (1 - ex0) / y0 + (1 - ex1) / y1
    res = net_survival(TINY, lt, strata=("sex",), times=[2], step=1.0, method="ederer2")
    row = res.table.iloc[0]
    assert row["net_survival"] == pytest.approx(math.exp(-lam2), rel=1e-12)
    assert row["se"] == pytest.approx(math.exp(-lam2) * math.sqrt(1 / y0**2 + 1 / y1**2))
    assert row["method"] == "ederer2"


def _exact_pohar_perme(times, dead, mu, t):
    """Continuous-time Pohar Perme with constant background hazards (numerical integral)."""
    times, dead, mu = map(np.asarray, (times, dead, mu))

    def yw(u):
        at = times >= u
        return np.sum(np.exp(mu[at] * u))

    def integrand(u):
        at = times >= u
        return np.sum(mu[at] * np.exp(mu[at] * u)) / np.sum(np.exp(mu[at] * u))

    knots = np.unique(np.concatenate([[0.0], times[times < t], [t]]))
    expected = sum(integrate.quad(integrand, a + 1e-12, b - 1e-12)[0]
                   for a, b in zip(knots[:-1], knots[1:], strict=True))
    events = sum(np.exp(mu[i] * times[i]) / yw(times[i]) for i in np.flatnonzero(dead)
                 if times[i] <= t)
    return math.exp(-(events - expected))


def test_daily_grid_matches_continuous_pohar_perme():
    days = np.array([30, 200, 200, 365, 500, 700, 900, 1100])
    df = pd.DataFrame({"time": days / 365.25, "dead": [1, 1, 0, 1, 0, 1, 1, 0],
                       "sex": [1, 2, 1, 2, 1, 2, 2, 1], "age": 70.0, "year": 2000.0})
    lt = _flat_life_table({1: 0.05, 2: 0.15}, years=(2000, 2005))
    mu = np.where(df["sex"] == 1, -math.log(0.95), -math.log(0.85))
    res = net_survival(df, lt, strata=("sex",), times=[1, 2.5], step="day").table
    for t, s in zip([1, 2.5], res["net_survival"], strict=True):
        assert s == pytest.approx(_exact_pohar_perme(df["time"], df["dead"], mu, t), abs=1e-3)


def test_lexis_path_crosses_birthdays_and_new_years():
    ages, years = np.arange(101), np.arange(2005, 2016)
    a, y = np.meshgrid(ages, years, indexing="ij")
    mu = 0.01 + 0.001 * (a - 60).clip(0) + 0.002 * (y - 2005)
    lt = pd.DataFrame({"age": a.ravel(), "year": y.ravel(), "qx": 1 - np.exp(-mu.ravel())})

    def m(age, year):
        return 0.01 + 0.001 * max(age - 60, 0) + 0.002 * (year - 2005)

    df = pd.DataFrame({"age": [60.75], "year": [2010.5]})
    lam_04 = 0.25 * m(60, 2010) + 0.15 * m(61, 2010)
    lam_1 = 0.25 * m(60, 2010) + 0.25 * m(61, 2010) + 0.5 * m(61, 2011)
    lam_2 = lam_1 + 0.25 * m(61, 2011) + 0.25 * m(62, 2011) + 0.5 * m(62, 2012)
    sp = expected_survival(df, lt, [0.4, 1, 2], strata=())
    assert sp[0] == pytest.approx(np.exp(-np.array([lam_04, lam_1, lam_2])), rel=1e-12)
    # beyond the table's last year the last year's rates are used
    far = expected_survival(pd.DataFrame({"age": [60.0], "year": [2015.0]}), lt, [2], strata=())
    assert far[0, 0] == pytest.approx(math.exp(-(m(60, 2015) + m(61, 2015))), rel=1e-12)


def test_background_hazards_validation():
    lt = _flat_life_table({1: 0.1, 2: 0.2})
    with pytest.raises(RegistryLabError, match="no qx for cell"):
        BackgroundHazards.from_life_table(lt.drop(index=5), strata=("sex",))
    with pytest.raises(RegistryLabError, match="qx must be in"):
        BackgroundHazards.from_life_table(lt.assign(qx=1.0), strata=("sex",))
    with pytest.raises(RegistryLabError, match="more than once"):
        BackgroundHazards.from_life_table(pd.concat([lt, lt.iloc[:1]]), strata=("sex",))
    bh = BackgroundHazards.from_life_table(lt, strata=("sex",))
    with pytest.raises(RegistryLabError, match="no life table for"):
        bh.stratum_index(pd.DataFrame({"sex": [1, 3]}))
    with pytest.raises(RegistryLabError, match="must be 0/1"):
        net_survival(TINY.assign(dead=[1, 2, 0, 0]), lt, strata=("sex",))
    with pytest.raises(RegistryLabError, match="finite number of years"):
        net_survival(TINY.assign(time=[1, -1, 0, 0]), lt, strata=("sex",))
    with pytest.raises(RegistryLabError, match="step"):
        net_survival(TINY, lt, strata=("sex",), step="fortnight")


def test_decimal_year():
    assert decimal_year(pd.to_datetime(["2020-01-01", "2020-12-31", "2021-07-02"])).tolist() == \
        pytest.approx([2020.0, 2020 + 365 / 366, 2021 + 182 / 365])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 700), st.booleans()), min_size=2, max_size=25))
def test_no_background_mortality_gives_nelson_aalen(rows):
    days = np.array([r[0] for r in rows])
    dead = np.array([r[1] for r in rows], dtype=int)
    df = pd.DataFrame({"time": days / 365.25, "dead": dead, "age": 50.0, "year": 2000.0})
    lt = pd.DataFrame({"year": 2000, "age": range(101), "qx": 0.0})
    t = days.max() / 365.25  # after the last exit the curve is not estimable (NaN)
    na = sum(dead[days == d].sum() / (days >= d).sum() for d in np.unique(days[dead == 1]))
    for method in ("pohar_perme", "ederer2"):
        s = net_survival(df, lt, strata=(), times=[t], step="day", method=method).table
        assert s["net_survival"].iloc[0] == pytest.approx(math.exp(-na), rel=1e-9)


# ---------------------------------------------------------------------------------------
# validation by simulation
# ---------------------------------------------------------------------------------------
def _simulate(n, seed, lt, excess, horizon=11.0):
    """Patients with background deaths from ``lt`` (simulated day by day) + excess hazard."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 90, n)
    year = rng.uniform(2005, 2015, n)
    sex = rng.integers(1, 3, n)
    dep = rng.integers(1, 6, n)
    y0 = int(lt["year"].min())
    ny = int(lt["year"].max()) - y0 + 1
    mu = (-np.log1p(-lt.sort_values(["year", "sex", "deprivation_quintile", "age"])["qx"]
                    .to_numpy())).reshape(ny, 2, 5, 101)
    e = rng.exponential(1.0, n)
    cum = np.zeros(n)
    t_bg = np.full(n, np.inf)
    dt = 1 / 365.25
    for k in range(int(horizon / dt) + 1):
        t = k * dt
        yi = np.clip(np.floor(year + t).astype(int) - y0, 0, ny - 1)
        ai = np.clip(np.floor(age + t).astype(int), 0, 100)
        h = mu[yi, sex - 1, dep - 1, ai]
        new = cum + h * dt
        hit = (new >= e) & np.isinf(t_bg)
        t_bg[hit] = t + (e[hit] - cum[hit]) / h[hit]
        cum = new
    lam = excess(age)
    t_ex = rng.exponential(1 / lam)
    cens = rng.uniform(4, horizon, n)
    time = np.minimum.reduce([t_bg, t_ex, cens])
    return pd.DataFrame({"time": time, "dead": (time < cens).astype(int), "age": age,
                         "year": year, "sex": sex, "deprivation_quintile": dep, "lam": lam})


@pytest.fixture(scope="module")
def life_table():
    return synthetic_life_table((1995, 2040))


@pytest.mark.slow
def test_constant_excess_hazard_recovered(life_table):
    lam = 0.1
    df = _simulate(4000, 2024, life_table, lambda a: np.full(a.shape, lam))
    res = net_survival(df, life_table, times=[1, 5, 10])
    truth = np.exp(-lam * res.table["time"].to_numpy())
    assert (res.table["lower"].to_numpy() <= truth).all()
    assert (truth <= res.table["upper"].to_numpy()).all()
    # the same on a monthly grid, to about 0.002
    monthly = net_survival(df, life_table, times=[1, 5, 10], step="month")
    assert monthly.table["net_survival"].to_numpy() == pytest.approx(
        res.table["net_survival"].to_numpy(), abs=0.002)


@pytest.mark.slow
def test_age_dependent_excess_pohar_perme_unbiased_ederer2_not(life_table):
    # excess hazard 0.03 under 65, 0.4 from 65: the true (marginal) net survival of the cohort
    # is mean_i exp(-lam_i t). Older patients also die more of other causes, so they leave
    # the risk set early and Ederer II over-estimates net survival; Pohar Perme reweights.
    df = _simulate(6000, 7, life_table, lambda a: np.where(a < 65, 0.03, 0.4))
    times = np.array([1.0, 5.0, 10.0])
    truth = np.exp(-np.outer(df["lam"], times)).mean(axis=0)
    pp = net_survival(df, life_table, times=times, step="week").table
    e2 = net_survival(df, life_table, times=times, step="week", method="ederer2").table
    assert (pp["lower"].to_numpy() <= truth).all() and (truth <= pp["upper"].to_numpy()).all()
    assert e2["net_survival"].iloc[2] - truth[2] > 0.03
    assert e2["lower"].iloc[2] > truth[2]


@pytest.mark.slow
def test_pohar_perme_coverage_over_seeds(life_table):
    lam, times = 0.15, np.array([1.0, 5.0, 10.0])
    covered = []
    for seed in range(20):
        df = _simulate(1500, 100 + seed, life_table, lambda a: np.full(a.shape, lam))
        tab = net_survival(df, life_table, times=times, step="week").table
        truth = np.exp(-lam * times)
        covered.append((tab["lower"].to_numpy() <= truth) & (truth <= tab["upper"].to_numpy()))
    assert np.mean(covered, axis=0).min() >= 0.85


# ---------------------------------------------------------------------------------------
# age standardisation
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ages_df(life_table):
    rng = np.random.default_rng(3)
    n = 3000
    age = rng.uniform(15, 95, n)
    t = rng.exponential(1 / (0.05 + 0.004 * (age - 15)))
    c = rng.uniform(2, 6, n)
    return pd.DataFrame({"time": np.minimum(t, c), "dead": (t < c).astype(int), "age": age,
                         "year": rng.uniform(2010, 2015, n), "sex": rng.integers(1, 3, n),
                         "deprivation_quintile": rng.integers(1, 6, n)})


def test_traditional_standardisation_is_weighted_band_average(ages_df, life_table):
    res = age_standardised_net_survival(ages_df, life_table, ICSS_LIKE, times=[1, 5],
                                        step="month")
    lower = np.array(sorted(ICSS_LIKE))
    band = lower[np.searchsorted(lower, ages_df["age"], side="right") - 1]
    s, v = np.zeros(2), np.zeros(2)
    w = np.array([ICSS_LIKE[k] for k in sorted(ICSS_LIKE)])
    w = w / w.sum()
    for b, wb in zip(lower, w, strict=True):
        tab = net_survival(ages_df[band == b], life_table, times=[1, 5], step="month").table
        s += wb * tab["net_survival"].to_numpy()
        v += (wb * tab["se"].to_numpy()) ** 2
    assert res.table["net_survival"].to_numpy() == pytest.approx(s, rel=1e-12)
    assert res.table["se"].to_numpy() == pytest.approx(np.sqrt(v), rel=1e-12)
    assert res.by_age["age_band"].nunique() == 5 and res.excluded == 0
    assert res.table["method"].iloc[0] == "pohar_perme age-standardised (traditional)"


def test_brenner_with_observed_shares_equals_crude(ages_df, life_table):
    lower = np.array(sorted(ICSS_LIKE))
    band = lower[np.searchsorted(lower, ages_df["age"], side="right") - 1]
    shares = pd.Series(band).value_counts(normalize=True).to_dict()
    res = age_standardised_net_survival(ages_df, life_table, shares, approach="brenner",
                                        times=[1, 5], step="month")
    crude = net_survival(ages_df, life_table, times=[1, 5], step="month")
    assert res.table["net_survival"].to_numpy() == pytest.approx(
        crude.table["net_survival"].to_numpy(), rel=1e-10)
    icss = age_standardised_net_survival(ages_df, life_table, ICSS_LIKE, approach="brenner",
                                         times=[1, 5], step="month")
    trad = age_standardised_net_survival(ages_df, life_table, ICSS_LIKE, times=[1, 5],
                                         step="month")
    assert icss.table["net_survival"].to_numpy() == pytest.approx(
        trad.table["net_survival"].to_numpy(), abs=0.02)


def test_standardisation_errors(ages_df, life_table):
    young = ages_df[ages_df["age"] < 60]
    with pytest.raises(RegistryLabError, match="age band starting at 65 has no patients"):
        age_standardised_net_survival(young, life_table, ICSS_LIKE, times=[1], step="month")
    two = pd.DataFrame({"standard": ["icss1", "icss2"], "age_band": [15, 15],
                        "weight": [1.0, 1.0]})
    with pytest.raises(RegistryLabError, match="several standards"):
        age_standardised_net_survival(ages_df, life_table, two, times=[1])
    kids = ages_df.assign(age=ages_df["age"] - 5)
    res = age_standardised_net_survival(kids, life_table, ICSS_LIKE, times=[1], step="month")
    assert res.excluded == int((kids["age"] < 15).sum()) > 0
