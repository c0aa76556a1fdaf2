"""Issue 17, point 3: record-level releases built on Spark (``local[2]``) are the in-process ones.

``build_record_release(..., backend="spark")`` runs the opt-outs, every transform and the keyed
hashes on the executors; the tables (rows, order, types) and the Parquet bytes written from
them must equal the Arrow build's, and bad input must fail with the same one sentence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import TEST_KEY

from registry_lib.engines import configure_spark
from registry_lib.errors import RegistryLabError
from registry_lib.io import write_parquet
from registry_lib.linkage.model import _SPARK, java_available, stop_spark
from registry_lib.linkage.tiny import tiny_cohort
from registry_lib.release.policy import load_policy
from registry_lib.release.records import build_record_release

pytestmark = [pytest.mark.spark, pytest.mark.xdist_group("release_spark")]  # one Spark session
KEY = bytes.fromhex("3a6bf2b23cb79401d3683a0ac4956397f426effd72f435012c41c2a4a612a227")
#: NDOP, pseudonyms, re-keyed ids (one shared by two tables), a region and the rarer generalisations
POLICY = {
    "purpose": "research_pseudonymised", "description": "Spark test.", "output": "record_level",
    "national_data_opt_out": True, "patient_key": "pseudo_id",
    "tables": {
        "patient": {"pseudo_id": "pseudonym", "sex": "copy", "region": {"from": "area_id", "transform": "region"},
                    "death_date": "copy", "death_month": {"from": "death_date", "transform": "month"}},
        "tumour": {"tumour_id": "rekey", "pseudo_id": "pseudonym", "diagnosis_date": "copy",
                   "diagnosis_year": {"from": "diagnosis_date", "transform": "year"},
                   "age_band": {"from": "age_at_diagnosis", "transform": "age_band"},
                   "site_icd10": "copy", "area_id": "copy"},
        "treatment": {"treatment_id": "rekey", "pseudo_id": "pseudonym", "tumour_id": "rekey",
                      "modality": "copy", "start_date": "copy", "dose_gy": "copy"},
    },
}


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    if not java_available():
        pytest.skip("Java is not installed: the Spark backend needs a Java runtime (java not on PATH)")
    configure_spark("local[2]", [], tmp_path_factory.mktemp("spark"))
    yield
    stop_spark()
    configure_spark()


@pytest.fixture(scope="module")
def registry():
    with pytest.MonkeyPatch.context() as mp:   # (the autouse key fixture is per test: not yet set)
        mp.setenv("REGISTRY_LAB_KEY", TEST_KEY)
        cohort = tiny_cohort()
    tables = {t: pq.read_table(cohort / "registry" / f"{t}.parquet") for t in ("patient", "tumour", "treatment")}
    areas = pq.read_table(cohort / "reference" / "areas.parquet")
    return tables, areas


@pytest.fixture()
def policy(tmp_path):
    path = tmp_path / "spark_test.yaml"
    path.write_text(json.dumps(POLICY))
    return load_policy(path)


def _bytes(table: pa.Table, tmp_path, name: str) -> bytes:
    return write_parquet(table, tmp_path / f"{name}.parquet").read_bytes()


def test_spark_record_release_equals_arrow(spark, registry, policy, tmp_path):
    tables, areas = registry
    patient = tables["patient"]
    # one more opt-out, of a patient with tumours (the tiny cohort has some already)
    opted = pc.is_in(patient.column("patient_id"), value_set=tables["tumour"].column("patient_id").slice(0, 1))
    flag = pc.or_(patient.column("ndop_opted_out"), opted)
    reg = {**tables, "patient": patient.set_column(patient.schema.get_field_index("ndop_opted_out"),
                                                   "ndop_opted_out", flag)}
    # the Spark path also reads registry files as they are (what `registry-lab release` gives it)
    write_parquet(reg["treatment"], tmp_path / "treatment.parquet")
    on_spark = {**reg, "treatment": tmp_path / "treatment.parquet"}
    arrow = build_record_release(reg, policy, areas=areas, key=KEY)
    spark_built = build_record_release(on_spark, policy, areas=areas, key=KEY, backend="spark")
    assert spark_built.opt_out_removals == arrow.opt_out_removals
    assert arrow.opt_out_removals["patient"] >= 2 and arrow.opt_out_removals["tumour"] >= 1
    for name in POLICY["tables"]:
        a, s = arrow.tables.arrow(name), spark_built.tables.arrow(name)
        assert s.schema == a.schema, name
        assert s.equals(a), name
        assert _bytes(s, tmp_path / "spark", name) == _bytes(a, tmp_path / "arrow", name), name
    # the exchange folder of the call is gone (the staged registry holds NHS numbers)
    assert not list(Path(_SPARK["workdir"]).glob("record_release_*"))


def _broken(tables, which: str):
    patient, tumour = tables["patient"], tables["tumour"]
    if which == "area":
        i = patient.schema.get_field_index("area_id")
        area = patient.column("area_id").to_pylist()
        area[3] = "E99999999"
        return {**tables, "patient": patient.set_column(i, "area_id", pa.array(area, pa.string()))}, \
            "registry/patient: area_id 'E99999999' is not in reference/areas"
    if which == "ndop":
        i = patient.schema.get_field_index("ndop_opted_out")
        flag = patient.column("ndop_opted_out").to_pylist()
        flag[5] = None
        bad = patient.column("patient_id")[5].as_py()
        return {**tables, "patient": patient.set_column(i, "ndop_opted_out", pa.array(flag, pa.bool_()))}, \
            f"registry/patient: ndop_opted_out is missing for patient_id {bad}"
    ids = tumour.column("patient_id").to_pylist()
    ids[0] = 10**9
    return {**tables, "tumour": tumour.set_column(tumour.schema.get_field_index("patient_id"), "patient_id",
                                                   pa.array(ids, pa.int64()))}, \
        f"registry/tumour: patient_id {10**9} is not in registry/patient (broken registry)"


@pytest.mark.parametrize("which", ["area", "ndop", "patient"])
def test_spark_bad_input_is_one_sentence(spark, registry, policy, which):
    tables, areas = registry
    broken, message = _broken(tables, which)
    for backend in ("duckdb", "spark"):
        with pytest.raises(RegistryLabError) as err:
            build_record_release(broken, policy, areas=areas, key=KEY, backend=backend)
        assert str(err.value) == message, backend
        assert "Traceback" not in str(err.value)


def test_missing_column_is_named(registry, policy):
    tables, areas = registry
    without = {**tables, "tumour": tables["tumour"].drop_columns(["age_at_diagnosis"])}
    with pytest.raises(RegistryLabError, match=r"registry/tumour: column age_at_diagnosis is missing"):
        build_record_release(without, policy, areas=areas, key=KEY, backend="spark")
