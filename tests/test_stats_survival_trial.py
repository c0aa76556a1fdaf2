"""Target-trial emulation: eligibility, landmark cohort, clone-censor-weight."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter

from registry_lib.errors import RegistryLabError
from registry_lib.stats.survival import (
    TargetTrial,
    TreatmentEffectCox,
    simulate_treatment_cohort,
)

COVS = ["age_at_diagnosis", "sex", "deprivation_quintile", "performance_status",
        "comorbidity_score"]
TRIAL = TargetTrial(sites=("C18", "C19", "C20"), diagnosis_years=(2013, 2019),
                    treatment_modality="sact", stages=("3",), treatment_intents=("adjuvant",),
                    grace_days=120, horizon_years=5)


def _hand_tables():
    tum = pd.DataFrame({
        "tumour_id": [1, 2, 3, 4, 5, 6, 7, 8, 9],
        "pseudo_id": ["a", "b", "c", "d", "e", "f", "g", "g", "h"],
        "diagnosis_date": ["2016-01-01", "2016-01-01", "2016-01-01", "2012-05-01",
                           "2016-01-01", "2016-01-01", "2015-01-01", "2017-03-01",
                           "2016-01-01"],
        "age_at_diagnosis": [60, 70, 80, 60, 17, 65, 66, 68, 50],
        "site_icd10": ["C18", "C20", "C18", "C18", "C18", "C50", "C61", "C19", "C18"],
        "stage": ["3", "3", "3", "3", "3", "3", "2", "3", "2"],
    })
    pat = pd.DataFrame({
        "pseudo_id": list("abcdefgh"),
        "death_date": [None, "2016-03-01", "2019-01-01", None, None, None, None, None],
        "sex": [1, 2, 1, 2, 1, 2, 1, 2],
    })
    trt = pd.DataFrame({
        "tumour_id": [1, 1, 3, 8, 2],
        "modality": ["sact", "sact", "sact", "sact", "radiotherapy"],
        "intent": ["adjuvant", "adjuvant", "adjuvant", "adjuvant", "curative"],
        "start_date": ["2016-03-15", "2016-01-20", "2016-08-01", "2017-04-01", "2016-02-01"],
    })
    return tum, pat, trt


def test_landmark_cohort_by_hand():
    tum, pat, trt = _hand_tables()
    tc = TRIAL.landmark_cohort(tum, pat, trt, "2020-12-31")
    flow = tc.flow.set_index("step")
    assert flow["n"].iloc[0] == 9 and flow["excluded"].sum() == 9 - len(tc.data)
    assert flow.loc["site in C18, C19, C20", "excluded"] == 2  # breast, prostate
    assert flow.loc["diagnosed 2013-2019", "excluded"] == 1  # 2012
    assert flow.loc["stage 3", "excluded"] == 1
    assert flow.loc["aged 18-99", "excluded"] == 1  # 17
    assert flow.loc["no earlier cancer", "excluded"] == 1  # g had prostate cancer in 2015
    assert flow.loc["alive and followed at the landmark (120 days)", "excluded"] == 1  # b died
    d = tc.data.set_index("tumour_id")
    assert sorted(d.index) == [1, 3]
    landmark = pd.Timestamp("2016-01-01") + pd.Timedelta(days=120)
    # tumour 1: first SACT 19 days after diagnosis -> treated; alive: censored at the end of
    # follow-up (before landmark + 5 years)
    assert d.loc[1, "treatment_day"] == 19 and d.loc[1, "treated"] == 1
    assert d.loc[1, "time"] == pytest.approx((pd.Timestamp("2020-12-31") - landmark).days / 365.25)
    assert d.loc[1, "dead"] == 0
    # tumour 3: SACT after 213 days -> control arm; died 2019-01-01
    assert d.loc[3, "treated"] == 0 and d.loc[3, "dead"] == 1
    assert d.loc[3, "time_zero"] == landmark
    assert d.loc[3, "time"] == pytest.approx((pd.Timestamp("2019-01-01") - landmark).days / 365.25)
    assert d.loc[3, "sex"] == 1  # patient columns carried


def test_horizon_censors_follow_up():
    tum, pat, trt = _hand_tables()
    trial = TargetTrial(("C18",), (2013, 2019), "sact", stages=("3",), horizon_years=2)
    d = trial.landmark_cohort(tum, pat, trt, "2020-12-31").data.set_index("tumour_id")
    # tumour 3 died 2.67 years after the landmark: censored alive at 2 years
    assert d.loc[3, "time"] == pytest.approx(2.0) and d.loc[3, "dead"] == 0


def test_treatment_before_diagnosis_counts_as_day_zero():
    tum, pat, trt = _hand_tables()
    trt = pd.concat([trt, pd.DataFrame({"tumour_id": [3], "modality": ["sact"],
                                        "intent": ["adjuvant"], "start_date": ["2015-12-20"]})])
    d = TRIAL.landmark_cohort(tum, pat, trt, "2020-12-31").data.set_index("tumour_id")
    assert d.loc[3, "treatment_day"] == 0 and d.loc[3, "treated"] == 1
    assert bool(d.loc[3, "treatment_before_diagnosis"])


def test_protocol_and_params():
    p = TRIAL.protocol()
    assert p["component"].tolist() == ["eligibility", "treatment strategies", "assignment",
                                       "time zero", "outcome", "follow-up", "causal contrast",
                                       "analysis"]
    assert "120 days" in p.set_index("component").loc["treatment strategies", "target_trial"]
    t = TargetTrial.from_params({"sites": ["C18"], "diagnosis_years": [2015, 2019],
                                 "treatment_modality": "sact", "stages": [3]})
    assert t.stages == ("3",) and t.diagnosis_years == (2015, 2019)
    with pytest.raises(RegistryLabError, match="unknown key"):
        TargetTrial.from_params({"sites": ["C18"], "diagnosis_years": [2015, 2019],
                                 "treatment_modality": "sact", "grace": 90})
    with pytest.raises(RegistryLabError, match="grace_days"):
        TargetTrial(("C18",), (2015, 2019), "sact", grace_days=-1)
    tum, pat, trt = _hand_tables()
    with pytest.raises(RegistryLabError, match="death_date"):
        TRIAL.landmark_cohort(tum, pat.drop(columns="death_date"), trt, "2020-12-31")


def test_landmark_removes_immortal_time_bias():
    # no treatment effect (HR 1) and no confounding, but treatment starts up to 300 days
    # after diagnosis: comparing "ever treated" from diagnosis credits the treated with the
    # time they had to survive to be treated; the landmark analysis does not.
    sim = simulate_treatment_cohort(6000, seed=0, hr=1.0, confounding=0.0,
                                    treatment_window=(30, 110), late_start_share=0.4,
                                    baseline_hazard=0.4)
    tc = TRIAL.landmark_cohort(sim["tumours"], sim["patients"], sim["treatments"],
                               sim["truth"]["end_of_follow_up"])
    hr = TreatmentEffectCox(COVS, categorical=["sex"]).fit(
        tc.data, "time", "dead", "treated").hazard_ratios_.set_index("model")
    assert hr.loc["adjusted", "lower"] < 1 < hr.loc["adjusted", "upper"]
    assert 0.9 < hr.loc["adjusted", "hr"] < 1.1
    # the biased analysis: time from diagnosis, arm = ever treated
    tum = sim["tumours"].merge(sim["patients"], on="patient_id")
    end = pd.Timestamp(sim["truth"]["end_of_follow_up"])
    exit_ = tum["death_date"].fillna(end)
    ever = tum["tumour_id"].isin(sim["treatments"]["tumour_id"]).astype(int)
    naive = pd.DataFrame({"t": (exit_ - tum["diagnosis_date"]).dt.days / 365.25,
                          "d": tum["death_date"].notna().astype(int), "ever": ever})
    b = CoxPHFitter().fit(naive, "t", "d")
    assert np.exp(b.confidence_intervals_.loc["ever"].iloc[1]) < 0.9


def test_clone_censor_weight_recovers_strategy_effect():
    n, seed = 12000, 21
    sim = simulate_treatment_cohort(n, seed=seed)
    end = sim["truth"]["end_of_follow_up"]
    # truth: the same patients under "treat within the window" and "never treat"
    pot = []
    for strategy in (0, 1):
        s = simulate_treatment_cohort(n, seed=seed, strategy=strategy)
        tum = s["tumours"].merge(s["patients"], on="patient_id")
        exit_ = tum["death_date"].fillna(pd.Timestamp(end))
        t = np.minimum((exit_ - tum["diagnosis_date"]).dt.days / 365.25, 5.0)
        d = (tum["death_date"].notna() & (t < 5.0)).astype(int)
        pot.append(pd.DataFrame({"t": t, "d": d, "arm": strategy}))
    truth = np.exp(CoxPHFitter().fit(pd.concat(pot), "t", "d").params_["arm"])
    ccw = TRIAL.clone_censor_weight(sim["tumours"], sim["patients"], sim["treatments"], end,
                                    COVS, categorical=["sex"])
    hr = ccw.hazard_ratio.iloc[0]
    assert hr["lower"] < truth < hr["upper"]
    assert hr["upper"] < 1.0
    # without weights the per-protocol comparison is confounded towards benefit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = ccw.data.assign(weight=1.0)
    from registry_lib.stats.survival import weighted_cox_binary

    unweighted = weighted_cox_binary(data["start"], data["stop"], data["dead"], data["arm"],
                                     data["weight"], data["patient_id"])
    assert unweighted["hr"] < hr["hr"] - 0.05
    surv = ccw.survival.set_index(["arm", "time"])["survival"]
    assert surv.loc[(1, 5.0)] > surv.loc[(0, 5.0)]
    assert ccw.flow["n"].iloc[-1] == hr["n"]


def test_tumour_without_patient_is_an_error():
    tum, pat, trt = _hand_tables()
    with pytest.raises(RegistryLabError, match="is not in the patients table"):
        TRIAL.landmark_cohort(tum, pat[pat["pseudo_id"] != "c"], trt, "2020-12-31")


def test_requires_surgery_within_the_window():
    tum, pat, trt = _hand_tables()
    trt = pd.concat([trt, pd.DataFrame({
        "tumour_id": [1, 3], "modality": ["surgery", "surgery"], "intent": ["curative"] * 2,
        "start_date": ["2016-01-11", "2016-07-19"]})])
    trial = TargetTrial(("C18",), (2013, 2019), "sact", stages=("3",),
                        requires_modality="surgery")
    tc = trial.landmark_cohort(tum, pat, trt, "2020-12-31")
    assert tc.data["tumour_id"].tolist() == [1]
    assert tc.flow.set_index("step").loc["surgery within 120 days of diagnosis", "excluded"] == 1
    assert "surgery" in trial.protocol().loc[0, "target_trial"]
