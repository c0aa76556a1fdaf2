"""Files: deterministic Parquet with schemas, atomic folders, content hashes.

Example:
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with atomic_dir(pathlib.Path(d) / "out") as tmp:
    ...         _ = (tmp / "a.txt").write_text("x")
    ...     sorted(p.name for p in (pathlib.Path(d) / "out").iterdir())
    ['a.txt']
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from registry_lib.schema import Table, enforce

PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "use_dictionary": True}


def write_parquet(df: pd.DataFrame | pa.Table, path: Path, table: Table | None = None) -> Path:
    """Write ``df`` as zstd Parquet, enforcing ``table``'s schema when given.

    The file is byte-identical for identical input (no timestamps, no pandas index).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = write_parquet(pd.DataFrame({"a": [1, 2]}), Path(d) / "t.parquet")
        ...     read_parquet(p)["a"].tolist()
        [1, 2]
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if table is not None:
        arrow = enforce(df if isinstance(df, pd.DataFrame) else df.to_pandas(), table)
    elif isinstance(df, pd.DataFrame):
        arrow = pa.Table.from_pandas(df, preserve_index=False)
    else:
        arrow = df
    arrow = arrow.replace_schema_metadata(None)
    pq.write_table(arrow, path, **PARQUET_OPTIONS)
    return path


class ParquetAppender:
    """Parquet files under ``root``, each written a part (one row group or more) at a time with
    its table's schema enforced; :meth:`close` finishes them all.

    Example:
        >>> import tempfile
        >>> from registry_lib.schema import Column, Table
        >>> schema = Table("t", "a demo table", [Column("a", pa.int64(), nullable=False)])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     out = ParquetAppender(Path(d))
        ...     out.append("t.parquet", pd.DataFrame({"a": [1, 2]}), schema)
        ...     out.append("t.parquet", pd.DataFrame({"a": [3]}), schema)
        ...     out.close()
        ...     read_parquet(Path(d) / "t.parquet")["a"].tolist()
        [1, 2, 3]
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.writers: dict[str, pq.ParquetWriter] = {}

    def append(self, rel: str, df: pd.DataFrame, schema: Table) -> None:
        """Append ``df`` to ``root/rel`` (created with ``schema`` on the first part, even if empty)."""
        arrow = enforce(df, schema).replace_schema_metadata(None)
        writer = self.writers.get(rel)
        if writer is None:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = self.writers[rel] = pq.ParquetWriter(path, arrow.schema, **PARQUET_OPTIONS)
        if arrow.num_rows:
            writer.write_table(arrow.cast(writer.schema))

    def close(self) -> None:
        """Finish every file."""
        for writer in self.writers.values():
            writer.close()


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file into pandas (dates as ``datetime64``); only ``columns`` if given.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = write_parquet(pd.DataFrame({"d": pd.to_datetime(["2020-01-01"])}), Path(d) / "t.parquet")
        ...     str(read_parquet(p)["d"].dtype).startswith("datetime64")
        True
    """
    df = pq.read_table(path, columns=columns).to_pandas(date_as_object=False)
    return df


def write_json(obj: Any, path: Path) -> Path:
    """Write JSON with sorted keys and a trailing newline (stable bytes).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     write_json({"b": 1, "a": 2}, Path(d) / "x.json").read_text().split()
        ['{', '"a":', '2,', '"b":', '1', '}']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename.

    On an exception the temporary folder is removed and ``final`` is left as it was, so an
    interrupted run never leaves a half-written folder that looks complete.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with atomic_dir(Path(d) / "out") as tmp:
        ...         _ = (tmp / "a.txt").write_text("x")
        ...     sorted(p.name for p in (Path(d) / "out").iterdir())
        ['a.txt']
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)


@contextlib.contextmanager
def atomic_parts(final: Path, parts: tuple[str, ...]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success only its ``parts`` replace those of ``final``.

    Everything else in ``final`` is kept (a cohort's ``registry/`` and ``releases/``, with the
    append-only audit log, survive a new synth). The last part is swapped last and removed first,
    so a run killed while swapping leaves no last part (e.g. ``cohort.json``): it looks unfinished.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     out = pathlib.Path(d) / "c"; (out / "keep").mkdir(parents=True)
        ...     with atomic_parts(out, ("a.txt",)) as tmp:
        ...         _ = (tmp / "a.txt").write_text("x")
        ...     sorted(p.name for p in out.iterdir())
        ['a.txt', 'keep']
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not final.exists():  # nothing to keep: the whole folder in one rename
        tmp.rename(final)
        return
    olds = []
    last = final / parts[-1]
    if last.exists():
        old = final / f".{parts[-1]}.old-{os.getpid()}"
        last.rename(old)
        olds.append(old)
    for part in parts:
        target = final / part
        if target.exists() or target.is_symlink():
            old = final / f".{part}.old-{os.getpid()}"
            target.rename(old)
            olds.append(old)
        if (tmp / part).exists():
            (tmp / part).rename(target)
    for old in olds:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    shutil.rmtree(tmp, ignore_errors=True)


_LEFTOVER = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(folder: Path) -> list[Path]:
    """Remove ``.NAME.tmp-PID`` / ``.NAME.old-PID`` entries of processes no longer running,
    directly under ``folder``; return what was removed (what a killed run left behind).

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     (pathlib.Path(d) / ".x.tmp-999999999").mkdir()
        ...     [p.name for p in remove_leftovers(pathlib.Path(d))]
        ['.x.tmp-999999999']
    """
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        m = _LEFTOVER.match(entry.name)
        if m and not _alive(int(m.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "a.txt").write_text("abc")
        ...     sha256_file(Path(d) / "a.txt")[:12]
        'ba7816bf8f01'
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` for every file under ``folder``, sorted.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "a.txt").write_text("abc")
        ...     {k: v[:12] for k, v in sha256_tree(Path(d)).items()}
        {'a.txt': 'ba7816bf8f01'}
    """
    folder = Path(folder)
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }
