"""Table schemas, enforced on every write.

A :class:`Table` lists its columns with an Arrow type, whether nulls are allowed and a one-line
description. :func:`enforce` turns a DataFrame into an Arrow table with exactly those columns in
that order, or raises :class:`~registry_lib.errors.SchemaError` naming the table, the column and
the first offending row. Every table registered with :func:`register` appears in the generated
data dictionary (``synthetic/README.md``).

Example:
    >>> import pandas as pd, pyarrow as pa
    >>> t = Table("demo", "a demo table", [Column("id", pa.int64(), False, "row id")])
    >>> enforce(pd.DataFrame({"id": [1, 2]}), t).num_rows
    2
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from registry_lib.errors import SchemaError


@dataclass(frozen=True)
class Column:
    """One column: name, Arrow type, nullability and meaning.

    Example:
        >>> Column("sex", pa.int8(), nullable=False, description="1 male, 2 female").type
        DataType(int8)
    """

    name: str
    type: pa.DataType
    nullable: bool = True
    description: str = ""


@dataclass(frozen=True)
class Table:
    """A named table: its stage (feeds, truth, reference, registry, release) and columns.

    Example:
        >>> t = Table("demo", "an example", [Column("id", pa.int64(), nullable=False)])
        >>> t.column_names
        ['id']
    """

    name: str
    description: str
    columns: list[Column]
    stage: str = ""
    key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


_REGISTRY: dict[tuple[str, str], Table] = {}


def register(table: Table) -> Table:
    """Add a table to the data dictionary and return it (use at module level).

    Example:
        >>> t = register(Table("demo", "an example", [Column("id", pa.int64())], stage="example"))
        >>> get_table("example", "demo") is t
        True
    """
    _REGISTRY[(table.stage, table.name)] = table
    return table


def registered_tables() -> list[Table]:
    """Every registered table, ordered by stage then name.

    Example:
        >>> _ = register(Table("demo", "an example", [Column("id", pa.int64())], stage="example"))
        >>> ("example", "demo") in {(t.stage, t.name) for t in registered_tables()}
        True
    """
    order = {"reference": 0, "truth": 1, "feeds": 2, "registry": 3, "release": 4}
    return sorted(_REGISTRY.values(), key=lambda t: (order.get(t.stage, 9), t.stage, t.name))


def get_table(stage: str, name: str) -> Table:
    """The registered schema of ``stage/name``.

    Example:
        >>> get_table("example", "nowhere")
        Traceback (most recent call last):
        ...
        registry_lib.errors.SchemaError: example/nowhere: no such table in the data dictionary
    """
    try:
        return _REGISTRY[(stage, name)]
    except KeyError:
        raise SchemaError(f"{stage}/{name}: no such table in the data dictionary") from None


def enforce(df: pd.DataFrame, table: Table) -> pa.Table:
    """Check ``df`` against ``table`` and return an Arrow table with the declared types.

    Raises SchemaError for a missing or unexpected column, a null in a non-nullable column, or
    a value that cannot be cast to the declared type.

    Example:
        >>> t = Table("demo", "an example", [Column("id", pa.int64(), nullable=False)])
        >>> enforce(pd.DataFrame({"id": [1, 2]}), t).schema.field("id").type
        DataType(int64)
        >>> enforce(pd.DataFrame({"key": [1, 2]}), t)
        Traceback (most recent call last):
        ...
        registry_lib.errors.SchemaError: demo: missing column(s) id
    """
    where = f"{table.stage}/{table.name}" if table.stage else table.name
    missing = [c for c in table.column_names if c not in df.columns]
    if missing:
        raise SchemaError(f"{where}: missing column(s) {', '.join(missing)}")
    extra = [c for c in df.columns if c not in table.column_names]
    if extra:
        raise SchemaError(f"{where}: column(s) not in the schema: {', '.join(map(str, extra))}")
    arrays = []
    for col in table.columns:
        series = df[col.name]
        if not col.nullable and series.isna().any():
            row = series.index[series.isna().to_numpy()][0]
            raise SchemaError(f"{where}: column {col.name} is null at row {row!r} but is required")
        try:
            if pa.types.is_date32(col.type) and pd.api.types.is_datetime64_any_dtype(series):
                arr = pa.array(series.dt.date, type=col.type, from_pandas=True)
            else:
                arr = pa.array(series, type=col.type, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise SchemaError(f"{where}: column {col.name} cannot be stored as {col.type} ({exc})") from None
        arrays.append(arr)
    return pa.Table.from_arrays(arrays, schema=table.arrow_schema)


def data_dictionary_markdown(tables: list[Table] | None = None) -> str:
    """The data dictionary as Markdown, one section per table.

    Example:
        >>> t = Table("demo", "an example", [Column("id", pa.int64(), description="the key")],
        ...           stage="example")
        >>> "the key" in data_dictionary_markdown([t])
        True
    """
    lines: list[str] = []
    current_stage = None
    for t in tables or registered_tables():
        if t.stage != current_stage:
            current_stage = t.stage
            lines += [f"## `{t.stage}/`", ""]
        lines += [f"### `{t.stage}/{t.name}.parquet`", "", t.description, ""]
        lines += ["| column | type | required | description |", "|---|---|---|---|"]
        for c in t.columns:
            lines.append(f"| `{c.name}` | {c.type} | {'no' if c.nullable else 'yes'} | {c.description} |")
        lines.append("")
    return "\n".join(lines)
