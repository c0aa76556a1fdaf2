"""Code lists shipped with the repository: ICD-10 and ICD-O-3 morphology.

``data/icd10.csv`` holds every ICD-10 (WHO 2019) code C00–C97 and D00–D48 with its 4-character
subdivisions, U07.1/U07.2 and common non-cancer underlying causes of death, with the IARC/IACR
2004 multiple-primary site group and whether the organ is paired. ``data/icdo3_morphology.csv``
holds ICD-O-3.2 morphology codes with their IARC/IACR 2004 histology group. Codes are compared
without the dot and in upper case (``"C50.9"`` and ``"c509"`` both mean ``C509``).

Example:
    >>> import pandas as pd
    >>> valid_site(pd.Series(["C50", "C509", "C50.9", "C99", "C5O", None])).tolist()
    [True, True, True, False, False, False]
    >>> site3(pd.Series(["C509", "c18.7"])).tolist()
    ['C50', 'C18']
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parent.parent / "data"

#: IARC/IACR 2004 histology groups that say nothing specific: 17 (unspecified cancer) is
#: compatible with any group, 5 (unspecified carcinoma) with groups 1–4, 14 (unspecified
#: haematopoietic) with groups 8–13.
UNSPECIFIED_HISTOLOGY = {17: set(range(1, 17)), 5: {1, 2, 3, 4}, 14: set(range(8, 14))}


@cache
def icd10_table() -> pd.DataFrame:
    """The shipped ICD-10 list: code, title, category, iarc_site_group, paired_organ.

    Example:
        >>> icd10_table().set_index("code").at["C50", "paired_organ"]
        np.True_
    """
    df = pd.read_csv(DATA / "icd10.csv", comment="#", dtype=str, keep_default_na=False)
    df["paired_organ"] = df["paired_organ"].eq("true")
    return df


@cache
def morphology_table() -> pd.DataFrame:
    """The shipped ICD-O-3 morphology list: code, name, iarc_histology_group (int).

    Example:
        >>> int(morphology_table().set_index("code").at["8500", "iarc_histology_group"]) > 0
        True
    """
    df = pd.read_csv(DATA / "icdo3_morphology.csv", comment="#", dtype={"code": str})
    return df


def normalise_code(series: pd.Series) -> pd.Series:
    """Upper case, no dot, no spaces; missing stays missing.

    Example:
        >>> normalise_code(pd.Series(["c50.9", " C18 ", ""])).tolist()
        ['C509', 'C18', <NA>]
    """
    code = series.astype("string[pyarrow]").str.upper().str.replace(r"[.\s]", "", regex=True)
    return code.where(code.str.len() > 0)


@cache
def _cancer_codes() -> frozenset[str]:
    t = icd10_table()
    return frozenset(t.loc[t["category"] != "other_cause_of_death", "code"])


@cache
def _all_codes() -> frozenset[str]:
    return frozenset(icd10_table()["code"])


def valid_site(series: pd.Series) -> np.ndarray:
    """True where the value is a valid ICD-10 neoplasm code (C00–C97, D00–D48; 3 or 4 characters).

    Example:
        >>> valid_site(pd.Series(["C50", "C99"])).tolist()
        [True, False]
    """
    code = normalise_code(series)
    return code.isin(_cancer_codes()).to_numpy(dtype=bool)


def valid_cause_of_death(series: pd.Series) -> np.ndarray:
    """True where the value is a listed ICD-10 code, or a 4-character code whose 3-character
    category is a listed non-cancer cause (the list holds categories, not every subdivision).

    Example:
        >>> valid_cause_of_death(pd.Series(["U07.1", "C50", "X99.9"])).tolist()
        [True, True, False]
    """
    code = normalise_code(series)
    listed = code.isin(_all_codes())
    t = icd10_table()
    other3 = frozenset(t.loc[(t["category"] == "other_cause_of_death") & (t["code"].str.len() == 3), "code"])
    sub = code.str.len().eq(4) & code.str[:3].isin(other3) & code.str[3].str.isdigit()
    return (listed | sub.fillna(False)).to_numpy(dtype=bool)


def site3(series: pd.Series) -> pd.Series:
    """The 3-character ICD-10 category of each code.

    Example:
        >>> site3(pd.Series(["C50.9"])).tolist()
        ['C50']
    """
    return normalise_code(series).str[:3]


def site_group(site3_codes: pd.Series) -> pd.Series:
    """IARC/IACR 2004 topography group of 3-character codes (codes outside a group stand alone).

    Example:
        >>> site_group(pd.Series(["C50"])).notna().tolist()
        [True]
    """
    t = icd10_table()
    lookup = t.loc[t["code"].str.len() == 3].set_index("code")["iarc_site_group"]
    grp = site3_codes.map(lookup).replace("", pd.NA)
    return grp.fillna(site3_codes).astype("string[pyarrow]")


def paired_organ(site3_codes: pd.Series) -> np.ndarray:
    """True where the 3-character site is a paired organ (left and right are separate primaries).

    Example:
        >>> paired_organ(pd.Series(["C50", "C18"])).tolist()
        [True, False]
    """
    t = icd10_table()
    paired = frozenset(t.loc[t["paired_organ"] & (t["code"].str.len() == 3), "code"])
    return site3_codes.isin(paired).fillna(False).to_numpy(dtype=bool)


def valid_morphology(series: pd.Series) -> np.ndarray:
    """True where the value is a listed ICD-O-3 morphology code (4 digits, 8000–9992).

    Example:
        >>> valid_morphology(pd.Series(["8500/3", "8500", "0000", None])).tolist()
        [True, True, False, False]
    """
    code = series.astype("string[pyarrow]").str.strip().str.slice(0, 4)
    ok = series.astype("string[pyarrow]").str.strip().str.fullmatch(r"\d{4}(/\d)?").fillna(False)
    return (code.isin(set(morphology_table()["code"])).fillna(False) & ok).to_numpy(dtype=bool)


def histology_group(series: pd.Series) -> pd.Series:
    """IARC/IACR 2004 histology group (1–17) of each morphology code; missing when unknown.

    Example:
        >>> histology_group(pd.Series(["8500/3", "0000"])).isna().tolist()
        [False, True]
    """
    lookup = morphology_table().set_index("code")["iarc_histology_group"]
    code = series.astype("string[pyarrow]").str.strip().str.slice(0, 4)
    return code.map(lookup).astype("Int64")
