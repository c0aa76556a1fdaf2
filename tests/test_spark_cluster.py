"""Issue 17, point 4: the pipeline on a real (standalone, two-worker) Spark cluster.

A master and two workers are started from the pyspark installation on free localhost ports;
the small cohort is linked through the cluster with ``registry-lab link --backend spark
--spark-master URL`` and the registry (patients, tumours, record links) must be identical to
the DuckDB run. The aggregate release is then built by Spark SQL on the same cluster and must
be identical to the DuckDB one; so must the record-level releases (research and direct care,
built on the executors from the DuckDB project's registry), file by file, release.json and the
risk report included. The cluster is stopped at the end, even on failure.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
from conftest import make_project_copy, registry_lab

from registry_lib.engines import LocalSparkCluster
from registry_lib.linkage.model import java_available

pytestmark = [pytest.mark.spark, pytest.mark.slow]
TABLES = ("patient", "tumour", "record_links", "treatment", "quarantine")
#: Record-level policies released on the cluster: NDOP, pseudonyms, re-keyed ids, regions (research);
#: identifiers copied, no opt-out (direct care).
RECORD_POLICIES = ("research_pseudonymised", "direct_care")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not java_available():
        pytest.skip("Java is not installed: a standalone Spark cluster needs a Java runtime")
    with LocalSparkCluster(workers=2, cores=1, memory="768m",
                           workdir=tmp_path_factory.mktemp("spark-cluster")) as c:
        yield c


def _apps(cluster):
    """The application folders on each worker (one per application that had an executor there)."""
    return {d for i in range(2) for d in (cluster.workdir / f"work{i}").glob("app-*")}


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _table(root, name):
    return pd.read_parquet(root / "synthetic" / "small" / "registry" / f"{name}.parquet")


def test_small_cohort_on_a_two_worker_cluster_matches_duckdb(cluster, tmp_path_factory, monkeypatch):
    duck = make_project_copy(tmp_path_factory.mktemp("duck"))
    registry_lab(duck, "synth", "--config", "params/cohort/small.yaml")
    registry_lab(duck, "link", "--cohort", "small")
    spark = make_project_copy(tmp_path_factory.mktemp("spark"))
    (spark / "synthetic" / "small").mkdir(parents=True)
    for folder in ("feeds", "reference", "truth"):
        os.symlink(duck / "synthetic" / "small" / folder, spark / "synthetic" / "small" / folder)
    monkeypatch.setenv("REGISTRY_LAB_MEMORY", "1GB")  # the driver's memory, as a user would bound it
    registry_lab(spark, "link", "--cohort", "small", "--backend", "spark",
                 "--spark-master", cluster.url, "--spark-conf", "spark.executor.memory=512m",
                 "--spark-conf", "spark.executor.cores=1", "--spark-conf", "spark.cores.max=2")
    # The job really ran on the cluster: both workers hosted an executor of it.
    assert len({d.parent for d in _apps(cluster)}) == 2, "the linkage did not run on both workers"
    for name in TABLES:
        pd.testing.assert_frame_equal(_table(spark, name), _table(duck, name), obj=name)

    on_cluster = ("--backend", "spark", "--spark-master", cluster.url, "--spark-conf", "spark.executor.memory=512m",
                  "--spark-conf", "spark.executor.cores=1", "--spark-conf", "spark.cores.max=2")
    for root, extra in ((duck, ()), (spark, on_cluster)):
        registry_lab(root, "release", "--cohort", "small", "--policy", "aggregate_publication",
                     "--requester", "test", *extra)
    folder = "synthetic/small/releases/aggregate_publication"
    cubes = sorted(p.name for p in (duck / folder).glob("*.parquet"))
    assert cubes
    for name in cubes:
        assert (spark / folder / name).read_bytes() == (duck / folder / name).read_bytes(), name

    # Record-level releases: built on the cluster's executors from the same registry as the
    # DuckDB release (release.json records no engine, only the inputs' and files' sha256), so
    # every file of the folder must be byte-identical.
    for policy in RECORD_POLICIES:
        folder = duck / "synthetic" / "small" / "releases" / policy
        registry_lab(duck, "release", "--cohort", "small", "--policy", policy, "--requester", "test")
        expected = _files(folder)
        assert {"release.json", "risk_report.json", "patient.parquet", "tumour.parquet"} <= set(expected)
        before = _apps(cluster)
        registry_lab(duck, "release", "--cohort", "small", "--policy", policy, "--requester", "test", *on_cluster)
        assert len({d.parent for d in _apps(cluster) - before}) == 2, f"{policy}: not released on both workers"
        got = _files(folder)
        assert sorted(got) == sorted(expected), policy
        for name in expected:
            assert got[name] == expected[name], f"{policy}/{name} differs from the DuckDB release"
