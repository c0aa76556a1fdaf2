"""Format detection for data that is not ours: dates, sex, postcodes and identifiers as they come.

Each function takes one mapped column (any dtype) and returns the standardised values with a
:class:`Detected` record of what it found, so that :func:`registry_lib.linkage.dedupe` and
:func:`registry_lib.linkage.link` can report it (``notes`` and a log line such as
``birth_date ('dob'): parsed 4,997/5,000 values as YYYYMMDD``) and warn when a column parses to
mostly nothing.

* Dates: ISO (``1961-04-23``, also with ``/``), ISO basic (``19610423``), ``DD/MM/YYYY``,
  ``DD-MM-YYYY``, ``DD.MM.YYYY``, ``MM/DD/YYYY`` (only when some first fields exceed 12 and no
  second field does), strings with a time part, integers, ``datetime64`` and ``date`` objects.
  Detection is per column: the formats are tried from the most common in the column down, so
  a column of mixed formats still parses. Values keep their shape even when impossible (a
  day–month swap ``1961-23-04`` still matches its correct date on the swap level).
* Sex: ``1``/``2`` (NHS Data Dictionary), ``M``/``F``, ``male``/``female``, ``man``/``woman``
  in any case, or numbers; ``0``, ``9``, ``U`` and other values are missing (not known).
* Postcodes: UK postcodes become ``"OUT IN"`` with the outward code as the partial-match key;
  other postcodes (any country) are compared as strings: upper case, letters and digits only,
  with all but the last character as the partial key (``4011`` → ``401``).
* Identifiers: strings or integers (``6988048.0`` from a float column becomes ``6988048``);
  spaces and hyphens removed.

Example:
    >>> import pandas as pd
    >>> values, found = birth_dates(pd.Series([19151111, 19800230, None]), role="birth_date", column="dob")
    >>> values.tolist(), found.note
    (['1915-11-11', '1980-02-30', <NA>], "birth_date ('dob'): parsed 2/3 values as YYYYMMDD (1 empty)")
    >>> postcodes(pd.Series(["ls62ab", "4011"]))[0].tolist()
    ['LS6 2AB', '4011']
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from registry_lib.linkage.standardise import POSTCODE_RE, TEXT, text

#: A mapped column with more than this share of values missing after parsing gets a warning.
MAX_NULL_SHARE = 0.20

#: Date formats: name, regular expression with groups (year, month, day) in ``order``.
DATE_FORMATS: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    ("YYYY-MM-DD", r"(\d{4})-(\d{1,2})-(\d{1,2})", (0, 1, 2)),
    ("YYYY/MM/DD", r"(\d{4})/(\d{1,2})/(\d{1,2})", (0, 1, 2)),
    ("YYYYMMDD", r"((?:18|19|20)\d{2})(\d{2})(\d{2})", (0, 1, 2)),
    ("DD/MM/YYYY", r"(\d{1,2})/(\d{1,2})/(\d{4})", (2, 1, 0)),
    ("DD-MM-YYYY", r"(\d{1,2})-(\d{1,2})-(\d{4})", (2, 1, 0)),
    ("DD.MM.YYYY", r"(\d{1,2})\.(\d{1,2})\.(\d{4})", (2, 1, 0)),
)
#: A time part after a date (``T12:30``, `` 00:00:00.000+01:00``), dropped before parsing.
TIME_PART = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)$"
SEX_CODES = {"1": "1", "M": "1", "MALE": "1", "MAN": "1", "BOY": "1",
             "2": "2", "F": "2", "FEMALE": "2", "WOMAN": "2", "GIRL": "2"}
UK_POSTCODE_COMPACT = r"[A-Z]{1,2}[0-9][A-Z0-9]?[0-9][A-Z]{2}"


@dataclass
class Detected:
    """What format detection found in one mapped column.

    Attributes:
        role: the identifier role (``birth_date``, ``postcode`` …).
        column: the user's column name.
        n: values in the column; ``present``: not empty; ``parsed``: usable after parsing.
        formats: ``{format: count}`` of the parsed values, most common first.
        failed: up to two example values that were present but could not be parsed.

    Example:
        >>> found = Detected("birth_date", "dob", n=5, present=4, parsed=3, formats={"YYYYMMDD": 3},
        ...                  failed=["1961-99"])
        >>> found.note
        "birth_date ('dob'): parsed 3/5 values as YYYYMMDD (1 empty; 1 not understood, e.g. '1961-99')"
        >>> found.problem
        "birth_date column 'dob': 40% of values are missing after parsing (1 values not understood, e.g. '1961-99'); map another column or convert it"
    """

    role: str
    column: str
    n: int
    present: int
    parsed: int
    formats: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)

    @property
    def note(self) -> str:
        """One line: ``birth_date ('dob'): parsed 4,997/5,000 values as YYYYMMDD``."""
        parts = [f"{k:,} as {name}" if len(self.formats) > 1 else name for name, k in self.formats.items()]
        how = f" as {' and '.join(parts)}" if self.formats else ""
        line = f"{self.role} ({self.column!r}): parsed {self.parsed:,}/{self.n:,} values{how}"
        extra = []
        if self.n > self.present:
            extra.append(f"{self.n - self.present:,} empty")
        if self.present > self.parsed:
            extra.append(f"{self.present - self.parsed:,} not understood, e.g. "
                         + " and ".join(repr(v) for v in self.failed))
        return line + (f" ({'; '.join(extra)})" if extra else "")

    @property
    def problem(self) -> str | None:
        """A one-sentence warning when more than 20% of the values are missing after parsing."""
        if self.n == 0 or (self.n - self.parsed) / self.n <= MAX_NULL_SHARE:
            return None
        share = (self.n - self.parsed) / self.n
        if self.present > self.parsed:
            return (f"{self.role} column {self.column!r}: {share:.0%} of values are missing after parsing "
                    f"({self.present - self.parsed:,} values not understood, e.g. "
                    f"{' and '.join(repr(v) for v in self.failed)}); map another column or convert it")
        return (f"{self.role} column {self.column!r}: {share:.0%} of values are empty, so it adds little "
                "to the match")


def _as_text(series: pd.Series) -> pd.Series:
    """Any column as Arrow strings: integral floats lose their ``.0``; blanks become missing."""
    s = series.reset_index(drop=True)
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype("string")
    elif pd.api.types.is_float_dtype(s.dtype):
        v = s.to_numpy(dtype=float, na_value=np.nan)
        whole = np.isnan(v) | (np.isfinite(v) & (np.floor(v) == v))
        if whole.all():
            s = pd.array(np.where(np.isnan(v), 0, v).astype(np.int64), dtype="Int64")
            s = pd.Series(s).mask(np.isnan(v))
    t = text(s.astype("string")).str.strip()
    return t.where(t.str.len() > 0).astype(TEXT)


def _examples(raw: pd.Series, bad: np.ndarray) -> list[str]:
    vals = raw[bad].drop_duplicates().head(2)
    return [str(v) for v in vals]


def birth_dates(series: pd.Series, *, role: str = "birth_date", column: str = "") -> tuple[pd.Series, Detected]:
    """Dates of any common format as ``YYYY-MM-DD`` text (shape kept when impossible).

    Example:
        >>> birth_dates(pd.Series(["23/04/1961", "1961-04-23T00:00:00", "x"]))[0].tolist()
        ['1961-04-23', '1961-04-23', <NA>]
    """
    s = series.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        out = s.dt.strftime("%Y-%m-%d").astype(TEXT)
        n_ok = int(out.notna().sum())
        return out, Detected(role, column, len(s), n_ok, n_ok, {"datetime": n_ok} if n_ok else {})
    if s.dtype == object and pd.api.types.infer_dtype(s, skipna=True) in ("date", "datetime", "datetime64"):
        out = pd.to_datetime(s, errors="coerce").dt.strftime("%Y-%m-%d").astype(TEXT)
        n_ok = int(out.notna().sum())
        return out, Detected(role, column, len(s), int(s.notna().sum()), n_ok, {"date": n_ok} if n_ok else {})
    raw = _as_text(s)
    t = raw.str.replace(TIME_PART, "", regex=True).str.strip()
    present = raw.notna().to_numpy()
    iso = t.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False).to_numpy(dtype=bool)
    if iso.sum() == present.sum():  # fast path: already ISO (the registry's own feeds)
        n_ok = int(iso.sum())
        return t.astype(TEXT), Detected(role, column, len(s), n_ok, n_ok, {"YYYY-MM-DD": n_ok} if n_ok else {})
    out = pd.Series(pd.NA, index=t.index, dtype=TEXT)
    done = ~present
    formats = list(DATE_FORMATS)
    parts = {name: t.str.extract(f"^{rx}$") for name, rx, _ in formats}
    # Day first unless the column shows month first (some first fields > 12, no second field).
    dmy = parts["DD/MM/YYYY"]
    if dmy.notna().all(axis=1).any():
        a = pd.to_numeric(dmy[0], errors="coerce")
        b = pd.to_numeric(dmy[1], errors="coerce")
        if (b > 12).any() and not (a > 12).any():
            formats = [f if f[0] != "DD/MM/YYYY" else ("MM/DD/YYYY", f[1], (2, 0, 1)) for f in formats]
            parts["MM/DD/YYYY"] = parts.pop("DD/MM/YYYY")
    counts = {name: int(parts[name].notna().all(axis=1).sum()) for name, _, _ in formats}
    found: dict[str, int] = {}
    for name, _, order in sorted(formats, key=lambda f: -counts[f[0]]):
        if counts[name] == 0:
            continue
        g = parts[name]
        hit = g.notna().all(axis=1).to_numpy() & ~done
        if not hit.any():
            continue
        y, m, d = (g[i] for i in order)
        iso = y.str.zfill(4) + "-" + m.str.zfill(2) + "-" + d.str.zfill(2)
        out[hit] = iso[hit].astype(TEXT)
        done |= hit
        found[name] = int(hit.sum())
    bad = present & out.isna().to_numpy()
    return out, Detected(role, column, len(s), int(present.sum()), int(out.notna().sum()), found,
                         _examples(raw, bad))


def sex(series: pd.Series, *, role: str = "sex", column: str = "") -> tuple[pd.Series, Detected]:
    """``"1"`` male / ``"2"`` female from codes or words in any case; others missing.

    Example:
        >>> sex(pd.Series(["m", "Female", 2, "9"]))[0].tolist()
        ['1', '2', '2', <NA>]
    """
    raw = _as_text(series)
    t = raw.str.upper()
    out = t.map(SEX_CODES, na_action="ignore").astype(TEXT)
    present = raw.notna().to_numpy()
    words = t[out.notna().to_numpy()]
    kind = "words" if words.str.len().gt(1).any() else ("codes M/F" if words.isin(["M", "F"]).any() else "codes 1/2")
    n_ok = int(out.notna().sum())
    # 0, 9, U and X are valid "not known" codes, not failures to parse.
    unknown = t.isin(["0", "9", "U", "X", "UNKNOWN", "NOT KNOWN", "NOT SPECIFIED", "I", "INDETERMINATE"]).to_numpy()
    bad = present & out.isna().to_numpy() & ~unknown
    return out, Detected(role, column, len(raw), int((present & ~unknown).sum()), n_ok,
                         {kind: n_ok} if n_ok else {}, _examples(raw, bad))


def postcodes(series: pd.Series, *, role: str = "postcode",
              column: str = "") -> tuple[pd.Series, pd.Series, Detected]:
    """(postcode, partial key, what was found) for postcodes of any country.

    UK postcodes become ``"OUT IN"`` with the outward code as partial key; other values with
    at least three letters or digits are kept upper case without spaces, partial key all but
    the last character.

    Example:
        >>> pc, part, found = postcodes(pd.Series(["sw1a1aa", "4011", "75008", None]))
        >>> pc.tolist(), part.tolist()
        (['SW1A 1AA', '4011', '75008', <NA>], ['SW1A', '401', '7500', <NA>])
    """
    raw = _as_text(series)
    t = raw.str.upper().str.replace(r"[^A-Z0-9]", "", regex=True)
    uk = t.str.fullmatch(UK_POSTCODE_COMPACT).fillna(False).to_numpy(dtype=bool)
    other = (t.str.len() >= 3).fillna(False).to_numpy(dtype=bool) & ~uk
    out = pd.Series(pd.NA, index=t.index, dtype=TEXT)
    part = pd.Series(pd.NA, index=t.index, dtype=TEXT)
    if uk.any():
        spaced = t[uk].str.slice(0, -3) + " " + t[uk].str.slice(-3)
        spaced = spaced.where(spaced.str.fullmatch(POSTCODE_RE))
        out[uk] = spaced.astype(TEXT)
        part[uk] = spaced.str.slice(0, -4).astype(TEXT)
    if other.any():
        out[other] = t[other]
        part[other] = t[other].str.slice(0, -1)
    present = raw.notna().to_numpy()
    found = {k: v for k, v in (("UK postcode", int(uk.sum())), ("non-UK postcode (string comparison)",
                                                                  int(other.sum()))) if v}
    bad = present & out.isna().to_numpy()
    return out, part, Detected(role, column, len(raw), int(present.sum()), int(out.notna().sum()), found,
                               _examples(raw, bad))


def identifiers(series: pd.Series, *, role: str = "nhs_number", column: str = "") -> tuple[pd.Series, Detected]:
    """Person identifiers as text: integers or strings, spaces and hyphens removed.

    Example:
        >>> identifiers(pd.Series([6988048.0, None]))[0].tolist()
        ['6988048', <NA>]
    """
    raw = _as_text(series)
    t = raw.str.replace(r"[\s\-]", "", regex=True)
    out = t.where(t.str.len() > 0).astype(TEXT)
    n_ok = int(out.notna().sum())
    kind = "digits" if out.dropna().str.fullmatch(r"\d+").all() else "text"
    return out, Detected(role, column, len(raw), int(raw.notna().sum()), n_ok, {kind: n_ok} if n_ok else {})


def names(cleaned: pd.Series, raw: pd.Series, *, role: str, column: str = "") -> Detected:
    """What cleaning left of a name column (see :func:`~registry_lib.linkage.standardise.clean_name`).

    Example:
        >>> from registry_lib.linkage.standardise import clean_name
        >>> raw = pd.Series(["Zoë", "123", None, "Ann"])
        >>> names(clean_name(raw), raw, role="given_name", column="first").note
        "given_name ('first'): parsed 2/4 values as names (1 empty; 1 not understood, e.g. '123')"
    """
    r = _as_text(raw)
    present = r.notna().to_numpy()
    bad = present & cleaned.isna().to_numpy()
    n_ok = int(cleaned.notna().sum())
    return Detected(role, column, len(r), int(present.sum()), n_ok, {"names": n_ok} if n_ok else {},
                    _examples(r, bad))
