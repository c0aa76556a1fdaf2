"""An official-statistics-style incidence publication from the ``aggregate_publication`` release.

One call, :func:`publish_incidence`, turns the release's incidence cube into the published
tables of a registry's annual statistics: for every grouping (e.g. site × sex, site × region,
deprivation quintile) a table of counts, crude rates and directly age-standardised rates
(ESP 2013, Dobson limits; :func:`~registry_lib.release.aggregate.aggregate_rates`), and for every
two-way grouping a 2-D table of counts with margins. Everything is written through
:func:`~registry_lib.release.publish.publish_table`, so the policy's disclosure control applies:

- counts 1..threshold suppressed, other counts rounded (to 5 by default);
- 2-D count tables get secondary suppression (cells and margins) on top;
- rates from protected counts: crude rates are recomputed from the rounded count, DSRs are
  blanked where the count is suppressed, and (here) the Dobson limits of a DSR use the rounded
  count as O, and DSRs are published to one decimal place, as official statistics do.
  Limits built on the exact O would let anyone solve back to the exact count (the ratio of the
  two half-widths is a function of O alone), and a DSR printed with 12 significant digits
  would let anyone solve for the age-specific counts
  (:func:`registry_lib.release.publish.protected_rates`, applied by ``publish_table``).

Rates tables are protected cell by cell, so they can show (rounded) a cell that a two-way
count table hides by secondary suppression, and rounded values can be differenced: a row total
and its one large cell that round to the same value bound the small cell to [0, 4]. So before
it returns, :func:`publish_incidence` plays the attacker (:func:`differencing_intervals`: every
published value of the same cells and margins, linear programming) on each two-way grouping.
If a suppressed cell can be narrowed below ``threshold``, the rates table of that grouping is
re-published without the rows the count table hides; if that is still not enough, every file
written is removed and :class:`~registry_lib.release.disclosure.UnsafeTableError` is raised.

Records whose sex contradicts a sex-specific site (``sex_specific`` — e.g. prostate in a woman:
a coding error the registry would query) can be left out of every table; their number is in
:attr:`Publication.invalid_sex_site`.

The tables the study needs afterwards are read back from the CSV files
(:func:`read_published`), so charts and ``results.json`` show only published values.

Example:
    >>> import os, tempfile
    >>> from pathlib import Path
    >>> from registry_lib.linkage.tiny import tiny_cohort
    >>> from registry_lib.release.run import run
    >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
    >>> cohort = tiny_cohort()   # the tiny cohort, generated and linked (once per process)
    >>> _ = run(cohort, "aggregate_publication", "example")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     pub = publish_incidence(cohort, Path(d) / "out", [["site_icd10", "region"]],
    ...                             years=[2018, 2021])
    ...     national_totals(pub)["total"]
    ...     len(pub.files)
    {'count': 260, 'dsr': 601.3, 'dsr_lower': 530.1, 'dsr_upper': 679.4}
    10
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.engines import check_backend
from registry_lib.errors import RegistryLabError
from registry_lib.release.aggregate import DIMENSIONS, aggregate_rates, default_years
from registry_lib.release.disclosure import (
    UnsafeTableError,
    round_counts,
    rounding_interval,
    suppression_intervals,
)
from registry_lib.release.policy import Disclosure, load_policy
from registry_lib.release.publish import publish_table
from registry_lib.release.run import release_dir, release_info

#: The policy whose release (and disclosure rules) the publication uses.
POLICY = "aggregate_publication"
#: Short names of the dimensions in table names.
DIMENSION_LABELS = {"year": "year", "sex": "sex", "age_band": "age", "site_icd10": "site",
                    "stage": "stage", "area_id": "area", "region": "region",
                    "deprivation_quintile": "deprivation"}
#: Groupings always published: the national totals, and what the charts and results need.
REQUIRED_GROUPINGS: tuple[tuple[str, ...], ...] = (
    (), ("site_icd10",), ("site_icd10", "sex"), ("site_icd10", "deprivation_quintile"),
    ("region",), ("deprivation_quintile",),
)
#: Decimal places of published rates (ONS and NHS Digital publish rates per 100,000 to 1 d.p.).


# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------
def publication_settings(
    policy: str | Path = POLICY, *, threshold: int | None = None, rounding: int | None = None
) -> Disclosure:
    """The policy's disclosure settings, optionally made stricter (never looser).

    Args:
        policy: the release policy (``aggregate_publication``).
        threshold: suppress counts 1..threshold; ``None`` keeps the policy's; a value below the
            policy's is refused.
        rounding: round other counts to the nearest ``rounding``; ``None`` keeps the policy's.
            Must be a whole number at least the policy's base: the publication's long tables
            (one count per row) are protected by rounding, so exact counts are refused.

    Example:
        >>> publication_settings(threshold=10)
        Disclosure(threshold=10, rounding=5, secondary=True, survival_rounding='midpoint6')
        >>> publication_settings(threshold=3)
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: threshold=3: below the aggregate_publication policy's 7; a study may make disclosure control stricter, not looser
    """
    base = load_policy(policy).disclosure
    name = Path(str(policy)).stem
    out = base
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | np.integer):
            raise RegistryLabError(f"threshold={threshold!r}: must be a whole number")
        if threshold < base.threshold:
            raise RegistryLabError(
                f"threshold={threshold}: below the {name} policy's {base.threshold}; a study may "
                "make disclosure control stricter, not looser")
        out = dataclasses.replace(out, threshold=int(threshold))
    if rounding is not None:
        if isinstance(rounding, bool) or not isinstance(rounding, int | np.integer) or rounding < 1:
            raise RegistryLabError(
                f"rounding={rounding!r}: must be a positive whole number (the base counts are "
                "rounded to)")
        if isinstance(base.rounding, int) and rounding < base.rounding:
            raise RegistryLabError(
                f"rounding={rounding}: finer than the {name} policy's {base.rounding}; a study may "
                "make disclosure control stricter, not looser")
        out = dataclasses.replace(out, rounding=int(rounding))
    if not isinstance(out.rounding, int):
        raise RegistryLabError(
            f"policy {name}: rounding={out.rounding!r}; the incidence publication needs counts "
            "rounded to a base (pass rounding=5)")
    if out.threshold < out.rounding // 2:
        raise RegistryLabError(
            f"threshold={out.threshold} with rounding={out.rounding}: small counts would round "
            "to 0 and look like true zeros")
    return out


def publication_years(cohort: str | Path, years: int | Sequence[int] | None = None) -> tuple[int, int]:
    """The inclusive range of diagnosis years published.

    ``None``: the cohort's complete diagnosis years (``cohort.json``); a year: that year;
    ``[first, last]``: that inclusive range.

    Example:
        >>> publication_years("any", [2019, 2021]), publication_years("any", 2020)
        ((2019, 2021), (2020, 2020))
    """
    if years is None:
        found = default_years(_cohort_path(cohort))
        if found is None:
            raise RegistryLabError(
                f"{_cohort_path(cohort)}: cohort.json does not record the diagnosis years; pass "
                "years: [first, last]")
        return found
    if isinstance(years, int | np.integer) and not isinstance(years, bool):
        return int(years), int(years)
    values = list(years) if isinstance(years, list | tuple) else None
    if not values or len(values) != 2 or not all(
            isinstance(y, int | np.integer) and not isinstance(y, bool) for y in values):
        raise RegistryLabError(f"years={years!r}: give null, one year, or [first, last]")
    first, last = int(values[0]), int(values[1])
    if first > last:
        raise RegistryLabError(f"years={years!r}: the first year is after the last")
    return first, last


def publication_groupings(by: Iterable[Sequence[str] | str] | None = None) -> list[tuple[str, ...]]:
    """The groupings to publish: those asked for, then any of :data:`REQUIRED_GROUPINGS` missing.

    Example:
        >>> publication_groupings([["site_icd10", "region"], "sex"])[:3]
        [('site_icd10', 'region'), ('sex',), ()]
    """
    out: list[tuple[str, ...]] = []
    for g in by or []:
        group = (g,) if isinstance(g, str) else tuple(g)
        bad = [d for d in group if d not in DIMENSIONS or d == "age_band"]
        if bad:
            allowed = ", ".join(d for d in DIMENSIONS if d != "age_band")
            raise RegistryLabError(f"by: grouping {list(group)} has unknown dimension(s) {bad}; choose from {allowed}")
        if len(set(group)) != len(group):
            raise RegistryLabError(f"by: grouping {list(group)} repeats a dimension")
        if group not in out:
            out.append(group)
    out += [g for g in REQUIRED_GROUPINGS if g not in out]
    return out


def table_name(by: Sequence[str], kind: str = "rates") -> str:
    """File name of a published table, e.g. ``incidence_rates_by_site_sex``.

    Example:
        >>> table_name(["site_icd10", "deprivation_quintile"], "counts"), table_name([])
        ('incidence_counts_by_site_deprivation', 'incidence_rates_total')
    """
    if not by:
        return f"incidence_{kind}_total"
    return f"incidence_{kind}_by_" + "_".join(DIMENSION_LABELS[d] for d in by)


# ---------------------------------------------------------------------------------------------
# rates from protected counts
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# the publication
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Publication:
    """What :func:`publish_incidence` wrote, as published (read back from the CSV files).

    Attributes:
        cohort: cohort name.
        years: inclusive range of diagnosis years.
        sites: the sites published (``None``: all).
        settings: the disclosure settings applied.
        rates: published rates tables by grouping (``()`` is the national total). Rows left
            out of a file by secondary suppression are restored here with missing values.
        counts: published 2-D count tables (with margins) by two-way grouping.
        files: table name → CSV path.
        suppressed: table name → number of suppressed count cells (rows left out included).
        withheld: table name → number of rows left out of a rates table because the two-way
            count table hides them (secondary suppression carried over).
        audit: table name → narrowest interval an attacker gets for a hidden cell from all
            published tables (two-way count tables; one-way rates tables against the total;
            ``None``: nothing hidden). Three-way groupings are not audited.
        excluded: table name → exact number of cases left out of that table because they
            fall in no population stratum (unknown age, or unknown sex in a table by sex, or an
            area outside the reference). Publish it only through :func:`protected_value`.
        invalid_sex_site: exact number of tumours left out of every table because their sex
            contradicts a sex-specific site (publish only through :func:`protected_value`).
        release: the release's ``release.json``.

    Example:
        >>> from registry_lib.release.policy import Disclosure
        >>> sites = pd.DataFrame({"site_icd10": ["C18", "C50"], "count": pd.array([40, None], dtype="Int64"),
        ...                       "dsr": [80.0, None], "dsr_lower": [57.0, None], "dsr_upper": [109.0, None]})
        >>> total = pd.DataFrame({"count": pd.array([45], dtype="Int64"), "dsr": [90.0], "dsr_lower": [66.0],
        ...                       "dsr_upper": [120.0]})
        >>> pub = Publication(cohort="tiny", years=(2019, 2019), sites=None, settings=Disclosure(),
        ...                   rates={("site_icd10",): sites, (): total}, counts={}, files={}, suppressed={},
        ...                   withheld={}, audit={}, excluded={}, invalid_sex_site=0, release={})
        >>> pub.table("site_icd10")["count"].tolist(), pub.excluded_cases
        ([40, <NA>], 0)
    """

    cohort: str
    years: tuple[int, int]
    sites: list[str] | None
    settings: Disclosure
    rates: dict[tuple[str, ...], pd.DataFrame]
    counts: dict[tuple[str, ...], pd.DataFrame]
    files: dict[str, Path]
    suppressed: dict[str, int]
    withheld: dict[str, int]
    audit: dict[str, float | None]
    excluded: dict[str, int]
    invalid_sex_site: int
    release: dict[str, Any]

    @property
    def excluded_cases(self) -> int:
        """The most cases left out of any one table (exact: publish via :func:`protected_value`)."""
        return max(self.excluded.values(), default=0)

    def table(self, *by: str) -> pd.DataFrame:
        """The published rates table of a grouping, e.g. ``pub.table("site_icd10", "sex")``."""
        if tuple(by) not in self.rates:
            raise RegistryLabError(f"the publication has no rates table by {list(by)}; add it to by")
        return self.rates[tuple(by)]


def invalid_sex_site(cube: pd.DataFrame, sex_specific: dict[str, Sequence[str]] | None) -> np.ndarray:
    """Rows of an incidence cube whose sex contradicts a sex-specific site.

    ``sex_specific`` maps ``"female"`` and ``"male"`` to the ICD-10 sites of that sex only
    (e.g. C51–C58 and C60–C63: the ICD-10 blocks of the female and male genital organs).

    Example:
        >>> cube = pd.DataFrame({"site_icd10": ["C61", "C61", "C50", "C54"], "sex": [1, 2, 1, 1]})
        >>> invalid_sex_site(cube, {"female": ["C54"], "male": ["C61"]}).tolist()
        [False, True, False, True]
    """
    if not sex_specific:
        return np.zeros(len(cube), dtype=bool)
    unknown = set(sex_specific) - {"female", "male"}
    if unknown:
        raise RegistryLabError(f"sex_specific: keys must be female and male, not {sorted(unknown)}")
    site = cube["site_icd10"].astype(str)
    sex = pd.to_numeric(cube["sex"], errors="coerce")
    female_only = site.isin([str(x) for x in sex_specific.get("female") or []])
    male_only = site.isin([str(x) for x in sex_specific.get("male") or []])
    return ((female_only & (sex == 1)) | (male_only & (sex == 2))).to_numpy()


@contextlib.contextmanager
def _validated(cohort: Path, policy: str, sex_specific: dict[str, Sequence[str]] | None) -> Iterator[tuple[Path, int]]:
    """The cohort, or a temporary view of it whose release cube lacks the invalid sex–site rows.

    ``aggregate_rates`` reads the release folder; the view holds the filtered cube, the same
    ``release.json``, and links to the cohort's ``reference/`` and ``cohort.json``.
    """
    folder = release_dir(cohort, policy)
    cube_path = folder / "incidence.parquet"
    if not sex_specific or not cube_path.exists():
        yield cohort, 0
        return
    cube = pd.read_parquet(cube_path)
    bad = invalid_sex_site(cube, sex_specific)
    if not bad.any():
        yield cohort, 0
        return
    with tempfile.TemporaryDirectory(prefix="publication_") as tmp:
        view = Path(tmp) / cohort.name
        target = view / "releases" / policy
        target.mkdir(parents=True)
        cube[~bad].to_parquet(target / "incidence.parquet", index=False)
        shutil.copy(folder / "release.json", target / "release.json")
        (view / "reference").symlink_to((cohort / "reference").resolve(), target_is_directory=True)
        if (cohort / "cohort.json").exists():
            (view / "cohort.json").symlink_to((cohort / "cohort.json").resolve())
        yield view, int(cube.loc[bad, "count"].sum())


def _restore_rows(published: pd.DataFrame, exact: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """A rates table read back from a file that left rows out, with those rows as missing."""
    frame = exact[keys].copy()
    for k in keys:
        frame[k] = frame[k].astype(published[k].dtype) if k in published else frame[k]
    out = frame.merge(published, on=keys, how="left")
    out["population"] = exact["population"].to_numpy()
    for c in published.columns:
        if str(published[c].dtype) == "Int64":
            out[c] = out[c].astype("Int64")
    return out[list(published.columns)]


def _hidden_rows(exact: pd.DataFrame, counts: pd.DataFrame, group: tuple[str, ...]) -> np.ndarray:
    """Rows of a two-way rates table whose cell the 2-D count table hides."""
    a, b = group
    inner = counts.iloc[:-1, :-1]
    hidden = {(str(i), str(j)) for i in inner.index for j in inner.columns if pd.isna(inner.at[i, j])}
    keys = zip(exact[a].astype(str), exact[b].astype(str), strict=True)
    return np.array([k in hidden for k in keys], dtype=bool)


def publish_incidence(
    cohort: str | Path,
    output_dir: str | Path,
    by: Iterable[Sequence[str] | str] | None = None,
    *,
    years: int | Sequence[int] | None = None,
    sites: Sequence[str] | str | None = None,
    settings: Disclosure | None = None,
    sex_specific: dict[str, Sequence[str]] | None = None,
    policy: str = POLICY,
    per: float = 100_000,
    backend: str = "duckdb",
) -> Publication:
    """Publish incidence counts and rates from an aggregates release into ``output_dir/tables``.

    For each grouping of :func:`publication_groupings` (``by`` plus the required ones):
    ``incidence_rates_by_<dims>`` (counts, population, crude rate and DSR with limits, through
    ``publish_table(kind="rates")``, which recomputes DSR limits from protected counts); for each two-way grouping also
    ``incidence_counts_by_<a>_<b>`` (``a`` × ``b`` counts with margins and secondary
    suppression, ``publish_table(kind="counts")``), then the differencing audit of the module
    docstring.

    Args:
        cohort: cohort name or folder (with ``releases/<policy>``).
        output_dir: the study's output folder.
        by: groupings (lists of dimensions of :mod:`registry_lib.release.aggregate`).
        years: see :func:`publication_years`.
        sites: ICD-10 3-character sites (``None``: all).
        settings: disclosure settings (default: the policy's, :func:`publication_settings`).
        sex_specific: ``{"female": [...], "male": [...]}`` sites of one sex only; tumours
            recorded with the other sex are left out of every table (:func:`invalid_sex_site`).
        policy: the aggregates release to read.
        per: rates per this many person-years.
        backend: the engine of the aggregation, ``"duckdb"`` or ``"spark"``
            (:func:`~registry_lib.release.aggregate.aggregate_rates`; identical tables).

    Returns:
        A :class:`Publication` holding the published tables as read back from the files.

    Raises:
        UnsafeTableError: a suppressed cell stays narrower than ``threshold`` against every
            published table even after the fallback; nothing is left written then.

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> settings = publication_settings()
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     publish_incidence("tiny", root + "/out", years=[2018, 2021], settings=settings)   # no release yet
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: synthetic/tiny/releases/aggregate_publication: not found; make it with `registry-lab release --cohort tiny --policy aggregate_publication --requester "<who>"`
    """
    import warnings

    check_backend(backend)
    settings = settings or publication_settings(policy)
    source = _cohort_path(cohort)
    first, last = publication_years(source, years)
    site_list = None if sites is None else ([sites] if isinstance(sites, str) else sorted(map(str, sites)))
    groupings = sorted(publication_groupings(by), key=len)  # margins before two-way tables
    rates: dict[tuple[str, ...], pd.DataFrame] = {}
    counts: dict[tuple[str, ...], pd.DataFrame] = {}
    files: dict[str, Path] = {}
    suppressed: dict[str, int] = {}
    withheld: dict[str, int] = {}
    audit: dict[str, float | None] = {}
    excluded: dict[str, int] = {}

    def write_rates(group: tuple[str, ...], exact: pd.DataFrame, drop: np.ndarray | None = None) -> None:
        name = table_name(group, "rates")
        # publish_table recomputes the DSR limits from the protected count and rounds them.
        keep = np.ones(len(exact), dtype=bool) if drop is None else ~drop
        files[name] = publish_table(exact[keep].reset_index(drop=True), output_dir, name,
                                    kind="rates", policy=settings, per=per)
        published, suppressed[name] = read_published(files[name])
        withheld[name] = int((~keep).sum())
        suppressed[name] += withheld[name]
        rates[group] = published if keep.all() else _restore_rows(published, exact, list(group))

    try:
        with _validated(source, policy, sex_specific) as (view, invalid):
            for group in groupings:  # loop over published tables
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # excluded cases are reported in the Publication
                    exact = aggregate_rates(view, by=list(group) or None, years=(first, last),
                                            sites=site_list, policy=policy, per=per, backend=backend)
                excluded[table_name(group, "rates")] = int(exact.attrs.get("excluded_cases", 0))
                write_rates(group, exact)
                if len(group) == 1 and () in rates:
                    name = table_name(group, "rates")
                    audit[name] = one_way_width(rates[group]["count"], rates[()]["count"].iloc[0], settings)
                    if audit[name] is not None and audit[name] < settings.threshold:
                        raise UnsafeTableError(
                            f"{name}: a suppressed count can be bounded to an interval "
                            f"{audit[name]:g} wide (< {settings.threshold}) from the total; "
                            "publish other groupings or stricter rounding")
                if len(group) != 2:
                    continue
                cname = table_name(group, "counts")
                files[cname] = publish_table(exact, output_dir, cname, index=group[0],
                                             columns=group[1], policy=settings)
                counts[group], suppressed[cname] = read_published(files[cname])
                width = _narrowest(rates, counts, group, settings)
                if width is not None and width < settings.threshold:
                    write_rates(group, exact, drop=_hidden_rows(exact, counts[group], group))
                    width = _narrowest(rates, counts, group, settings)
                audit[cname] = width
                if width is not None and width < settings.threshold:
                    raise UnsafeTableError(
                        f"{cname}: a suppressed cell can be bounded to an interval {width:g} wide "
                        f"(< {settings.threshold}) from the published tables; publish coarser "
                        "groupings or stricter rounding")
    except BaseException:
        for path in files.values():
            path.unlink(missing_ok=True)
            path.with_name(path.stem + ".meta.json").unlink(missing_ok=True)
        raise
    return Publication(cohort=source.name, years=(first, last), sites=site_list, settings=settings,
                       rates=rates, counts=counts, files=files, suppressed=suppressed,
                       withheld=withheld, audit=audit, excluded=excluded, invalid_sex_site=invalid,
                       release=release_info(source, policy))


def one_way_width(counts: pd.Series, total: Any, settings: Disclosure) -> float | None:
    """Narrowest interval an attacker gets for a suppressed count of a one-way table and its total.

    The hidden counts add up to the total minus the shown ones; every published value is
    known only to its rounding interval. With one hidden count its interval is
    ``[max(0, total_low − Σ shown_high), total_high − Σ shown_low]``; with more, each can be 0.
    Returns ``None`` when nothing is hidden (or the total itself is hidden).

    Example:
        >>> s = publication_settings()
        >>> one_way_width(pd.Series([None, 1500], dtype="Int64"), 1500, s)  # 1500 + 3 = 1503
        4.0
        >>> one_way_width(pd.Series([None, 1500, 20, 35], dtype="Int64"), 1560, s)
        13.0
    """
    hidden = counts.isna().to_numpy()
    if not hidden.any() or pd.isna(total):
        return None
    shown = counts[~hidden].to_numpy(dtype=np.int64)
    lo, hi = rounding_interval(shown, settings.rounding)
    t_lo, t_hi = (float(v[0]) for v in rounding_interval([int(total)], settings.rounding))
    upper = t_hi - float(lo.sum())
    lower = max(0.0, t_lo - float(hi.sum())) if hidden.sum() == 1 else 0.0
    return upper - lower


def _narrowest(rates, counts, group, settings) -> float | None:
    intervals = _differencing(rates, counts, group, settings)
    return float(intervals["width"].min()) if len(intervals) else None


def read_published(path: str | Path) -> tuple[pd.DataFrame, int]:
    """A table written by ``publish_table``, as published, and its number of suppressed cells.

    Count columns (from the sidecar ``.meta.json``) come back as ``Int64`` with ``<NA>`` where
    suppressed; a 2-D count table comes back with its row labels as the index.

    Example:
        >>> import tempfile
        >>> from registry_lib.release import publish_table
        >>> t = pd.DataFrame({"count": [12, 2, 30]}, index=pd.Index(["C18", "C50", "C61"], name="site_icd10"))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = publish_table(t, d, "by_site", policy={"rounding": 5, "secondary": False})
        ...     table, suppressed = read_published(path)
        >>> table.loc["C50"].tolist(), suppressed   # C50 count and its row total
        ([<NA>, <NA>], 2)
    """
    path = Path(path)
    meta = json.loads(path.with_name(path.stem + ".meta.json").read_text())
    counts = [str(c) for c in meta["count_columns"]]
    if meta["kind"] == "counts" and _is_pivot(path):
        df = pd.read_csv(path, index_col=0, dtype=str)
        df = df.apply(pd.to_numeric).astype("Int64")
    else:
        df = pd.read_csv(path, dtype={"site_icd10": str, "region": str, "area_id": str, "stage": str})
        df = df.drop(columns=[c for c in [meta.get("suppressed_flag")] if c and c in df.columns])
        for c in counts:
            df[c] = df[c].astype("Int64")
    return df, int(meta["suppressed_cells"])


def _is_pivot(path: Path) -> bool:
    header = path.read_text().split("\n", 1)[0].split(",")
    return header[-1] == "Total"


def _cohort_path(cohort: str | Path) -> Path:
    if isinstance(cohort, Path) or "/" in str(cohort):
        return Path(cohort)
    return release_dir(cohort, POLICY).parent.parent


# ---------------------------------------------------------------------------------------------
# results and checks
# ---------------------------------------------------------------------------------------------
def _figures(row: pd.Series) -> dict[str, Any]:
    count = row["count"]
    return {
        "count": None if pd.isna(count) else int(count),
        **{k: None if pd.isna(row[k]) else float(row[k]) for k in ("dsr", "dsr_lower", "dsr_upper")},
    }


def national_totals(pub: Publication) -> dict[str, Any]:
    """National figures for ``results.json``: by site and in total, as published.

    Counts are the protected ones (``None`` where suppressed), DSRs per 100,000 with limits
    (``None`` where the count is suppressed).

    Returns:
        ``{"by_site": {site: {count, dsr, dsr_lower, dsr_upper}}, "total": {...}}``.

    Example:
        >>> from registry_lib.release.policy import Disclosure
        >>> sites = pd.DataFrame({"site_icd10": ["C18", "C50"], "count": pd.array([40, None], dtype="Int64"),
        ...                       "dsr": [80.0, None], "dsr_lower": [57.0, None], "dsr_upper": [109.0, None]})
        >>> total = pd.DataFrame({"count": pd.array([45], dtype="Int64"), "dsr": [90.0], "dsr_lower": [66.0],
        ...                       "dsr_upper": [120.0]})
        >>> pub = Publication(cohort="tiny", years=(2019, 2019), sites=None, settings=Disclosure(),
        ...                   rates={("site_icd10",): sites, (): total}, counts={}, files={}, suppressed={},
        ...                   withheld={}, audit={}, excluded={}, invalid_sex_site=0, release={})
        >>> t = national_totals(pub)
        >>> t["total"]["count"], t["by_site"]["C50"]["count"]   # C50 was suppressed
        (45, None)
    """
    sites = pub.table("site_icd10")
    total = pub.table()
    return {
        "by_site": {str(r["site_icd10"]): _figures(r) for _, r in sites.iterrows()},
        "total": _figures(total.iloc[0]),
    }


def highest_dsr(table: pd.DataFrame, dim: str, n: int = 5) -> pd.DataFrame:
    """The ``n`` rows of a published rates table with the highest DSR (suppressed rows last).

    Example:
        >>> t = pd.DataFrame({"site_icd10": ["C18", "C34", "C50"], "dsr": [60.1, None, 150.2]})
        >>> highest_dsr(t, "site_icd10", 2)["site_icd10"].tolist()
        ['C50', 'C18']
    """
    return table.sort_values(["dsr", dim], ascending=[False, True], na_position="last",
                             kind="stable").head(n).reset_index(drop=True)


def dsr_ratio(
    table: pd.DataFrame, dim: str, numerator: Any, denominator: Any, *, level: float = 0.95
) -> dict[str, float | None]:
    """Ratio of two published DSRs (e.g. deprivation quintile 5 over 1) with approximate limits.

    The standard error of each log DSR is taken from its published limits,
    ``(log upper − log lower) / (2 z)``, and the two are combined as independent. Returns
    ``None`` figures when either DSR is missing (suppressed) or zero.

    Example:
        >>> t = pd.DataFrame({"q": [1, 5], "dsr": [50.0, 130.0], "dsr_lower": [45.0, 120.0],
        ...                   "dsr_upper": [55.5, 140.8]})
        >>> {k: round(v, 3) for k, v in dsr_ratio(t, "q", 5, 1).items()}
        {'ratio': 2.6, 'lower': 2.279, 'upper': 2.966}
    """
    from scipy import stats as sps

    rows = table.set_index(dim)
    try:
        a, b = rows.loc[numerator], rows.loc[denominator]
    except KeyError as exc:
        raise RegistryLabError(f"dsr_ratio: no row {exc.args[0]!r} in column {dim}") from None
    vals = [a["dsr"], b["dsr"], a["dsr_lower"], a["dsr_upper"], b["dsr_lower"], b["dsr_upper"]]
    if any(pd.isna(v) for v in vals) or min(float(v) for v in vals) <= 0:
        return {"ratio": None, "lower": None, "upper": None}
    z = float(sps.norm.ppf(0.5 + level / 2))
    se = np.hypot(np.log(a["dsr_upper"] / a["dsr_lower"]), np.log(b["dsr_upper"] / b["dsr_lower"])) / (2 * z)
    ratio = float(a["dsr"] / b["dsr"])
    return {"ratio": ratio, "lower": float(ratio * np.exp(-z * se)), "upper": float(ratio * np.exp(z * se))}


def differencing_intervals(pub: Publication, group: Sequence[str]) -> pd.DataFrame:
    """The attacker's bounds on every cell a 2-D count table hides, using every published table.

    The 2-D table ``group = (a, b)`` hides primary and secondary cells and perhaps margins; the
    rates tables by ``(a, b)``, ``(a,)``, ``(b,)`` and the total (when published) show some of
    them rounded. All those published values (each known only to its rounding interval), the
    additivity of the table and non-negativity are given to the linear-programming attack of
    :func:`~registry_lib.release.disclosure.suppression_intervals`.

    Returns:
        One row per cell still hidden everywhere: ``row, column, lower, upper, width``.

    Example:
        >>> from registry_lib.release.policy import Disclosure
        >>> counts = pd.DataFrame({"1": pd.array([None, None, 10], dtype="Int64"),
        ...                        "2": pd.array([None, None, 30], dtype="Int64"),
        ...                        "Total": pd.array([10, 30, 40], dtype="Int64")}, index=["C18", "C50", "Total"])
        >>> pub = Publication(cohort="tiny", years=(2019, 2019), sites=None, settings=Disclosure(), rates={},
        ...                   counts={("site_icd10", "sex"): counts}, files={}, suppressed={}, withheld={}, audit={},
        ...                   excluded={}, invalid_sex_site=0, release={})
        >>> print(differencing_intervals(pub, ["site_icd10", "sex"]).to_string())   # the count table alone
           row column  lower  upper  width
        0  C18      1    0.0   12.0   12.0
        1  C18      2    0.0   12.0   12.0
        2  C50      1    0.0   12.0   12.0
        3  C50      2   16.0   32.0   16.0
        >>> cells = pd.DataFrame({"site_icd10": ["C50"], "sex": [2], "count": pd.array([30], dtype="Int64")})
        >>> pub.rates[("site_icd10", "sex")] = cells   # a rates table that shows one hidden cell, rounded
        >>> print(differencing_intervals(pub, ["site_icd10", "sex"]).to_string())
           row column  lower  upper  width
        0  C18      1    4.0   12.0    8.0
        1  C18      2    0.0    4.0    4.0
        2  C50      1    0.0    4.0    4.0
        >>> differencing_intervals(pub, ["sex", "region"])
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: differencing_intervals: no 2-D count table by ['sex', 'region']
    """
    return _differencing(pub.rates, pub.counts, tuple(group), pub.settings)


def _differencing(rates: dict, counts: dict, group: tuple[str, ...], settings: Disclosure) -> pd.DataFrame:
    if group not in counts:
        raise RegistryLabError(f"differencing_intervals: no 2-D count table by {list(group)}")
    a, b = group
    table = counts[group].astype("Float64").copy()
    margin = table.index[-1]

    def known(by: tuple[str, ...], keys: dict[str, str]) -> float | None:
        if by not in rates:
            return None
        t = rates[by]
        mask = np.ones(len(t), dtype=bool)
        for dim, key in keys.items():
            mask &= t[dim].astype(str).to_numpy() == key
        if mask.sum() != 1:
            return None
        v = t.loc[mask, "count"].iloc[0]
        return None if pd.isna(v) else float(v)

    for i in table.index:
        for j in table.columns:  # loop over the cells of one published table
            if not pd.isna(table.at[i, j]):
                continue
            keys = {}
            if i != margin:
                keys[a] = str(i)
            if j != margin:
                keys[b] = str(j)
            v = known(tuple(d for d in (a, b) if d in keys), keys)
            if v is not None:
                table.at[i, j] = v
    if not table.isna().to_numpy().any():
        return pd.DataFrame(columns=["row", "column", "lower", "upper", "width"])
    return suppression_intervals(table, settings.rounding)


def reconcile_total(pub: Publication) -> dict[str, int]:
    """Whether the published national total is consistent with the published site totals.

    From the site table an attacker (or a reader) knows the total lies in
    ``[Σ lower, Σ upper]`` of the sites' rounding intervals (suppressed sites: 0..threshold).
    Returns that interval and the published total's own rounding interval; they must overlap.

    Example:
        >>> from registry_lib.release.policy import Disclosure
        >>> sites = pd.DataFrame({"site_icd10": ["C18", "C50"], "count": pd.array([40, None], dtype="Int64"),
        ...                       "dsr": [80.0, None], "dsr_lower": [57.0, None], "dsr_upper": [109.0, None]})
        >>> total = pd.DataFrame({"count": pd.array([45], dtype="Int64"), "dsr": [90.0], "dsr_lower": [66.0],
        ...                       "dsr_upper": [120.0]})
        >>> pub = Publication(cohort="tiny", years=(2019, 2019), sites=None, settings=Disclosure(),
        ...                   rates={("site_icd10",): sites, (): total}, counts={}, files={}, suppressed={},
        ...                   withheld={}, audit={}, excluded={}, invalid_sex_site=0, release={})
        >>> reconcile_total(pub)   # sites: 40 rounded (38..42) + one suppressed (1..7); total 45 (43..47)
        {'sites_lower': 39, 'sites_upper': 49, 'total_lower': 43, 'total_upper': 47}
    """
    sites = pub.table("site_icd10")["count"]
    shown = sites.dropna().to_numpy(dtype=np.int64)
    lo, hi = rounding_interval(shown, pub.settings.rounding)
    hidden = int(sites.isna().sum())
    total = pub.table()["count"].iloc[0]
    t_lo, t_hi = rounding_interval([int(total)], pub.settings.rounding)
    return {"sites_lower": int(lo.sum() + hidden), "sites_upper": int(hi.sum() + hidden * pub.settings.threshold),
            "total_lower": int(t_lo[0]), "total_upper": int(t_hi[0])}


def protected_value(value: int, settings: Disclosure) -> int | None:
    """One count as it may be published (``None`` if suppressed).

    Example:
        >>> s = publication_settings()
        >>> protected_value(3, s), protected_value(12, s), protected_value(0, s)
        (None, 10, 0)
    """
    if 1 <= int(value) <= settings.threshold:
        return None
    return int(round_counts([int(value)], settings.rounding)[0])


# ---------------------------------------------------------------------------------------------
# validation (truth checks only)
# ---------------------------------------------------------------------------------------------
def implied_deprivation_ratio(
    areas: pd.DataFrame,
    population: pd.DataFrame,
    deprivation_ratio: float,
    north_gradient: float = 0.0,
    *,
    min_age: int = 50,
) -> float:
    """The quintile 5 / quintile 1 rate ratio the generator's area effects imply (validation only).

    The generator (``registry_lib.synth.incidence.area_factors``) multiplies a site's rates in
    area ``a`` by ``step**(q_a - 3) * exp(north_gradient * (y_a - 300 km) / 100 km)`` with
    ``step = deprivation_ratio**(1/4)``. Deprived areas lie more often in the north, so a site
    with a north gradient shows a marginal Q5/Q1 ratio different from ``deprivation_ratio``.
    This averages the area factors over each quintile's residents aged ``min_age`` and over
    (where most cancers arise) and returns the ratio of the quintile means.

    Example:
        >>> areas = pd.DataFrame({"area_id": ["a", "b"], "deprivation_quintile": [1, 5],
        ...                       "y": [200_000.0, 500_000.0]})
        >>> pop = pd.DataFrame({"area_id": ["a", "b"], "age_band": [60, 60], "population": [10, 10]})
        >>> round(implied_deprivation_ratio(areas, pop, 2.6, 0.10), 3)
        3.51
    """
    pop = population[population["age_band"] >= min_age].groupby("area_id")["population"].sum()
    a = areas.set_index("area_id")[["deprivation_quintile", "y"]].join(pop, how="inner")
    a["weighted"] = a["population"] * np.exp(north_gradient * (a["y"] - 300_000.0) / 100_000.0)
    q = a.groupby("deprivation_quintile")[["weighted", "population"]].sum()
    if not {1, 5} <= set(q.index.astype(int)):
        raise RegistryLabError("implied_deprivation_ratio: the areas lack quintile 1 or 5")
    mean = q["weighted"] / q["population"]
    return float(deprivation_ratio * mean.loc[5] / mean.loc[1])
