"""Study 05 (registry statistics): the incidence publication and its disclosure control.

The notebook is thin; these tests drive the library path it uses
(``registry_lib.studies.registry_statistics``) on a hand-built release, and check truth recovery (the
deprivation gradient of lung cancer) on a generated small cohort read through a release.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest
from fixtures.registry import write_example_cohort
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_lib.errors import RegistryLabError
from registry_lib.io import write_parquet
from registry_lib.release import (
    aggregate_counts,
    aggregate_rates,
    protect_counts,
    run,
    scan_reports_for_unsafe_counts,
)
from registry_lib.release.disclosure import (
    UnsafeTableError,
    rounding_interval,
    suppression_intervals,
)
from registry_lib.release.publish import protected_rates
from registry_lib.reporting import write_results
from registry_lib.stats.rates import direct_standardised_rate, poisson_ci
from registry_lib.studies.registry_statistics import (
    REQUIRED_GROUPINGS,
    differencing_intervals,
    dsr_ratio,
    highest_dsr,
    implied_deprivation_ratio,
    invalid_sex_site,
    national_totals,
    one_way_width,
    protected_value,
    publication_groupings,
    publication_settings,
    publication_years,
    publish_incidence,
    read_published,
    reconcile_total,
    table_name,
)

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
YEARS = (2016, 2017)  # two years of the toy registry: a few small cells by site x area
BY = [["site_icd10", "area_id"], ["sex"]]
TWO_WAY = ("site_icd10", "area_id")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("REGISTRY_LAB_KEY", "9abfe9ea9da03dfed9ff1d0976926475fa1eaf18df7f79039889311a25108c38")
    base = tmp_path_factory.mktemp("stats05")
    cohort = write_example_cohort(base / "toy", n_patients=1500, seed=11)
    run(cohort, "aggregate_publication", "test")
    out = base / "reports" / "registry_statistics"
    pub = publish_incidence(cohort, out, BY, years=list(YEARS))
    yield cohort, out, pub
    mp.undo()


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------
def test_settings_follow_the_policy_and_may_only_be_stricter():
    s = publication_settings()
    assert (s.threshold, s.rounding, s.secondary) == (7, 5, True)
    assert publication_settings(threshold=10, rounding=10).threshold == 10
    assert publication_settings(rounding=10).rounding == 10
    with pytest.raises(RegistryLabError, match="threshold=5: below the aggregate_publication policy's 7"):
        publication_settings(threshold=5)
    with pytest.raises(RegistryLabError, match="rounding=3: finer than"):
        publication_settings(rounding=3)
    for bad in ("5", True, 0, 2.5):
        with pytest.raises(RegistryLabError, match="rounding="):
            publication_settings(rounding=bad)
    with pytest.raises(RegistryLabError, match="small counts would round to 0"):
        publication_settings(rounding=20)  # threshold 7 < 20 // 2: 8, 9 would show as 0


def test_years_parameter(tmp_path, toy):
    cohort, _, _ = toy
    assert publication_years(cohort, 2017) == (2017, 2017)
    assert publication_years(cohort, [2016, 2018]) == (2016, 2018)
    with pytest.raises(RegistryLabError, match="cohort.json does not record"):
        publication_years(cohort, None)
    (tmp_path / "cohort.json").write_text(json.dumps({"config": {"years": [2013, 2023]}}))
    assert publication_years(tmp_path, None) == (2013, 2023)
    for bad in ([2019], [2018, 2016], "2019", [2019, 2020, 2021]):
        with pytest.raises(RegistryLabError, match="years="):
            publication_years(cohort, bad)


def test_groupings_add_the_required_tables_once():
    got = publication_groupings([["site_icd10", "region"], "sex", ["sex"], ["site_icd10"]])
    assert got[:3] == [("site_icd10", "region"), ("sex",), ("site_icd10",)]
    assert set(REQUIRED_GROUPINGS) <= set(got) and len(got) == len(set(got))
    with pytest.raises(RegistryLabError, match=r"unknown dimension\(s\) \['postcode'\]"):
        publication_groupings([["postcode"]])
    with pytest.raises(RegistryLabError, match="age_band"):
        publication_groupings([["age_band"]])
    with pytest.raises(RegistryLabError, match="repeats"):
        publication_groupings([["sex", "sex"]])
    assert table_name(("site_icd10", "deprivation_quintile")) == "incidence_rates_by_site_deprivation"


# ---------------------------------------------------------------------------------------------
# rates from protected counts
# ---------------------------------------------------------------------------------------------
def _strata(counts, pops, weights=(7000.0, 5000.0, 2500.0)):
    return pd.DataFrame({"g": 0, "d": counts, "n": pops, "w": list(weights)})


def test_dobson_limits_use_the_protected_count_by_hand():
    strata = _strata([4, 9, 10], [20_000.0, 15_000.0, 5_000.0])
    exact = direct_standardised_rate(strata, "d", "n", "w", by="g").rename(
        columns={"lower": "dsr_lower", "upper": "dsr_upper"})
    got = protected_rates(exact, publication_settings(), decimals=6).iloc[0]
    w, d, n = strata["w"], strata["d"], strata["n"]
    dsr = (w * d / n).sum() / w.sum()
    var = (w**2 * d / n**2).sum() / w.sum() ** 2
    o_pub = 25.0  # 23 rounded to 5
    lo, hi = (float(v[0]) for v in poisson_ci([o_pub]))
    assert got["count"] == 23  # stays exact: publish_table protects it
    assert got["dsr"] == pytest.approx(dsr * 1e5, abs=5e-7)
    assert got["dsr_lower"] == pytest.approx((dsr + np.sqrt(var / o_pub) * (lo - o_pub)) * 1e5, abs=5e-7)
    assert got["dsr_upper"] == pytest.approx((dsr + np.sqrt(var / o_pub) * (hi - o_pub)) * 1e5, abs=5e-7)


def _count_from_limits(dsr, lower, upper, max_o=2000):
    """The attack: the count O whose Poisson limits give the published half-width ratio."""
    o = np.arange(1, max_o + 1, dtype=float)
    lo, hi = poisson_ci(o)
    ratio = (hi - o) / (o - lo)
    return int(o[np.argmin(np.abs(ratio - (upper - dsr) / (dsr - lower)))])


def test_exact_limits_reveal_the_count_and_protected_ones_do_not(toy):
    cohort, _, _ = toy
    exact = aggregate_rates(cohort, by=["site_icd10", "region"], years=(2015, 2020))
    rows = exact[(exact["count"] >= 8) & (exact["count"] % 5 != 0)].head(20)
    assert len(rows) >= 10
    recovered = [_count_from_limits(r.dsr, r.dsr_lower, r.dsr_upper) for r in rows.itertuples()]
    assert recovered == rows["count"].tolist()  # why limits must not use the exact count
    safe = protected_rates(rows, publication_settings(), decimals=12)
    again = [_count_from_limits(r.dsr, r.dsr_lower, r.dsr_upper) for r in safe.itertuples()]
    assert again == [protected_value(c, publication_settings()) for c in rows["count"]]


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 60), min_size=3, max_size=3),
       pops=st.lists(st.integers(500, 50_000), min_size=3, max_size=3))
def test_protected_limits_contain_the_rate_and_vanish_when_suppressed(counts, pops):
    exact = direct_standardised_rate(_strata(counts, [float(p) for p in pops]), "d", "n", "w", by="g").rename(
        columns={"lower": "dsr_lower", "upper": "dsr_upper"})
    got = protected_rates(exact, publication_settings(), decimals=12).iloc[0]
    total = sum(counts)
    if 1 <= total <= 7:
        assert np.isnan(got["dsr_lower"]) and np.isnan(got["dsr_upper"])
    else:
        assert got["dsr_lower"] <= got["dsr"] + 1e-9 <= got["dsr_upper"] + 2e-9
        assert got["dsr_upper"] > 0


# ---------------------------------------------------------------------------------------------
# the publication on a hand-built release
# ---------------------------------------------------------------------------------------------
def test_every_table_is_written_protected(toy):
    cohort, out, pub = toy
    groups = publication_groupings(BY)
    names = {table_name(g) for g in groups} | {table_name(g, "counts") for g in groups if len(g) == 2}
    assert "incidence_counts_by_site_area" in names
    assert len(names) == 8 + 3  # rates tables, two-way count tables
    assert set(pub.files) == names
    assert scan_reports_for_unsafe_counts(out) == []
    for group, table in pub.rates.items():
        c = table["count"]
        shown = c.dropna().to_numpy(dtype=np.int64)
        assert (shown % 5 == 0).all() and not ((shown >= 1) & (shown <= 7)).any(), group
        hidden = c.isna().to_numpy()
        assert table.loc[hidden, ["dsr", "dsr_lower", "dsr_upper", "crude_rate"]].isna().all().all()
        crude = table.loc[~hidden, "count"].astype(float) / table.loc[~hidden, "population"] * 1e5
        assert np.allclose(table.loc[~hidden, "crude_rate"], np.round(crude, 1))  # from protected counts
        dsr = table["dsr"].dropna().to_numpy()
        assert np.allclose(dsr, np.round(dsr, 1))
    # the rates tables hold the protected exact counts, cell for cell
    exact = aggregate_counts(cohort, list(TWO_WAY), years=YEARS).set_index(list(TWO_WAY))["count"]
    t = pub.table(*TWO_WAY).set_index(list(TWO_WAY))["count"]
    want = [protected_value(exact.get(k, 0), pub.settings) for k in t.index]
    assert [None if pd.isna(v) else int(v) for v in t] == want


def test_two_way_count_table_has_secondary_suppression_that_survives_every_table(toy):
    _, out, pub = toy
    counts = pub.counts[TWO_WAY]
    rates = pub.table(*TWO_WAY)
    assert counts.index[-1] == "Total" and counts.columns[-1] == "Total"
    # more cells hidden than the primary ones: the secondary suppression
    assert int(counts.iloc[:-1, :-1].isna().to_numpy().sum()) > int(rates["count"].isna().sum()) > 0
    intervals = differencing_intervals(pub, TWO_WAY)
    assert len(intervals) == int(rates["count"].isna().sum())  # only primary cells stay hidden
    assert (intervals["width"] >= pub.settings.threshold).all()
    df, n = read_published(out / "tables" / "incidence_counts_by_site_area.csv")
    assert n == int(df.isna().to_numpy().sum())


def test_without_secondary_suppression_or_rounding_the_attack_succeeds(toy):
    """Negative control: exact counts with only the primary cells hidden are pinned down."""
    cohort, _, _ = toy
    exact = aggregate_counts(cohort, list(TWO_WAY), years=YEARS).pivot_table(
        index="site_icd10", columns="area_id", values="count", fill_value=0)
    table = exact.copy()
    table["Total"] = exact.sum(axis=1)
    table.loc["Total"] = table.sum(axis=0)
    small = (table >= 1) & (table <= 7)
    assert small.to_numpy().any()
    naive = table.astype("Float64").mask(small)
    iv = suppression_intervals(naive, None)
    assert (iv["width"] < 7).any()


def _cohort_with_c61(path: Path, n_female: int) -> Path:
    """The toy registry with prostate made male, except ``n_female`` coding errors in YEARS;
    the male prostate count in YEARS a multiple of 5 (so total and male cell round alike)."""
    from registry_lib.io import read_parquet
    from registry_lib.linkage.tables import PATIENT, TUMOUR

    cohort = write_example_cohort(path, n_patients=1500, seed=11)
    t = read_parquet(cohort / "registry" / "tumour.parquet")
    p = read_parquet(cohort / "registry" / "patient.parquet")
    c61 = t["site_icd10"] == "C61"
    p.loc[p["patient_id"].isin(t.loc[c61, "patient_id"]), "sex"] = 1
    window = t["diagnosis_date"].dt.year.between(*YEARS)
    single = t["patient_id"].map(t["patient_id"].value_counts()) == 1
    women = t.index[c61 & window & single][:n_female]
    p.loc[p["patient_id"].isin(t.loc[women, "patient_id"]), "sex"] = 2
    men = t.index[c61 & window & ~t.index.isin(women)]
    t.loc[men[: len(men) % 5], "site_icd10"] = "C18"
    write_parquet(t, cohort / "registry" / "tumour.parquet", TUMOUR)
    write_parquet(p, cohort / "registry" / "patient.parquet", PATIENT)
    run(cohort, "aggregate_publication", "test")
    return cohort


@pytest.fixture(scope="module")
def c61(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("REGISTRY_LAB_KEY", "9abfe9ea9da03dfed9ff1d0976926475fa1eaf18df7f79039889311a25108c38")
    yield _cohort_with_c61(tmp_path_factory.mktemp("c61") / "toy", n_female=1)
    mp.undo()


def test_rates_rows_hidden_by_the_count_table_are_left_out_when_differencing_would_narrow(c61, tmp_path):
    by = [["site_icd10", "sex"]]
    # the cell-wise rates table alone: prostate total and male cell round alike -> [0, 4]
    exact = aggregate_rates(c61, by=["site_icd10", "sex"], years=YEARS)
    cell = protected_rates(exact, publication_settings())
    male = cell[(cell["site_icd10"] == "C61") & (cell["sex"] == 1)]["count"].iloc[0]
    total = aggregate_rates(c61, by=["site_icd10"], years=YEARS).set_index("site_icd10")["count"]["C61"]
    assert protected_value(male, publication_settings()) == protected_value(total, publication_settings())
    pub = publish_incidence(c61, tmp_path / "out", by, years=YEARS)
    name = "incidence_rates_by_site_sex"
    assert pub.withheld[name] >= 2 and pub.audit["incidence_counts_by_site_sex"] >= 7
    written = pd.read_csv(pub.files[name])
    assert len(written) == len(exact) - pub.withheld[name]
    assert not ((written["site_icd10"] == "C61") & (written["sex"] == 2)).any()
    restored = pub.table("site_icd10", "sex")
    assert len(restored) == len(exact) and int(restored["count"].isna().sum()) == pub.withheld[name]
    assert (differencing_intervals(pub, ("site_icd10", "sex"))["width"] >= 7).all()
    assert scan_reports_for_unsafe_counts(tmp_path / "out") == []


def test_sex_site_coding_errors_are_left_out_of_every_table(c61, tmp_path):
    pub = publish_incidence(c61, tmp_path / "out", [["site_icd10", "sex"]], years=YEARS,
                            sex_specific={"male": ["C61"], "female": []})
    assert pub.invalid_sex_site == 1 and pub.withheld["incidence_rates_by_site_sex"] == 0
    exact = aggregate_counts(c61, ["site_icd10", "sex"], years=YEARS).set_index(["site_icd10", "sex"])["count"]
    by_site = pub.table("site_icd10").set_index("site_icd10")["count"]
    assert by_site["C61"] == exact[("C61", 1)]  # a multiple of 5: the female record is gone
    assert pub.table().iloc[0]["count"] == protected_value(int(exact.sum()) - 1, pub.settings)
    rows = pub.table("site_icd10", "sex")
    assert rows[(rows["site_icd10"] == "C61") & (rows["sex"] == 2)]["count"].tolist() == [0]
    with pytest.raises(RegistryLabError, match="keys must be female and male"):
        invalid_sex_site(pd.DataFrame({"site_icd10": ["C61"], "sex": [2]}), {"men": ["C61"]})


def test_publication_that_stays_unsafe_is_refused_and_removed(c61, tmp_path):
    with pytest.raises(UnsafeTableError, match="interval 4 wide"):
        publish_incidence(c61, tmp_path / "out", [["site_icd10", "sex"], ["sex"]], years=YEARS,
                          sites=["C61"])
    assert list((tmp_path / "out" / "tables").iterdir()) == []


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=2, max_size=5))
def test_one_way_width_is_the_linear_programming_bound(cells):
    s = publication_settings()
    shown = pd.Series(protect_counts(cells, s.threshold, s.rounding))
    total = protected_value(sum(cells), s)
    got = one_way_width(shown, total, s)
    if not shown.isna().any() or total is None:
        assert got is None
        return
    row = pd.DataFrame([[*shown.astype("Float64"), total]] * 2, index=["all", "Total"],
                       columns=[*map(str, range(len(cells))), "Total"]).astype("Float64")
    assert got == pytest.approx(suppression_intervals(row, s.rounding)["width"].min())


def test_national_total_equals_the_sum_of_protected_site_totals_within_rounding(toy):
    cohort, _, pub = toy
    check = reconcile_total(pub)
    exact_total = int(aggregate_counts(cohort, years=YEARS)["count"].iloc[0])
    assert check["sites_lower"] <= exact_total <= check["sites_upper"]
    assert check["total_lower"] <= exact_total <= check["total_upper"]
    sites = pub.table("site_icd10")["count"]
    n_sites = len(sites)
    assert abs(int(sites.sum()) - int(pub.table()["count"].iloc[0])) <= 2 * (n_sites + 1)


def test_results_helper_output_passes_the_scan(toy, tmp_path):
    _, _, pub = toy
    totals = national_totals(pub)
    assert set(totals["by_site"]) == set(pub.table("site_icd10")["site_icd10"])
    assert totals["total"]["count"] % 5 == 0 and totals["total"]["dsr_lower"] < totals["total"]["dsr"]
    results = {"national_totals": totals, "excluded_cases": protected_value(pub.excluded_cases, pub.settings)}
    write_results(results, tmp_path)
    assert scan_reports_for_unsafe_counts(tmp_path) == []
    # the scan does bite: an exact small count would be reported
    results["national_totals"]["by_site"]["C18"]["count"] = 3
    write_results(results, tmp_path)
    assert scan_reports_for_unsafe_counts(tmp_path) == ["results.json: national_totals.by_site.C18.count = 3"]


def test_suppressed_site_is_null_in_results(tmp_path, monkeypatch):
    """A rare site: its national count is suppressed, and its DSR goes with it."""
    from registry_lib.io import read_parquet
    from registry_lib.linkage.tables import TUMOUR

    cohort = write_example_cohort(tmp_path / "rare", n_patients=300, seed=3)
    t = read_parquet(cohort / "registry" / "tumour.parquet")
    t.loc[t.index[:4], "site_icd10"] = "C95"
    write_parquet(t, cohort / "registry" / "tumour.parquet", TUMOUR)
    run(cohort, "aggregate_publication", "test")
    pub = publish_incidence(cohort, tmp_path / "out", [], years=YEARS)
    c95 = national_totals(pub)["by_site"]["C95"]
    assert c95 == {"count": None, "dsr": None, "dsr_lower": None, "dsr_upper": None}


def test_highest_dsr_and_ratio():
    t = pd.DataFrame({"q": [1, 2, 5], "dsr": [50.0, None, 130.0], "dsr_lower": [45.0, None, 120.0],
                      "dsr_upper": [55.5, None, 140.8]})
    assert highest_dsr(t, "q", 3)["q"].tolist() == [5, 1, 2]
    r = dsr_ratio(t, "q", 5, 1)
    se = np.hypot(np.log(140.8 / 120.0), np.log(55.5 / 45.0)) / (2 * 1.959963984540054)
    assert r["ratio"] == pytest.approx(2.6)
    assert r["lower"] == pytest.approx(2.6 * np.exp(-1.959963984540054 * se))
    assert dsr_ratio(t, "q", 2, 1) == {"ratio": None, "lower": None, "upper": None}
    with pytest.raises(RegistryLabError, match="no row 4"):
        dsr_ratio(t, "q", 4, 1)


def test_chart_draws_no_bar_for_a_suppressed_cell():
    import matplotlib.pyplot as plt

    from registry_lib.studies.registry_statistics_charts import dsr_bars

    t = pd.DataFrame({"site_icd10": ["C18", "C18", "C50", "C50"], "sex": [1, 2, 1, 2],
                      "dsr": [60.0, 45.0, np.nan, 150.0], "dsr_lower": [55.0, 41.0, np.nan, 140.0],
                      "dsr_upper": [65.0, 49.0, np.nan, 160.0]})
    fig, ax = plt.subplots()
    assert dsr_bars(ax, t, "site_icd10", hue="sex") == 3
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == [45.0, 60.0, 150.0]
    assert [a.get_text() for a in ax.texts] == ["[c]"]
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# truth recovery: the deprivation gradient, through a release of a generated cohort
# ---------------------------------------------------------------------------------------------
def _perfectly_linked_cohort(path: Path, sites: list[str], seed: int | None = None) -> tuple[Path, pd.DataFrame]:
    """Generate ``sites`` on the small cohort and register every true tumour (perfect linkage)."""
    from registry_lib import synth
    from registry_lib.linkage.tables import PATIENT, TUMOUR
    from registry_lib.synth.tables import AREAS, POPULATION, STANDARD_POPULATIONS

    cfg = synth.load_config(ROOT / "params" / "cohort" / "small.yaml", seed=seed, years=(2013, 2023))
    cfg["sites"] = sites
    c = synth.generate(cfg, quiet=True)
    for name, schema in (("areas", AREAS), ("population", POPULATION),
                         ("standard_populations", STANDARD_POPULATIONS)):
        write_parquet(c.reference[name], path / "reference" / f"{name}.parquet", schema)
    patients = c.truth["patients"]
    patients = patients[~patients["registration_opted_out"]]
    tumours = c.truth["tumours"].merge(patients[["patient_id", "performance_status", "comorbidity_score"]],
                                       on="patient_id")
    tumours["stage"] = tumours["stage_recorded"]
    write_parquet(patients[PATIENT.column_names], path / "registry" / "patient.parquet", PATIENT)
    write_parquet(tumours[TUMOUR.column_names], path / "registry" / "tumour.parquet", TUMOUR)
    (path / "cohort.json").write_text(json.dumps({"config": {"years": list(cfg["years"])}}))
    run(path, "aggregate_publication", "test")
    return path, tumours


def test_implied_ratio_without_north_gradient_is_the_generator_ratio():
    areas = pd.DataFrame({"area_id": list("abcd"), "deprivation_quintile": [1, 1, 5, 5],
                          "y": [1e5, 2e5, 4e5, 6e5]})
    pop = pd.DataFrame({"area_id": list("abcd") * 2, "age_band": [40] * 4 + [70] * 4,
                        "population": [5, 5, 5, 5, 10, 30, 20, 20]})
    assert implied_deprivation_ratio(areas, pop, 2.6) == pytest.approx(2.6)
    # with a gradient: quintile means of exp(g (y - 300 km) / 100 km), weighted by residents 50+
    g = 0.1
    q1 = (10 * np.exp(-2 * g) + 30 * np.exp(-1 * g)) / 40
    q5 = (20 * np.exp(1 * g) + 20 * np.exp(3 * g)) / 40
    assert implied_deprivation_ratio(areas, pop, 2.6, g) == pytest.approx(2.6 * q5 / q1)


@pytest.mark.slow
def test_deprivation_gradient_is_recovered_on_the_small_cohort(tmp_path):
    """Lung (generator Q5/Q1 ratio 2.6) and melanoma (0.6) on the small cohort's seed."""
    from registry_lib.config import load_yaml
    from registry_lib.io import read_parquet

    generator = load_yaml(ROOT / "params" / "epidemiology" / "incidence.yaml")["sites"]
    cohort, tumours = _perfectly_linked_cohort(tmp_path / "small_lung", ["C34", "C43"])
    true_lung = int(((tumours["site_icd10"] == "C34") & tumours["diagnosis_date"].dt.year.between(2013, 2023)).sum())
    pub = publish_incidence(cohort, tmp_path / "out", [])
    assert pub.years == (2013, 2023)
    assert scan_reports_for_unsafe_counts(tmp_path / "out") == []
    dep = pub.table("site_icd10", "deprivation_quintile")
    areas = read_parquet(cohort / "reference" / "areas.parquet")
    population = read_parquet(cohort / "reference" / "population.parquet")
    for site in ("C34", "C43"):
        got = dsr_ratio(dep[dep["site_icd10"] == site], "deprivation_quintile", 5, 1)
        params = generator[site]
        implied = implied_deprivation_ratio(areas, population, params["deprivation_ratio"],
                                            params.get("north_gradient", 0.0))
        assert got["lower"] <= implied <= got["upper"], (site, got, implied)
        # the direction of the gradient is recovered beyond doubt
        assert (got["lower"] > 1) if params["deprivation_ratio"] > 1 else (got["upper"] < 1), site
    # the national lung count is the protected number of true tumours (perfect linkage)
    published = national_totals(pub)["by_site"]["C34"]["count"]
    lo, hi = rounding_interval([published], pub.settings.rounding)
    assert lo[0] <= true_lung - pub.excluded["incidence_rates_by_site"] <= hi[0]
