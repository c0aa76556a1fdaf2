"""Kaplan–Meier tables and Aalen–Johansen cumulative incidence (registry_lib.stats.survival)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import AalenJohansenFitter, KaplanMeierFitter

from registry_lib.errors import RegistryLabError
from registry_lib.stats.survival import cumulative_incidence, km_table


def test_km_table_by_hand():
    # arm a: times 1(d) 2(c) 3(d) 3(d) 5(c); arm b: 2(d) 4(d)
    df = pd.DataFrame({"t": [1, 2, 3, 3, 5, 2, 4], "d": [1, 0, 1, 1, 0, 1, 1],
                       "arm": ["a"] * 5 + ["b"] * 2})
    km = km_table(df, "t", "d", "arm")
    a = km[km["arm"] == "a"]
    assert a["time"].tolist() == [0, 1, 2, 3, 5]
    assert a["n_at_risk"].tolist() == [5, 5, 4, 3, 1]
    assert a["n_events"].tolist() == [0, 1, 0, 2, 0]
    assert a["n_censored"].tolist() == [0, 0, 1, 0, 1]
    assert a["survival"].to_numpy() == pytest.approx([1, 0.8, 0.8, 0.8 / 3, 0.8 / 3])
    b = km[km["arm"] == "b"]
    assert b["survival"].to_numpy() == pytest.approx([1, 0.5, 0.0])
    assert list(km.columns) == ["arm", "time", "n_at_risk", "n_events", "n_censored",
                                "survival", "lower", "upper"]
    assert (km["lower"] <= km["survival"] + 1e-12).all()
    assert (km["upper"] >= km["survival"] - 1e-12).all()


def test_km_limits_are_lifelines_exponential_greenwood():
    rng = np.random.default_rng(0)
    t = rng.exponential(2, 200)
    d = rng.random(200) < 0.7
    km = km_table(pd.DataFrame({"t": t, "d": d}), "t", "d", level=0.9)
    ref = KaplanMeierFitter(alpha=0.1).fit(t, d)
    ci = ref.confidence_interval_survival_function_.iloc[1:]
    assert km["lower"].to_numpy()[1:] == pytest.approx(ci.iloc[:, 0].to_numpy())
    assert km["upper"].to_numpy()[1:] == pytest.approx(ci.iloc[:, 1].to_numpy())


def test_km_table_read_at_times():
    df = pd.DataFrame({"t": [1, 2, 3, 3, 5], "d": [1, 0, 1, 1, 0]})
    km = km_table(df, "t", "d", times=[0.5, 2.5, 3, 10])
    assert km["n_at_risk"].tolist() == [5, 3, 3, 0]
    assert km["n_events"].tolist() == [0, 1, 2, 0]
    assert km["n_censored"].tolist() == [0, 1, 0, 1]
    assert km["survival"].to_numpy() == pytest.approx([1, 0.8, 0.8 / 3, 0.8 / 3])


def test_km_bad_input():
    with pytest.raises(RegistryLabError, match="durations must be finite"):
        km_table(pd.DataFrame({"t": [1, -2], "d": [1, 1]}), "t", "d")
    with pytest.raises(RegistryLabError, match="not found"):
        km_table(pd.DataFrame({"t": [1]}), "t", "dead")
    with pytest.raises(RegistryLabError, match="missing values"):
        km_table(pd.DataFrame({"t": [1, 2], "d": [1, 1], "g": ["a", None]}), "t", "d", "g")


def test_cif_by_hand_with_tied_event_types():
    # times 1: one cancer (1) and one death (2) tied; 2: censored; 3: cancer; 4: death
    df = pd.DataFrame({"t": [1, 1, 2, 3, 4, 5], "e": [1, 2, 0, 1, 2, 0]})
    out = cumulative_incidence(df, "t", "e")
    # S(0)=1; at 1: n=6, d=2 (1 of interest) -> F += 1*1/6; S = 4/6
    # at 3: n=3, d=1 of interest -> F += (4/6)*(1/3); S = 4/6 * 2/3
    assert out["time"].tolist() == [0, 1, 2, 3, 4, 5]
    assert out["cif"].to_numpy() == pytest.approx([0, 1 / 6, 1 / 6, 1 / 6 + 4 / 18,
                                                   1 / 6 + 4 / 18, 1 / 6 + 4 / 18])
    assert out["n_competing"].tolist() == [0, 1, 0, 0, 1, 0]
    deaths = cumulative_incidence(df, "t", "e", event_of_interest=2)
    # at 1: 1/6; at 4: n=2, S(4-)=4/6*2/3=4/9 -> += 4/9 * 1/2
    assert deaths["cif"].iloc[-1] == pytest.approx(1 / 6 + 2 / 9)


def test_cif_matches_lifelines_on_untied_data():
    rng = np.random.default_rng(3)
    t = rng.exponential(1.0, 300)
    e = rng.choice([0, 1, 2], 300, p=[0.3, 0.3, 0.4])
    ours = cumulative_incidence(pd.DataFrame({"t": t, "e": e}), "t", "e").set_index("time")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        aj = AalenJohansenFitter().fit(t, e, event_of_interest=1)
    ref = aj.cumulative_density_.iloc[:, 0]
    assert ours["cif"].reindex(ref.index).to_numpy() == pytest.approx(ref.to_numpy(), abs=1e-12)
    var = aj.variance_.to_numpy()
    ok = np.isfinite(var)
    assert (ours["se"].to_numpy() ** 2)[ok] == pytest.approx(var[ok], abs=1e-12)
    # lifelines labels its lower limit "upper" (it is exp(-exp(. + z se))): compare values
    lo = aj.confidence_interval_.iloc[:, 0].to_numpy()
    ok = np.isfinite(lo)
    assert ours["lower"].to_numpy()[ok] == pytest.approx(lo[ok], abs=1e-10)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 2)), min_size=1, max_size=40))
def test_cif_of_all_causes_is_one_minus_km(rows):
    df = pd.DataFrame(rows, columns=["t", "e"])
    c1 = cumulative_incidence(df, "t", "e", 1)
    c2 = cumulative_incidence(df, "t", "e", 2)
    km = km_table(df.assign(d=(df["e"] > 0).astype(int)), "t", "d")
    assert (c1["cif"] + c2["cif"]).to_numpy() == pytest.approx(1 - km["survival"].to_numpy(),
                                                              abs=1e-12)
    assert (np.diff(c1["cif"]) >= -1e-15).all()


def test_cif_bad_codes():
    with pytest.raises(RegistryLabError, match="event codes"):
        cumulative_incidence(pd.DataFrame({"t": [1, 2], "e": [1, -1]}), "t", "e")


@pytest.mark.parametrize("name", ["survival", "survival_curves", "survival_cox",
                                  "survival_trial", "survival_net", "survival_late",
                                  "survival_sim"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    module = importlib.import_module(f"registry_lib.stats.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
