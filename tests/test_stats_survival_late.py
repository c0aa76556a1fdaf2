"""Late effects: Lexis splitting, expected counts, second-cancer SIRs, the BARD recall rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_lib.errors import RegistryLabError
from registry_lib.stats.survival import (
    bard_recall,
    cumulative_incidence,
    expected_counts,
    late_effects_cohort,
    lexis_split,
    second_cancer_sir,
)

INF = np.inf


def test_lexis_split_three_scales_by_hand():
    # born 1970.0, treated 1990.5, at risk 1995.5 -> 2001.25, event at exit
    df = pd.DataFrame({"id": [7], "birth": [1970.0], "rt": [1990.5], "entry": [1995.5],
                       "exit": [2001.25], "ev": [1]})
    out = lexis_split(df, entry="entry", exit="exit", event="ev", keep=["id"], scales={
        "age": ("birth", [0, 30, INF]),
        "period": (None, [1990, 2000, INF]),
        "since": ("rt", [5, 10, INF]),
    })
    # cuts: age 30 at 2000.0; period 2000 at 2000.0; since 10 at 2000.5
    assert out["start"].tolist() == [1995.5, 2000.0, 2000.5]
    assert out["stop"].tolist() == [2000.0, 2000.5, 2001.25]
    assert out["age"].tolist() == [0, 30, 30]
    assert out["period"].tolist() == [1990, 2000, 2000]
    assert out["since"].tolist() == [5, 5, 10]
    assert out["pyrs"].tolist() == pytest.approx([4.5, 0.5, 0.75])
    assert out["event"].tolist() == [0, 0, 1]
    assert out["id"].tolist() == [7, 7, 7]


def test_lexis_split_drops_time_outside_the_breaks():
    df = pd.DataFrame({"entry": [1.0], "exit": [9.0], "ev": [1]})
    out = lexis_split(df, entry="entry", exit="exit", event="ev",
                      scales={"t": (None, [2, 4, 6])})
    assert out["pyrs"].tolist() == [2.0, 2.0]
    assert out["event"].sum() == 0  # the event at 9 lies outside the bands
    with pytest.raises(RegistryLabError, match="exit must not precede entry"):
        lexis_split(df.assign(exit=0.5), entry="entry", exit="exit", scales={"t": (None, [0, 1])})
    with pytest.raises(RegistryLabError, match="increasing"):
        lexis_split(df, entry="entry", exit="exit", scales={"t": (None, [3, 1])})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1950, 2020), st.floats(0, 40), st.floats(0, 60),
                          st.booleans()), min_size=1, max_size=30))
def test_lexis_split_conserves_person_years_and_events(rows):
    df = pd.DataFrame(rows, columns=["birth", "delay", "length", "ev"])
    df["entry"] = df["birth"] + df["delay"]
    df["exit"] = df["entry"] + df["length"]
    df["id"] = np.arange(len(df))
    age_breaks = np.array([0, 15, 25, 35, 50, 70, INF])
    out = lexis_split(df, entry="entry", exit="exit", event="ev", keep=["id"], scales={
        "age": ("birth", age_breaks),
        "period": (None, [-INF, 1970, 1990, 2000, 2010, INF]),
    })
    assert out["pyrs"].sum() == pytest.approx(df["length"].sum(), rel=1e-9, abs=1e-9)
    assert out["event"].sum() == df["ev"].sum()
    assert (out["pyrs"] >= -1e-12).all()
    # every piece lies inside its bands
    age_mid = (out["start"] + out["stop"]) / 2 - df["birth"].to_numpy()[out["id"]]
    upper = age_breaks[np.searchsorted(age_breaks, out["age"]) + 1]
    assert (age_mid >= out["age"] - 1e-9).all() and (age_mid <= upper + 1e-9).all()


def test_expected_counts_and_missing_rate():
    py = pd.DataFrame({"age": [20.0, 25.0, 25.0], "period": [2000.0, 2000.0, 2010.0],
                       "pyrs": [1.0, 2.0, 4.0]})
    rates = pd.DataFrame({"age_band": [20, 25, 25], "period": [2000, 2000, 2010],
                          "rate": [0.1, 0.2, 0.3]})
    out = expected_counts(py, rates, ["age", "period"], rate_on=["age_band", "period"])
    assert out["expected"].tolist() == pytest.approx([0.1, 0.4, 1.2])
    with pytest.raises(RegistryLabError, match="no rate for"):
        expected_counts(py, rates.iloc[:2], ["age", "period"], rate_on=["age_band", "period"])


def _registry():
    pat = pd.DataFrame({
        "patient_id": [1, 2, 3, 4, 5, 6, 7],
        "sex": [2, 2, 2, 1, 2, 2, 2],
        "birth_date": ["1970-06-15", "1960-01-01", "1975-03-01", "1970-01-01", "1972-01-01",
                       "1980-01-01", "1965-01-01"],
        "death_date": [None, "2005-01-01", None, None, None, None, None],
    })
    tum = pd.DataFrame({
        "tumour_id": [11, 21, 31, 41, 51, 52, 61, 71, 12],
        "patient_id": [1, 2, 3, 4, 5, 5, 6, 7, 1],
        "diagnosis_date": ["1990-01-01", "1985-01-01", "2000-01-01", "1990-01-01",
                           "1990-01-01", "1989-01-01", "1995-01-01", "2001-01-01",
                           "2012-03-01"],
        "age_at_diagnosis": [19, 25, 24, 20, 18, 17, 15, 36, 41],
        "site_icd10": ["C81", "C81", "C81", "C81", "C81", "C50", "C81", "C81", "C50"],
    })
    trt = pd.DataFrame({
        "patient_id": [1, 2, 3, 4, 5, 6, 7],
        "tumour_id": [11, 21, 31, 41, 51, 61, 71],
        "modality": ["radiotherapy"] * 7,
        "rt_region": ["mantle", "chest", "pelvis", "chest", "chest", "chest", "chest"],
        "start_date": ["1990-02-01", "1985-03-01", "2000-02-01", "1990-02-01", "1990-02-01",
                       "1995-02-01", "2001-02-01"],
    })
    return pat, tum, trt


def test_late_effects_cohort_selection():
    pat, tum, trt = _registry()
    c = late_effects_cohort(pat, tum, trt, end_of_follow_up="2020-12-31").set_index("patient_id")
    # 3: pelvis RT; 4: man; 5: breast cancer before RT; 7: aged 36 at RT
    assert sorted(c.index) == [1, 2, 6]
    assert c.loc[1, "second_cancer"] == 1
    assert c.loc[1, "second_cancer_date"] == pd.Timestamp("2012-03-01")
    assert c.loc[2, "died"] == 1 and c.loc[2, "second_cancer"] == 0
    assert c.loc[6, "died"] == 0 and c.loc[6, "exit_date"] == pd.Timestamp("2020-12-31")
    assert c.loc[1, "age_at_rt"] == pytest.approx(19.63, abs=0.01)
    # without birth dates the birth is estimated from the first diagnosis (age + 0.5 years)
    c2 = late_effects_cohort(pat.drop(columns="birth_date"), tum, trt,
                             end_of_follow_up="2020-12-31").set_index("patient_id")
    assert c2.loc[1, "birth"] == pytest.approx(1990.0 - 19.5)
    assert "birth_date" not in c2.columns


def test_second_cancer_sir_by_hand():
    # two women, rates 0.001 below 40 and 0.002 from 40, one period
    cohort = pd.DataFrame({"birth": [1970.0, 1975.0], "rt": [1990.0, 1995.0],
                           "age_at_rt": [20.0, 20.0], "exit": [2015.0, 2018.0],
                           "second_cancer": [1, 0]})
    rates = pd.DataFrame({"age_band": [0, 40], "period": 1990, "rate": [0.001, 0.002]})
    sirs, py = second_cancer_sir(cohort, rates, sex=None, by={
        "age_at_treatment": [10, 20, 36], "time_since_treatment": [5, 15, INF]})
    overall = sirs[sirs["group"] == "overall"].iloc[0]
    # woman 1: ages 25-40 (15 y at .001) + 40-45 (5 y at .002); woman 2: 25-40 + 40-43
    assert overall["expected"] == pytest.approx(0.015 + 0.010 + 0.015 + 0.006)
    assert overall["observed"] == 1 and overall["pyrs"] == pytest.approx(38.0)
    assert overall["method"] == "exact"
    since = sirs[sirs["group"] == "time_since_treatment"].set_index("band")
    assert since.loc[5.0, "pyrs"] == pytest.approx(20.0)
    assert since.loc[15.0, "observed"] == 1  # the cancer at 25 years after RT
    assert py["expected"].sum() == pytest.approx(overall["expected"])
    with pytest.raises(RegistryLabError, match="extend the rates"):
        second_cancer_sir(cohort, rates.assign(age_band=[30, 40]), sex=None)


def _late_effect_cohort(seed: int, n: int = 3000, rr: float = 5.0):
    """Women treated at 10-36 whose breast cancer incidence is rr x the population rate."""
    rng = np.random.default_rng(seed)
    birth = rng.uniform(1940, 1985, n)
    age_rt = rng.uniform(10, 36, n)
    rt = birth + age_rt
    ages = np.arange(0, 101, 5)
    rate_by_age = 1e-5 * np.exp(0.09 * ages)  # per person-year, rising with age
    end = np.minimum(2023.0, rt + rng.uniform(10, 45, n))
    # piecewise-constant hazard by 5-year attained-age band, from the 5-year latency
    t = rt + 5
    event = np.zeros(n, dtype=int)
    exit_ = end.copy()
    alive = t < end
    while alive.any():
        band = np.clip(((t - birth) // 5).astype(int), 0, ages.size - 1)
        nxt = np.minimum(birth + (band + 1) * 5, end)
        draw = t + rng.exponential(1 / (rr * rate_by_age[band]))
        hit = alive & (draw < nxt)
        exit_[hit] = draw[hit]
        event[hit] = 1
        t = np.where(alive & ~hit, nxt, t)
        alive = alive & ~hit & (t < end)
    cohort = pd.DataFrame({"birth": birth, "rt": rt, "age_at_rt": age_rt, "exit": exit_,
                           "second_cancer": event})
    rates = pd.DataFrame({"age_band": ages, "period": 1900, "rate": rate_by_age})
    return cohort, rates


def test_second_cancer_sir_recovers_injected_relative_risk():
    rr, covered, sirs_ = 5.0, [], []
    for seed in range(20):
        cohort, rates = _late_effect_cohort(seed, rr=rr)
        sirs, _ = second_cancer_sir(cohort, rates, sex=None,
                                    by={"age_at_treatment": [10, 20, 30, 36]})
        overall = sirs.iloc[0]
        assert overall["observed"] > 50 and overall["lower"] > 1
        assert sirs[sirs["group"] == "age_at_treatment"]["observed"].sum() == \
            overall["observed"]
        covered.append(overall["lower"] < rr < overall["upper"])
        sirs_.append(overall["sir"])
    assert np.mean(covered) >= 0.85
    assert np.mean(sirs_) == pytest.approx(rr, rel=0.05)


def test_cumulative_incidence_of_second_cancer_with_death_competing():
    pat, tum, trt = _registry()
    c = late_effects_cohort(pat, tum, trt, end_of_follow_up="2020-12-31")
    c["years"] = c["exit"] - c["rt"]
    c["outcome"] = np.where(c["second_cancer"] == 1, 1, np.where(c["died"] == 1, 2, 0))
    ci = cumulative_incidence(c, "years", "outcome", times=[30])
    # three women: death at 19.8 y (1 of 3), cancer at 22.1 y (1 of 2 left) -> 2/3 * 1/2
    assert ci["cif"].iloc[0] == pytest.approx(1 / 3)


def test_bard_recall_by_hand():
    w = pd.DataFrame({
        "id": ["a", "b", "c", "d", "e", "f", "g", "h", "i"],
        "birth_date": ["1990-05-01", "1980-01-01", "2000-01-01", "1995-03-01", "1990-01-01",
                       "1985-01-01", "1975-06-30", "1992-02-29", "1996-01-01"],
        "rt_date": ["2010-05-01", "2014-01-01", "2018-06-01", "2004-06-01", "2000-01-01",
                    "2005-01-01", "2011-06-29", "2008-03-01", "2006-02-01"],
        "death_date": [None, None, None, None, "2023-12-31", "2024-06-01", None, None, None],
    })
    due = bard_recall(w, "2024-01-01").set_index("id")
    # a: 8y after RT (2018-05-01) later than age 25 (2015-05-01)
    assert due.loc["a", "due_from"] == pd.Timestamp("2018-05-01")
    # b: RT at 34 -> 2022-01-01; c: RT 2018 -> not due until 2026
    assert due.loc["b", "due_from"] == pd.Timestamp("2022-01-01")
    # d: RT at 9 -> not in the cohort; e: died before the reference date
    # f: alive on the reference date (dies later), RT at 20 -> due from 2013-01-01 (8y) vs
    #    2010-01-01 (age 25) -> 2013-01-01
    assert due.loc["f", "due_from"] == pd.Timestamp("2013-01-01")
    # g: RT the day before her 36th birthday (aged 35) -> in; due 2019-06-29
    assert due.loc["g", "age_at_rt"] == 35
    # h: born 29 Feb 1992, RT 2008 at 16: 25th birthday falls on 2017-02-28, 8y -> 2016-03-01
    assert due.loc["h", "due_from"] == pd.Timestamp("2017-02-28")
    # i: RT at 10 (2006) -> 8 years gives 2014, age 25 gives 2021-01-01
    assert due.loc["i", "due_from"] == pd.Timestamp("2021-01-01")
    assert sorted(due.index) == ["a", "b", "f", "g", "h", "i"]
    assert due["due_from"].is_monotonic_increasing
    assert due.loc["a", "age_on_reference_date"] == 33
    at30 = bard_recall(w, "2024-01-01", from_age=30).set_index("id")
    assert "i" not in at30.index and at30.loc["a", "due_from"] == pd.Timestamp("2020-05-01")
    with pytest.raises(RegistryLabError, match="radiotherapy before birth"):
        bard_recall(w.assign(rt_date="1970-01-01"), "2024-01-01")
