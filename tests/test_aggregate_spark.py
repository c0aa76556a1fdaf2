"""Issue 17, point 3: aggregation runs on Spark SQL with results identical to DuckDB.

``aggregate_counts`` and ``aggregate_rates`` with ``backend="spark"`` (one ``local[2]`` session
for the module, stopped at the end) must give the same DataFrame as ``backend="duckdb"``:
columns, dtypes, row order, exact values, ``attrs`` and warnings. They run over the tiny
cohort's aggregates release (the incidence cube) and record-level release (tumour + patient),
and over a copy of each with missing values planted (unknown age band, sex, area and stage),
so that missing groups, nullable dtypes, their sort order and the excluded-cases warning are
compared too.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import TEST_KEY

from registry_lib.engines import configure_spark
from registry_lib.errors import RegistryLabError
from registry_lib.linkage.model import java_available, spark_session, stop_spark
from registry_lib.linkage.tiny import tiny_cohort
from registry_lib.release import aggregate_counts, aggregate_rates, run
from registry_lib.release.run import release_dir

pytestmark = [pytest.mark.spark, pytest.mark.slow]
CUBE, RECORDS = "aggregate_publication", "research_pseudonymised"
# (by, years, sites): region/deprivation, case-only dimensions, year filters, odd site literals.
GROUPINGS = [
    (None, None, None),
    (["sex"], (2018, 2021), None),
    (["region"], None, None),
    (["deprivation_quintile", "sex"], [2019, 2021], None),
    (["site_icd10", "region"], 2020, None),
    (["stage", "year"], None, ["C18", "C34", "C'1", "C\\1"]),
]


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """The tiny cohort with both releases, and a copy of it with missing values planted."""
    mp = pytest.MonkeyPatch()
    # the suite's key: the tiny cohort is linked once per process, maybe already by another test
    mp.setenv("REGISTRY_LAB_KEY", TEST_KEY)
    cohort = tiny_cohort()
    for policy in (CUBE, RECORDS):
        run(cohort, policy, "test")
    odd = tmp_path_factory.mktemp("odd") / cohort.name
    for policy in (CUBE, RECORDS):
        shutil.copytree(release_dir(cohort, policy), odd / "releases" / policy)
    (odd / "reference").symlink_to(cohort / "reference", target_is_directory=True)
    (odd / "cohort.json").symlink_to(cohort / "cohort.json")
    _plant_missing(release_dir(odd, CUBE) / "incidence.parquet", ["age_band", "sex", "area_id", "stage"])
    _plant_missing(release_dir(odd, RECORDS) / "tumour.parquet", ["age_at_diagnosis", "area_id", "stage"])
    yield {"tiny": cohort, "odd": odd}
    mp.undo()


def _plant_missing(path: Path, columns: list[str]) -> None:
    """Set ``columns`` missing in every 9th, 10th, 11th... row of a Parquet file (types kept),
    and give a few rows sites whose literals the engines spell differently (``'`` and ``\\``)."""
    table = pq.read_table(path)
    rows = np.arange(table.num_rows)
    for step, name in enumerate(columns, start=9):
        i = table.schema.get_field_index(name)
        hit = pa.array(rows % step == 0)
        table = table.set_column(i, name, pc.if_else(hit, pa.scalar(None, table.schema.field(i).type), table.column(i)))
    i = table.schema.get_field_index("site_icd10")
    site = pc.if_else(pa.array(rows % 13 == 1), "C'1", table.column(i))
    table = table.set_column(i, "site_icd10", pc.if_else(pa.array(rows % 17 == 2), "C\\1", site))
    pq.write_table(table, path)


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    if not java_available():
        pytest.skip("Java is not installed: the Spark backend needs a Java runtime (java not on PATH)")
    stop_spark()  # a session of an earlier test module may have other settings
    configure_spark("local[2]", ["spark.driver.memory=1g"], workdir=tmp_path_factory.mktemp("spark"))
    try:
        yield spark_session()
    finally:
        stop_spark()
        _stop_jvm()
        configure_spark()


def _stop_jvm() -> None:
    """End the JVM that ``stop_spark`` leaves running (pyspark keeps it until Python exits).

    Otherwise its ~1 GB stays with this test worker for the rest of ``make test``; a later
    Spark test in the same worker starts a new one.
    """
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    proc = getattr(gateway, "proc", None)
    if gateway is None or proc is None:  # no JVM, or one this process did not launch
        return
    gateway.shutdown()
    proc.stdin.close()  # the gateway server exits at the end of its standard input
    proc.wait(timeout=60)
    SparkContext._gateway = SparkContext._jvm = None


def _both(function, cohort, **kwargs) -> tuple[pd.DataFrame, pd.DataFrame, list, list]:
    out, caught = [], []
    for backend in ("duckdb", "spark"):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            out.append(function(cohort, backend=backend, **kwargs))
        caught.append([(w.category, str(w.message)) for w in seen])
    return out[0], out[1], caught[0], caught[1]


@pytest.mark.parametrize(("which", "policy"), [("tiny", CUBE), ("odd", CUBE), ("odd", RECORDS)])
def test_spark_counts_and_rates_are_identical_to_duckdb(spark, cohorts, which, policy):
    cohort = cohorts[which]
    groupings = GROUPINGS if which == "odd" else GROUPINGS[:5:2]
    for by, years, sites in groupings:
        what = f"{which} {policy} by={by} years={years} sites={sites}"
        duck, spk, duck_warned, spark_warned = _both(aggregate_counts, cohort, by=by, years=years,
                                                     sites=sites, policy=policy)
        assert len(duck) > 0 and duck["count"].sum() > 0, what
        if sites is not None:  # the sites spelled differently by the two engines are counted
            assert set(sites) <= set(aggregate_counts(cohort, by="site_icd10", sites=sites, policy=policy,
                                                      years=years)["site_icd10"]), what
        pd.testing.assert_frame_equal(spk, duck, check_exact=True, obj=f"counts {what}")
        assert spk.attrs == duck.attrs and spark_warned == duck_warned, what

        duck, spk, duck_warned, spark_warned = _both(aggregate_rates, cohort, by=by, years=years,
                                                     sites=sites, policy=policy)
        pd.testing.assert_frame_equal(spk, duck, check_exact=True, obj=f"rates {what}")
        assert spk.attrs == duck.attrs and spark_warned == duck_warned, what
        if which == "odd" and sites is None:  # the planted unknown ages cannot enter a rate
            assert duck.attrs["excluded_cases"] > 0 and duck_warned, what


def test_missing_values_make_their_own_groups_last(spark, cohorts):
    got = aggregate_counts(cohorts["odd"], by=["region", "stage"], backend="spark")
    assert got["region"].isna().any() and got["stage"].isna().any()
    assert got["region"].isna().to_numpy().argmax() > 0  # missing regions come after the others
    assert got["region"].iloc[-1] is None or pd.isna(got["region"].iloc[-1])


def test_unknown_backend_is_one_sentence(cohorts):
    with pytest.raises(RegistryLabError, match="backend 'sparkk': choose one of duckdb, spark"):
        aggregate_counts(cohorts["tiny"], backend="sparkk")
    with pytest.raises(RegistryLabError, match="backend 'Spark': choose one of duckdb, spark"):
        aggregate_rates(cohorts["tiny"], by="sex", backend="Spark")
    from registry_lib.studies.registry_statistics import publish_incidence

    with pytest.raises(RegistryLabError, match="backend 'polars': choose one of duckdb, spark"):
        publish_incidence(cohorts["tiny"], os.devnull, backend="polars")
