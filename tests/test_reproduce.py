"""The whole pipeline on the small cohort: reports, caching, determinism, disclosure, nbval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import TEST_KEY, make_project_copy, registry_lab

from registry_lib.io import sha256_tree
from registry_lib.pipeline.manifest import TIMING_FIELDS

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("reproduce")]

ROOT = Path(__file__).resolve().parents[1]
STUDIES = [s["name"] for s in yaml.safe_load((ROOT / "params/pipeline.yaml").read_text())["steps"]
           if s["kind"] == "notebook"]


def test_reproduce_writes_a_report_per_study_an_index_and_a_manifest(small_run):
    reports = small_run / "reports"
    index = (reports / "index.html").read_text()
    for study in STUDIES:
        assert (reports / study / f"{study}.ipynb").exists(), study
        html = (reports / study / f"{study}.html").read_text()
        assert "data:image/png;base64" in html, f"{study}: figures are embedded"
        assert "jp-InputArea" not in html or "jp-mod-noInput" in html
        assert json.loads((reports / study / "results.json").read_text()), study
        assert f'href="{study}/{study}.html"' in index
    manifest = json.loads((reports / "manifest.json").read_text())
    assert manifest["cohort"] == "small" and isinstance(manifest["seed"], int)
    assert {"python", "packages"} <= set(manifest["environment"])
    assert manifest["environment"]["packages"]["pandas"]
    assert any(k.startswith("params/cohort/small.yaml") for k in manifest["params_hashes"])
    assert any(k.startswith("synthetic/small/feeds/") for k in manifest["outputs"])
    assert any(k.startswith("reports/cluster_investigation/") for k in manifest["outputs"])
    assert {"started", "finished"} <= set(manifest) and all(s["status"] == "ran" for s in manifest["steps"])


# The key estimates each study issue names (checked on the small cohort's run).
RESULT_KEYS = {
    "cohort_overview": {"registrations_ratio_to_published", "site_ratio_to_published", "net_survival", "ndop_rate"},
    "linkage_quality": {"precision", "recall", "f1", "false_match_rate", "missed_match_rate",
                        "persons_split", "persons_merged", "counts_reconcile"},
    "cluster_investigation": {"bands", "trend", "stone", "most_likely_cluster"},
    "treatment_effects": {"hazard_ratios", "net_survival", "late_effect_sir", "recall_list_women"},
    "covid_impact": {"sites", "stage_shift", "covid_death_on_sact", "breast_rt_5_fraction_share"},
    "registry_statistics": {"national_totals"},
    "patient_experience": {"response_rate", "national", "emergency_rating_difference", "outliers_99_8"},
    "screening_interval_cancers": {"screen_detected_per_1000", "interval_per_1000_by_year", "sensitivity",
                                   "late_stage_share"},
    "synthetic_twin": {"pmse", "baselines", "min_ci_overlap", "replicated_uniques", "useful", "safe"},
}


def test_results_json_holds_the_estimates_each_study_names(small_run):
    for study, keys in RESULT_KEYS.items():
        results = json.loads((small_run / "reports" / study / "results.json").read_text())
        assert keys <= set(results), (study, keys - set(results))
    linkage = json.loads((small_run / "reports/linkage_quality/results.json").read_text())
    assert linkage["f1"] >= 0.99 and linkage["counts_reconcile"] is True
    cluster = json.loads((small_run / "reports/cluster_investigation/results.json").read_text())
    assert {"members", "relative_risk", "llr", "p_value"} <= set(cluster["most_likely_cluster"])
    hrs = json.loads((small_run / "reports/treatment_effects/results.json").read_text())["hazard_ratios"]
    assert len(hrs) >= 3


def test_cpes_and_screening_studies_recover_their_truth(small_run):
    """Issue 14: on the small cohort, through linkage and the research release."""
    cpes = json.loads((small_run / "reports/patient_experience/results.json").read_text())["truth_check"]
    assert cpes["emergency_rating_effect"]["covered"] and cpes["outlier_trust"]["flagged_99_8"]
    scr = json.loads((small_run / "reports/screening_interval_cancers/results.json").read_text())["truth_check"]
    assert scr["sensitivity"]["covered"]
    assert scr["classification_agreement"] >= 0.99 and scr["interval_agreement"] >= 0.99


def test_notebook_outputs_carry_no_absolute_paths(small_run):
    for study in STUDIES:
        text = (small_run / "reports" / study / f"{study}.ipynb").read_text()
        assert str(small_run) not in text and "/tmp/" not in text, study
        assert "0x7f" not in text, f"{study}: memory address in an output"


def test_tables_written_under_reports_pass_disclosure_control(small_run):
    from registry_lib.release import scan_reports_for_unsafe_counts

    assert scan_reports_for_unsafe_counts(small_run / "reports") == []


def _strip_timing(manifest: dict) -> dict:
    out = {k: v for k, v in manifest.items() if k not in TIMING_FIELDS}
    out["steps"] = [{k: v for k, v in s.items() if k not in TIMING_FIELDS} for s in manifest["steps"]]
    return out


def test_two_runs_from_scratch_are_byte_identical(small_run, small_run_b):
    other = small_run_b
    ignore = {"reports/manifest.json", "reports/run_times.js", "synthetic/small/releases/audit.jsonl"}
    for folder in ("synthetic/small", "reports"):
        # scratch output of a notebook run by hand (the JupyterLab test) is not a pipeline output
        a = {k: v for k, v in sha256_tree(small_run / folder).items()
             if f"{folder}/{k}" not in ignore and not k.startswith("_scratch/")}
        b = {k: v for k, v in sha256_tree(other / folder).items()
             if f"{folder}/{k}" not in ignore and not k.startswith("_scratch/")}
        assert a.keys() == b.keys()
        differ = sorted(k for k in a if a[k] != b[k])
        assert not differ, f"{folder}: {differ[:10]}"
    ma = json.loads((small_run / "reports/manifest.json").read_text())
    mb = json.loads((other / "reports/manifest.json").read_text())
    assert _strip_timing(ma) == _strip_timing(mb)


def test_second_reproduce_skips_every_unchanged_step(small_run):
    registry_lab(small_run, "reproduce", "--cohort", "small")
    manifest = json.loads((small_run / "reports" / "manifest.json").read_text())
    assert {s["status"] for s in manifest["steps"]} == {"skipped"}


def test_notebooks_pass_nbval_on_the_small_cohort(small_run_b):
    small_run = small_run_b
    env = {**os.environ, "REGISTRY_LAB_ROOT": str(small_run), "REGISTRY_LAB_KEY": TEST_KEY, "CI": "true"}
    out = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
                          "-o", "addopts=", str(small_run / "notebooks")], cwd=small_run, env=env,
                         capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-6000:]


def test_run_one_study_with_other_parameters_writes_its_own_folder(small_run):
    before = sha256_tree(small_run / "reports" / "registry_statistics")
    params = yaml.safe_load((small_run / "params/studies/registry_statistics.yaml").read_text())
    key = next(iter(params))
    out = registry_lab(small_run, "run", "registry_statistics", "--cohort", "small", "-p", key,
                       json.dumps(params[key]))
    folder = Path(out.stdout.strip().split()[-1])
    assert folder.name.startswith("registry_statistics-") and (folder / "results.json").exists()
    assert sha256_tree(small_run / "reports" / "registry_statistics") == before
    bad = registry_lab(small_run, "run", "registry_statistics", "--cohort", "small", "-p", "no_such", "1", check=False)
    assert bad.returncode == 2 and "no parameter 'no_such'" in bad.stderr and "Traceback" not in bad.stderr


def test_a_failing_notebook_stops_the_run_and_sets_the_partial_notebook_aside(tmp_path):
    import nbformat

    root = make_project_copy(tmp_path / "fail")
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("cohort = 'small'\noutput_dir = 'reports/broken'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1\nraise ValueError('deliberate failure')"),
                nbformat.v4.new_code_cell("print('never')")]
    nbformat.write(nb, root / "notebooks" / "broken.ipynb")
    (root / "params" / "studies" / "broken.yaml").write_text("{}\n")
    (root / "params" / "cohort").mkdir(exist_ok=True)
    (root / "params" / "cohort" / "small.yaml").touch(exist_ok=True)
    (root / "params" / "broken_pipeline.yaml").write_text(
        "cohort: small\nsteps:\n  - name: broken\n    kind: notebook\n    notebook: notebooks/broken.ipynb\n"
        "    params: params/studies/broken.yaml\n")
    out = registry_lab(root, "reproduce", "--pipeline", "params/broken_pipeline.yaml", check=False)
    assert out.returncode == 1
    assert "ValueError" in out.stderr and "deliberate failure" in out.stderr
    assert "raise ValueError" in out.stderr, "the failing cell is printed"
    assert "Traceback" not in out.stderr.split("--- failing cell ---")[0]
    assert not (root / "reports" / "broken").exists(), "a failed run leaves no folder that looks like a report"
    assert "reports/.failed/broken/broken.ipynb" in out.stderr
    kept = nbformat.read(root / "reports" / ".failed" / "broken" / "broken.ipynb", as_version=4)
    assert any(o.get("output_type") == "error" for c in kept.cells for o in c.get("outputs", []))
    manifest = json.loads((root / "reports" / "manifest.json").read_text())
    assert manifest["steps"][-1]["status"] == "failed"


def test_a_fresh_clone_without_a_key_gets_one_made_and_is_told(tmp_path):
    root = make_project_copy(tmp_path / "nokey")
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_LAB_KEY")}
    env.update({"REGISTRY_LAB_ROOT": str(root), "CI": "true"})
    out = subprocess.run([sys.executable, "-c", "from registry_lib.pipeline.runner import ensure_project_key; "
                          f"from pathlib import Path; ensure_project_key(Path({str(root)!r}))"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "created a new project key" in out.stderr
    assert len((root / ".registry-lab" / "project.key").read_text().strip()) == 64


def test_the_pipeline_tests_share_one_worker(request):
    """Under ``pytest -n 2 --dist loadgroup`` this module's tests carry their xdist group, so the two
    small pipeline runs are made once, on one worker (pytest 9.2 dropped the group pytest-xdist 3.8
    sets, and every run was made on both workers, twice as often)."""
    if os.environ.get("PYTEST_XDIST_WORKER") and getattr(request.config.option, "loadgroup", False):
        assert request.node.nodeid.endswith("@reproduce"), request.node.nodeid
