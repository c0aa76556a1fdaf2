"""Randomly drawn effect sizes and placements, for robustness and truth-recovery runs.

``draw_effects(seed)`` returns an ``effects:`` mapping for a cohort config with every injected
effect redrawn: the cluster around another point source, of another site, with another
relative risk and radius; another adjuvant-SACT hazard ratio; another late-effect relative
risk; and COVID-19 diagnosis multipliers whose monthly deficits are scaled by a drawn factor
per site. ``null`` switches effects off. The same seed gives the same draws.

Example:
    >>> eff = draw_effects(3, null=["covid"])
    >>> eff["covid"] is None, sorted(eff) == ["cluster", "covid", "late_effect", "treatment_effect"]
    (True, True)
    >>> eff == draw_effects(3, null=["covid"])
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from registry_lib.errors import ConfigError
from registry_lib.synth.config import EFFECTS
from registry_lib.synth.params import epidemiology_params

#: Sites a drawn cluster may be of (common enough to be studied at small scale).
CLUSTER_SITES = ("C67", "C34", "C18", "C50", "C61", "C25", "C64", "C91")
#: Point sources a drawn cluster may be around: every cohort has at least two of each of the
#: four source types, so PS0001-PS0008 always exist.
CLUSTER_SOURCES = tuple(f"PS{i:04d}" for i in range(1, 9))


def draw_effects(seed: int, *, null: Sequence[str] = (), ranges: dict[str, Sequence[float]] | None = None
                 ) -> dict[str, Any]:
    """An ``effects:`` mapping with drawn sizes and placements; the effects in ``null`` are off.

    ``ranges`` overrides the uniform ranges drawn from: ``cluster_rr`` (default 1.5-4),
    ``radius_km`` (4-10), ``hazard_ratio`` (0.5-1.1), ``late_rr`` (2-8) and ``covid_scale``
    (0.5-1.5, the factor on each site's monthly deficit 1 - multiplier).

    Example:
        >>> eff = draw_effects(7, ranges={"hazard_ratio": (0.6, 0.6)})
        >>> eff["cluster"]["site"] in CLUSTER_SITES, eff["treatment_effect"], 2.0 <= eff["late_effect"]["relative_risk"] <= 8.0
        (True, {'hazard_ratio': 0.6}, True)
        >>> draw_effects(7, null=["cluster"])["cluster"] is None
        True
        >>> draw_effects(7, null=["clusters"])
        Traceback (most recent call last):
        registry_lib.errors.ConfigError: draw_effects: unknown effect(s) clusters (known: cluster, treatment_effect, late_effect, covid, cpes, screening)
    """
    bad = sorted(set(null) - set(EFFECTS))
    if bad:
        raise ConfigError(f"draw_effects: unknown effect(s) {', '.join(bad)} (known: {', '.join(EFFECTS)})")
    r = {"cluster_rr": (1.5, 4.0), "radius_km": (4.0, 10.0), "hazard_ratio": (0.5, 1.1), "late_rr": (2.0, 8.0),
         "covid_scale": (0.5, 1.5), **(ranges or {})}
    rng = np.random.default_rng([int(seed), 1111])

    def u(key: str) -> float:
        lo, hi = r[key]
        return round(float(rng.uniform(lo, hi)), 3)

    covid = epidemiology_params()["covid"]
    multipliers = {}
    for site, values in covid["diagnosis_multipliers"].items():   # a few site entries
        deficit = 1.0 - np.asarray(values, dtype=float)
        multipliers[site] = [round(float(v), 3) for v in np.clip(1.0 - deficit * u("covid_scale"), 0.0, None)]
    effects: dict[str, Any] = {
        "cluster": {"site": str(rng.choice(CLUSTER_SITES)), "source_id": str(rng.choice(CLUSTER_SOURCES)),
                    "relative_risk": u("cluster_rr"), "radius_km": u("radius_km")},
        "treatment_effect": {"hazard_ratio": u("hazard_ratio")},
        "late_effect": {"relative_risk": u("late_rr")},
        "covid": {"diagnosis_multipliers": multipliers},
    }
    for name in null:
        effects[name] = None
    return effects
