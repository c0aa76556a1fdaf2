"""Each injected effect is present in the truth at its configured size; null removes it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from registry_lib import synth


def _cfg(seed=11, scale=0.01, years=(2013, 2023), **changes):
    cfg = synth.load_config("params/cohort/small.yaml", seed=seed, scale=scale, years=years)
    for key, value in changes.items():
        if key == "effects":
            for name, spec in value.items():
                cfg["effects"][name] = None if spec is None else {**(cfg["effects"][name] or {}), **spec}
        else:
            cfg[key] = value
    return cfg


def poisson_ci(observed: int, level: float = 0.99) -> tuple[float, float]:
    a = 1 - level
    lo = stats.chi2.ppf(a / 2, 2 * observed) / 2 if observed > 0 else 0.0
    return lo, stats.chi2.ppf(1 - a / 2, 2 * observed + 2) / 2


# ---------------------------------------------------------------------------------- cluster
def _cluster_sir(c, eff) -> tuple[int, float]:
    """Observed and age-sex-year-indirectly-expected cases within the cluster radius, from the
    rates outside it (independent of the generator's own expectation)."""
    t = c.truth["tumours"]
    pop = c.reference["population"]
    areas = c.reference["areas"]
    src = c.reference["point_sources"].set_index("source_id").loc[eff["source_id"]]
    near = set(areas.loc[np.hypot(areas.x - src.x, areas.y - src.y) <= eff["radius_km"] * 1000, "area_id"])
    patients = c.truth["patients"][["patient_id", "sex"]]
    cases = t[t.site_icd10 == eff["site"]].merge(patients, on="patient_id")
    cases = cases.assign(year=cases.diagnosis_date.dt.year,
                         age_band=np.minimum(cases.age_at_diagnosis // 5 * 5, 90), near=cases.area_id.isin(near))
    pop = pop.assign(near=pop.area_id.isin(near))
    keys = ["year", "sex", "age_band"]
    out_rates = (cases[~cases.near].groupby(keys).size()
                 / pop[~pop.near].groupby(keys)["population"].sum()).fillna(0).rename("rate")
    near_pop = pop[pop.near].groupby(keys)["population"].sum()
    expected = float((near_pop * out_rates.reindex(near_pop.index).fillna(0)).sum())
    return int(cases.near.sum()), expected


@pytest.fixture(scope="module")
def cluster_cohorts():
    on = synth.generate(_cfg(scale=0.03, sites=["C67"]), quiet=True)
    off = synth.generate(_cfg(scale=0.03, sites=["C67"], effects={"cluster": None}), quiet=True)
    return on, off


def test_cluster_relative_risk_near_the_source(cluster_cohorts):
    on, off = cluster_cohorts
    eff = on.effects["cluster"]
    assert (eff["site"], eff["source_id"], eff["relative_risk"], eff["radius_km"]) == ("C67", "PS0001", 3.0, 8.0)   # small.yaml
    observed, expected = _cluster_sir(on, eff)
    assert observed == eff["observed_within_radius"]
    lo, hi = poisson_ci(observed)
    assert lo / expected < 3.0 * 1.15 and hi / expected > 3.0 / 1.15       # SIR consistent with RR 3
    assert observed / expected > 2.0
    # the generator's own expectation agrees with the independent one
    assert eff["expected_without_effect"] == pytest.approx(expected, rel=0.35)
    # in_cluster cases: the right site, inside the radius, in the configured years
    t = on.truth["tumours"]
    flagged = t[t.in_cluster]
    assert len(flagged) == eff["in_cluster_cases"] > 0
    assert set(flagged.area_id) <= set(eff["areas_within_radius"]) and set(flagged.site_icd10) == {"C67"}
    assert flagged.diagnosis_date.dt.year.between(*eff["years"]).all()


def test_null_cluster_gives_no_excess(cluster_cohorts):
    on, off = cluster_cohorts
    assert off.effects["cluster"] is None
    assert not off.truth["tumours"]["in_cluster"].any()
    observed, expected = _cluster_sir(off, on.effects["cluster"])
    lo, hi = poisson_ci(observed)
    assert lo <= expected * 1.25 and hi >= expected / 1.25                 # SIR consistent with 1


# ---------------------------------------------------------------------------------- treatment effect
def _iptw_hr(c, grace=120) -> tuple[float, float, float, float]:
    """Landmark at the grace window, IPTW Cox (propensity on the confounders) and the naive HR."""
    import statsmodels.api as sm
    from lifelines import CoxPHFitter

    te = c.config["effects"]["treatment_effect"]
    tu, tr, pt = c.truth["tumours"], c.truth["treatments"], c.truth["patients"]
    el = tu[tu.site_icd10.isin(te["sites"]) & (tu.stage == str(te["stage"]))]
    el = el[el.tumour_id.isin(tr.loc[tr.modality == "surgery", "tumour_id"])]
    sact = tr[(tr.modality == "sact") & (tr.intent == "adjuvant")].drop_duplicates("tumour_id")
    el = el.merge(sact[["tumour_id", "start_date"]], on="tumour_id", how="left").merge(pt, on="patient_id")
    end = el.death_date.fillna(pd.Timestamp(c.config["end_of_follow_up"]))
    el = el.assign(t=(end - el.diagnosis_date).dt.days, event=el.death_date.notna().astype(int),
                   treated=((el.start_date - el.diagnosis_date).dt.days <= grace).astype(int))
    naive = CoxPHFitter().fit(el[["t", "event", "treated"]], "t", "event").params_["treated"]
    lm = el[el.t > grace].assign(t=lambda d: d.t - grace)
    x = sm.add_constant(lm[["age_at_diagnosis", "performance_status", "comorbidity_score",
                            "deprivation_quintile"]].astype(float))
    ps = sm.Logit(lm.treated, x).fit(disp=0).predict(x)
    p = lm.treated.mean()
    lm = lm.assign(w=np.where(lm.treated == 1, p / ps, (1 - p) / (1 - ps)))
    fit = CoxPHFitter().fit(lm[["t", "event", "treated", "w"]], "t", "event", weights_col="w", robust=True)
    s = fit.summary.loc["treated"]
    return float(np.exp(s["coef"])), float(np.exp(s["coef lower 95%"])), float(np.exp(s["coef upper 95%"])), float(np.exp(naive))


@pytest.mark.slow
@pytest.mark.parametrize("hr", [0.70, 1.0])
def test_treatment_effect_recovered_and_confounded(hr):
    c = synth.generate(_cfg(seed=12, scale=0.03, years=(2013, 2019), sites=["C18", "C19", "C20"],
                            effects={"treatment_effect": {"hazard_ratio": hr}}), quiet=True)
    assert c.effects["treatment_effect"]["hazard_ratio"] == hr
    assert c.effects["treatment_effect"]["eligible_first_primaries"] > 1000
    est, lo, hi, naive = _iptw_hr(c)
    assert lo <= hr <= hi, (est, lo, hi)
    assert naive < est * 0.8              # fitter patients are treated more: naive looks better


def test_null_treatment_effect_is_recorded():
    cfg = _cfg(scale=0.002, years=(2019, 2019), sites=["C18"], effects={"treatment_effect": None})
    assert synth.generate(cfg, quiet=True).effects["treatment_effect"] is None


# ---------------------------------------------------------------------------------- late effect
def _late_cohort(rr):
    return synth.generate(_cfg(seed=13, scale=0.02, sites=["C81", "C50"], historic={"start": 1965, "sites": ["C81", "C50"]},
                               effects={"late_effect": {"relative_risk": rr}}), quiet=True)


def _recount_late(c) -> int:
    """Women whose first cancer is Hodgkin, chest/mantle RT at 10-35, breast ≥ 5 years after RT."""
    le = c.effects["late_effect"]
    tu, tr, pt = c.truth["tumours"], c.truth["treatments"], c.truth["patients"]
    first = tu.sort_values(["patient_id", "diagnosis_date", "tumour_id"]).drop_duplicates("patient_id")
    hl = first[first.site_icd10 == "C81"].merge(pt[["patient_id", "sex", "birth_date"]], on="patient_id")
    rt = tr[(tr.modality == "radiotherapy") & tr.rt_region.isin(le["rt_regions"])][["tumour_id", "start_date"]]
    hl = hl[hl.sex == 2].merge(rt, on="tumour_id")
    age_rt = (hl.start_date - hl.birth_date).dt.days / 365.25
    hl = hl[(age_rt >= 10) & (age_rt < 36)]
    breast = tu[tu.site_icd10 == "C50"][["patient_id", "diagnosis_date"]].rename(columns={"diagnosis_date": "bc"})
    m = hl.merge(breast, on="patient_id")
    return int(((m.bc - m.start_date).dt.days >= le["latency_years"] * 365.25 - 1).sum())


@pytest.mark.slow
def test_late_effect_relative_risk():
    c = _late_cohort(5.0)
    le = c.effects["late_effect"]
    assert le["cohort_size"] > 200
    assert _recount_late(c) == le["observed"]
    lo, hi = poisson_ci(le["observed"])
    assert lo / le["expected"] < 5.0 < hi / le["expected"]
    assert lo / le["expected"] > 2.0
    null = _late_cohort(1.0).effects["late_effect"]
    lo, hi = poisson_ci(null["observed"])
    assert lo / null["expected"] < 1.0 < hi / null["expected"]


# ---------------------------------------------------------------------------------- COVID-19
@pytest.fixture(scope="module")
def covid_cohorts():
    on = synth.generate(_cfg(seed=14, scale=0.02, years=(2019, 2020)), quiet=True)
    off = synth.generate(_cfg(seed=14, scale=0.02, years=(2019, 2020), effects={"covid": None}), quiet=True)
    return on, off


def _april_ratio(c, truth_effects) -> tuple[int, float, float]:
    sites = truth_effects["sites"]
    t = c.truth["tumours"]
    obs = int(((t.diagnosis_date.dt.year == 2020) & (t.diagnosis_date.dt.month == 4)).sum())
    exp_without = sum(s["expected_without_covid"]["2020-04"] for s in sites.values())
    exp_with = sum(s["expected_without_covid"]["2020-04"] * s["april_2020_multiplier"] for s in sites.values())
    return obs, exp_without, exp_with


def test_covid_april_deficit(covid_cohorts):
    on, off = covid_cohorts
    cv = on.effects["covid"]
    configured = on.config["effects"]["covid"]
    april = configured["months"].index("2020-04")
    assert cv["sites"]["C61"]["april_2020_multiplier"] == configured["diagnosis_multipliers"]["C61"][april]
    assert cv["sites"]["C61"]["cumulative_deficit"]["2020-03..2020-12"] > 0
    obs, exp_without, exp_with = _april_ratio(on, cv)
    assert 0.5 < exp_with / exp_without < 0.65
    lo, hi = poisson_ci(obs)
    assert lo < exp_with < hi
    # per site: observed April counts recorded equal the truth
    t = on.truth["tumours"]
    apr = t[(t.diagnosis_date.dt.year == 2020) & (t.diagnosis_date.dt.month == 4)]
    assert cv["sites"]["C50"]["observed"]["2020-04"] == int((apr.site_icd10 == "C50").sum())
    # screen-detected nearly vanish in April 2020; emergency presentations rise as a share
    assert (apr.route_to_diagnosis == "Screen detected").mean() < 0.01
    y19 = t[t.diagnosis_date.dt.year == 2019]
    assert (apr.route_to_diagnosis == "Emergency presentation").mean() > 1.25 * (y19.route_to_diagnosis == "Emergency presentation").mean()


def test_covid_null_gives_no_deficit(covid_cohorts):
    _, off = covid_cohorts
    assert off.effects["covid"] is None
    t = off.truth["tumours"]
    apr19 = int(((t.diagnosis_date.dt.year == 2019) & (t.diagnosis_date.dt.month == 4)).sum())
    apr20 = int(((t.diagnosis_date.dt.year == 2020) & (t.diagnosis_date.dt.month == 4)).sum())
    assert abs(apr20 - apr19) < 4 * np.sqrt(apr19)
    assert not (off.truth["patients"]["death_cause_icd10"] == "U071").any()


def test_covid_treatment_changes_and_deaths(covid_cohorts):
    on, off = covid_cohorts
    for c, five_after in ((on, (0.7, 1.0)), (off, (0.0, 0.1))):
        tr = c.truth["treatments"].merge(c.truth["tumours"][["tumour_id", "site_icd10"]], on="tumour_id")
        breast = tr[(tr.modality == "radiotherapy") & (tr.rt_region == "breast")]
        after = breast[breast.start_date >= "2020-04-01"]
        before = breast[breast.start_date < "2020-03-01"]
        assert (before.fractions == 5).mean() < 0.1
        assert five_after[0] <= (after.fractions == 5).mean() <= five_after[1]
    def sact_april(c, year):
        tr = c.truth["treatments"]
        s = tr[tr.modality == "sact"]
        return int(((s.start_date.dt.year == year) & (s.start_date.dt.month == 4)).sum())
    assert sact_april(on, 2020) < 0.85 * sact_april(on, 2019)
    deaths = on.truth["patients"]["death_cause_icd10"]
    assert (deaths == "U071").sum() == on.effects["covid"]["covid_deaths"] > 0
    dd = on.truth["patients"].loc[deaths == "U071", "death_date"]
    assert dd.between("2020-03-01", "2021-12-31").all()


def test_all_effects_null():
    cfg = _cfg(scale=0.002, years=(2019, 2020),
               effects={"cluster": None, "treatment_effect": None, "late_effect": None, "covid": None})
    c = synth.generate(cfg, quiet=True)
    assert all(c.effects[k] is None for k in ("cluster", "treatment_effect", "late_effect", "covid"))
    assert not c.truth["tumours"]["in_cluster"].any()
    assert not (c.truth["patients"]["death_cause_icd10"] == "U071").any()
