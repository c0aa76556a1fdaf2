"""The published values behind synthetic England: ``params/epidemiology/*.yaml``.

Every number the generator uses comes from these files, each with its source beside it. This
module loads them once (cached) and derives the small lookup arrays the generator needs: the
site list, age bands, route names.

Example:
    >>> p = epidemiology_params()
    >>> "C50" in p["incidence"]["sites"], len(p["tumour"]["routes"])
    (True, 8)
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from registry_lib.config import load_yaml
from registry_lib.errors import ConfigError
from registry_lib.paths import project_root

FILES = ("population", "mortality", "geography", "incidence", "tumour", "treatment",
         "survival", "standard_populations", "effects", "covid", "cpes", "screening")
AGE_BANDS = np.arange(0, 95, 5)          # lower bounds 0, 5, ..., 90 (90 = 90+)
N_BANDS = len(AGE_BANDS)


def params_dir(root: Path | None = None) -> Path:
    """``params/epidemiology`` of the project.

    Example:
        >>> params_dir(Path("/project")).as_posix()
        '/project/params/epidemiology'
    """
    return (root or project_root()) / "params" / "epidemiology"


@lru_cache(maxsize=4)
def _load(folder: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in FILES:
        path = Path(folder) / f"{name}.yaml"
        if not path.exists():
            raise ConfigError(f"{path}: missing epidemiology params file")
        out[name] = load_yaml(path)
    return out


def epidemiology_params(root: Path | None = None) -> dict[str, Any]:
    """All epidemiology params as ``{file stem: mapping}`` (a fresh copy; safe to modify).

    Example:
        >>> sorted(epidemiology_params())[:3]
        ['covid', 'cpes', 'effects']
    """
    return copy.deepcopy(_load(str(params_dir(root))))


def site_codes(params: dict[str, Any]) -> list[str]:
    """The ICD-10 sites the generator knows, in params order.

    Example:
        >>> "C50" in site_codes(epidemiology_params())
        True
    """
    return list(params["incidence"]["sites"])


def month_key(year: int, month: int) -> str:
    """``'YYYY-MM'``.

    Example:
        >>> month_key(2020, 4)
        '2020-04'
    """
    return f"{year:04d}-{month:02d}"
