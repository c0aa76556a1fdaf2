"""NHS numbers: modulus-11 check digits, validation and synthetic generation.

An NHS number has 10 digits; the 10th is a check digit: weight the first nine digits 10, 9, …,
2, sum, take ``11 - (sum mod 11)``; 11 becomes 0 and 10 means the number is invalid. Synthetic
numbers are drawn from the never-issued 9xx range (``900 000 0000`` upwards), so they can never
collide with a real person's number.

Example:
    >>> check_digit("943476591")
    9
    >>> is_valid_nhs_number(pd.Series(["9434765919", "9434765911", None, "12345"])).tolist()
    [True, False, False, False]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

_WEIGHTS = np.arange(10, 1, -1)


def check_digit(first_nine: str) -> int:
    """The modulus-11 check digit of nine digits, or 10 if no valid number can end them.

    Example:
        >>> check_digit("943476591")
        9
    """
    if len(first_nine) != 9 or not first_nine.isascii() or not first_nine.isdigit():
        raise RegistryLabError(f"check_digit: expected nine ASCII digits, got {first_nine!r}")
    digits = np.frombuffer(first_nine.encode(), dtype=np.uint8) - 48
    total = int((digits * _WEIGHTS).sum())
    value = 11 - total % 11
    return 0 if value == 11 else value


def _digits(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(n × 10 digit matrix, mask of rows that are exactly ten ASCII digits)."""
    text = series.astype("string").fillna("")
    ok = text.str.fullmatch(r"[0-9]{10}").fillna(False).to_numpy(dtype=bool)
    padded = text.where(ok, "0000000000").to_numpy(dtype="U10")
    codes = padded.view(np.uint32).reshape(len(padded), 10) - 48
    return codes.astype(np.int64), ok


def is_valid_nhs_number(series: pd.Series) -> np.ndarray:
    """Vectorised: True where the value is ten digits with a correct modulus-11 check digit.

    Example:
        >>> is_valid_nhs_number(pd.Series(["9434765919", "9434765918", "12345", None])).tolist()
        [True, False, False, False]
    """
    if len(series) == 0:
        return np.zeros(0, dtype=bool)
    digits, ok = _digits(series)
    value = 11 - (digits[:, :9] @ _WEIGHTS) % 11
    value = np.where(value == 11, 0, value)
    return ok & (value != 10) & (value == digits[:, 9])


def generate_nhs_numbers(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct valid NHS numbers from the never-issued 9xx range, as strings.

    Example:
        >>> nums = generate_nhs_numbers(5, np.random.default_rng(1))
        >>> bool(is_valid_nhs_number(pd.Series(nums)).all()), all(s.startswith("9") for s in nums)
        (True, True)
    """
    if n == 0:
        return np.array([], dtype="U10")
    out = np.empty(0, dtype=np.int64)
    need = n
    while need > 0:
        # About 1 in 11 nine-digit stems has no valid check digit: draw a margin, then top up.
        stems = rng.integers(900_000_000, 1_000_000_000, size=int(need * 1.15) + 16)
        stems = np.setdiff1d(np.unique(stems), out // 10, assume_unique=True)
        stems = rng.permutation(stems)
        digits = (stems[:, None] // 10 ** np.arange(8, -1, -1)) % 10
        value = 11 - (digits @ _WEIGHTS) % 11
        value = np.where(value == 11, 0, value)
        keep = value != 10
        out = np.concatenate([out, (stems[keep] * 10 + value[keep])[:need]])
        need = n - len(out)
    return out.astype("U10")
