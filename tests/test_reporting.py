"""The presentation layer: tables, prose, report headers, polygons for maps."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from registry_lib.pipeline.browser import visible_problems
from registry_lib.reporting import (
    captioned,
    count_text,
    format_p,
    format_table,
    label,
    markdown_text,
    p_text,
    read_published_table,
    table_html,
)
from registry_lib.reporting.document import (
    decorate_report,
    notebook_title,
    parameter_rows,
    parameters_html,
    rerun_command,
)
from registry_lib.reporting.figures import area_polygons, polygons_geojson


def test_counts_are_integers_with_separators_and_suppressed_cells_read_c():
    t = pd.DataFrame({"site_icd10": ["C50", "C61", "C34"], "n_patients": [326600.0, np.nan, 3195.0],
                      "sir": [1.23456, np.nan, 0.9]})
    shown = format_table(t, suppressed_columns=["n_patients"], suppressed_rows=t["n_patients"].isna())
    assert list(shown.columns) == ["Site (ICD-10)", "Patients", "SIR"]
    assert shown["Patients"].tolist() == ["326,600", "[c]", "3,195"]
    assert shown["SIR"].tolist() == ["1.23", "[c]", "0.90"]  # derived from a withheld count: [c]


def test_missing_values_that_are_not_suppressed_read_x_and_none_leaks():
    t = pd.DataFrame({"term": ["sex[2]", "period[T.pandemic]", "site_icd10[C02]"],
                      "hr": [0.8, None, 1.5], "p_value": [0.00044, 0.9999, None]})
    shown = format_table(t)
    assert shown["Term"].tolist() == ["Sex: female", "Period: pandemic", "Site (ICD-10): C02"]
    assert shown["Hazard ratio"].tolist() == ["0.80", "[x]", "1.50"]
    assert shown["p-value"].tolist() == ["<0.001", "1.000", "[x]"]
    html = table_html(t)
    assert not visible_problems(html) and "[x] not available" in html


def test_a_plain_index_is_dropped_and_a_meaningful_one_kept():
    plain = pd.DataFrame({"a": [1, 2]})
    assert list(format_table(plain).columns) == ["A"]
    named = pd.DataFrame({"n": [5, 6]}, index=pd.Index(["x", "y"], name="feed"))
    assert format_table(named).values.tolist() == [["x", "5"], ["y", "6"]]


def test_decimals_are_fixed_per_column():
    t = pd.DataFrame({"ratio": [1.0, 0.98765, 1.1], "rate": [0.00012, 0.0004, 0.0031]})
    shown = format_table(t)
    assert shown["Ratio"].tolist() == ["1.00", "0.99", "1.10"]
    assert {len(v.split(".")[1]) for v in shown["Rate"]} == {len(shown["Rate"][0].split(".")[1])}
    assert "e" not in "".join(shown["Rate"])
    assert format_table(t, decimals={"ratio": 1})["Ratio"].tolist() == ["1.0", "1.0", "1.1"]


def test_percent_columns_and_p_values():
    shown = format_table(pd.DataFrame({"share": [0.0497, np.nan]}), percent=["share"])
    assert shown["Share"].tolist() == ["5.0%", "[x]"]
    assert format_p(0.0004) == "<0.001" and format_p(0.04) == "0.040"
    assert p_text(0.0001) == "p < 0.001" and p_text(0.2) == "p = 0.200"


def test_long_tables_fold_away_with_a_summary_and_footnotes_follow_the_ons_convention():
    t = pd.DataFrame({"n": [float(i * 10) for i in range(40)]})
    html = table_html(t, "Counts", collapse_after=15)
    assert html.count("<details") == 1 and "40 rows" in html
    assert "[c]" not in html
    t.loc[3, "n"] = np.nan
    html = table_html(t, "Counts", suppressed_columns=["n"])
    assert "<td class='num'>[c]</td>" in html and "[c] confidential" in html


def test_a_published_csv_is_read_with_its_sidecar(tmp_path):
    (tmp_path / "t.csv").write_text("site,n_cases,sir\nC50,1200,1.1\nC61,,\n")
    (tmp_path / "t.meta.json").write_text(json.dumps({"count_columns": ["n_cases"], "kind": "estimates"}))
    table = read_published_table(tmp_path / "t.csv")
    assert table.attrs["suppressed_columns"] == ["n_cases"]
    html = table_html(tmp_path / "t.csv")
    assert "1,200" in html and html.count("[c]") >= 2 and "NaN" not in html


def test_captioned_tables_keep_their_attributes_through_the_notebook_formatter():
    from registry_lib.reporting.tables import _dataframe_html

    t = captioned(pd.DataFrame({"count": [10.0, np.nan]}), "Registrations", suppressed_columns=["count"])
    html = _dataframe_html(t)
    assert "<caption>Registrations</caption>" in html and "[c]" in html and "10" in html


def test_labels():
    assert label("n_pairs_wrong") == "Pairs wrong"
    assert label("p_value") == "p-value"
    assert label("dsr_lower") == "Dsr lower" or label("dsr_lower").lower() == "dsr lower"
    assert label("iptw") == "IPTW"


def test_prose():
    assert markdown_text(["a.", "b."]) == "- a.\n- b."
    assert markdown_text("One sentence.", title="Conclusion") == "**Conclusion**\n\nOne sentence."
    assert count_text(3195.0) == "3,195" and "suppressed" in count_text(None)


def test_parameter_rows_expand_nested_values_and_mark_differences():
    rows = parameter_rows({"trial": {"sites": ["C18", "C19"], "grace_days": 90}, "seed": 1},
                          {"trial": {"sites": ["C18", "C19"], "grace_days": 120}, "seed": 1})
    assert [(r["name"], r["value"], r["changed"]) for r in rows] == [
        ("seed", "1", False), ("trial.grace_days", "90", True), ("trial.sites", "C18, C19", False)]
    html = parameters_html({"a": 1}, {"a": 2})
    assert "class='changed'" in html and "default: 2" in html


def test_rerun_command_gives_the_exact_parameters():
    cmd = rerun_command("cluster_investigation", "small", {"sites": ["C91", "C92"], "n_sim": 999},
                        {"sites": ["C67"], "n_sim": 999}, published=False)
    assert cmd == ".venv/bin/registry-lab run cluster_investigation --cohort small -p sites '[\"C91\", \"C92\"]'"
    assert rerun_command("x", "small", {}, {}, published=True) == ".venv/bin/registry-lab reproduce --cohort small"


def test_report_page_gets_its_title_and_header():
    cells = [{"cell_type": "markdown", "source": "# Is there *more* cancer?\n\ntext"}]
    title = notebook_title(cells, "fallback")
    assert title == "Is there more cancer?"
    page = decorate_report("<html><head><title>Notebook</title></head><body class='x'><p>b</p></body></html>",
                           title=title, header="<header>H</header>")
    assert "<title>Is there more cancer?</title>" in page and "<body class='x'>\n<header>H</header><p>b</p>" in page


def test_area_polygons_tile_the_hull_and_are_deterministic():
    rng = np.random.default_rng(3)
    areas = pd.DataFrame({"x": rng.uniform(0, 100_000, 60), "y": rng.uniform(0, 100_000, 60)})
    outline = [[-10, -10], [110, -10], [110, 110], [-10, 110]]
    cells = area_polygons(areas, outline)
    again = area_polygons(areas, outline)
    assert all(np.array_equal(a, b) for a, b in zip(cells, again, strict=True))

    def shoelace(p):
        return 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1)))

    assert sum(shoelace(c) for c in cells) == pytest.approx(120 * 120, rel=1e-9)
    # each centroid lies in its own cell
    from matplotlib.path import Path as MplPath

    assert all(MplPath(c).contains_point((x / 1000, y / 1000)) for c, x, y in zip(cells, areas["x"], areas["y"],
                                                                                 strict=True))
    geo = polygons_geojson(cells, pd.DataFrame({"i": range(60)}))
    assert len(geo["features"]) == 60


def test_visible_problems():
    assert visible_problems("n = 5 (95% CI 1-9), Nantes") == []
    assert visible_problems("value NaN, <NA>, None") == ["NaN", "<NA>", "None"]


def test_published_csvs_flag_suppressed_rows_and_keep_values_machine_readable(tmp_path):
    from registry_lib.release import publish_table

    t = pd.DataFrame({"site_icd10": ["C50", "C61", "C34"], "n_patients": [1203, 4, 55], "share": [0.5, 0.2, 0.3]})
    path = publish_table(t, tmp_path, "by_site", kind="estimates", count_columns=["n_patients"],
                         derived_columns=["share"], policy={"threshold": 7, "rounding": 5})
    written = pd.read_csv(path)
    assert written["suppressed"].tolist() == [False, True, False]
    assert written["n_patients"].isna().tolist() == [False, True, False]  # empty, not "[c]"
    assert json.loads(path.with_name("by_site.meta.json").read_text())["suppressed_flag"] == "suppressed"
    html = table_html(path)
    assert "Suppressed" not in html and html.count("[c]") >= 3  # the count, its share, the footnote
