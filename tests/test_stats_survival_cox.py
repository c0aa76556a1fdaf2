"""Naive, adjusted and IPTW Cox models, weights and balance (registry_lib.stats.survival)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter

from registry_lib.errors import RegistryLabError
from registry_lib.stats.survival import (
    TreatmentEffectCox,
    balance_table,
    cox_three_ways,
    design_matrix,
    iptw_weights,
    propensity_scores,
    weighted_cox_binary,
    weighted_km,
)


@pytest.fixture(scope="module")
def confounded():
    rng = np.random.default_rng(11)
    n = 800
    age = rng.normal(65, 10, n)
    stage = rng.choice(["2", "3"], n)
    a = (rng.random(n) < 1 / (1 + np.exp((age - 65) / 8))).astype(int)
    t = rng.exponential(1 / (0.15 * np.exp(0.04 * (age - 65) + 0.3 * (stage == "3"))
                             * np.where(a == 1, 0.7, 1.0)))
    c = rng.uniform(1, 8, n)
    return pd.DataFrame({"time": np.minimum(t, c), "dead": (t < c).astype(int), "chemo": a,
                         "age": age, "stage": stage})


def test_design_matrix_codes_categories():
    df = pd.DataFrame({"age": [60, 70, 80], "stage": ["3", "2", "4"], "sex": [1, 2, 1]})
    x = design_matrix(df, ["age", "stage", "sex"], categorical=["sex"])
    assert list(x.columns) == ["age", "stage=3", "stage=4", "sex=2"]
    assert x.to_numpy().tolist() == [[60, 1, 0, 0], [70, 0, 0, 1], [80, 0, 1, 0]]
    full = design_matrix(df, ["stage"], drop_first=False)
    assert list(full.columns) == ["stage=2", "stage=3", "stage=4"]
    with pytest.raises(RegistryLabError, match="'age' has 1 missing"):
        design_matrix(df.assign(age=[1, None, 3]), ["age"])


def test_iptw_weights_by_hand():
    a = np.array([1, 1, 0, 0])
    ps = np.array([0.8, 0.4, 0.5, 0.2])
    assert iptw_weights(a, ps, stabilised=False, trim=None) == pytest.approx(
        [1.25, 2.5, 2.0, 1.25])
    assert iptw_weights(a, ps, trim=None) == pytest.approx([0.625, 1.25, 1.0, 0.625])
    w = iptw_weights(np.r_[np.ones(50), np.zeros(50)], np.linspace(0.05, 0.95, 100),
                     stabilised=False, trim=(5, 95))
    raw = iptw_weights(np.r_[np.ones(50), np.zeros(50)], np.linspace(0.05, 0.95, 100),
                       stabilised=False, trim=None)
    assert w.max() == pytest.approx(np.percentile(raw, 95))
    assert w.min() == pytest.approx(np.percentile(raw, 5))
    with pytest.raises(RegistryLabError, match="strictly between"):
        iptw_weights(a, np.array([0.5, 1.0, 0.5, 0.5]))
    with pytest.raises(RegistryLabError, match="percentiles"):
        iptw_weights(a, ps, trim=(50, 10))


def test_balance_table_by_hand():
    df = pd.DataFrame({"a": [1, 1, 0, 0], "x": [1.0, 3.0, 0.0, 2.0],
                       "s": ["m", "f", "f", "f"]})
    b = balance_table(df, "a", ["x", "s"], weights=[1, 3, 1, 1])
    x = b.set_index("covariate").loc["x"]
    # unweighted: means 2 vs 1, variances 1 and 1 -> SMD 1
    assert x["smd"] == pytest.approx(1.0)
    # weighted treated: mean (1+9)/4 = 2.5, var (1*2.25 + 3*0.25)/4 = 0.75
    assert x["mean_treated_weighted"] == pytest.approx(2.5)
    assert x["smd_weighted"] == pytest.approx(1.5 / np.sqrt((0.75 + 1) / 2))
    sm = b.set_index("covariate").loc["s=m"]
    # treated share male 0.5 (var .25), control 0 (var 0) -> 0.5 / sqrt(.125)
    assert sm["smd"] == pytest.approx(0.5 / np.sqrt(0.125))


def test_three_models_match_lifelines(confounded):
    df = confounded
    fit = TreatmentEffectCox(["age", "stage"]).fit(df, "time", "dead", "chemo")
    hr = fit.hazard_ratios_.set_index("model")
    naive = CoxPHFitter().fit(df[["time", "dead", "chemo"]], "time", "dead")
    assert hr.loc["naive", "log_hr"] == pytest.approx(naive.params_["chemo"], rel=1e-6)
    assert hr.loc["naive", "se"] == pytest.approx(naive.standard_errors_["chemo"], rel=1e-6)
    adj_df = df[["time", "dead", "chemo", "age"]].assign(stage3=(df["stage"] == "3") * 1.0)
    adj = CoxPHFitter().fit(adj_df, "time", "dead")
    assert hr.loc["adjusted", "log_hr"] == pytest.approx(adj.params_["chemo"], rel=1e-6)
    w = fit.data_["iptw"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iptw = CoxPHFitter().fit(df[["time", "dead", "chemo"]].assign(w=w), "time", "dead",
                                 weights_col="w", robust=True)
    assert hr.loc["iptw", "log_hr"] == pytest.approx(iptw.params_["chemo"], rel=1e-6)
    assert hr.loc["iptw", "se"] == pytest.approx(iptw.standard_errors_["chemo"], rel=1e-6)
    z = 1.959963984540054
    assert hr.loc["iptw", "upper"] == pytest.approx(
        np.exp(hr.loc["iptw", "log_hr"] + z * hr.loc["iptw", "se"]))
    assert hr["n"].tolist() == [800] * 3 and hr["events"].nunique() == 1
    # the propensity model is the logistic regression on the same covariates
    ps = propensity_scores(df, "chemo", ["age", "stage"])
    assert fit.data_["propensity"].to_numpy() == pytest.approx(ps.to_numpy())
    # stabilised weights average about 1; weighting removes the imbalance in age
    assert w.mean() == pytest.approx(1.0, abs=0.1)
    bal = fit.balance_.set_index("covariate")
    assert abs(bal.loc["age", "smd"]) > 0.3
    assert abs(bal.loc["age", "smd_weighted"]) < 0.1
    eff = fit.effective_sample_size()
    assert 0 < eff["treated"] <= (df["chemo"] == 1).sum()


def test_naive_biased_towards_benefit_adjusted_not(confounded):
    hr = cox_three_ways(confounded, "time", "dead", "chemo", ["age", "stage"]).set_index("model")
    # younger patients are treated more and die less: the naive HR exaggerates the benefit
    assert hr.loc["naive", "hr"] < hr.loc["adjusted", "hr"]
    assert hr.loc["adjusted", "lower"] < 0.7 < hr.loc["adjusted", "upper"]
    assert hr.loc["iptw", "lower"] < 0.7 < hr.loc["iptw", "upper"]


def test_treatment_effect_bad_input(confounded):
    with pytest.raises(RegistryLabError, match="every patient is in one arm"):
        cox_three_ways(confounded.assign(chemo=1), "time", "dead", "chemo", ["age"])
    with pytest.raises(RegistryLabError, match="must be 0/1"):
        cox_three_ways(confounded.assign(chemo=2), "time", "dead", "chemo", ["age"])
    with pytest.raises(RegistryLabError, match="not found"):
        cox_three_ways(confounded, "time", "dead", "chemo", ["weight"])
    sep = confounded.assign(chemo=(confounded["age"] > 65).astype(int))
    with pytest.raises(RegistryLabError, match="separate the arms"):
        propensity_scores(sep, "chemo", ["age"])


def _counting_data(seed: int, n: int = 400):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n)
    t = rng.exponential(1 / np.exp(-0.5 * x))
    c = rng.uniform(0, 3, n)
    st = rng.uniform(0, 0.3, n)
    stop = np.maximum(np.minimum(t, c), st + 0.01)
    return pd.DataFrame({"start": st, "stop": stop, "d": (t < c).astype(int), "x": x,
                         "w": rng.uniform(0.5, 2, n), "cl": rng.integers(0, 150, n)})


def test_weighted_cox_binary_matches_lifelines_without_entry():
    df = _counting_data(0)
    cph = CoxPHFitter().fit(df[["stop", "d", "x", "w", "cl"]], "stop", "d", weights_col="w",
                            cluster_col="cl", robust=True)
    r = weighted_cox_binary(np.zeros(len(df)), df["stop"], df["d"], df["x"], df["w"], df["cl"])
    assert r["log_hr"] == pytest.approx(cph.params_["x"], abs=1e-7)
    assert r["se"] == pytest.approx(cph.standard_errors_["x"], rel=1e-6)


def test_weighted_cox_binary_left_truncation():
    df = _counting_data(1)
    cph = CoxPHFitter().fit(df[["start", "stop", "d", "x"]], "stop", "d", entry_col="start")
    r = weighted_cox_binary(df["start"], df["stop"], df["d"], df["x"], np.ones(len(df)),
                            np.arange(len(df)))
    assert r["log_hr"] == pytest.approx(cph.params_["x"], abs=1e-7)
    assert r["naive_se"] == pytest.approx(cph.standard_errors_["x"], rel=1e-6)
    # the robust SE is close to the leave-one-out jackknife (lifelines' sandwich ignores entry)
    loo = [weighted_cox_binary(df["start"].drop(i), df["stop"].drop(i), df["d"].drop(i),
                               df["x"].drop(i), np.ones(len(df) - 1), np.arange(len(df) - 1)
                               )["log_hr"] for i in range(0, len(df), 1)]
    jack = np.sqrt(((np.array(loo) - r["log_hr"]) ** 2).sum())
    assert r["se"] == pytest.approx(jack, rel=0.03)


def test_weighted_km_matches_lifelines():
    df = _counting_data(2)
    ours = weighted_km(df["start"], df["stop"], df["d"], df["w"], [0.5, 1.0, 2.0])
    ref = KaplanMeierFitter().fit(df["stop"], df["d"], entry=df["start"], weights=df["w"])
    assert ours == pytest.approx(ref.survival_function_at_times([0.5, 1.0, 2.0]).to_numpy())


def test_plots_draw_every_covariate_and_curve(confounded):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from registry_lib.stats.survival import net_survival

    fit = TreatmentEffectCox(["age", "stage"]).fit(confounded, "time", "dead", "chemo")
    ax = fit.plot_balance()
    assert [t.get_text() for t in ax.get_yticklabels()] == \
        fit.balance_["covariate"].iloc[::-1].tolist()
    life = pd.DataFrame({"year": 2015, "age": range(101), "qx": 0.01})
    df = confounded.assign(age=confounded["age"].clip(0, 100), year=2015.0)
    ns = net_survival(df, life, strata=(), times=[1, 3], by="chemo", step="month")
    ax2 = ns.plot()
    assert len(ax2.get_lines()) == 2
    plt.close("all")


def test_arm_without_events_is_a_clear_error(confounded):
    df = confounded.assign(dead=np.where(confounded["chemo"] == 1, 0, confounded["dead"]))
    with pytest.raises(RegistryLabError, match="treated arm has no events"):
        cox_three_ways(df, "time", "dead", "chemo", ["age"])
