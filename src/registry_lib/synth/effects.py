"""Injected effects: the cluster's extra cases and the true values written to truth/effects.json.

The cluster adds, in every area within ``radius_km`` of the named point source (and, if
configured, of every source of one type), Poisson extra cases of the named site with mean
``(relative_risk − 1) ×`` the expected count, in the configured years from the source's start
year; they are flagged ``in_cluster``. The other effects act inside the generator (treatment,
outcomes, subsequent primaries, COVID-19 multipliers); this module also summarises the true
values the studies must recover.

Example:
    >>> import numpy as np
    >>> within_radius(np.array([0.0, 3000.0]), np.array([0.0, 0.0]), 0.0, 0.0, 2.0).tolist()
    [True, False]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import ConfigError


def within_radius(x: np.ndarray, y: np.ndarray, sx: float, sy: float, radius_km: float) -> np.ndarray:
    """Areas whose centroid lies within ``radius_km`` of (sx, sy).

    Example:
        >>> within_radius(np.array([0.0, 1500.0, 2500.0]), np.array([0.0, 0.0, 0.0]), 0.0, 0.0, 2.0).tolist()
        [True, True, False]
    """
    return np.hypot(x - sx, y - sy) <= radius_km * 1000.0


def cluster_areas(cluster: dict[str, Any], areas: pd.DataFrame, sources: pd.DataFrame) -> dict[str, Any]:
    """The named source, the areas within its radius and (optionally) the pooled areas.

    Example:
        >>> areas = pd.DataFrame({"x": [0.0, 3000.0, 9000.0], "y": [0.0, 0.0, 0.0]})
        >>> sources = pd.DataFrame({"source_id": ["PS1", "PS2"], "source_type": ["mast", "mast"],
        ...                         "x": [0.0, 9000.0], "y": [0.0, 0.0], "start_year": [1990, 2005]})
        >>> c = cluster_areas({"source_id": "PS1", "radius_km": 5.0,
        ...                    "pooled": {"source_type": "mast", "radius_km": 1.0}}, areas, sources)
        >>> c["named"].tolist(), c["pooled"].tolist(), int(c["pooled_start"][2])
        ([True, True, False], [False, False, True], 2005)
    """
    sid = cluster["source_id"]
    row = sources[sources["source_id"] == sid]
    if row.empty:
        raise ConfigError(f"effects.cluster.source_id {sid!r} is not in reference/point_sources "
                          f"(known: {', '.join(sources['source_id'].head(5))}, ...)")
    src = row.iloc[0]
    x, y = areas["x"].to_numpy(), areas["y"].to_numpy()
    named = within_radius(x, y, float(src["x"]), float(src["y"]), float(cluster["radius_km"]))
    pooled = np.zeros(len(areas), dtype=bool)
    pooled_start = np.full(len(areas), 10_000)
    pc = cluster.get("pooled")
    if pc is not None:
        of_type = sources[(sources["source_type"] == pc["source_type"]) & (sources["source_id"] != sid)]
        for _, s in of_type.iterrows():   # loop over the sources of one type (tens)
            near = within_radius(x, y, float(s["x"]), float(s["y"]), float(pc["radius_km"]))
            pooled_start = np.where(near, np.minimum(pooled_start, int(s["start_year"])), pooled_start)
            pooled |= near
        pooled &= ~named
    return {"source": src, "named": named, "pooled": pooled, "pooled_start": pooled_start}
