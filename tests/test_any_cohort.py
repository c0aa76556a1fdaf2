"""Studying any cohort (issue 11): configs from any path, seeds, names, effects fully switchable."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from registry_lib.errors import ConfigError, RegistryLabError
from registry_lib.paths import cohort_folder_name, validate_name
from registry_lib.pipeline.runner import Pipeline, load_spec
from registry_lib.synth.cohort import _switch_off_baselines, true_contrasts
from registry_lib.synth.config import load_config
from registry_lib.synth.params import epidemiology_params


def test_validate_name_accepts_safe_names_and_refuses_the_rest():
    assert validate_name("small_2-b", "cohort") == "small_2-b"
    for bad in ("", "../x", "a/b", "-x", "_x", "a b", "café"):
        with pytest.raises(RegistryLabError, match="letters, digits"):
            validate_name(bad, "cohort")


def test_cohort_folder_name_adds_the_seed_only_when_it_overrides():
    assert cohort_folder_name("small") == "small"
    assert cohort_folder_name("small", 20240607, config_seed=20240607) == "small"
    assert cohort_folder_name("small", 7, config_seed=20240607) == "small-seed7"


def _config(tmp_path: Path, **changes) -> Path:
    cfg = yaml.safe_load((ROOT / "params" / "cohort" / "small.yaml").read_text())
    cfg.update(changes)
    path = tmp_path / "elsewhere" / "my cohort.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_pipeline_takes_a_config_from_any_path_and_a_seed(tmp_path):
    spec = load_spec(None, ROOT)
    path = _config(tmp_path, name="mine")
    pipe = Pipeline(spec, ROOT, config=path)
    assert pipe.cohort == "mine" and pipe.cohort_config() == path.resolve()
    assert Pipeline(spec, ROOT, config=path, seed=7).cohort == "mine-seed7"
    assert Pipeline(spec, ROOT, cohort="small", seed=7).cohort == "small-seed7"
    assert Pipeline(spec, ROOT, cohort="small").cohort == "small"
    with pytest.raises(ConfigError, match="either --cohort NAME or --config FILE"):
        Pipeline(spec, ROOT, cohort="small", config=path)
    with pytest.raises(ConfigError, match="letters, digits"):
        Pipeline(spec, ROOT, config=_config(tmp_path, name="../../etc"))
    with pytest.raises(ConfigError, match="no such cohort config file"):
        Pipeline(spec, ROOT, config=tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="use --config FILE"):
        Pipeline(spec, ROOT, cohort="nosuch").cohort_config()


def test_a_cohort_name_that_is_not_a_safe_folder_name_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="letters, digits"):
        load_config(_config(tmp_path, name="my cohort"))


def test_null_effects_switch_off_the_generic_effects_of_their_kind_too():
    params = epidemiology_params()
    on = {"cluster": {}, "treatment_effect": {}, "late_effect": {}, "covid": {}}
    assert _switch_off_baselines(params, on) is params
    off = _switch_off_baselines(params, {**on, "treatment_effect": None, "late_effect": None})
    assert off["survival"]["treatment_hazard_ratio"]["sact"] == 1.0
    assert off["incidence"]["second_primary_rate_ratio"] == 1.0
    assert params["incidence"]["second_primary_rate_ratio"] > 1.0  # the shared params are untouched
    assert params["survival"]["treatment_hazard_ratio"]["sact"] < 1.0


def test_every_contrast_has_a_true_value_and_one_when_its_effect_is_off():
    params = epidemiology_params()
    none = {"cluster": None, "treatment_effect": None, "late_effect": None, "covid": None}
    t = true_contrasts(none, _switch_off_baselines(params, none), None, ["C50", "C61"])
    assert t["cluster_sir_within_radius"]["true_value"] == 1.0
    assert t["cluster_sir_within_radius"]["source_id"] == params["effects"]["cluster"]["source_id"]
    assert t["adjuvant_sact_hazard_ratio"]["hazard_ratio"] == 1.0
    assert t["late_effect_sir"]["relative_risk"] == 1.0
    assert t["covid_april_2020_multiplier"] == {"C50": 1.0, "C61": 1.0}
    assert t["covid_cumulative_missing_diagnoses"]["C50"]["2020-03..2020-12"] == 0.0
    cfg = load_config(ROOT / "params" / "cohort" / "small.yaml")
    on = true_contrasts(cfg["effects"], params, None, ["C50"])
    assert on["adjuvant_sact_hazard_ratio"]["true_value"] == cfg["effects"]["treatment_effect"]["hazard_ratio"]
    assert on["late_effect_sir"]["true_value"] == cfg["effects"]["late_effect"]["relative_risk"]
    assert on["cluster_sir_within_radius"]["present"] is True
