"""Vectorised identifier errors: typos, nicknames, transposed digits, day-month swaps.

Every function works on whole numpy string arrays at once (``numpy.strings`` ufuncs and
fixed-width character views), never one Python call per record.

Example:
    >>> import numpy as np
    >>> swap_day_month(np.array(["1961-04-23", "1970-02-01"])).tolist()
    ['1961-23-04', '1970-01-02']
"""

from __future__ import annotations

import csv
from functools import lru_cache
from importlib import resources

import numpy as np

_LOWER = np.array(list("abcdefghijklmnopqrstuvwxyz"))

# Error kinds recorded in truth/record_truth.errors (';'-joined, in this order).
ERROR_KINDS: dict[str, str] = {
    "surname_change": "family name sent is the later (married) surname",
    "house_move": "postcode sent is the one after a house move",
    "nhs_missing": "NHS number not sent",
    "nhs_transposed": "two adjacent digits of the NHS number swapped",
    "given_nickname": "given name sent as a nickname (Bob for Robert)",
    "given_typo": "one-character edit in the given name",
    "family_typo": "one-character edit in the family name",
    "dob_swap": "day and month of the birth date swapped (may be an impossible date)",
    "dob_typo": "birth date with another day of the same month",
    "sex_miscoded": "sex 1 and 2 swapped",
    "sex_unknown": "sex sent as 9 (not specified)",
    "postcode_missing": "postcode not sent",
    "unusable": "no name, no birth date and no NHS number",
    "icd10_invalid": "site code that is not valid ICD-10",
    "morphology_invalid": "morphology code that is not valid ICD-O-3",
    "nhs_wrong": "another person's valid NHS number",
    "dob_default": "birth date sent as a default: 1 January of the birth year, or 1900-01-01",
}


def zero_padded(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as zero-padded decimal strings of ``width`` characters.

    Example:
        >>> zero_padded(np.array([7, 1234]), 5).tolist()
        ['00007', '01234']
    """
    values = np.asarray(values, dtype=np.int64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    codes = (values[:, None] // powers) % 10 + 48
    return from_char_matrix(codes.astype(np.uint32))


def char_matrix(strings: np.ndarray, width: int) -> np.ndarray:
    """An (n × width) uint32 view of fixed-width strings (copy).

    Example:
        >>> char_matrix(np.array(["ab", "c"]), 2).tolist()
        [[97, 98], [99, 0]]
    """
    fixed = np.ascontiguousarray(strings.astype(f"U{width}"))
    return fixed.view(np.uint32).reshape(len(fixed), width).copy()


def from_char_matrix(codes: np.ndarray) -> np.ndarray:
    """Fixed-width strings from an (n × width) uint32 character matrix (inverse of char_matrix).

    Example:
        >>> from_char_matrix(char_matrix(np.array(["ab", "c"]), 2)).tolist()
        ['ab', 'c']
    """
    width = codes.shape[1]
    return np.ascontiguousarray(codes).view(f"U{width}").reshape(len(codes))


def swap_day_month(dates: np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` → ``YYYY-DD-MM`` (the result may be an impossible date; kept as sent).

    Example:
        >>> swap_day_month(np.array(["2001-12-03"])).tolist()
        ['2001-03-12']
    """
    if len(dates) == 0:
        return dates.astype("U10")
    m = char_matrix(dates, 10)
    m[:, [5, 6, 8, 9]] = m[:, [8, 9, 5, 6]]
    return from_char_matrix(m)


def transpose_adjacent_digits(numbers: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Swap one random pair of adjacent, different digits in each 10-digit string.

    Returns (new strings, changed) — changed is False only where all digits are equal.

    Example:
        >>> new, ok = transpose_adjacent_digits(np.array(["9434765919"]), np.random.default_rng(0))
        >>> sorted(new[0]) == sorted("9434765919"), new[0] != "9434765919", bool(ok[0])
        (True, True, True)
    """
    if len(numbers) == 0:
        return numbers.astype("U10"), np.zeros(0, dtype=bool)
    m = char_matrix(numbers, 10)
    differs = m[:, :-1] != m[:, 1:]
    score = rng.random(differs.shape) * differs
    pos = score.argmax(axis=1)
    changed = differs.any(axis=1)
    rows = np.flatnonzero(changed)
    p = pos[rows]
    left, right = m[rows, p].copy(), m[rows, p + 1].copy()
    m[rows, p], m[rows, p + 1] = right, left
    return from_char_matrix(m), changed


def typo(names: np.ndarray, rng: np.random.Generator, operations: dict[str, float]) -> np.ndarray:
    """One keyboard-style edit per name, never on the first letter, always changing the name.

    ``operations`` gives the mix of substitution, deletion, insertion and transposition.
    Names of one or two letters get a substitution or insertion only.

    Example:
        >>> out = typo(np.array(["Robert", "Smith"]), np.random.default_rng(3),
        ...            {"substitution": 1.0, "deletion": 0, "insertion": 0, "transposition": 0})
        >>> [(a[0] == b[0], len(a) == len(b), a != b) for a, b in zip(out, ["Robert", "Smith"])]
        [(True, True, True), (True, True, True)]
    """
    n = len(names)
    s = names.astype(str)
    if n == 0:
        return s
    kinds = np.array(["substitution", "deletion", "insertion", "transposition"])
    p = np.array([float(operations.get(k, 0.0)) for k in kinds])
    op = rng.choice(4, size=n, p=p / p.sum())
    length = np.strings.str_len(s).astype(np.int64)
    op = np.where((length < 3) & (op == 1), 0, op)          # no deletion from a 1-2 letter name
    op = np.where((length < 3) & (op == 3), 2, op)          # transposition needs 3+ letters
    op = np.where((length < 2) & (op == 0), 2, op)          # cannot substitute after the first of 1
    u = rng.random(n)
    pos_sub = 1 + np.floor(u * np.maximum(length - 1, 1)).astype(np.int64)       # 1..L-1
    pos_ins = 1 + np.floor(u * np.maximum(length, 1)).astype(np.int64)           # 1..L
    pos_tr = 1 + np.floor(u * np.maximum(length - 2, 1)).astype(np.int64)        # 1..L-2
    letter = _LOWER[rng.integers(0, 26, size=n)]
    here = np.strings.lower(np.strings.slice(s, pos_sub, pos_sub + 1))
    letter_sub = np.where(letter == here, _LOWER[(np.searchsorted(_LOWER, letter) + 1) % 26], letter)
    head_sub = np.strings.slice(s, 0, pos_sub)
    tail_sub = np.strings.slice(s, pos_sub + 1, length + 1)
    substituted = np.strings.add(np.strings.add(head_sub, letter_sub), tail_sub)
    deleted = np.strings.add(head_sub, tail_sub)
    inserted = np.strings.add(np.strings.add(np.strings.slice(s, 0, pos_ins), letter),
                              np.strings.slice(s, pos_ins, length + 1))
    a = np.strings.slice(s, pos_tr, pos_tr + 1)
    b = np.strings.slice(s, pos_tr + 1, pos_tr + 2)
    transposed = np.strings.add(np.strings.add(np.strings.slice(s, 0, pos_tr), b),
                                np.strings.add(a, np.strings.slice(s, pos_tr + 2, length + 1)))
    # Swapping two equal letters (ignoring case: McCarthy) changes nothing: substitute instead.
    op = np.where((op == 3) & (np.strings.lower(a) == np.strings.lower(b)), 0, op)
    out = np.where(op == 0, substituted, np.where(op == 1, deleted, np.where(op == 2, inserted, transposed)))
    return out.astype(str)


@lru_cache(maxsize=1)
def nickname_table() -> dict[str, tuple[str, ...]]:
    """``{formal name: (nicknames, …)}`` from ``registry_lib/data/nicknames.csv``.

    Example:
        >>> "Bob" in nickname_table()["Robert"]
        True
    """
    text = resources.files("registry_lib").joinpath("data/nicknames.csv").read_text()
    table: dict[str, list[str]] = {}
    for row in csv.DictReader(text.splitlines()):
        table.setdefault(row["name"], []).append(row["nickname"])
    return {k: tuple(v) for k, v in table.items()}


def nickname_choices(names: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random nickname for each name that has one: (nicknames, has_nickname).

    Example:
        >>> nick, has = nickname_choices(np.array(["Robert", "Zebedee"]), np.random.default_rng(0))
        >>> bool(has[0]), nick[0] in ("Bob", "Bobby", "Rob", "Robbie"), bool(has[1]), nick[1]
        (True, True, False, np.str_('Zebedee'))
    """
    table = nickname_table()
    formal = np.array(sorted(table))
    starts = np.cumsum([0] + [len(table[f]) for f in formal])
    flat = np.array([nick for f in formal for nick in table[f]])
    names = names.astype(str)
    if len(names) == 0:
        return names, np.zeros(0, dtype=bool)
    idx = np.minimum(np.searchsorted(formal, names), len(formal) - 1)
    has = formal[idx] == names
    count = starts[idx + 1] - starts[idx]
    pick = starts[idx] + np.floor(rng.random(len(names)) * count).astype(np.int64)
    pick = np.minimum(pick, len(flat) - 1)
    return np.where(has, flat[pick], names), has
