"""Aggregation through DuckDB over release Parquet: counts, crude and ESP 2013 rates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures.registry import write_example_cohort
from scipy import stats

from registry_lib.errors import RegistryLabError
from registry_lib.io import read_parquet, write_parquet
from registry_lib.linkage.tables import TUMOUR
from registry_lib.release import aggregate_counts, aggregate_rates, run


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("REGISTRY_LAB_KEY", "6e0f06198b27887eab05f3d2b8fabbaa58dc7c8be1ee8010ebebea1a26aee21d")
    path = write_example_cohort(tmp_path_factory.mktemp("agg") / "toy", n_patients=1500, seed=7)
    run(path, "aggregate_publication", "test")
    run(path, "research_pseudonymised", "test")
    yield path
    mp.undo()


def cases_by_hand(cohort, years=(2015, 2020)) -> pd.DataFrame:
    t = read_parquet(cohort / "registry" / "tumour.parquet")
    p = read_parquet(cohort / "registry" / "patient.parquet")[["patient_id", "sex"]]
    a = read_parquet(cohort / "reference" / "areas.parquet")
    t = t.merge(p, on="patient_id").merge(a[["area_id", "region", "deprivation_quintile"]], on="area_id")
    t["year"] = t["diagnosis_date"].dt.year
    t["age_band"] = np.minimum(t["age_at_diagnosis"] // 5 * 5, 90)
    return t[t["year"].between(*years)]


def test_counts_match_the_registry(cohort):
    hand = cases_by_hand(cohort).groupby(["site_icd10", "region"]).size()
    got = aggregate_counts(cohort, by=["site_icd10", "region"], years=(2015, 2020))
    assert list(got.columns) == ["site_icd10", "region", "count"]
    assert got.set_index(["site_icd10", "region"])["count"].to_dict() == hand.to_dict()
    total = aggregate_counts(cohort)
    assert total["count"].tolist() == [len(read_parquet(cohort / "registry" / "tumour.parquet"))]


def test_years_and_sites_filters(cohort):
    hand = cases_by_hand(cohort, (2017, 2017))
    got = aggregate_counts(cohort, by="sex", years=2017, sites=["C18", "C34"])
    want = hand[hand["site_icd10"].isin(["C18", "C34"])].groupby("sex").size()
    assert got.set_index("sex")["count"].to_dict() == want.to_dict()
    both = aggregate_counts(cohort, by="year", years=[2016, 2018])
    assert both["year"].tolist() == [2016, 2018]


def test_standardised_rates_by_hand(cohort):
    got = aggregate_rates(cohort, by=["sex"], years=(2015, 2020))
    cases = cases_by_hand(cohort).groupby(["sex", "age_band"]).size().rename("d")
    pop = read_parquet(cohort / "reference" / "population.parquet")
    pop = pop.groupby(["sex", "age_band"])["population"].sum().rename("n")
    w = read_parquet(cohort / "reference" / "standard_populations.parquet")
    w = w[w["standard"] == "esp2013"].set_index("age_band")["weight"]
    for sex in (1, 2):
        d = cases.xs(sex, level="sex").reindex(w.index, fill_value=0).astype(float)
        n = pop.xs(sex, level="sex").reindex(w.index).astype(float)
        dsr = (w * d / n).sum() / w.sum()
        var = (w**2 * d / n**2).sum() / w.sum() ** 2
        o = d.sum()
        o_lo, o_hi = stats.chi2.ppf(0.025, 2 * o) / 2, stats.chi2.ppf(0.975, 2 * o + 2) / 2
        row = got[got["sex"] == sex].iloc[0]
        assert row["count"] == o and row["population"] == n.sum()
        assert row["dsr"] == pytest.approx(dsr * 1e5, rel=1e-9)
        assert row["dsr_lower"] == pytest.approx((dsr + np.sqrt(var / o) * (o_lo - o)) * 1e5, rel=1e-9)
        assert row["dsr_upper"] == pytest.approx((dsr + np.sqrt(var / o) * (o_hi - o)) * 1e5, rel=1e-9)
        assert row["crude_rate"] == pytest.approx(o / n.sum() * 1e5, rel=1e-12)
        assert row["crude_lower"] == pytest.approx(o_lo / n.sum() * 1e5, rel=1e-9)


def test_case_only_dimensions_get_zero_rows_and_shared_population(cohort):
    got = aggregate_rates(cohort, by=["site_icd10", "region"], years=2019)
    sites = sorted(cases_by_hand(cohort, (2019, 2019))["site_icd10"].unique())
    regions = read_parquet(cohort / "reference" / "areas.parquet")["region"].unique()
    assert len(got) == len(sites) * len(regions)  # every site in every region, zeros included
    assert got.groupby("region")["population"].nunique().eq(1).all()
    hand = cases_by_hand(cohort, (2019, 2019)).groupby(["site_icd10", "region"]).size()
    merged = got.set_index(["site_icd10", "region"])["count"]
    assert merged.reindex(hand.index).tolist() == hand.tolist()
    assert merged.sum() == hand.sum()


def test_record_level_release_gives_the_same_as_a_cube_of_it(cohort):
    # the research release has NDOP applied: counts are those of the released tumours
    rec = aggregate_counts(cohort, by=["sex"], policy="research_pseudonymised")
    rel_t = read_parquet(cohort / "releases" / "research_pseudonymised" / "tumour.parquet")
    assert rec["count"].sum() == len(rel_t)
    full = aggregate_counts(cohort, by=["sex"])
    assert (rec["count"] <= full["count"]).all() and rec["count"].sum() < full["count"].sum()


def test_unknown_dimension_and_age_band_in_rates(cohort):
    with pytest.raises(RegistryLabError, match="unknown dimension"):
        aggregate_counts(cohort, by=["postcode"])
    with pytest.raises(RegistryLabError, match="age-standardised"):
        aggregate_rates(cohort, by=["age_band"])
    with pytest.raises(RegistryLabError, match="no standard named"):
        aggregate_rates(cohort, standard="who2000")


def test_cases_outside_the_population_are_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_LAB_KEY", "6e0f06198b27887eab05f3d2b8fabbaa58dc7c8be1ee8010ebebea1a26aee21d")
    path = write_example_cohort(tmp_path / "odd", n_patients=200, seed=2)
    t = read_parquet(path / "registry" / "tumour.parquet")
    t["age_at_diagnosis"] = t["age_at_diagnosis"].astype("Int16")
    t.loc[:2, "age_at_diagnosis"] = pd.NA
    write_parquet(t, path / "registry" / "tumour.parquet", TUMOUR)
    run(path, "aggregate_publication", "test")
    with pytest.warns(UserWarning, match="3 case"):
        got = aggregate_rates(path)
    assert got.attrs["excluded_cases"] == 3
    assert got["count"].iloc[0] == len(t) - 3


def test_missing_release_names_the_command(tmp_path):
    write_example_cohort(tmp_path / "norel", n_patients=10)
    with pytest.raises(RegistryLabError, match="registry-lab release --cohort norel --policy aggregate_publication"):
        aggregate_counts(tmp_path / "norel", by="sex")


def test_default_years_come_from_the_cohort_config(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("REGISTRY_LAB_KEY", "6e0f06198b27887eab05f3d2b8fabbaa58dc7c8be1ee8010ebebea1a26aee21d")
    path = write_example_cohort(tmp_path / "yrs", n_patients=300, seed=4)
    (path / "cohort.json").write_text(json.dumps({"config": {"years": [2016, 2018]}}))
    run(path, "aggregate_publication", "test")
    assert aggregate_counts(path, by="year")["year"].tolist() == [2016, 2017, 2018]
    rates = aggregate_rates(path)
    pop = read_parquet(path / "reference" / "population.parquet")
    assert rates["population"].iloc[0] == pop.loc[pop["year"].between(2016, 2018), "population"].sum()
    assert aggregate_counts(path, by="year", years=(2015, 2020))["year"].tolist() == list(range(2015, 2021))
