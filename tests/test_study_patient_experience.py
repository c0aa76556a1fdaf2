"""Study 06 (patient experience): truth recovery across seeds and unit checks.

The survey is redrawn on one small cohort's true patients with several seeds (cheap: the survey
is the only random step that matters), with the study's own functions on the answers."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from registry_lib import synth
from registry_lib.errors import RegistryLabError
from registry_lib.studies import patient_experience as pe
from registry_lib.synth import cpes
from registry_lib.synth.params import epidemiology_params

CPES_COLS = ["tumour_id", "survey_year", "trust_code", "site_icd10", "episode_date", "responded", "overall_rating",
             *pe.QUESTIONS.keys() - {"overall_rating"}]


@pytest.fixture(scope="module")
def truth():
    cfg = synth.load_config("params/cohort/small.yaml")
    c = synth.generate(cfg, quiet=True)
    return cfg, c.truth


def _sample(cfg, truth, effect, seed):
    cfg = copy.deepcopy(cfg)
    cfg["effects"]["cpes"] = effect
    frame, eff = cpes.survey(truth["tumours"], truth["treatments"], truth["patients"], cfg, epidemiology_params(),
                             np.random.default_rng(seed))
    release = {"cpes": frame[CPES_COLS].assign(pseudo_id=frame["patient_id"]),
               "patient": truth["patients"].rename(columns={"patient_id": "pseudo_id"}).assign(region=""),
               "tumour": truth["tumours"].assign(stage=truth["tumours"]["stage_recorded"])}
    return pe.survey_sample(release), eff


def test_null_effect_flags_no_trust_in_at_least_95_percent_of_seeds(truth):
    cfg, t = truth
    flagged = 0
    seeds = range(20)
    for seed in seeds:   # 20 redraws of the survey
        s, eff = _sample(cfg, t, None, seed)
        assert not eff["enabled"]
        table = pe.casemix_adjusted(s[s["responded"]], "overall_rating")
        flagged += bool((table["outlier_99_8"] != "").any())
    assert flagged <= 1, f"{flagged} of {len(seeds)} null seeds flagged a trust beyond 99.8%"


def test_route_effect_and_outlier_trust_are_recovered(truth):
    cfg, t = truth
    covered = found = 0
    n = 10
    for seed in range(100, 100 + n):   # 10 redraws
        s, eff = _sample(cfg, t, cfg["effects"]["cpes"], seed)
        r = s[s["responded"]]
        est = pe.route_effect(r)
        covered += est["lower"] <= eff["emergency_rating_effect"] <= est["upper"]
        table = pe.casemix_adjusted(r, "overall_rating").set_index("trust_code")
        found += table.at[eff["outlier_trust"], "outlier_99_8"] == "below"
    assert covered >= 8, f"route effect CI covered the truth in {covered} of {n} seeds"
    assert found >= 9, f"outlier trust flagged in {found} of {n} seeds"


def test_casemix_adjustment_removes_a_case_mix_difference():
    """Two trusts with the same care but different patients: adjusted scores agree."""
    rng = np.random.default_rng(0)
    n = 4000
    old = rng.random(n) < np.where(np.arange(n) < n // 2, 0.8, 0.2)
    trust = np.where(np.arange(n) < n // 2, "A", "B")
    rating = 8 + 1.0 * old + rng.normal(0, 1, n)
    d = pd.DataFrame({"trust_code": trust, "age_band": np.where(old, "75-84", "45-54"), "overall_rating": rating})
    t = pe.casemix_adjusted(d, "overall_rating", covariates=["age_band"]).set_index("trust_code")
    assert abs(t.at["A", "observed_mean"] - t.at["B", "observed_mean"]) > 0.5
    assert abs(t.at["A", "adjusted"] - t.at["B", "adjusted"]) < 0.15
    assert (t["outlier_99_8"] == "").all()


def test_response_weights_restore_the_sample_mean():
    rng = np.random.default_rng(1)
    n = 20000
    group = rng.choice(["a", "b"], n)
    y = np.where(group == "a", 9.0, 7.0)
    responded = rng.random(n) < np.where(group == "a", 0.8, 0.3)
    d = pd.DataFrame({"g": group, "responded": responded, "overall_rating": y})
    for q in pe.QUESTIONS:
        d[q] = d.get(q, pd.Series(np.where(responded, 1.0, np.nan)))
    w = pe.response_weights(d, ["g"])
    r = d[d["responded"]]
    weighted = pe.weighted_results(r.assign(all="all"), w, ["all"])
    est = weighted.set_index("question").at["overall_rating", "estimate"]
    assert est == pytest.approx(y.mean(), abs=0.05)
    assert r["overall_rating"].mean() > y.mean() + 0.4   # unweighted is biased


def test_a_release_without_the_survey_is_refused():
    with pytest.raises(RegistryLabError, match="cpes"):
        pe.survey_sample({"patient": pd.DataFrame(), "tumour": pd.DataFrame()})


def test_share_intervals_stay_within_0_and_100_in_small_groups_and_match_wald_in_large_ones():
    rng = np.random.default_rng(4)
    for n in (3, 12, 40):
        r = pd.DataFrame({"g": "x", "overall_rating": rng.integers(0, 11, n).astype(float),
                          **{q: rng.integers(0, 2, n).astype(float) for q in pe.QUESTIONS if q != "overall_rating"}})
        w = pd.Series(rng.uniform(0.5, 3, n), index=r.index)
        out = pe.weighted_results(r, w, ["g"])
        shares = out[out["question"] != "overall_rating"]
        assert (shares["lower"] >= 0).all() and (shares["upper"] <= 100).all()
        assert ((shares["lower"] <= shares["estimate"]) & (shares["estimate"] <= shares["upper"])).all()
    big = pd.DataFrame({"g": "x", "overall_rating": 8.0, **{q: (np.arange(40000) % 4 == 0).astype(float)
                                                           for q in pe.QUESTIONS if q != "overall_rating"}})
    row = pe.weighted_results(big, pd.Series(1.0, index=big.index), ["g"]).iloc[1]
    half = 1.959964 * np.sqrt(0.25 * 0.75 / 40000) * 100
    assert row["estimate"] == pytest.approx(25.0)
    assert (row["lower"], row["upper"]) == (pytest.approx(25 - half, abs=0.01), pytest.approx(25 + half, abs=0.01))
