"""Released fields from registry rows, in Arrow: what the in-process build and Spark share.

The functions here work on one Arrow table of registry rows at a time, so that
:func:`registry_lib.release.records.build_record_release` applies them to whole tables and
:mod:`registry_lib.release.spark_records` to each batch of a partition on the Spark executors,
with the same results: opt-out rule, pseudonym source, copies and generalisations.

Example:
    >>> _pseudonym_source(pa.table({"patient_id": [1, 2], "nhs_number": ["9434765919", None]})).to_pylist()
    ['9434765919', 'registry:2']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from registry_lib.errors import RegistryLabError
from registry_lib.release.policy import HASHED, FieldSpec, Policy

#: The purpose (key derivation) of the patient pseudonyms.
PSEUDONYM_PURPOSE = "pseudonym"


def _ids(series: pd.Series) -> pd.Series:
    """Registry ids as strings ('123'), whatever the pandas dtype they were read with."""
    return series.astype("Int64").astype("string")


def _transform(
    df: pd.DataFrame, f: FieldSpec, pseudonyms: pd.Series | None,
    rekeyed: dict[str, pd.Series], areas: pd.DataFrame | None,
) -> pd.Series:
    s = df[f.source]
    if f.transform == "copy":
        return s
    if f.transform == "pseudonym":
        out = df["patient_id"].map(pseudonyms)
        if out.isna().any():
            bad = df.loc[out.isna(), "patient_id"].iloc[0]
            raise RegistryLabError(
                f"registry/{f.table}: patient_id {bad} is not in registry/patient (broken registry)"
            )
        return out.astype("string")
    if f.transform == "rekey":
        return _ids(s).map(rekeyed[f.source]).astype("string")
    if f.transform == "year":
        return pd.to_datetime(s).dt.year.astype("Int16")
    if f.transform == "month":
        return pd.to_datetime(s).dt.strftime("%Y-%m").astype("string")
    if f.transform == "age_band":
        return (s.astype("Int64") // 5 * 5).clip(upper=90).astype("Int8")
    if f.transform == "district":
        return s.astype("string").str.strip().str.upper().str.split(" ").str[0]
    if f.transform == "region":
        if areas is None:
            raise RegistryLabError(f"field {f.table}.{f.name}: reference/areas is needed for regions")
        lookup = areas.set_index("area_id")["region"]
        out = s.map(lookup)
        unknown = s.notna() & out.isna()
        if unknown.any():
            raise RegistryLabError(
                f"registry/{f.table}: area_id {s[unknown].iloc[0]!r} is not in reference/areas"
            )
        return out.astype("string")
    raise RegistryLabError(f"unknown transform {f.transform!r}")  # policy validation prevents it


def _arrow_table(df: pd.DataFrame | pa.Table | Path) -> pa.Table:
    """A registry table as Arrow (a DataFrame converted as :func:`registry_lib.schema.enforce` would,
    a Parquet file read)."""
    if isinstance(df, pa.Table):
        return df
    if isinstance(df, Path):
        import pyarrow.parquet as pq

        return pq.read_table(df)
    return pa.Table.from_pandas(df, preserve_index=False)


def _column(table: pa.Table, name: str) -> pa.Array:
    """One column of ``table`` as a single Arrow array."""
    col = table.column(name)
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _int_ids(values: pa.Array) -> pa.Array:
    """Registry ids as int64 (a float column with missing values from pandas included)."""
    return values if pa.types.is_int64(values.type) else pc.cast(values, pa.int64())


def _opt_out_mask(patient: pa.Table, unchecked: str) -> pa.Array:
    """Which patients the national data opt-out removes (and, if excluded, the unchecked ones)."""
    flag = _column(patient, "ndop_opted_out")
    if flag.null_count:
        bad = _column(patient, "patient_id").filter(pc.is_null(flag))[0].as_py()
        raise RegistryLabError(f"registry/patient: ndop_opted_out is missing for patient_id {bad}")
    drop = pc.cast(flag, pa.bool_())
    if unchecked == "exclude" and "nhs_number" in patient.column_names:
        drop = pc.or_(drop, pc.is_null(_column(patient, "nhs_number"), nan_is_null=True))
    return drop


def _pseudonym_source(patient: pa.Table) -> pa.Array:
    """What each patient's pseudonym hashes: the NHS number, else ``registry:<patient_id>``."""
    ids = pc.cast(_int_ids(_column(patient, "patient_id")), pa.string())
    fallback = pc.binary_join_element_wise(pa.scalar("registry:"), ids, "")
    nhs = pc.cast(_column(patient, "nhs_number"), pa.string())
    usable = pc.fill_null(pc.greater(pc.utf8_length(nhs), 0), False)
    return pc.if_else(usable, nhs, fallback)


def _rows_of(keys: pa.Array, lookup: pa.Array) -> np.ndarray:
    """Position in ``lookup`` of each of ``keys`` (-1 when absent or missing).

    Example:
        >>> _rows_of(pa.array(["b", None, "z"]), pa.array(["a", "b"])).tolist()
        [1, -1, -1]
        >>> _rows_of(pa.array([None, None]), pa.array(["a"])).tolist()   # an all-missing column
        [-1, -1]
    """
    if pa.types.is_null(lookup.type) or pa.types.is_null(keys.type):
        return np.full(len(keys), -1, dtype=np.int64)
    if keys.type != lookup.type:
        keys = pc.cast(keys, lookup.type)
    return pc.fill_null(pc.index_in(keys, value_set=lookup), -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _take(values: pa.Array, rows: np.ndarray) -> pa.Array:
    """``values`` at ``rows``; -1 gives a missing value."""
    return values.take(pa.array(rows, mask=rows < 0))


def _arrow_transform(src: pa.Table, f: FieldSpec, target: pa.DataType,
                     areas: pd.DataFrame | pa.Table | None) -> pa.Array:
    """A copied or generalised column (every transform but the keyed ones), with its released type."""
    if f.transform == "copy":
        col = _column(src, f.source)
        if pa.types.is_date32(target) and pa.types.is_timestamp(col.type):
            return pc.cast(col, target, safe=False)
        return pc.cast(col, target)
    if f.transform == "region":
        if areas is None:
            raise RegistryLabError(f"field {f.table}.{f.name}: reference/areas is needed for regions")
        ref = _arrow_table(areas)
        area = _column(src, f.source)
        out = _take(_column(ref, "region"), _rows_of(area, _column(ref, "area_id")))
        unknown = pc.and_(pc.is_valid(area), pc.is_null(out))
        if pc.any(unknown).as_py():
            raise RegistryLabError(
                f"registry/{f.table}: area_id {area.filter(unknown)[0].as_py()!r} is not in reference/areas")
        return pc.cast(out, target)
    # the rarer generalisations: as pandas computes them, then stored as enforce() stores them
    series = _transform(src.select([f.source]).to_pandas(date_as_object=False), f, None, {}, None)
    return pa.array(series, type=target, from_pandas=True)


def _order(policy: Policy, specs: list[FieldSpec]) -> list[str]:
    """The sort columns of a released table: the patient key, then the other keyed columns.

    Example:
        >>> from registry_lib.release.policy import load_policy
        >>> p = load_policy("research_pseudonymised")
        >>> _order(p, p.tables["treatment"])
        ['pseudo_id', 'treatment_id', 'tumour_id']
    """
    keyed = [f.name for f in specs if f.transform in HASHED]
    return [policy.patient_key, *[k for k in keyed if k != policy.patient_key]]
