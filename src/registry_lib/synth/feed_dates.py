"""Dates for the feeds: day arithmetic, windows, and fast ``YYYY-MM-DD`` text.

Example:
    >>> date_text(np.array(["2020-01-31", "NaT"], dtype="datetime64[D]")).tolist()
    ['2020-01-31', None]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.synth.feeds_errors import from_char_matrix

DAY = np.timedelta64(1, "D")


def to_days(series: pd.Series) -> np.ndarray:
    """A date-like Series as ``datetime64[D]`` (NaT where missing).

    Example:
        >>> [str(d) for d in to_days(pd.Series(["2020-01-02", None]))]
        ['2020-01-02', 'NaT']
    """
    return pd.to_datetime(series).to_numpy(dtype="datetime64[D]")


def end_of_follow_up(config: dict[str, Any]) -> np.datetime64 | None:
    """The cohort's ``end_of_follow_up`` as a day, or None if the config has none.

    Example:
        >>> end_of_follow_up({"end_of_follow_up": "2022-06-30"})
        np.datetime64('2022-06-30')
        >>> end_of_follow_up({}) is None
        True
    """
    end = (config or {}).get("end_of_follow_up")
    return None if end is None else np.datetime64(pd.Timestamp(end).date(), "D")


def date_in_window(start: np.ndarray, end: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A uniform day in (start, end]; returns (dates, ok) where ok is False if the window is empty.

    Example:
        >>> d, ok = date_in_window(np.array(["2020-01-01"], "datetime64[D]"),
        ...                        np.array(["2020-01-02"], "datetime64[D]"), np.random.default_rng(0))
        >>> str(d[0]), bool(ok[0])
        ('2020-01-02', True)
    """
    span = (end - start) / DAY
    span = np.where(np.isnan(span.astype(float)), 0, span).astype(np.int64)
    ok = span >= 1
    offset = 1 + np.floor(rng.random(len(start)) * np.maximum(span, 1)).astype(np.int64)
    return start + offset * DAY, ok


def change_window_end(first_diagnosis: np.ndarray, death: np.ndarray, config: dict[str, Any],
                      window_years: float) -> np.ndarray:
    """Last day a name change or move can happen: window end, death or end of follow-up.

    Example:
        >>> first = np.array(["2019-01-01", "2019-01-01"], dtype="datetime64[D]")
        >>> death = np.array(["NaT", "2019-06-01"], dtype="datetime64[D]")
        >>> change_window_end(first, death, {"end_of_follow_up": "2022-06-30"}, 5.0).astype(str).tolist()
        ['2022-06-30', '2019-06-01']
    """
    end = first_diagnosis + np.int64(round(window_years * 365.25)) * DAY
    end = np.where(np.isnat(death) | (death >= end), end, death)
    eof = end_of_follow_up(config)
    if eof is not None:
        end = np.minimum(end, eof)
    return end


def civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01 (proleptic Gregorian), integer arithmetic only.

    Example:
        >>> [int(v[0]) for v in civil_from_days(np.array([-1]))]
        [1969, 12, 31]
    """
    z = np.asarray(days, dtype=np.int64) + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def dates_to_strings(days: np.ndarray) -> np.ndarray:
    """``datetime64[D]`` → ``'YYYY-MM-DD'`` strings (``''`` where NaT), by digit arithmetic.

    Example:
        >>> dates_to_strings(np.array(["2020-01-31", "NaT", "1899-12-01"], dtype="datetime64[D]")).tolist()
        ['2020-01-31', '', '1899-12-01']
    """
    days = np.asarray(days).astype("datetime64[D]")
    nat = np.isnat(days)
    year, month, day = civil_from_days(np.where(nat, 0, days.astype(np.int64)))
    codes = np.empty((len(days), 10), dtype=np.uint32)
    codes[:, 0:4] = (year[:, None] // np.array([1000, 100, 10, 1])) % 10 + 48
    codes[:, 5:7] = (month[:, None] // np.array([10, 1])) % 10 + 48
    codes[:, 8:10] = (day[:, None] // np.array([10, 1])) % 10 + 48
    codes[:, [4, 7]] = ord("-")
    out = from_char_matrix(codes)
    out[nat] = ""
    return out


def date_text(days: np.ndarray) -> np.ndarray:
    """``datetime64[D]`` → ``'YYYY-MM-DD'`` as an object array (None where NaT).

    Converts each distinct day once, so a million records over a few thousand days is cheap.

    Example:
        >>> date_text(np.array(["2020-01-31", "NaT", "2020-01-31"], dtype="datetime64[D]")).tolist()
        ['2020-01-31', None, '2020-01-31']
    """
    days = np.asarray(days).astype("datetime64[D]")
    codes, uniq = pd.factorize(days.astype(np.int64))
    text = dates_to_strings(uniq.astype("datetime64[D]")).astype(object)
    text[text == ""] = None
    out = text[codes] if len(text) else np.full(len(days), None, dtype=object)
    out[np.isnat(days)] = None
    return out


