"""Counts and rates from a release, through DuckDB (or Spark SQL) over its Parquet files.

The cases come from a release: the ``incidence`` cube of an aggregates release (default:
``aggregate_publication``), or the ``tumour`` (+ ``patient``) tables of a record-level one.
Denominators come from the cohort's public reference tables: ``reference/population.parquet``
(residents by area, year, sex and 5-year band), ``reference/areas.parquet`` (region and
deprivation quintile of each area) and ``reference/standard_populations.parquet`` (ESP 2013).

Dimensions a table can be grouped by: ``year`` (of diagnosis), ``sex``, ``age_band``,
``site_icd10``, ``stage``, ``area_id``, ``region``, ``deprivation_quintile``. Region and
deprivation are those of the area of residence at diagnosis.

Rates: for each group, the cases and person-years in every 5-year age band (sites and stages
with no case in a group count as zero), then the crude rate with exact Poisson limits and the
directly age-standardised rate (ESP 2013 by default) with Dobson et al. (1991) limits, both per
100,000 person-years (``registry_lib.stats.rates``). Cases whose stratum has no population
(unknown age or sex, an area outside the reference) cannot enter a rate: their number is in
``result.attrs["excluded_cases"]`` and a warning says so.

Engines: the SQL is written once and runs on DuckDB (``backend="duckdb"``, the default) or on
Spark SQL (``backend="spark"``: the session of :func:`registry_lib.linkage.model.spark_session`,
configured the standard Spark way, see :mod:`registry_lib.engines`). Only the spelling of a
Parquet source and of a string literal differs between them. On Spark the input files are
linked (or copied) into the shared Spark folder, the result is written there as Parquet by the executors and
read back through the same DuckDB-to-pandas conversion as the DuckDB path, and the final sort
and dtypes are set in one place for both: the two engines give identical DataFrames.

Example:
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> from registry_lib.linkage.tiny import tiny_cohort
    >>> from registry_lib.release.run import run
    >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
    >>> cohort = tiny_cohort()   # the tiny cohort, generated and linked (once per process)
    >>> _ = run(cohort, "aggregate_publication", "example")
    >>> rates = aggregate_rates(cohort, by=["sex"], years=(2018, 2021))
    >>> list(rates.columns)
    ['sex', 'count', 'population', 'crude_rate', 'crude_lower', 'crude_upper', 'dsr', 'dsr_lower', 'dsr_upper']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from registry_lib.engines import check_backend, duckdb_connect
from registry_lib.errors import RegistryLabError
from registry_lib.release.run import _resolve_cohort, load_release, release_dir

DIMENSIONS = ("year", "sex", "age_band", "site_icd10", "stage", "area_id", "region", "deprivation_quintile")
POPULATION_DIMENSIONS = ("year", "sex", "age_band", "area_id", "region", "deprivation_quintile")
DEFAULT_POLICY = "aggregate_publication"


def _sql_path(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


class _DuckDB:
    """Runs this module's SQL on a DuckDB connection (:func:`registry_lib.engines.duckdb_connect`)."""

    def __init__(self) -> None:
        self.con = duckdb_connect()

    def source(self, path: Path) -> str:
        """A Parquet file as a relation."""
        return f"read_parquet({_sql_path(path)})"

    @staticmethod
    def literal(text: str) -> str:
        """A string literal (DuckDB doubles quotes; a backslash is an ordinary character)."""
        return "'" + str(text).replace("'", "''") + "'"

    def frame(self, sql: str) -> pd.DataFrame:
        """The result of ``sql`` as a pandas DataFrame (DuckDB's conversion)."""
        return self.con.execute(sql).df()

    def close(self) -> None:
        self.con.close()


class _Spark:
    """Runs this module's SQL on Spark SQL, exchanging Parquet files through the shared folder.

    Inputs are linked (or copied) into a folder of their own per call under the shared Spark
    folder (``_SPARK["workdir"]``, which every executor sees; a new name per call, as Spark
    caches file listings); each result is written there by the executors and converted to pandas
    by DuckDB, exactly as the DuckDB path converts its results. The folder is removed at the end.
    """

    def __init__(self) -> None:
        from registry_lib.linkage.model import spark_call_folder, spark_session

        self.spark = spark_session()
        self.folder = spark_call_folder("aggregate", "aggregation")
        self.inputs: dict[Path, Path] = {}
        self.results = 0

    def source(self, path: Path) -> str:
        """A Parquet file as a relation, read by the executors from the shared folder."""
        if path not in self.inputs:
            target = self.folder / f"input{len(self.inputs)}_{path.name}"
            try:
                os.link(path, target)
            except OSError:  # another file system: copy
                shutil.copyfile(path, target)
            self.inputs[path] = target
        return "parquet.`" + str(self.inputs[path]).replace("`", "``") + "`"

    @staticmethod
    def literal(text: str) -> str:
        """A string literal (Spark escapes quotes and backslashes with a backslash)."""
        return "'" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "'"

    def frame(self, sql: str) -> pd.DataFrame:
        """The result of ``sql``, written as Parquet by Spark and converted to pandas by DuckDB."""
        self.results += 1
        target = self.folder / f"result{self.results}"
        self.spark.sql(sql).coalesce(1).write.mode("overwrite").parquet(str(target))
        with duckdb_connect() as con:
            return con.execute(f"SELECT * FROM read_parquet({_sql_path(target / '*.parquet')})").df()

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


_Engine = _DuckDB | _Spark


@contextlib.contextmanager
def _engine(backend: str) -> Iterator[_Engine]:
    """The engine of ``backend``, closed at the end."""
    check_backend(backend)
    engine: _Engine = _DuckDB() if backend == "duckdb" else _Spark()
    try:
        yield engine
    finally:
        engine.close()


def _sorted(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``frame`` sorted by ``keys`` (missing values last), as SQL ``ORDER BY ... NULLS LAST``.

    Both engines' results go through here: neither engine's row order is relied upon.
    """
    if not keys:
        return frame.reset_index(drop=True)
    return frame.sort_values(list(keys), na_position="last", kind="stable", ignore_index=True)


def _cases_sql(folder: Path, engine: _Engine) -> str:
    """A relation (year, sex, age_band, site_icd10, stage, area_id, n) over the release files."""
    cube = folder / "incidence.parquet"
    if cube.exists():
        return (
            "SELECT CAST(diagnosis_year AS INTEGER) AS year, CAST(sex AS INTEGER) AS sex, "
            "CAST(age_band AS INTEGER) AS age_band, site_icd10, stage, area_id, "
            f"CAST(count AS BIGINT) AS n FROM {engine.source(cube)}"
        )
    tumour, patient = folder / "tumour.parquet", folder / "patient.parquet"
    if not tumour.exists():
        raise RegistryLabError(f"{folder}: the release has neither an incidence cube nor a tumour table")
    import json

    key = json.loads((folder / "release.json").read_text()).get("patient_key") or "pseudo_id"
    return (
        "SELECT CAST(year(t.diagnosis_date) AS INTEGER) AS year, CAST(p.sex AS INTEGER) AS sex, "
        "CAST(CASE WHEN t.age_at_diagnosis >= 90 THEN 90 ELSE floor(t.age_at_diagnosis / 5) * 5 "
        "END AS INTEGER) AS age_band, "
        "t.site_icd10, t.stage, t.area_id, CAST(1 AS BIGINT) AS n "
        f"FROM {engine.source(tumour)} t LEFT JOIN {engine.source(patient)} p USING ({key})"
    )


def _years_clause(years: int | Sequence[int] | tuple[int, int] | None) -> str:
    if years is None:
        return "TRUE"
    if isinstance(years, int):
        return f"year = {int(years)}"
    if isinstance(years, tuple) and len(years) == 2:
        a, b = (int(y) for y in years)
        if a > b:
            raise RegistryLabError(f"years={years!r}: the first year is after the last")
        return f"year BETWEEN {a} AND {b}"
    values = [int(y) for y in years]
    if not values:
        raise RegistryLabError("years: empty list")
    return f"year IN ({', '.join(map(str, values))})"


def _sites_clause(sites: Sequence[str] | str | None, engine: _Engine) -> str:
    if sites is None:
        return "TRUE"
    sites = [sites] if isinstance(sites, str) else list(sites)
    if not sites:
        return "FALSE"
    return f"site_icd10 IN ({', '.join(engine.literal(s) for s in sites)})"


def default_years(cohort: Path) -> tuple[int, int] | None:
    """The cohort's complete diagnosis years (``cohort.json`` config ``years``), if recorded.

    A cohort may also hold earlier diagnoses of a few sites only (e.g. for late effects), so
    rates over "all years" would be diluted: counts and rates default to these years.

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> default_years(tiny_cohort())
        (2018, 2021)
    """
    import json

    meta = Path(cohort) / "cohort.json"
    if not meta.exists():
        return None
    years = (json.loads(meta.read_text()).get("config") or {}).get("years")
    if isinstance(years, list | tuple) and len(years) == 2:
        return int(years[0]), int(years[1])
    return None


def _check_by(by: Sequence[str] | str | None) -> list[str]:
    by = [] if by is None else [by] if isinstance(by, str) else list(by)
    bad = [b for b in by if b not in DIMENSIONS]
    if bad:
        raise RegistryLabError(f"by={bad}: unknown dimension(s); choose from {', '.join(DIMENSIONS)}")
    if len(set(by)) != len(by):
        raise RegistryLabError(f"by={by}: a dimension appears twice")
    return by


def _reference(cohort: Path, name: str) -> Path:
    path = cohort / "reference" / f"{name}.parquet"
    if not path.exists():
        raise RegistryLabError(f"{path}: reference table missing; make it with `registry-lab synth`")
    return path


def _check_release(cohort: Path, policy: str) -> Path:
    folder = release_dir(cohort, policy)
    if not (folder / "release.json").exists():
        load_release(cohort, policy)  # raises the "how to make it" error
    return folder


def _cases_with_areas(cohort: Path, folder: Path, years: int | Sequence[int] | tuple[int, int] | None,
                      sites: Sequence[str] | str | None, engine: _Engine) -> str:
    """The release's cases with the region and deprivation of their area, filtered."""
    areas = _reference(cohort, "areas")
    return (
        f"SELECT c.*, a.region, CAST(a.deprivation_quintile AS INTEGER) AS deprivation_quintile "
        f"FROM ({_cases_sql(folder, engine)}) c LEFT JOIN {engine.source(areas)} a USING (area_id) "
        f"WHERE {_years_clause(years)} AND {_sites_clause(sites, engine)}"
    )


def aggregate_counts(
    cohort: str | Path,
    by: Sequence[str] | str | None = None,
    *,
    years: int | Sequence[int] | tuple[int, int] | None = None,
    sites: Sequence[str] | str | None = None,
    policy: str = DEFAULT_POLICY,
    backend: str = "duckdb",
) -> pd.DataFrame:
    """Tumour counts by any grouping (unprotected: publish them with ``publish_table``).

    Args:
        cohort: cohort name or folder.
        by: dimensions to group by (see the module docstring); none gives the total.
        years: a year, an inclusive ``(first, last)`` range, or a list of years of diagnosis;
            default: the cohort's complete diagnosis years (:func:`default_years`), else all.
        sites: restrict to these ICD-10 3-character sites.
        policy: the release to read (default ``aggregate_publication``).
        backend: ``"duckdb"`` or ``"spark"`` (Spark SQL on the session of
            :func:`registry_lib.linkage.model.spark_session`); the results are identical.

    Returns:
        DataFrame ``[*by, count]`` with one row per non-empty group, sorted by ``by`` (missing
        values last).

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> from registry_lib.release.run import run
        >>> cohort = tiny_cohort()
        >>> _ = run(cohort, "aggregate_publication", "example")
        >>> counts = aggregate_counts(cohort, by=["sex"], years=(2018, 2021))
        >>> list(counts.columns), len(counts), bool((counts["count"] > 0).all())
        (['sex', 'count'], 2, True)

    ``backend="spark"`` gives the same table through Spark SQL; it needs Java, and says so first
    (here on a ``PATH`` without it), as it does for an unknown engine:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as empty, mock.patch.dict(os.environ, {"PATH": empty}):
        ...     try:
        ...         aggregate_counts(cohort, by=["sex"], backend="spark")
        ...     except RegistryLabError as exc:
        ...         print(exc)
        backend 'spark': Java is not installed (no `java` on the PATH); use backend='duckdb' or install a Java 17 runtime
        >>> aggregate_counts(cohort, backend="polars")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: backend 'polars': choose one of duckdb, spark
    """
    by = _check_by(by)
    check_backend(backend)
    cohort = _resolve_cohort(cohort)
    years = default_years(cohort) if years is None else years
    folder = _check_release(cohort, policy)
    with _engine(backend) as engine:
        cases = _cases_with_areas(cohort, folder, years, sites, engine)
        cols = ", ".join(by)
        out = engine.frame(f"SELECT {cols + ', ' if by else ''}CAST(sum(n) AS BIGINT) AS count "
                           f"FROM ({cases}) cases {'GROUP BY ' + cols if by else ''}")
    out = _sorted(out, by)
    out["count"] = out["count"].fillna(0).astype("int64")
    return out


def aggregate_rates(
    cohort: str | Path,
    by: Sequence[str] | str | None = None,
    *,
    years: int | Sequence[int] | tuple[int, int] | None = None,
    sites: Sequence[str] | str | None = None,
    policy: str = DEFAULT_POLICY,
    standard: str = "esp2013",
    per: float = 100_000,
    level: float = 0.95,
    backend: str = "duckdb",
) -> pd.DataFrame:
    """Counts, crude rates and directly age-standardised rates by any grouping.

    Args:
        cohort, by, years, sites, policy, backend: as :func:`aggregate_counts` (``by`` must not
            contain ``age_band``: rates are standardised over it).
        standard: standard population in ``reference/standard_populations`` (``esp2013``).
        per: rates per this many person-years.
        level: confidence level.

    Returns:
        DataFrame ``[*by, count, population, crude_rate, crude_lower, crude_upper, dsr,
        dsr_lower, dsr_upper]``; ``population`` is person-years over the years chosen.

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> from registry_lib.release.run import run
        >>> cohort = tiny_cohort()
        >>> _ = run(cohort, "aggregate_publication", "example")
        >>> rates = aggregate_rates(cohort, years=2019)
        >>> len(rates), bool(rates["dsr_lower"].iloc[0] < rates["dsr"].iloc[0] < rates["dsr_upper"].iloc[0])
        (1, True)

    ``backend="spark"`` gives the same table through Spark SQL (see :func:`aggregate_counts`);
    the engine's name is checked first:
        >>> aggregate_rates(cohort, backend="Spark")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: backend 'Spark': choose one of duckdb, spark
    """
    from registry_lib.stats.rates import direct_standardised_rate, poisson_ci

    by = _check_by(by)
    if "age_band" in by:
        raise RegistryLabError("aggregate_rates: by must not contain age_band (rates are age-standardised)")
    check_backend(backend)
    cohort = _resolve_cohort(cohort)
    years = default_years(cohort) if years is None else years
    folder = _check_release(cohort, policy)
    pop_by = [b for b in by if b in POPULATION_DIMENSIONS]
    case_only = [b for b in by if b not in POPULATION_DIMENSIONS]
    population = _reference(cohort, "population")
    areas = _reference(cohort, "areas")
    weights = _reference(cohort, "standard_populations")
    strata = [*pop_by, "age_band"]
    keys = [*strata, *case_only]
    with _engine(backend) as engine:
        cases = _cases_with_areas(cohort, folder, years, sites, engine)
        pop_sql = (
            "SELECT CAST(p.year AS INTEGER) AS year, CAST(p.sex AS INTEGER) AS sex, "
            "CAST(p.age_band AS INTEGER) AS age_band, p.area_id, a.region, "
            "CAST(a.deprivation_quintile AS INTEGER) AS deprivation_quintile, p.population "
            f"FROM {engine.source(population)} p "
            f"JOIN {engine.source(areas)} a USING (area_id) WHERE {_years_clause(years)}"
        )
        s = ", ".join(strata)
        levels = (f"(SELECT DISTINCT {', '.join(case_only)} FROM cases) lv" if case_only
                  else "(SELECT 1 AS one) lv")
        k = ", ".join(keys)
        table = engine.frame(f"""
            WITH cases AS ({cases}),
            pop AS (SELECT {s}, CAST(sum(population) AS BIGINT) AS population FROM ({pop_sql}) p
                    GROUP BY {s} HAVING sum(population) > 0),
            grid AS (SELECT * FROM pop CROSS JOIN {levels}),
            c AS (SELECT {k}, CAST(sum(n) AS BIGINT) AS n FROM cases GROUP BY {k})
            SELECT {', '.join('g.' + x for x in keys)}, g.population,
                   CAST(coalesce(c.n, 0) AS BIGINT) AS count
            FROM grid g LEFT JOIN c USING ({k})
        """)
        total_cases = engine.frame(f"SELECT CAST(coalesce(sum(n), 0) AS BIGINT) AS n FROM ({cases}) cases")
        std = engine.frame(
            f"SELECT CAST(age_band AS INTEGER) AS age_band, weight FROM {engine.source(weights)} "
            f"WHERE standard = {engine.literal(standard)}"
        )
    total_cases = int(total_cases["n"].iloc[0])
    # One order for both engines: the DSR sums below add floats in row order.
    table = _sorted(table, keys)
    std = _sorted(std, ["age_band"])
    if std.empty:
        raise RegistryLabError(f"reference/standard_populations: no standard named {standard!r}")
    if table.empty:
        raise RegistryLabError(f"{cohort.name}: no population for years={years!r}")
    table = table.merge(std, on="age_band", how="left")
    if table["weight"].isna().any():
        band = int(table.loc[table["weight"].isna(), "age_band"].iloc[0])
        raise RegistryLabError(f"standard {standard}: no weight for age band {band}")
    excluded = int(total_cases) - int(table["count"].sum())
    if excluded:
        warnings.warn(
            f"{excluded} case(s) have no population stratum (unknown age or sex, or area outside "
            "the reference) and are left out of the rates", stacklevel=2)
    groups = [*pop_by, *case_only]
    ordered = list(by)
    out = direct_standardised_rate(table, "count", "population", "weight",
                                   by=groups or None, per=per, level=level)
    out = out.rename(columns={"lower": "dsr_lower", "upper": "dsr_upper"})
    lo, hi = poisson_ci(out["count"].to_numpy(dtype=float), level, "exact")
    out["crude_lower"] = lo / out["population"].to_numpy(dtype=float) * per
    out["crude_upper"] = hi / out["population"].to_numpy(dtype=float) * per
    out["count"] = out["count"].astype("int64")
    out["population"] = out["population"].round().astype("int64")
    cols = [*ordered, "count", "population", "crude_rate", "crude_lower", "crude_upper",
            "dsr", "dsr_lower", "dsr_upper"]
    out = out[cols].sort_values(ordered, kind="stable").reset_index(drop=True) if ordered else out[cols]
    out.attrs["excluded_cases"] = excluded
    out.attrs["standard"] = standard
    out.attrs["per"] = per
    return out
