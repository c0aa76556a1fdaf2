"""A point-source cluster investigation, from record-level cases to the results a report needs.

The study path of ``notebooks/02_cluster_investigation.ipynb`` (issue 6), in the library so
that the truth-recovery tests run exactly what the notebook runs:

1. :func:`resolve_sources` — the point source(s): one named source, a coordinate pair, or
   every source of a type pooled (as the Rapid Inquiry Facility does);
2. :func:`comparison_areas` — the comparison region (all areas, the source's region, or a
   named region);
3. :func:`select_cases` and :func:`person_years` — cases of the study sites, years, sexes and
   ages with their area, 5-year age band, sex and area deprivation quintile; person-years by
   area and the same strata;
4. :func:`investigate_point_source` — reference rates over the comparison region (indirect
   standardisation by age band × sex, optionally × deprivation), observed and expected per
   area, SIR by distance band with homogeneity and trend tests, Stone's test, and the
   Kulldorff scan over the comparison region with the expected counts as the population
   (SaTScan's adjusted Poisson model); returns a :class:`PointSourceStudy`;
5. :meth:`PointSourceStudy.results` — ``results.json`` content with every count passed through
   a disclosure-control function supplied by the caller (this package imports no pipeline
   stage, so the notebook passes ``registry_lib.release.protect_counts``), and
   :func:`conclusion` — the closing sentences, written from those protected results.

Maps colour areas by a *class* of empirical-Bayes smoothed SIR (:data:`SIR_CLASS_EDGES`), never
by a raw count, and label no area, so no small count can be read off them.

Example:
    >>> import numpy as np, pandas as pd
    >>> areas = pd.DataFrame({"area_id": ["A", "B", "C", "D"], "region": "R",
    ...                       "x": [0.0, 1500.0, 8000.0, 20000.0], "y": 0.0,
    ...                       "deprivation_quintile": [1, 2, 3, 4]})
    >>> pop = pd.DataFrame({"area_id": np.repeat(["A", "B", "C", "D"], 2), "sex": [1, 2] * 4,
    ...                     "age_band": 60, "population": 5000})
    >>> cases = pd.DataFrame({"area_id": ["A"] * 12 + ["B"] * 6 + ["C"] * 4 + ["D"] * 3,
    ...                       "sex": 1, "age_band": 60})
    >>> src = resolve_sources(pd.DataFrame({"source_id": ["PS1"], "source_type": ["mast"],
    ...                                     "name": ["a mast"], "x": [0.0], "y": [0.0]}), "PS1")
    >>> study = investigate_point_source(cases, pop, areas, src, by=["age_band", "sex"],
    ...                                  n_sim=99, seed=1, exclude_from_reference_km=0)
    >>> study.bands.table[["band", "observed", "expected"]]
        band  observed  expected
    0    0-2        18     12.50
    1    2-5         0      0.00
    2   5-10         4      6.25
    3  10-25         3      6.25
    >>> study.nearest_areas
    ['A']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.stats.cluster import (
    DEFAULT_BANDS_KM,
    BandResult,
    StoneResult,
    area_observed_expected,
    band_sir_from_areas,
    distance_to_nearest_source,
    stone_test,
)
from registry_lib.stats.rates import smoothed_sir, stratum_rates
from registry_lib.stats.scan import ScanResult, kulldorff_scan
from registry_lib.stats.sites import expand_sites

#: Width of the population's age bands (years) and the lower bound of the open top band.
AGE_BAND_WIDTH = 5
TOP_AGE_BAND = 90
#: Comparison region meaning every area of the cohort.
ALL_AREAS = "england"
#: Comparison region meaning the region(s) the source(s) lie in.
SOURCE_REGION = "source_region"
#: Class edges of the smoothed-SIR map (symmetric on the log scale around 1, plus ≥ 2).
SIR_CLASS_EDGES: tuple[float, ...] = (0.0, 1 / 1.5, 1 / 1.25, 1 / 1.1, 1.1, 1.25, 1.5, 2.0, np.inf)
STRATA = ("age_band", "sex", "deprivation_quintile")

#: A disclosure-control function: counts in, protected counts out (missing = suppressed).
Protect = Callable[[Sequence[float]], Sequence[Any]]


# --------------------------------------------------------------------------------------------
# Parameters: sites, ages, sources, comparison region
# --------------------------------------------------------------------------------------------


def age_band(age) -> np.ndarray:
    """Lower bound of the 5-year age band (0, 5, …, 90; 90 = 90 and over).

    Example:
        >>> age_band([0, 4, 5, 67, 89, 90, 104]).tolist()
        [0, 0, 5, 65, 85, 90, 90]
    """
    a = np.asarray(age, dtype=float)
    if a.size and (not np.all(np.isfinite(a)) or np.any(a < 0)):
        raise RegistryLabError("age: ages must be known and >= 0")
    return np.minimum(a // AGE_BAND_WIDTH * AGE_BAND_WIDTH, TOP_AGE_BAND).astype(np.int64)


def age_band_range(age_range: Sequence[float]) -> tuple[int, int]:
    """The first and last 5-year bands an age range covers (the range is widened to whole bands).

    Example:
        >>> age_band_range([0, 120]), age_band_range([42, 64])
        ((0, 90), (40, 60))
    """
    if len(age_range) != 2 or float(age_range[0]) > float(age_range[1]):
        raise RegistryLabError(f"age_range={list(age_range)!r}: give [youngest, oldest] in years")
    lo, hi = age_band([age_range[0], age_range[1]])
    return int(lo), int(hi)


def resolve_sources(point_sources: pd.DataFrame, source: Any) -> pd.DataFrame:
    """The source(s) a study is about: an id, a coordinate pair, or a source type (pooled).

    Args:
        point_sources: the reference table (``source_id, source_type, name, x, y``).
        source: ``"PS0001"`` (one named source), ``[easting, northing]`` in metres (a point
            that need not be in the table), or a source type such as ``"incinerator"``
            (every source of that type, pooled as the RIF does).

    Returns:
        DataFrame indexed by source label with ``x, y, source_type, name``; ``attrs["kind"]``
        is ``"id"``, ``"coordinates"`` or ``"type"`` and ``attrs["label"]`` names it.

    Example:
        >>> ps = pd.DataFrame({"source_id": ["PS1", "PS2", "PS3"], "name": ["a", "b", "c"],
        ...                    "source_type": ["mast", "mast", "incinerator"],
        ...                    "x": [0.0, 1.0, 2.0], "y": [0.0, 0.0, 0.0]})
        >>> resolve_sources(ps, "mast").index.tolist(), resolve_sources(ps, [5, 6]).attrs["kind"]
        (['PS1', 'PS2'], 'coordinates')
    """
    table = point_sources.set_index("source_id", drop=False)
    if isinstance(source, list | tuple | np.ndarray):
        xy = np.asarray(source, dtype=float)
        if xy.shape != (2,) or not np.all(np.isfinite(xy)):
            raise RegistryLabError(
                f"source={list(source)!r}: coordinates must be [easting, northing] in metres"
            )
        out = pd.DataFrame(
            {"x": [xy[0]], "y": [xy[1]], "source_type": ["point"], "name": ["given point"]},
            index=pd.Index([f"point ({xy[0]:.0f}, {xy[1]:.0f})"], name="source_id"),
        )
        kind, label = "coordinates", out.index[0]
    elif isinstance(source, str) and source in table.index:
        out = table.loc[[source], ["x", "y", "source_type", "name"]]
        kind, label = "id", f"{source} ({out['name'].iloc[0]}, {out['source_type'].iloc[0]})"
    elif isinstance(source, str) and source in set(table["source_type"]):
        out = table.loc[table["source_type"] == source, ["x", "y", "source_type", "name"]]
        kind, label = "type", f"all {len(out)} sources of type {source} (pooled)"
    else:
        types = ", ".join(sorted(set(table["source_type"])))
        raise RegistryLabError(
            f"source={source!r}: not a source id in reference/point_sources (e.g. "
            f"{table.index[0]}), a source type ({types}) or [easting, northing]"
        )
    out = out.copy()
    out.index.name = "source_id"
    out.attrs.update(kind=kind, label=label)
    return out


def comparison_areas(areas: pd.DataFrame, region: str, sources: pd.DataFrame) -> pd.DataFrame:
    """The areas of the comparison region: ``"england"`` (all), ``"source_region"`` or a name.

    ``"source_region"`` is the region of the area nearest each source (several regions for
    pooled sources).

    Example:
        >>> areas = pd.DataFrame({"area_id": ["A", "B", "C"], "region": ["N", "N", "S"],
        ...                       "x": [0.0, 1.0, 9.0], "y": [0.0, 0.0, 0.0]})
        >>> src = pd.DataFrame({"x": [8.0], "y": [0.0]}, index=["PS1"])
        >>> comparison_areas(areas, "source_region", src)["area_id"].tolist()
        ['C']
    """
    if region == ALL_AREAS:
        return areas.copy()
    if region == SOURCE_REGION:
        near = distance_to_nearest_source(
            sources[["x", "y"]], areas.set_index("area_id")[["x", "y"]]
        )["nearest_source"]
        regions = set(areas.set_index("area_id").loc[near.to_numpy(), "region"])
        return areas[areas["region"].isin(regions)].copy()
    known = sorted(set(areas["region"]))
    if region not in known:
        raise RegistryLabError(
            f"comparison_region={region!r}: use {ALL_AREAS!r}, {SOURCE_REGION!r} or a region "
            f"({', '.join(known)})"
        )
    return areas[areas["region"] == region].copy()


# --------------------------------------------------------------------------------------------
# Cases and person-years
# --------------------------------------------------------------------------------------------


def _check_years(years: Sequence[int]) -> tuple[int, int]:
    if len(years) != 2 or int(years[0]) > int(years[1]):
        raise RegistryLabError(f"years={list(years)!r}: give [first, last] diagnosis year")
    return int(years[0]), int(years[1])


def _check_sexes(sex: Sequence[int]) -> list[int]:
    values = sorted({int(s) for s in sex})
    if not values or any(s not in (1, 2) for s in values):
        raise RegistryLabError(f"sex={list(sex)!r}: give a list of 1 (male) and/or 2 (female)")
    return values


def select_cases(
    tumours: pd.DataFrame,
    patients: pd.DataFrame,
    areas: pd.DataFrame,
    *,
    sites: Sequence[str],
    years: Sequence[int],
    sex: Sequence[int] = (1, 2),
    age_range: Sequence[float] = (0, 120),
    patient_key: str = "pseudo_id",
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The study's cases, one row per tumour, and data-quality counts.

    Tumours of the sites diagnosed in the years, with the patient's sex, age in the range
    (widened to whole 5-year bands), the area of residence at diagnosis, its deprivation
    quintile (from the public ``areas`` table, as for the population) and the age band.
    Tumours whose area is missing or not in ``areas`` are counted and left out.

    Returns:
        ``(cases, quality)``: cases with ``area_id, age_band, sex, deprivation_quintile,
        diagnosis_date, age_at_diagnosis, basis_of_diagnosis`` (when given) and
        ``patient_key``; quality counts ``n_tumours_selected``, ``n_area_missing``,
        ``n_area_unknown``, ``n_sex_unknown``, ``n_cases``, ``n_patients_with_more_than_one``
        (patients with more than one tumour among the cases) and, with a
        ``basis_of_diagnosis`` column, ``n_dco`` (death certificate only, basis 0) and
        ``n_microscopic`` (basis 5–7).

    Example:
        >>> t = pd.DataFrame({"pseudo_id": ["p1", "p2", "p3"], "site_icd10": ["C67"] * 3,
        ...                   "diagnosis_date": pd.to_datetime(["2015-01-01"] * 3),
        ...                   "age_at_diagnosis": [70, 81, 66], "area_id": ["A", None, "A"]})
        >>> p = pd.DataFrame({"pseudo_id": ["p1", "p2", "p3"], "sex": [1, 2, 1]})
        >>> a = pd.DataFrame({"area_id": ["A"], "deprivation_quintile": [3]})
        >>> cases, q = select_cases(t, p, a, sites=["C67"], years=[2013, 2023])
        >>> cases["age_band"].tolist(), q["n_area_missing"], q["n_cases"]
        ([70, 65], 1, 2)
    """
    y0, y1 = _check_years(years)
    sexes = _check_sexes(sex)
    band_lo, band_hi = age_band_range(age_range)
    codes = expand_sites(sites)
    for name, df, cols in (
        ("tumours", tumours, [patient_key, "site_icd10", "diagnosis_date", "age_at_diagnosis",
                              "area_id"]),
        ("patients", patients, [patient_key, "sex"]),
        ("areas", areas, ["area_id", "deprivation_quintile"]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise RegistryLabError(f"{name}: missing column(s) {missing}")
    if patients[patient_key].duplicated().any():
        dup = patients.loc[patients[patient_key].duplicated(), patient_key].iloc[0]
        raise RegistryLabError(f"patients: {patient_key} {dup!r} appears more than once")
    year = tumours["diagnosis_date"].dt.year
    t = tumours[tumours["site_icd10"].isin(codes) & year.between(y0, y1)]
    t = t[t["age_at_diagnosis"].notna()]
    t = t.assign(age_band=age_band(t["age_at_diagnosis"].to_numpy()))
    t = t[t["age_band"].between(band_lo, band_hi)]
    sex_of = patients.set_index(patient_key)["sex"]
    t = t.assign(sex=t[patient_key].map(sex_of))
    n_sex_unknown = int(t["sex"].isna().sum())
    t = t[t["sex"].notna()]
    t = t[t["sex"].astype(int).isin(sexes)]
    n_selected = len(t)
    area_known = t["area_id"].notna()
    in_ref = t["area_id"].isin(areas["area_id"])
    quintile = areas.set_index("area_id")["deprivation_quintile"]
    cases = t[in_ref].assign(
        sex=lambda d: d["sex"].astype(np.int64),
        deprivation_quintile=lambda d: d["area_id"].map(quintile).astype(np.int64),
    )
    keep = [patient_key, "area_id", "age_band", "sex", "deprivation_quintile", "diagnosis_date",
            "age_at_diagnosis", "site_icd10"]
    if "basis_of_diagnosis" in cases.columns:
        keep.append("basis_of_diagnosis")
    cases = cases[keep].reset_index(drop=True)
    quality = {
        "n_tumours_selected": int(n_selected),
        "n_area_missing": int((~area_known).sum()),
        "n_area_unknown": int((area_known & ~in_ref).sum()),
        "n_sex_unknown": n_sex_unknown,
        "n_cases": len(cases),
        "n_patients_with_more_than_one": int((cases[patient_key].value_counts() > 1).sum()),
    }
    if "basis_of_diagnosis" in cases.columns:
        basis = cases["basis_of_diagnosis"].astype("string")
        quality["n_dco"] = int((basis == "0").sum())
        quality["n_microscopic"] = int(basis.isin(["5", "6", "7"]).sum())
    return cases, quality


def person_years(
    population: pd.DataFrame,
    areas: pd.DataFrame,
    *,
    years: Sequence[int],
    sex: Sequence[int] = (1, 2),
    age_range: Sequence[float] = (0, 120),
) -> pd.DataFrame:
    """Person-years by area × age band × sex × deprivation quintile over the study years.

    Mid-year populations are summed over the years (one person-year per resident per year).

    Raises:
        RegistryLabError: a study year with no population.

    Example:
        >>> pop = pd.DataFrame({"area_id": "A", "year": [2019, 2020, 2020], "sex": [1, 1, 2],
        ...                     "age_band": 60, "population": [100, 110, 90]})
        >>> a = pd.DataFrame({"area_id": ["A"], "deprivation_quintile": [2]})
        >>> person_years(pop, a, years=[2019, 2020], sex=[1])
          area_id  age_band  sex  deprivation_quintile  population
        0       A        60    1                     2         210
    """
    y0, y1 = _check_years(years)
    sexes = _check_sexes(sex)
    band_lo, band_hi = age_band_range(age_range)
    have = set(population["year"].unique().tolist())
    missing = [y for y in range(y0, y1 + 1) if y not in have]
    if missing:
        raise RegistryLabError(
            f"years={[y0, y1]}: reference/population has no year {missing[0]} "
            f"(it covers {min(have)}-{max(have)})"
        )
    p = population[
        population["year"].between(y0, y1)
        & population["sex"].isin(sexes)
        & population["age_band"].between(band_lo, band_hi)
        & population["area_id"].isin(areas["area_id"])
    ]
    out = p.groupby(["area_id", "age_band", "sex"], as_index=False)["population"].sum()
    quintile = areas.set_index("area_id")["deprivation_quintile"]
    out.insert(3, "deprivation_quintile", out["area_id"].map(quintile).astype(np.int64))
    out["age_band"] = out["age_band"].astype(np.int64)
    out["sex"] = out["sex"].astype(np.int64)
    return out


# --------------------------------------------------------------------------------------------
# The investigation
# --------------------------------------------------------------------------------------------


@dataclass
class PointSourceStudy:
    """Everything a point-source investigation computes.

    Attributes:
        areas: one row per comparison area (indexed by ``area_id``): ``region, x, y,
            deprivation_quintile, observed, expected, population`` (person-years),
            ``distance_km``, ``nearest_source``, ``band``, ``smoothed_sir`` (Marshall empirical
            Bayes), ``sir_class`` (its map class) and ``cluster`` (1 = most likely scan
            cluster, 2, … secondary; 0 = none).
        reference_rates: rates per person-year by stratum over the comparison region.
        bands: :class:`~registry_lib.stats.cluster.BandResult` (SIR by band, homogeneity and
            trend tests).
        stone: :class:`~registry_lib.stats.cluster.StoneResult` (areas within the last band).
        scan: :class:`~registry_lib.stats.scan.ScanResult` (radius in km).
        sources: the source(s), as from :func:`resolve_sources`.
        nearest_areas: the area nearest each source.
        settings: the settings used.
        n_cases_outside: cases in areas outside the comparison region (left out).

    Example:
        >>> areas = pd.DataFrame({"area_id": ["A", "B", "C", "D"], "region": "R",
        ...                       "x": [0.0, 1500.0, 8000.0, 20000.0], "y": 0.0, "deprivation_quintile": [1, 2, 3, 4]})
        >>> pop = pd.DataFrame({"area_id": np.repeat(["A", "B", "C", "D"], 2), "sex": [1, 2] * 4,
        ...                     "age_band": 60, "population": 5000})
        >>> cases = pd.DataFrame({"area_id": ["A"] * 12 + ["B"] * 6 + ["C"] * 4 + ["D"] * 3, "sex": 1, "age_band": 60})
        >>> src = resolve_sources(pd.DataFrame({"source_id": ["PS1"], "source_type": ["mast"],
        ...                                     "name": ["a mast"], "x": [0.0], "y": [0.0]}), "PS1")
        >>> study = investigate_point_source(cases, pop, areas, src, by=["age_band", "sex"], n_sim=19, seed=1,
        ...                                  exclude_from_reference_km=0)
        >>> isinstance(study, PointSourceStudy), int(study.areas["observed"].sum()), study.n_cases_outside
        (True, 25, 0)
    """

    areas: pd.DataFrame
    reference_rates: pd.DataFrame
    bands: BandResult
    stone: StoneResult
    scan: ScanResult
    sources: pd.DataFrame
    nearest_areas: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    n_cases_outside: int = 0

    # ---------------------------------------------------------------- tables
    def band_table(self, protect: Protect | None = None) -> pd.DataFrame:
        """SIR by band; with ``protect``, ``observed`` protected and the SIR and its limits
        blanked where the count is suppressed (an SIR with its E gives the count back).

        Example:
            >>> s = _example_study()
            >>> s.band_table(lambda c: [None if 1 <= v <= 7 else v for v in c])["sir"].isna().tolist()
            [False, True, True, True]
        """
        t = self.bands.table.drop(columns=["band_rank"]).copy()
        if protect is not None:
            t = _protect_rows(t, "observed", protect, ["sir", "lower", "upper"])
        return t

    def cluster_table(self, protect: Protect | None = None, top: int = 10) -> pd.DataFrame:
        """The scan's clusters (most likely first), without member lists.

        Columns ``cluster, center, radius_km, n_areas, observed, expected, relative_risk,
        llr, p_value, contains_nearest_area``; with ``protect``, ``observed`` protected and
        ``relative_risk`` and ``llr`` blanked where it is suppressed.

        Example:
            >>> row = _example_study().cluster_table().iloc[0]
            >>> row["center"], int(row["n_areas"]), int(row["observed"])
            ('A', 1, 12)
        """
        c = self.scan.clusters.head(top)
        near = set(self.nearest_areas)
        t = pd.DataFrame(
            {
                "cluster": np.arange(1, len(c) + 1),
                "center": c["center"].astype(str).to_numpy(),
                "radius_km": c["radius"].to_numpy(dtype=float),
                "n_areas": c["n_locations"].to_numpy(dtype=np.int64),
                "observed": c["observed"].to_numpy(dtype=np.int64),
                "expected": c["expected"].to_numpy(dtype=float),
                "relative_risk": c["relative_risk"].to_numpy(dtype=float),
                "llr": c["llr"].to_numpy(dtype=float),
                "p_value": c["p_value"].to_numpy(dtype=float),
                "contains_nearest_area": [bool(near & set(m)) for m in c["members"]],
            }
        )
        if protect is not None:
            t = _protect_rows(t, "observed", protect, ["relative_risk", "llr"])
        return t

    def tests_table(self, protect: Protect | None = None) -> pd.DataFrame:
        """Homogeneity, trend (two- and one-sided) and Stone's test, one row each.

        With ``protect``, Stone's statistic (a cumulative O/E) is blanked when the cumulative
        count it rests on would be suppressed.

        Example:
            >>> _example_study().tests_table()["test"].tolist()[-1]
            "Stone's test (99 replications)"
        """
        h, tr, st = self.bands.homogeneity, self.bands.trend, self.stone
        stone_stat = st.statistic
        if protect is not None and _stone_suppressed(st, protect):
            stone_stat = np.nan
        return pd.DataFrame([
            {"test": "homogeneity across bands", "statistic": h.statistic, "df": float(h.df),
             "p_value": h.p_value},
            {"test": "trend with distance (two-sided)", "statistic": tr.statistic, "df": 1.0,
             "p_value": tr.p_value},
            {"test": "trend: risk falling with distance (one-sided)", "statistic": tr.statistic,
             "df": 1.0, "p_value": tr.p_value_one_sided},
            {"test": f"Stone's test ({st.n_sim} replications)", "statistic": stone_stat,
             "df": np.nan, "p_value": st.p_value},
        ])

    # ---------------------------------------------------------------- results
    def results(self, protect: Protect, *, alpha: float = 0.05) -> dict[str, Any]:
        """The key estimates for ``results.json``, every count protected by ``protect``.

        Keys: ``source``, ``bands`` (one entry per band: ``band, from_km, to_km, n_areas,
        observed, expected, sir, lower, upper, method, suppressed``), ``homogeneity``,
        ``trend``, ``stone``, ``most_likely_cluster`` (``members, center, radius_km,
        n_areas, observed, expected, relative_risk, llr, p_value, significant,
        contains_source_nearest_area``), ``n_significant_clusters``, ``nearest_areas``,
        ``alpha``.

        Example:
            >>> r = _example_study().results(lambda c: [None if 1 <= v <= 7 else v for v in c])
            >>> r["bands"][0]["observed"], r["most_likely_cluster"]["contains_source_nearest_area"]
            (18, True)
        """
        bands = self.band_table(protect)
        band_rows = []
        for row in bands.to_dict("records"):
            suppressed = _is_missing(row["observed"])
            band_rows.append({
                "band": row["band"],
                "from_km": float(row["from_km"]),
                "to_km": float(row["to_km"]),
                "n_areas": int(row["n_areas"]),
                "observed": None if suppressed else int(row["observed"]),
                "expected": round(float(row["expected"]), 3),
                "sir": _round(row["sir"]),
                "lower": _round(row["lower"]),
                "upper": _round(row["upper"]),
                "method": row["method"],
                "suppressed": bool(suppressed),
            })
        h, tr, st = self.bands.homogeneity, self.bands.trend, self.stone
        out: dict[str, Any] = {
            "source": str(self.sources.attrs.get("label", ", ".join(self.sources.index))),
            "alpha": alpha,
            "bands": band_rows,
            "homogeneity": {"statistic": _round(h.statistic), "df": int(h.df),
                            "p_value": _round_p(h.p_value)},
            "trend": {"statistic": _round(tr.statistic), "p_value": _round_p(tr.p_value),
                      "p_value_decreasing_with_distance": _round_p(tr.p_value_one_sided),
                      "sir_ratio_per_band": _round(tr.estimate), "lower": _round(tr.lower),
                      "upper": _round(tr.upper), "score": self.settings.get("trend_score")},
            "stone": {"statistic": None if _stone_suppressed(st, protect) else _round(st.statistic),
                      "p_value": _round_p(st.p_value),
                      "distance_km": _round(st.distance_km), "n_areas": int(st.n_units),
                      "n_sim": int(st.n_sim), "null": st.null},
            "nearest_areas": list(self.nearest_areas),
            "exclude_from_reference_km": self.settings.get("exclude_from_reference_km"),
            "most_likely_cluster": None,
            "n_significant_clusters": 0,
        }
        if len(self.scan.clusters):
            table = self.cluster_table(protect)
            first = table.iloc[0]
            suppressed = _is_missing(first["observed"])
            out["most_likely_cluster"] = {
                "members": [str(m) for m in self.scan.clusters["members"].iloc[0]],
                "center": str(first["center"]),
                "radius_km": _round(first["radius_km"]),
                "n_areas": int(first["n_areas"]),
                "observed": None if suppressed else int(first["observed"]),
                "expected": _round(first["expected"]),
                "relative_risk": _round(first["relative_risk"]),
                "llr": _round(first["llr"], 6),
                "p_value": _round_p(first["p_value"]),
                "significant": bool(first["p_value"] <= alpha),
                "contains_source_nearest_area": bool(first["contains_nearest_area"]),
            }
            out["n_significant_clusters"] = int((self.scan.clusters["p_value"] <= alpha).sum())
        return out

    # ---------------------------------------------------------------- figure
    def plot_map(self, axes=None, *, zoom_km: float | None = None):
        """Two maps: the source's surroundings (areas by smoothed-SIR class, distance bands,
        the most likely cluster) and the whole comparison region with every significant
        cluster. No area is labelled and no count is drawn.

        Returns the matplotlib figure.

        Example:
            >>> import matplotlib
            >>> matplotlib.use("Agg")
            >>> fig = _example_study().plot_map()
            >>> len(fig.axes)
            3
        """
        return plot_study_map(self, axes=axes, zoom_km=zoom_km)


def _stone_suppressed(st: StoneResult, protect: Protect) -> bool:
    """Whether the cumulative count behind Stone's statistic would be suppressed."""
    if st.table.empty or not np.isfinite(st.statistic):
        return False
    cum = float(st.table["cum_observed"].iloc[st.n_units - 1])
    return _is_missing(list(protect([cum]))[0])


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _round(value: Any, digits: int = 4) -> float | None:
    if _is_missing(value):
        return None
    v = float(value)
    return round(v, digits) if np.isfinite(v) else None


def _round_p(value: Any) -> float | None:
    """A p-value to 3 significant figures (small ones keep their magnitude)."""
    if _is_missing(value) or not np.isfinite(float(value)):
        return None
    return float(f"{float(value):.3g}")


def _protect_rows(t: pd.DataFrame, count: str, protect: Protect, blank: Sequence[str]):
    out = t.copy()
    protected = pd.array(list(protect(t[count].to_numpy())), dtype="Int64")
    out[count] = protected
    gone = np.asarray(pd.isna(protected)) & t[count].notna().to_numpy()
    for col in blank:
        out[col] = out[col].astype("Float64").mask(gone)
    return out


def investigate_point_source(
    cases: pd.DataFrame,
    population: pd.DataFrame,
    areas: pd.DataFrame,
    sources: pd.DataFrame,
    *,
    by: Sequence[str] = ("age_band", "sex"),
    bands_km: Sequence[float] = DEFAULT_BANDS_KM,
    max_pop_fraction: float = 0.5,
    n_sim: int = 999,
    seed: int | None = None,
    level: float = 0.95,
    trend_score: str = "rank",
    n_jobs: int | None = None,
    exclude_from_reference_km: float | None = None,
) -> PointSourceStudy:
    """Run the investigation around ``sources`` with ``areas`` as the comparison region.

    Reference rates are the comparison region's own rates by the strata ``by`` (indirect
    standardisation), leaving out the areas within ``exclude_from_reference_km`` of a source
    (default: the last band edge; 0 keeps them), as the Rapid Inquiry Facility does: otherwise
    the excess under investigation inflates its own reference rates and biases the SIR towards 1. Stone's test uses the areas within the last
    band edge, ordered by distance; the scan covers every comparison area, with coordinates in
    km and the expected counts as its population. Stone's test and the scan get independent
    seeds derived from ``seed``.

    Args:
        cases: one row per case with ``area_id`` and the strata columns (from
            :func:`select_cases`).
        population: person-years by ``area_id`` and strata (from :func:`person_years`).
        areas: the comparison areas (``area_id, x, y`` in metres, ``region``,
            ``deprivation_quintile``), e.g. from :func:`comparison_areas`.
        sources: the source(s) (``x, y`` in metres), from :func:`resolve_sources`.
        by: the standardisation strata: ``age_band``, ``sex`` and optionally
            ``deprivation_quintile``.
        bands_km: distance band edges (km).
        max_pop_fraction, n_sim: scan settings (``n_sim`` also for Stone's test).
        seed: seed of the Monte Carlo replications.
        level: confidence level of the SIR intervals.
        trend_score: ``"rank"`` or ``"midpoint"`` (see
            :func:`~registry_lib.stats.cluster.band_sir_from_areas`).
        n_jobs: threads for the scan.
        exclude_from_reference_km: radius (km) of the study area left out of the reference
            rates; None means the last band edge, 0 none.

    Example:
        >>> s = _example_study()
        >>> round(s.stone.statistic, 3), s.scan.clusters.loc[0, "members"]
        (1.92, ['A'])
    """
    by = list(by)
    unknown = [b for b in by if b not in STRATA]
    if unknown or not by:
        raise RegistryLabError(
            f"standardise_by={by!r}: choose from {list(STRATA)} (age_band and sex at least)"
        )
    for name, df in (("cases", cases), ("population", population)):
        missing = [c for c in ["area_id", *by] if c not in df.columns]
        if missing:
            raise RegistryLabError(f"{name}: missing column(s) {missing}")
    region = areas.set_index("area_id")
    if region.index.has_duplicates:
        raise RegistryLabError(f"areas: area {region.index[region.index.duplicated()][0]!r} twice")
    inside = cases["area_id"].isin(region.index)
    n_outside = int((~inside).sum())
    cases = cases[inside]
    population = population[population["area_id"].isin(region.index)]
    if population.empty:
        raise RegistryLabError("population: no person-years in the comparison region")
    exclude_km = float(bands_km[-1]) if exclude_from_reference_km is None else float(exclude_from_reference_km)
    if not np.isfinite(exclude_km) or exclude_km < 0:
        raise RegistryLabError(f"exclude_from_reference_km={exclude_from_reference_km!r}: give a distance "
                               "in km (0 keeps the study area in the reference rates)")
    all_dist = distance_to_nearest_source(region[["x", "y"]], sources[["x", "y"]])["distance_km"]
    reference_ids = all_dist.index[all_dist.to_numpy() > exclude_km] if exclude_km > 0 else region.index
    ref_cases = cases[cases["area_id"].isin(reference_ids)]
    ref_population = population[population["area_id"].isin(reference_ids)]
    if ref_population.empty:
        raise RegistryLabError(f"exclude_from_reference_km={exclude_km:g}: no comparison area lies farther "
                               "from the source, so there are no reference rates; use a smaller distance")
    # reference rates over the comparison region outside the study area, every stratum with person-years
    by_counts = ref_cases.groupby(by, observed=True).size().rename("count").reset_index()
    strata = ref_population.groupby(by, as_index=False, observed=True)["population"].sum()
    merged = strata.merge(by_counts, on=by, how="outer")
    orphan = merged["population"].isna() | (merged["population"] <= 0)
    if (orphan & (merged["count"].fillna(0) > 0)).any():
        row = merged.loc[orphan & (merged["count"].fillna(0) > 0), by].iloc[0].to_dict()
        raise RegistryLabError(f"cases in stratum {row} but no person-years there")
    merged = merged[~orphan].fillna({"count": 0})
    study_strata = population.groupby(by, observed=True)["population"].sum()
    study_strata = study_strata[study_strata > 0].reset_index()[by]
    no_rate = study_strata.merge(merged[by], on=by, how="left", indicator=True)
    if (no_rate["_merge"] == "left_only").any():
        row = no_rate.loc[no_rate["_merge"] == "left_only", by].iloc[0].to_dict()
        raise RegistryLabError(f"stratum {row} has person-years only within {exclude_km:g} km of the source: "
                               "no reference rate; lower exclude_from_reference_km")
    rates = stratum_rates(merged, "count", "population", by)
    oe = area_observed_expected(cases, population, rates, by)
    oe = oe.reindex(region.index.intersection(oe.index))
    geo = region.loc[oe.index]
    dist = distance_to_nearest_source(geo[["x", "y"]], sources[["x", "y"]])
    bands = band_sir_from_areas(
        oe["observed"], oe["expected"], dist["distance_km"], bands_km, level=level,
        score=trend_score,
    )
    stone_seed, scan_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    near = dist["distance_km"] <= float(bands_km[-1])
    if not near.any():
        raise RegistryLabError(
            f"no comparison area lies within {bands_km[-1]} km of the source: check the source "
            "and the comparison region"
        )
    stone = stone_test(
        oe.loc[near, "observed"], oe.loc[near, "expected"], dist.loc[near, "distance_km"],
        n_sim=n_sim, seed=stone_seed,
    )
    positive = oe["expected"] > 0
    scan = kulldorff_scan(
        oe.loc[positive, "observed"], oe.loc[positive, "expected"],
        geo.loc[positive, ["x", "y"]] / 1000.0, max_pop_fraction=max_pop_fraction,
        n_sim=n_sim, seed=scan_seed, n_jobs=n_jobs,
    )
    table = geo[[c for c in ("region", "x", "y", "deprivation_quintile") if c in geo.columns]]
    table = table.join(oe).join(dist)
    edges = np.asarray(bands_km, dtype=float)
    table["band"] = pd.cut(table["distance_km"], edges, right=False,
                           labels=bands.table["band"].tolist())
    table["smoothed_sir"] = np.nan
    table.loc[positive, "smoothed_sir"] = smoothed_sir(
        oe.loc[positive, "observed"], oe.loc[positive, "expected"]
    )
    table["sir_class"] = pd.cut(table["smoothed_sir"], np.asarray(SIR_CLASS_EDGES), right=False,
                                labels=sir_class_labels())
    table["cluster"] = 0
    member = scan.membership()
    if len(member):
        table.loc[member["location"].to_numpy(), "cluster"] = member["cluster"].to_numpy()
    nearest = [str(dist.index[int(np.argmin(
        np.hypot(geo["x"].to_numpy() - sx, geo["y"].to_numpy() - sy)))])
        for sx, sy in sources[["x", "y"]].to_numpy()]
    settings = {"by": by, "bands_km": [float(b) for b in bands_km],
                "max_pop_fraction": float(max_pop_fraction), "n_sim": int(n_sim), "seed": seed,
                "level": level, "trend_score": trend_score, "exclude_from_reference_km": exclude_km,
                "reference_areas": len(reference_ids)}
    return PointSourceStudy(
        areas=table, reference_rates=rates, bands=bands, stone=stone, scan=scan,
        sources=sources, nearest_areas=sorted(set(nearest)), settings=settings,
        n_cases_outside=n_outside,
    )


# --------------------------------------------------------------------------------------------
# Reading the results
# --------------------------------------------------------------------------------------------


def sir_class_labels() -> list[str]:
    """Labels of the smoothed-SIR map classes (:data:`SIR_CLASS_EDGES`).

    Example:
        >>> sir_class_labels()[0], sir_class_labels()[4], sir_class_labels()[-1]
        ('< 0.667', '1.1-1.25', '>= 2')
    """
    e = SIR_CLASS_EDGES
    labels = [f"< {e[1]:.3g}"]
    labels += [f"{lo:.3g}-{hi:.3g}" for lo, hi in zip(e[1:-2], e[2:-1], strict=True)]
    labels.append(f">= {e[-2]:.3g}")
    return labels


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "p not computed"
    return f"p = {p:.3f}" if p >= 0.001 else "p < 0.001"


def conclusion(results: dict[str, Any], site_label: str) -> str:
    """The closing paragraph of an investigation, written from (protected) results.

    The screening verdict follows CDC/CSTE (2013) and PHE (2019): an excess near the source is
    *supported* when the most likely scan cluster is significant and contains the area
    nearest the source, or when the SIR interval of the innermost band holding areas lies
    above 1 together with a significant (one-sided) trend or Stone's test; otherwise it is
    *not supported*.

    Example:
        >>> r = {"source": "PS1", "alpha": 0.05, "bands": [{"band": "0-2", "sir": 2.5,
        ...      "lower": 1.4, "upper": 4.1, "suppressed": False}],
        ...      "trend": {"p_value": 0.001, "p_value_decreasing_with_distance": 0.0005},
        ...      "stone": {"p_value": 0.002, "distance_km": 1.9},
        ...      "most_likely_cluster": {"p_value": 0.001, "significant": True,
        ...      "contains_source_nearest_area": True, "n_areas": 3, "radius_km": 2.1,
        ...      "relative_risk": 2.8}}
        >>> conclusion(r, "bladder cancer (C67)").split(":")[0]
        'Screening result for bladder cancer (C67) around PS1'
    """
    alpha = float(results.get("alpha", 0.05))
    with_areas = [b for b in results["bands"] if b.get("n_areas", 1) > 0]
    first = with_areas[0] if with_areas else None
    cl = results.get("most_likely_cluster")
    trend = results["trend"]
    stone = results["stone"]
    parts = []
    if first is None or first.get("suppressed"):
        band_text = (f"the {first['band']} km band holds too few cases to show its SIR "
                     "(fewer than 8, suppressed)" if first else "no area lies in the bands")
        band_up = False
    elif first.get("sir") is None:
        band_text = f"the {first['band']} km band has no expected cases"
        band_up = False
    else:
        band_text = (f"the SIR in the {first['band']} km band is {first['sir']:.2f} "
                     f"({first['lower']:.2f}-{first['upper']:.2f})")
        band_up = first["lower"] is not None and first["lower"] > 1
    parts.append(band_text)
    t_p = trend.get("p_value_decreasing_with_distance")
    s_p = stone.get("p_value")
    parts.append(f"risk falling with distance: trend {_fmt_p(t_p)} (one-sided), "
                 f"Stone's test {_fmt_p(s_p)}")
    distance_signal = (t_p is not None and t_p <= alpha) or (s_p is not None and s_p <= alpha)
    if cl is None:
        scan_text = "the scan found no area with more cases than expected"
        scan_hit = False
    else:
        rr = "" if cl.get("relative_risk") is None else f", RR {cl['relative_risk']:.2f}"
        size = f"{cl['n_areas']} area{'s' if cl['n_areas'] != 1 else ''}"
        where = ("includes the area nearest the source" if cl["contains_source_nearest_area"]
                 else "does not include the area nearest the source")
        scan_text = (f"the most likely scan cluster ({size} within {cl['radius_km']:.1f} km{rr}, "
                     f"{_fmt_p(cl['p_value'])}) {'is' if cl['significant'] else 'is not'} "
                     f"significant at {alpha:g} and {where}")
        scan_hit = bool(cl["significant"] and cl["contains_source_nearest_area"])
    parts.append(scan_text)
    next_step = ("the guidance's next step is a feasibility assessment for an aetiological "
                 "study (exposure assessment, confounders such as smoking and occupation), with "
                 "case verification against records")
    if scan_hit:
        verdict = f"an excess near the source is supported; {next_step}"
    elif band_up and distance_signal:
        verdict = ("an excess near the source is supported by the distance-band analysis, "
                   "though the scan of the whole region does not single it out (the scan "
                   f"answers a wider question and has less power for one source); {next_step}")
    elif cl is not None and cl["significant"]:
        verdict = ("no excess near the source, but a significant cluster elsewhere; it is "
                   "reported for surveillance, not as evidence about this source")
    else:
        verdict = ("an excess near the source is not supported; the guidance's step is to "
                   "close the inquiry at assessment and explain the result to those who "
                   "raised it")
    return (f"Screening result for {site_label} around {results['source']}: "
            + "; ".join(parts) + f". Conclusion: {verdict}.")


def excess_supported(results: dict[str, Any]) -> bool:
    """The screening verdict of :func:`conclusion` as a yes/no: is an excess near the source
    supported (the study's headline test)?

    Example:
        >>> r = {"source": "PS1", "alpha": 0.05, "bands": [{"band": "0-2", "sir": 1.1,
        ...      "lower": 0.6, "upper": 1.9, "suppressed": False}],
        ...      "trend": {"p_value_decreasing_with_distance": 0.4}, "stone": {"p_value": 0.5},
        ...      "most_likely_cluster": None}
        >>> excess_supported(r)
        False
    """
    return "Conclusion: an excess near the source is supported" in conclusion(results, "the sites")


def plot_study_map(study: PointSourceStudy, axes=None, *, zoom_km: float | None = None):
    """The study map (see :meth:`PointSourceStudy.plot_map`).

    Example:
        >>> areas = pd.DataFrame({"area_id": ["A", "B", "C", "D"], "region": "R",
        ...                       "x": [0.0, 1500.0, 8000.0, 20000.0], "y": 0.0, "deprivation_quintile": [1, 2, 3, 4]})
        >>> pop = pd.DataFrame({"area_id": np.repeat(["A", "B", "C", "D"], 2), "sex": [1, 2] * 4,
        ...                     "age_band": 60, "population": 5000})
        >>> cases = pd.DataFrame({"area_id": ["A"] * 12 + ["B"] * 6 + ["C"] * 4 + ["D"] * 3, "sex": 1, "age_band": 60})
        >>> src = resolve_sources(pd.DataFrame({"source_id": ["PS1"], "source_type": ["mast"],
        ...                                     "name": ["a mast"], "x": [0.0], "y": [0.0]}), "PS1")
        >>> study = investigate_point_source(cases, pop, areas, src, by=["age_band", "sex"], n_sim=19, seed=1,
        ...                                  exclude_from_reference_km=0)
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> fig = plot_study_map(study)
        >>> len(fig.axes) >= 2
        True
        >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Circle

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    fig = axes[0].figure
    labels = sir_class_labels()
    cmap = ListedColormap(plt.get_cmap("RdBu_r")(np.linspace(0.08, 0.92, len(labels))))
    norm = BoundaryNorm(np.arange(len(labels) + 1) - 0.5, len(labels))
    a = study.areas
    code = a["sir_class"].cat.codes.to_numpy()
    shown = code >= 0
    xs, ys = a["x"].to_numpy() / 1000, a["y"].to_numpy() / 1000
    src = study.sources[["x", "y"]].to_numpy() / 1000
    edges = study.settings.get("bands_km", list(DEFAULT_BANDS_KM))
    zoom = float(zoom_km if zoom_km is not None else edges[-1] * 1.2)
    clusters = study.scan.clusters
    alpha = 0.05
    pos = a[["x", "y"]] / 1000
    for k, ax in enumerate(axes):
        sc = ax.scatter(xs[shown], ys[shown], c=code[shown], cmap=cmap, norm=norm, s=14 if k else 30,
                        edgecolors="none")
        ax.scatter(src[:, 0], src[:, 1], marker="*", s=180, c="black", label="source")
        for j, row in clusters.iterrows():
            if k == 0 and j > 0:
                continue
            if k == 1 and j > 0 and row["p_value"] > alpha:
                continue
            cx, cy = pos.loc[row["center"]]
            r = max(float(row["radius"]), 0.5)
            ax.add_patch(Circle((cx, cy), r * 1.05, fill=False, lw=2,
                                color="darkgreen" if j == 0 else "purple",
                                label=("most likely cluster" if j == 0 else "secondary cluster")
                                + f" (p={row['p_value']:.3f})"))
        if k == 0:
            for sx, sy in src:
                for e in edges[1:]:
                    ax.add_patch(Circle((sx, sy), e, fill=False, ls="--", lw=0.8, color="grey"))
            sx, sy = src[0]
            ax.set(xlim=(sx - zoom, sx + zoom), ylim=(sy - zoom, sy + zoom))
            ax.set_title(f"Around the source: bands {', '.join(f'{e:g}' for e in edges[1:])} km")
        else:
            ax.set_title("Comparison region")
        ax.set(xlabel="easting (km)", ylabel="northing (km)", aspect="equal")
        handles, names = ax.get_legend_handles_labels()
        uniq = dict(zip(names, handles, strict=True))
        ax.legend(uniq.values(), uniq.keys(), loc="upper left", fontsize=7)
    bar = fig.colorbar(sc, ax=list(axes), ticks=np.arange(len(labels)), shrink=0.8)
    bar.ax.set_yticklabels(labels)
    bar.set_label("smoothed SIR (empirical Bayes), class")
    return fig


def _example_study() -> PointSourceStudy:
    """A four-area toy study for the docstring examples."""
    areas = pd.DataFrame({"area_id": ["A", "B", "C", "D"], "region": "R",
                          "x": [0.0, 1500.0, 8000.0, 20000.0], "y": 0.0,
                          "deprivation_quintile": [1, 2, 3, 4]})
    pop = pd.DataFrame({"area_id": np.repeat(["A", "B", "C", "D"], 2), "sex": [1, 2] * 4,
                        "age_band": 60, "population": 5000})
    cases = pd.DataFrame({"area_id": ["A"] * 12 + ["B"] * 6 + ["C"] * 4 + ["D"] * 3,
                          "sex": 1, "age_band": 60})
    src = pd.DataFrame({"x": [0.0], "y": [0.0], "source_type": ["mast"], "name": ["m"]},
                       index=pd.Index(["PS1"], name="source_id"))
    src.attrs.update(kind="id", label="PS1")
    return investigate_point_source(cases, pop, areas, src, by=["age_band", "sex"], n_sim=99,
                                    seed=1, exclude_from_reference_km=0)
