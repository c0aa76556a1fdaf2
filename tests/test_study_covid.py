"""Study 04 (COVID-19 impact): the covid_impact building blocks and the truth-recovery checks.

Issue 8 §7: on the ``default`` cohort the injected April 2020 multiplier and the true
cumulative deficit of every study site group lie inside the estimated CIs; with the COVID-19
effect removed, no significant deficit is reported in >= 90% of seeds (the study-level,
family-wise verdict over the study's site groups).
"""

from __future__ import annotations

import doctest
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from registry_lib import synth
from registry_lib.errors import RegistryLabError
from registry_lib.stats.sites import site_range
from registry_lib.studies import covid_impact as cs

ROOT = Path(__file__).resolve().parents[1]
STUDY = yaml.safe_load((ROOT / "params/studies/covid_impact.yaml").read_text())
STUDY.pop("parameter_types", None)  # the declarations, not a parameter
#: seeds of the null-effect cohorts (issue 8 §7: >= 90% of them report no significant deficit)
NULL_SEEDS = range(80)


def study_deficits(tumours: pd.DataFrame, **overrides) -> cs.DeficitAnalysis:
    """The notebook's headline analysis, with the study's parameters."""
    p = {**STUDY, **overrides}
    return cs.diagnosis_deficits(
        tumours, p["sites"], baseline=p["baseline"], end=p["series_end"], month=p["ratio_month"],
        windows=[tuple(w) for w in p["deficit_windows"]], n_sims=p["n_sims"], seed=p["seed"],
        level=p["level"], family=p["family"], seasonality=p["seasonality"], cov_type=p["cov_type"])


def daily_events(rate, start="2016-01-01", end="2021-06-30", seed=0, site="C50"):
    """Tumours from a Poisson process with daily rate ``rate(days)`` (vectorised)."""
    days = pd.date_range(start, end, freq="D")
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate(days))
    return pd.DataFrame({"diagnosis_date": np.repeat(days.values, n), "site_icd10": site})


# --------------------------------------------------------------------------------------------
# unit tests
# --------------------------------------------------------------------------------------------
def test_docstring_examples_run():
    result = doctest.testmod(cs, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 15 and result.failed == 0


def test_site_groups_expand_ranges_and_refuse_bad_or_overlapping_specs():
    assert site_range(" c18-C20 ") == ["C18", "C19", "C20"]
    assert cs.site_group_codes(["C50", "C18-C19"]) == {"C50": ["C50"], "C18-C19": ["C18", "C19"]}
    for bad in ("C5", "C20-C18", "C18-D20", "breast", "C18-C19-C20"):
        with pytest.raises(RegistryLabError, match="site"):
            site_range(bad)
    with pytest.raises(RegistryLabError, match="C19 is in both"):
        cs.site_group_codes(["C18-C20", "C19"])
    labels = cs.label_site_groups(pd.Series(["C18", "c20 ", "C50", None, "C619"]), ["C18-C20", "C61"])
    assert labels.iloc[[0, 1, 4]].tolist() == ["C18-C20", "C18-C20", "C61"]
    assert labels.iloc[[2, 3]].isna().all() and labels.name == "site_group"


def test_study_tumours_joins_the_patient_and_refuses_orphans_and_duplicates():
    rel = {
        "tumour": pd.DataFrame({"tumour_id": ["t1", "t2"], "pseudo_id": ["a", "b"],
                                "site_icd10": ["C50", "C34"],
                                "diagnosis_date": pd.to_datetime(["2019-05-01", "2020-05-01"])}),
        "patient": pd.DataFrame({"pseudo_id": ["a", "b"], "sex": [2, 1], "region": ["London", "X"],
                                 "death_date": pd.to_datetime([None, "2021-01-01"]),
                                 "death_cause_icd10": [None, "U071"]}),
    }
    out = cs.study_tumours(rel, sites=["C50"], periods={"baseline": ("2019-01", "2020-02"),
                                                        "pandemic": ("2020-03", "2021-12")})
    assert out["patient_id"].tolist() == ["a", "b"]
    assert out["sex"].tolist() == [2, 1] and out["region"].tolist() == ["London", "X"]
    assert out["site_group"].iloc[0] == "C50" and pd.isna(out["site_group"].iloc[1])
    assert out["period"].tolist() == ["baseline", "pandemic"]
    orphan = {**rel, "patient": rel["patient"].iloc[:1]}
    with pytest.raises(RegistryLabError, match="release tumour 't2'.*'b' is not in the patient"):
        cs.study_tumours(orphan)
    dup = {**rel, "patient": pd.concat([rel["patient"], rel["patient"].iloc[:1]])}
    with pytest.raises(RegistryLabError, match="'a' appears more than once"):
        cs.study_tumours(dup)
    with pytest.raises(RegistryLabError, match="no 'patient' table"):
        cs.study_tumours({"tumour": rel["tumour"]})


def test_death_before_diagnosis_is_dropped_and_counted():
    t = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2020-01-10", "2020-01-10", "2020-01-10"]),
                      "death_date": pd.to_datetime(["2020-01-09", "2020-01-10", None])})
    kept, n = cs.drop_death_before_diagnosis(t)
    assert n == 1 and kept.index.tolist() == [1, 2]


def test_window_labels_and_significance_rule():
    assert cs.window_label(["2020-03-15", "2021-12"]) == "2020-03..2021-12"
    with pytest.raises(RegistryLabError, match="before the first"):
        cs.window_label(("2021-01", "2020-01"))
    t = pd.DataFrame({"oe_upper": [0.99, 1.0, np.nan], "missing_lower": [-1, 0.0, 0.5]})
    assert cs.significant_deficit(t).tolist() == [True, False, True]
    with pytest.raises(RegistryLabError, match="no oe_upper"):
        cs.significant_deficit(pd.DataFrame({"x": [1]}))


def test_holm_adjustment_arithmetic():
    # sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 = 0.04, 0.09, 0.08, 0.5; running max 0.09
    assert cs.holm_adjust([0.01, 0.04, 0.03, 0.5]).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert cs.holm_adjust([0.3, 0.3]).tolist() == [0.6, 0.6]          # ties, capped below 1
    # sorted 0.02 x 3 = 0.06, 0.6 x 2 = 1.2, 0.7 x 1 = 0.7 (raised to 1.2 by the running max); cap 1
    assert cs.holm_adjust([0.6, 0.7, 0.02]).tolist() == pytest.approx([1.0, 1.0, 0.06])
    assert cs.holm_adjust([0.02]).tolist() == [0.02]                  # one test: unchanged
    assert cs.holm_adjust([]).tolist() == []
    with pytest.raises(RegistryLabError, match="in \\[0, 1\\]"):
        cs.holm_adjust([0.5, 1.2])


def _toy_p_values(p: dict[str, tuple[float, float]]) -> cs.DeficitAnalysis:
    """An analysis whose groups have the given (April O/E, window missing) one-sided p-values."""
    groups = list(p)
    ratio = pd.DataFrame({"site_group": groups, "month": pd.Timestamp("2020-04-01"), "observed": 50,
                          "expected": 60.0, "oe_ratio": 0.8, "oe_lower": 0.6, "oe_upper": 1.1})
    missing = pd.DataFrame({"site_group": groups, "window": "2020-03..2020-12", "observed": 500,
                            "missing_lower": -5.0})
    pv = pd.DataFrame([(g, q, v) for g, (a, b) in p.items()
                       for q, v in (("O/E 2020-04", a), ("missing 2020-03..2020-12", b))],
                      columns=["site_group", "quantity", "p_value"])
    return cs.DeficitAnalysis("site_group", pd.DataFrame(), None, ratio, missing, pd.DataFrame(), pv)


def test_family_verdict_combines_each_groups_checks_then_holm_adjusts_over_groups():
    d = _toy_p_values({"A": (0.004, 0.3), "B": (0.2, 0.011), "C": (0.6, 0.9), "D": (0.02, 0.02)})
    v = d.family_verdict(alpha=0.05)
    g = v["groups"]
    # group p = min(1, 2 x smaller p): A 0.008, B 0.022, C 1.0, D 0.04
    assert [g[k]["p_group"] for k in "ABCD"] == pytest.approx([0.008, 0.022, 1.0, 0.04])
    # Holm, smallest first: A 0.008 x 4, B 0.022 x 3, D 0.04 x 2, C 1.0 x 1 -> 0.032, 0.066, 0.08, 1.0
    assert [g[k]["p_adjusted"] for k in "ABCD"] == pytest.approx([0.032, 0.066, 1.0, 0.08])
    assert [g[k]["significant_deficit"] for k in "ABCD"] == [True, False, False, False]
    assert v["any_significant_deficit"] is True and v["window"] == "2020-03..2020-12"
    assert g["B"]["p_month"] == 0.2 and g["B"]["p_window"] == 0.011
    # at alpha 0.03 nothing survives; a per-group 0.05 rule would have flagged A, B and D
    assert d.family_verdict(alpha=0.03)["any_significant_deficit"] is False
    # one group: the verdict is the per-group rule (either one-sided p below alpha / 2)
    assert _toy_p_values({"A": (0.024, 0.5)}).family_verdict()["any_significant_deficit"] is True
    assert _toy_p_values({"A": (0.026, 0.5)}).family_verdict()["any_significant_deficit"] is False
    with pytest.raises(RegistryLabError, match="alpha=1.5"):
        d.family_verdict(alpha=1.5)
    with pytest.raises(RegistryLabError, match="not analysed"):
        d.family_verdict(window="2020-03..2021-12")


def test_diagnosis_deficits_recover_a_known_multiplier_and_deficit():
    # 6 a day, halved in April 2020 and at 80% from May to December 2020
    def rate(days):
        m = days.to_period("M")
        return 6.0 * np.where(m == pd.Period("2020-04"), 0.5,
                              np.where((m >= pd.Period("2020-05")) & (m <= pd.Period("2020-12")), 0.8, 1.0))

    t = daily_events(rate, seed=3)
    d = cs.diagnosis_deficits(t, ["C50"], baseline=("2016-01", "2020-02"), end="2021-06",
                              windows=[("2020-03", "2020-12")], family="poisson", seasonality="none",
                              n_sims=1000, seed=2)
    true_deficit = 6.0 * (30 * 0.5 + 245 * 0.2)   # April + May..December days
    r, m = d.ratio.iloc[0], d.missing.iloc[0]
    assert r.oe_lower < 0.5 < r.oe_upper < 0.8
    assert m.missing_lower < true_deficit < m.missing_upper
    assert bool(d.summary()["significant_deficit"].iloc[0])
    # the p-values come from the draws behind the CIs: a bound excludes no change exactly
    # when the one-sided p-value is below (1 - level) / 2 (up to the Monte Carlo +1)
    p = d.p_values.set_index("quantity")["p_value"]
    assert p["O/E 2020-04"] == p["missing 2020-03..2020-12"] == 1 / 1001   # no draw without a deficit
    assert d.family_verdict()["any_significant_deficit"] is True
    null = cs.diagnosis_deficits(daily_events(lambda x: np.full(len(x), 6.0), seed=4), ["C50"],
                                 baseline=("2016-01", "2020-02"), end="2021-06", family="poisson",
                                 seasonality="none", n_sims=1000, seed=2)
    s, p = null.summary().iloc[0], null.p_values.set_index("quantity")["p_value"]
    assert (p["O/E 2020-04"] < 0.025) == (s.oe_upper < 1)
    assert (p["missing 2020-03..2020-12"] < 0.025) == (s.missing_lower > 0)
    assert p.min() > 0.05 and not null.family_verdict()["any_significant_deficit"]
    est = d.estimates()
    assert est["quantity"].tolist() == ["O/E 2020-04", "missing 2020-03..2020-12"]
    assert est["observed"].tolist() == [int(r.observed), int(m.observed)]


def test_grouped_deficits_model_dense_groups_and_list_sparse_ones():
    t = daily_events(lambda d: np.full(len(d), 8.0), seed=5)
    rng = np.random.default_rng(1)
    t["deprivation_quintile"] = np.where(rng.random(len(t)) < 0.002, np.nan,
                                         rng.integers(1, 3, len(t)).astype(float))
    d = cs.grouped_deficits(t, "deprivation_quintile", baseline=("2016-01", "2020-02"), end="2021-06",
                            family="poisson", seasonality="none", n_sims=200)
    assert d.ratio["deprivation_quintile"].tolist() == ["1", "2"]
    assert d.dropped["deprivation_quintile"].tolist() == ["not recorded"]
    assert "a month in the baseline" in d.dropped["reason"].iloc[0]
    with pytest.raises(RegistryLabError, match="no group has 1000"):
        cs.grouped_deficits(t, "deprivation_quintile", baseline=("2016-01", "2020-02"), end="2021-06",
                            min_monthly_mean=1000)


def _toy_analysis(observed_april: int, observed_window: int) -> cs.DeficitAnalysis:
    ratio = pd.DataFrame({"site_group": ["C50"], "month": pd.to_datetime(["2020-04-01"]),
                          "observed": [observed_april], "expected": [20.0], "oe_ratio": [observed_april / 20],
                          "oe_lower": [0.1], "oe_upper": [0.9]})
    missing = pd.DataFrame({"site_group": ["C50"], "window": ["2020-03..2020-12"], "months": [10],
                            "observed": [observed_window], "expected": [200.0],
                            "missing": [200.0 - observed_window], "missing_lower": [-5.0],
                            "missing_upper": [60.0], "missing_pct": [10.0], "pct_lower": [-2.0],
                            "pct_upper": [30.0]})
    return cs.DeficitAnalysis("site_group", pd.DataFrame(), None, ratio, missing, pd.DataFrame())


def test_deficit_results_protect_counts_and_blank_what_rests_on_a_small_one(tmp_path):
    from registry_lib.release import scan_reports_for_unsafe_counts

    shown = cs.deficit_results(_toy_analysis(13, 178))["C50"]
    assert shown["month"]["observed"] == 15 and shown["month"]["oe_ratio"] == 0.65
    assert shown["cumulative_missing"]["2020-03..2020-12"]["observed"] == 180
    assert shown["significant_deficit"] is True          # from the O/E upper limit 0.9
    hidden = cs.deficit_results(_toy_analysis(3, 178))["C50"]
    assert hidden["month"]["observed"] is None and hidden["month"]["oe_upper"] is None
    assert hidden["month"]["expected"] == 20.0
    assert hidden["significant_deficit"] is False       # the window CI includes 0
    (tmp_path / "results.json").write_text(json.dumps({"sites": {"a": shown, "b": hidden}}))
    assert scan_reports_for_unsafe_counts(tmp_path) == []


def test_true_deficits_sum_over_codes_and_months_and_are_null_without_covid():
    site = {"multipliers": {"2020-03": 0.9, "2020-04": 0.5, "2021-01": 0.8},
            "expected_without_covid": {"2020-03": 10.0, "2020-04": 20.0, "2021-01": 10.0}}
    eff = {"covid": {"sites": {"C18": site, "C20": site}}}
    t = cs.true_deficits(eff, ["C18-C20"], windows=[("2020-03", "2020-12"), ("2020-01", "2021-12")])
    assert t["quantity"].tolist() == ["O/E 2020-04", "missing 2020-03..2020-12", "missing 2020-01..2021-12"]
    assert t["truth"].tolist() == pytest.approx([0.5, 2 * (1 + 10), 2 * (1 + 10 + 2)])
    null = cs.true_deficits({"covid": None}, ["C50"])
    assert null["truth"].tolist() == [1.0, 0.0]
    with pytest.raises(RegistryLabError, match="no COVID-19 truth for any site of 'C61'"):
        cs.true_deficits(eff, ["C61"])


def test_recovered_vs_true_marks_coverage_and_refuses_missing_truth():
    est = pd.DataFrame({"site_group": ["a", "a"], "quantity": ["q1", "q2"], "observed": [9, 9],
                        "estimate": [1.0, 1.0], "lower": [0.5, 0.5], "upper": [1.5, 1.5]})
    tru = pd.DataFrame({"site_group": ["a", "a"], "quantity": ["q1", "q2"], "truth": [1.5, 1.6]})
    assert cs.recovered_vs_true(est, tru)["covered"].tolist() == [True, False]
    with pytest.raises(RegistryLabError, match=r"no truth for \['a', 'q2'\]"):
        cs.recovered_vs_true(est, tru.iloc[:1])


def test_release_coverage_is_the_share_of_true_tumours_released():
    true = pd.DataFrame({"site_icd10": ["C18"] * 10 + ["C20"] * 10 + ["C50"] * 4,
                         "diagnosis_date": pd.to_datetime(["2019-06-01"] * 24)})
    released = true.iloc[[0, 1, 2, 3, 4, 10, 11, 12, 20]]
    cov = cs.release_coverage(released, true, ["C18-C20", "C50", "C61"], window=("2019-01", "2019-12"))
    assert cov["C18-C20"] == pytest.approx(8 / 20) and cov["C50"] == pytest.approx(1 / 4)
    assert np.isnan(cov["C61"])


def test_person_months_follow_exposure_month_by_month():
    pa = pd.DataFrame({"patient_id": [1, 2, 3], "sex": [1, 2, 1],
                       "death_date": pd.to_datetime(["2020-05-03", None, "2020-02-01"]),
                       "death_cause_icd10": ["U07.1", None, "C50"]})
    tu = pd.DataFrame({"patient_id": [1, 1, 2, 3], "age_at_diagnosis": [60, 62, 50, 70],
                       "diagnosis_date": pd.to_datetime(["2018-01-01", "2020-03-10", "2019-06-01",
                                                         "2019-01-01"]),
                       "comorbidity_score": [0.0, 2.0, np.nan, 1.0]})
    tx = pd.DataFrame({"patient_id": [1, 2, 2], "modality": ["sact", "SACT", "surgery"],
                       "start_date": pd.to_datetime(["2020-03-25", "2020-05-20", "2020-04-15"])})
    pm = cs.covid_death_person_months(pa, tu, tx, start="2020-03-01", end="2020-06-30",
                                      sact_lookback_days=28)
    one = pm[pm["patient_id"] == 1]
    assert one["landmark"].dt.strftime("%m").tolist() == ["03", "04", "05"]
    assert one["on_sact"].tolist() == [False, True, False]         # 25 March is in April's lookback
    assert one["comorbidity_score"].tolist() == [0.0, 2.0, 2.0]    # second tumour counted from April
    assert one["covid_death"].tolist() == [False, False, True] and one["t_stop"].iloc[-1] == 63.0
    assert one["age"].iloc[0] == pytest.approx(60.5 + (pd.Timestamp("2020-03-01")
                                                       - pd.Timestamp("2018-01-01")).days / 365.25)
    two = pm[pm["patient_id"] == 2]
    assert two["on_sact"].tolist() == [False, False, False, True] and not two["covid_death"].any()
    assert 3 not in set(pm["patient_id"])                          # dead before the window
    with pytest.raises(RegistryLabError, match="must be after"):
        cs.covid_death_person_months(pa, tu, tx, start="2020-03-01", end="2020-03-01")


def _reference_person_months(patients, tumours, treatments, *, start, end, sact_lookback_days=28,
                             covid_codes=("U07.1",)):
    """covid_death_person_months as first written (a groupby per landmark, frames concatenated,
    14 million object ids sorted at the end): the vectorised version must return the same frame."""
    t0, t1 = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if t1 <= t0:
        raise RegistryLabError(f"end={end!r} must be after start={start!r}")
    for name, df, cols in (
        ("patients", patients, ["patient_id", "sex", "death_date", "death_cause_icd10"]),
        ("tumours", tumours, ["patient_id", "diagnosis_date", "age_at_diagnosis"]),
        ("treatments", treatments, ["patient_id", "modality", "start_date"]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise RegistryLabError(f"covid_death_person_months {name}: missing column(s) {missing}")
    stop_all = t1 + pd.Timedelta(days=1)
    marks = pd.date_range(t0, t1, freq="MS")
    marks = marks.union(pd.DatetimeIndex([t0])).sort_values()
    nxt = list(marks[1:]) + [stop_all]

    tu = tumours[["patient_id", "diagnosis_date", "age_at_diagnosis"]].copy()
    tu["comorbidity_score"] = (tumours["comorbidity_score"] if "comorbidity_score" in tumours
                               else np.nan)
    tu["diagnosis_date"] = pd.to_datetime(tu["diagnosis_date"])
    tu = tu.loc[tu["diagnosis_date"].notna().to_numpy()].sort_values(
        ["patient_id", "diagnosis_date"], kind="stable")
    first = tu.drop_duplicates("patient_id", keep="first").set_index("patient_id")
    # birth approximated from the first tumour (age in completed years: + half a year)
    birth = first["diagnosis_date"] - pd.to_timedelta(
        (first["age_at_diagnosis"].astype(float) + 0.5) * 365.25, unit="D")

    pa = patients[["patient_id", "sex", "death_date", "death_cause_icd10"]].copy()
    pa = pa.loc[pa["patient_id"].isin(first.index).to_numpy()]
    pa["death_date"] = pd.to_datetime(pa["death_date"])
    codes = tuple(str(c).upper().replace(".", "") for c in covid_codes)
    cause = pa["death_cause_icd10"].astype("string").str.upper().str.replace(".", "", regex=False)
    pa["_covid"] = cause.str.strip().str.startswith(codes).fillna(False).to_numpy(dtype=bool)
    pa["_first_dx"] = pa["patient_id"].map(first["diagnosis_date"])
    pa["_birth"] = pa["patient_id"].map(birth)

    tx = treatments.loc[
        treatments["modality"].astype("string").str.lower().eq("sact").fillna(False).to_numpy()
        & treatments["patient_id"].notna().to_numpy(), ["patient_id", "start_date"]]
    tx_start = pd.to_datetime(tx["start_date"])

    parts = []
    for mark, upto in zip(marks, nxt, strict=True):   # loop over monthly landmarks
        alive = pa["death_date"].isna() | (pa["death_date"] >= mark)
        at = pa.loc[((pa["_first_dx"] < mark) & alive).to_numpy()]
        if at.empty:
            continue
        recent = (tx_start >= mark - pd.Timedelta(days=int(sact_lookback_days))) & (tx_start < mark)
        on = at["patient_id"].isin(tx.loc[recent.to_numpy(), "patient_id"])
        so_far = tu.loc[(tu["diagnosis_date"] < mark).to_numpy()]
        comorb = at["patient_id"].map(so_far.groupby("patient_id")["comorbidity_score"].max())
        died = at["death_date"].notna() & (at["death_date"] < upto)
        stop = at["death_date"].where(died, upto)
        parts.append(pd.DataFrame({
            "patient_id": at["patient_id"].to_numpy(),
            "landmark": mark,
            "t_start": float((mark - t0).days),
            "t_stop": ((stop - t0).dt.days.astype(float)).to_numpy(),
            "age": ((mark - at["_birth"]).dt.total_seconds() / 86400 / 365.25).to_numpy(),
            "sex": at["sex"].to_numpy(),
            "comorbidity_score": comorb.to_numpy(dtype=float),
            "on_sact": on.to_numpy(),
            "covid_death": (died & at["_covid"]).to_numpy(),
            "other_death": (died & ~at["_covid"]).to_numpy(),
        }))
    if not parts:
        raise RegistryLabError(f"covid_death_person_months: nobody at risk in {t0.date()}..{t1.date()}")
    out = pd.concat(parts, ignore_index=True)
    # a death on the landmark day itself gives a zero-length interval: count it as half a day
    out["t_stop"] = np.maximum(out["t_stop"], out["t_start"] + 0.5)
    return out.sort_values(["patient_id", "t_start"], kind="stable").reset_index(drop=True)



def _random_registry(seed, n=400):
    rng = np.random.default_rng(seed)
    ids = [f"P{i:04d}" for i in rng.permutation(n)]  # text ids in no particular order
    death = pd.Timestamp("2019-06-01") + pd.to_timedelta(rng.integers(0, 900, n), unit="D")
    death = pd.Series(death).where(rng.random(n) < 0.4)
    death[rng.random(n) < 0.05] = pd.Timestamp("2020-05-01")  # deaths on a landmark day
    pa = pd.DataFrame({"patient_id": ids, "sex": rng.integers(1, 3, n).astype(float), "death_date": death,
                       "death_cause_icd10": rng.choice(["U07.1", "U071", "C50", None], n)})
    k = rng.integers(1, 4, n)  # 1-3 tumours a patient, some without a date or a score
    tu = pd.DataFrame({"patient_id": np.repeat(ids, k),
                       "diagnosis_date": pd.Timestamp("2017-01-01") + pd.to_timedelta(rng.integers(0, 1800, k.sum()), "D"),
                       "age_at_diagnosis": rng.integers(20, 95, k.sum()),
                       "comorbidity_score": np.where(rng.random(k.sum()) < 0.3, np.nan, rng.integers(0, 4, k.sum()))})
    tu.loc[rng.random(len(tu)) < 0.03, "diagnosis_date"] = pd.NaT
    m = 3 * n
    tx = pd.DataFrame({"patient_id": rng.choice(ids + ["unknown", None], m),
                       "modality": rng.choice(["sact", "SACT", "surgery", "radiotherapy"], m),
                       "start_date": pd.Timestamp("2019-10-01") + pd.to_timedelta(rng.integers(0, 600, m), "D")})
    return pa, tu, tx


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_person_months_equal_the_first_implementation(seed):
    pa, tu, tx = _random_registry(seed)
    for start, end, lookback in (("2020-03-01", "2021-02-28", 28), ("2020-03-15", "2020-07-31", 90)):
        new = cs.covid_death_person_months(pa, tu, tx, start=start, end=end, sact_lookback_days=lookback)
        old = _reference_person_months(pa, tu, tx, start=start, end=end, sact_lookback_days=lookback)
        pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert new["on_sact"].any() and new["covid_death"].any() and new["comorbidity_score"].isna().any()


def test_covid_death_cox_on_many_rows_equals_lifelines():
    # from COUNTING_COX_MIN_ROWS person-months on, the Efron fit is ours; below, lifelines'
    from unittest import mock

    pa, tu, tx = _random_registry(4, n=3000)
    pm = cs.covid_death_person_months(pa, tu, tx, start="2020-03-01", end="2021-02-28")
    small = cs.covid_death_risk_tv(pm, method="cox")
    with mock.patch.object(cs, "COUNTING_COX_MIN_ROWS", 1):
        large = cs.covid_death_risk_tv(pm, method="cox")
    pd.testing.assert_frame_equal(large, small, rtol=1e-6)
    assert large["events"].iloc[0] == pm.dropna(subset=["comorbidity_score"])["covid_death"].sum() > 20


def test_person_month_counts_label_the_flags():
    pa, tu, tx = _random_registry(5)
    pm = cs.covid_death_person_months(pa, tu, tx, start="2020-03-01", end="2021-02-28")
    tab = pm.assign(on_sact=pm["on_sact"].map({True: "on SACT", False: "not on SACT"}),
                    covid_death=pm["covid_death"].map({True: "COVID-19 death", False: "no COVID-19 death"}))
    expected = tab.groupby(["on_sact", "covid_death"]).size().rename("count").reset_index()  # as the notebook did
    pd.testing.assert_frame_equal(cs.person_month_counts(pm), expected)


def test_covid_death_risk_recovers_a_known_sact_hazard_ratio():
    """Simulated patients, exposure switching month by month, true HR of SACT 3.0."""
    rng = np.random.default_rng(11)
    n = 6000
    ids = np.arange(n)
    age = rng.uniform(50, 85, n)
    sex = rng.integers(1, 3, n)
    comorb = rng.integers(0, 4, n).astype(float)
    tu = pd.DataFrame({"patient_id": ids, "age_at_diagnosis": np.floor(age).astype(int),
                       "diagnosis_date": pd.Timestamp("2019-06-01"), "comorbidity_score": comorb})
    months = pd.date_range("2020-01-01", "2020-12-01", freq="MS")
    # one SACT start per exposed patient-month, 10 days before the month starts
    on = rng.random((n, len(months))) < 0.15
    p_idx, m_idx = np.nonzero(on)
    tx = pd.DataFrame({"patient_id": ids[p_idx], "modality": "sact",
                       "start_date": months[m_idx] - pd.Timedelta(days=10)})
    log_h = np.log(0.004) + 0.06 * (age[:, None] - 70) + np.log(1.5) * (sex[:, None] == 1) \
        + np.log(1.3) * (comorb[:, None] - 1) + np.log(3.0) * on
    dies = rng.random((n, len(months))) < 1 - np.exp(-np.exp(log_h))
    first = np.where(dies.any(axis=1), dies.argmax(axis=1), -1)
    day = rng.integers(0, 28, n)
    death = pd.Series(pd.NaT, index=ids, dtype="datetime64[ns]")
    hit = first >= 0
    death[hit] = months[first[hit]] + pd.to_timedelta(day[hit], unit="D")
    pa = pd.DataFrame({"patient_id": ids, "sex": sex, "death_date": death.to_numpy(),
                       "death_cause_icd10": np.where(hit, "U071", None)})
    pm = cs.covid_death_person_months(pa, tu, tx, start="2020-01-01", end="2020-12-31",
                                      sact_lookback_days=28)
    for method, col in (("cox", "hazard_ratio"), ("logistic", "odds_ratio")):
        t = cs.covid_death_risk_tv(pm, method=method).set_index("term")
        assert t.at["on_sact", "lower"] < 3.0 < t.at["on_sact", "upper"], method
        assert t.at["on_sact", "lower"] > 1.5 and 2.0 < t.at["on_sact", col] < 4.5, method
        assert t.at["sex[2]", "lower"] < 1 / 1.5 < t.at["sex[2]", "upper"], method
    with pytest.raises(RegistryLabError, match="must be 'cox' or 'logistic'"):
        cs.covid_death_risk_tv(pm, method="poisson")


# --------------------------------------------------------------------------------------------
# truth recovery (issue 8 §7)
# --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_default_cohort_injected_deficits_lie_within_the_estimated_cis():
    """The study's headline analysis on the ``default`` cohort's true tumours.

    Exercised: the ``default`` cohort config and seed generated whole (so the tumours are the
    default cohort's), the study's parameters (sites, windows, model, seed) and the notebook's
    analysis (:func:`diagnosis_deficits`), against ``effects.json``. Not exercised here:
    feeds, linkage and the release (the notebook's truth check covers those on the released
    data, scaling the true deficits by the release's coverage; linkage and releases are tested
    elsewhere).
    """
    cohort = synth.generate(synth.load_config(ROOT / "params/cohort/default.yaml"), quiet=True)
    deficits = study_deficits(cohort.truth["tumours"])
    truth = cs.true_deficits(cohort.effects, STUDY["sites"], month=STUDY["ratio_month"],
                             windows=[tuple(w) for w in STUDY["deficit_windows"]])
    table = cs.recovered_vs_true(deficits.estimates(), truth)
    print("\n" + table.round(3).to_string())
    april = table[table["quantity"].str.startswith("O/E")]
    assert len(april) == len(STUDY["sites"]) and (april["truth"] < 1).all(), "every site has a deficit"
    assert table["covered"].all(), table.loc[~table["covered"]].to_string()
    verdict = deficits.family_verdict(alpha=1 - STUDY["level"])
    print({g: v["p_adjusted"] for g, v in verdict["groups"].items()})
    assert verdict["any_significant_deficit"], "true deficits exist: the study must report one"


@pytest.mark.slow
def test_null_covid_effect_reports_no_significant_deficit_in_90_percent_of_seeds():
    """With ``effects: {covid: null}`` no significant deficit is reported in >= 90% of seeds.

    One small cohort (scale 0.004, 2015-2020, the study's sites only) per seed, analysed by
    the notebook's headline analysis with the study's parameters. A seed "reports a
    significant deficit" when the study-level verdict (:meth:`DeficitAnalysis.family_verdict`
    at alpha = 1 - level: Holm over the study's site groups) is significant — the study's
    claim, so the family-wise error over its four site groups is what is tested, per seed.
    Controlled at 5%, so about 4 of 80 seeds by design; 80 seeds keep a 5% rate clear of the
    10% limit (P(>= 9 of 80) is about 0.02 at a true 5%).
    """
    codes = sorted({c for s in STUDY["sites"] for c in site_range(s)})
    flagged, per_site = [], []
    for seed in NULL_SEEDS:   # loop over seeds
        cfg = synth.load_config(ROOT / "params/cohort/small.yaml", seed=seed, years=(2015, 2020))
        cfg["sites"] = codes
        cfg["effects"] = {"covid": None, "cluster": None, "treatment_effect": None, "late_effect": None}
        cohort = synth.generate(cfg, quiet=True)
        assert cohort.effects["covid"] is None
        d = study_deficits(cohort.truth["tumours"], series_end="2020-12",
                           deficit_windows=STUDY["deficit_windows"][:1], seed=seed)
        verdict = d.family_verdict(alpha=1 - STUDY["level"])
        assert list(verdict["groups"]) == STUDY["sites"]
        flagged.append(verdict["any_significant_deficit"])
        per_site.append(d.summary()["significant_deficit"].any())
    clean = 1 - np.mean(flagged)
    print(f"\nnull: {int(np.sum(flagged))} of {len(flagged)} seeds report a significant deficit "
          f"(family-wise); clean share {clean:.3f} (any per-site 95% flag: {1 - np.mean(per_site):.3f})")
    assert len(flagged) >= 20 and clean >= 0.9
