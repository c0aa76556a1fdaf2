"""The memory setting (REGISTRY_LAB_MEMORY) and the Spark configuration precedence."""

from __future__ import annotations

import pytest

from registry_lib import engines
from registry_lib.errors import RegistryLabError

GB = 2**30


@pytest.mark.parametrize(("text", "expected"), [
    ("8GB", 8 * GB), ("8 gb", 8 * GB), ("512MB", 512 * 2**20), ("2g", 2 * GB),
    ("1.5GiB", int(1.5 * GB)), ("25%", 4 * GB), ("100%", 16 * GB), ("3221225472", 3 * GB),
])
def test_parse_memory(text, expected):
    assert engines.parse_memory(text, total=16 * GB) == expected


@pytest.mark.parametrize("text", ["lots", "0%", "150%", "8XB", "-1GB", "10MB", ""])
def test_parse_memory_refuses_with_one_sentence(text):
    with pytest.raises(RegistryLabError, match="REGISTRY_LAB_MEMORY"):
        engines.parse_memory(text, total=16 * GB)


def test_memory_limit_defaults_to_half_the_machine():
    assert engines.memory_limit({}, total=24 * GB) == 12 * GB
    assert engines.memory_limit({}) == engines.machine_memory() // 2


def test_every_duckdb_connection_has_the_limit_and_a_spill_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("REGISTRY_LAB_MEMORY", "300MB")
    monkeypatch.setenv("REGISTRY_LAB_TMP", str(tmp_path))
    con = engines.duckdb_connect()
    limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    temp = con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    con.close()
    assert limit.replace(" ", "") in {"300.0MiB", "300MiB"}, limit
    assert temp == str(tmp_path / "registry-lab-spill")


def test_duckdb_respects_the_limit(monkeypatch, tmp_path):
    """A sort larger than the limit spills to the temp folder instead of failing or growing."""
    monkeypatch.setenv("REGISTRY_LAB_MEMORY", "100MB")
    monkeypatch.setenv("REGISTRY_LAB_TMP", str(tmp_path))
    con = engines.duckdb_connect()
    con.execute("SET threads = 1")
    n = con.execute("SELECT count(*) FROM (SELECT range AS i, md5(range::VARCHAR) AS h "
                    "FROM range(3000000) ORDER BY h)").fetchone()[0]
    con.close()
    assert n == 3_000_000


def test_project_code_opens_duckdb_only_through_the_helper():
    from pathlib import Path

    src = Path(engines.__file__).parent
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if p.name != "engines.py" and "duckdb.connect(" in p.read_text(encoding="utf-8")]
    assert offenders == []


def test_spark_settings_precedence(tmp_path):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "spark-defaults.conf").write_text(
        "# cluster defaults\nspark.master  spark://from-file:7077\nspark.executor.memory 6g\n"
        "spark.executor.cores=3\n", encoding="utf-8")
    env = {"SPARK_CONF_DIR": str(conf_dir), "REGISTRY_LAB_MEMORY": "2GB"}
    s = engines.spark_settings(env=env)
    assert s["spark.master"] == "spark://from-file:7077"
    assert (s["spark.executor.memory"], s["spark.executor.cores"]) == ("6g", "3")
    assert s["spark.driver.memory"] == "2048m"
    s = engines.spark_settings(env={**env, "SPARK_MASTER": "spark://from-env:7077"})
    assert s["spark.master"] == "spark://from-env:7077"
    s = engines.spark_settings(master="spark://from-cli:7077", conf=["spark.executor.memory=1g"],
                               env={**env, "SPARK_MASTER": "spark://from-env:7077"})
    assert (s["spark.master"], s["spark.executor.memory"]) == ("spark://from-cli:7077", "1g")
    s = engines.spark_settings(env={"REGISTRY_LAB_MEMORY": "1GB"})
    assert s["spark.master"] == "local[2]" and s["spark.driver.memory"] == "1024m"


@pytest.mark.parametrize("item", ["executor.memory=2g", "spark.executor.memory", "spark.x="])
def test_spark_conf_refuses_malformed_items(item):
    with pytest.raises(RegistryLabError, match="--spark-conf"):
        engines.parse_spark_conf([item])


def test_cli_refuses_spark_options_without_the_spark_backend(tmp_path, monkeypatch, capsys):
    from registry_lib.cli import main

    (tmp_path / "params").mkdir()
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    (tmp_path / "synthetic" / "c" / "feeds").mkdir(parents=True)
    monkeypatch.setenv("REGISTRY_LAB_ROOT", str(tmp_path))
    assert main(["link", "--cohort", "c", "--spark-master", "spark://h:7077"]) == 2
    assert "need --backend spark" in capsys.readouterr().err


def test_spark_job_refuses_a_release_without_requester(capsys):
    from registry_lib.spark_job import main

    assert main(["--cohort", "small", "--release", "aggregate_publication"]) == 2
    assert "--release needs --requester" in capsys.readouterr().err
