"""``registry-lab release``: write a release folder atomically and append to the audit log.

``run(cohort_dir, policy, requester)`` reads ``registry/`` (and ``reference/areas`` when the
policy maps areas to regions), applies the policy and writes
``synthetic/<cohort>/releases/<policy>/``:

- one Parquet file per released table (record level) or per count cube (aggregates);
- ``release.json``: policy, purpose, description, whether NDOP was applied, row counts,
  opt-out removals, released fields and their transforms, sha256 of the registry inputs and of
  the released tables — no key, no time, no requester, so the folder is byte-identical for the
  same registry and key;
- ``risk_report.json`` (record level, when the policy declares quasi-identifiers).

Then one JSON line is appended to ``synthetic/<cohort>/releases/audit.jsonl`` (never
rewritten): time (UTC), cohort, policy, purpose, requester, row counts, opt-out removals and the
sha256 of every file written. A policy that would release a forbidden field fails before
anything is read or written; a missing project key fails with the "how to make one" message.

Example:
    >>> import os, tempfile
    >>> from registry_lib.linkage.tiny import tiny_cohort
    >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
    >>> cohort = tiny_cohort()   # the tiny cohort, generated and linked (once per process)
    >>> out = run(cohort, "research_pseudonymised", "A. Analyst (study 03)")
    >>> sorted(p.name for p in out.iterdir())
    ['cpes.parquet', 'patient.parquet', 'release.json', 'risk_report.json', 'screening.parquet', 'treatment.parquet', 'tumour.parquet']
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from registry_lib.engines import check_backend
from registry_lib.errors import RegistryLabError
from registry_lib.io import (
    atomic_dir,
    read_parquet,
    sha256_file,
    sha256_tree,
    write_json,
    write_parquet,
)
from registry_lib.keys import key_fingerprint, project_key
from registry_lib.paths import cohort_dir as _cohort_dir
from registry_lib.paths import project_root
from registry_lib.release.policy import CUBE_DIMENSIONS, TRANSFORMS, Policy, load_policy
from registry_lib.release.records import (
    OPTIONAL_TABLES,
    ArrowFrames,
    ReleaseTables,
    build_aggregate_release,
    build_record_release,
    check_no_registration_optouts,
)
from registry_lib.release.risk import DERIVED, local_suppression, risk_report

AUDIT_LOG = "audit.jsonl"


def _root_of(cohort_dir: Path) -> Path | None:
    """The project checkout holding a cohort folder, if it lies inside one."""
    try:
        return project_root(cohort_dir)
    except RegistryLabError:
        return None


def _resolve_cohort(cohort: str | Path) -> Path:
    if isinstance(cohort, Path) or "/" in str(cohort):
        return Path(cohort)
    return _cohort_dir(str(cohort))


def release_dir(cohort: str | Path, policy: str) -> Path:
    """``synthetic/<cohort>/releases/<policy>`` (cohort by name, or a cohort folder path).

    Example:
        >>> release_dir(Path("/project/synthetic/small"), "research_pseudonymised").as_posix()
        '/project/synthetic/small/releases/research_pseudonymised'
        >>> release_dir("small", "direct_care").relative_to(project_root()).as_posix()
        'synthetic/small/releases/direct_care'
    """
    return _resolve_cohort(cohort) / "releases" / str(policy)


def _registry_files(cohort_dir: Path, tables: list[str]) -> dict[str, Path]:
    """The registry's Parquet files of ``tables`` (an optional table the registry lacks is left out).

    Example:
        >>> _registry_files(Path("/nonexistent/small"), ["patient"])
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: /nonexistent/small/registry: not found; make it with `registry-lab link --cohort small`
    """
    folder = cohort_dir / "registry"
    if not folder.is_dir():
        raise RegistryLabError(
            f"{folder}: not found; make it with `registry-lab link --cohort {cohort_dir.name}`"
        )
    out = {}
    for name in tables:
        path = folder / f"{name}.parquet"
        if path.exists():
            out[name] = path
        elif name not in OPTIONAL_TABLES:   # a registry built without the screening or CPES feed
            raise RegistryLabError(f"{path}: registry table missing; re-run `registry-lab link --cohort {cohort_dir.name}`")
    return out


def _read_registry(cohort_dir: Path, tables: list[str],
                   columns: dict[str, set[str]] | None = None) -> dict[str, pa.Table]:
    """The registry tables as Arrow (converted to pandas only where a step needs it), with only
    the ``columns`` given for a table (all when none are given for it)."""
    out = {}
    for name, path in _registry_files(cohort_dir, tables).items():
        wanted = (columns or {}).get(name)
        names = None if wanted is None else [c for c in pq.read_schema(path).names if c in wanted]
        out[name] = pq.read_table(path, columns=names)
    return out


#: Patient columns every release reads: the opt-out checks need them.
_CHECK_COLUMNS = {"patient_id", "nhs_number", "ndop_opted_out"}


def _columns_used(pol: Policy) -> dict[str, set[str]]:
    """The registry columns a policy reads, by table (released sources, keys, opt-out checks).

    Example:
        >>> from registry_lib.release.policy import load_policy
        >>> sorted(_columns_used(load_policy("aggregate_publication"))["patient"])
        ['ndop_opted_out', 'nhs_number', 'patient_id', 'sex']
    """
    if pol.output == "record_level":
        used = {t: {f.source for f in fs} | {"patient_id"} for t, fs in pol.tables.items()}
    else:
        sql = " ".join(CUBE_DIMENSIONS[d][0] for dims in pol.aggregates.values() for d in dims)
        used = {"tumour": set(re.findall(r"\bt\.(\w+)", sql)) | {"patient_id"},
                "patient": set(re.findall(r"\bp\.(\w+)", sql))}
    used["patient"] = used.get("patient", set()) | _CHECK_COLUMNS
    return used


def _apply_risk(policy: Policy, built: ReleaseTables) -> dict[str, Any] | None:
    risk = policy.risk
    if not risk or "tumour" not in built.tables:
        return None
    qis = list(risk.get("quasi_identifiers") or [])
    k = int(risk.get("k", 5))
    report = {"before_suppression": risk_report(_risk_tables(built, policy.patient_key, qis),
                                                policy.patient_key, qis, k)}
    if risk.get("local_suppression"):
        new, summary = local_suppression(built.tables, policy.patient_key, qis, k, risk.get("suppression_order"))
        built.tables.update(new)
        report["local_suppression"] = summary
        report["after_suppression"] = risk_report(built.tables, policy.patient_key, qis, k)
    report["identifiable_by_design"] = policy.purpose in ("direct_care", "research_identifiable")
    return report


def _risk_tables(built: ReleaseTables, patient_key: str, qis: list[str]) -> dict[str, pd.DataFrame]:
    """The columns the risk report reads, with the patient key as integer codes (the same classes).

    Only Arrow-built tables are reduced; tables given as DataFrames are returned as they are.
    """
    frames = built.tables
    if not isinstance(frames, ArrowFrames) or frames.arrow("tumour") is None:
        return frames
    tumour, patient = frames.arrow("tumour"), frames.arrow("patient")
    used = set(qis) | {DERIVED[q][1] for q in qis if q in DERIVED}
    if patient is None or patient_key not in patient.column_names or patient_key not in tumour.column_names:
        return {"tumour": frames["tumour"], **({"patient": frames["patient"]} if "patient" in frames else {})}
    codes = pc.dictionary_encode(pa.chunked_array([*tumour.column(patient_key).chunks,
                                                   *patient.column(patient_key).chunks])).combine_chunks().indices
    out = {}
    for name, table, start in (("tumour", tumour, 0), ("patient", patient, tumour.num_rows)):
        cols = [c for c in table.column_names if c in used and c != patient_key]
        # text as pandas categories (the same classes; no Python string per record)
        df = pa.table({c: pc.dictionary_encode(table.column(c)) if pa.types.is_string(table.schema.field(c).type)
                       else table.column(c) for c in cols}).to_pandas(date_as_object=False)
        df.insert(0, patient_key, codes.slice(start, table.num_rows).to_numpy(zero_copy_only=False))
        out[name] = df
    return out


def _check_registration_optouts(cohort_dir: Path, patient: pd.DataFrame, key: bytes | None,
                                root: Path | None) -> str:
    """Refuse to release if a registration opt-out is still in the registry (a linkage bug)."""
    path = cohort_dir / "registry" / "optout_hashes.parquet"
    if not path.exists():
        return "removed by linkage (no registry/optout_hashes.parquet to check against)"
    if key is None:
        try:
            key = project_key(root)
        except RegistryLabError:  # the hashes cannot be recomputed without the key
            return "removed by linkage (not re-checked: no project key)"
    leaked = check_no_registration_optouts(patient, read_parquet(path), key)
    if leaked:
        raise RegistryLabError(
            f"{cohort_dir.name}: {leaked} registry patient(s) match registration opt-out hashes "
            "in registry/optout_hashes.parquet; linkage must remove them before any release"
        )
    return "removed by linkage; checked: no registry patient matches registry/optout_hashes.parquet"


def run(cohort_dir: Path, policy: str | Path, requester: str, backend: str = "duckdb") -> Path:
    """Release a cohort's registry under ``policy`` for ``requester``; return the release folder.

    Args:
        cohort_dir: the cohort folder (``synthetic/<name>``) holding ``registry/``.
        policy: a policy name in ``params/release/`` or a path to a policy YAML.
        requester: who asked for the release (recorded in the audit log only).
        backend: ``"duckdb"`` (default) or ``"spark"``: the engine of the release. On Spark an
            aggregates policy's cubes are computed by Spark SQL, and a record-level policy's
            tables on the executors (reading the registry files, opt-outs, every transform,
            pseudonyms and re-keyed ids, the sort; :mod:`registry_lib.release.spark_records`),
            with the project key sent to the executors inside the task closure. The files are
            byte-identical to the DuckDB ones; the driver still re-checks the registration
            opt-outs and writes the files and the risk report.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     cohort = Path(d) / "demo"   # a linked registry: three patients, four tumours
        ...     _ = write_parquet(pd.DataFrame({"patient_id": [1, 2, 3], "sex": [1, 2, 2]}),
        ...                       cohort / "registry" / "patient.parquet")
        ...     _ = write_parquet(pd.DataFrame({"tumour_id": [10, 11, 12, 13], "patient_id": [1, 2, 3, 3],
        ...                                     "site_icd10": ["C61", "C50", "C50", "C18"]}),
        ...                       cohort / "registry" / "tumour.parquet")
        ...     policy = Path(d) / "site_counts.yaml"   # YAML; JSON is YAML too
        ...     _ = policy.write_text(json.dumps({
        ...         "purpose": "aggregate_publication", "description": "Tumours by site and sex.",
        ...         "national_data_opt_out": False, "output": "aggregates",
        ...         "aggregates": {"by_site": {"group_by": ["site_icd10", "sex"]}}}))
        ...     out = run(cohort, policy, "A. Analyst (incidence tables)")
        ...     print(out.relative_to(d).as_posix(), sorted(p.name for p in out.iterdir()))
        ...     print(read_parquet(out / "by_site.parquet").to_string())
        ...     read_audit(cohort).loc[0, ["policy", "requester", "row_counts"]].tolist()
        demo/releases/site_counts ['by_site.parquet', 'release.json']
          site_icd10  sex  count
        0        C18    2      1
        1        C50    2      2
        2        C61    1      1
        ['site_counts', 'A. Analyst (incidence tables)', {'by_site': 3}]

    A policy releasing a forbidden field is refused before anything is read or written:

        >>> with tempfile.TemporaryDirectory() as d:
        ...     leaky = Path(d) / "leaky.yaml"
        ...     _ = leaky.write_text(json.dumps({
        ...         "purpose": "research_pseudonymised", "description": "NHS numbers, by mistake.",
        ...         "national_data_opt_out": True, "output": "record_level", "patient_key": "pseudo_id",
        ...         "tables": {"patient": {"pseudo_id": {"from": "nhs_number", "transform": "pseudonym"},
        ...                                "nhs_number": "copy"}}}))
        ...     try:
        ...         run(Path(d) / "demo", leaky, "A. Analyst")
        ...     except RegistryLabError as e:
        ...         print(str(e).split("leaky.yaml: ")[1])
        ...     (Path(d) / "demo").exists()
        field patient.nhs_number releases nhs_number unchanged, which policy leaky (purpose research_pseudonymised) forbids; nothing was released
        False
        >>> run(Path("synthetic/demo"), "aggregate_publication", " ")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: release: --requester must say who asked for the release
    """
    cohort_dir = Path(cohort_dir)
    if not str(requester or "").strip():
        raise RegistryLabError("release: --requester must say who asked for the release")
    root = _root_of(cohort_dir)
    pol = load_policy(policy, root)  # refuses forbidden fields before anything is read
    key = project_key(root) if pol.needs_key else None
    link_report = _link_report(cohort_dir)
    _check_key_fingerprint(cohort_dir, link_report, key, root)
    check_backend(backend)
    if pol.output == "record_level":
        tables = sorted({"patient", *pol.tables})
        if backend == "spark":   # the executors read the registry files; the driver reads only
            sources: dict[str, Any] = _registry_files(cohort_dir, tables)   # what its checks need
            registry = {**sources, **_read_registry(cohort_dir, ["patient"], {"patient": {"nhs_number"}})}
        else:
            registry = sources = _read_registry(cohort_dir, tables, _columns_used(pol))
        areas = None
        if any(f.transform == "region" for fs in pol.tables.values() for f in fs):
            areas_path = cohort_dir / "reference" / "areas.parquet"
            if not areas_path.exists():
                raise RegistryLabError(f"{areas_path}: not found (needed to map areas to regions)")
            areas = read_parquet(areas_path)
        built = build_record_release(sources, pol, areas=areas, key=key, backend=backend)
        risk = _apply_risk(pol, built)
    else:
        registry = _read_registry(cohort_dir, ["patient", "tumour"], _columns_used(pol))
        built = build_aggregate_release(registry, pol, backend=backend)
        risk = None
    built.notes["registration_opt_outs"] = _check_registration_optouts(
        cohort_dir, registry["patient"], key, root)
    patient = registry["patient"]
    unchecked = (int(pc.sum(pc.is_null(patient.column("nhs_number"), nan_is_null=True)).as_py() or 0)
                 if "nhs_number" in patient.column_names else 0)
    built.notes["national_data_opt_out"] = {
        "applied": pol.national_data_opt_out,
        "patients_without_valid_nhs_number": unchecked,
        "unchecked_patients": (("excluded" if pol.ndop_unchecked == "exclude" else "included")
                               if pol.national_data_opt_out else "not applicable"),
        "ndop_entries_with_invalid_nhs_number": link_report.get("ndop_invalid_entries"),
        "matched_by": "every valid NHS number on any record linked to the patient",
    }
    inputs = {f"registry/{n}.parquet": sha256_file(cohort_dir / "registry" / f"{n}.parquet") for n in registry}
    final = cohort_dir / "releases" / pol.name
    with atomic_dir(final) as tmp:
        # each table in its own thread (Parquet encoding and zstd release the GIL); same bytes
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda name: _write_table(built, name, tmp), list(built.tables)))
        if risk is not None:
            write_json(risk, tmp / "risk_report.json")
        write_json(_manifest(pol, built, inputs, tmp), tmp / "release.json")
    files = sha256_tree(final)
    append_audit(cohort_dir / "releases" / AUDIT_LOG, {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cohort": cohort_dir.name,
        "policy": pol.name,
        "purpose": pol.purpose,
        "requester": str(requester).strip(),
        "row_counts": _row_counts(built),
        "opt_out_removals": built.opt_out_removals,
        "national_data_opt_out_applied": pol.national_data_opt_out,
        "policy_params_sha256": pol.params_hash,
        "release": f"releases/{pol.name}",
        "files_sha256": files,
    })
    return final


def _write_table(built: ReleaseTables, name: str, folder: Path) -> Path:
    """Write table ``name`` to ``folder``: its Arrow table as built, else the DataFrame with its schema."""
    frames = built.tables
    table = frames.arrow(name) if isinstance(frames, ArrowFrames) else None
    if table is not None:
        return write_parquet(table, folder / f"{name}.parquet")
    return write_parquet(frames[name], folder / f"{name}.parquet", built.schemas[name])


def _row_counts(built: ReleaseTables) -> dict[str, int]:
    """Rows of each released table (Arrow tables are not converted to count them)."""
    frames = built.tables
    return {n: frames.rows(n) if isinstance(frames, ArrowFrames) else len(frames[n]) for n in frames}


def _manifest(pol: Policy, built: ReleaseTables, inputs: dict[str, str], folder: Path) -> dict[str, Any]:
    fields = {
        table: {f.name: (PSEUDONYM_SOURCE if f.transform == "pseudonym" else
                         f.transform if f.source == f.name else f"{f.transform} of {f.source}")
                for f in specs}
        for table, specs in pol.tables.items()
    }
    return {
        "policy": pol.name,
        "purpose": pol.purpose,
        "description": pol.description,
        "output": pol.output,
        "national_data_opt_out_applied": pol.national_data_opt_out,
        "registration_opt_outs": built.notes.get("registration_opt_outs"),
        "national_data_opt_out": built.notes.get("national_data_opt_out"),
        "row_counts": _row_counts(built),
        "opt_out_removals": built.opt_out_removals,
        "fields": fields or {c: list(df.columns) for c, df in built.tables.items()},
        "transforms": {t: TRANSFORMS[t][0] for t in sorted({f.transform for fs in pol.tables.values() for f in fs})},
        "patient_key": pol.patient_key,
        "disclosure": vars(pol.disclosure),
        "policy_params_sha256": pol.params_hash,
        "inputs_sha256": inputs,
        "files_sha256": {p.name: sha256_file(p) for p in sorted(folder.glob("*.parquet"))},
    }


#: What a pseudonym is made from, as release.json says it.
PSEUDONYM_SOURCE = ("pseudonym: keyed hash (HMAC-SHA256, project key) of the NHS number, or of the "
                    "registry patient_id for a patient with none")


def _link_report(cohort_dir: Path) -> dict[str, Any]:
    path = cohort_dir / "registry" / "link_report.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        raise RegistryLabError(f"{path}: not valid JSON; re-run `registry-lab link --cohort {cohort_dir.name}`") from None


def _check_key_fingerprint(cohort_dir: Path, link_report: dict[str, Any], key: bytes | None,
                           root: Path | None) -> None:
    """Refuse a release under another project key than the one the registry was linked under."""
    made_with = link_report.get("key_fingerprint")
    if not made_with:
        return
    if key is None:
        try:
            key = project_key(root)
        except RegistryLabError:
            return  # no key: nothing keyed is released, and the opt-out re-check says so
    if key_fingerprint(key) != made_with:
        raise RegistryLabError(
            f"synthetic/{cohort_dir.name}/registry: was linked under another project key "
            f"(fingerprint {made_with}, the current key's is {key_fingerprint(key)}); use that key "
            f"or re-run `registry-lab link --cohort {cohort_dir.name}`"
        )


def append_audit(path: Path, entry: dict[str, Any]) -> None:
    """Append one line to the audit log (opened for appending only; never rewritten).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     log = Path(d) / "releases" / AUDIT_LOG
        ...     append_audit(log, {"policy": "direct_care", "requester": "Dr B. Clinician"})
        ...     append_audit(log, {"requester": "A. Analyst", "policy": "research_pseudonymised",
        ...                        "time": dt.date(2024, 5, 1)})
        ...     print(log.read_text(), end="")
        {"policy": "direct_care", "requester": "Dr B. Clinician"}
        {"policy": "research_pseudonymised", "requester": "A. Analyst", "time": "2024-05-01"}
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, sort_keys=True, default=str) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def read_audit(cohort: str | Path) -> pd.DataFrame:
    """The audit log of a cohort's releases, one row per release run.

    Example:
        >>> read_audit(Path("/nonexistent")).empty
        True
    """
    path = _resolve_cohort(cohort) / "releases" / AUDIT_LOG
    if not path.exists():
        return pd.DataFrame(columns=["time", "policy", "purpose", "requester"])
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def load_release(cohort: str | Path, policy: str, tables: Sequence[str] | None = None,
                 columns: Mapping[str, Sequence[str]] | None = None) -> dict[str, pd.DataFrame]:
    """The tables of a release, ``{table name: DataFrame}`` — what a study notebook reads.

    Args:
        cohort: cohort name (``synthetic/<cohort>``) or a cohort folder.
        policy: the policy the release was made under, e.g. ``"research_pseudonymised"``.
        tables: read only these tables (e.g. ``["patient", "tumour", "treatment"]``); default
            every table of the release. On the national release the CPES and screening tables
            a study does not use are ~1 GB in memory.
        columns: ``{table: [column, ...]}``: read only these columns of those tables (the
            others whole).

    Raises a clear error naming the command to run when the release does not exist.

    Example:
        >>> load_release("no_such_cohort", "research_pseudonymised")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: synthetic/no_such_cohort/releases/research_pseudonymised: not found; make it with `registry-lab release --cohort no_such_cohort --policy research_pseudonymised --requester "<who>"`
    """
    folder = release_dir(cohort, policy)
    name = _resolve_cohort(cohort).name
    if not (folder / "release.json").exists():
        raise RegistryLabError(
            f"synthetic/{name}/releases/{policy}: not found; make it with `registry-lab release "
            f"--cohort {name} --policy {policy} --requester \"<who>\"`"
        )
    info = json.loads((folder / "release.json").read_text())
    if info.get("synthetic"):
        announce_synthetic(info.get("notice") or f"SYNTHETIC DATA: release {policy} is a synthetic twin; "
                           "no record is a real person.")
    files = {p.stem: p for p in sorted(folder.glob("*.parquet"))}
    if tables is not None:
        unknown = [t for t in tables if t not in files]
        if unknown:
            raise RegistryLabError(f"synthetic/{name}/releases/{policy}: no table(s) {unknown} "
                                   f"(it has {sorted(files)})")
        files = {t: files[t] for t in files if t in set(tables)}
    columns = dict(columns or {})
    unknown = [t for t in columns if t not in files]
    if unknown:
        raise RegistryLabError(f"synthetic/{name}/releases/{policy}: columns given for no table(s) {unknown}")
    return {stem: read_parquet(p, columns=list(columns[stem]) if stem in columns else None)
            for stem, p in files.items()}


SYNTHETIC_BANNER = "registry_lab_synthetic"


def announce_synthetic(notice: str) -> None:
    """Show a synthetic-data banner in a notebook (``render_html`` repeats it at the top).

    Outside a Jupyter kernel nothing is shown: the command that made the twin says it is synthetic.

    Example:
        >>> announce_synthetic("SYNTHETIC DATA")  # not in a kernel: nothing shown
    """
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return
    from html import escape

    display(HTML(f'<div style="border:3px solid #b00020;background:#fde7ea;color:#7a0014;padding:10px 14px;'
                 f'font-size:1.15em;font-weight:bold">{escape(notice)}</div>'),
            metadata={SYNTHETIC_BANNER: True})


def release_info(cohort: str | Path, policy: str) -> dict[str, Any]:
    """``release.json`` of a release (policy, purpose, row counts, opt-out removals, ...).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     folder = release_dir(Path(d) / "small", "aggregate_publication")
        ...     _ = write_json({"policy": "aggregate_publication", "row_counts": {"incidence": 412}},
        ...                    folder / "release.json")
        ...     release_info(Path(d) / "small", "aggregate_publication")["row_counts"]
        {'incidence': 412}
        >>> release_info(Path("/nonexistent/small"), "direct_care")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: synthetic/small/releases/direct_care: not found; make it with `registry-lab release --cohort small --policy direct_care --requester "<who>"`
    """
    folder = release_dir(cohort, policy)
    if not (folder / "release.json").exists():
        load_release(cohort, policy)
    return json.loads((folder / "release.json").read_text())
