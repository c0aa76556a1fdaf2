"""Building the tables of a release from the registry: opt-outs, pseudonyms, generalisation.

Pure functions on DataFrames (no files): :func:`build_record_release` applies a record-level
policy, :func:`build_aggregate_release` builds the count cubes of an aggregates policy.

Pseudonyms (issue 5 §3): ``pseudo_id`` is HMAC-SHA256 of the NHS number under the project key
(``registry_lib.keys``, purpose ``"pseudonym"``): the same key gives the same pseudonym in every
release of the project, another key gives unlinkable ones. A registered patient without a valid
NHS number gets the HMAC of ``"registry:<patient_id>"`` instead (it cannot collide with a
10-digit number). Registry ids (tumour, treatment, and patient in direct care) are re-keyed:
HMAC of the id under purpose ``"<policy purpose>/<column>"``, so ids differ between purposes.
Rows are sorted by their keyed columns, so row order says nothing about registration order.

Example:
    >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
    >>> from registry_lib.io import read_parquet
    >>> from registry_lib.linkage.tiny import tiny_cohort
    >>> from registry_lib.release.policy import load_policy
    >>> cohort = tiny_cohort()   # the tiny cohort, generated and linked (once per process)
    >>> reg = {t: read_parquet(cohort / "registry" / f"{t}.parquet")
    ...        for t in ("patient", "tumour", "treatment")}
    >>> areas = read_parquet(cohort / "reference" / "areas.parquet")
    >>> rel = build_record_release(reg, load_policy("research_pseudonymised"), areas=areas)
    >>> sorted(rel.tables), "nhs_number" in rel.tables["patient"].columns
    (['cpes', 'patient', 'screening', 'treatment', 'tumour'], False)
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from registry_lib.engines import check_backend, duckdb_connect
from registry_lib.errors import RegistryLabError
from registry_lib.keys import hex_digests, keyed_digests, keyed_hash, keyed_hash_arrow
from registry_lib.linkage.tables import REGISTRY
from registry_lib.release.fields import (
    PSEUDONYM_PURPOSE,
    _arrow_table,
    _arrow_transform,
    _column,
    _ids,
    _int_ids,
    _opt_out_mask,
    _order,
    _pseudonym_source,
    _rows_of,
    _take,
)
from registry_lib.release.policy import CUBE_DIMENSIONS, HASHED, TRANSFORMS, FieldSpec, Policy
from registry_lib.schema import Column, Table, register


class ArrowFrames(MutableMapping[str, pd.DataFrame]):
    """Release tables held as Arrow (exactly as they are written) and read as pandas DataFrames.

    A table is converted to pandas (as :func:`registry_lib.io.read_parquet` reads it back) only
    when asked for, once; :meth:`arrow` gives the Arrow table of one never replaced.

    Example:
        >>> frames = ArrowFrames({"t": pa.table({"a": [1, 2]})})
        >>> frames["t"]["a"].tolist(), frames.arrow("t").num_rows, frames.rows("t")
        ([1, 2], 2, 2)
        >>> frames["t"] = pd.DataFrame({"a": [3]})
        >>> frames.arrow("t") is None, frames.rows("t")
        (True, 1)
    """

    def __init__(self, tables: dict[str, pa.Table]):
        self._arrow: dict[str, pa.Table] = dict(tables)
        self._pandas: dict[str, pd.DataFrame] = {}

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._pandas:
            self._pandas[name] = self._arrow[name].to_pandas(date_as_object=False)
        return self._pandas[name]

    def __setitem__(self, name: str, df: pd.DataFrame) -> None:
        self._arrow.pop(name, None)
        self._pandas[name] = df

    def __delitem__(self, name: str) -> None:
        self._arrow.pop(name, None)
        self._pandas.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._arrow or name in self._pandas

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._arrow, *self._pandas]))

    def __len__(self) -> int:
        return len(set(self._arrow) | set(self._pandas))

    def arrow(self, name: str) -> pa.Table | None:
        """The Arrow table ``name`` as built (None once it was replaced by a DataFrame)."""
        return self._arrow.get(name)

    def rows(self, name: str) -> int:
        """Number of rows of table ``name`` (without converting it)."""
        table = self._arrow.get(name)
        return table.num_rows if table is not None else len(self._pandas[name])


@dataclass
class ReleaseTables:
    """The tables of one release with their schemas and what the opt-outs removed.

    Example:
        >>> rel = ReleaseTables(tables={"tumour": pd.DataFrame({"site_icd10": ["C18"]})}, schemas={},
        ...                     opt_out_removals={"patient": 0})
        >>> sorted(rel.tables), rel.notes
        (['tumour'], {})
    """

    tables: dict[str, pd.DataFrame]
    schemas: dict[str, Table]
    opt_out_removals: dict[str, int]
    notes: dict[str, Any] = field(default_factory=dict)


def patient_pseudonyms(patient: pd.DataFrame, key: bytes | None = None) -> pd.Series:
    """``pseudo_id`` of every registry patient, indexed by ``patient_id``.

    Example:
        >>> p = pd.DataFrame({"patient_id": [1, 2], "nhs_number": ["9434765919", None]})
        >>> s = patient_pseudonyms(p, key=bytes(32))
        >>> s.str.len().tolist(), s.index.tolist()
        ([64, 64], [1, 2])
    """
    nhs = patient["nhs_number"].astype("string")
    fallback = "registry:" + _ids(patient["patient_id"])
    source = nhs.where(nhs.notna() & (nhs.str.len() > 0), fallback)
    out = keyed_hash(source, purpose=PSEUDONYM_PURPOSE, key=key)
    out.index = patient["patient_id"].to_numpy()
    return out


def apply_opt_outs(
    registry: dict[str, pd.DataFrame], applies: bool, unchecked: str = "exclude"
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """Remove patients on the national data opt-out (and their tumours and treatments).

    Patients with no valid NHS number on any record could not be checked against the list:
    with ``unchecked="exclude"`` (the default) they are removed too.

    Returns the filtered tables and how many rows each lost (all zeros when NDOP does not apply).

    Example:
        >>> reg = {"patient": pd.DataFrame({"patient_id": [1, 2], "ndop_opted_out": [True, False]}),
        ...        "tumour": pd.DataFrame({"tumour_id": [7, 8, 9], "patient_id": [1, 1, 2]})}
        >>> kept, removed = apply_opt_outs(reg, True)
        >>> removed, kept["tumour"]["tumour_id"].tolist()
        ({'patient': 1, 'tumour': 2}, [9])
    """
    if not applies:
        return dict(registry), {name: 0 for name in registry}
    patient = registry["patient"]
    flag = patient["ndop_opted_out"]
    if flag.isna().any():
        bad = patient.loc[flag.isna(), "patient_id"].iloc[0]
        raise RegistryLabError(f"registry/patient: ndop_opted_out is missing for patient_id {bad}")
    drop_patient = flag.astype(bool)
    if unchecked == "exclude" and "nhs_number" in patient.columns:
        drop_patient = drop_patient | patient["nhs_number"].isna()
    opted = set(patient.loc[drop_patient.to_numpy(dtype=bool), "patient_id"].tolist())
    out, removed = {}, {}
    for name, df in registry.items():
        drop = df["patient_id"].isin(opted).to_numpy()
        out[name] = df.loc[~drop].reset_index(drop=True)
        removed[name] = int(drop.sum())
    return out, removed


def _schema(policy: Policy, table: str) -> Table:
    """The schema of one released table (named ``<policy>/<table>`` in the data dictionary)."""
    columns = {c.name: c for c in REGISTRY[table].columns}
    cols = []
    for f in policy.tables[table]:
        src = columns[f.source]
        what = src.description if f.transform == "copy" else (
            f"{TRANSFORMS[f.transform][0]} ({src.name}: {src.description})")
        if f.transform == "pseudonym":
            what = "pseudonym: " + TRANSFORMS["pseudonym"][0]
        # Every released column may be blank (local suppression), except the pseudonym.
        cols.append(Column(f.name, f.arrow_type(), f.transform != "pseudonym", what))
    return Table(f"{policy.name}/{table}", f"Release {policy.name} ({policy.purpose}): {table}.",
                 cols, stage="releases")


def _cube_schema(policy: Policy, cube: str) -> Table:
    cols = [Column(d, CUBE_DIMENSIONS[d][1], True, CUBE_DIMENSIONS[d][2]) for d in policy.aggregates[cube]]
    cols.append(Column("count", pa.int64(), False, "number of registered tumours (unprotected: "
                       "publish only through publish_table)"))
    return Table(f"{policy.name}/{cube}", f"Release {policy.name} ({policy.purpose}): tumour counts.",
                 cols, stage="releases")


def release_schemas(policy: Policy) -> dict[str, Table]:
    """The schemas of every file a policy releases, ``{table or cube name: Table}``.

    Example:
        >>> from registry_lib.release.policy import load_policy
        >>> sorted(release_schemas(load_policy("research_pseudonymised")))
        ['cpes', 'patient', 'screening', 'treatment', 'tumour']
    """
    if policy.output == "record_level":
        return {t: _schema(policy, t) for t in policy.tables}
    return {c: _cube_schema(policy, c) for c in policy.aggregates}


def register_release_tables(root: Path | None = None) -> list[Table]:
    """Add the tables of every policy in ``params/release/`` to the data dictionary.

    Example:
        >>> len(register_release_tables()) > 0
        True
    """
    from registry_lib.release.policy import list_policies, load_policy

    out = []
    for name in list_policies(root):
        try:
            policy = load_policy(name, root)
        except RegistryLabError:  # a broken policy fails loudly when released, not on import
            continue
        out += [register(t) for t in release_schemas(policy).values()]
    return out


#: Registry tables a registry built without their feed lacks (screening, CPES): a policy that
#: lists them releases them empty.
OPTIONAL_TABLES = ("screening", "cpes")


def _empty(table: str) -> pd.DataFrame:
    """An empty registry table with its schema's columns and types."""
    return pd.DataFrame({c.name: pd.Series(dtype=c.type.to_pandas_dtype()) for c in REGISTRY[table].columns})


def apply_opt_outs_arrow(
    registry: dict[str, pa.Table], applies: bool, unchecked: str = "exclude"
) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """:func:`apply_opt_outs` on Arrow tables (the same rows kept, in the same order).

    Example:
        >>> reg = {"patient": pa.table({"patient_id": [1, 2], "ndop_opted_out": [True, False]}),
        ...        "tumour": pa.table({"tumour_id": [7, 8, 9], "patient_id": [1, 1, 2]})}
        >>> kept, removed = apply_opt_outs_arrow(reg, True)
        >>> removed, kept["tumour"]["tumour_id"].to_pylist()
        ({'patient': 1, 'tumour': 2}, [9])
    """
    if not applies:
        return dict(registry), {name: 0 for name in registry}
    patient = registry["patient"]
    opted = pc.unique(_column(patient, "patient_id").filter(_opt_out_mask(patient, unchecked)))
    out, removed = {}, {}
    for name, table in registry.items():
        drop = pc.fill_null(pc.is_in(_column(table, "patient_id"), value_set=opted), False)
        out[name] = table.filter(pc.invert(drop))
        removed[name] = int(pc.sum(drop).as_py() or 0)
    return out, removed


def _hash_ranks(digests: np.ndarray) -> np.ndarray:
    """Rank of each 32-byte digest (rows of ``uint8``) in byte order, which is the order of its hex.

    Example:
        >>> d = np.array([[2] + [0] * 31, [1] + [9] * 31], dtype=np.uint8)
        >>> _hash_ranks(d).tolist()
        [1, 0]
    """
    words = np.ascontiguousarray(digests).view(">u8").reshape(len(digests), 4)
    order = np.argsort(words[:, 0], kind="stable")
    first = words[order, 0]
    if len(first) > 1 and (first[1:] == first[:-1]).any():  # a shared 64-bit prefix: use all 256 bits
        order = np.lexsort((words[:, 3], words[:, 2], words[:, 1], words[:, 0]))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


@dataclass
class _Keyed:
    """Keyed hashes of distinct values: hex text and rank in sort order, looked up by position."""

    hex: pa.Array
    ranks: np.ndarray

    @classmethod
    def of(cls, values: pa.Array, purpose: str, key: bytes | None) -> tuple[_Keyed, np.ndarray]:
        """Hash the distinct non-missing ``values``; return them and each value's position (-1: missing)."""
        encoded = pc.dictionary_encode(values)
        digests = keyed_digests(pc.cast(encoded.dictionary, pa.string()), purpose=purpose, key=key)
        raw = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 32)
        rows = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return cls(hex_digests(digests).combine_chunks(), _hash_ranks(raw)), rows

    def sort_key(self, rows: np.ndarray) -> np.ndarray:
        """The sort key of the hashes at ``rows`` (-1: missing, sorted last)."""
        if not len(self.ranks):
            return np.zeros(len(rows), dtype=np.int64)
        return np.where(rows < 0, len(self.ranks), self.ranks[np.maximum(rows, 0)])

    def column(self, rows: np.ndarray) -> pa.Array:
        """The hashes at ``rows`` (-1: missing)."""
        return _take(self.hex, rows)


def _released(c: Column, columns: dict[str, pa.Array], keyed: dict[str, tuple[_Keyed, np.ndarray]],
              index: np.ndarray) -> pa.Array:
    """Released column ``c`` in the released row order (``index``), taken once, with its type."""
    if c.name in keyed:
        hashed, rows = keyed[c.name]
        return pc.cast(hashed.column(rows[index]), c.type)
    return pc.cast(columns[c.name], c.type).take(index)


def build_record_release(
    registry: dict[str, pd.DataFrame | pa.Table | Path],
    policy: Policy,
    *,
    areas: pd.DataFrame | pa.Table | None = None,
    key: bytes | None = None,
    backend: str = "duckdb",
) -> ReleaseTables:
    """Apply a record-level policy to registry tables (``patient``, ``tumour``, ``treatment``).

    Opt-outs first (if the policy applies NDOP), then each released field is derived by its
    transform; rows are sorted by the keyed columns. Raises if a table the policy releases, or a
    column it reads, is missing from ``registry`` (DataFrames, Arrow tables or Parquet files).

    ``backend="duckdb"`` (the default) builds the tables in this process with Arrow: each
    distinct value is hashed once, and rows are sorted by the hashes' ranks. ``backend="spark"``
    does the per-row work on the Spark executors (:mod:`registry_lib.release.spark_records`:
    reading, opt-outs, transforms, keyed hashes, sort) and gives identical tables; the project
    key then travels to the executors inside the task closure.

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> from registry_lib.io import read_parquet
        >>> from registry_lib.release.policy import load_policy
        >>> cohort = tiny_cohort()
        >>> reg = {t: read_parquet(cohort / "registry" / f"{t}.parquet") for t in ("patient", "tumour", "treatment")}
        >>> rel = build_record_release(reg, load_policy("direct_care"))
        >>> sorted(rel.tables)
        ['patient', 'treatment', 'tumour']
    """
    if policy.output != "record_level":
        raise RegistryLabError(f"policy {policy.name}: not a record-level policy")
    check_backend(backend)
    registry = {**{t: _empty(t) for t in OPTIONAL_TABLES if t in policy.tables}, **registry}
    missing = [t for t in (*policy.tables, "patient") if t not in registry]
    if missing:
        raise RegistryLabError(f"policy {policy.name}: registry table(s) {missing} not given")
    _check_columns({t: registry[t] for t in {*policy.tables, "patient"}}, policy)
    if backend == "spark":
        from registry_lib.release.spark_records import spark_record_tables

        schemas = {table: _schema(policy, table) for table in policy.tables}
        built, removed = spark_record_tables({t: registry[t] for t in {*policy.tables, "patient"}}, policy,
                                             {t: s.arrow_schema for t, s in schemas.items()}, areas=areas, key=key)
        for table, specs in policy.tables.items():
            _check_released(policy, table, specs, schemas[table], built[table])
        return ReleaseTables(ArrowFrames(built), schemas, {t: removed[t] for t in policy.tables})
    needed = {t: _arrow_table(registry[t]) for t in policy.tables}
    needed.setdefault("patient", _arrow_table(registry["patient"]))
    kept, removed = apply_opt_outs_arrow(needed, policy.national_data_opt_out, policy.ndop_unchecked)
    specs_of = policy.tables
    # Pseudonyms of the patients kept (a hash depends only on its value: the same as hashing all).
    pseudonyms = patient_rows = None
    if any(f.transform == "pseudonym" for fs in specs_of.values() for f in fs):
        patient_ids = _int_ids(_column(kept["patient"], "patient_id"))
        pseudonyms, patient_rows = _Keyed.of(_pseudonym_source(kept["patient"]), PSEUDONYM_PURPOSE, key)
    # One keyed hash per distinct id, shared by every table that re-keys the same registry column
    # (so treatment.tumour_id matches tumour.tumour_id).
    rekeyed: dict[tuple[str, str], tuple[_Keyed, np.ndarray]] = {}
    sources = sorted({f.source for fs in specs_of.values() for f in fs if f.transform == "rekey"})
    for source in sources:
        users = [t for t, fs in specs_of.items() for f in fs if f.transform == "rekey" and f.source == source]
        users = list(dict.fromkeys(users))
        parts = [_int_ids(_column(kept[t], source)) for t in users]
        hashed, rows = _Keyed.of(pa.concat_arrays(parts) if parts else pa.array([], pa.int64()),
                                 f"{policy.purpose}/{source}", key)
        start = 0
        for t, part in zip(users, parts, strict=True):
            rekeyed[(t, source)] = (hashed, rows[start:start + len(part)])
            start += len(part)
    arrow, schemas = {}, {}
    for table, specs in specs_of.items():
        src = kept[table]
        schema = _schema(policy, table)
        types = {c.name: c.type for c in schema.columns}
        columns: dict[str, pa.Array] = {}
        keyed_rows: dict[str, tuple[_Keyed, np.ndarray]] = {}
        for f in specs:
            if f.transform == "pseudonym":
                rows = _rows_of(_int_ids(_column(src, "patient_id")), patient_ids)
                if (rows < 0).any():
                    bad = _column(src, "patient_id")[int(np.argmax(rows < 0))].as_py()
                    raise RegistryLabError(
                        f"registry/{f.table}: patient_id {bad} is not in registry/patient (broken registry)")
                keyed_rows[f.name] = (pseudonyms, patient_rows[rows])
            elif f.transform == "rekey":
                keyed_rows[f.name] = rekeyed[(table, f.source)]
            else:
                columns[f.name] = _arrow_transform(src, f, types[f.name], areas)
        order = _order(policy, specs)
        index = (np.lexsort([keyed_rows[c][0].sort_key(keyed_rows[c][1]) for c in reversed(order)])
                 if src.num_rows else np.zeros(0, np.int64))
        with ThreadPoolExecutor(max_workers=2) as pool:   # Arrow's take runs without the GIL
            arrays = pool.map(partial(_released, columns=columns, keyed=keyed_rows, index=index), schema.columns)
            out = pa.Table.from_arrays(list(arrays), schema=schema.arrow_schema)
        _check_released(policy, table, specs, schema, out)
        arrow[table] = out.combine_chunks()
        schemas[table] = schema
    return ReleaseTables(ArrowFrames(arrow), schemas, {t: removed[t] for t in policy.tables})


def _check_released(policy: Policy, table: str, specs: list[FieldSpec], schema: Table, out: pa.Table) -> None:
    """Refuse a released table with a forbidden column or a missing value where none may be."""
    hashed = [f.name for f in specs if f.transform in HASHED]
    leaked = [c for c in out.column_names if c in policy.forbidden and c not in hashed]
    if leaked:  # defence in depth: validation already refuses such a policy
        raise RegistryLabError(f"policy {policy.name}: table {table} would release {leaked}")
    for c in schema.columns:
        if not c.nullable and out.column(c.name).null_count:
            raise RegistryLabError(f"{schema.stage}/{schema.name}: column {c.name} has missing values")


def _column_names(table: pd.DataFrame | pa.Table | Path) -> list[str]:
    """The columns of a registry table given as a DataFrame, an Arrow table or a Parquet file."""
    if isinstance(table, pd.DataFrame):
        return [str(c) for c in table.columns]
    if isinstance(table, pa.Table):
        return table.column_names
    import pyarrow.parquet as pq

    return pq.read_schema(table).names


def _check_columns(registry: dict[str, pd.DataFrame | pa.Table | Path], policy: Policy) -> None:
    """Refuse registry tables lacking a column the policy reads, naming the table and column.

    Example:
        >>> from registry_lib.release.policy import load_policy
        >>> _check_columns({"patient": pa.table({"patient_id": [1]})}, load_policy("direct_care"))
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: registry/patient: column nhs_number is missing (policy direct_care releases it)
    """
    pseudonym = any(f.transform == "pseudonym" for fs in policy.tables.values() for f in fs)
    for name, table in registry.items():
        have = set(_column_names(table))
        specs = policy.tables.get(name, [])
        needed = {f.source: "releases it" for f in specs if f.transform != "pseudonym"}
        if policy.national_data_opt_out or any(f.transform == "pseudonym" for f in specs):
            needed.setdefault("patient_id", "links it to registry/patient")
        if name == "patient" and policy.national_data_opt_out:
            needed.setdefault("ndop_opted_out", "applies the national data opt-out")
        if name == "patient" and pseudonym:
            needed.setdefault("nhs_number", "makes pseudonyms of it")
        for column, why in needed.items():
            if column not in have:
                raise RegistryLabError(f"registry/{name}: column {column} is missing (policy {policy.name} {why})")


def build_aggregate_release(registry: dict[str, pd.DataFrame | pa.Table], policy: Policy,
                            backend: str = "duckdb") -> ReleaseTables:
    """Count cubes of an aggregates policy, through DuckDB (or Spark SQL) over the registry tables.

    ``backend="spark"`` runs the same SQL on the Spark session of
    :func:`registry_lib.linkage.model.spark_session` (configured the standard Spark way) and gives
    identical cubes.

    Each cube counts tumours (column ``count``) by its ``group_by`` dimensions; missing values
    form their own group (nothing is dropped). Opt-outs are applied only if the policy says so.

    Example:
        >>> from registry_lib.io import read_parquet
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> from registry_lib.release.policy import load_policy
        >>> cohort = tiny_cohort()   # the tiny cohort, generated and linked (once per process)
        >>> reg = {t: read_parquet(cohort / "registry" / f"{t}.parquet")
        ...        for t in ("patient", "tumour")}
        >>> rel = build_aggregate_release(reg, load_policy("aggregate_publication"))
        >>> int(rel.tables["incidence"]["count"].sum()) == len(reg["tumour"])
        True
    """
    if policy.output != "aggregates":
        raise RegistryLabError(f"policy {policy.name}: not an aggregates policy")
    check_backend(backend)
    base = {"patient": _arrow_table(registry["patient"]), "tumour": _arrow_table(registry["tumour"])}
    kept, removed = apply_opt_outs_arrow(base, policy.national_data_opt_out, policy.ndop_unchecked)
    sqls = {cube: _cube_sql(dims) for cube, dims in policy.aggregates.items()}
    schemas = {cube: _cube_schema(policy, cube) for cube in policy.aggregates}
    if backend == "spark":
        tables = _spark_cubes({n: t.to_pandas(date_as_object=False) for n, t in kept.items()}, sqls, schemas)
    else:
        con = duckdb_connect()
        try:
            con.register("t", kept["tumour"])
            con.register("p", kept["patient"].select(["patient_id", "sex"]))
            tables = {cube: con.execute(sql).df() for cube, sql in sqls.items()}
        finally:
            con.close()
    for cube, df in tables.items():
        if int(df["count"].sum()) != kept["tumour"].num_rows:
            raise RegistryLabError(
                f"policy {policy.name}: cube {cube} counts {int(df['count'].sum())} tumours but the "
                f"registry has {kept['tumour'].num_rows} (a join lost records)"
            )
    return ReleaseTables(tables, schemas, {"patient": removed["patient"], "tumour": removed["tumour"]})


def _cube_sql(dims: list[str]) -> str:
    """One cube's SQL, valid on DuckDB and Spark SQL alike (tables ``t`` and ``p``)."""
    select = ", ".join(f"{CUBE_DIMENSIONS[d][0]} AS {d}" for d in dims)
    group = ", ".join(CUBE_DIMENSIONS[d][0] for d in dims)
    order = ", ".join(f"{d} NULLS LAST" for d in dims)
    return (f"SELECT {select}, count(*) AS count FROM t LEFT JOIN p ON t.patient_id = p.patient_id "
            f"GROUP BY {group} ORDER BY {order}")


def _spark_cubes(kept: dict[str, pd.DataFrame], sqls: dict[str, str],
                 schemas: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """The cubes computed by Spark SQL; inputs and results exchanged as Parquet on the shared folder."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from registry_lib.linkage.model import spark_call_folder, spark_session

    spark = spark_session()
    folder = spark_call_folder("release", "aggregate release cubes")
    used = ("diagnosis_date", "age_at_diagnosis", "site_icd10", "stage", "area_id", "route_to_diagnosis")
    inputs = {"t": kept["tumour"][["patient_id", *[c for c in used if c in kept["tumour"].columns]]],
              "p": kept["patient"][["patient_id", "sex"]]}
    for name, df in inputs.items():
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), folder / f"{name}.parquet")
        spark.read.parquet(str(folder / f"{name}.parquet")).createOrReplaceTempView(name)
    out = {}
    for cube, sql in sqls.items():
        target = folder / f"cube_{cube}"
        spark.sql(sql).coalesce(1).write.mode("overwrite").parquet(str(target))
        table = ds.dataset(str(target), format="parquet").to_table()
        df = table.to_pandas()
        dims = [c for c in df.columns if c != "count"]
        out[cube] = df.sort_values(dims, na_position="last", kind="stable", ignore_index=True)
    return out


def check_no_registration_optouts(
    patient: pd.DataFrame | pa.Table, optout_hashes: pd.DataFrame | None, key: bytes | None = None
) -> int:
    """How many registry patients match a kept registration opt-out hash (should be 0).

    Linkage removes registration opt-outs and keeps a keyed hash of their NHS numbers
    (``registry/optout_hashes.parquet``, column ``nhs_number_hash``, purpose
    ``"registration-optout"``); this re-checks that none of them is in the registry released.

    Example:
        >>> from registry_lib.keys import hex_digests, keyed_digests, keyed_hash, keyed_hash_arrow
        >>> p = pd.DataFrame({"nhs_number": ["9434765919", "9000000018"]})
        >>> h = keyed_hash(pd.Series(["9434765919"]), purpose="registration-optout", key=bytes(32))
        >>> check_no_registration_optouts(p, pd.DataFrame({"nhs_number_hash": h}), key=bytes(32))
        1
    """
    if optout_hashes is None or optout_hashes.empty or "nhs_number_hash" not in optout_hashes:
        return 0
    kept = pa.array(optout_hashes["nhs_number_hash"].dropna().astype(str).unique(), pa.string())
    nhs = _column(_arrow_table(patient), "nhs_number")
    hashed = keyed_hash_arrow(pc.cast(nhs, pa.string()), purpose="registration-optout", key=key)
    return int(pc.sum(pc.is_in(hashed, value_set=kept)).as_py() or 0)


# The data dictionary (synthetic/README.md) imports this module to list the release tables: the
# policies are read from the checkout this package lives in, when there is one.
_CHECKOUT = Path(__file__).resolve().parents[3]
if (_CHECKOUT / "params" / "release").is_dir():
    register_release_tables(_CHECKOUT)
