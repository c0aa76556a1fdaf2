"""Tests for registry_lib.stats.periods, registry_lib.stats.regression and the COVID study's
care-change tables (registry_lib.studies.covid_impact_care): periods, shares, stage shift, treatment timing,
COVID-19 death risk and cohort survival (exact small examples and recovery of simulated truth)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from registry_lib.errors import RegistryLabError
from registry_lib.stats.periods import (
    assign_period,
    median_iqr,
    share_by_period,
    survival_times,
    wilson_ci,
)
from registry_lib.stats.regression import hazard_ratios, model_matrix, odds_ratios
from registry_lib.studies.covid_impact_care import (
    cohort_survival,
    covid_death_cohort,
    covid_death_risk,
    emergency_share,
    first_treatment,
    fractionation_share,
    stage_distribution,
    stage_shift,
    time_to_treatment,
)

PERIODS = {"baseline": ("2019-01", "2020-02"), "pandemic": ("2020-03", "2021-02")}


# --------------------------------------------------------------------------------------------
# periods and shares
# --------------------------------------------------------------------------------------------
def test_assign_period_whole_months_inclusive():
    d = pd.Series(pd.to_datetime(["2018-12-31", "2019-01-01", "2020-02-29", "2020-03-01",
                                  "2021-02-28", "2021-03-01", None]))
    got = assign_period(d, PERIODS)
    assert got.tolist()[:6] == [np.nan, "baseline", "baseline", "pandemic", "pandemic", np.nan]
    assert pd.isna(got.iloc[6])
    assert list(got.cat.categories) == ["baseline", "pandemic"]
    exact = assign_period(d, {"x": ("2020-02-29", "2020-03-01")})
    assert exact.notna().tolist() == [False, False, True, True, False, False, False]


def test_assign_period_rejects_overlaps_and_bad_dates():
    with pytest.raises(RegistryLabError, match="overlap"):
        assign_period(["2020-01-01"], {"a": ("2019-01", "2020-03"), "b": ("2020-03", "2020-12")})
    with pytest.raises(RegistryLabError, match="end is before start"):
        assign_period(["2020-01-01"], {"a": ("2020-03", "2020-01")})
    with pytest.raises(RegistryLabError, match="index 1.*not a date"):
        assign_period(pd.Series(["2020-01-01", "someday"]), PERIODS)


def test_wilson_interval_by_hand():
    # Wilson (1927): (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n); 30 of 120
    z = sps.norm.ppf(0.975)
    p, n = 0.25, 120
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = wilson_ci(30, 120)
    assert float(lo) == pytest.approx(centre - half, rel=1e-12)
    assert float(hi) == pytest.approx(centre + half, rel=1e-12)
    from statsmodels.stats.proportion import proportion_confint

    ref_lo, ref_hi = proportion_confint(30, 120, alpha=0.05, method="wilson")
    assert float(lo) == pytest.approx(ref_lo, rel=1e-9)
    assert float(hi) == pytest.approx(ref_hi, rel=1e-9)
    lo0, hi0 = wilson_ci(0, 10)
    assert float(lo0) == pytest.approx(0.0, abs=1e-12) and 0 < float(hi0) < 0.35


def test_share_by_period_exact_with_missing_flags():
    df = pd.DataFrame({"period": ["b", "b", "b", "p", "p", None],
                       "flag": [True, False, None, True, True, True]})
    out = share_by_period(df, "flag")
    assert out[["period", "n", "events", "n_missing"]].values.tolist() == [
        ["b", 2, 1, 1], ["p", 2, 2, 0]
    ]
    assert out["share"].tolist() == [0.5, 1.0]
    whole = share_by_period(df, "flag", by=None)
    assert whole[["n", "events", "n_missing"]].iloc[0].tolist() == [5, 4, 1]
    with pytest.raises(RegistryLabError, match="index 1.*true/false"):
        share_by_period(pd.DataFrame({"period": ["a", "a"], "flag": [True, "yes"]}), "flag")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from([True, False, None])),
                min_size=1, max_size=80))
def test_share_by_period_counts_reconcile(rows):
    df = pd.DataFrame(rows, columns=["period", "flag"])
    out = share_by_period(df, "flag")
    assert (out["n"] + out["n_missing"]).sum() == len(df)
    assert out["events"].sum() == int((df["flag"] == True).sum())  # noqa: E712
    known = out["n"] > 0
    assert ((out.loc[known, "lower"] <= out.loc[known, "share"] + 1e-12)
            & (out.loc[known, "share"] <= out.loc[known, "upper"] + 1e-12)).all()


def test_emergency_share_matches_case_insensitively_and_counts_missing_routes():
    t = pd.DataFrame({
        "period": ["baseline"] * 4 + ["pandemic"] * 3,
        "route_to_diagnosis": ["GP referral", " EMERGENCY PRESENTATION", "Two week wait", None,
                               "Emergency presentation", "Emergency presentation", "Screening"],
    })
    out = emergency_share(t)
    assert out[["period", "n", "events", "n_missing"]].values.tolist() == [
        ["baseline", 3, 1, 1], ["pandemic", 3, 2, 0]
    ]
    assert out["share"].round(4).tolist() == [0.3333, 0.6667]


def test_fractionation_share_keeps_breast_radiotherapy_only():
    rt = pd.DataFrame({
        "period": ["b", "b", "b", "p", "p", "p", "p"],
        "modality": ["radiotherapy", "radiotherapy", "sact", "radiotherapy", "radiotherapy",
                     "radiotherapy", "radiotherapy"],
        "rt_region": ["Breast", "breast", "breast", "breast", "breast", "pelvis", "breast"],
        "fractions": [15, 5, 5, 5, 5, 5, None],
    })
    out = fractionation_share(rt)
    assert out[["period", "n", "events", "n_missing"]].values.tolist() == [
        ["b", 2, 1, 0], ["p", 2, 2, 1]
    ]
    every_region = fractionation_share(rt, region=None)
    assert every_region.loc[every_region.period == "p", "n"].item() == 3


# --------------------------------------------------------------------------------------------
# stage
# --------------------------------------------------------------------------------------------
def test_stage_distribution_exact():
    t = pd.DataFrame({"period": ["b"] * 5 + ["p"] * 3,
                      "stage": ["1", "2", "4", "U", "1", "4", "4", None]})
    out = stage_distribution(t)
    b = out[out.period == "b"].set_index("stage")
    assert b["n"].to_dict() == {"1": 2, "2": 1, "4": 1, "U": 1}
    assert b.at["1", "share"] == pytest.approx(0.4)
    assert b.at["1", "share_known"] == pytest.approx(0.5)
    p = out[out.period == "p"].set_index("stage")
    assert p["n"].to_dict() == {"4": 2, "U": 1}  # missing stage counted as unknown
    assert p.at["4", "share_known"] == pytest.approx(1.0)


def _simulate_stage(rng: np.random.Generator, n: int, true_or: float) -> pd.DataFrame:
    pandemic = rng.random(n) < 0.3
    age = rng.normal(68, 11, n).round()
    sex = rng.integers(1, 3, n)
    site = rng.choice(["C18", "C34", "C50"], n)
    dep = rng.integers(1, 6, n)
    logit = (-0.4 + 0.02 * (age - 68) + 0.3 * (sex == 1) + np.where(site == "C34", 0.8, 0.0)
             + 0.05 * dep + np.log(true_or) * pandemic)
    late = rng.random(n) < 1 / (1 + np.exp(-logit))
    stage = np.where(late, rng.choice(["3", "4"], n), rng.choice(["1", "2"], n))
    stage = np.where(rng.random(n) < 0.08, "U", stage)
    return pd.DataFrame({"period": np.where(pandemic, "pandemic", "baseline"),
                         "stage": stage, "age_at_diagnosis": age, "sex": sex,
                         "site_icd10": site, "deprivation_quintile": dep})


def test_stage_shift_test_matches_scipy_and_names_terms():
    df = _simulate_stage(np.random.default_rng(2), 6000, 1.4)
    res = stage_shift(df)
    known = df[df.stage != "U"]
    chi2, p, dof, _ = sps.chi2_contingency(pd.crosstab(known.period, known.stage),
                                           correction=False)
    assert res.test.loc[0, "statistic"] == pytest.approx(chi2)
    assert res.test.loc[0, "dof"] == dof == 3
    assert res.test.loc[0, "p_value"] < 0.01
    assert res.odds_ratio["term"] == "period[pandemic]"
    assert res.odds_ratios["n"].iloc[0] == len(known)
    assert {"sex[2]", "site_icd10[C34]", "deprivation_quintile[5]"} <= set(res.odds_ratios.term)
    assert set(res.distribution.columns) == {"period", "stage", "n", "share", "share_known"}


@pytest.mark.slow
def test_stage_shift_odds_ratio_covers_truth_across_seeds():
    truth = 1.3
    rng = np.random.default_rng(40)
    hits, estimates = [], []
    for _ in range(30):
        res = stage_shift(_simulate_stage(rng, 4000, truth))
        row = res.odds_ratio
        hits.append(row.lower <= truth <= row.upper)
        estimates.append(row.odds_ratio)
    assert np.mean(hits) >= 0.83
    assert np.exp(np.mean(np.log(estimates))) == pytest.approx(truth, rel=0.06)


def test_model_matrix_reference_levels_and_errors():
    d = pd.DataFrame({"age": [50, 60, 70], "period": ["pandemic", "baseline", "pandemic"],
                      "dep": [1, 2, 3], "on": [True, False, True]})
    X = model_matrix(d, ["age", "period", "dep", "on"], categorical=["dep"])
    assert X.columns.tolist() == ["age", "period[pandemic]", "dep[2]", "dep[3]", "on"]
    assert X["period[pandemic]"].tolist() == [1.0, 0.0, 1.0]
    Y = model_matrix(d, ["period"], reference={"period": "pandemic"})
    assert Y.columns.tolist() == ["period[baseline]"]
    with pytest.raises(RegistryLabError, match="reference"):
        model_matrix(d, ["period"], reference={"period": "after"})


def test_odds_ratios_adjust_for_a_confounder_and_report_exclusions():
    rng = np.random.default_rng(8)
    n = 20000
    old = rng.random(n) < 0.5
    exposed = rng.random(n) < np.where(old, 0.7, 0.2)
    logit = -2 + 1.2 * old + np.log(1.5) * exposed
    y = rng.random(n) < 1 / (1 + np.exp(-logit))
    d = pd.DataFrame({"y": y, "exposed": exposed, "old": old.astype(float)})
    d.loc[:9, "old"] = np.nan
    crude = odds_ratios(d, "y", ["exposed"])
    adjusted = odds_ratios(d, "y", ["exposed", "old"])
    assert crude.odds_ratio.iloc[0] > 2.0  # confounded
    row = adjusted.iloc[0]
    assert row.lower <= 1.5 <= row.upper
    assert row.n == n - 10 and row.n_excluded == 10
    with pytest.raises(RegistryLabError, match="same value"):
        odds_ratios(d.assign(y=False), "y", ["exposed"])


def test_odds_ratios_on_covariate_patterns_equal_the_fit_on_records():
    # discrete covariates: the fit runs on binomial counts per pattern (12 rows, not 3,000),
    # with exactly the record-level likelihood; a continuous covariate keeps the records
    from unittest import mock

    from registry_lib.stats import regression

    rng = np.random.default_rng(11)
    n = 3000
    d = pd.DataFrame({"period": rng.choice(["baseline", "pandemic"], n), "sex": rng.integers(1, 3, n),
                      "dep": rng.integers(1, 4, n)})
    d["y"] = rng.random(n) < np.where(d["period"] == "pandemic", 0.4, 0.25)
    assert regression.covariate_patterns(d, ["period", "sex", "dep"], d["y"].to_numpy(float)) is None  # small: records
    patterns = regression.covariate_patterns(d, ["period", "sex", "dep"], d["y"].to_numpy(float), min_records=1)
    assert len(patterns) == 12 and patterns["_events"].sum() == d["y"].sum()
    assert (patterns["_events"] + patterns["_non_events"]).sum() == n
    args = dict(categorical=["period", "sex", "dep"], reference={"period": "baseline"})
    records = odds_ratios(d, "y", ["period", "sex", "dep"], **args)
    with mock.patch.object(regression, "PATTERNS_MIN_RECORDS", 1):
        grouped = odds_ratios(d, "y", ["period", "sex", "dep"], **args)
    pd.testing.assert_frame_equal(grouped, records, rtol=1e-6, atol=1e-12)
    assert grouped["n"].iloc[0] == n and grouped["events"].iloc[0] == d["y"].sum()
    assert regression.covariate_patterns(d.assign(age=rng.random(n)), ["period", "age"], d["y"].to_numpy(float),
                                         min_records=1) is None


# --------------------------------------------------------------------------------------------
# treatment timing
# --------------------------------------------------------------------------------------------
def test_first_treatment_and_time_to_treatment_exact():
    tu = pd.DataFrame({"tumour_id": [1, 2, 3, 4], "period": ["b", "b", "p", "p"],
                       "diagnosis_date": pd.to_datetime(["2020-01-01"] * 4)})
    tx = pd.DataFrame({
        "tumour_id": [1, 1, 2, 3, 3, None],
        "modality": ["sact", "surgery", "sact", "surgery", "radiotherapy", "sact"],
        "start_date": pd.to_datetime(["2020-02-10", "2020-01-21", "2019-12-20", "2020-03-01",
                                      "2020-02-01", "2020-01-02"]),
    })
    first = first_treatment(tx)
    assert first.tumour_id.tolist() == [1, 2, 3]
    assert first.modality.tolist() == ["surgery", "sact", "radiotherapy"]
    out = time_to_treatment(tu, tx)
    # tumour 2's only treatment is 12 days before diagnosis: not counted by default
    assert out.values.tolist() == [["b", 2, 1, 20.0, 20.0, 20.0], ["p", 2, 1, 31.0, 31.0, 31.0]]
    early = time_to_treatment(tu, tx, window_before_days=30)
    assert early.loc[0, ["n_treated", "median", "q1", "q3"]].tolist() == [2, 4.0, -4.0, 12.0]
    sact = time_to_treatment(tu, tx, modality="sact", window_before_days=30)
    assert sact.loc[0, ["n_treated", "median"]].tolist() == [2, 14.0]  # median of 40 and -12
    capped = time_to_treatment(tu, tx, max_days=25)
    assert capped["n_treated"].tolist() == [1, 0]


def test_median_iqr_matches_numpy_linear_quantiles():
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"g": rng.choice(["a", "b"], 101), "v": rng.exponential(30, 101)})
    out = median_iqr(d, "v", "g").set_index("g")
    for g, sub in d.groupby("g"):
        q1, med, q3 = np.quantile(sub.v, [0.25, 0.5, 0.75])
        assert out.at[g, "median"] == pytest.approx(med)
        assert out.at[g, "q1"] == pytest.approx(q1) and out.at[g, "q3"] == pytest.approx(q3)
        assert out.at[g, "n"] == len(sub)


# --------------------------------------------------------------------------------------------
# outcomes
# --------------------------------------------------------------------------------------------
def test_covid_death_cohort_exact():
    patients = pd.DataFrame({
        "patient_id": [1, 2, 3, 4, 5],
        "sex": [1, 2, 1, 2, 1],
        "birth_date": pd.to_datetime(["1950-03-01"] * 5),
        "death_date": pd.to_datetime(["2020-04-10", "2020-02-01", None, "2020-06-01",
                                      "2020-05-01"]),
        "death_cause_icd10": ["U071", "C509", None, "C189", "U07.1"],
    })
    tumours = pd.DataFrame({
        "patient_id": [1, 2, 3, 4, 5],
        "diagnosis_date": pd.to_datetime(["2019-05-01", "2019-05-01", "2019-06-01",
                                          "2019-07-01", "2020-04-01"]),
        "comorbidity_score": [2, 0, None, 1, 0],
    })
    treatments = pd.DataFrame({
        "patient_id": [1, 3, 4],
        "modality": ["sact", "sact", "surgery"],
        "start_date": pd.to_datetime(["2020-02-20", "2020-01-01", "2020-02-25"]),
    })
    c = covid_death_cohort(patients, tumours, treatments, start="2020-03-01",
                           end="2020-12-31", sact_lookback_days=28)
    # patient 2 died before the start; patient 5 was diagnosed after it
    assert c.patient_id.tolist() == [1, 3, 4]
    assert c.on_sact.tolist() == [True, False, False]
    assert c.covid_death.tolist() == [True, False, False]
    assert c.other_death.tolist() == [False, False, True]
    assert c.time_days.tolist() == [40.0, 305.0, 92.0]
    assert c.age.round(2).tolist() == [70.0, 70.0, 70.0]
    assert c.comorbidity_score.iloc[0] == 2 and np.isnan(c.comorbidity_score.iloc[1])


def _simulate_covid_cohort(rng: np.random.Generator, n: int, true_effect: float) -> pd.DataFrame:
    age = rng.normal(70, 10, n)
    sex = rng.integers(1, 3, n)
    comorb = rng.integers(0, 4, n).astype(float)
    on_sact = rng.random(n) < 0.25
    lin = -6.0 + 0.05 * (age - 70) + 0.4 * (sex == 1) + 0.3 * comorb + np.log(true_effect) * on_sact
    # cause-specific hazard per day over 300 days; other deaths censor
    rate = np.exp(lin) / 30
    t_covid = rng.exponential(1 / rate)
    t_other = rng.exponential(1 / 0.0003, n)
    end = 300.0
    t = np.minimum.reduce([t_covid, t_other, np.full(n, end)])
    return pd.DataFrame({"age": age, "sex": sex, "comorbidity_score": comorb,
                         "on_sact": on_sact, "time_days": t,
                         "covid_death": (t_covid <= t) & (t_covid < end)})


def test_covid_death_risk_cox_recovers_hazard_ratio_and_logistic_runs():
    c = _simulate_covid_cohort(np.random.default_rng(12), 30000, 1.5)
    hr = covid_death_risk(c, method="cox")
    assert hr.term.tolist() == ["on_sact", "age", "sex[2]", "comorbidity_score"]
    row = hr.iloc[0]
    assert row.lower <= 1.5 <= row.upper
    age = hr.set_index("term").loc["age"]
    assert age.lower <= np.exp(0.05) <= age.upper
    odds = covid_death_risk(c, method="logistic")
    assert odds.iloc[0].odds_ratio > 1.2  # same direction, OR ≈ HR for a rare outcome
    factors = covid_death_risk(c[c.on_sact], exposure=None)
    assert factors.term.tolist() == ["age", "sex[2]", "comorbidity_score"]
    with pytest.raises(RegistryLabError, match="method"):
        covid_death_risk(c, method="poisson")


def test_survival_times_exact():
    d = pd.DataFrame({
        "diagnosis_date": pd.to_datetime(["2020-01-01", "2020-01-01", "2020-06-01",
                                          "2020-12-01"]),
        "death_date": pd.to_datetime(["2020-03-01", "2021-06-01", None, "2020-12-20"]),
    })
    out = survival_times(d, censor_date="2020-12-31", horizon_days=365)
    assert out.time_days.tolist() == [60.0, 365.0, 213.0, 19.0]
    assert out.dead.tolist() == [True, False, False, True]
    with pytest.raises(RegistryLabError, match="before"):
        survival_times(d.assign(death_date=pd.Timestamp("2019-01-01")), censor_date="2020-12-31")


@pytest.mark.slow
def test_cohort_survival_adjusts_for_stage_and_hazard_ratios_cover_truth():
    rng = np.random.default_rng(21)
    hits = []
    for _ in range(12):
        n = 4000
        pandemic = rng.random(n) < 0.4
        late = rng.random(n) < np.where(pandemic, 0.55, 0.35)  # stage shift
        stage = np.where(late, rng.choice(["3", "4"], n), rng.choice(["1", "2"], n))
        log_hr = np.select([stage == "2", stage == "3", stage == "4"], [0.3, 0.9, 1.8], 0.0)
        dx = pd.Timestamp("2019-01-01") + pd.to_timedelta(
            np.where(pandemic, rng.integers(430, 700, n), rng.integers(0, 420, n)), unit="D")
        t = rng.exponential(1 / (0.0004 * np.exp(log_hr)))
        death = dx + pd.to_timedelta(np.round(t), unit="D")
        tumours = pd.DataFrame({"period": np.where(pandemic, "pandemic", "baseline"),
                                "stage": stage, "diagnosis_date": dx, "death_date": death,
                                "age_at_diagnosis": rng.normal(70, 10, n).round(),
                                "sex": rng.integers(1, 3, n)})
        adj = cohort_survival(tumours, censor_date="2022-12-31", horizon_days=365)
        row = adj.iloc[0]
        assert row.term == "period[pandemic]"
        hits.append(row.lower <= 1.0 <= row.upper)
    crude = cohort_survival(tumours, censor_date="2022-12-31", horizon_days=365, covariates=())
    assert crude.iloc[0].lower > 1.0  # unadjusted, the stage shift looks like worse survival
    assert np.mean(hits) >= 0.75
    stratified = cohort_survival(tumours, censor_date="2022-12-31", strata="sex",
                                 covariates=("stage",))
    assert stratified.term.tolist()[0] == "period[pandemic]"
    assert not stratified.term.str.startswith("sex").any()


def test_hazard_ratios_errors():
    d = pd.DataFrame({"t": [1.0, -2.0], "e": [True, False], "x": [0, 1]}, index=[4, 5])
    with pytest.raises(RegistryLabError, match="index 5.*negative"):
        hazard_ratios(d, "t", "e", ["x"])
    with pytest.raises(RegistryLabError, match="no events"):
        hazard_ratios(d.assign(t=1.0, e=False), "t", "e", ["x"])
    with pytest.raises(RegistryLabError, match="missing column"):
        hazard_ratios(d, "t", "e", ["z"])
