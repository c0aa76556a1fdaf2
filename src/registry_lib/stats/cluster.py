"""Point-source cluster methods: distance bands, SIR by band, homogeneity, trend and Stone's test.

These follow the Small Area Health Statistics Unit's Rapid Inquiry Facility (RIF) and the
public-health cluster guidance (CDC/CSTE 2013, PHE 2019):

- :func:`distance_to_nearest_source` — distance from each area to the nearest source (one
  source, or all sources of a type pooled, as the RIF does);
- :func:`assign_bands` — distance bands, default 0–2, 2–5, 5–10, 10–25 km (left-closed);
- :func:`area_observed_expected` — observed cases and indirectly standardised expected counts
  per area;
- :func:`band_sir_from_areas` / :func:`band_sir` — SIR by band with exact (O < 10) or Byar
  limits, a chi-square test of homogeneity across bands (J−1 df) and a 1-df score test for
  trend over distance;
- :func:`stone_test` — Stone's (1988) test: the maximum cumulative O/E moving outward from the
  source, with a Monte Carlo p-value under a multinomial (conditional) or Poisson null.

References:
    Breslow NE, Day NE (1987). Statistical methods in cancer research, vol. II, §3.4
    (homogeneity and trend of SMRs). Stone RA (1988). Investigations of excess environmental
    risks around putative sources. Statistics in Medicine 7:649-660. Beale L et al. (2010).
    The Rapid Inquiry Facility (RIF). Elliott P et al. (1992). Small-area studies around
    point sources.

Example:
    >>> import numpy as np, pandas as pd
    >>> d = pd.Series([0.5, 1.5, 3.0, 4.0, 7.0, 12.0, 20.0])
    >>> o = pd.Series([4, 3, 3, 2, 2, 5, 6])
    >>> e = pd.Series([1.0, 1.2, 2.0, 2.1, 2.5, 6.0, 7.0])
    >>> res = band_sir_from_areas(o, e, d)
    >>> res.table[["band", "observed", "expected", "sir"]]
        band  observed  expected       sir
    0    0-2         7       2.2  3.181818
    1    2-5         5       4.1  1.219512
    2   5-10         2       2.5  0.800000
    3  10-25        11      13.0  0.846154
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.stats.rates import indirect_expected, sir
from registry_lib.stats.scan_engine import EARTH_RADIUS_KM
from registry_lib.stats.sir_tests import ChiSquareResult, homogeneity_test, trend_test

#: Default distance bands around a source, km (issue 6; the RIF's usual choice).
DEFAULT_BANDS_KM: tuple[float, ...] = (0.0, 2.0, 5.0, 10.0, 25.0)

_UNIT_KM = {"m": 0.001, "km": 1.0}


# --------------------------------------------------------------------------------------------
# Distances and bands
# --------------------------------------------------------------------------------------------


def _xy(df: pd.DataFrame | np.ndarray, what: str, metric: str) -> np.ndarray:
    if isinstance(df, pd.DataFrame):
        cols = {str(c).lower(): c for c in df.columns}
        pairs = (
            [("lat", "lon"), ("latitude", "longitude")] if metric == "haversine" else [("x", "y")]
        )
        for a, b in pairs:
            if a in cols and b in cols:
                arr = df[[cols[a], cols[b]]].to_numpy(dtype=float)
                break
        else:
            if df.shape[1] != 2:
                raise RegistryLabError(
                    f"{what}: needs columns x, y (or lat, lon for haversine), got {list(df.columns)}"
                )
            arr = df.to_numpy(dtype=float)
    else:
        arr = np.atleast_2d(np.asarray(df, dtype=float))
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise RegistryLabError(f"{what}: expected two coordinates per row")
    if not np.all(np.isfinite(arr)):
        raise RegistryLabError(
            f"{what}: row {int(np.flatnonzero(~np.isfinite(arr).all(1))[0])} "
            "has a missing coordinate"
        )
    return arr


def distance_to_nearest_source(
    areas: pd.DataFrame,
    sources: pd.DataFrame | np.ndarray,
    *,
    metric: str = "euclidean",
    units: str = "m",
) -> pd.DataFrame:
    """Distance (km) from each area to its nearest source, and which source that is.

    Pass one source for a single-source study, or every source of a type to pool them (each
    area is then attributed to its nearest source, as in the RIF).

    Args:
        areas: area coordinates, columns ``x, y`` (or ``lat, lon`` with ``metric="haversine"``),
            indexed by area label.
        sources: source coordinates, same convention; a DataFrame index labels the sources.
        metric: ``"euclidean"`` (planar) or ``"haversine"`` (degrees; Earth radius 6367 km).
        units: units of planar coordinates, ``"m"`` (British National Grid style) or ``"km"``.

    Returns:
        DataFrame indexed like ``areas`` with ``distance_km`` and ``nearest_source``.

    Example:
        >>> areas = pd.DataFrame({"x": [0.0, 3000.0], "y": [0.0, 4000.0]}, index=["a", "b"])
        >>> src = pd.DataFrame({"x": [0.0], "y": [1000.0]}, index=["PS1"])
        >>> distance_to_nearest_source(areas, src)
           distance_km nearest_source
        a     1.000000            PS1
        b     4.242641            PS1
    """
    if metric not in ("euclidean", "haversine"):
        raise RegistryLabError(f"metric={metric!r}: must be euclidean or haversine")
    if units not in _UNIT_KM:
        raise RegistryLabError(f"units={units!r}: planar coordinates must be in 'm' or 'km'")
    a = _xy(areas, "areas", metric)
    s = _xy(sources, "sources", metric)
    if len(s) == 0:
        raise RegistryLabError("sources: no point source given")
    if metric == "euclidean":
        dist = np.hypot(a[:, 0, None] - s[None, :, 0], a[:, 1, None] - s[None, :, 1])
        dist = dist * _UNIT_KM[units]
    else:
        la, lo = np.radians(a[:, 0])[:, None], np.radians(a[:, 1])[:, None]
        ls, los = np.radians(s[:, 0])[None, :], np.radians(s[:, 1])[None, :]
        h = np.sin((la - ls) / 2) ** 2 + np.cos(la) * np.cos(ls) * np.sin((lo - los) / 2) ** 2
        dist = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0, 1)))
    j = np.argmin(dist, axis=1)
    labels = sources.index if isinstance(sources, pd.DataFrame) else pd.RangeIndex(len(s))
    index = areas.index if isinstance(areas, pd.DataFrame) else pd.RangeIndex(len(a))
    return pd.DataFrame(
        {"distance_km": dist[np.arange(len(a)), j], "nearest_source": np.asarray(labels)[j]},
        index=index,
    )


def _band_labels(edges: np.ndarray) -> list[str]:
    def fmt(v: float) -> str:
        return f"{v:g}"

    return [f"{fmt(lo)}-{fmt(hi)}" for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def _check_edges(bands_km: Sequence[float]) -> np.ndarray:
    edges = np.asarray(bands_km, dtype=float)
    if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0) or edges[0] < 0:
        raise RegistryLabError(
            f"bands_km={list(bands_km)!r}: give increasing band edges in km, e.g. [0, 2, 5, 10, 25]"
        )
    return edges


def assign_bands(distance_km, bands_km: Sequence[float] = DEFAULT_BANDS_KM) -> pd.Series:
    """Distance band of each area: ``[edge_j, edge_{j+1})`` km; beyond the last edge → NaN.

    Example:
        >>> assign_bands(pd.Series([0.0, 1.99, 2.0, 24.9, 30.0])).astype(object).tolist()
        ['0-2', '0-2', '2-5', '10-25', nan]
    """
    edges = _check_edges(bands_km)
    d = (
        pd.Series(distance_km, dtype=float)
        if not isinstance(distance_km, pd.Series)
        else (distance_km.astype(float))
    )
    return pd.cut(d, edges, right=False, labels=_band_labels(edges)).rename("band")


# --------------------------------------------------------------------------------------------
# Observed and expected per area
# --------------------------------------------------------------------------------------------


def area_observed_expected(
    cases: pd.DataFrame,
    population: pd.DataFrame,
    reference_rates: pd.DataFrame,
    by: Sequence[str] = ("age_band", "sex"),
    *,
    area: str = "area_id",
    count: str | None = None,
    population_col: str = "population",
    rate: str = "rate",
) -> pd.DataFrame:
    """Observed cases and indirectly standardised expected counts per area.

    Args:
        cases: one row per case with column ``area`` (or aggregated rows with a ``count``
            column).
        population: person-years by area and stratum (``by``); rows for several years are
            summed.
        reference_rates: rate per person-year by stratum (e.g. :func:`stratum_rates` over the
            comparison region).
        by: stratum columns (age band × sex, optionally × deprivation quintile).
        area: the area column in ``cases`` and ``population``.

    Returns:
        DataFrame indexed by area (every area of ``population``): ``observed, expected,
        population``.

    Raises:
        RegistryLabError: a case in an area with no population row.

    Example:
        >>> pop = pd.DataFrame({"area_id": ["a", "a", "b"], "sex": [1, 2, 1],
        ...                     "population": [1000, 1000, 2000]})
        >>> rates = pd.DataFrame({"sex": [1, 2], "rate": [0.001, 0.003]})
        >>> cases = pd.DataFrame({"area_id": ["a", "a", "a", "b"]})
        >>> area_observed_expected(cases, pop, rates, by=["sex"]).reset_index()
          area_id  observed  expected  population
        0       a         3       4.0        2000
        1       b         1       2.0        2000
    """
    if area not in cases.columns or area not in population.columns:
        raise RegistryLabError(f"cases and population both need the area column {area!r}")
    exp = indirect_expected(
        population, reference_rates, list(by), population=population_col, rate=rate, group=area
    )
    pop = population.groupby(area, observed=True)[population_col].sum()
    if count is None:
        obs = cases.groupby(area, observed=True).size()
    else:
        obs = cases.groupby(area, observed=True)[count].sum()
    unknown = obs.index.difference(exp.index)
    if len(unknown):
        raise RegistryLabError(
            f"cases: area {unknown[0]!r} has cases but no population row "
            f"({int(obs.loc[unknown].sum())} case(s) would be lost)"
        )
    out = pd.DataFrame({"expected": exp, "population": pop})
    out.insert(0, "observed", obs.reindex(out.index, fill_value=0).astype(np.int64))
    out.index.name = area
    return out


@dataclass
class BandResult:
    """SIR by distance band with homogeneity and trend tests.

    Attributes:
        table: one row per band: ``band, band_rank, from_km, to_km, n_areas, observed,
            expected, sir, lower, upper, method``.
        homogeneity: :class:`ChiSquareResult` (J−1 df).
        trend: :class:`ChiSquareResult` (1 df; ``estimate`` = SIR ratio per band step).

    Example:
        >>> res = band_sir_from_areas(pd.Series([4, 2, 6]), pd.Series([1.0, 2.0, 6.0]),
        ...                           pd.Series([1.0, 3.0, 12.0]))
        >>> res.table["band"].tolist(), res.homogeneity.df, res.trend.df
        (['0-2', '2-5', '5-10', '10-25'], 2, 1)
    """

    table: pd.DataFrame
    homogeneity: ChiSquareResult
    trend: ChiSquareResult

    @property
    def tests(self) -> pd.DataFrame:
        """The two tests as a tidy DataFrame.

        Example:
            >>> res = band_sir_from_areas([9, 4, 3, 2], [3.0, 6.0, 3.5, 4.0], [1, 3, 7, 12])
            >>> res.tests[["test", "df"]].values.tolist()
            [['homogeneity', 3], ['trend', 1]]
        """
        return pd.DataFrame([self.homogeneity.as_dict(), self.trend.as_dict()])


def band_sir_from_areas(
    observed,
    expected,
    distance_km,
    bands_km: Sequence[float] = DEFAULT_BANDS_KM,
    *,
    level: float = 0.95,
    method: str = "auto",
    score: str = "rank",
) -> BandResult:
    """SIR by distance band from per-area observed and expected counts.

    Args:
        observed, expected, distance_km: per-area values (aligned arrays or Series).
        bands_km: band edges in km; areas beyond the last edge are left out.
        level: confidence level of the SIR intervals.
        method: SIR interval method (``"auto"``: exact when O < 10, Byar otherwise).
        score: trend-test score of each band, ``"rank"`` (0, 1, 2, …) or ``"midpoint"``
            (the band's mid-distance in km).

    Returns:
        :class:`BandResult`.

    Example:
        >>> res = band_sir_from_areas([5, 2, 1], [1.0, 2.0, 1.5], [1.0, 3.0, 6.0])
        >>> res.table[["band", "observed", "sir", "method"]]
            band  observed       sir method
        0    0-2         5  5.000000  exact
        1    2-5         2  1.000000  exact
        2   5-10         1  0.666667  exact
        3  10-25         0       NaN   none
    """
    edges = _check_edges(bands_km)
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    d = np.asarray(distance_km, dtype=float)
    if not (len(o) == len(e) == len(d)):
        raise RegistryLabError("observed, expected and distance_km must have one value per area")
    if np.any(e < 0) or np.any(o < 0):
        raise RegistryLabError("observed and expected counts must be >= 0")
    band = np.searchsorted(edges, d, side="right") - 1
    inside = (band >= 0) & (band < len(edges) - 1) & np.isfinite(d)
    nb = len(edges) - 1
    ob = np.bincount(band[inside], weights=o[inside], minlength=nb)
    eb = np.bincount(band[inside], weights=e[inside], minlength=nb)
    nareas = np.bincount(band[inside], minlength=nb)
    bad = (eb == 0) & (ob > 0)
    if bad.any():
        raise RegistryLabError(
            f"band {_band_labels(edges)[int(np.flatnonzero(bad)[0])]} km has cases but no "
            "expected count (no population?)"
        )
    table = pd.DataFrame(
        {
            "band": _band_labels(edges),
            "band_rank": np.arange(nb),
            "from_km": edges[:-1],
            "to_km": edges[1:],
            "n_areas": nareas,
            "observed": ob.astype(np.int64) if np.all(ob == np.round(ob)) else ob,
            "expected": eb,
        }
    )
    pos = eb > 0
    s = sir(ob[pos], eb[pos], level=level, method=method)
    for col in ("sir", "lower", "upper"):
        table[col] = np.nan
        table.loc[pos, col] = s[col].to_numpy()
    table["method"] = "none"
    table.loc[pos, "method"] = s["method"].to_numpy()
    if score == "rank":
        x = np.arange(nb, dtype=float)
    elif score == "midpoint":
        x = (edges[:-1] + edges[1:]) / 2
    else:
        raise RegistryLabError(f"score={score!r}: trend score must be 'rank' or 'midpoint'")
    return BandResult(
        table=table,
        homogeneity=homogeneity_test(ob, eb),
        trend=trend_test(ob, eb, x, level=level),
    )


def band_sir(
    cases: pd.DataFrame,
    population: pd.DataFrame,
    reference_rates: pd.DataFrame,
    areas: pd.DataFrame,
    sources: pd.DataFrame | np.ndarray,
    bands_km: Sequence[float] = DEFAULT_BANDS_KM,
    *,
    by: Sequence[str] = ("age_band", "sex"),
    area: str = "area_id",
    metric: str = "euclidean",
    units: str = "m",
    level: float = 0.95,
    method: str = "auto",
    score: str = "rank",
) -> BandResult:
    """SIR by distance band around a point source (or pooled sources), RIF style.

    Combines :func:`area_observed_expected`, :func:`distance_to_nearest_source` and
    :func:`band_sir_from_areas`.

    Args:
        cases: one row per case with an ``area`` column.
        population: person-years by area × stratum (``by``).
        reference_rates: rate per person-year by stratum for the comparison region.
        areas: area coordinates (``x, y`` or ``lat, lon``) indexed by area, or with an
            ``area`` column.
        sources: coordinates of the source(s).
        bands_km: band edges in km.

    Example:
        >>> areas = pd.DataFrame({"area_id": ["a", "b", "c"], "x": [0, 3000, 8000],
        ...                       "y": [0, 0, 0]})
        >>> pop = pd.DataFrame({"area_id": ["a", "b", "c"], "sex": 1, "population": 1000})
        >>> rates = pd.DataFrame({"sex": [1], "rate": [0.002]})
        >>> cases = pd.DataFrame({"area_id": ["a"] * 6 + ["b", "c"]})
        >>> res = band_sir(cases, pop, rates, areas, [[0.0, 0.0]], by=["sex"])
        >>> res.table.loc[0, ["band", "observed", "expected", "sir"]].to_dict()
        {'band': '0-2', 'observed': 6, 'expected': 2.0, 'sir': 3.0}
    """
    oe = area_observed_expected(cases, population, reference_rates, by, area=area)
    coords = areas.set_index(area) if area in areas.columns else areas
    missing = oe.index.difference(coords.index)
    if len(missing):
        raise RegistryLabError(f"areas: no coordinates for area {missing[0]!r}")
    dist = distance_to_nearest_source(coords.loc[oe.index], sources, metric=metric, units=units)
    return band_sir_from_areas(
        oe["observed"],
        oe["expected"],
        dist["distance_km"],
        bands_km,
        level=level,
        method=method,
        score=score,
    )


# --------------------------------------------------------------------------------------------
# Stone's test
# --------------------------------------------------------------------------------------------


@dataclass
class StoneResult:
    """Stone's test.

    Attributes:
        statistic: maximum cumulative O/E moving outward from the source.
        distance_km: distance of the outermost unit in the maximising set.
        n_units: number of units (areas or bands) in that set.
        p_value: Monte Carlo p-value ``(1 + #{T_sim ≥ T}) / (n_sim + 1)``.
        table: cumulative table by distance: ``distance_km, observed, expected, cum_observed,
            cum_expected, cum_sir``.
        null: ``"multinomial"`` or ``"poisson"``; n_sim; simulated (the simulated maxima).

    Example:
        >>> res = stone_test([6, 3, 2, 2, 1], [1.0, 1.5, 2.5, 3.0, 4.0],
        ...                  distance_km=[0.5, 1.0, 2.0, 3.0, 4.0], n_sim=99, seed=1)
        >>> res.n_units, res.null, len(res.simulated)
        (1, 'multinomial', 99)
    """

    statistic: float
    distance_km: float
    n_units: int
    p_value: float
    n_sim: int
    null: str
    table: pd.DataFrame
    simulated: np.ndarray


def stone_test(
    observed,
    expected,
    distance_km,
    *,
    n_sim: int = 999,
    null: str = "multinomial",
    seed: int | None = None,
    max_distance_km: float | None = None,
) -> StoneResult:
    """Stone's test for a decline in risk with distance from a source.

    Units (areas or bands) are ordered by distance; units at the same distance enter
    together. ``T = max_k ΣO/ΣE`` over the first k units. Null data are drawn
    ``n_sim`` times: ``"multinomial"`` puts the observed total on the units in proportion to
    E (risk constant but unknown, the conditional test); ``"poisson"`` draws
    ``O_j ~ Poisson(E_j)`` (risk equal to the reference rates).

    Example:
        >>> res = stone_test([6, 3, 2, 2, 1], [1.0, 1.5, 2.5, 3.0, 4.0],
        ...                  [0.5, 1.0, 3.0, 6.0, 9.0], n_sim=999, seed=2)
        >>> res.statistic, res.n_units, res.p_value < 0.05
        (6.0, 1, True)
    """
    o = np.asarray(observed, dtype=float)
    e = np.asarray(expected, dtype=float)
    d = np.asarray(distance_km, dtype=float)
    if not (len(o) == len(e) == len(d)):
        raise RegistryLabError("observed, expected and distance_km must have one value per unit")
    if np.any(o < 0) or np.any(o != np.round(o)):
        raise RegistryLabError("observed: counts must be whole numbers >= 0")
    if np.any(e < 0) or not np.all(np.isfinite(d)):
        raise RegistryLabError("expected must be >= 0 and distances finite")
    if null not in ("multinomial", "poisson"):
        raise RegistryLabError(f"null={null!r}: must be 'multinomial' or 'poisson'")
    if max_distance_km is not None:
        keep = d <= max_distance_km
        o, e, d = o[keep], e[keep], d[keep]
    order = np.argsort(d, kind="stable")
    o, e, d = o[order], e[order], d[order]
    # only sets that end at a change of distance (ties enter together) and have E > 0
    ends = np.ones(len(d), dtype=bool)
    ends[:-1] = d[1:] > d[:-1]
    cum_e = np.cumsum(e)
    ends &= cum_e > 0
    if not ends.any():
        raise RegistryLabError("stone_test: total expected count is zero")
    cum_o = np.cumsum(o)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ends, cum_o / cum_e, -np.inf)
    k = int(np.argmax(ratio))
    t_obs = float(ratio[k])
    rng = np.random.default_rng(seed)
    sims = np.zeros(0)
    if n_sim > 0:
        if null == "multinomial":
            draw = rng.multinomial(int(o.sum()), e / e.sum(), size=n_sim)
        else:
            draw = rng.poisson(e, size=(n_sim, len(e)))
        cs = np.cumsum(draw, axis=1)[:, ends]
        sims = (cs / cum_e[ends]).max(axis=1)
        p = (1 + int(np.sum(sims >= t_obs - 1e-12 * max(1.0, t_obs)))) / (n_sim + 1)
    else:
        p = float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        table = pd.DataFrame(
            {
                "distance_km": d,
                "observed": o,
                "expected": e,
                "cum_observed": cum_o,
                "cum_expected": cum_e,
                "cum_sir": np.where(cum_e > 0, cum_o / cum_e, np.nan),
            }
        )
    return StoneResult(
        statistic=t_obs,
        distance_km=float(d[k]),
        n_units=k + 1,
        p_value=p,
        n_sim=int(n_sim),
        null=null,
        table=table,
        simulated=sims,
    )
