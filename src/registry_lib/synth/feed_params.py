"""Parameters of the raw feeds: ``params/epidemiology/feeds.yaml`` plus a cohort's overrides.

A cohort config may override any value under its ``feeds:`` key; the override is deep-merged
into the defaults. A key that the defaults do not have, or a rate outside [0, 1], raises
:class:`~registry_lib.errors.ConfigError` naming the key.

Example:
    >>> p = feed_params({"feeds": {"errors": {"sex_miscoded": 0.01}}})
    >>> p["errors"]["sex_miscoded"], rate(p["errors"]["nhs_missing"], "pathology")
    (0.01, 0.1)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.config import deep_merge, load_yaml
from registry_lib.errors import ConfigError
from registry_lib.paths import project_root

FEEDS_YAML = Path("params") / "epidemiology" / "feeds.yaml"

# Keys whose value is a free-form mapping (override may add keys).
_OPEN_KEYS = {"icd10_subsites", "age_relative_rate", "source_mix", "fields"}
# Sources and feeds a per-source rate mapping ({default: …, <source>: …}) may name.
SOURCES = ("default", "pathology", "mdt", "pas", "screening", "sact", "radiotherapy", "surgery",
           "deaths", "registration_optouts")
_PER_SOURCE = {"received_lag_days", "diagnosis_date_shift", "icd10_four_char", "second_trust"}


@lru_cache(maxsize=4)
def _defaults(path: str) -> dict[str, Any]:
    return load_yaml(path)


def default_feed_params(root: Path | None = None) -> dict[str, Any]:
    """The defaults from ``params/epidemiology/feeds.yaml`` (a fresh copy, without ``profiles``).

    Example:
        >>> p = default_feed_params()
        >>> "profiles" in p, p["errors"]["sex_miscoded"], rate(p["errors"]["nhs_missing"], "pathology")
        (False, {'default': 0.002, 'registration_optouts': 0.0}, 0.1)
        >>> p["errors"]["sex_miscoded"] = 0.5   # a fresh copy: the next call is not affected
        >>> default_feed_params()["errors"]["sex_miscoded"]
        {'default': 0.002, 'registration_optouts': 0.0}
    """
    path = (root or project_root()) / FEEDS_YAML
    return {k: v for k, v in deep_merge(_defaults(str(path)), {}).items() if k != "profiles"}


def feed_profiles(root: Path | None = None) -> dict[str, dict[str, Any]]:
    """The named error profiles of ``feeds.yaml`` (``typical``, ``hard`` …): overrides of the defaults.

    Example:
        >>> profiles = feed_profiles()
        >>> sorted(profiles)
        ['hard', 'typical']
        >>> feed_params({"feeds": {"profile": "hard"}})["errors"]["nhs_wrong"] == deep_merge(
        ...     default_feed_params()["errors"]["nhs_wrong"], profiles["hard"]["errors"]["nhs_wrong"])
        True
    """
    path = (root or project_root()) / FEEDS_YAML
    return deep_merge(_defaults(str(path)).get("profiles") or {}, {})


def feed_params(config: dict[str, Any] | None = None, root: Path | None = None) -> dict[str, Any]:
    """Defaults, then the cohort's ``feeds.profile`` (if any), then ``config["feeds"]``; unknown
    keys raise ConfigError.

    Example:
        >>> feed_params({"feeds": {"profile": "hard"}})["errors"]["nhs_wrong"]["default"] > 0
        True
    """
    base = default_feed_params(root)
    override = dict((config or {}).get("feeds") or {})
    if not isinstance(override, dict):
        raise ConfigError("feeds: expected a mapping of overrides of params/epidemiology/feeds.yaml")
    profile = override.pop("profile", None)
    if profile is not None:
        profiles = feed_profiles(root)
        if profile not in profiles:
            raise ConfigError(f"feeds.profile: {profile!r} is not a profile of {FEEDS_YAML} "
                              f"(known: {', '.join(sorted(profiles))})")
        prof = profiles[profile] or {}
        _check_keys(base, prof, f"{FEEDS_YAML}: profiles.{profile}")
        base = deep_merge(base, prof)
    _check_keys(base, override, "feeds")
    merged = deep_merge(base, override)
    _check_rates(merged.get("errors", {}), "feeds.errors")
    return merged


def _check_keys(base: dict[str, Any], override: dict[str, Any], where: str) -> None:
    per_source = ".errors." in where or where.rsplit(".", 1)[-1] in _PER_SOURCE
    for key, value in override.items():
        if per_source and key in SOURCES:
            continue
        if key not in base:
            raise ConfigError(f"{where}.{key}: unknown key (not in {FEEDS_YAML})")
        if isinstance(value, dict) and key not in _OPEN_KEYS:
            _check_keys(base[key] if isinstance(base[key], dict) else {}, value, f"{where}.{key}")


def _check_rates(errors: dict[str, Any], where: str) -> None:
    for key, value in errors.items():
        values = value.values() if isinstance(value, dict) else [value]
        if key in ("invalid_icd10_codes", "invalid_morphology_codes"):
            continue
        for v in values:
            if not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"{where}.{key}: rate {v!r} is not a number between 0 and 1")


def rate(spec: Any, source: str) -> float:
    """The rate for one source from a number or a ``{default: …, <source>: …}`` mapping.

    Example:
        >>> rate({"default": 0.05, "pas": 0.03}, "pas"), rate(0.2, "mdt")
        (0.03, 0.2)
    """
    if isinstance(spec, dict):
        return float(spec.get(source, spec.get("default", 0.0)))
    return float(spec)


def rates_by_source(spec: Any, sources: np.ndarray) -> np.ndarray:
    """Vectorised :func:`rate`: one probability per record from its source label.

    Example:
        >>> rates_by_source({"default": 0.1, "pas": 0.5}, np.array(["pas", "mdt", "pas"])).tolist()
        [0.5, 0.1, 0.5]
    """
    return SourceIndex(sources).rates(spec)


class SourceIndex:
    """Records' source labels, factorised once so that per-source rates are a cheap lookup.

    Example:
        >>> idx = SourceIndex(np.array(["pas", "mdt", "pas"]))
        >>> idx.rates({"default": 0.1, "pas": 0.5}).tolist()
        [0.5, 0.1, 0.5]
    """

    def __init__(self, sources: np.ndarray) -> None:
        codes, labels = pd.factorize(np.asarray(sources, dtype=object))
        self.codes = codes
        self.labels = [str(s) for s in labels]

    def __len__(self) -> int:
        return len(self.codes)

    def rates(self, spec: Any) -> np.ndarray:
        """One probability per record from a number or a per-source mapping."""
        table = np.array([rate(spec, s) for s in self.labels] or [0.0], dtype=float)
        return table[self.codes]
