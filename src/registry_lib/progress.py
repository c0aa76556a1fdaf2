"""Progress messages and bars that behave in a terminal, in a notebook and in CI.

With the environment variable ``CI=true`` bars are switched off and only summaries print.

Example:
    >>> for _ in progress(range(3), "demo", disable=True):
    ...     pass
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def in_ci() -> bool:
    """True when running under CI (``CI=true``): print summaries only.

    Example:
        >>> isinstance(in_ci(), bool)
        True
    """
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def progress(items: Iterable[T], desc: str, *, total: int | None = None, disable: bool | None = None) -> Iterator[T]:
    """A tqdm bar over ``items``, silent under CI.

    Example:
        >>> sum(progress(range(4), "adding", disable=True))
        6
    """
    yield from tqdm(items, desc=desc, total=total, disable=in_ci() if disable is None else disable,
                    leave=False, file=sys.stderr, dynamic_ncols=True)


def say(message: str, *, summary: bool = False) -> None:
    """Print a step message; under CI only messages marked ``summary`` print.

    Example:
        >>> say("synth: done")  # printed on stderr (under CI only with summary=True)
    """
    if summary or not in_ci():
        print(message, file=sys.stderr, flush=True)
