"""Calibration to published figures (epidemiology.md): totals, sites, routes, stage, survival.

Full-scale counts are checked analytically (expected rates × England's population), generated
counts at a moderate scale against those expectations.
"""

from __future__ import annotations

import numpy as np
import pytest

from registry_lib import synth
from registry_lib.synth.incidence import covid_month_multipliers, month_factors, site_rates
from registry_lib.synth.params import epidemiology_params

PARAMS = epidemiology_params()
RATES = site_rates(PARAMS)
COVID = synth.load_config("params/cohort/default.yaml")["effects"]["covid"]


def expected_full_scale(year: int, covid: bool = True) -> np.ndarray:
    """England's expected count by site in ``year`` (all primaries), with the COVID-19 months."""
    mf = month_factors(year, RATES, covid_month_multipliers(RATES.sites, COVID if covid else None))
    return RATES.expected_national(year) * mf.sum(axis=1)


def group(values: np.ndarray, name: str) -> float:
    members = PARAMS["incidence"]["site_groups"][name]
    return float(sum(values[RATES.index(s)] for s in members))


@pytest.mark.parametrize("year", [2018, 2019, 2020, 2021, 2022])
def test_national_totals_within_5_percent(year):
    published = PARAMS["incidence"]["published_totals"][year]
    assert expected_full_scale(year).sum() == pytest.approx(published, rel=0.05)


@pytest.mark.parametrize(("name", "year", "count"), [tuple(x) for x in PARAMS["incidence"]["published_sites"]])
def test_site_anchors_within_5_percent(name, year, count):
    assert group(expected_full_scale(year), name) == pytest.approx(count, rel=0.05)


def test_four_major_sites_share_and_site_coverage():
    e = expected_full_scale(2019)
    share = sum(group(e, g) for g in ("prostate", "bowel", "lung", "breast")) / e.sum()
    assert 0.51 <= share <= 0.54
    # at least the 20 commonest sites plus Hodgkin lymphoma and mesothelioma
    assert len(RATES.sites) >= 22 and {"C81", "C45"} <= set(RATES.sites)
    assert e[RATES.index("C81")] == pytest.approx(1900, rel=0.1)           # ~2,000 a year
    # deprivation: lung much higher in deprived areas; breast, prostate, melanoma lower
    dep = RATES.dep_factor()
    assert dep[RATES.index("C34"), 4] / dep[RATES.index("C34"), 0] > 2
    for s in ("C50", "C61", "C43"):
        assert dep[RATES.index(s), 4] < dep[RATES.index(s), 0]
    # Hodgkin peaks at ages 20-34 among the young
    hl = RATES.rate_ref[RATES.index("C81")].sum(axis=0)
    assert 4 <= int(np.argmax(hl[:10])) <= 6


@pytest.fixture(scope="module")
def england_2019():
    """One diagnosis year at 2% of England, no COVID-19 (expectation is simple)."""
    cfg = synth.load_config("params/cohort/small.yaml", seed=21, scale=0.02, years=(2019, 2019))
    cfg["effects"]["covid"] = None
    return synth.generate(cfg, quiet=True)


def test_generated_counts_match_expectation(england_2019):
    t = england_2019.truth["tumours"]
    pop_total = england_2019.reference["population"]["population"].sum()
    scale = pop_total / RATES.expected_national(2019).sum() * 0 + pop_total / 56_287_000
    expected = RATES.expected_national(2019) * scale
    observed = t["site_icd10"].value_counts().reindex(RATES.sites, fill_value=0).to_numpy()
    # first primaries only in a one-year cohort: the rest of the total comes from earlier years
    first = expected * RATES.first_primary_factor(0)
    assert observed.sum() == pytest.approx(first.sum(), rel=0.03)
    z = (observed - first) / np.sqrt(first)
    assert np.abs(z).max() < 4.5, dict(zip(RATES.sites, z.round(1), strict=True))


def test_routes_stage_and_completeness(england_2019):
    t = england_2019.truth["tumours"]
    share = t["route_to_diagnosis"].value_counts(normalize=True)
    assert share["Emergency presentation"] == pytest.approx(0.185, abs=0.015)
    assert share["Two week wait"] == pytest.approx(0.398, abs=0.02)
    assert share["Screen detected"] == pytest.approx(0.062, abs=0.01)
    assert len(share) == 8
    lung = t[t.site_icd10 == "C34"]["route_to_diagnosis"]
    assert (lung == "Emergency presentation").mean() == pytest.approx(0.35, abs=0.05)
    staged = t[t.stage_recorded != "U"]
    assert 0.50 <= staged["stage_recorded"].isin(["1", "2"]).mean() <= 0.58   # ~54%
    by_site = t.assign(c=t.stage_recorded != "U").groupby("site_icd10")["c"].agg(["mean", "size"])
    big = by_site[by_site["size"] >= 100]["mean"]
    assert big.between(0.6, 0.95).all() and 0.7 <= (t.stage_recorded != "U").mean() <= 0.9
    breast = staged[staged.site_icd10 == "C50"]["stage_recorded"].isin(["1", "2"]).mean()
    assert breast == pytest.approx(0.85, abs=0.04)
    pancreas = staged[staged.site_icd10 == "C25"]["stage_recorded"].isin(["1", "2"]).mean()
    assert pancreas < 0.32
    # diagnosed near home: most at one of the three nearest trusts
    assert t["diagnosing_trust"].nunique() > 10
    assert t["morphology_icdo3"].str.fullmatch(r"\d{4}").all() and (t["behaviour"] == "3").all()
    breast_lat = t[t.site_icd10 == "C50"]["laterality"].value_counts(normalize=True)
    assert breast_lat[["L", "R"]].sum() > 0.95


def test_net_survival_in_published_ranges():
    """True (latent) net survival of a larger cohort against the published ranges."""
    cfg = synth.load_config("params/cohort/small.yaml", seed=22, scale=0.03, years=(2015, 2017))
    cfg["sites"] = ["C50", "C61", "C34", "C18", "C25", "C43"]
    ns = synth.generate(cfg, quiet=True).summary["net_survival"]
    for site, ranges in PARAMS["survival"]["published_net_survival"].items():
        for key in ("one_year", "five_year"):
            lo, hi = ranges[key]
            assert lo - 0.03 <= ns[site][key] <= hi + 0.03, (site, key, ns[site][key], ranges[key])
