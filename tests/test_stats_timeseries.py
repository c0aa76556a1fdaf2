"""Tests for registry_lib.stats.timeseries and registry_lib.stats.counterfactual: monthly grid, counterfactual, segmented regression.

The statistical tests simulate monthly series whose truth is known: a baseline with trend,
seasonality and (optionally) negative-binomial overdispersion, and a pandemic in which each
counterfactual case is kept with probability equal to the injected monthly multiplier. The true
cumulative deficit is the number of cases removed. Replicates are fitted in one grouped call.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_lib.errors import RegistryLabError
from registry_lib.stats.counterfactual import CounterfactualModel, fit_counterfactual
from registry_lib.stats.timeseries import (
    monthly_counts,
    newey_west_lags,
    seasonal_design,
    segmented_regression,
    to_month,
)

MONTHS = pd.period_range("2015-01", "2021-12", freq="M")
BASELINE = ("2015-01", "2020-02")
DEFICIT_WINDOW = ("2020-03", "2020-12")
APRIL = "2020-04"
TRUE_APRIL = 0.6
COVID = {"2020-03": 0.9, "2020-04": TRUE_APRIL, "2020-05": 0.7, "2020-06": 0.8}
COVID.update({str(p): 0.9 for p in pd.period_range("2020-07", "2020-12", freq="M")})


def _multipliers(effects: dict[str, float]) -> np.ndarray:
    m = np.ones(len(MONTHS))
    for month, value in effects.items():
        m[MONTHS.get_loc(pd.Period(month, freq="M"))] = value
    return m


def _expected_counts(daily_rate: float) -> np.ndarray:
    """Counterfactual monthly means: trend +2%/year, seasonality, days in month."""
    t = np.arange(len(MONTHS)) / 12.0
    moy = MONTHS.month.to_numpy()
    season = 0.08 * np.sin(2 * np.pi * (moy - 1) / 12) + 0.05 * np.cos(4 * np.pi * (moy - 1) / 12)
    return daily_rate * MONTHS.days_in_month.to_numpy() * np.exp(0.02 * t + season)


def simulate_replicates(
    n: int, seed: int, *, daily_rate: float = 30.0, alpha: float = 0.0,
    effects: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Counts table with a ``replicate`` column, plus true deficits and the multipliers."""
    rng = np.random.default_rng(seed)
    mu = np.broadcast_to(_expected_counts(daily_rate), (n, len(MONTHS)))
    if alpha > 0:
        mu = mu * rng.gamma(1 / alpha, alpha, mu.shape)
    counterfactual = rng.poisson(mu)
    mult = _multipliers(effects if effects is not None else COVID)
    observed = rng.binomial(counterfactual, mult)
    window = (MONTHS >= pd.Period(DEFICIT_WINDOW[0], "M")) & (
        MONTHS <= pd.Period(DEFICIT_WINDOW[1], "M")
    )
    true_deficit = (counterfactual - observed)[:, window].sum(axis=1)
    counts = pd.DataFrame(
        {
            "replicate": np.repeat(np.arange(n), len(MONTHS)),
            "month": np.tile(MONTHS.to_timestamp(), n),
            "days_in_month": np.tile(MONTHS.days_in_month.to_numpy(), n),
            "count": observed.ravel(),
        }
    )
    return counts, true_deficit, mult


def _coverage(lower, upper, truth) -> float:
    lower, upper, truth = map(np.asarray, (lower, upper, truth))
    return float(np.mean((lower <= truth) & (truth <= upper)))


# --------------------------------------------------------------------------------------------
# monthly grid
# --------------------------------------------------------------------------------------------
def test_monthly_counts_fills_zero_months_and_groups():
    df = pd.DataFrame(
        {
            "diagnosis_date": pd.to_datetime(["2020-01-31", "2020-01-02", "2020-03-15"]),
            "site": ["C50", "C50", "C18"],
        }
    )
    out = monthly_counts(df, by="site", levels={"site": ["C18", "C34", "C50"]})
    assert out.columns.tolist() == ["site", "month", "days_in_month", "count"]
    assert len(out) == 3 * 3
    table = out.pivot(index="month", columns="site", values="count")
    assert table.loc["2020-01-01"].tolist() == [0, 0, 2]
    assert table.loc["2020-02-01"].tolist() == [0, 0, 0]
    assert table.loc["2020-03-01"].tolist() == [1, 0, 0]
    assert out.loc[out.month == "2020-02-01", "days_in_month"].unique().tolist() == [29]


def test_monthly_counts_days_in_month_and_window():
    df = pd.DataFrame({"d": pd.to_datetime(["2018-12-31", "2019-02-10", "2021-01-01"])})
    out = monthly_counts(df, "d", start="2019-01", end="2020-12")
    assert len(out) == 24
    assert out["count"].sum() == 1  # the two dates outside the window are not counted
    feb = out.loc[out.month.dt.month == 2, "days_in_month"].tolist()
    assert feb == [28, 29]


def test_monthly_counts_errors_name_the_record():
    df = pd.DataFrame({"diagnosis_date": ["2020-01-01", None], "site": ["C50", "C18"]},
                      index=[10, 11])
    with pytest.raises(RegistryLabError, match="index 11"):
        monthly_counts(df)
    df = pd.DataFrame({"diagnosis_date": ["2020-01-01", "2020-02-01"], "site": ["C50", None]},
                      index=[5, 6])
    with pytest.raises(RegistryLabError, match="index 6.*site"):
        monthly_counts(df, by="site")
    df = pd.DataFrame({"diagnosis_date": ["2020-01-01"], "site": ["C61"]})
    with pytest.raises(RegistryLabError, match="not in levels"):
        monthly_counts(df, by="site", levels={"site": ["C50"]})
    with pytest.raises(RegistryLabError, match="missing column"):
        monthly_counts(df, by="stage")
    with pytest.raises(RegistryLabError, match="after end"):
        monthly_counts(df, start="2021-01", end="2020-01")


@settings(max_examples=40, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 1500), min_size=1, max_size=60),
    groups=st.lists(st.sampled_from(["a", "b", "c"]), min_size=60, max_size=60),
)
def test_monthly_counts_conserves_events_on_a_complete_grid(offsets, groups):
    dates = pd.Timestamp("2016-01-01") + pd.to_timedelta(offsets, unit="D")
    df = pd.DataFrame({"diagnosis_date": dates, "g": groups[: len(offsets)]})
    out = monthly_counts(df, by="g")
    assert out["count"].sum() == len(df)
    n_months = len(pd.period_range(dates.min(), dates.max(), freq="M"))
    assert len(out) == n_months * df["g"].nunique()
    assert not out.duplicated(["g", "month"]).any()
    assert (out["count"] >= 0).all()


def test_seasonal_design_terms():
    X = seasonal_design(["2019-01", "2019-04", "2020-01"], "2019-01", "fourier", 2)
    assert X.columns.tolist() == ["const", "trend", "sin_1", "cos_1", "sin_2", "cos_2"]
    np.testing.assert_allclose(X["trend"], [0.0, 0.25, 1.0])
    np.testing.assert_allclose(X.loc[1, ["sin_1", "cos_1", "sin_2", "cos_2"]], [1, 0, 0, -1],
                               atol=1e-12)
    M = seasonal_design(["2019-01", "2019-02", "2019-12"], "2019-01", "month")
    assert M.shape == (3, 13)
    assert M.loc[0, "month_02":].sum() == 0  # January is the reference
    assert M.loc[1, "month_02"] == 1 and M.loc[2, "month_12"] == 1
    assert seasonal_design(["2019-01"], "2019-01", "fourier", 6).columns[-1] == "cos_6"
    with pytest.raises(RegistryLabError, match="harmonics"):
        seasonal_design(["2019-01"], "2019-01", "fourier", 7)
    with pytest.raises(RegistryLabError, match="seasonality"):
        seasonal_design(["2019-01"], "2019-01", "weekly")


def test_newey_west_lag_rule_and_month_parsing():
    assert [newey_west_lags(n) for n in (24, 62, 100, 120)] == [2, 3, 4, 4]
    assert str(to_month("2020-04-30")) == "2020-04"
    with pytest.raises(RegistryLabError, match="not a month"):
        to_month("April")


# --------------------------------------------------------------------------------------------
# days-in-month offset (exact, noise-free)
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seasonality", ["none", "fourier", "month"])
def test_offset_gives_exact_february_counts(seasonality):
    """A constant daily rate of 10: expected Feb 2020 = 290 (leap), Feb 2021 = 280, Mar = 310."""
    s = pd.DataFrame({"month": MONTHS.to_timestamp(), "days_in_month": MONTHS.days_in_month})
    s["count"] = 10 * s["days_in_month"]
    cf = fit_counterfactual(s, BASELINE, family="poisson", seasonality=seasonality,
                            n_sims=200, seed=1)
    got = cf.monthly.set_index("month")["expected"]
    assert got["2020-02-01"] == pytest.approx(290, rel=1e-6)
    assert got["2021-02-01"] == pytest.approx(280, rel=1e-6)
    assert got["2021-03-01"] == pytest.approx(310, rel=1e-6)
    np.testing.assert_allclose(cf.monthly["oe_ratio"], 1.0, rtol=1e-6)
    assert cf.cumulative_missing("2020-03", "2020-12")["missing"].iloc[0] == pytest.approx(
        0, abs=1e-6
    )


# --------------------------------------------------------------------------------------------
# truth recovery
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.0, 0.002])
def test_counterfactual_recovers_injected_multiplier_and_deficit(alpha):
    counts, true_deficit, _ = simulate_replicates(50, seed=11 + int(alpha * 1e4), alpha=alpha)
    cf = fit_counterfactual(counts, BASELINE, n_sims=500, seed=5)
    april = cf.ratio(APRIL)
    missing = cf.cumulative_missing(*DEFICIT_WINDOW)
    cov_ratio = _coverage(april.oe_lower, april.oe_upper, TRUE_APRIL)
    cov_deficit = _coverage(missing.missing_lower, missing.missing_upper, true_deficit)
    assert cov_ratio >= 0.87, cov_ratio
    assert cov_deficit >= 0.87, cov_deficit
    # unbiased on average: mean recovered vs truth
    assert april.oe_ratio.mean() == pytest.approx(TRUE_APRIL, abs=0.01)
    assert missing.missing.mean() == pytest.approx(true_deficit.mean(), rel=0.04)
    if alpha > 0:  # the moment estimator of the NB dispersion is roughly unbiased
        alphas = [fit.alpha for fit in cf.fits.values()]
        assert np.mean(alphas) == pytest.approx(alpha, rel=0.35)


@pytest.mark.slow
def test_null_effect_gives_no_significant_deficit_in_90pct_of_seeds():
    counts, true_deficit, _ = simulate_replicates(100, seed=23, alpha=0.002, effects={})
    cf = fit_counterfactual(counts, BASELINE, n_sims=500, seed=9)
    missing = cf.cumulative_missing(*DEFICIT_WINDOW)
    no_deficit = (missing.missing_lower <= 0) & (missing.missing_upper >= 0)
    assert no_deficit.mean() >= 0.90, no_deficit.mean()
    april = cf.ratio(APRIL)
    assert ((april.oe_lower <= 1) & (april.oe_upper >= 1)).mean() >= 0.90


def test_simulated_deficit_ci_is_narrower_than_summed_monthly_bounds():
    counts, true_deficit, _ = simulate_replicates(1, seed=3, alpha=0.002)
    cf = fit_counterfactual(counts, BASELINE, n_sims=2000, seed=1)
    m = cf.cumulative_missing(*DEFICIT_WINDOW).iloc[0]
    window = cf.monthly.month.between(*[to_month(w).to_timestamp() for w in DEFICIT_WINDOW])
    months = cf.monthly.loc[window]
    summed_width = (months.pi_upper - months.pi_lower).sum()
    sim_width = m.missing_upper - m.missing_lower
    assert sim_width < 0.6 * summed_width
    assert m.missing_lower < m.missing < m.missing_upper
    assert m.expected == pytest.approx(months.expected.sum())
    assert m.observed == months.observed.sum()
    assert m.missing_pct == pytest.approx(100 * m.missing / m.expected)


@pytest.mark.slow
def test_sarimax_alternative_recovers_multiplier_and_deficit():
    counts, true_deficit, _ = simulate_replicates(20, seed=31, alpha=0.001)
    cf = fit_counterfactual(counts, BASELINE, method="sarimax", n_sims=500, seed=2)
    april = cf.ratio(APRIL)
    missing = cf.cumulative_missing(*DEFICIT_WINDOW)
    assert _coverage(april.oe_lower, april.oe_upper, TRUE_APRIL) >= 0.80
    assert _coverage(missing.missing_lower, missing.missing_upper, true_deficit) >= 0.80
    assert april.oe_ratio.mean() == pytest.approx(TRUE_APRIL, abs=0.015)


def test_intervals_are_ordered_and_baseline_labelled():
    counts, _, _ = simulate_replicates(2, seed=4)
    cf = fit_counterfactual(counts, BASELINE, n_sims=300, seed=1)
    m = cf.monthly
    assert (m.expected_lower <= m.expected).all() and (m.expected <= m.expected_upper).all()
    assert (m.pi_lower <= m.expected_lower).all() and (m.expected_upper <= m.pi_upper).all()
    assert (m.oe_lower <= m.oe_upper).all()
    assert m.loc[m.month <= "2020-02-01", "period"].eq("baseline").all()
    assert m.loc[m.month >= "2020-03-01", "period"].eq("after").all()
    assert set(cf.ratio(APRIL).replicate) == {0, 1}
    coefs = cf.coefficients()
    assert coefs.columns[0] == "replicate"
    assert len(coefs) == 2 * 13  # const, trend, 11 month terms


def test_same_seed_same_results_and_groups_are_independent():
    counts, _, _ = simulate_replicates(3, seed=8)
    a = fit_counterfactual(counts, BASELINE, n_sims=300, seed=4)
    b = fit_counterfactual(counts, BASELINE, n_sims=300, seed=4)
    pd.testing.assert_frame_equal(a.monthly, b.monthly)
    alone = fit_counterfactual(counts[counts.replicate == 1], BASELINE, n_sims=300, seed=4)
    pd.testing.assert_frame_equal(
        alone.monthly.reset_index(drop=True),
        a.monthly[a.monthly.replicate == 1].reset_index(drop=True),
    )
    c = fit_counterfactual(counts, BASELINE, n_sims=300, seed=5)
    assert not np.allclose(a.monthly.pi_lower, c.monthly.pi_lower)


def test_counterfactual_input_errors():
    s = pd.DataFrame({"month": MONTHS.to_timestamp(), "days_in_month": MONTHS.days_in_month,
                      "count": 100})
    with pytest.raises(RegistryLabError, match="jump"):
        fit_counterfactual(s.drop(index=5), BASELINE)
    with pytest.raises(RegistryLabError, match="more than once"):
        fit_counterfactual(pd.concat([s, s.iloc[[3]]]), BASELINE)
    with pytest.raises(RegistryLabError, match="too short"):
        fit_counterfactual(s, ("2019-01", "2019-12"))
    with pytest.raises(RegistryLabError, match="all 12 calendar months"):
        fit_counterfactual(s, ("2019-01", "2019-06"))
    with pytest.raises(RegistryLabError, match="no events"):
        fit_counterfactual(s.assign(count=0), BASELINE)
    with pytest.raises(RegistryLabError, match="family"):
        fit_counterfactual(s, BASELINE, family="gaussian")
    with pytest.raises(RegistryLabError, match="n_sims"):
        fit_counterfactual(s, BASELINE, n_sims=10)
    with pytest.raises(RegistryLabError, match="counts must be"):
        fit_counterfactual(s.assign(count=-1), BASELINE)
    with pytest.raises(RegistryLabError, match="either"):
        fit_counterfactual(s, BASELINE, model=CounterfactualModel(), family="poisson")
    with pytest.raises(RegistryLabError, match="missing column"):
        fit_counterfactual(s.drop(columns="days_in_month"), BASELINE)
    cf = fit_counterfactual(s, BASELINE, n_sims=100)
    with pytest.raises(RegistryLabError, match="not in the fitted series"):
        cf.ratio("2030-01")


def test_plot_draws_observed_expected_and_band():
    import matplotlib

    matplotlib.use("Agg")
    counts, _, _ = simulate_replicates(2, seed=4)
    cf = fit_counterfactual(counts, BASELINE, n_sims=200, seed=1)
    ax = cf.plot(group=1)
    assert ax.get_title() == "1"
    assert len(ax.lines) >= 2 and len(ax.collections) == 1


# --------------------------------------------------------------------------------------------
# segmented regression
# --------------------------------------------------------------------------------------------
def test_segmented_regression_exact_on_noise_free_series():
    t0 = MONTHS.get_loc(pd.Period("2020-03", "M"))
    since = np.where(np.arange(len(MONTHS)) >= t0, (np.arange(len(MONTHS)) - t0) / 12, 0.0)
    s = pd.DataFrame({"month": MONTHS.to_timestamp(), "days_in_month": MONTHS.days_in_month})
    step = np.arange(len(MONTHS)) >= t0
    s["count"] = 20 * s["days_in_month"] * np.exp(
        0.03 * np.arange(len(MONTHS)) / 12 + np.log(0.5) * step + 0.2 * since
    )
    t = segmented_regression(s, "2020-03", family="poisson", seasonality="none").set_index("term")
    assert t.index.tolist() == ["baseline_trend", "level_change", "slope_change"]
    assert t.at["level_change", "rate_ratio"] == pytest.approx(0.5, rel=1e-6)
    assert t.at["slope_change", "rate_ratio"] == pytest.approx(np.exp(0.2), rel=1e-6)
    assert t.at["baseline_trend", "rate_ratio"] == pytest.approx(np.exp(0.03), rel=1e-6)


@pytest.mark.slow
def test_segmented_regression_covers_true_level_and_slope_change():
    rng = np.random.default_rng(17)
    n = 60
    t0 = MONTHS.get_loc(pd.Period("2020-03", "M"))
    idx = np.arange(len(MONTHS))
    since = np.where(idx >= t0, (idx - t0) / 12, 0.0)
    mu = _expected_counts(30.0) * np.exp(np.log(0.8) * (idx >= t0) + 0.1 * since)
    y = rng.poisson(mu * rng.gamma(500.0, 1 / 500.0, (n, len(MONTHS))))
    counts = pd.DataFrame(
        {
            "replicate": np.repeat(np.arange(n), len(MONTHS)),
            "month": np.tile(MONTHS.to_timestamp(), n),
            "days_in_month": np.tile(MONTHS.days_in_month.to_numpy(), n),
            "count": y.ravel(),
        }
    )
    t = segmented_regression(counts, "2020-03")
    level = t[t.term == "level_change"]
    slope = t[t.term == "slope_change"]
    assert len(level) == n
    assert _coverage(level.lower, level.upper, 0.8) >= 0.87
    assert _coverage(slope.lower, slope.upper, np.exp(0.1)) >= 0.87
    assert level.rate_ratio.mean() == pytest.approx(0.8, abs=0.01)


def test_segmented_regression_needs_enough_months():
    s = pd.DataFrame({"month": MONTHS.to_timestamp(), "days_in_month": MONTHS.days_in_month,
                      "count": 100})
    with pytest.raises(RegistryLabError, match="at least 12 before"):
        segmented_regression(s, "2015-06")
    with pytest.raises(RegistryLabError, match="at least 12 before"):
        segmented_regression(s, "2021-12")


def test_exact_poisson_draws_give_garwood_limits():
    from scipy.stats import chi2

    from registry_lib.stats.counterfactual import _exact_poisson_draws

    obs = np.array([0.0, 1.0, 2.0, 5.0, 30.0])
    low, high = _exact_poisson_draws(obs, (200_000, len(obs)), np.random.default_rng(1))
    assert np.all(high >= low) and np.all(low[:, 0] == 0)
    garwood_low = np.where(obs > 0, chi2.ppf(0.025, 2 * np.maximum(obs, 1)) / 2, 0.0)
    garwood_high = chi2.ppf(0.975, 2 * obs + 2) / 2       # 3.689 for 0 events
    np.testing.assert_allclose(np.quantile(low, 0.025, axis=0), garwood_low, rtol=0.02, atol=1e-9)
    np.testing.assert_allclose(np.quantile(high, 0.975, axis=0), garwood_high, rtol=0.02)


def test_april_ratio_ci_covers_the_truth_when_the_month_has_only_a_few_diagnoses():
    # about 4 diagnoses a month, 2.5 expected in April 2020: the month's count is 0-2 in half the
    # replicates. Exact limits cover 96.75% here; the Jeffreys interval used before, 92.75%
    # (its upper limit for 0 diagnoses is 2.5, not 3.7)
    counts, _, _ = simulate_replicates(400, seed=41, daily_rate=0.14)
    cf = fit_counterfactual(counts, BASELINE, family="poisson", n_sims=400, seed=3)
    april = cf.ratio(APRIL)
    assert (april["observed"] <= 2).mean() > 0.45
    assert _coverage(april.oe_lower, april.oe_upper, TRUE_APRIL) >= 0.95
