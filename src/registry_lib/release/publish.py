"""Publishing tables from a study: the only door from a notebook to ``reports/<study>/tables/``.

:func:`publish_table` applies the disclosure control of a release policy (``disclosure:`` in
``params/release/<policy>.yaml``: counts 1–7 suppressed, others rounded to 5, secondary
suppression; midpoint-6 for survival), refuses a table that is still unsafe
(:func:`~registry_lib.release.disclosure.check_table`), writes ``tables/<name>.csv`` and a
sidecar ``tables/<name>.meta.json`` that declares which columns are counts. One line in a
notebook::

    publish_table(counts, output_dir, "incidence_by_site_region",
                  index="site_icd10", columns="region")          # 2-D table, margins added
    publish_table(rates, output_dir, "rates_by_site", kind="rates")  # long table of rates
    publish_table(km, output_dir, "km_by_stage", kind="survival")    # Kaplan–Meier curve
    publish_table(hrs, output_dir, "hazard_ratios", kind="estimates")  # estimates + counts
    publish_table(percentages(protected), output_dir, "site_share", kind="estimates")

Kinds:

- ``"counts"``: a 2-D table of counts (``df`` itself, or a long ``df`` pivoted with ``index=``
  and ``columns=`` on its count column) → :func:`protect_table` (margins added); or, with only
  ``count_columns=``, a long table protected cell by cell.
- ``"rates"``: a long table (e.g. from ``aggregate_rates``): count columns protected cell by
  cell; ``crude_rate`` (and ``crude_lower/upper``) recomputed from the protected count and the
  population ("rates from protected values"); other derived figures (DSR and its limits)
  blanked wherever the count is suppressed.
- ``"estimates"``: HRs, SIRs with their O and E, …: count columns protected; the estimates of
  a row whose count is suppressed are blanked; ``expected`` and ``population`` kept. Also for
  percentages computed from a protected table (``percentages(protect_table(...))``).
- ``"survival"``: a Kaplan–Meier table → :func:`protect_km`.

Which fields are counts (here, and in :func:`scan_reports_for_unsafe_counts`): the sidecar's
``count_columns`` when there is one; otherwise every field whose name contains a count word
(:data:`COUNT_WORDS`: ``n``, ``count``, ``observed``, ``cases``, ``events``, ``deaths``,
``patients``, …, e.g. ``n_at_risk``, ``tumour_count``, ``observed``) and no word saying it is
something else (:data:`NOT_COUNT_WORDS`: ``rate``, ``expected``, ``percent``, ``lower``, ``sim``,
``bands``, …). Name counts of people accordingly; a sidecar ``<file>.meta.json`` may also list
``not_counts`` for a field the convention misreads.

Example:
    >>> import tempfile
    >>> t = pd.DataFrame({"site_icd10": ["C18", "C18", "C50"], "sex": [1, 2, 2], "count": [12, 3, 40]})
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = publish_table(t, d, "by_site_sex", index="site_icd10", columns="sex",
    ...                          policy={"rounding": 5, "secondary": False})
    ...     print(path.read_text())
    site_icd10,1,2,Total
    C18,10,,15
    C50,0,40,40
    Total,10,45,55
    <BLANKLINE>
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.io import write_json
from registry_lib.release.disclosure import check_table, protect_counts, protect_table
from registry_lib.release.km import KM_COUNTS, protect_km
from registry_lib.release.policy import Disclosure, Policy, load_policy

KINDS = ("counts", "rates", "survival", "estimates")
#: A field is a count when a word of its name is one of these...
COUNT_WORDS = frozenset({
    "n", "count", "counts", "observed", "obs", "cases", "events", "deaths", "patients",
    "persons", "people", "tumours", "tumors", "records", "registrations", "diagnoses",
    "women", "men", "recalled", "censored",
})
#: ...and none of these (derived figures, or counts of things other than people).
NOT_COUNT_WORDS = frozenset({
    "rate", "rates", "ratio", "percent", "pct", "share", "prop", "proportion", "expected",
    "mean", "median", "per", "population", "lower", "upper", "sir", "hr", "dsr", "se", "ci",
    "p", "pvalue", "llr", "rr", "or", "relative", "estimate", "survival", "time", "year", "years", "age",
    "id", "sim", "sims", "simulations", "reps", "replications", "seed", "seeds", "bands",
    "sites", "clusters", "areas", "regions", "sources", "steps", "iterations", "bootstrap",
    "min", "max", "threshold", "k", "months", "days", "weeks", "quintile", "level",
})
SAFE_COLUMNS = ("population", "expected", "person_years", "per")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_count_column(name: Any) -> bool:
    """Whether a column or JSON field name declares a count of people or events.

    Example:
        >>> [is_count_column(c) for c in ["n_at_risk", "observed", "tumour_count", "crude_rate",
        ...                               "expected", "n_sim", "sex"]]
        [True, True, True, False, False, False, False]
    """
    words = [w for w in re.split(r"[^a-z0-9]+", str(name).lower()) if w]
    return bool(words) and any(w in COUNT_WORDS for w in words) and not any(
        w in NOT_COUNT_WORDS for w in words
    )


def _settings(policy: str | Path | Policy | dict | Disclosure) -> Disclosure:
    if isinstance(policy, Disclosure):
        return policy
    if isinstance(policy, Policy):
        return policy.disclosure
    if isinstance(policy, dict):
        return Disclosure(**policy)
    return load_policy(policy).disclosure


def _output_folder(output_dir: str | Path) -> Path:
    from registry_lib.reporting import study_output_dir

    folder = study_output_dir(output_dir) / "tables"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


RATE_DECIMALS = 1  # rates and DSRs are published to one decimal place


def protected_rates(
    rates: pd.DataFrame, settings: Disclosure, *, decimals: int = RATE_DECIMALS, level: float = 0.95
) -> pd.DataFrame:
    """Prepare a table of :func:`aggregate_rates` for ``publish_table(kind="rates")``.

    The count stays exact (``publish_table`` protects it). The DSR is rounded to ``decimals``
    and its Dobson limits are recomputed with the *protected* count as O:
    ``DSR + sqrt(Var(DSR)/O') × (O'_L − O')`` (and likewise the upper limit), where ``Var(DSR)``
    is recovered from the exact limits; rows whose count is suppressed get missing limits.
    Zero-count rows keep Dobson's zero-event upper limit.

    Example:
        >>> r = pd.DataFrame({"count": [0, 5, 23], "population": [1e4, 1e4, 1e4],
        ...                   "dsr": [0.0, 48.0, 231.0], "dsr_lower": [0.0, 15.6, 146.0],
        ...                   "dsr_upper": [36.9, 112.0, 346.6]})
        >>> from registry_lib.release.policy import Disclosure
        >>> s = Disclosure(threshold=7, rounding=5, secondary=True)
        >>> protected_rates(r, s)[["count", "dsr", "dsr_lower", "dsr_upper"]]
           count    dsr  dsr_lower  dsr_upper
        0      0    0.0        0.0       36.9
        1      5   48.0        NaN        NaN
        2     23  231.0      146.0      345.7
    """
    from registry_lib.stats.rates import poisson_ci

    need = {"count", "dsr", "dsr_lower", "dsr_upper"}
    if not need <= set(rates.columns):
        raise RegistryLabError(f"protected_rates: the table lacks {sorted(need - set(rates.columns))}")
    out = rates.copy()
    o = rates["count"].to_numpy(dtype=float)
    dsr = rates["dsr"].to_numpy(dtype=float)
    published = protect_counts(rates["count"], settings.threshold, settings.rounding)
    o_p = pd.array(published, dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    _, hi_exact = poisson_ci(o, level, "exact")
    with np.errstate(divide="ignore", invalid="ignore"):
        # Dobson: upper = dsr + sqrt(var/O) (O_U - O)  ->  var = O ((upper - dsr) / (O_U - O))^2
        var = np.where(o > 0, o * ((rates["dsr_upper"].to_numpy(dtype=float) - dsr) / (hi_exact - o)) ** 2, 0.0)
        lo_p, hi_p = poisson_ci(np.nan_to_num(o_p), level, "exact")
        scale = np.sqrt(var / o_p)
        lower = np.maximum(dsr + scale * (lo_p - o_p), 0.0)
        upper = dsr + scale * (hi_p - o_p)
    zero = o == 0
    lower = np.where(zero, rates["dsr_lower"].to_numpy(dtype=float), np.where(o_p > 0, lower, np.nan))
    upper = np.where(zero, rates["dsr_upper"].to_numpy(dtype=float), np.where(o_p > 0, upper, np.nan))
    out["dsr"] = np.round(dsr, decimals)
    out["dsr_lower"] = np.round(lower, decimals)
    out["dsr_upper"] = np.round(upper, decimals)
    return out


def _protect_long(
    df: pd.DataFrame, counts: list[str], s: Disclosure, kind: str,
    derived_columns: Sequence[str] | None, per: float,
) -> pd.DataFrame:
    if s.rounding is None:
        raise RegistryLabError(
            "publish_table: the policy publishes exact counts (rounding: null), which is safe only "
            "for a 2-D table with secondary suppression: pass index= and columns="
        )
    out = df.copy()
    suppressed = np.zeros(len(df), dtype=bool)
    for c in counts:
        out[c] = protect_counts(df[c], s.threshold, s.rounding)
        suppressed |= (out[c].isna() & df[c].notna()).to_numpy()
    recomputed: list[str] = []
    if kind == "rates" and {"population", "crude_rate"} <= set(df.columns):
        from registry_lib.stats.rates import poisson_ci

        base = "count" if "count" in counts else counts[0]
        c = out[base].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        pop = df["population"].to_numpy(dtype=float)
        out["crude_rate"] = c / pop * per
        recomputed.append("crude_rate")
        lo, hi = poisson_ci(np.nan_to_num(c), 0.95, "exact")
        for col, v in (("crude_lower", lo), ("crude_upper", hi)):
            if col in df.columns:
                out[col] = np.where(np.isnan(c), np.nan, v / pop * per)
                recomputed.append(col)
    if kind == "rates" and {"count", "dsr", "dsr_lower", "dsr_upper"} <= set(df.columns):
        # Limits built on the exact count would give the count away (their asymmetry is a
        # function of it): recompute them from the protected count, and round the DSR.
        dobson = protected_rates(df, s, decimals=RATE_DECIMALS)
        for col in ("dsr", "dsr_lower", "dsr_upper"):
            out[col] = dobson[col].astype("Float64").mask(suppressed)
            recomputed.append(col)
        for col in ("crude_rate", "crude_lower", "crude_upper"):
            if col in out.columns:
                out[col] = out[col].astype(float).round(RATE_DECIMALS)
    if derived_columns is None:
        derived = [c for c in df.columns if c not in counts and c not in SAFE_COLUMNS
                   and c not in recomputed and pd.api.types.is_float_dtype(df[c])]
    else:
        derived = list(derived_columns)
    for c in derived:
        out[c] = out[c].astype("Float64").mask(suppressed)
    return out


SUPPRESSED_FLAG = "suppressed"  # the CSV column flagging rows with a suppressed count


def publish_table(
    df: pd.DataFrame,
    output_dir: str | Path,
    name: str,
    *,
    count_columns: Sequence[str] | None = None,
    index: str | Sequence[str] | None = None,
    columns: str | None = None,
    kind: str = "counts",
    policy: str | Path | Policy | dict | Disclosure = "aggregate_publication",
    derived_columns: Sequence[str] | None = None,
    per: float = 100_000,
    km_options: dict[str, Any] | None = None,
) -> Path:
    """Protect a table by the policy's disclosure rules and write ``<output_dir>/tables/<name>.csv``.

    Args:
        df: the table (see the kinds in the module docstring).
        output_dir: the study's output folder (``reports/<study>``; relative to the project root).
        name: file name without extension (letters, digits, ``_ . -``).
        count_columns: the count columns (default: by the naming convention; for a pivot, the one
            column holding the counts, default ``count``).
        index, columns: pivot a long table of counts into a 2-D table (kind ``counts``).
        kind: ``counts``, ``rates``, ``survival`` or ``estimates``.
        policy: the release policy whose ``disclosure:`` applies (name, path, Policy) or the
            settings themselves as a dict (``threshold``, ``rounding``, ``secondary``).
        derived_columns: columns blanked where a count is suppressed (default: float columns
            other than counts, ``population`` and ``expected``).
        per: the ``per`` of rates (kind ``rates``; crude rates are recomputed with it).
        km_options: extra arguments of :func:`protect_km` (e.g. ``{"time_grid": 30}``).

    Returns:
        The path of the CSV written. Raises :class:`UnsafeTableError` if the table would still
        disclose a small count, and writes nothing then.

    Example:
        >>> import tempfile
        >>> t = pd.DataFrame({"count": [12, 2, 30]}, index=pd.Index(["C18", "C50", "C61"], name="site_icd10"))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = publish_table(t, d, "by_site", policy={"rounding": 5, "secondary": False})
        ...     print(path.read_text())
        site_icd10,count,Total
        C18,10,10
        C50,,
        C61,30,30
        Total,45,45
        <BLANKLINE>
    """
    if not _NAME.match(str(name)):
        raise RegistryLabError(f"publish_table: name {name!r} must be letters, digits, '_', '.' or '-'")
    if kind not in KINDS:
        raise RegistryLabError(f"publish_table: kind={kind!r} must be one of {', '.join(KINDS)}")
    s = _settings(policy)
    write_index = False
    if kind == "survival":
        out = protect_km(df, threshold=s.threshold, rounding=s.survival_rounding, **(km_options or {}))
        counts = [c for c in KM_COUNTS if c in out.columns]
        check_table(out, s.threshold, s.survival_rounding, False, count_columns=counts, name=name)
    elif kind == "counts" and (index is not None or columns is not None or count_columns is None):
        if (index is None) != (columns is None):
            raise RegistryLabError("publish_table: give both index= and columns= to pivot a long table")
        if index is not None:
            values = list(count_columns) if count_columns is not None else ["count"]
            if len(values) != 1 or values[0] not in df.columns:
                raise RegistryLabError(f"publish_table: pivot needs one count column in the table, not {values}")
            table = df.pivot_table(index=index, columns=columns, values=values[0], aggfunc="sum",
                                   fill_value=0, observed=True)
        else:
            table = df
        out = protect_table(table, s.threshold, s.rounding, s.secondary)
        # The LP attack is re-run only on small tables: protect_table's pattern is safe by
        # construction (and tested by LP on thousands of tables); the value checks always run.
        check_table(out, s.threshold, s.rounding, s.secondary, name=name,
                    attack=int(out.isna().to_numpy().sum()) <= 60)
        counts = [str(c) for c in out.columns]
        write_index = True
    else:
        counts = list(count_columns) if count_columns is not None else [
            c for c in df.columns if is_count_column(c)]
        missing = [c for c in counts if c not in df.columns]
        if missing:
            raise RegistryLabError(f"publish_table: count column(s) {missing} not in the table")
        if not counts and kind != "estimates":
            raise RegistryLabError(
                f"publish_table: {name} has no count column; name it with count_columns= "
                f"(columns: {list(df.columns)})"
            )
        out = _protect_long(df, counts, s, kind, derived_columns, per)
        check_table(out, s.threshold, s.rounding, False, count_columns=counts, name=name)
        write_index = not isinstance(out.index, pd.RangeIndex)
    folder = _output_folder(output_dir)
    path = folder / f"{name}.csv"
    count_cols = [c for c in out.columns if str(c) in set(map(str, counts))]
    written = out
    if not (kind == "counts" and write_index) and count_cols and SUPPRESSED_FLAG not in out.columns:
        # machine-readable: a suppressed cell is empty, and the row says it holds one
        written = out.assign(**{SUPPRESSED_FLAG: out[count_cols].isna().any(axis=1)})
    text = written.to_csv(index=write_index, lineterminator="\n", float_format="%.12g")
    meta = {
        "table": name,
        "kind": kind,
        "count_columns": [str(c) for c in counts],
        "threshold": s.threshold,
        "rounding": s.survival_rounding if kind == "survival" else s.rounding,
        "secondary_suppression": bool(s.secondary) if write_index else False,
        "suppressed_cells": int(out[count_cols].isna().sum().sum()),
        "suppressed_flag": SUPPRESSED_FLAG if written is not out else None,
        "policy": policy if isinstance(policy, str) else getattr(policy, "name", "settings"),
        "written_by": "registry_lib.release.publish_table",
    }
    write_json(meta, folder / f"{name}.meta.json")
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------------
# the scan over reports/
# ---------------------------------------------------------------------------------------------
def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(path.name.rsplit(".", 1)[0] + ".meta.json")
    if side.exists():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError:
            return {"_broken": True}
    return {}


def _small(value: Any, threshold: int) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return float(value).is_integer() and 1 <= value <= threshold


def _scan_json(node: Any, where: str, counting: bool, meta: dict, threshold: int, out: list[str]) -> None:
    declared = set(meta.get("count_columns", []))
    exempt = set(meta.get("not_counts", []))
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            is_count = key not in exempt and (counting or key in declared or is_count_column(key))
            _scan_json(value, here, is_count, meta, threshold, out)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _scan_json(value, f"{where}[{i}]", counting, meta, threshold, out)
    elif counting and _small(node, threshold):
        out.append(f"{where} = {node:g}")


def scan_reports_for_unsafe_counts(reports_dir: str | Path, threshold: int = 7) -> list[str]:
    """Every unprotected count 1..threshold in the CSV and JSON tables under ``reports_dir``.

    Count fields are declared by the sidecar ``<file>.meta.json`` (``count_columns``, written by
    :func:`publish_table`) or recognised by name (:func:`is_count_column`; JSON fields nested
    under a count field are counts too). A CSV in a ``tables/`` folder without a sidecar was
    not written by :func:`publish_table` and is reported as well. Hidden folders (``.state``),
    sidecars and the pipeline's ``manifest.json`` are skipped.

    Returns:
        One line per finding, ``"<file>: <field/row> = <value>"``; empty when all is safe.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "results.json").write_text('{"observed": 5, "sir": 2.0, "n_sim": 3}')
        ...     scan_reports_for_unsafe_counts(d)
        ['results.json: observed = 5']
    """
    root = Path(reports_dir)
    findings: list[str] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or any(p.startswith(".") for p in rel.parts):
            continue
        if path.name.endswith(".meta.json") or str(rel) == "manifest.json":
            continue
        meta = _sidecar(path)
        if path.suffix == ".csv":
            if "tables" in rel.parts[:-1] and not meta:
                findings.append(f"{rel}: not written by publish_table (no {path.stem}.meta.json)")
            try:
                df = pd.read_csv(path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
                findings.append(f"{rel}: unreadable CSV ({exc.__class__.__name__})")
                continue
            declared = set(map(str, meta.get("count_columns", [])))
            exempt = set(meta.get("not_counts", []))
            cols = [c for c in df.columns if c not in exempt and (str(c) in declared or is_count_column(c))]
            for c in cols:
                v = pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float)
                for pos in np.flatnonzero((v >= 1) & (v <= threshold) & (v == np.round(v))):
                    findings.append(f"{rel}: column {c} row {pos + 1} = {v[pos]:g}")
        elif path.suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                findings.append(f"{rel}: unreadable JSON")
                continue
            found: list[str] = []
            _scan_json(data, "", False, meta, threshold, found)
            findings += [f"{rel}: {f}" for f in found]
    return findings
