"""Cohort configs: loading, overrides and validation (every mistake names its key)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from registry_lib.errors import ConfigError
from registry_lib.synth import load_config
from registry_lib.synth.config import resolve_config

BASE = {"name": "t", "seed": 1, "scale": 0.001, "years": [2019, 2020], "end_of_follow_up": "2021-06-30"}


def _cfg(**changes):
    return {**BASE, **changes}


@pytest.mark.parametrize("name", ["small", "default", "england"])
def test_shipped_configs_load(name):
    cfg = load_config(f"params/cohort/{name}.yaml")
    assert cfg["name"] == name
    assert set(cfg["effects"]) == {"cluster", "treatment_effect", "late_effect", "covid", "cpes", "screening"}
    assert cfg["effects"]["treatment_effect"]["hazard_ratio"] == 0.70
    assert cfg["effects"]["late_effect"]["relative_risk"] == 5.0
    assert cfg["effects"]["covid"]["diagnosis_multipliers"]["C61"][1] == 0.40   # April 2020


def test_overrides_and_years_drop_the_historic_cohort():
    cfg = load_config("params/cohort/default.yaml", seed=5, scale=0.003, years=(2018, 2019))
    assert (cfg["seed"], cfg["scale"], cfg["years"], cfg["historic"]) == (5, 0.003, [2018, 2019], None)
    assert load_config("params/cohort/default.yaml")["historic"] == {"start": 1971, "sites": ["C50", "C81"]}


def test_effect_overrides_are_deep_merged_and_null_removes():
    cfg = resolve_config(_cfg(effects={"cluster": {"relative_risk": 4.0}, "covid": None}))
    assert cfg["effects"]["cluster"]["relative_risk"] == 4.0
    assert cfg["effects"]["cluster"]["site"] == "C67"            # default kept
    assert cfg["effects"]["covid"] is None
    assert resolve_config(cfg) == cfg                             # idempotent


def test_config_is_json_plain():
    cfg = resolve_config(_cfg())
    assert isinstance(cfg["effects"]["covid"]["breast_rt_5_fraction"]["from"], str)


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"scale": 0.0}, "scale"),
    ({"scale": "big"}, "scale must be a number"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"years": [2020, 2019]}, "years start 2020 is after end 2019"),
    ({"years": [2019]}, "years must be [start, end]"),
    ({"end_of_follow_up": "2019-01-01"}, "end_of_follow_up 2019-01-01 is before"),
    ({"end_of_follow_up": "soon"}, "end_of_follow_up 'soon' is not a date"),
    ({"sites": ["C99X"]}, "sites has unknown site(s) C99X"),
    ({"historic": {"start": 1990}}, "historic.sites"),
    ({"effects": {"flood": {}}}, "unknown effect(s) flood"),
    ({"effects": {"cluster": {"radius": 3}}}, "effects.cluster has unknown key(s) radius"),
    ({"effects": {"cluster": {"site": "C00X"}}}, "effects.cluster.site"),
    ({"effects": {"cluster": {"source_id": 3, "relative_risk": -1}}}, "effects.cluster.relative_risk"),
    ({"effects": {"treatment_effect": {"applies_to": "some"}}}, "applies_to"),
    ({"effects": {"treatment_effect": {"hazard_ratio": 0}}}, "hazard_ratio"),
    ({"effects": {"late_effect": {"sex": 3}}}, "effects.late_effect.sex"),
    ({"effects": {"covid": {"diagnosis_multipliers": {"C50": [1.0]}}}}, "diagnosis_multipliers.C50 needs 22"),
    ({"feeds": [1]}, "feeds must be a mapping"),
])
def test_bad_values_raise_config_error_naming_the_key(changes, fragment):
    with pytest.raises(ConfigError) as err:
        resolve_config(_cfg(**changes), where="cohort.yaml")
    assert fragment in str(err.value)
    assert str(err.value).startswith("cohort.yaml:")


def test_missing_file_and_extends(tmp_path: Path):
    with pytest.raises(ConfigError, match="no such params file"):
        load_config(tmp_path / "nope.yaml")
    src = Path("params/cohort/small.yaml").read_text()
    (tmp_path / "small.yaml").write_text(src)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"extends": "small", "name": "tiny", "scale": 0.0005}))
    cfg = load_config(tmp_path / "tiny.yaml")
    assert (cfg["name"], cfg["scale"], cfg["years"]) == ("tiny", 0.0005, [2013, 2023])
