"""Cohort configs: ``params/cohort/<name>.yaml`` plus command-line overrides, validated.

A cohort config names the cohort, its seed and scale (fraction of England's population), the
diagnosis years, the end of follow-up, an optional subset of sites, an optional historic
cohort (sites generated for earlier years, e.g. Hodgkin lymphoma for the late effect), the
injected effects and overrides for the raw feeds. Effects default to
``params/epidemiology/effects.yaml`` and ``covid.yaml``; a cohort overrides any key, or sets an
effect to null to remove it. Every unknown key or bad value raises
:class:`~registry_lib.errors.ConfigError` naming it.

Example:
    >>> cfg = load_config("params/cohort/small.yaml", seed=7, years=(2019, 2020))
    >>> cfg["seed"], cfg["years"], cfg["historic"]
    (7, [2019, 2020], None)
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

from registry_lib.config import deep_merge, load_yaml
from registry_lib.errors import ConfigError
from registry_lib.paths import NAME_PATTERN
from registry_lib.synth.params import epidemiology_params, site_codes

TOP_KEYS = {"name", "description", "seed", "scale", "years", "end_of_follow_up", "sites",
            "historic", "effects", "feeds", "chunk_areas"}
EFFECTS = ("cluster", "treatment_effect", "late_effect", "covid", "cpes", "screening")
MIN_YEAR, MAX_YEAR = 1950, 2035


def load_config(path: Path | str, *, seed: int | None = None, scale: float | None = None,
                years: tuple[int, int] | list[int] | None = None) -> dict[str, Any]:
    """Read a cohort YAML, apply overrides (``--seed/--scale/--years``) and validate.

    ``years`` limits every diagnosis year generated, so it also drops the historic cohort.
    Returns the resolved config: effects fully spelt out (defaults merged), as written to
    ``cohort.json``.

    Example:
        >>> cfg = load_config("params/cohort/tiny.yaml")
        >>> cfg["name"], cfg["years"], cfg["scale"]
        ('tiny', [2018, 2021], 0.0002)
    """
    path = Path(path)
    raw = load_yaml(path)
    raw.setdefault("name", path.stem)
    if seed is not None:
        raw["seed"] = seed
    if scale is not None:
        raw["scale"] = scale
    if years is not None:
        raw["years"] = list(years)
        raw["historic"] = None
    return resolve_config(raw, where=str(path))


def resolve_config(raw: dict[str, Any], *, where: str = "config") -> dict[str, Any]:
    """Validate a config mapping and merge the default effects into it (idempotent).

    Example:
        >>> resolve_config({"name": "x", "seed": 1, "scale": 0.001, "years": [2019, 2019],
        ...                 "end_of_follow_up": "2020-12-31"})["effects"]["cluster"]["site"]
        'C67'
    """
    cfg = copy.deepcopy(raw)
    unknown = sorted(set(cfg) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} "
                          f"(allowed: {', '.join(sorted(TOP_KEYS))})")
    params = epidemiology_params()
    known_sites = site_codes(params)
    cfg.setdefault("name", "cohort")
    if not isinstance(cfg["name"], str) or not NAME_PATTERN.fullmatch(cfg["name"]):
        raise ConfigError(f"{where}: name {cfg['name']!r} is not allowed: use letters, digits, _ and - "
                          "only, starting with a letter or digit")
    cfg.setdefault("description", "")
    cfg["seed"] = _int(cfg.get("seed", 0), "seed", where, lo=0)
    cfg["scale"] = _float(cfg.get("scale"), "scale", where, lo=1e-5, hi=2.0)
    years = cfg.get("years")
    if not (isinstance(years, list | tuple) and len(years) == 2):
        raise ConfigError(f"{where}: years must be [start, end], got {years!r}")
    y0, y1 = (_int(y, "years", where, lo=MIN_YEAR, hi=MAX_YEAR) for y in years)
    if y0 > y1:
        raise ConfigError(f"{where}: years start {y0} is after end {y1}")
    cfg["years"] = [y0, y1]
    eof = cfg.get("end_of_follow_up", f"{y1 + 1}-06-30")
    try:
        eof_date = eof if isinstance(eof, dt.date) else dt.date.fromisoformat(str(eof))
    except ValueError:
        raise ConfigError(f"{where}: end_of_follow_up {eof!r} is not a date (YYYY-MM-DD)") from None
    if eof_date < dt.date(y1, 12, 31):
        raise ConfigError(f"{where}: end_of_follow_up {eof_date} is before the end of the last "
                          f"diagnosis year {y1}")
    cfg["end_of_follow_up"] = eof_date.isoformat()
    cfg["sites"] = _sites(cfg.get("sites"), known_sites, "sites", where)
    cfg["historic"] = _historic(cfg.get("historic"), y0, known_sites, where)
    cfg["effects"] = _effects(cfg.get("effects") or {}, params, known_sites, where)
    feeds = cfg.get("feeds") or {}
    if not isinstance(feeds, dict):
        raise ConfigError(f"{where}: feeds must be a mapping of overrides")
    cfg["feeds"] = feeds
    if cfg.get("chunk_areas") is not None:   # only when set: other configs resolve as before
        cfg["chunk_areas"] = _int(cfg["chunk_areas"], "chunk_areas", where, lo=1)
    else:
        cfg.pop("chunk_areas", None)
    return _plain(cfg)


def _plain(value: Any) -> Any:
    """Dates as ISO strings, tuples as lists: a config that round-trips through JSON."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _int(value: Any, key: str, where: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ConfigError(f"{where}: {key} must be an integer, got {value!r}")
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{where}: {key} = {value} is outside [{lo}, {hi}]")
    return value


def _float(value: Any, key: str, where: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    value = float(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(f"{where}: {key} = {value} is outside [{lo}, {hi}]")
    return value


def _sites(value: Any, known: list[str], key: str, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: {key} must be a non-empty list of ICD-10 sites or null")
    bad = [s for s in value if s not in known]
    if bad:
        raise ConfigError(f"{where}: {key} has unknown site(s) {', '.join(map(str, bad))} "
                          f"(known: {', '.join(known)})")
    return [s for s in known if s in value]


def _historic(value: Any, y0: int, known: list[str], where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"start", "sites"}:
        raise ConfigError(f"{where}: historic must be {{start: YEAR, sites: [...]}} or null")
    start = _int(value.get("start"), "historic.start", where, lo=MIN_YEAR, hi=MAX_YEAR)
    if start >= y0:
        return None
    sites = _sites(value.get("sites"), known, "historic.sites", where)
    if not sites:
        raise ConfigError(f"{where}: historic.sites must list at least one site")
    return {"start": start, "sites": sites}


def _effects(value: Any, params: dict[str, Any], known: list[str], where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: effects must be a mapping")
    unknown = sorted(set(value) - set(EFFECTS))
    if unknown:
        raise ConfigError(f"{where}: unknown effect(s) {', '.join(unknown)} (allowed: {', '.join(EFFECTS)})")
    defaults = dict(params["effects"])
    defaults["covid"] = deep_merge(params["covid"], defaults.get("covid") or {})
    out: dict[str, Any] = {}
    for name in EFFECTS:
        if name in value and value[name] is None:
            out[name] = None
            continue
        override = value.get(name) or {}
        if not isinstance(override, dict):
            raise ConfigError(f"{where}: effects.{name} must be a mapping or null")
        extra = sorted(set(override) - set(defaults[name]))
        if extra:
            raise ConfigError(f"{where}: effects.{name} has unknown key(s) {', '.join(extra)}")
        out[name] = deep_merge(defaults[name], override)
    _check_effects(out, known, where)
    return out


def _check_effects(eff: dict[str, Any], known: list[str], where: str) -> None:
    c = eff["cluster"]
    if c is not None:
        if c["site"] not in known:
            raise ConfigError(f"{where}: effects.cluster.site {c['site']!r} is not a known site")
        _float(c["relative_risk"], "effects.cluster.relative_risk", where, lo=0.0)
        _float(c["radius_km"], "effects.cluster.radius_km", where, lo=0.01, hi=200)
        ys = c["years"]
        if not (isinstance(ys, list) and len(ys) == 2 and ys[0] <= ys[1]):
            raise ConfigError(f"{where}: effects.cluster.years must be [start, end]")
        pooled = c.get("pooled")
        if pooled is not None:
            if set(pooled) != {"source_type", "relative_risk", "radius_km"}:
                raise ConfigError(f"{where}: effects.cluster.pooled needs exactly source_type, "
                                  "relative_risk and radius_km")
            if pooled["source_type"] not in {"power_station", "phone_mast", "incinerator", "industrial_site"}:
                raise ConfigError(f"{where}: effects.cluster.pooled.source_type {pooled['source_type']!r} is unknown")
            _float(pooled["relative_risk"], "effects.cluster.pooled.relative_risk", where, lo=0.0)
            _float(pooled["radius_km"], "effects.cluster.pooled.radius_km", where, lo=0.01, hi=200)
    t = eff["treatment_effect"]
    if t is not None:
        bad = [s for s in t["sites"] if s not in known]
        if bad:
            raise ConfigError(f"{where}: effects.treatment_effect.sites has unknown site(s) {bad}")
        if t["stage"] not in (1, 2, 3, 4):
            raise ConfigError(f"{where}: effects.treatment_effect.stage must be 1-4")
        if t["treatment"] != "adjuvant_sact":
            raise ConfigError(f"{where}: effects.treatment_effect.treatment must be adjuvant_sact")
        _float(t["hazard_ratio"], "effects.treatment_effect.hazard_ratio", where, lo=0.01, hi=20)
        if t["applies_to"] not in ("all_cause", "cancer"):
            raise ConfigError(f"{where}: effects.treatment_effect.applies_to must be all_cause or cancer")
        p = _float(t["assignment"]["base_probability"], "effects.treatment_effect.assignment.base_probability",
                   where, lo=0.0, hi=1.0)
        if p in (0.0, 1.0):
            raise ConfigError(f"{where}: effects.treatment_effect.assignment.base_probability must be in (0, 1)")
    le = eff["late_effect"]
    if le is not None:
        for key in ("first_site", "second_site"):
            if le[key] not in known:
                raise ConfigError(f"{where}: effects.late_effect.{key} {le[key]!r} is not a known site")
        _float(le["relative_risk"], "effects.late_effect.relative_risk", where, lo=0.0, hi=100)
        _float(le["latency_years"], "effects.late_effect.latency_years", where, lo=0.0, hi=50)
        if le["sex"] not in (1, 2):
            raise ConfigError(f"{where}: effects.late_effect.sex must be 1 or 2")
    cv = eff["covid"]
    if cv is not None:
        n = len(cv["months"])
        for site, values in cv["diagnosis_multipliers"].items():
            if site != "default" and site not in known:
                raise ConfigError(f"{where}: effects.covid.diagnosis_multipliers has unknown site {site!r}")
            if len(values) != n or min(values) < 0:
                raise ConfigError(f"{where}: effects.covid.diagnosis_multipliers.{site} needs {n} "
                                  "non-negative values (one per month)")
        for route, values in cv["route_factors"].items():
            if len(values) != n or min(values) < 0:
                raise ConfigError(f"{where}: effects.covid.route_factors.{route} needs {n} non-negative values")
        if len(cv["death_monthly_hazard"]) != n:
            raise ConfigError(f"{where}: effects.covid.death_monthly_hazard needs {n} values")
        _float(cv["stage_shift"]["late_stage_odds_ratio"], "effects.covid.stage_shift.late_stage_odds_ratio",
               where, lo=0.01, hi=20)
