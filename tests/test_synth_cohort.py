"""generate/write/run: schemas, determinism, atomic writing, --years and sites subsetting."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from registry_lib import synth
from registry_lib.io import read_parquet, sha256_tree
from registry_lib.synth import tables as T


def _tiny(**kw):
    return synth.load_config("params/cohort/small.yaml", scale=kw.pop("scale", 0.001), **kw)


@pytest.fixture(scope="module")
def tiny():
    return synth.generate(_tiny(), quiet=True)


@pytest.fixture(scope="module")
def written(tiny, tmp_path_factory):
    return synth.write(tiny, tmp_path_factory.mktemp("c") / "tiny")


def test_every_table_written_with_its_schema(written):
    for stage, tables in (("reference", T.REFERENCE), ("truth", T.TRUTH), ("feeds", T.FEEDS)):
        for name, schema in tables.items():
            import pyarrow.parquet as pq

            got = pq.read_schema(written / stage / f"{name}.parquet")
            assert got.names == schema.column_names, f"{stage}/{name}"
            assert [f.type for f in got] == [c.type for c in schema.columns], f"{stage}/{name}"
    effects = json.loads((written / "truth" / "effects.json").read_text())
    assert set(effects) >= {"cluster", "treatment_effect", "late_effect", "covid"}
    meta = json.loads((written / "cohort.json").read_text())
    assert meta["seed"] == 20240607 and meta["config"]["scale"] == 0.001


def test_truth_is_consistent(tiny):
    p, t, tr = tiny.truth["patients"], tiny.truth["tumours"], tiny.truth["treatments"]
    assert p["patient_id"].is_unique and t["tumour_id"].is_unique and tr["treatment_id"].is_unique
    assert set(t["patient_id"]) == set(p["patient_id"])                  # every patient has a tumour
    assert tr["tumour_id"].isin(t["tumour_id"]).all()
    m = t.merge(p, on="patient_id")
    assert (m["diagnosis_date"] >= m["birth_date"]).all()
    dead = m["death_date"].notna()
    assert (m.loc[dead, "death_date"] >= m.loc[dead, "diagnosis_date"]).all()
    assert (p["death_date"].notna() == p["death_cause_icd10"].notna()).all()
    eof = pd.Timestamp(tiny.config["end_of_follow_up"])
    assert (p["death_date"].dropna() <= eof).all()
    mt = tr.merge(p[["patient_id", "death_date"]], on="patient_id")
    assert ((mt["start_date"] < mt["death_date"]) | mt["death_date"].isna()).all()
    assert (mt["start_date"] <= eof).all()
    assert t["stage"].isin(["1", "2", "3", "4"]).all()
    assert t["stage_recorded"].isin(["1", "2", "3", "4", "U"]).all()
    assert (t.loc[t.stage_recorded != "U", "stage_recorded"] == t.loc[t.stage_recorded != "U", "stage"]).all()
    age = (t.merge(p, on="patient_id").pipe(lambda d: (d.diagnosis_date - d.birth_date).dt.days / 365.25))
    assert np.abs(age - t["age_at_diagnosis"]).max() < 1.01
    assert t.groupby("patient_id").size().max() >= 2                     # multiple primaries occur
    # historic Hodgkin/breast cohort from 1985 (small.yaml)
    years = t["diagnosis_date"].dt.year
    assert years.min() == 1985 and set(t.loc[years < 2013, "site_icd10"]) <= {"C50", "C81"}
    sact = tr[tr.modality == "sact"]
    assert sact["regimen"].notna().all() and (sact["cycles"] > 0).all()
    rt = tr[tr.modality == "radiotherapy"]
    assert rt["rt_region"].notna().all() and (rt["dose_gy"] > 0).all() and (rt["fractions"] > 0).all()
    assert tr.loc[tr.modality == "surgery", "procedure_code"].notna().all()


def test_same_seed_byte_identical_other_seed_different(written, tmp_path):
    again = synth.write(synth.generate(_tiny(), quiet=True), tmp_path / "again")
    assert sha256_tree(written) == sha256_tree(again)
    other = synth.write(synth.generate(_tiny(seed=99), quiet=True), tmp_path / "other")
    a, b = sha256_tree(written), sha256_tree(other)
    assert a.keys() == b.keys()
    differ = [k for k in a if a[k] != b[k]]
    assert {"truth/patients.parquet", "truth/tumours.parquet", "feeds/notifications.parquet"} <= set(differ)


def test_interrupted_write_leaves_nothing_that_looks_complete(tiny, tmp_path, monkeypatch):
    import registry_lib.synth.cohort as cohort_mod

    calls = {"n": 0}
    real = cohort_mod.write_parquet

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated interruption")
        return real(*args, **kwargs)

    monkeypatch.setattr(cohort_mod, "write_parquet", failing)
    target = tmp_path / "cohort"
    with pytest.raises(KeyboardInterrupt):
        synth.write(tiny, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []                                  # no temp folder left
    # an existing complete cohort survives an interrupted overwrite untouched
    monkeypatch.setattr(cohort_mod, "write_parquet", real)
    synth.write(tiny, target)
    before = sha256_tree(target)
    calls["n"] = 0
    monkeypatch.setattr(cohort_mod, "write_parquet", failing)
    with pytest.raises(KeyboardInterrupt):
        synth.write(tiny, target)
    assert sha256_tree(target) == before


def test_years_and_sites_subsetting():
    c = synth.generate(_tiny(years=(2019, 2019), scale=0.002) | {"sites": ["C18", "C34"]}, quiet=True)
    t = c.truth["tumours"]
    assert set(t["diagnosis_date"].dt.year) == {2019}
    assert set(t["site_icd10"]) == {"C18", "C34"}
    assert set(c.reference["population"]["year"]) == {2019}
    assert c.effects["late_effect"]["cohort_size"] == 0 or c.effects["late_effect"] is None
    assert c.effects["cluster"] is None                                    # C67 not generated


def test_run_and_cli(tmp_path, capsys):
    from registry_lib.cli import main

    out = tmp_path / "via_cli"
    rc = main(["synth", "--config", "params/cohort/small.yaml", "--seed", "3", "--scale", "0.0005",
               "--years", "2020", "2020", "--out", str(out)])
    assert rc == 0
    meta = json.loads((out / "cohort.json").read_text())
    assert (meta["seed"], meta["config"]["years"], meta["config"]["scale"]) == (3, [2020, 2020], 0.0005)
    tumours = read_parquet(out / "truth" / "tumours.parquet")
    assert set(tumours["diagnosis_date"].dt.year) == {2020}
    rc = main(["synth", "--config", "params/cohort/small.yaml", "--scale", "-1", "--out", str(tmp_path / "x")])
    assert rc == 2 and "scale" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
