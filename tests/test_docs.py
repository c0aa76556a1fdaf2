"""`make docs`: the static site (API reference and guide) builds offline and has every page."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _build_docs():
    spec = importlib.util.spec_from_file_location("build_docs", ROOT / "scripts" / "build_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _text(path: Path) -> str:
    return re.sub(r"<[^>]+>", " ", path.read_text())


def test_parameter_rows_take_the_comment_on_the_line_or_above(tmp_path):
    docs = _build_docs()
    f = tmp_path / "p.yaml"
    f.write_text("# the sites\nsites: [C50]\n\nlevel: 0.95   # CI level\nseed: 1\n")
    assert docs.parameter_rows(f) == [("sites", '["C50"]', "the sites"),
                                      ("level", "0.95", "CI level"), ("seed", "1", "")]


def test_results_keys_are_read_from_the_notebook_code():
    docs = _build_docs()
    keys = docs.results_keys(ROOT / "notebooks" / "04_covid_impact.ipynb")
    assert {"cohort", "stage_shift", "covid_death_on_sact", "truth_check"} <= set(keys)


@pytest.mark.slow
def test_docs_build_every_page(tmp_path):
    docs = _build_docs()
    out = tmp_path / "site"
    pages = docs.build(out)
    assert all(p.exists() for p in pages)
    for page in ("index.html", "journey.html", "data_dictionary.html"):
        assert (out / page).exists(), page
    journey = _text(out / "journey.html")
    for folder in ("synthetic/default/feeds/", "synthetic/default/registry/",
                   "synthetic/default/releases/research_pseudonymised/", "reports/covid_impact/"):
        assert folder in journey, folder
    assert "truth/tumours.parquet" in _text(out / "data_dictionary.html")
    spec = yaml.safe_load((ROOT / "params" / "pipeline.yaml").read_text())
    studies = [s["name"] for s in spec["steps"] if s["kind"] == "notebook"]
    assert len(studies) >= 6
    for study in studies:
        page = out / "studies" / f"{study}.html"
        text = _text(page)
        params = yaml.safe_load((ROOT / "params" / "studies" / f"{study}.yaml").read_text())
        missing = [k for k in params if k not in text]
        assert not missing, (study, missing)
        assert "results.json" in text and "cohort" in text
        assert (out / "api" / "registry_lib" / "studies" / f"{study}.html").exists(), study
    for module in ("stats/rates", "stats/timeseries", "release", "synth/cohort", "pipeline/runner"):
        assert (out / "api" / "registry_lib" / f"{module}.html").exists(), module
    api_page = (out / "api" / "registry_lib" / "stats" / "periods.html").read_text()
    assert "assign_period" in api_page
    for page in [*pages, *out.glob("studies/*.html")]:   # offline: nothing loaded from the web
        assert not re.search(r'<(script|link|img)[^>]*(src|href)="https?://', page.read_text()), page
