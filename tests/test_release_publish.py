"""publish_table (the only way a study writes a table) and the scan of reports/ for small counts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from registry_lib.errors import RegistryLabError
from registry_lib.release import (
    UnsafeTableError,
    check_table,
    is_count_column,
    percentages,
    protect_table,
    publish_table,
    scan_reports_for_unsafe_counts,
)


def read(path):
    return pd.read_csv(path)


def test_two_d_table_from_long_counts(tmp_path):
    long = pd.DataFrame({"site_icd10": ["C18", "C18", "C50", "C50", "C34"],
                         "region": ["London", "North", "London", "North", "North"],
                         "count": [120, 4, 300, 95, 60]})
    path = publish_table(long, tmp_path / "study", "site_by_region", index="site_icd10", columns="region")
    assert path == tmp_path / "study" / "tables" / "site_by_region.csv"
    table = read(path).set_index("site_icd10")
    assert list(table.columns) == ["London", "North", "Total"]
    assert list(table.index) == ["C18", "C34", "C50", "Total"]
    assert np.isnan(table.loc["C18", "North"])  # 4 suppressed
    assert table.loc["C34", "London"] == 0      # absent combination is a kept zero
    values = table.to_numpy()
    assert not ((values >= 1) & (values <= 7)).any()
    assert (np.nan_to_num(values) % 5 == 0).all()
    meta = json.loads((path.parent / "site_by_region.meta.json").read_text())
    assert meta["count_columns"] == ["London", "North", "Total"] and meta["kind"] == "counts"
    assert meta["suppressed_cells"] == int(np.isnan(values).sum()) >= 2  # secondary too
    assert scan_reports_for_unsafe_counts(tmp_path) == []


def test_rates_are_derived_from_protected_counts(tmp_path):
    rates = pd.DataFrame({"site_icd10": ["C18", "C50"], "count": [5, 123], "population": [1e5, 2e5],
                          "crude_rate": [5.0, 61.5], "crude_lower": [1.6, 51.1], "crude_upper": [11.7, 73.4],
                          "dsr": [4.1, 58.2], "dsr_lower": [1.2, 48.0], "dsr_upper": [9.9, 70.0]})
    out = read(publish_table(rates, tmp_path, "rates", kind="rates"))
    assert np.isnan(out.loc[0, "count"]) and out.loc[1, "count"] == 125
    assert out.loc[0, ["crude_rate", "crude_lower", "dsr", "dsr_lower", "dsr_upper"]].isna().all()
    assert out.loc[1, "crude_rate"] == pytest.approx(125 / 2e5 * 1e5)  # from the rounded count
    assert out.loc[1, "dsr"] == pytest.approx(58.2)  # standardised rate kept (count >= 8)
    assert out.loc[1, "population"] == 2e5


def test_estimates_protect_counts_and_blank_their_estimates(tmp_path):
    sirs = pd.DataFrame({"band": ["0-1 km", "1-2 km"], "observed": [6, 40], "expected": [2.5, 31.2],
                         "sir": [2.4, 1.28], "lower": [0.88, 0.91], "upper": [5.2, 1.74]})
    out = read(publish_table(sirs, tmp_path, "sir_by_band", kind="estimates"))
    assert np.isnan(out.loc[0, "observed"]) and out.loc[0, ["sir", "lower", "upper"]].isna().all()
    assert out.loc[0, "expected"] == 2.5  # expected counts are not disclosive
    assert out.loc[1, "observed"] == 40 and out.loc[1, "sir"] == pytest.approx(1.28)


def test_survival_table(tmp_path):
    rng = np.random.default_rng(3)
    n = 400
    times = np.sort(rng.integers(1, 2000, n))
    km = pd.DataFrame({"time": times, "n_events": 1, "n_censored": 0})
    km["n_at_risk"] = n - np.arange(n)
    km["survival"] = np.cumprod(1 - 1 / km["n_at_risk"])
    path = publish_table(km, tmp_path, "km", kind="survival")
    out = read(path)
    assert not ((out[["n_at_risk", "n_events"]] >= 1) & (out[["n_at_risk", "n_events"]] <= 7)).any().any()
    assert len(out) < len(km) / 7
    meta = json.loads((tmp_path / "tables" / "km.meta.json").read_text())
    assert meta["rounding"] == "midpoint6"
    assert scan_reports_for_unsafe_counts(tmp_path) == []


def test_exact_counts_policy_needs_a_two_d_table(tmp_path):
    exact = {"threshold": 7, "rounding": None, "secondary": True}
    with pytest.raises(RegistryLabError, match="2-D table"):
        publish_table(pd.DataFrame({"count": [10, 20]}), tmp_path, "t", kind="rates", policy=exact)
    path = publish_table(pd.DataFrame({"a": [3, 20, 30], "b": [40, 50, 60]}), tmp_path, "t2", policy=exact)
    assert read(path).iloc[:, 1:].isna().sum().sum() >= 4


def test_refuses_and_writes_nothing(tmp_path):
    with pytest.raises(RegistryLabError, match="no count column"):
        publish_table(pd.DataFrame({"x": [1, 2]}), tmp_path, "nothing", kind="rates")
    with pytest.raises(RegistryLabError, match="name"):
        publish_table(pd.DataFrame({"count": [1]}), tmp_path, "../escape", count_columns=["count"])
    assert not (tmp_path / "tables").exists() or not list((tmp_path / "tables").iterdir())


def test_check_refuses_when_rounding_leaves_small_values():
    # rounding to 1 is no rounding: a 3 stays a 3 and the gate refuses it
    with pytest.raises(UnsafeTableError, match="counts 1-7"):
        check_table(pd.DataFrame({"n": [3]}), rounding=1, count_columns=["n"])


def test_count_column_convention():
    yes = ["n", "count", "n_at_risk", "n_events", "observed", "cases", "deaths", "tumour_count",
           "patients_recalled", "n_censored"]
    no = ["crude_rate", "dsr_lower", "expected", "population", "n_sim", "sir", "percent_cases",
          "year", "observed_expected_ratio", "deprivation_quintile"]
    assert all(is_count_column(c) for c in yes)
    assert not any(is_count_column(c) for c in no)


def test_scanner_finds_unprotected_counts(tmp_path):
    study = tmp_path / "02_cluster"
    (study / "tables").mkdir(parents=True)
    (study / "results.json").write_text(json.dumps({
        "cluster": {"observed": 6, "expected": 1.2, "relative_risk": 5.0},
        "bands": [{"band": 1, "cases": 3}, {"band": 2, "cases": 12}],
        "n_sim": 999, "n_clusters": 2, "counts_by_site": {"C18": 4, "C50": 0},
    }))
    pd.DataFrame({"area": ["a", "b"], "count": [2, 10]}).to_csv(study / "tables" / "raw.csv", index=False)
    pd.DataFrame({"x": [1], "deaths": [5]}).to_csv(study / "other.csv", index=False)
    (study / "figures").mkdir()
    (tmp_path / ".state").mkdir()
    (tmp_path / ".state" / "x.json").write_text('{"n": 3}')  # pipeline bookkeeping: skipped
    found = scan_reports_for_unsafe_counts(tmp_path)
    assert "02_cluster/results.json: cluster.observed = 6" in found
    assert "02_cluster/results.json: bands[0].cases = 3" in found
    assert "02_cluster/results.json: counts_by_site.C18 = 4" in found
    assert "02_cluster/tables/raw.csv: not written by publish_table (no raw.meta.json)" in found
    assert "02_cluster/tables/raw.csv: column count row 1 = 2" in found
    assert "02_cluster/other.csv: column deaths row 1 = 5" in found
    assert not any("n_sim" in f or "n_clusters" in f or ".state" in f for f in found)
    assert len(found) == 6


def test_scanner_uses_the_sidecar(tmp_path):
    path = publish_table(pd.DataFrame({"A": [100, 20], "B": [30, 40]}, index=["x", "y"]), tmp_path, "ok")
    assert scan_reports_for_unsafe_counts(tmp_path) == []
    # tamper with the published table: the declared count columns are checked
    text = path.read_text().replace("100", "3", 1)
    path.write_text(text)
    assert scan_reports_for_unsafe_counts(tmp_path) == ["tables/ok.csv: column A row 1 = 3"]


def test_percentages_from_the_protected_table(tmp_path):
    counts = pd.DataFrame({"F": [3, 40, 25], "M": [12, 38, 30]}, index=["C18", "C19", "C20"])
    prot = protect_table(counts, rounding=5)
    pct = percentages(prot, "column")
    assert pct.loc["Total"].tolist() == [100.0, 100.0, 100.0]
    assert pd.isna(pct.loc["C18", "F"])  # suppressed count: no percentage
    shown = prot.loc["C19", "F"]
    assert pct.loc["C19", "F"] == round(100 * shown / prot.loc["Total", "F"], 1)  # from rounded values
    path = publish_table(pct, tmp_path, "share", kind="estimates")
    assert read(path).columns[0] == "Unnamed: 0" and len(read(path)) == 4  # index kept
    assert scan_reports_for_unsafe_counts(tmp_path) == []
