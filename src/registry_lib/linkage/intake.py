"""Reading and validating the feeds, whole or in parts, and the validated rows behind records.

Linkage needs two things from the feeds: a slim table of every person-bearing record (its
feed, id, event date, cleaned identifiers and quarantine reason: what person linkage, opt-outs
and the record statuses work on) and, for building the registry, the validated clinical rows
behind the linked records. :func:`intake_memory` holds both in memory (a cohort that fits);
:func:`intake_in_parts` reads each feed ``part_rows`` rows at a time, validates each part
(:func:`~registry_lib.linkage.validate.validate_feed`, with duplicate record ids found over the
whole feed first), keeps the slim records and writes each part's validated rows to a spill
folder, so memory holds the slim table and one part, not the cohort's feeds (issue 17).
:class:`FeedRows` serves the validated rows of any set of records from either.

Example:
    >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
    >>> import tempfile
    >>> from registry_lib.linkage.tiny import tiny_cohort
    >>> with tempfile.TemporaryDirectory() as spill:
    ...     whole = intake_in_parts(tiny_cohort(), "2022-06-30", part_rows=10**9, folder=Path(spill))
    ...     parts = intake_in_parts(tiny_cohort(), "2022-06-30", part_rows=7, folder=Path(spill) / "p")
    ...     same = whole.records.equals(parts.records)
    >>> same, whole.inputs["notifications"] == len(whole.records[whole.records["feed"] == "notifications"])
    (True, True)
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from registry_lib.engines import release_memory
from registry_lib.errors import RegistryLabError
from registry_lib.linkage.validate import (
    PERSON_FEEDS,
    Validated,
    _txt,
    check_contract,
    extract_date,
    validate_feed,
    validate_feeds,
)

TEXT = pd.StringDtype("pyarrow")
#: Pseudo-feed of :class:`FeedRows` holding every record's names as sent (for display).
RAW = "_raw"


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table in pandas with text as Arrow-backed strings (fast vectorised string operations).

    Example:
        >>> to_pandas(pa.table({"a": ["x"]})).dtypes["a"]
        string[pyarrow]
    """
    return table.to_pandas(types_mapper={pa.string(): TEXT, pa.large_string(): TEXT}.get, date_as_object=False)


def _unreadable(folder: Path, path: Path, exc: Exception) -> RegistryLabError:
    return RegistryLabError(f"{folder.name}/{path.name}: not a readable Parquet file "
                            f"({exc.__class__.__name__}); the file is empty, truncated or not Parquet")


def read_table(folder: Path, name: str, required: bool = False) -> pd.DataFrame | None:
    """``<folder>/<name>.parquet`` in pandas (see :func:`to_pandas`); None when absent and not required.

    Example:
        >>> read_table(Path("/nonexistent"), "ndop") is None
        True
    """
    path = folder / f"{name}.parquet"
    if not path.exists():
        if required:
            raise RegistryLabError(f"{folder.name}/{path.name}: not found (the cohort has no {name} table)")
        return None
    try:
        return to_pandas(pq.read_table(path))
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise _unreadable(folder, path, exc) from None


class FeedRows:
    """Validated feed rows by record position (the row number of the record in the slim table),
    held in memory or pickled to ``folder`` part by part.

    Each feed is stored as parts of consecutive positions; :meth:`take` gathers the rows of
    some records into an in-memory :class:`FeedRows`, and :meth:`rows` returns the rows behind
    records of one feed with their ``patient_id``.

    Example:
        >>> store = FeedRows()
        >>> store.add("deaths", pd.DataFrame({"death_date": ["2020-01-01", "2021-05-05"]}, index=[3, 4]))
        >>> sub = pd.DataFrame({"feed": ["deaths"], "patient_id": [7]}, index=[4])
        >>> print(store.take(np.array([4])).rows("deaths", sub).to_string())
           death_date  patient_id
        4  2021-05-05           7
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.parts: dict[str, list[tuple[int, int, pd.DataFrame | Path]]] = {}
        self.empty: dict[str, pd.DataFrame] = {}  # each feed's columns, no rows

    def add(self, feed: str, frame: pd.DataFrame) -> None:
        """Add rows whose index is a run of consecutive positions following the feed's last part."""
        self.empty.setdefault(feed, frame.iloc[:0].copy())  # a copy: a slice would keep the part alive
        if len(frame) == 0:
            return
        start = int(frame.index[0])
        item: pd.DataFrame | Path = frame
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            item = self.folder / f"{feed}-{len(self.parts.get(feed, [])):05d}.pkl"
            with open(item, "wb") as fh:
                pickle.dump(frame, fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.parts.setdefault(feed, []).append((start, start + len(frame), item))

    def has(self, feed: str) -> bool:
        """Whether the feed was read (it may have no rows)."""
        return feed in self.empty

    @staticmethod
    def _load(item: pd.DataFrame | Path) -> pd.DataFrame:
        if isinstance(item, pd.DataFrame):
            return item
        with open(item, "rb") as fh:
            return pickle.load(fh)

    def take(self, positions: np.ndarray) -> FeedRows:
        """An in-memory store of the rows at ``positions`` (sorted ascending)."""
        out = FeedRows()
        out.empty = dict(self.empty)
        positions = np.asarray(positions, dtype=np.int64)
        for feed, parts in self.parts.items():
            pieces = []
            for start, stop, item in parts:
                lo, hi = np.searchsorted(positions, [start, stop])
                if hi > lo:
                    frame = self._load(item)
                    pieces.append(frame.iloc[positions[lo:hi] - start])
            if pieces:
                out.parts[feed] = [(int(pieces[0].index[0]), -1, pd.concat(pieces) if len(pieces) > 1 else pieces[0])]
        return out

    def split(self, part_of: np.ndarray, n_parts: int) -> list[FeedRows]:
        """The rows divided into ``n_parts`` stores by the part of each position (``part_of``;
        -1: in none), reading each stored part once; spilled parts are removed as they are split.
        A store of the result serves :meth:`rows` and :meth:`raw_names` (not :meth:`take`).

        Example:
            >>> store = FeedRows()
            >>> store.add("deaths", pd.DataFrame({"d": ["a", "b", "c"]}, index=[0, 1, 2]))
            >>> parts = store.split(np.array([1, -1, 0]), 2)
            >>> [p._frame("deaths")["d"].tolist() for p in parts]
            [['c'], ['a']]
        """
        outs = [FeedRows(self.folder / f"part-{k:05d}" if self.folder is not None else None) for k in range(n_parts)]
        for out in outs:
            out.empty = dict(self.empty)
        for feed, parts in self.parts.items():
            for start, stop, item in parts:
                frame = self._load(item)
                which = part_of[start:stop]
                for k in np.unique(which[which >= 0]):
                    piece = frame.iloc[np.flatnonzero(which == k)]
                    outs[k].add(feed, piece.copy() if self.folder is None else piece)
                if isinstance(item, Path):
                    item.unlink()
                del frame
        self.parts = {}
        return outs

    def _frame(self, feed: str) -> pd.DataFrame:
        frames = [self._load(item) for _, _, item in self.parts.get(feed, [])]
        if not frames:
            return self.empty[feed]
        return frames[0] if len(frames) == 1 else pd.concat(frames)

    @staticmethod
    def _at(frame: pd.DataFrame, index: pd.Index, feed: str) -> pd.DataFrame:
        loc = frame.index.get_indexer(index)
        if (loc < 0).any():
            raise RegistryLabError(f"linkage: {int((loc < 0).sum()):,} records of {feed} have no validated row "
                                   "(an internal error: please report it)")
        return frame.iloc[loc]

    def rows(self, feed: str, records: pd.DataFrame) -> pd.DataFrame:
        """The validated rows behind ``records``' records of ``feed`` (same index), with ``patient_id``."""
        sub = records[(records["feed"] == feed).to_numpy()]
        rows = self._at(self._frame(feed), sub.index, feed).copy()
        rows.index = sub.index
        rows["patient_id"] = sub["patient_id"].astype("int64").to_numpy()
        return rows

    def raw_names(self, index: pd.Index) -> pd.DataFrame:
        """The names as sent (``given_name_raw``, ``family_name_raw``) of the records at ``index``."""
        return self._at(self._frame(RAW), index, RAW)


@dataclass
class Intake:
    """The validated feeds as linkage uses them.

    Attributes:
        records: the slim table, one row per person-bearing record, positions 0..n-1 (see
            :class:`~registry_lib.linkage.validate.Validated`).
        issues: field-level flags.
        as_of: the extract date.
        rows: the validated rows behind the records (and the names as sent).
        inputs: rows read from each feed.
        absent: the optional columns each feed lacked.
        ndop: the national data opt-out list, or None.
        parts: how many parts the feeds were read in (1: in memory).

    Example:
        >>> intake = Intake(records=pd.DataFrame({"feed": ["deaths"]}), issues=pd.DataFrame(),
        ...                 as_of=pd.Timestamp("2024-06-30"), rows=FeedRows(), inputs={"deaths": 1})
        >>> intake.parts, intake.ndop is None
        (1, True)
    """

    records: pd.DataFrame
    issues: pd.DataFrame
    as_of: pd.Timestamp
    rows: FeedRows
    inputs: dict[str, int]
    absent: dict[str, list[str]] = field(default_factory=dict)
    ndop: pd.DataFrame | None = None
    parts: int = 1


def _raw_names(df: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    return pd.DataFrame({"given_name_raw": df["given_name"].astype("string[pyarrow]").array,
                         "family_name_raw": df["family_name"].astype("string[pyarrow]").array}, index=index)


def intake_memory(feeds: dict[str, pd.DataFrame], as_of: str | pd.Timestamp | None) -> Intake:
    """Validate feeds held in memory (see :func:`~registry_lib.linkage.validate.validate_feeds`).

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.build import read_feeds
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> feeds, _ = read_feeds(tiny_cohort())
        >>> intake = intake_memory(feeds, "2022-06-30")
        >>> intake.parts, len(intake.records) == sum(intake.inputs[f] for f in intake.inputs if f != "ndop")
        (1, True)
    """
    feeds, absent = check_contract(feeds)
    v: Validated = validate_feeds(feeds, as_of=as_of)
    store = FeedRows()
    offset = 0
    for feed in PERSON_FEEDS:
        if feed not in v.feeds:
            continue
        frame = v.feeds[feed]
        frame.index = pd.RangeIndex(offset, offset + len(frame))
        store.add(feed, frame)
        store.add(RAW, _raw_names(feeds[feed], frame.index))
        offset += len(frame)
    inputs = {feed: int(len(df)) for feed, df in feeds.items()}
    return Intake(records=v.records, issues=v.issues, as_of=v.as_of, rows=store, inputs=inputs, absent=absent,
                  ndop=feeds.get("ndop"))


def _slim(rec: pd.DataFrame) -> pd.DataFrame:
    """The records of a part in compact types (the feed name and record id as Arrow text)."""
    return rec.assign(feed=rec["feed"].astype(TEXT), record_id=rec["record_id"].astype(TEXT))


def _duplicates(pf: pq.ParquetFile, feeds_dir: Path, path: Path, feed: str) -> np.ndarray:
    """Whether each record's id was used by an earlier record of the whole feed (as validate_feed decides)."""
    if "record_id" not in pf.schema_arrow.names:
        raise RegistryLabError(f"feeds/{feed}.parquet: required column record_id is missing")
    try:
        ids = _txt(to_pandas(pf.read(columns=["record_id"]))["record_id"])
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        raise _unreadable(feeds_dir, path, exc) from None
    no_id = (ids.isna() | (ids == "")).to_numpy(dtype=bool)
    dup = ids.duplicated().to_numpy(dtype=bool)
    # ids left empty are named by their row, so are never duplicates of each other
    return dup & ~no_id


def intake_in_parts(cohort_dir: Path | str, as_of: str | pd.Timestamp | None, *, part_rows: int,
                    folder: Path) -> Intake:
    """Read and validate ``<cohort_dir>/feeds/`` ``part_rows`` rows at a time, spilling the
    validated rows to ``folder``; the result equals :func:`intake_memory`'s (tested).

    Example:
        >>> import os, tempfile; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> with tempfile.TemporaryDirectory() as spill:
        ...     intake = intake_in_parts(tiny_cohort(), "2022-06-30", part_rows=50, folder=Path(spill))
        >>> intake.parts > 1, intake.inputs["notifications"] > 0
        (True, True)
    """
    feeds_dir = Path(cohort_dir) / "feeds"
    if not feeds_dir.is_dir():
        raise RegistryLabError(f"{feeds_dir}: not found; make it with `registry-lab synth --config ...`")
    as_of = extract_date(as_of)
    store = FeedRows(Path(folder))
    records, issues, inputs, absent = [], [], {}, {}
    pos, parts = 0, 0
    for feed in PERSON_FEEDS:
        path = feeds_dir / f"{feed}.parquet"
        if not path.exists():
            if feed == "notifications":
                raise RegistryLabError(f"{feeds_dir.name}/{path.name}: not found (the cohort has no {feed} table)")
            continue
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
            raise _unreadable(feeds_dir, path, exc) from None
        duplicate = _duplicates(pf, feeds_dir, path, feed)
        row0 = 0
        try:
            for batch in pf.iter_batches(batch_size=part_rows):
                df, missing = check_contract({feed: to_pandas(pa.Table.from_batches([batch]))})
                df = df[feed]
                if row0 == 0:
                    absent.update(missing)
                rec, rows, flags = validate_feed(feed, df, as_of, first_row=row0,
                                                 duplicate=duplicate[row0:row0 + len(df)])
                index = pd.RangeIndex(pos, pos + len(df))
                rec.index = index
                rows.index = index
                records.append(_slim(rec))
                issues.extend(flags)
                store.add(feed, rows)
                store.add(RAW, _raw_names(df, index))
                pos += len(df)
                row0 += len(df)
                parts += 1
                del df, rec, rows
                release_memory()
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(feeds_dir, path, exc) from None
        inputs[feed] = row0
    if inputs.get("notifications", 0) == 0:
        raise RegistryLabError("feeds/notifications.parquet: has no records; there is nothing to register")
    ndop = read_table(feeds_dir, "ndop")
    if ndop is not None:
        ndop = check_contract({"ndop": ndop})[0]["ndop"]
        inputs["ndop"] = int(len(ndop))
    records_df = pd.concat(records)
    del records
    issues_df = (pd.concat(issues, ignore_index=True) if issues else
                 pd.DataFrame({"feed": [], "record_id": [], "reason": [], "detail": []}).astype(object))
    return Intake(records=records_df, issues=issues_df, as_of=as_of, rows=store, inputs=inputs, absent=absent,
                  ndop=ndop, parts=parts)


__all__ = ["FeedRows", "Intake", "intake_in_parts", "intake_memory", "read_table", "to_pandas"]
