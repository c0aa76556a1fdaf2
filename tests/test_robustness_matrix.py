"""Every study notebook runs to completion on cohorts nobody tuned it for (issue 11).

The matrix: each injected effect switched off in turn, every effect off, each on another seed with
drawn effect sizes and placements (a cluster of another site around another source, another HR,
another late-effect relative risk, other COVID-19 multipliers). Cohorts are made from config
files outside ``params/cohort`` with ``registry-lab reproduce --config FILE`` at a reduced scale;
Monte Carlo replications are reduced too (the methods are the same). A section a cohort cannot
support must say so in ``results.json`` (``not_estimable``) instead of crashing the study.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, make_project_copy, registry_lab

from registry_lib.synth.config import EFFECTS
from registry_lib.synth.draws import draw_effects

pytestmark = [pytest.mark.slow]

STUDIES = ("cohort_overview", "linkage_quality", "cluster_investigation", "treatment_effects", "covid_impact",
           "registry_statistics")
MATRIX_SCALE = 0.002
#: cohort -> (seed, effects switched off); every cohort has drawn effect sizes and placements
MATRIX = {
    "null_cluster": (1101, ["cluster"]),
    "null_treatment": (1102, ["treatment_effect"]),
    "null_late": (1103, ["late_effect"]),
    "null_covid": (1104, ["covid"]),
    "all_null": (1105, list(EFFECTS)),
}
FAST_STUDY_PARAMS = {"cluster_investigation": {"n_sim": 99}, "covid_impact": {"n_sims": 200}}


def _project(root: Path) -> Path:
    make_project_copy(root)
    for study, changes in FAST_STUDY_PARAMS.items():
        path = root / "params" / "studies" / f"{study}.yaml"
        text = path.read_text()
        for key, value in changes.items():
            lines = [f"{key}: {value}" if line.split(":")[0] == key else line for line in text.splitlines()]
            assert any(line == f"{key}: {value}" for line in lines), f"{path.name}: no {key}"
            text = "\n".join(lines) + "\n"
        path.write_text(text)
    return root


def _config(folder: Path, name: str, seed: int, null: list[str]) -> Path:
    cfg = yaml.safe_load((ROOT / "params" / "cohort" / "small.yaml").read_text())
    cfg.update(name=f"matrix_{name}", seed=seed, scale=MATRIX_SCALE, effects=draw_effects(seed, null=null))
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.mark.parametrize("name", list(MATRIX))   # each cohort its own project: xdist balances them
def test_every_study_runs_to_completion(name, tmp_path):
    seed, null = MATRIX[name]
    root = _project(tmp_path / "project")
    config = _config(tmp_path, name, seed, null)
    out = registry_lab(root, "reproduce", "--config", str(config), check=False, timeout=1200)
    assert out.returncode == 0, f"{name}: reproduce failed:\n{out.stderr[-3000:]}"
    effects = json.loads((root / "synthetic" / f"matrix_{name}" / "truth" / "effects.json").read_text())
    contrasts = effects["contrasts"]
    for effect, contrast in (("cluster", "cluster_sir_within_radius"), ("treatment_effect", "adjuvant_sact_hazard_ratio"),
                             ("late_effect", "late_effect_sir")):
        assert contrasts[contrast]["present"] is (effect not in null)
        if effect in null:
            assert contrasts[contrast]["true_value"] == 1.0, contrast
    if "covid" in null:
        assert set(contrasts["covid_april_2020_multiplier"].values()) == {1.0}
    not_estimable = {}
    for study in STUDIES:
        results = json.loads((root / "reports" / study / "results.json").read_text())
        assert results.get("cohort") == f"matrix_{name}", study
        for key, value in results.items():
            if isinstance(value, dict) and "not_estimable" in value:
                assert isinstance(value["not_estimable"], str) and value["not_estimable"], (study, key)
                not_estimable[f"{study}.{key}"] = value["not_estimable"]
    # the headline estimates hold on every cohort of the matrix, effect or no effect
    for key in ("covid_impact.sites", "treatment_effects.hazard_ratios", "treatment_effects.net_survival"):
        assert key not in not_estimable, (key, not_estimable[key])
    if "covid" in null:  # no COVID-19 deaths: said so, and the study went on
        assert "covid_impact.covid_death_on_sact" in not_estimable


def test_a_section_that_cannot_be_estimated_is_recorded_and_the_study_goes_on(tmp_path, capsys):
    from registry_lib.reporting import NotEstimable, StudyResults, read_results

    study = StudyResults(tmp_path, cohort="toy")
    with study.section("first"):
        study.record("first", {"n": 3})
    with study.section("late_effect"):
        raise NotEstimable("no women in the late-effect cohort")
    assert read_results(tmp_path)["late_effect"] == {"not_estimable": "no women in the late-effect cohort"}
    with study.section("late_effect"):  # a later cell of the failed section: already explained
        print(undefined_name)  # noqa: F821
    assert read_results(tmp_path)["late_effect"] == {"not_estimable": "no women in the late-effect cohort"}
    with study.section("figure"):  # a section using what the failed one would have made
        print(undefined_name)  # noqa: F821
    assert "late_effect" in read_results(tmp_path)["figure"]["not_estimable"]
    with study.section("fit"):
        raise np.linalg.LinAlgError("Singular matrix")
    assert read_results(tmp_path)["fit"] == {"not_estimable": "Singular matrix"}
    assert read_results(tmp_path)["first"] == {"n": 3}
    assert "section late_effect: not estimable" in capsys.readouterr().out
    with pytest.raises(AttributeError):  # a programming error is not hidden
        with study.section("bug"):
            None.missing  # noqa: B018


def test_recall_list_and_late_effect_cohort_leave_out_records_lacking_what_they_need():
    import pandas as pd

    from registry_lib.studies import treatment_effects as ts

    rel = {"patient": pd.DataFrame({"patient_ref": ["r1", "r2", "r3"], "nhs_number": ["1", "2", "3"],
                                    "given_name": "A", "family_name": "B", "postcode": "LS1 1AA",
                                    "birth_date": pd.to_datetime(["1980-05-01", None, "1981-01-01"]),
                                    "sex": [2, 2, None], "death_date": pd.to_datetime([None, None, None])}),
           "tumour": pd.DataFrame({"tumour_id": ["t1", "t2", "t3"], "patient_ref": ["r1", "r2", "r3"],
                                   "diagnosis_date": pd.to_datetime(["1998-01-10"] * 3),
                                   "age_at_diagnosis": [17, 17, 17], "site_icd10": "C81"}),
           "treatment": pd.DataFrame({"patient_ref": ["r1", "r2", "r3"], "tumour_id": ["t1", "t2", "t3"],
                                      "modality": "radiotherapy", "rt_region": "mantle",
                                      "start_date": pd.to_datetime(["1998-02-01"] * 3)})}
    due = ts.recall_list(rel, "2024-06-30")
    assert due["patient_ref"].tolist() == ["r1"]
    assert due.attrs["left_out_no_birth_date"] == 1 and due.attrs["left_out_missing_sex"] == 1
