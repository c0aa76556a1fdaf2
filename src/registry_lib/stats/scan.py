"""Kulldorff's circular spatial scan statistic (discrete Poisson model, high rates).

:func:`kulldorff_scan` reproduces SaTScan's purely spatial Poisson analysis:

- **Windows.** Every location is a potential centre. Around each centre the other locations
  enter in order of distance; locations at exactly the same distance enter together (a window
  never splits a tie). Every such nested window whose population is at most
  ``max_pop_fraction`` of the total is scanned.
- **Likelihood ratio.** For a window with ``c`` cases and expected ``E = C·pop_in/pop_total``
  (``C`` cases in all), ``LLR = c·ln(c/E) + (C−c)·ln((C−c)/(C−E))`` when ``c > E``, else 0;
  the relative risk is ``(c/E) / ((C−c)/(C−E))``.
- **Inference.** ``n_sim`` null data sets put the ``C`` cases on the locations multinomially
  in proportion to population; the Monte Carlo p-value of a cluster is
  ``(1 + #{simulated maximum LLR ≥ its LLR}) / (n_sim + 1)``. Secondary clusters are judged
  against the same distribution of maxima (as SaTScan does, which is conservative).
  ``p_value_gumbel`` is SaTScan's Gumbel approximation (method-of-moments fit to the simulated
  maxima), useful below ``1/(n_sim + 1)``.
- **Secondary clusters** (SaTScan's "no geographical overlap"): the best window of each
  centre, taken in decreasing LLR order, is reported if it shares no location with a cluster
  already reported.
- **Distance.** ``metric="euclidean"`` on planar coordinates (radius in coordinate units) or
  ``metric="haversine"`` on (latitude, longitude) in degrees, great-circle distance on a sphere
  of radius :data:`EARTH_RADIUS_KM` = 6367 km, SaTScan's value (radius in km).

Covariate adjustment: pass indirectly standardised expected counts as ``population``; the
expected count of a window is then ``C·Σexpected_in/Σexpected``, SaTScan's adjusted Poisson
model, and ``max_pop_fraction`` applies to the share of expected cases.

Scale (issue 17: 37,000 areas at 10% with 999 replications in ≤ 10 min and ≤ 8 GB). Windows
are built for blocks of centres, each centre's neighbours sorted by distance and cut at its
largest window within the population limit (no full distance matrix: one block's rows of
distances at a time), and kept compactly, 5 bytes a window (England's ~137 million windows at
10%: 0.7 GB). The Monte Carlo maxima are exact while evaluating few windows: a pilot of 20
replications is scanned in full (per centre, the window counts of a chunk of replications are
one cumulative sum along its neighbour list, and every LLR uses a precomputed table of
``c·ln c + (C−c)·ln(C−c)``); the other replications are screened at a level L, 0.75 × the
smallest pilot maximum: each centre's list is cut into segments, their counts for a chunk of
replications are one sparse-matrix product, cumulated they bound the count of every window, and
only the windows that can reach their critical count (the count at which their LLR is L) are
evaluated; a replication whose maximum is below L is scanned again in full. Blocks of centres
are shared between threads; no result depends on the blocking or the number of threads. Time
and memory: ``benchmarks/bench_scan.py``.

Reference:
    Kulldorff M (1997). A spatial scan statistic. Communications in Statistics: Theory and
    Methods 26:1481-1496. Kulldorff M, SaTScan User Guide v9.x (secondary clusters, Gumbel).

Example:
    >>> import numpy as np, pandas as pd
    >>> xy = pd.DataFrame({"x": np.repeat(np.arange(5.0), 5), "y": np.tile(np.arange(5.0), 5)})
    >>> pop = pd.Series(1000, index=xy.index)
    >>> cases = pd.Series(2, index=xy.index); cases[[0, 1, 5]] = 12
    >>> res = kulldorff_scan(cases, pop, xy, n_sim=99, seed=1)
    >>> sorted(res.clusters.loc[0, "members"]), int(res.clusters.loc[0, "observed"])
    ([0, 1, 5], 36)
    >>> float(res.clusters.loc[0, "p_value"])
    0.01
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.stats.scan_engine import (
    _LLR,
    _METRICS,
    _observe,
    _prepare,
    _simulated_maxima,
    _spatial_order,
)
from registry_lib.stats.scan_engine import EARTH_RADIUS_KM as EARTH_RADIUS_KM

_EULER_GAMMA = 0.5772156649015329
_CLUSTER_COLUMNS = [
    "members",
    "center",
    "radius",
    "n_locations",
    "population",
    "observed",
    "expected",
    "relative_risk",
    "llr",
    "p_value",
    "p_value_gumbel",
]


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass
class ScanResult:
    """Result of :func:`kulldorff_scan`.

    Attributes:
        clusters: one row per reported cluster, most likely first: ``members`` (list of
            location labels, nearest the centre first), ``center`` (label), ``radius``,
            ``n_locations``, ``population``, ``observed``, ``expected``, ``relative_risk``,
            ``llr``, ``p_value`` (Monte Carlo), ``p_value_gumbel``.
        simulated_llr: maximum LLR of each null replication.
        total_cases, total_population, n_sim, max_pop_fraction, metric, seed: the settings.

    Example:
        >>> xy = pd.DataFrame({"x": np.repeat(np.arange(4.0), 4), "y": np.tile(np.arange(4.0), 4)})
        >>> cases = pd.Series(2, index=xy.index); cases[[0, 1]] = 10
        >>> res = kulldorff_scan(cases, pd.Series(1000, index=xy.index), xy, n_sim=19, seed=1)
        >>> res.n_sim, len(res.simulated_llr), res.total_cases
        (19, 19, 48)
    """

    clusters: pd.DataFrame
    simulated_llr: np.ndarray
    total_cases: int
    total_population: float
    n_sim: int
    max_pop_fraction: float
    metric: str
    seed: int | None
    n_windows: int = field(default=0)

    @property
    def most_likely(self) -> pd.Series:
        """The most likely cluster (first row of ``clusters``).

        Example:
            >>> res = kulldorff_scan(pd.Series([9, 8, 1, 1]), pd.Series([100] * 4),
            ...                      pd.DataFrame({"x": [0.0, 1, 5, 6], "y": 0.0}), n_sim=0)
            >>> int(res.most_likely["observed"])
            17
        """
        if self.clusters.empty:
            raise RegistryLabError("the scan found no window with more cases than expected")
        return self.clusters.iloc[0]

    def membership(self) -> pd.DataFrame:
        """Long table of cluster membership: ``cluster`` (1 = most likely), ``location``.

        Example:
            >>> res = kulldorff_scan(pd.Series([9, 8, 1, 1]), pd.Series([100] * 4),
            ...                      pd.DataFrame({"x": [0.0, 1, 5, 6], "y": 0.0}), n_sim=0)
            >>> res.membership().query("cluster == 1")["location"].tolist()
            [0, 1]
        """
        rows = [
            (j + 1, loc) for j, members in enumerate(self.clusters["members"]) for loc in members
        ]
        return pd.DataFrame(rows, columns=["cluster", "location"])

    def summary(self, alpha: float = 0.05) -> pd.DataFrame:
        """The clusters table without member lists, with a ``significant`` column.

        Example:
            >>> res = kulldorff_scan(pd.Series([9, 8, 1, 1]), pd.Series([100] * 4),
            ...                      pd.DataFrame({"x": [0.0, 1, 5, 6], "y": 0.0}), n_sim=19,
            ...                      seed=3)
            >>> row = res.summary().iloc[0]
            >>> int(row["observed"]), float(row["p_value"]), bool(row["significant"])
            (17, 0.05, True)
        """
        out = self.clusters.drop(columns=["members"]).copy()
        out["significant"] = out["p_value"] <= alpha
        return out


def _gumbel_p(x: np.ndarray, sims: np.ndarray) -> np.ndarray:
    if len(sims) < 2 or np.std(sims) == 0:
        return np.full(len(x), np.nan)
    beta = np.std(sims, ddof=1) * math.sqrt(6) / math.pi
    mu = np.mean(sims) - _EULER_GAMMA * beta
    return -np.expm1(-np.exp(-(np.asarray(x) - mu) / beta))


def kulldorff_scan(
    cases,
    population,
    coords,
    *,
    max_pop_fraction: float = 0.5,
    n_sim: int = 999,
    metric: str = "euclidean",
    seed: int | None = None,
    max_clusters: int | None = None,
    n_jobs: int | None = None,
) -> ScanResult:
    """Kulldorff's circular spatial scan for high rates (Poisson model), as in SaTScan.

    Args:
        cases: case count per location; a Series indexed by location label (or an array,
            labelled 0..n-1).
        population: population (or expected count, for an adjusted scan) per location, same
            labels.
        coords: per-location coordinates, a DataFrame (or n×2 array) with the same labels:
            (x, y) for ``metric="euclidean"``; (latitude, longitude) in degrees for
            ``metric="haversine"`` (columns named lat/lon or latitude/longitude are picked up
            whatever their order, otherwise the first column is the latitude).
        max_pop_fraction: largest window, as a fraction of the total population (0 < f ≤ 0.5
            is usual; at most 1).
        n_sim: number of Monte Carlo replications (0 for no inference).
        metric: ``"euclidean"`` or ``"haversine"``.
        seed: seed of the ``numpy.random.Generator`` that draws the null data sets.
        max_clusters: report at most this many clusters (``None``: every non-overlapping
            cluster with more cases than expected).
        n_jobs: threads, which share the blocks of centres (windows and simulation; default:
            up to 2, the CPUs available).

    Returns:
        :class:`ScanResult`; its ``.clusters`` DataFrame has one row per cluster, most likely
        first.

    Raises:
        RegistryLabError: labels that do not match, negative or non-integer counts, bad
            coordinates or settings.

    Example:
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> xy = pd.DataFrame(rng.random((60, 2)), columns=["x", "y"])
        >>> pop = pd.Series(rng.integers(500, 2000, 60), index=xy.index)
        >>> cases = pd.Series(rng.poisson(pop / 100), index=xy.index)
        >>> res = kulldorff_scan(cases, pop, xy, n_sim=99, seed=1)
        >>> list(res.clusters.columns[:4])
        ['members', 'center', 'radius', 'n_locations']
    """
    if metric not in _METRICS:
        raise RegistryLabError(f"metric={metric!r}: must be one of {_METRICS}")
    if not 0 < float(max_pop_fraction) <= 1:
        raise RegistryLabError(
            f"max_pop_fraction={max_pop_fraction!r}: must be in (0, 1] (SaTScan's default 0.5)"
        )
    if int(n_sim) != n_sim or n_sim < 0:
        raise RegistryLabError(f"n_sim={n_sim!r}: must be a whole number >= 0")
    n_sim = int(n_sim)
    if n_jobs is None:
        n_jobs = max(1, min(2, os.cpu_count() or 1))
    labels_in, c_in, pop_in, xy_in = _prepare(cases, population, coords, metric)
    # work in a spatial order (faster); ties and outputs follow the input order
    perm = _spatial_order(xy_in, metric)
    inv = np.argsort(perm)
    labels, c, pop, xy = labels_in[perm], c_in[perm], pop_in[perm], xy_in[perm]
    total_c = int(c.sum())
    total_p = float(pop.sum())
    limit = max_pop_fraction * total_p * (1 + 1e-12)
    llr = _LLR(total_c)

    # null data sets, multinomial given the total: drawn in input order, kept in spatial order
    sims = None
    if n_sim > 0 and total_c > 0:
        rng = np.random.default_rng(seed)
        probs = pop_in / total_p
        chunk = max(1, min(n_sim, 20_000_000 // max(len(labels), 1)))
        sims = np.empty((n_sim, len(labels)), dtype=np.int32)
        for a in range(0, n_sim, chunk):
            r = min(chunk, n_sim - a)
            sims[a : a + r] = np.take(rng.multinomial(total_c, probs, size=r), perm, axis=1)

    # windows block by block: the observed scan and the pilot replications
    tables = _observe(xy, pop, c, limit, metric, inv, llr, total_p, sims, n_jobs)
    best = tables.best

    # best window per centre, then non-overlapping clusters in decreasing LLR
    rows = []
    cand = np.flatnonzero(best.llr > 0)
    cand = cand[np.lexsort((perm[cand], -best.llr[cand]))]
    used = np.zeros(len(labels), dtype=bool)
    for i in cand:
        members = tables.members(i)
        if used[members].any():
            continue
        used[members] = True
        rows.append((i, members))
        if max_clusters is not None and len(rows) >= max_clusters:
            break

    # Monte Carlo null: the maximum LLR of every replication
    sim_max = np.zeros(0)
    if sims is not None and rows:
        sim_max = _simulated_maxima(tables, sims, llr, pop, total_p, n_jobs)
    n_windows = tables.n_windows
    del sims, tables  # the windows: up to GBs on national data

    records = []
    for i, members in rows:
        o = int(best.observed[i])
        e = float(best.expected[i])
        rr = (o / e) / ((total_c - o) / (total_c - e)) if o < total_c else np.inf
        lam = float(best.llr[i])
        p = (
            (1 + int(np.sum(sim_max >= lam - 1e-9 * max(1.0, lam)))) / (n_sim + 1)
            if n_sim
            else np.nan
        )
        records.append(
            {
                "members": labels[members].tolist(),
                "center": labels[[i]].tolist()[0],
                "radius": float(best.radius[i]),
                "n_locations": len(members),
                "population": float(best.population[i]),
                "observed": o,
                "expected": e,
                "relative_risk": rr,
                "llr": lam,
                "p_value": p,
            }
        )
    clusters = pd.DataFrame.from_records(records, columns=_CLUSTER_COLUMNS[:-1])
    clusters["p_value_gumbel"] = _gumbel_p(clusters["llr"].to_numpy(float), sim_max)
    return ScanResult(
        clusters=clusters,
        simulated_llr=sim_max,
        total_cases=total_c,
        total_population=total_p,
        n_sim=n_sim,
        max_pop_fraction=float(max_pop_fraction),
        metric=metric,
        seed=seed,
        n_windows=n_windows,
    )
