"""Standardising identifiers before matching: names, nicknames, postcodes, dates, sex.

All functions are vectorised over pandas Series and keep missing values missing.

* Names: accents removed, lower case, letters only (``"O'Brien-Smith "`` → ``"obriensmith"``).
* Nicknames: every given name maps to the set of formal names it can stand for
  (``"bob"`` → ``["bob", "robert"]``); two names agree on the nickname level when the sets
  intersect. The table is ``data/nicknames.csv``.
* Postcodes: upper case, one space before the inward code (``"ls62ab"`` → ``"LS6 2AB"``);
  the outward code (``"LS6"``) is the partial-match key.
* Birth dates are kept as sent when they look like ``YYYY-MM-DD`` even if impossible (a
  day–month swap such as ``1961-23-04`` still matches ``1961-04-23`` on the swap level);
  :func:`parse_date` gives real dates, missing where impossible.

Example:
    >>> import pandas as pd
    >>> clean_name(pd.Series(["  O'Brien-Smith", "JOSÉ", "", None])).tolist()
    ['obriensmith', 'jose', <NA>, <NA>]
    >>> clean_postcode(pd.Series(["ls62ab", "SW1A 1AA", "rubbish"])).tolist()
    ['LS6 2AB', 'SW1A 1AA', <NA>]
    >>> date_pattern(pd.Series(["1961-23-04", "23/04/1961"])).tolist()
    ['1961-23-04', <NA>]
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd

from registry_lib.errors import RegistryLabError

DATA = Path(__file__).resolve().parent.parent / "data"
NICKNAME_FILES = ("nicknames.csv",)
POSTCODE_RE = r"^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$"


#: Text is held as Arrow-backed strings: pandas then runs string operations in pyarrow's
#: vectorised kernels rather than one Python call per value.
TEXT = "string[pyarrow]"


def text(series: pd.Series) -> pd.Series:
    """``series`` as Arrow-backed strings (missing stays missing).

    Example:
        >>> text(pd.Series(["a", None])).isna().tolist()
        [False, True]
    """
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        return series
    return series.astype(TEXT)


def _where(values: pd.Series, mask: pd.Series) -> pd.Series:
    return values.where(mask.fillna(False).astype(bool)).astype(TEXT)


def clean_name(series: pd.Series) -> pd.Series:
    """Lower-case ASCII letters only; empty becomes missing.

    Example:
        >>> clean_name(pd.Series(["O'Brien", "  ", "Zoë"])).tolist()
        ['obrien', <NA>, 'zoe']
    """
    t = text(series)
    accented = t.str.contains(r"[^\x00-\x7f]", regex=True).fillna(False).to_numpy(dtype=bool)
    if accented.any():  # only the few accented names take the slow Unicode route
        fixed = (t[accented].astype(object).str.normalize("NFKD").str.encode("ascii", errors="ignore")
                 .str.decode("ascii"))
        t = t.copy()
        t[accented] = fixed.astype(TEXT)
    t = t.str.lower().str.replace(r"[^a-z]", "", regex=True)
    return _where(t, t.str.len() > 0)


def clean_postcode(series: pd.Series) -> pd.Series:
    """``"OUT IN"`` upper case where the value looks like a UK postcode, else missing.

    Example:
        >>> clean_postcode(pd.Series(["ls62ab", "not one"])).tolist()
        ['LS6 2AB', <NA>]
    """
    t = text(series).str.upper().str.replace(r"[^A-Z0-9]", "", regex=True)
    t = t.str.slice(0, -3) + " " + t.str.slice(-3)
    return _where(t, t.str.fullmatch(POSTCODE_RE))


def postcode_outward(postcode: pd.Series) -> pd.Series:
    """The outward code (district) of cleaned postcodes: ``"LS6 2AB"`` → ``"LS6"``.

    Example:
        >>> postcode_outward(pd.Series(["LS6 2AB"])).tolist()
        ['LS6']
    """
    t = text(postcode)
    return t.str.slice(0, -4)


def date_pattern(series: pd.Series) -> pd.Series:
    """The value where it has the shape ``YYYY-MM-DD`` (possibly impossible), else missing.

    Example:
        >>> date_pattern(pd.Series(["2020-02-30", "30/02/2020"])).tolist()
        ['2020-02-30', <NA>]
    """
    t = text(series).str.strip()
    return _where(t, t.str.fullmatch(r"\d{4}-\d{2}-\d{2}"))


def parse_date(series: pd.Series) -> pd.Series:
    """``datetime64`` dates; impossible or malformed values become NaT.

    Example:
        >>> parse_date(pd.Series(["2020-02-29", "2020-02-30"])).isna().tolist()
        [False, True]
    """
    return pd.to_datetime(date_pattern(series), format="%Y-%m-%d", errors="coerce")


def dob_swap_key(birth_date: pd.Series) -> pd.Series:
    """A key equal for a date and its day–month swap: year + smaller + larger of (MM, DD).

    Example:
        >>> k = dob_swap_key(pd.Series(["1950-03-04", "1950-04-03"]))
        >>> bool(k[0] == k[1])
        True
    """
    t = text(birth_date)
    a, b = t.str.slice(5, 7), t.str.slice(8, 10)
    first = (a <= b).fillna(True).to_numpy(dtype=bool)
    lo = a.where(first, b)
    hi = b.where(first, a)
    return (t.str.slice(0, 4) + lo + hi).astype(TEXT)


def clean_sex(series: pd.Series) -> pd.Series:
    """``"1"`` male / ``"2"`` female (also from M/F/male/female); anything else missing.

    Example:
        >>> clean_sex(pd.Series(["M", "female", "2", "x"])).tolist()
        ['1', '2', '2', <NA>]
    """
    t = text(series).str.strip().str.upper()
    mapped = t.replace({"M": "1", "MALE": "1", "F": "2", "FEMALE": "2"})
    return _where(mapped, mapped.isin(["1", "2"]))


@cache
def nickname_table() -> pd.DataFrame:
    """Nickname pairs ``(nickname, name)`` in cleaned form, from ``data/nicknames.csv``.

    Example:
        >>> list(nickname_table().columns)
        ['nickname', 'name']
    """
    for name in NICKNAME_FILES:
        path = DATA / name
        if path.exists():
            raw = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
            return _nickname_columns(raw, path)
    raise RegistryLabError(f"{DATA / NICKNAME_FILES[0]}: nickname table not found")


def _nickname_columns(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    cols = {c.lower().strip(): c for c in raw.columns}
    nick = next((cols[c] for c in ("nickname", "nick", "short", "variant") if c in cols), None)
    formal = next((cols[c] for c in ("name", "formal", "formal_name", "given_name", "canonical", "full_name")
                   if c in cols), None)
    if nick is None or formal is None:
        raise RegistryLabError(f"{path.name}: expected columns 'nickname' and 'name', found {list(raw.columns)}")
    out = pd.DataFrame({"nickname": clean_name(raw[nick]), "name": clean_name(raw[formal])}).dropna()
    out = out[out["nickname"] != out["name"]]
    return out.drop_duplicates().sort_values(["nickname", "name"], ignore_index=True)


def nickname_sets(given: pd.Series) -> tuple[pd.Series, pd.Series]:
    """For cleaned given names: (the formal names each can stand for, itself included, as
    ``"|bob|robert|"``; a single key = the first formal name it abbreviates, else itself).

    Two names agree on the nickname level when their keys are equal or one's key is in the
    other's set, so ``bob``, ``robert`` and ``bobby`` all agree (see
    :func:`registry_lib.linkage.model.build_comparisons`).

    Example:
        >>> sets, key = nickname_sets(pd.Series(["bob", "robert", None]))
        >>> sets.tolist(), key.tolist()
        (['|bob|robert|', '|robert|', <NA>], ['robert', 'robert', <NA>])
    """
    table = nickname_table()
    uniques = pd.Series(given.dropna().unique(), dtype=object)
    pairs = table[table["nickname"].isin(set(uniques))]
    both = pd.concat([pd.DataFrame({"name": uniques, "formal": uniques}),
                      pairs.rename(columns={"nickname": "name", "name": "formal"})], ignore_index=True)
    both = both.drop_duplicates().sort_values(["name", "formal"])
    sets_u = "|" + both.groupby("name")["formal"].agg("|".join) + "|"
    first_formal = pairs.sort_values(["nickname", "name"]).drop_duplicates("nickname").set_index("nickname")["name"]
    sets = given.map(sets_u).astype(TEXT)
    key = given.map(first_formal).astype(TEXT).fillna(given)
    return sets, key
