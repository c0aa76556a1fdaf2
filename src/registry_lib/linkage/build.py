"""Build the registry from a cohort's raw feeds: ``registry_lib.linkage.run``.

Steps (each prints one line; under ``CI=true`` only the summary prints):

1. read ``feeds/`` and ``reference/{postcodes,areas}``;
2. validate every record (:mod:`~registry_lib.linkage.validate`): unusable records to
   quarantine, field problems to ``validation_issues``;
3. link person records of all feeds (:mod:`~registry_lib.linkage.persons`): deterministic
   pass, Splink, clustering at ``threshold``;
4. registration opt-outs (:mod:`~registry_lib.linkage.optouts`): the person and all their
   records leave every table; keyed hashes are kept; records are counted as removed or blocked;
5. registered persons (a usable notification), best values, NDOP flag; tumours
   (:mod:`~registry_lib.linkage.tumours`); treatments linked to tumours; deaths and death
   flags; treatment or death records of nobody registered go to quarantine;
6. clerical review band, match weights, record links, link report (counts that reconcile per
   feed: input = linked + quarantined + opt-out removed + opt-out blocked); with ``evaluate``
   the accuracy against ``truth/``;
7. write ``registry/`` atomically.

Example:
    >>> import os, tempfile, pathlib
    >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "b3c2d83c27d47ab65d3949c308ec55af2728874bd1ebbc3b30649ee8089ebdcf")  # the project key (keyed opt-out hashes)
    >>> from registry_lib import synth
    >>> with tempfile.TemporaryDirectory() as d:   # the tiny cohort: generated in seconds
    ...     cohort = synth.run("params/cohort/tiny.yaml", out=pathlib.Path(d) / "tiny")
    ...     report = run(cohort, evaluate=True, quiet=True)
    ...     report["counts"]["notifications"]["reconciles"], report["f1"] > 0.9
    (True, True)
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from registry_lib.engines import (
    duckdb_connect,
    memory_limit,
    release_memory,
    remaining_memory,
    spill_directory,
)
from registry_lib.errors import RegistryLabError
from registry_lib.io import ParquetAppender, atomic_dir, write_json, write_parquet
from registry_lib.keys import key_fingerprint
from registry_lib.linkage import linked_feeds as linked
from registry_lib.linkage import standardise as std
from registry_lib.linkage import tables as T
from registry_lib.linkage.deaths import choose_deaths, death_flags
from registry_lib.linkage.evaluate import (
    cluster_errors,
    errors_by_kind,
    main_cluster,
    metrics_from_counts,
    pair_counts,
)
from registry_lib.linkage.intake import (
    TEXT,
    FeedRows,
    Intake,
    intake_in_parts,
    intake_memory,
    read_table,
)
from registry_lib.linkage.optouts import apply_optouts
from registry_lib.linkage.patients import best_values, patient_ids
from registry_lib.linkage.persons import KEY, PersonLinkage, cluster_identities, link_persons
from registry_lib.linkage.review import REVIEW_ROLES, apply_decisions, evidence, read_decisions
from registry_lib.linkage.treatments import assign_tumours, treatment_rows
from registry_lib.linkage.tumours import DEFAULT_WINDOW_DAYS, consolidate
from registry_lib.linkage.validate import (
    FATAL,
    TREATMENT_FEEDS,
)
from registry_lib.nhs_number import is_valid_nhs_number
from registry_lib.progress import progress, say

#: The registry links pairs with match probability >= 0.95 (not 0.5). A false merge joins two
#: people's records and a split counts one person twice; on the default cohort 0.95 balances
#: the two (about 10 persons merged and 2 split per 96,000), where 0.5 merges six times as many
#: at the same recall. Identity-level training makes the probabilities somewhat over-confident
#: (see link_report.json ``evaluation.threshold_curve``). The generic API keeps 0.5.
DEFAULT_THRESHOLD = 0.95
#: Pairs with a probability in [low, high) go to clerical review: the uncertain pairs on both
#: sides of the threshold (about 250 pairs on the default cohort, half of them true matches).
DEFAULT_REVIEW_BAND = (0.2, 0.99)
THRESHOLD_GRID = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)
#: Memory per feed record when linking in memory (one national year: 4.8 GB for 1.8 million records).
BYTES_PER_RECORD = 2_800
#: Memory per record of a part when linking in parts, and the share of the budget a part may use.
BYTES_PER_PART_RECORD = 1_800
PART_SHARE = 0.25
FEED_ORDER = ("notifications", "sact", "radiotherapy", "surgery", "deaths", "registration_optouts", "screening",
              "cpes")


def _read(folder: Path, name: str, required: bool = False) -> pd.DataFrame | None:
    """A Parquet table with text as Arrow-backed strings (see :func:`~registry_lib.linkage.intake.read_table`)."""
    return read_table(folder, name, required)


def read_feeds(cohort_dir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The feeds and the reference tables linkage uses (postcodes, areas).

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> feeds, ref = read_feeds(tiny_cohort())
        >>> "notifications" in feeds, sorted(ref)
        (True, ['areas', 'postcodes'])
    """
    feeds_dir = Path(cohort_dir) / "feeds"
    if not feeds_dir.is_dir():
        raise RegistryLabError(f"{feeds_dir}: not found; make it with `registry-lab synth --config ...`")
    feeds = {}
    for name in (*FEED_ORDER, "ndop"):
        df = _read(feeds_dir, name, required=name == "notifications")
        if df is not None:
            feeds[name] = df
    if len(feeds["notifications"]) == 0:
        raise RegistryLabError("feeds/notifications.parquet: has no records; there is nothing to register")
    return feeds, read_reference(cohort_dir)


def read_reference(cohort_dir: Path) -> dict[str, pd.DataFrame]:
    """The reference tables linkage uses: ``postcodes`` and ``areas``.

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> sorted(read_reference(tiny_cohort()))
        ['areas', 'postcodes']
    """
    ref_dir = Path(cohort_dir) / "reference"
    if not ref_dir.is_dir():
        raise RegistryLabError(f"{ref_dir}: not found; linkage needs reference/postcodes.parquet and "
                               "reference/areas.parquet to place patients in areas")
    return {name: _read(ref_dir, name, required=True) for name in ("postcodes", "areas")}


def configured_extract_date(cohort_dir: Path) -> tuple[str, str]:
    """The cohort's extract date and where it came from: ``cohort.json``'s ``extract_date`` or
    ``end_of_follow_up`` (the date the synthetic extract was taken), else today (the run date).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "cohort.json").write_text('{"config": {"end_of_follow_up": "2024-12-31"}}')
        ...     configured_extract_date(Path(d))
        ('2024-12-31', 'cohort.json end_of_follow_up')
    """
    path = Path(cohort_dir) / "cohort.json"
    if path.exists():
        try:
            config = json.loads(path.read_text()).get("config") or {}
        except (OSError, ValueError):
            raise RegistryLabError(f"{path}: not valid JSON") from None
        for key in ("extract_date", "end_of_follow_up"):
            if config.get(key):
                return str(config[key]), f"cohort.json {key}"
    return dt.date.today().isoformat(), "run date"


class _Clock:
    def __init__(self, quiet: bool) -> None:
        self.t0 = self.t = time.perf_counter()
        self.quiet = quiet
        self.times: dict[str, float] = {}

    def step(self, name: str, message: str) -> None:
        release_memory()  # each step's temporaries go back to the system before the next
        now = time.perf_counter()
        self.times[name] = now - self.t
        self.t = now
        if not self.quiet:
            say(f"link: {message} ({self.times[name]:.1f} s)")


def run(cohort_dir: Path | str, *, threshold: float | None = None, evaluate: bool = False,
        backend: str = "duckdb", review_band: tuple[float, float] = DEFAULT_REVIEW_BAND,
        window_days: int = DEFAULT_WINDOW_DAYS, out_dir: Path | str | None = None,
        write: bool = True, quiet: bool = False, plain: bool = False,
        deterministic: bool = True, extract_date: str | None = None,
        decisions: Path | str | bool | None = None, compare_methods: bool = False,
        part_records: int | None = None) -> dict[str, Any]:
    """Build ``<cohort_dir>/registry/`` from ``<cohort_dir>/feeds/`` and return the link report.

    Args:
        cohort_dir: a cohort folder (``synthetic/<name>``) holding ``feeds/`` (and ``reference/``,
            ``truth/`` for evaluation).
        threshold: link record pairs with ``match_probability >= threshold`` (default 0.95, see
            :data:`DEFAULT_THRESHOLD`).
        evaluate: compare with ``truth/`` and add accuracy to the report (and the match-weights
            table's truth columns).
        backend: ``"duckdb"`` (default) or ``"spark"`` for the Splink scoring.
        review_band: pairs with probability in ``[low, high)`` go to ``clerical_review``.
        window_days: tumour consolidation window (see :mod:`~registry_lib.linkage.tumours`).
        out_dir: where to write (default ``<cohort_dir>/registry``).
        write: False to build and evaluate without writing (benchmarks).
        quiet: print nothing (the summary line still prints unless quiet).
        plain: use Splink's default comparisons (for comparing methods).
        deterministic: run the HES-style deterministic pass first.
        extract_date: the date of the extract (default: the cohort's configured one, see
            :func:`configured_extract_date`); later receipt, registration and death dates are
            quarantined.
        decisions: a reviewed clerical decisions CSV to honour (see
            :mod:`~registry_lib.linkage.review`); default
            ``params/linkage/decisions/<cohort name>.csv`` when it exists; ``False``: none.
        compare_methods: with ``evaluate``, also link the same records with plain Splink
            (default comparisons, no deterministic pass) and report it beside exact NHS-number
            matching and this model (``evaluation.methods``; exact matching is always there).
        part_records: link in parts of this many records (feeds read and validated, and the
            registry built, a part at a time; see :func:`part_size`); default: in memory when the
            feeds fit ``REGISTRY_LAB_MEMORY``, else parts sized to it. The registry is the same
            either way (tested); only the row groups of its files differ.

    Returns:
        The link report (also written to ``registry/link_report.json``).

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> report = run(tiny_cohort(), write=False, quiet=True)   # link again without writing
        >>> report["threshold"], report["patients"] > 0, report["tumours"] > 0
        (0.95, True, True)
    """
    cohort_dir = Path(cohort_dir)
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 < threshold <= 1.0:
        raise RegistryLabError(f"threshold {threshold!r}: must be a match probability in (0, 1]")
    low, high = review_band
    if not 0.0 <= low <= high <= 1.0:
        raise RegistryLabError(f"review_band {review_band!r}: must be two probabilities low <= high")
    clock = _Clock(quiet)
    with tempfile.TemporaryDirectory(dir=spill_directory(), prefix="link-") as spill:
        return _run(cohort_dir, clock, Path(spill), threshold=threshold, evaluate=evaluate, backend=backend,
                    review_band=review_band, window_days=window_days, out_dir=out_dir, write=write, quiet=quiet,
                    plain=plain, deterministic=deterministic, extract_date=extract_date, decisions=decisions,
                    compare_methods=compare_methods, part_records=part_records)


def part_size(cohort_dir: Path, part_records: int | None = None, budget: int | None = None) -> int | None:
    """Records per part when the cohort's feeds are linked in parts, or None to link in memory.

    ``part_records`` forces parts of that many records; otherwise the feeds (counted from the
    Parquet footers) are linked in memory when they fit ``REGISTRY_LAB_MEMORY`` at
    :data:`BYTES_PER_RECORD` each, and in parts sized to the budget when they do not.

    Example (one national year fits 12 GB; a decade does not):
        >>> part_size(Path("."), budget=12 * 2**30, part_records=500_000)
        500000
        >>> _parts_for(1_800_000, 12 * 2**30), _parts_for(18_800_000, 12 * 2**30)
        (None, 1789569)
    """
    if part_records is not None:
        if int(part_records) < 1:
            raise RegistryLabError(f"part_records {part_records!r}: must be a positive number of records")
        return int(part_records)
    feeds_dir = Path(cohort_dir) / "feeds"
    n = 0
    for feed in FEED_ORDER:
        path = feeds_dir / f"{feed}.parquet"
        if path.exists():
            try:
                n += pq.ParquetFile(path).metadata.num_rows
            except (pa.ArrowException, OSError, ValueError):
                return None  # in memory: reading it says what is wrong with the file
    return _parts_for(n, memory_limit() if budget is None else budget)


def _parts_for(n_records: int, budget: int) -> int | None:
    if n_records * BYTES_PER_RECORD <= budget:
        return None
    return max(10_000, int(budget * PART_SHARE) // BYTES_PER_PART_RECORD)


def _run(cohort_dir: Path, clock: _Clock, spill: Path, *, threshold: float, evaluate: bool, backend: str,
         review_band: tuple[float, float], window_days: int, out_dir: Path | str | None, write: bool, quiet: bool,
         plain: bool, deterministic: bool, extract_date: str | None, decisions: Path | str | bool | None,
         compare_methods: bool, part_records: int | None) -> dict[str, Any]:
    low, high = review_band
    per_part = part_size(cohort_dir, part_records)
    if per_part is not None:
        # large buffers from the C allocator go back to the system when freed (Arrow's default
        # pool keeps them), so memory between parts and steps stays near what is held
        pa.set_memory_pool(pa.system_memory_pool())
    as_of, as_of_source = (str(extract_date), "given") if extract_date is not None else configured_extract_date(cohort_dir)
    if per_part is None:
        feeds, ref = read_feeds(cohort_dir)
        _check_truth(cohort_dir, evaluate)
        clock.step("read", f"read {sum(len(f) for f in feeds.values()):,} feed records from {cohort_dir}")
        intake = intake_memory(feeds, as_of)
        del feeds
    else:
        ref = read_reference(cohort_dir)
        _check_truth(cohort_dir, evaluate)
        intake = intake_in_parts(cohort_dir, as_of, part_rows=per_part, folder=spill / "feeds")
        clock.step("read", f"read {sum(intake.inputs.values()):,} feed records from {cohort_dir} in "
                           f"{intake.parts} parts of up to {per_part:,} rows")
    recs = intake.records
    clock.step("validate", f"validated; {int(recs['reason'].notna().sum()):,} records unusable so far, "
                           f"{len(intake.issues):,} field problems flagged")

    usable = (recs["reason"] != "NO_IDENTIFIERS").fillna(True).to_numpy()
    min_p = min(low, threshold, 0.001 if evaluate else 1.0)
    keys = [recs.loc[usable, KEY]]  # handed over (popped) so linkage can free it once identities are made
    if per_part is not None:  # in parts: the slim records wait on disk while Splink has the memory
        recs.to_pickle(spill / "records.pkl")
        intake.records = recs = None
        release_memory()
    lk = link_persons(keys.pop(), threshold=threshold, min_probability=min_p, backend=backend,
                      plain=plain, deterministic=deterministic, keep_gammas=True)
    if recs is None:
        recs = intake.records = pd.read_pickle(spill / "records.pkl")
        (spill / "records.pkl").unlink()
    dec_path = _decisions_path(cohort_dir, decisions)
    undecided = None
    if dec_path is not None:
        undecided = lk.cluster.copy()
        decided = _apply_decisions(lk, recs[usable], dec_path, threshold)
        clock.step("decisions", f"clerical decisions from {dec_path}: {decided['applied_match']} match, "
                                f"{decided['applied_non_match']} non-match applied")
    person = np.full(len(recs), -1, dtype=np.int64)
    person[usable] = lk.cluster
    recs["person"] = person
    clock.step("link", f"linked {lk.stats['records']:,} records: {lk.stats['identities']:,} identities, "
                       f"{lk.stats['candidate_pairs_scored']:,} pairs scored, {lk.stats['clusters']:,} persons")

    opt = apply_optouts(recs.loc[usable, ["feed", "record_id", "nhs_number", "event_date", "person"]])
    status = pd.Series(pd.NA, index=recs.index, dtype="string")
    status[usable] = opt.status.to_numpy()
    opted_person = set(recs.loc[status.notna().to_numpy(), "person"])
    clock.step("optouts", f"opt-outs: {opt.persons} persons removed, {int((status == 'optout_blocked').sum())} "
                          "later records blocked")

    built = _build_tables(recs, status, intake, ref, window_days, per_part, spill / "tables")
    n = built["summary"]
    clock.step("tables", f"registry: {n['patients']:,} patients, {n['tumours']:,} tumours, "
                         f"{n['treatments']:,} treatments" + (f" in {built['parts']} parts" if built["parts"] > 1 else ""))
    del status
    if per_part is not None:  # what follows needs each record's feed, id, NHS number and person only
        wanted = {"feed", "record_id", "nhs_number", "person", *(KEY if evaluate and compare_methods and not plain else ())}
        recs.drop(columns=[c for c in recs.columns if c not in wanted], inplace=True)
        release_memory()

    review = _clerical_review(lk, recs, built["status"], built["record_patient"], opted_person, low, high, threshold)
    truth = _read_truth(cohort_dir) if evaluate else None  # read late: at national scale it is gigabytes
    weights, truth_pairs = _match_weights(lk, recs, opted_person, threshold, truth)
    if per_part is not None:
        release_memory()
    report = _report(recs, built, intake, lk, opt, threshold, review_band, backend, cohort_dir)
    report["extract_date_source"] = as_of_source
    report["optional_columns_missing"] = {f: cols for f, cols in sorted(intake.absent.items())}
    report["ndop_invalid_entries"] = int(built["ndop_invalid_entries"])
    report["patients_without_valid_nhs_number"] = int(built["summary"]["patients_without_valid_nhs_number"])
    report["key_fingerprint"] = key_fingerprint()
    if dec_path is not None:
        report["clerical_decisions"] = {"file": dec_path.name, **decided}
    if evaluate:
        report.update(_evaluate(recs, built, lk, truth, threshold, truth_pairs, quiet))
        report["evaluation"]["methods"] = _methods(recs, usable, truth, report, threshold, backend,
                                                   compare_methods and not plain)
        if undecided is not None:
            report["clerical_decisions"]["without_decisions"] = _pairwise(recs, usable, undecided, truth)
            report["clerical_decisions"]["with_decisions"] = {k: report[k] for k in ("precision", "recall", "f1")}
        clock.step("evaluate", f"evaluated: F1 {report['f1']:.4f}, precision {report['precision']:.4f}, "
                               f"recall {report['recall']:.4f}")
    model = lk.model
    truth = lk = undecided = None  # the truth and the identity pairs are not written: freed first
    if per_part is not None:
        release_memory()
    if write:
        out = Path(out_dir) if out_dir is not None else cohort_dir / "registry"
        _write(out, built, review, weights, opt.hashes, intake.issues, recs, report, model)
        clock.step("write", f"wrote {out}")
    report_time = time.perf_counter() - clock.t0
    if not quiet:
        summary = (f"link: {n['patients']:,} patients, {n['tumours']:,} tumours, "
                   f"{n['treatments']:,} treatments, {report['quarantined']:,} quarantined, "
                   f"{report['optouts']['records_removed'] + report['optouts']['records_blocked']:,} opted out "
                   f"in {report_time:.1f} s")
        if evaluate:
            summary += f"; F1 {report['f1']:.4f}, false match rate {report['false_match_rate']:.5f}"
        say(summary, summary=True)
    report["clerical_review_pairs"] = int(len(review))
    report["_timings"] = clock.times  # in memory only (never written: not deterministic)
    report["_parts"] = {"read": intake.parts, "tables": built["parts"]}  # in memory only
    return report


# ---------------------------------------------------------------------------------------------
def _decisions_path(cohort_dir: Path, decisions: Path | str | bool | None) -> Path | None:
    if decisions is False:
        return None
    if decisions is not None and decisions is not True:
        path = Path(decisions)
        if not path.exists():
            raise RegistryLabError(f"{path}: decisions file not found")
        return path
    from registry_lib.paths import project_root

    try:
        path = project_root() / "params" / "linkage" / "decisions" / f"{cohort_dir.name}.csv"
    except RegistryLabError:
        return None
    return path if path.exists() else None


def _record_labels(recs: pd.DataFrame) -> pd.Series:
    return recs["feed"].astype(str) + ":" + recs["record_id"].astype(str)


def _apply_decisions(lk: PersonLinkage, recs: pd.DataFrame, path: Path, threshold: float) -> dict[str, int]:
    """Honour a reviewed decisions file: re-cluster with decided pairs forced to 1 or 0."""
    dec = read_decisions(path)
    identity_of = pd.Series(lk.identity_id, index=_record_labels(recs).to_numpy())
    identity_of = identity_of[~identity_of.index.duplicated()]
    lk.pairs, counts = apply_decisions(lk.pairs, dec, identity_of)
    labels = cluster_identities(lk.identity, lk.pairs, threshold, anchored=lk.anchored)
    lk.identity["cluster"] = labels
    lk.cluster = labels[lk.identity_id]
    non = dec[dec["decision"] == "non-match"]
    a = non["record_l"].map(identity_of)
    b = non["record_r"].map(identity_of)
    ok = a.notna().to_numpy() & b.notna().to_numpy()
    counts["overruled"] = int((labels[a[ok].astype(np.int64)] == labels[b[ok].astype(np.int64)]).sum())
    return counts


def _truth_of(recs: pd.DataFrame, truth: dict[str, Any]) -> pd.DataFrame:
    """The truth row of every record (``patient_id`` and ``tumour_id`` as floats, NaN when the
    record is not in ``record_truth``; ``errors`` categorical), aligned with ``recs`` and computed
    once per run.

    DuckDB joins the records' keys to ``record_truth.parquet`` without reading the truth into
    pandas: at national scale the truth has tens of millions of rows (issue 17).
    """
    cached = truth.get("_aligned")
    if cached is not None and len(cached) == len(recs):
        return cached
    path = truth["record_truth"]
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise RegistryLabError(f"truth/{path.name}: not a readable Parquet file ({exc.__class__.__name__})") from None
    cols = [c for c in ("patient_id", "tumour_id", "errors") if c in names]
    left = pa.table({"i": np.arange(len(recs), dtype=np.int64),
                     "feed": pa.array(recs["feed"].astype(TEXT).array),
                     "record_id": pa.array(recs["record_id"].astype(TEXT).array)})
    import duckdb

    con = duckdb_connect(limit=remaining_memory())
    try:
        con.register("records", left)
        select = ", ".join(["records.i", *(f"t.{c}" for c in cols)])
        got = con.sql(f"SELECT {select} FROM records JOIN read_parquet($path) t "  # noqa: S608 (fixed names)
                      "ON CAST(t.feed AS VARCHAR) = records.feed AND CAST(t.record_id AS VARCHAR) = records.record_id",
                      params={"path": str(path)}).to_arrow_table()
    except duckdb.Error as exc:
        raise RegistryLabError(f"truth/{path.name}: cannot be joined to the records ({exc.__class__.__name__}); "
                               "it needs readable Parquet with feed, record_id and patient_id") from None
    finally:
        con.close()
    del left
    at = got["i"].to_numpy()
    m = pd.DataFrame(index=recs.index)
    for col in ("patient_id", "tumour_id"):
        values = np.full(len(recs), np.nan)
        if col in cols:
            values[at] = got[col].cast(pa.float64()).to_numpy()
        m[col] = values
    codes = np.full(len(recs), -1, dtype=np.int32)
    categories: list[str] = []
    if "errors" in cols:
        enc = got["errors"].cast(pa.string()).combine_chunks().dictionary_encode()
        codes[at] = enc.indices.to_numpy(zero_copy_only=False)
        categories = enc.dictionary.to_pylist()
    m["errors"] = pd.Categorical.from_codes(codes, categories=categories)
    truth["_aligned"] = m
    return m


def _pairwise(recs: pd.DataFrame, usable: np.ndarray, cluster: np.ndarray,
              truth: dict[str, pd.DataFrame], keys: tuple[str, ...] = ("precision", "recall", "f1")) -> dict[str, Any]:
    """Pairwise precision, recall, F1 of record clusters (usable records) against truth."""
    true = _truth_of(recs, truth)["patient_id"].to_numpy()[usable]
    ok = ~np.isnan(true)
    true = true[ok].astype(np.int64)
    res = metrics_from_counts(*pair_counts(cluster[ok], true))
    res.update(cluster_errors(cluster[ok], true))
    return {k: res[k] for k in keys}


def _methods(recs: pd.DataFrame, usable: np.ndarray, truth: dict[str, pd.DataFrame], report: dict[str, Any],
             threshold: float, backend: str, plain: bool) -> list[dict[str, Any]]:
    """Exact NHS-number matching, (optionally) plain Splink and this model on the same records."""
    keys = ("precision", "recall", "f1", "false_match_rate", "persons_split", "persons_merged")
    codes, _ = pd.factorize(recs["nhs_number"].astype(TEXT)[usable])  # Arrow: no Python string per record
    codes = codes.astype(np.int64)
    single = np.flatnonzero(codes < 0)
    codes[single] = (codes.max() + 1 if len(codes) else 0) + np.arange(len(single))
    rows = [{"method": "exact NHS number", **_pairwise(recs, usable, codes, truth, keys)}]
    if plain:
        lk = link_persons(recs[usable], threshold=threshold, min_probability=threshold, backend=backend, plain=True,
                          deterministic=False)
        rows.append({"method": "plain Splink", **_pairwise(recs, usable, lk.cluster, truth, keys)})
    rows.append({"method": "Registry Lab", **{k: report[k] for k in keys}})
    return rows


def _check_truth(cohort_dir: Path, evaluate: bool) -> None:
    folder = cohort_dir / "truth"
    if evaluate and not (folder / "record_truth.parquet").exists():
        raise RegistryLabError(f"{folder}/record_truth.parquet: not found; --evaluate needs the cohort's truth/")


def _read_truth(cohort_dir: Path) -> dict[str, Any]:
    """What evaluation needs of ``truth/``: the path of ``record_truth.parquet`` (joined to the
    records by :func:`_truth_of`) and the columns used of ``tumours`` and ``patients``."""
    folder = cohort_dir / "truth"
    _check_truth(cohort_dir, True)
    out: dict[str, Any] = {"record_truth": folder / "record_truth.parquet"}
    for name, wanted in (("tumours", ["patient_id"]), ("patients", ["patient_id", "registration_opted_out"])):
        path = folder / f"{name}.parquet"
        if path.exists():
            names = pq.read_schema(path).names
            out[name] = pq.read_table(path, columns=[c for c in wanted if c in names]).to_pandas()
    return out


#: Registry tables built part by part, and the schema each is written with.
TABLES = {"patient": T.PATIENT, "tumour": T.TUMOUR, "treatment": T.TREATMENT, "death_flags": T.DEATH_FLAGS,
          **linked.LINKED_TABLES}


class _Tables:
    """Registry tables built a part at a time: held in memory, or pickled to ``folder``."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.parts: dict[str, list[pd.DataFrame | Path]] = {name: [] for name in TABLES}

    def add(self, name: str, df: pd.DataFrame) -> None:
        item: pd.DataFrame | Path = df
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            item = self.folder / f"{name}-{len(self.parts[name]):05d}.pkl"
            df.to_pickle(item)
        self.parts[name].append(item)

    def frames(self, name: str) -> Iterator[pd.DataFrame]:
        for item in self.parts[name]:
            yield item if isinstance(item, pd.DataFrame) else pd.read_pickle(item)

    def write(self, folder: Path) -> None:
        """Each table as ``<name>.parquet``: one write when built whole, else a row group per part."""
        appender = ParquetAppender(folder)
        for name, schema in TABLES.items():
            if len(self.parts[name]) == 1:
                write_parquet(next(self.frames(name)), folder / f"{name}.parquet", schema)
                continue
            for df in self.frames(name):
                appender.append(f"{name}.parquet", df, schema)
        appender.close()


def _part_bounds(patient: np.ndarray, per_part: int | None) -> list[tuple[int, int]]:
    """Ranges [lo, hi) of patient ids, each holding at most about ``per_part`` records
    (a patient's records are never split); one range for all when ``per_part`` is None.

    Example:
        >>> _part_bounds(np.array([1, 1, 2, 3, 3, 3, 4]), 3)
        [(0, 3), (3, 4), (4, 5)]
    """
    top = int(patient.max()) + 1 if len(patient) else 1
    if per_part is None or len(patient) <= per_part:
        return [(0, top)]
    cum = np.cumsum(np.bincount(patient, minlength=top))
    bounds, lo = [], 0
    while lo < top:
        before = int(cum[lo - 1]) if lo else 0
        hi = int(np.searchsorted(cum, before + per_part, side="right"))
        hi = min(max(hi, lo + 1), top)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _ndop_numbers(ndop: pd.DataFrame | None) -> tuple[set[str], int]:
    """The valid NHS numbers on the national data opt-out list, and how many entries are not valid."""
    if ndop is None or not len(ndop):
        return set(), 0
    numbers = std.text(ndop["nhs_number"]).str.replace(r"\s", "", regex=True)
    ok = numbers.str.fullmatch(r"\d{10}").fillna(False).to_numpy(dtype=bool)
    ok[ok] = is_valid_nhs_number(numbers[ok].astype(object))
    return set(numbers[ok].astype(str)), int((~ok).sum())


def _build_tables(recs: pd.DataFrame, status: pd.Series, intake: Intake, ref: dict[str, pd.DataFrame],
                  window_days: int, per_part: int | None = None, folder: Path | None = None) -> dict[str, Any]:
    """Patients, tumours, treatments, deaths and the final status of every record.

    The record statuses and patient ids are decided over all records; the tables are built for
    ranges of patient ids of at most ``per_part`` records each (every id continues the range
    before it, so the tables are the same as built whole), pickled to ``folder`` when in parts.
    """
    reason = recs["reason"].copy()
    detail = recs["detail"].copy()
    opted = status.notna().to_numpy()
    valid = reason.isna().to_numpy() & ~opted
    feed = recs["feed"].astype(TEXT)  # compared as Arrow text: no Python string per record
    is_note = (feed == "notifications").to_numpy(dtype=bool)
    is_request = (feed == "registration_optouts").to_numpy(dtype=bool)
    del feed
    person = recs["person"].to_numpy()
    in_registry = np.isin(person, np.unique(person[valid & is_note]))
    orphan = valid & ~is_note & ~in_registry & ~is_request
    reason[orphan] = "NO_REGISTERED_PERSON"
    detail[orphan] = "no registered person matched this record"
    linked = valid & ~orphan
    pid_map = patient_ids(recs.loc[linked & is_note, ["feed", "record_id", "event_date", "reason", "person"]])
    record_patient = recs["person"].map(pid_map).astype("Int64").where(linked)
    listed, ndop_invalid = _ndop_numbers(intake.ndop)

    keep = np.flatnonzero(linked & ~is_request)
    patient = record_patient.to_numpy(dtype=np.int64, na_value=-1)[keep]
    bounds = _part_bounds(patient, per_part)
    tables = _Tables(folder if len(bounds) > 1 else None)
    stores = None
    if len(bounds) > 1:  # each part's validated rows gathered in one pass over the spilled feeds
        part_of = np.full(len(recs), -1, dtype=np.int32)
        for k, (lo, hi) in enumerate(bounds):
            part_of[keep[(patient >= lo) & (patient < hi)]] = k
        stores = intake.rows.split(part_of, len(bounds))
        del part_of
    record_tumour_t = np.full(len(recs), -1, dtype=np.int64)
    record_treatment = np.full(len(recs), -1, dtype=np.int64)
    first = {"tumour": 0, "treatment": 0, "screening": 0, "response": 0}
    summary: dict[str, int] = {}
    conflicting = 0
    for k, (lo, hi) in enumerate(bounds):
        sel = keep[(patient >= lo) & (patient < hi)]
        sub = recs.iloc[sel].assign(patient_id=record_patient.to_numpy()[sel])
        rows = intake.rows.take(sel) if stores is None else stores[k]
        part = _registry_part(sub, rows, ref, window_days, listed, first)
        for name in TABLES:
            tables.add(name, part[name])
        record_tumour_t[part["note_rec"]] = part["note_tumour"]
        record_treatment[part["treat_rec"]] = part["treat_id"]
        record_tumour_t[part["treat_rec"]] = part["treat_tumour"]
        conflicting += part["deaths_conflicting"]
        for name, n in part["summary"].items():
            summary[name] = summary.get(name, 0) + n
        first = {"tumour": first["tumour"] + len(part["tumour"]), "treatment": first["treatment"] + len(part["treatment"]),
                 "screening": first["screening"] + len(part["screening"]), "response": first["response"] + len(part["cpes"])}
        del part, sub, rows
        if stores is not None:
            stores[k] = None
        release_memory()
    final_status = pd.Series("linked", index=recs.index, dtype=TEXT)
    final_status[reason.notna().to_numpy()] = "quarantined"
    final_status[opted] = status[opted]

    def ids(values: np.ndarray) -> pd.Series:
        return pd.Series(pd.array(np.where(values >= 0, values, 0), dtype="Int64"), index=recs.index).where(values >= 0)

    return {
        "tables": tables, "parts": len(bounds), "summary": summary,
        "status": final_status, "reason": reason, "detail": detail, "record_patient": record_patient,
        "record_tumour": ids(record_tumour_t),
        "record_treatment": ids(record_treatment),
        "deaths_conflicting": conflicting, "ndop_invalid_entries": ndop_invalid,
    }


def _registry_part(recs_linked: pd.DataFrame, rows: FeedRows, ref: dict[str, pd.DataFrame], window_days: int,
                   listed: set[str], first: dict[str, int]) -> dict[str, Any]:
    """The registry tables of some patients from their linked records (with ``patient_id``) and
    the validated rows behind them; ids continue from ``first`` (the counts of earlier parts)."""
    notes = rows.rows("notifications", recs_linked) if rows.has("notifications") else None
    if notes is None:
        notes = pd.DataFrame(columns=["patient_id"])
    patients = best_values(recs_linked, notes, ref.get("postcodes"), ref.get("areas"),
                           rows.raw_names(recs_linked.index))
    # tumours
    notes = notes.assign(postcode=recs_linked.loc[(recs_linked["feed"] == "notifications").to_numpy(), "postcode"].to_numpy())
    pc_areas = ref["postcodes"].set_index("postcode")["area_id"] if "postcodes" in ref else None
    tumours, note_tumour = consolidate(notes, patients, pc_areas, window_days)
    tumours["tumour_id"] += first["tumour"]
    note_tumour = note_tumour + first["tumour"]
    # treatments
    parts = []
    for feed in TREATMENT_FEEDS:
        if not rows.has(feed):
            continue
        feed_rows = rows.rows(feed, recs_linked)
        if feed_rows.empty:
            continue
        part = treatment_rows(feed, feed_rows)
        part["tumour_id"] = assign_tumours(feed_rows, tumours).to_numpy()
        part["_rec"] = feed_rows.index.to_numpy()
        parts.append(part)
    treatments = pd.concat(parts, ignore_index=True) if parts else _empty_treatments()
    treatments = treatments.sort_values(["patient_id", "start_date", "modality", "record_id"], kind="stable",
                                        ignore_index=True)
    treatments["treatment_id"] = np.arange(first["treatment"] + 1, first["treatment"] + len(treatments) + 1,
                                           dtype=np.int64)
    # deaths
    dead = rows.rows("deaths", recs_linked) if rows.has("deaths") else None
    conflicting = 0
    if dead is not None and len(dead):
        dead = dead.assign(registration_value=pd.to_datetime(dead["registration_date"], errors="coerce"))
        chosen, conflicting = choose_deaths(dead)
        patients = patients.merge(chosen, on="patient_id", how="left")
    else:
        patients["death_date"] = pd.NaT
        patients["death_cause_icd10"] = pd.NA
    activity = pd.concat([
        pd.DataFrame({"patient_id": tumours["patient_id"], "date": tumours["diagnosis_date"], "activity": "diagnosis"}),
        pd.DataFrame({"patient_id": treatments["patient_id"], "date": pd.to_datetime(treatments["start_date"]),
                      "activity": treatments["modality"]}),
    ], ignore_index=True)
    flags = death_flags(patients.dropna(subset=["death_date"]), activity)
    # NDOP: any valid NHS number of the person's records on the list
    on_list = recs_linked.loc[recs_linked["nhs_number"].isin(listed).to_numpy(dtype=bool), "patient_id"].unique()
    patients["ndop_opted_out"] = patients["patient_id"].isin(set(on_list))
    patients = patients[T.PATIENT.column_names]
    out = {"patient": patients, "tumour": tumours, "treatment": treatments[T.TREATMENT.column_names],
           "death_flags": flags, **_linked_tables(rows, recs_linked, tumours, first)}
    out.update({
        "note_rec": note_tumour.index.to_numpy(dtype=np.int64), "note_tumour": note_tumour.to_numpy(dtype=np.int64),
        "treat_rec": treatments["_rec"].to_numpy(dtype=np.int64),
        "treat_id": treatments["treatment_id"].to_numpy(dtype=np.int64),
        "treat_tumour": treatments["tumour_id"].astype("Int64").to_numpy(dtype=np.int64, na_value=-1),
        "deaths_conflicting": int(conflicting),
        "summary": {"patients": len(patients), "tumours": len(tumours), "treatments": len(treatments),
                    "screening_records": len(out["screening"]), "cpes_records": len(out["cpes"]),
                    "treatments_without_tumour": int(treatments["tumour_id"].isna().sum()),
                    "deaths_linked": int(patients["death_date"].notna().sum()),
                    "deaths_before_last_activity": len(flags),
                    "ndop_opted_out_patients": int(patients["ndop_opted_out"].sum()),
                    "patients_without_valid_nhs_number": int(patients["nhs_number"].isna().sum())},
    })
    return out


def _linked_tables(rows: FeedRows, recs_linked: pd.DataFrame, tumours: pd.DataFrame,
                   first: dict[str, int]) -> dict[str, pd.DataFrame]:
    """The registry's ``screening`` and ``cpes`` tables (issue 14)."""
    out = {"screening": linked.empty_table("screening"), "cpes": linked.empty_table("cpes")}
    if rows.has("screening"):
        feed_rows = rows.rows("screening", recs_linked)
        if len(feed_rows):
            out["screening"] = linked.screening_rows(feed_rows)
            out["screening"]["screening_id"] += first["screening"]
    if rows.has("cpes"):
        feed_rows = rows.rows("cpes", recs_linked)
        if len(feed_rows):
            out["cpes"] = linked.cpes_rows(feed_rows, assign_tumours(feed_rows, tumours))
            out["cpes"]["response_id"] += first["response"]
    return out


def _empty_treatments() -> pd.DataFrame:
    cols = {c.name: pd.Series(dtype="object") for c in T.TREATMENT.columns}
    df = pd.DataFrame(cols)
    df["record_id"] = pd.Series(dtype="string")
    df["_rec"] = pd.Series(dtype="int64")
    return df


def _identity_records(lk: PersonLinkage, recs: pd.DataFrame, wanted: np.ndarray) -> pd.Series:
    """Up to five ``feed:record_id`` labels per identity of ``wanted`` (sorted, joined by ", ")."""
    usable = recs["person"].to_numpy() >= 0
    sel = np.isin(lk.identity_id, wanted)
    rows = np.flatnonzero(usable)[sel]
    lab = (pd.Series(recs["feed"].iloc[rows].to_numpy(dtype=object), dtype=object).astype(str) + ":"
           + pd.Series(recs["record_id"].iloc[rows].to_numpy(dtype=object), dtype=object).astype(str))
    df = pd.DataFrame({"i": lk.identity_id[sel], "lab": lab.to_numpy(dtype=object)})
    df = df.sort_values(["i", "lab"]).groupby("i").head(5)
    return df.groupby("i")["lab"].agg(", ".join).astype(object)


def _clerical_review(lk: PersonLinkage, recs: pd.DataFrame, status: pd.Series, record_patient: pd.Series,
                     opted_person: set, low: float, high: float, threshold: float) -> pd.DataFrame:
    model = lk.model
    p = lk.pairs
    band = p[(p["match_probability"] >= low) & (p["match_probability"] < high)]
    cl = lk.identity["cluster"].to_numpy()
    keep = ~np.isin(cl[band["unique_id_l"]], list(opted_person)) & ~np.isin(cl[band["unique_id_r"]], list(opted_person))
    band = band[keep]
    usable = recs["person"].to_numpy() >= 0
    ident_patient = (pd.DataFrame({"i": lk.identity_id, "p": record_patient[usable].to_numpy()})
                     .dropna().drop_duplicates("i").set_index("i")["p"])
    labels = _identity_records(lk, recs, np.union1d(band["unique_id_l"].to_numpy(), band["unique_id_r"].to_numpy()))
    out = pd.DataFrame({
        "identity_id_l": band["unique_id_l"].to_numpy(), "identity_id_r": band["unique_id_r"].to_numpy(),
        "match_probability": band["match_probability"].to_numpy(), "match_weight": band["match_weight"].to_numpy(),
        "decision": np.where(band["match_probability"].to_numpy() >= threshold, "linked", "not linked"),
        "same_patient": cl[band["unique_id_l"]] == cl[band["unique_id_r"]],
    })
    out["patient_id_l"] = out["identity_id_l"].map(ident_patient).astype("Int64")
    out["patient_id_r"] = out["identity_id_r"].map(ident_patient).astype("Int64")
    out["records_l"] = out["identity_id_l"].map(labels)
    out["records_r"] = out["identity_id_r"].map(labels)
    first = labels.str.split(", ").str[0]
    kl, kr = out["identity_id_l"].map(first).astype(object), out["identity_id_r"].map(first).astype(object)
    out["review_key"] = np.where(kl <= kr, kl + "|" + kr, kr + "|" + kl)
    ev = evidence(band.reset_index(drop=True), model, REVIEW_ROLES)
    out = pd.concat([out, ev], axis=1)
    for side in ("l", "r"):
        ident = lk.identity.iloc[out[f"identity_id_{side}"].to_numpy()]
        for col in KEY:
            out[f"{col}_{side}"] = ident[col].to_numpy()
    return out.sort_values(["match_probability", "identity_id_l", "identity_id_r"], ascending=[False, True, True],
                           ignore_index=True)


def _identity_truth(lk: PersonLinkage, recs: pd.DataFrame, truth: dict[str, pd.DataFrame],
                    wanted: np.ndarray) -> pd.DataFrame:
    """Per identity of ``wanted``: its main true person and the union of injected error kinds
    (indexed by identity id over all identities; missing for the others)."""
    usable = recs["person"].to_numpy() >= 0
    m = _truth_of(recs, truth)
    sel = np.isin(lk.identity_id, wanted)
    rows = np.flatnonzero(usable)[sel]
    df = pd.DataFrame({"i": lk.identity_id[sel], "t": m["patient_id"].to_numpy()[rows],
                       "e": m["errors"].iloc[rows].astype(object).fillna("").to_numpy(dtype=object)})
    main = (df.dropna(subset=["t"]).groupby(["i", "t"]).size().rename("n").reset_index()
            .sort_values(["i", "n", "t"], ascending=[True, False, True]).drop_duplicates("i").set_index("i")["t"])
    err = df.assign(e=df["e"].str.split(";")).explode("e")
    err = err[err["e"].astype(bool)].drop_duplicates(["i", "e"]).sort_values(["i", "e"])
    errors = err.groupby("i")["e"].agg(";".join)
    out = pd.DataFrame(index=pd.RangeIndex(len(lk.identity)))
    out["true_person"] = main
    out["errors"] = errors.reindex(out.index).fillna("")
    return out


def _match_weights(lk: PersonLinkage, recs: pd.DataFrame, opted_person: set, threshold: float,
                   truth: dict[str, pd.DataFrame] | None) -> tuple[pd.DataFrame, dict[str, int] | None]:
    p = lk.pairs
    cl = lk.identity["cluster"].to_numpy()
    keep = ~np.isin(cl[p["unique_id_l"]], list(opted_person)) & ~np.isin(cl[p["unique_id_r"]], list(opted_person))
    p = p[keep]
    out = pd.DataFrame({
        "identity_id_l": p["unique_id_l"].to_numpy(), "identity_id_r": p["unique_id_r"].to_numpy(),
        "match_probability": p["match_probability"].to_numpy(), "match_weight": p["match_weight"].to_numpy(),
        "linked": p["match_probability"].to_numpy() >= threshold,
        "same_cluster": cl[p["unique_id_l"]] == cl[p["unique_id_r"]],
    })
    for role in ("nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode"):
        col = f"gamma_{role}"
        out[col] = p[col].to_numpy() if col in p.columns else pd.array([pd.NA] * len(p), dtype="Int8")
    n_rec = lk.identity["n_records"].to_numpy()
    out["n_records_l"] = n_rec[out["identity_id_l"]]
    out["n_records_r"] = n_rec[out["identity_id_r"]]
    truth_pairs = None
    if truth is not None:
        it = _identity_truth(lk, recs, truth, np.union1d(out["identity_id_l"].to_numpy(), out["identity_id_r"].to_numpy()))
        tl = it["true_person"].to_numpy()[out["identity_id_l"]]
        tr = it["true_person"].to_numpy()[out["identity_id_r"]]
        out["is_match"] = pd.array(np.where(pd.isna(tl) | pd.isna(tr), None, tl == tr), dtype="boolean")
        out["errors_l"] = it["errors"].to_numpy()[out["identity_id_l"]]
        out["errors_r"] = it["errors"].to_numpy()[out["identity_id_r"]]
        truth_pairs = {"candidate_pairs_true_matches": int(out["is_match"].sum())}
    else:
        out["is_match"] = pd.array([pd.NA] * len(out), dtype="boolean")
        out["errors_l"] = pd.array([pd.NA] * len(out), dtype="string")
        out["errors_r"] = pd.array([pd.NA] * len(out), dtype="string")
    return out, truth_pairs


def _report(recs: pd.DataFrame, built: dict[str, Any], intake: Intake, lk: PersonLinkage, opt: Any,
            threshold: float, review_band: tuple[float, float], backend: str, cohort_dir: Path) -> dict[str, Any]:
    st = built["status"]
    counts = {}
    feed_of = recs["feed"].astype(TEXT)
    for feed in FEED_ORDER:
        if feed not in intake.inputs:
            continue
        s = st[(feed_of == feed).to_numpy(dtype=bool)]
        c = {k: int((s == k).sum()) for k in ("linked", "quarantined", "optout_removed", "optout_blocked")}
        c["linked"] += int((s == "optout_request").sum())
        c["input"] = int(intake.inputs[feed])
        c["reconciles"] = c["input"] == c["linked"] + c["quarantined"] + c["optout_removed"] + c["optout_blocked"]
        counts[feed] = c
    not_opted = ~st.isin(["optout_removed", "optout_blocked", "optout_request"]).to_numpy()
    reasons = built["reason"][not_opted].dropna().value_counts()
    iss = _issues_of(intake.issues, recs, not_opted)
    n = built["summary"]
    return {
        "cohort": cohort_dir.name, "threshold": threshold, "review_band": list(review_band), "backend": backend,
        "extract_date": intake.as_of.date().isoformat(),
        "counts": counts,
        "reconciles": all(c["reconciles"] for c in counts.values()),
        "quarantined": int((st == "quarantined").sum()),
        "quarantine_reasons": {k: int(n) for k, n in sorted(reasons.items())},
        "reason_codes": {**FATAL},
        "validation_issues": {k: int(n) for k, n in sorted(iss["reason"].value_counts().items())},
        "patients": n["patients"], "tumours": n["tumours"], "treatments": n["treatments"],
        "screening_records": n["screening_records"], "cpes_records": n["cpes_records"],
        "treatments_without_tumour": n["treatments_without_tumour"],
        "deaths_linked": n["deaths_linked"],
        "deaths_conflicting": int(built["deaths_conflicting"]),
        "deaths_before_last_activity": n["deaths_before_last_activity"],
        "ndop_opted_out_patients": n["ndop_opted_out_patients"],
        "linkage": {**lk.stats, "training_notes": lk.notes},
        "clerical_review_pairs": None,
        "optouts": {
            "requests": int(counts.get("registration_optouts", {}).get("input", 0)),
            "persons_removed": int(opt.persons),
            "hashes_kept": int(len(opt.hashes)),
            "records_removed": int((st == "optout_removed").sum()),
            "records_blocked": int((st == "optout_blocked").sum()),
        },
    }


def _issues_of(issues: pd.DataFrame, recs: pd.DataFrame, among: np.ndarray) -> pd.DataFrame:
    """The field problems of the records selected by ``among`` (one row per issue and matching
    record, in the issues' order). Only records whose id has an issue are turned into Python
    strings (at national scale the records are tens of millions).

    Example:
        >>> recs = pd.DataFrame({"feed": ["sact", "sact"], "record_id": ["1", "2"]})
        >>> issues = pd.DataFrame({"feed": ["sact", "sact"], "record_id": ["2", "1"], "reason": ["A", "B"]})
        >>> _issues_of(issues, recs, np.array([True, False]))["reason"].tolist()
        ['B']
    """
    issues = issues.astype({"feed": str, "record_id": str})
    rid = recs["record_id"].astype(TEXT)
    among = among & rid.isin(issues["record_id"].unique()).to_numpy(dtype=bool)
    keys = recs.loc[among, ["feed", "record_id"]].astype(str)
    return issues.merge(keys, on=["feed", "record_id"])


def _evaluate(recs: pd.DataFrame, built: dict[str, Any], lk: PersonLinkage, truth: dict[str, pd.DataFrame],
              threshold: float, truth_pairs: dict[str, int] | None, quiet: bool = False) -> dict[str, Any]:
    m = _truth_of(recs, truth)
    usable = (recs["person"].to_numpy() >= 0) & m["patient_id"].notna().to_numpy()
    pred = recs["person"].to_numpy()[usable]
    true = m["patient_id"].to_numpy()[usable].astype(np.int64)
    feed_arr = recs["feed"].astype(TEXT)[usable]
    overall = metrics_from_counts(*pair_counts(pred, true))
    overall.update(cluster_errors(pred, true))
    out: dict[str, Any] = {k: overall[k] for k in ("precision", "recall", "f1", "false_match_rate",
                                                   "missed_match_rate", "persons_split", "persons_merged")}
    ev: dict[str, Any] = {"pairwise_all_feeds": overall, "records_evaluated": int(usable.sum())}
    is_note = (feed_arr == "notifications").to_numpy(dtype=bool)
    notes_m = metrics_from_counts(*pair_counts(pred[is_note], true[is_note]))
    notes_m.update(cluster_errors(pred[is_note], true[is_note]))
    ev["pairwise_notifications"] = notes_m
    # other feeds: is each record in the cluster holding most of its true person's notifications?
    note_main = (pd.DataFrame({"t": true[is_note], "p": pred[is_note]}).groupby(["t", "p"]).size().rename("n")
                 .reset_index().sort_values(["t", "n", "p"], ascending=[True, False, True])
                 .drop_duplicates("t").set_index("t")["p"])
    by_feed = {}
    for feed in FEED_ORDER[1:]:
        sel = (feed_arr == feed).to_numpy(dtype=bool)
        if not sel.any():
            continue
        target = pd.Series(true[sel]).map(note_main).to_numpy()
        has = ~pd.isna(target)
        correct = (pred[sel][has] == target[has]).sum()
        by_feed[feed] = {"records": int(sel.sum()), "with_notified_person": int(has.sum()),
                         "linked_to_right_person": int(correct),
                         "accuracy": float(correct / has.sum()) if has.any() else 1.0}
    ev["record_linkage_by_feed"] = by_feed
    del feed_arr
    ev["errors_by_kind"] = errors_by_kind(pred, true, m["errors"][usable].reset_index(drop=True))
    # threshold trade-off (re-clustering, no re-scoring)
    curve = []
    for t in progress(THRESHOLD_GRID, "link: threshold trade-off", disable=quiet or None):
        lab = lk.recluster(t)
        sel = m["patient_id"].notna().to_numpy()[recs["person"].to_numpy() >= 0]
        c = metrics_from_counts(*pair_counts(lab[sel], true))
        c.update(cluster_errors(lab[sel], true))
        curve.append({"threshold": t, **{k: c[k] for k in ("precision", "recall", "f1", "false_match_rate",
                                                           "persons_split", "persons_merged")}})
    ev["threshold_curve"] = curve
    # tumours
    ev["tumours"] = _tumour_accuracy(recs, built, m, truth)
    in_main, own = main_cluster(pred, true)
    ev["records_missed"] = int((~in_main).sum())
    ev["records_false_merged"] = int((~own).sum())
    if truth_pairs:
        ev.update(truth_pairs)
    out["tumour_count_error"] = ev["tumours"]["tumour_count_error"]
    out["evaluation"] = ev
    return out


def _tumour_accuracy(recs: pd.DataFrame, built: dict[str, Any], m: pd.DataFrame,
                     truth: dict[str, pd.DataFrame]) -> dict[str, Any]:
    rt_tum = m["tumour_id"].to_numpy()
    reg_tum = built["record_tumour"].to_numpy()
    is_note = (recs["feed"] == "notifications").to_numpy()
    sel = is_note & (built["status"] == "linked").to_numpy() & ~pd.isna(rt_tum)
    df = pd.DataFrame({"true": rt_tum[sel].astype(np.int64), "reg": reg_tum[sel].astype(np.int64)})
    expected = int(df["true"].nunique())
    registered = int(built["summary"]["tumours"])
    split = int((df.drop_duplicates().groupby("true").size() > 1).sum())
    merged = int((df.drop_duplicates().groupby("reg").size() > 1).sum())
    out = {"registered": registered, "expected_from_linked_notifications": expected,
           "tumour_count_error": registered - expected,
           "tumour_count_relative_error": (registered - expected) / expected if expected else 0.0,
           "true_tumours_split": split, "registry_tumours_merging_several": merged}
    if "tumours" in truth and "patients" in truth:
        tp = truth["patients"]
        keep = set(tp.loc[~tp["registration_opted_out"].astype(bool), "patient_id"])
        tt = truth["tumours"]
        out["true_tumours_of_registrable_persons"] = int(tt["patient_id"].isin(keep).sum())
    # treatments: registry tumour of each treatment vs the tumour holding its true tumour's notifications
    main = df.groupby(["true", "reg"]).size().rename("n").reset_index().sort_values(
        ["true", "n", "reg"], ascending=[True, False, True]).drop_duplicates("true").set_index("true")["reg"]
    is_tr = recs["feed"].isin(list(TREATMENT_FEEDS)).to_numpy() & (built["status"] == "linked").to_numpy()
    tsel = is_tr & ~pd.isna(rt_tum)
    target = pd.Series(rt_tum[tsel]).map(main)
    got = pd.Series(reg_tum[tsel])
    ok = target.notna() & got.notna() & (target.to_numpy() == got.to_numpy())
    out["treatments_evaluated"] = int(tsel.sum())
    out["treatments_on_right_tumour"] = int(ok.sum())
    out["treatment_tumour_accuracy"] = float(ok.mean()) if tsel.any() else 1.0
    return out


def _round_floats(obj: Any, digits: int = 9) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: _round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round_floats(v, digits) for v in obj]
    return obj


def _write(out: Path, built: dict[str, Any], review: pd.DataFrame, weights: pd.DataFrame, hashes: pd.DataFrame,
           issues: pd.DataFrame, recs: pd.DataFrame, report: dict[str, Any], model: dict[str, Any]) -> None:
    st = built["status"]
    keep = st.isin(["linked", "quarantined"]).to_numpy()
    q = recs.loc[(st == "quarantined").to_numpy(), ["feed", "record_id"]].assign(
        reason=built["reason"][(st == "quarantined").to_numpy()],
        detail=built["detail"][(st == "quarantined").to_numpy()])
    issues = _issues_of(issues, recs, keep)
    # in feed order, then by record: the same whether the feeds were validated whole or in parts
    rank = issues["feed"].map({f: i for i, f in enumerate(FEED_ORDER)}).to_numpy()
    issues = issues.iloc[np.lexsort((issues["record_id"].to_numpy(dtype=object), rank))].reset_index(drop=True)
    report = {k: v_ for k, v_ in report.items() if not k.startswith("_")}
    report["clerical_review_pairs"] = int(len(review))
    with atomic_dir(out) as tmp:
        built["tables"].write(tmp)
        write_parquet(q, tmp / "quarantine.parquet", T.QUARANTINE)
        write_parquet(review, tmp / "clerical_review.parquet", T.CLERICAL_REVIEW)
        write_parquet(hashes, tmp / "optout_hashes.parquet", T.OPTOUT_HASHES)
        write_parquet(issues, tmp / "validation_issues.parquet", T.VALIDATION_ISSUES)
        _write_links(tmp, recs, built, keep)
        write_parquet(weights, tmp / "match_weights.parquet", T.MATCH_WEIGHTS)
        write_json(_round_floats(report), tmp / "link_report.json")
        write_json(_round_floats({k: v for k, v in model.items() if k != "linker_uid"}), tmp / "linkage_model.json")


#: Rows of ``record_links`` put together at a time when the registry was built in parts.
LINK_ROWS = 2_000_000


def _write_links(folder: Path, recs: pd.DataFrame, built: dict[str, Any], keep: np.ndarray) -> None:
    """``record_links.parquet``: one write when the registry was built whole (as before), else
    slices of :data:`LINK_ROWS` rows, so the frame of every record is never held at once."""
    rows = np.flatnonzero(keep)

    def frame(at: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({
            "feed": recs["feed"].iloc[at].to_numpy(), "record_id": recs["record_id"].iloc[at].to_numpy(),
            "status": built["status"].iloc[at].to_numpy(), "patient_id": built["record_patient"].iloc[at].to_numpy(),
            "tumour_id": built["record_tumour"].iloc[at].to_numpy(),
            "treatment_id": built["record_treatment"].iloc[at].to_numpy(),
        })

    if built["parts"] == 1:
        write_parquet(frame(rows), folder / "record_links.parquet", T.RECORD_LINKS)
        return
    appender = ParquetAppender(folder)
    for lo in range(0, max(len(rows), 1), LINK_ROWS):
        appender.append("record_links.parquet", frame(rows[lo:lo + LINK_ROWS]), T.RECORD_LINKS)
    appender.close()
