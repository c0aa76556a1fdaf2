"""Study 07 (screening and interval cancers): truth recovery across seeds and unit checks.

The screening histories and programme statistics are redrawn on one small cohort's true tumours
with several seeds; the study's functions run on the histories as the registry would hold them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from registry_lib import synth
from registry_lib.studies import screening_interval_cancers as si
from registry_lib.synth import screening
from registry_lib.synth.params import epidemiology_params

AGES = (50, 70)


@pytest.fixture(scope="module")
def cohort():
    cfg = synth.load_config("params/cohort/small.yaml")
    return synth.generate(cfg, quiet=True)


def _study_inputs(cohort, seed):
    params = epidemiology_params()
    tum = cohort.truth["tumours"]
    res = screening.assign_screening(tum, cohort.truth["patients"], cohort.reference["areas"], cohort.config,
                                     params, np.random.default_rng(seed))
    stats = screening.screening_statistics(cohort.reference["population"], cohort.reference["areas"], cohort.config,
                                           params, np.random.default_rng(seed + 1))
    ep = res.episodes
    scr = pd.DataFrame({"pseudo_id": ep["patient_id"], "programme": ep["programme"],
                        "invitation_date": pd.to_datetime(ep["invitation_day"].astype("int64"), unit="D"),
                        "attended": ep["attended"],
                        "test_date": pd.to_datetime(ep["test_day"], unit="D"), "result": ep["result"]})
    patients = cohort.truth["patients"].rename(columns={"patient_id": "pseudo_id"})
    tumours = tum.assign(route_to_diagnosis=res.routes).rename(columns={"patient_id": "pseudo_id"})
    t = si.programme_tumours(tumours, patients, sites=["C50"], sex=2)
    return t, scr, stats, res


def test_sensitivity_is_recovered_and_classification_matches_truth(cohort):
    configured = screening.sensitivity(epidemiology_params()["screening"]["programmes"]["breast"])
    covered = 0
    seeds = range(5)
    for seed in seeds:   # 5 redraws of the screening histories
        t, scr, stats, res = _study_inputs(cohort, 10 * seed)
        c = si.classify_detection(t, scr, programme="breast", interval_years=3)
        truth = res.detection[res.detection["programme"] == "breast"]
        agree = si.truth_agreement(c, truth, tumour_map=pd.Series(c["tumour_id"].to_numpy(),
                                                                  index=c["tumour_id"].to_numpy()))
        assert agree["agreement"] >= 0.99, agree["confusion"]
        screened = si.screened_women(stats, cohort.reference["areas"], programme="breast", years=(2013, 2019), sex=2)
        inc = si.underlying_incidence(t, cohort.reference["population"], cohort.reference["areas"],
                                      years=(2013, 2023), sex=2, age_range=AGES)
        pi = si.proportional_incidence(c, screened, inc, years=(2013, 2019), age_range=AGES, interval_years=3)
        s = pi["sensitivity"]
        covered += s["lower"] <= configured <= s["upper"]
    assert covered >= 4, f"sensitivity CI covered the configured {configured} in {covered} of {len(seeds)} seeds"


def test_proportional_incidence_rises_with_time_since_screen(cohort):
    t, scr, stats, _ = _study_inputs(cohort, 7)
    c = si.classify_detection(t, scr, programme="breast", interval_years=3)
    screened = si.screened_women(stats, cohort.reference["areas"], programme="breast", years=(2013, 2019), sex=2)
    inc = si.underlying_incidence(t, cohort.reference["population"], cohort.reference["areas"], years=(2013, 2023),
                                  sex=2, age_range=AGES)
    pi = si.proportional_incidence(c, screened, inc, years=(2013, 2019), age_range=AGES, interval_years=3)["by_year"]
    assert pi["proportional_incidence"].iloc[0] < pi["proportional_incidence"].iloc[2]


def test_screen_detected_cancers_are_earlier_stage(cohort):
    t, scr, _, _ = _study_inputs(cohort, 3)
    c = si.classify_detection(t, scr, programme="breast", interval_years=3)
    c = c.assign(stage=c["stage"].astype(str))
    s = si.stage_by_detection(c, {"sd": ["screen_detected"], "ic": ["interval"]}).set_index("detection")
    assert s.at["sd", "late_stage_share"] < s.at["ic", "late_stage_share"]


def test_classification_rules():
    tum = pd.DataFrame({"pseudo_id": list("abcde"), "tumour_id": list("12345"),
                        "diagnosis_date": pd.to_datetime(["2018-06-01"] * 5)})
    scr = pd.DataFrame({
        "pseudo_id": ["a", "b", "c", "d"], "programme": "breast",
        "invitation_date": pd.to_datetime(["2018-04-01", "2016-01-01", "2014-01-01", "2017-01-01"]),
        "attended": [True, True, True, False],
        "test_date": pd.to_datetime(["2018-05-01", "2016-02-01", "2014-02-01", None]),
        "result": ["positive", "negative", "negative", None]})
    c = si.classify_detection(tum, scr, programme="breast", interval_years=3)
    assert c["detection"].tolist() == ["screen_detected", "interval", "lapsed", "never_screened", "not_invited"]
    assert c["years_since_screen"].iloc[1] == pytest.approx(2.33, abs=0.01)


def test_rates_per_1000_have_poisson_limits():
    t = pd.DataFrame({"screen_date": pd.to_datetime(["2015-03-01"] * 3 + ["2015-05-01"] * 2),
                      "detection": ["screen_detected"] * 3 + ["interval"] * 2,
                      "age_at_diagnosis": [60] * 5, "years_since_screen": [0, 0, 0, 0.5, 1.5]})
    screened = pd.DataFrame({"year": [2015], "age_band": [60], "deprivation_quintile": [3], "london": [False],
                             "tested": [1000]})
    r = si.detection_rates(t, screened, years=(2015, 2015), age_range=AGES, interval_years=3)
    row = r["by_screen_year"].iloc[0]
    assert row["per_1000"] == pytest.approx(3.0)
    assert row["lower"] < 3.0 < row["upper"]
    assert r["by_year_since_screen"]["interval_cancers"].tolist() == [1, 1, 0]
