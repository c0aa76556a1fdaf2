"""Screening histories and the Cancer Patient Experience Survey in synthetic England (issue 14):
feeds, calibration to the published figures, consistency with routes, switchable effects."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from registry_lib import synth
from registry_lib.errors import ConfigError
from registry_lib.synth import cpes, screening
from registry_lib.synth.params import epidemiology_params


@pytest.fixture(scope="module")
def cohort():
    cfg = synth.load_config("params/cohort/small.yaml", scale=0.002)
    return synth.generate(cfg, quiet=True)


def _days(series: pd.Series) -> np.ndarray:
    return pd.to_datetime(series).to_numpy().astype("datetime64[D]").astype(np.int64)


def test_feeds_truth_and_effects_are_written(cohort):
    assert {"screening", "cpes"} <= set(cohort.feeds)
    assert "screening_statistics" in cohort.reference
    assert "screening_detection" in cohort.truth
    rt = cohort.truth["record_truth"]
    for feed in ("screening", "cpes"):
        ids = set(rt.loc[rt["feed"] == feed, "record_id"])
        assert ids == set(cohort.feeds[feed]["record_id"]), feed
    assert cohort.effects["cpes"]["enabled"] and cohort.effects["screening"]["enabled"]
    breast = epidemiology_params()["screening"]["programmes"]["breast"]
    assert cohort.effects["screening"]["programmes"]["breast"]["sensitivity"] == pytest.approx(
        1 - np.mean(breast["proportional_incidence"]))


def test_cpes_is_calibrated_to_the_published_year(cohort):
    e = cohort.effects["cpes"]
    pub = epidemiology_params()["cpes"]["published"]
    assert abs(e["response_rate"] - pub["response_rate"]) < 0.04
    assert abs(e["mean_overall_rating"] - pub["mean_overall_rating"]) < 0.05
    for item, target in pub["items"].items():
        assert abs(e["items_yes"][item] - target) < 0.05, item
    feed = cohort.feeds["cpes"]
    answered = feed["overall_rating"].notna().to_numpy()
    assert (answered == feed["responded"].to_numpy()).all()
    assert feed["overall_rating"].dropna().between(0, 10).all()
    assert e["emergency_rating_effect"] < 0 and e["outlier_rating_effect"] < 0


def test_cpes_sample_is_adults_alive_at_mailing_with_an_april_to_june_episode(cohort):
    feed = cohort.feeds["cpes"]
    month = pd.to_datetime(feed["episode_date"]).dt.month
    assert month.isin([4, 5, 6]).all()
    birth = pd.to_datetime(feed["birth_date"], errors="coerce")
    age = (pd.to_datetime(feed["episode_date"]) - birth).dt.days / 365.25
    assert (age.dropna() >= 15.9).all()   # birth dates as sent may carry an injected error


def test_screen_detected_route_only_where_a_screen_found_the_cancer(cohort):
    tum = cohort.truth["tumours"]
    det = cohort.truth["screening_detection"]
    sd = set(det.loc[det["detection"] == "screen_detected", "tumour_id"])
    routed = set(tum.loc[tum["route_to_diagnosis"] == "Screen detected", "tumour_id"])
    assert sd == routed and sd


def test_histories_agree_with_the_truth_of_each_tumour(cohort):
    """Every screen-detected cancer has a positive test shortly before diagnosis; every interval
    cancer a negative test less than one interval before it."""
    tum = cohort.truth["tumours"].set_index("tumour_id")
    det = cohort.truth["screening_detection"]
    rt = cohort.truth["record_truth"]
    feed = cohort.feeds["screening"].merge(rt[rt["feed"] == "screening"][["record_id", "tumour_id"]], on="record_id")
    feed = feed[feed["attended"]]
    feed = feed.assign(test=_days(feed["test_date"]), dx=_days(feed["tumour_id"].map(tum["diagnosis_date"])))
    pos = feed[(feed["result"] == "positive") & (feed["dx"] - feed["test"]).between(0, 120)]
    sd = det[det["detection"] == "screen_detected"]
    assert set(sd["tumour_id"]) <= set(pos["tumour_id"])
    neg = feed[(feed["result"] == "negative") & (feed["dx"] - feed["test"]).between(0, 3 * 365.25)]
    ic = det[(det["detection"] == "interval") & (det["programme"] == "breast")]
    assert set(ic["tumour_id"]) <= set(neg["tumour_id"])
    assert len(ic) > 20


def test_effects_switch_off_with_null(cohort):
    cfg = copy.deepcopy(cohort.config)
    params = epidemiology_params()
    cfg["effects"]["screening"] = None
    res = screening.assign_screening(cohort.truth["tumours"], cohort.truth["patients"], cohort.reference["areas"],
                                     cfg, params, np.random.default_rng(1))
    assert res.episodes.empty and res.detection.empty
    assert (res.routes == cohort.truth["tumours"]["route_to_diagnosis"].to_numpy()).all()
    cfg["effects"]["cpes"] = None
    _, eff = cpes.survey(cohort.truth["tumours"], cohort.truth["treatments"], cohort.truth["patients"], cfg, params,
                         np.random.default_rng(1))
    assert not eff["enabled"] and eff["outlier_trust"] is None and eff["emergency_rating_effect"] == 0.0


def test_lead_time_pool_adds_screen_detected_cancers_and_leaves_interval_cancers(cohort):
    params = epidemiology_params()
    off = copy.deepcopy(params)
    off["screening"]["programmes"]["breast"]["sojourn_years"] = None
    cfg = copy.deepcopy(cohort.config)
    cfg["effects"]["covid"] = None      # the COVID-19 pause draws come later in the stream
    args = (cohort.truth["tumours"], cohort.truth["patients"], cohort.reference["areas"], cfg)

    def breast(p):
        d = screening.assign_screening(*args, p, np.random.default_rng(3)).detection
        return d[d["programme"] == "breast"].set_index("tumour_id")["detection"]

    with_pool, without = breast(params), breast(off)
    changed = with_pool != without
    assert changed.sum() > 0
    assert (with_pool[changed] == "screen_detected").all()
    # only cancers after a missed round (lapsed) or after leaving the ages are found earlier
    assert without[changed].isin(["lapsed", "not_eligible"]).all()
    # interval cancers (and so the proportional incidence) are untouched
    assert ((with_pool == "interval") == (without == "interval")).all()
    bad = copy.deepcopy(params)
    bad["screening"]["programmes"]["breast"]["sojourn_years"] = -1
    with pytest.raises(ConfigError, match="sojourn_years"):
        screening.assign_screening(*args, bad, np.random.default_rng(3))


def test_survey_is_deterministic(cohort):
    params = epidemiology_params()
    a, _ = cpes.survey(cohort.truth["tumours"], cohort.truth["treatments"], cohort.truth["patients"], cohort.config,
                       params, np.random.default_rng(5))
    b, _ = cpes.survey(cohort.truth["tumours"], cohort.truth["treatments"], cohort.truth["patients"], cohort.config,
                       params, np.random.default_rng(5))
    pd.testing.assert_frame_equal(a, b)


def test_unknown_programme_is_refused(cohort):
    cfg = copy.deepcopy(cohort.config)
    cfg["effects"]["screening"] = {"programmes": ["lung"]}
    with pytest.raises(ConfigError, match="lung"):
        screening.assign_screening(cohort.truth["tumours"], cohort.truth["patients"], cohort.reference["areas"],
                                   cfg, epidemiology_params(), np.random.default_rng(1))


def test_statistics_follow_coverage():
    """Women tested per year ~ eligible x coverage / interval."""
    p = epidemiology_params()["screening"]["programmes"]["breast"]
    areas = pd.DataFrame({"area_id": ["A", "B"], "region": ["North East", "London"], "deprivation_quintile": [3, 3]})
    pop = pd.DataFrame({"area_id": ["A", "B"], "year": [2019, 2019], "sex": [2, 2], "age_band": [55, 55],
                        "population": [300_000, 300_000]})
    cfg = {"years": [2019, 2019], "effects": {"screening": {"programmes": ["breast"]}, "covid": None}}
    s = screening.screening_statistics(pop, areas, cfg, epidemiology_params(), np.random.default_rng(3))
    cov = screening.coverage_probability(p, np.array([3, 3]), np.array([False, True])) / 3
    assert s["tested"].to_numpy() == pytest.approx(300_000 * cov, rel=0.02)
