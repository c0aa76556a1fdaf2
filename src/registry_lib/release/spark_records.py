"""Record-level releases on Spark: the per-row work of a record-level policy on the executors.

:func:`spark_record_tables` is what ``build_record_release(..., backend="spark")`` (and
``registry-lab release --backend spark``) runs. The registry tables are staged as Parquet in a
new subfolder of the shared Spark folder (:func:`registry_lib.engines.spark_workdir`); the
executors read them, apply the national data opt-out, compute every released field with the
same Arrow code as the in-process build (:mod:`registry_lib.release.fields`),
hash pseudonyms and re-keyed ids with the library's own HMAC
(:func:`registry_lib.keys.keyed_hash_arrow`, over partitions with ``DataFrame.mapInArrow``) and
sort the rows by the keyed columns (hex of the digests, so the same order as the in-process
build; ties keep the registry's row order). The driver only reads the sorted result back, so
the release files are byte-identical to the in-process build's.

The project key travels to the executors inside the task closure (it is pickled with the
functions that hash): on a shared cluster, everyone who can read the executors' memory or the
task payloads can read the key. The staged registry tables (NHS numbers included) lie in the
shared Spark folder while the job runs; the call's subfolder is removed at the end.

Executors need the same ``registry_lib`` as the driver (``pip install .`` on every node): the
functions are shipped by reference.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from registry_lib.errors import RegistryLabError
from registry_lib.keys import keyed_hash_arrow, project_key
from registry_lib.linkage.tables import REGISTRY
from registry_lib.release.fields import (
    PSEUDONYM_PURPOSE,
    _arrow_table,
    _arrow_transform,
    _column,
    _int_ids,
    _opt_out_mask,
    _order,
    _pseudonym_source,
)
from registry_lib.release.policy import HASHED, FieldSpec, Policy

#: Column names the Spark job adds (never a released name: those are policy identifiers).
_ROW, _PSEUDONYM = "_row", "_pseudonym"
#: The one sentence of a RegistryLabError raised on an executor, in the Spark error's text.
_EXECUTOR_ERROR = re.compile(r"registry_lib\.errors\.RegistryLabError: (.+)")


def spark_record_tables(
    registry: Mapping[str, pd.DataFrame | pa.Table | Path],
    policy: Policy,
    schemas: Mapping[str, pa.Schema],
    *,
    areas: pd.DataFrame | pa.Table | None = None,
    key: bytes | None = None,
) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """The released Arrow tables of a record-level policy, built on Spark, and the opt-out removals.

    ``registry`` holds ``patient`` and every table the policy releases, as DataFrames, Arrow
    tables or registry Parquet files (a file is copied to the shared folder unread); ``schemas``
    the released Arrow schema of each table. The tables returned are the ones
    :func:`registry_lib.release.records.build_record_release` builds in process (same rows,
    order, types); it checks and wraps them. See the module docstring for
    where the key goes.

    Example (it needs Java: ``tests/test_release_spark.py`` runs it; without Java the Spark backend
    says so before starting anything):
        >>> import os, tempfile
        >>> from registry_lib.release.policy import load_policy
        >>> reg = {"patient": pa.table({"patient_id": [1], "nhs_number": ["9434765919"],
        ...                             "ndop_opted_out": [False]})}
        >>> saved = {k: os.environ.pop(k, None) for k in ("PATH", "JAVA_HOME")}
        >>> with tempfile.TemporaryDirectory() as empty:
        ...     os.environ["PATH"] = empty
        ...     try:
        ...         spark_record_tables(reg, load_policy("direct_care"), {}, key=bytes(range(32)))
        ...     except RegistryLabError as exc:
        ...         print(exc)
        ...     finally:
        ...         os.environ.update({k: v for k, v in saved.items() if v is not None})
        backend 'spark': Java is not installed (no `java` on the PATH); use backend='duckdb' or install a Java 17 runtime
    """
    if policy.output != "record_level":
        raise RegistryLabError(f"policy {policy.name}: not a record-level policy")
    from registry_lib.linkage.model import spark_call_folder, spark_session

    hashed = any(f.transform in HASHED for fs in policy.tables.values() for f in fs)
    key = (key if key is not None else project_key()) if hashed else None
    spark = spark_session()
    folder = spark_call_folder("record_release", "record-level releases")
    try:
        paths = {name: _stage(name, value, folder / "in") for name, value in registry.items()}
        frames = {name: _read(spark, path) for name, path in paths.items()}
        opted = _opted_out(frames["patient"], policy, folder / "opted_out")
        pseudonyms = None
        if any(f.transform == "pseudonym" for fs in policy.tables.values() for f in fs):
            pseudonyms = _pseudonyms(_kept(frames["patient"], opted), key, folder / "pseudonyms")
        out, removed = {}, {}
        for table, specs in policy.tables.items():
            rows = _released_rows(_kept(frames[table], opted), specs, policy, schemas[table], pseudonyms,
                                  areas, key)
            out[table] = _sorted(rows, _order(policy, specs), folder / table, schemas[table])
            removed[table] = pq.ParquetFile(paths[table]).metadata.num_rows - out[table].num_rows
        return out, removed
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # staged registry tables hold NHS numbers


def _stage(name: str, value: pd.DataFrame | pa.Table | Path, folder: Path) -> Path:
    """Registry table ``name`` as a Parquet file in ``folder`` (a registry file is copied as it is).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = _stage("cpes", pd.DataFrame({"response_id": pd.Series([], dtype=object)}), Path(d))
        ...     pq.read_schema(path).types
        [DataType(int64)]
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.parquet"
    if isinstance(value, Path | str):
        shutil.copyfile(value, path)
        return path
    table = value if isinstance(value, pa.Table) else pa.Table.from_pandas(value, preserve_index=False)
    # an empty pandas column has no type: give it the registry's (Spark cannot read a null column)
    known = {c.name: c.type for c in REGISTRY[name].columns} if name in REGISTRY else {}
    for i, fld in enumerate(table.schema):
        if pa.types.is_null(fld.type):
            table = table.set_column(i, fld.name, pa.nulls(table.num_rows, known.get(fld.name, pa.string())))
    # Spark 3 reads no nanosecond timestamps (pandas' dates): microseconds hold the same dates
    pq.write_table(table, path, coerce_timestamps="us", allow_truncated_timestamps=True)
    return path


def _read(spark: Any, path: Path) -> Any:
    """A staged table on Spark, with each row's position in the registry table (``_row``)."""
    from pyspark.sql import functions as F

    return spark.read.parquet(str(path)).withColumn(_ROW, F.col("_metadata.row_index"))


def _materialised(frame: Any, folder: Path, table: str) -> Any:
    """``frame`` computed once: written as Parquet to ``folder`` and read back from there."""
    with _executor_errors(table):
        frame.write.mode("overwrite").parquet(str(folder))
    return frame.sparkSession.read.parquet(str(folder))


def _opted_out(patient: Any, policy: Policy, folder: Path) -> Any | None:
    """The ids of the patients the national data opt-out removes (None if it does not apply)."""
    if not policy.national_data_opt_out:
        return None
    cols = [c for c in ("patient_id", "ndop_opted_out", "nhs_number") if c in patient.columns]
    opted = patient.select(*cols).mapInArrow(
        partial(_opted_out_batches, unchecked=policy.ndop_unchecked), "patient_id long")
    return _materialised(opted.distinct(), folder, "patient")


def _kept(frame: Any, opted: Any | None) -> Any:
    """``frame`` without the rows of the patients in ``opted`` (rows without a patient_id stay)."""
    return frame if opted is None else frame.join(opted, on="patient_id", how="left_anti")


def _opted_out_batches(batches: Iterator[pa.RecordBatch], unchecked: str) -> Iterator[pa.RecordBatch]:
    """(On executors) the ids of the patients the opt-out removes, by the in-process rule.

    Example:
        >>> b = pa.record_batch({"patient_id": [1, 2], "ndop_opted_out": [True, False]})
        >>> [x.column(0).to_pylist() for x in _opted_out_batches(iter([b]), "exclude")]
        [[1]]
    """
    for batch in batches:
        patient = pa.Table.from_batches([batch])
        ids = _int_ids(_column(patient, "patient_id")).filter(_opt_out_mask(patient, unchecked))
        yield pa.record_batch([ids], names=["patient_id"])


def _pseudonym_batches(batches: Iterator[pa.RecordBatch], key: bytes) -> Iterator[pa.RecordBatch]:
    """(On executors) each patient's pseudonym, hashed as in process (:mod:`registry_lib.keys`).

    Example:
        >>> b = pa.record_batch({"patient_id": [1, 2], "nhs_number": ["9434765919", None]})
        >>> out = next(_pseudonym_batches(iter([b]), key=bytes(range(32))))
        >>> out.column(0).to_pylist(), [len(h) for h in out.column(1).to_pylist()]
        ([1, 2], [64, 64])
    """
    for batch in batches:
        patient = pa.Table.from_batches([batch])
        hashed = keyed_hash_arrow(_pseudonym_source(patient), purpose=PSEUDONYM_PURPOSE, key=key)
        yield pa.record_batch([_int_ids(_column(patient, "patient_id")), hashed.combine_chunks()],
                              names=["patient_id", _PSEUDONYM])


def _pseudonyms(patients: Any, key: bytes | None, folder: Path) -> Any:
    """``patient_id`` and pseudonym of every patient kept, hashed once on the executors.

    A registry whose patient table repeats a ``patient_id`` is refused (a pseudonym is per patient).
    """
    hashed = patients.select("patient_id", "nhs_number").mapInArrow(
        partial(_pseudonym_batches, key=key), f"patient_id long, {_PSEUDONYM} string")
    out = _materialised(hashed, folder, "patient")
    with _executor_errors("patient"):
        twice = out.groupBy("patient_id").count().where("count > 1").limit(1).collect()
    if twice:
        raise RegistryLabError(f"registry/patient: patient_id {twice[0]['patient_id']} appears more "
                               "than once (broken registry)")
    return out


def _released_rows(frame: Any, specs: list[FieldSpec], policy: Policy, schema: pa.Schema, pseudonyms: Any,
                   areas: pd.DataFrame | pa.Table | None, key: bytes | None) -> Any:
    """The released columns of one table (and ``_row``), computed on the executors."""
    from pyspark.sql.pandas.types import from_arrow_schema

    sources = [*dict.fromkeys([f.source for f in specs if f.transform != "pseudonym"])]
    cols = [*dict.fromkeys([*sources, *(["patient_id"] if "patient_id" in frame.columns else []), _ROW])]
    frame = frame.select(*cols)
    if any(f.transform == "pseudonym" for f in specs):
        frame = frame.join(pseudonyms, on="patient_id", how="left")
    released = pa.schema([*[pa.field(f.name, f.type) for f in schema], pa.field(_ROW, pa.int64())])
    work = partial(_release_batches, specs=specs, schema=released, purpose=policy.purpose, key=key,
                   areas=None if areas is None else _arrow_table(areas))
    return frame.mapInArrow(work, from_arrow_schema(released))


def _release_batches(batches: Iterator[pa.RecordBatch], *, specs: list[FieldSpec], schema: pa.Schema,
                     purpose: str, key: bytes | None,
                     areas: pa.Table | None) -> Iterator[pa.RecordBatch]:
    """(On executors) every released field of a batch of registry rows, as the in-process build.

    Example:
        >>> from registry_lib.release.policy import load_policy
        >>> spec = [f for f in load_policy("direct_care").tables["tumour"] if f.name in ("tumour_id", "stage")]
        >>> schema = pa.schema([("tumour_id", pa.string()), ("stage", pa.string()), ("_row", pa.int64())])
        >>> b = pa.record_batch({"tumour_id": [7], "stage": ["2"], "_row": [0]})
        >>> out = next(_release_batches(iter([b]), specs=spec, schema=schema, purpose="direct_care",
        ...                             key=bytes(range(32)), areas=None))
        >>> len(out.column(0)[0].as_py()), out.column(1).to_pylist()
        (64, ['2'])
    """
    for batch in batches:
        src = pa.Table.from_batches([batch])
        arrays = []
        for f in specs:
            if f.transform == "pseudonym":
                arrays.append(_joined_pseudonym(src, f))
            elif f.transform == "rekey":
                ids = _int_ids(_column(src, f.source))
                arrays.append(keyed_hash_arrow(ids, purpose=f"{purpose}/{f.source}", key=key).combine_chunks())
            else:
                arrays.append(_arrow_transform(src, f, schema.field(f.name).type, areas))
        arrays.append(_column(src, _ROW))
        yield pa.RecordBatch.from_arrays([pc.cast(a, t) for a, t in zip(arrays, schema.types, strict=True)],
                                         schema=schema)


def _joined_pseudonym(src: pa.Table, f: FieldSpec) -> pa.Array:
    """The pseudonyms joined to ``src``'s rows; a row whose patient is not in the registry is refused."""
    hashed = _column(src, _PSEUDONYM)
    if hashed.null_count:
        bad = _column(src, "patient_id").filter(pc.is_null(hashed))[0].as_py()
        raise RegistryLabError(
            f"registry/{f.table}: patient_id {bad} is not in registry/patient (broken registry)")
    return hashed


def _sorted(rows: Any, order: list[str], folder: Path, schema: pa.Schema) -> pa.Table:
    """``rows`` sorted on Spark by ``order`` (text of hex digests, missing last; ties by registry
    row), exchanged as Parquet in ``folder``, read back by the driver in that order with ``schema``."""
    from pyspark.sql import functions as F

    with _executor_errors(folder.name):
        rows.write.mode("overwrite").parquet(str(folder / "rows"))  # hashed once (sorting samples)
        done = rows.sparkSession.read.parquet(str(folder / "rows"))
        keys = [*[F.col(c).asc_nulls_last() for c in order], F.col(_ROW).asc()]
        done.orderBy(*keys).drop(_ROW).write.mode("overwrite").parquet(str(folder / "sorted"))
    parts = sorted((folder / "sorted").glob("part-*.parquet"))   # part-00000, ...: the sort order
    if not parts:
        return schema.empty_table()
    table = pa.concat_tables([pq.read_table(p) for p in parts])
    return pa.Table.from_arrays([pc.cast(table.column(f.name), f.type) for f in schema],
                                schema=schema).combine_chunks()


@contextlib.contextmanager
def _executor_errors(table: str) -> Iterator[None]:
    """A RegistryLabError raised on an executor as its one sentence; any other Spark failure as one."""
    try:
        yield
    except RegistryLabError:
        raise
    except Exception as exc:  # noqa: BLE001 - py4j/Spark raise many kinds; one sentence for the user
        text = str(exc)
        found = _EXECUTOR_ERROR.findall(text)
        if found:
            raise RegistryLabError(found[-1].strip()) from None
        first = text.strip().splitlines()[0][:200] if text.strip() else type(exc).__name__
        raise RegistryLabError(f"backend 'spark': the release of table {table} failed: {first}") from exc
