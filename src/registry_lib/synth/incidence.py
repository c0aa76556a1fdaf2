"""Incidence: how many tumours of each site arise, where, when and in whom.

Rates by site × sex × 5-year age band are calibrated so that England's expected count in the
reference year equals the published total (params/epidemiology/incidence.yaml); a log-linear
trend moves them over calendar time, deprivation and a mild north-south gradient modulate them
by area (normalised so the national total is unchanged), and the COVID-19 multipliers thin
them month by month. Counts are drawn as Poisson totals per year × site × sex × band and
spread over areas by inverse-CDF sampling on the area populations (equivalent to a Poisson
count per area, by the splitting property) - no per-person Bernoulli draws.

Example:
    >>> from registry_lib.synth.params import epidemiology_params
    >>> rates = site_rates(epidemiology_params())
    >>> round(float(rates.expected_national(2019).sum()))
    327174
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.synth.params import AGE_BANDS, N_BANDS, month_key
from registry_lib.synth.population import national_population

DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
HAEM_SITES = {"C81", "C82", "C83", "C85", "C90", "C91", "C92", "C95"}


def site_groups(sites: list[str]) -> np.ndarray:
    """Group id per site: sites in one IARC/IACR multiple-primary topography group share an id
    (from ``registry_lib/data/icd10.csv``), so a subsequent primary is never in the same group.

    Example:
        >>> g = site_groups(["C33", "C34", "C50"])   # trachea and lung share a group
        >>> bool(g[0] == g[1]), bool(g[0] == g[2])
        (True, False)
    """
    from importlib.resources import files

    with files("registry_lib.data").joinpath("icd10.csv").open() as fh:
        table = pd.read_csv(fh, comment="#", dtype=str)
    lookup = dict(zip(table["code"], table["iarc_site_group"], strict=False))
    labels = [lookup.get(s, s) or s for s in sites]
    uniq = {lab: i for i, lab in enumerate(dict.fromkeys(labels))}
    return np.array([uniq[lab] for lab in labels], dtype=np.int64)


def _shape(spec: Any) -> np.ndarray:
    """Relative rate by band: explicit list, or log-normal in age {peak, sigma}."""
    if isinstance(spec, list):
        out = np.asarray(spec, dtype=float)
        if len(out) != N_BANDS:
            raise ValueError(f"age shape needs {N_BANDS} values")
        return out
    mid = AGE_BANDS + np.where(AGE_BANDS == 90, 5.0, 2.5)
    return np.exp(-((np.log(mid) - np.log(spec["peak"])) ** 2) / (2 * spec["sigma"] ** 2))


@dataclass
class SiteRates:
    """Incidence rates of every known site (per person-year).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> rates = site_rates(p)
        >>> isinstance(rates, SiteRates), rates.rate(np.array([2019])).shape[:2] == (1, len(rates.sites))
        (True, True)
    """

    sites: list[str]
    names: list[str]
    rate_ref: np.ndarray          # [site, sex, band] national rate in the reference year
    trend: np.ndarray             # [site] log change per year
    dep_ratio: np.ndarray         # [site] rate ratio quintile 5 vs 1
    north: np.ndarray             # [site] log rate per 100 km of northing
    reference_year: int
    second_share: dict[str, float]   # {max, years}: share of subsequent primaries by years since start
    month_weight: np.ndarray      # [12] share of a year's diagnoses by month (non-leap year)
    group: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # site group id
    haem: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def index(self, site: str) -> int:
        return self.sites.index(site)

    def rate(self, year: int | np.ndarray) -> np.ndarray:
        """National rates ``[site, sex, band]`` (or ``[year, site, sex, band]``) in ``year``."""
        y = np.asarray(year, dtype=float)
        f = np.exp(self.trend[None, :] * (np.atleast_1d(y)[:, None] - self.reference_year))
        out = self.rate_ref[None] * f[:, :, None, None]
        return out[0] if np.ndim(year) == 0 else out

    def first_primary_factor(self, years_since_start: np.ndarray | float) -> np.ndarray:
        """``1 − share`` of subsequent primaries, ``years_since_start`` years into a site's window."""
        k = np.asarray(years_since_start, dtype=float)
        return 1.0 - self.second_share["max"] * (1.0 - np.exp(-(k + 0.5) / self.second_share["years"]))

    def dep_factor(self) -> np.ndarray:
        """``[site, quintile]`` geometric steps from quintile 1 to 5, mean 1."""
        step = self.dep_ratio ** (1.0 / 4.0)
        f = step[:, None] ** (np.arange(5)[None, :] - 2.0)
        return f / f.mean(axis=1, keepdims=True)

    def expected_national(self, year: int, params: dict[str, Any] | None = None) -> np.ndarray:
        """Expected count by site at full scale in ``year`` (all primaries, no COVID-19)."""
        nat = national_population([year], self._params)[0]
        return (self.rate(year) * nat[None]).sum(axis=(1, 2))

    _params: dict[str, Any] = field(default_factory=dict, repr=False)


def site_rates(params: dict[str, Any]) -> SiteRates:
    """Calibrate the rates of every site in ``incidence.yaml`` (see the module docstring).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> rates = site_rates(p)
        >>> "C50" in rates.sites, bool(rates.expected_national(2019).sum() > 0)
        (True, True)
    """
    inc = params["incidence"]
    ref = int(inc["reference_year"])
    sites = list(inc["sites"])
    nat = national_population([ref], params)[0]                  # [sex, band]
    counts = np.array([[inc["sites"][s].get("male", 0), inc["sites"][s].get("female", 0)] for s in sites], dtype=float)
    counts *= float(inc["published_totals"][ref]) / counts.sum()
    rate = np.zeros((len(sites), 2, N_BANDS))
    for i, s in enumerate(sites):   # loop over sites
        shape = _shape(inc["sites"][s]["shape"])
        for sex in range(2):
            denom = (shape * nat[sex]).sum()
            rate[i, sex] = counts[i, sex] * shape / denom if denom > 0 else 0.0
    mw = DAYS_IN_MONTH * np.asarray(inc["month_seasonality"], dtype=float)
    out = SiteRates(
        sites=sites, names=[inc["sites"][s]["name"] for s in sites], rate_ref=rate,
        trend=np.array([inc["sites"][s].get("trend", 0.0) for s in sites], dtype=float),
        dep_ratio=np.array([inc["sites"][s].get("deprivation_ratio", 1.0) for s in sites], dtype=float),
        north=np.array([inc["sites"][s].get("north_gradient", 0.0) for s in sites], dtype=float),
        reference_year=ref, second_share={k: float(v) for k, v in inc["second_primary_share"].items()},
        month_weight=mw / mw.sum(), group=site_groups(sites), haem=np.array([s in HAEM_SITES for s in sites]),
    )
    out._params = params
    return out


def area_factors(rates: SiteRates, areas: pd.DataFrame, pop_ref: np.ndarray) -> np.ndarray:
    """``[site, area]`` relative rates from deprivation and geography, normalised per site so
    that the expected national count is unchanged (weights: expected cases in the reference year).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> rates = site_rates(epidemiology_params())
        >>> areas = pd.DataFrame({"deprivation_quintile": [1, 5], "y": [300_000.0, 300_000.0]})
        >>> pop = np.full((2, 2, 19), 5000)   # [area, sex, band]
        >>> f = area_factors(rates, areas, pop)
        >>> f.shape == (len(rates.sites), 2), bool(np.allclose(f.mean(axis=1), 1))   # equal areas: factors average 1
        (True, True)
    """
    q = areas["deprivation_quintile"].to_numpy().astype(int) - 1
    y = areas["y"].to_numpy()
    f = rates.dep_factor()[:, q] * np.exp(rates.north[:, None] * (y[None, :] - 300_000.0) / 100_000.0)
    # expected cases by site and area at reference rates: pop_ref [area, sex, band]
    c = pop_ref.reshape(len(areas), -1) @ rates.rate_ref.reshape(len(rates.sites), -1).T   # [area, site]
    norm = c.sum(axis=0) / np.maximum((c.T * f).sum(axis=1), 1e-300)
    return f * norm[:, None]


@dataclass
class Diagnoses:
    """Tumours drawn by the incidence model (one row per tumour, arrays of equal length).

    Example:
        >>> one = Diagnoses(site=np.array([3]), sex=np.array([2]), age=np.array([61.5]), area=np.array([0]),
        ...                 date=np.array(["2019-04-02"], dtype="datetime64[D]"), in_cluster=np.array([False]))
        >>> both = Diagnoses.concat([one, one])
        >>> both.site.tolist(), both.date.astype(str).tolist()
        ([3, 3], ['2019-04-02', '2019-04-02'])
    """

    site: np.ndarray
    sex: np.ndarray            # 1/2
    age: np.ndarray            # exact age at diagnosis (years, float)
    area: np.ndarray           # area index
    date: np.ndarray           # datetime64[D]
    in_cluster: np.ndarray

    @staticmethod
    def concat(parts: list[Diagnoses]) -> Diagnoses:
        if not parts:
            return Diagnoses(*(np.zeros(0, dtype=t) for t in (np.int64, np.int8, float, np.int64, "datetime64[D]", bool)))
        return Diagnoses(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                           ("site", "sex", "age", "area", "date", "in_cluster")))

    def __len__(self) -> int:
        return len(self.site)


def national_incidence(rates: SiteRates, years: list[int] | range) -> pd.DataFrame:
    """``reference/national_incidence``: England's rate of each site by year, sex and age band.

    The rates the generator draws from (all registrations of a site, no COVID-19 months, no
    cluster or late effect), published as a national statistics office would; a second-cancer
    SIR takes its expected counts from them rather than from a small cohort's own registrations.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> rates = site_rates(epidemiology_params())
        >>> t = national_incidence(rates, [2019])
        >>> len(t) == len(rates.sites) * 2 * 19, t.columns.tolist()
        (True, ['year', 'site_icd10', 'sex', 'age_band', 'rate'])
        >>> r = t[(t.site_icd10 == "C50") & (t.sex == 2)].set_index("age_band")["rate"]
        >>> bool(r[60] > r[40] > r[20] > 0)
        True
    """
    ys = np.asarray(list(years), dtype=np.int64)
    r = rates.rate(ys)                                           # [year, site, sex, band]
    grid = np.meshgrid(np.arange(len(ys)), np.arange(len(rates.sites)), np.arange(2), np.arange(N_BANDS),
                       indexing="ij")
    y, s, x, b = (g.ravel() for g in grid)
    return pd.DataFrame({"year": ys[y].astype(np.int16), "site_icd10": np.asarray(rates.sites, dtype=object)[s],
                         "sex": (x + 1).astype(np.int8), "age_band": AGE_BANDS[b].astype(np.int8),
                         "rate": r.ravel()})


def covid_month_multipliers(sites: list[str], covid: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """``{'YYYY-MM': multiplier by site}`` for the COVID-19 months (empty without the effect).

    Example:
        >>> covid_month_multipliers(["C18"], None)
        {}
    """
    if covid is None:
        return {}
    table = covid["diagnosis_multipliers"]
    default = np.asarray(table["default"], dtype=float)
    per_site = np.stack([np.asarray(table.get(s, default), dtype=float) for s in sites])  # [site, month]
    return {m: per_site[:, i] for i, m in enumerate(covid["months"])}


def month_factors(year: int, rates: SiteRates, covid_mult: dict[str, np.ndarray]) -> np.ndarray:
    """``[site, month]``: share of the year's expected count by month × the COVID multiplier.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> rates = site_rates(p)
        >>> mf = month_factors(2019, rates, {})
        >>> mf.shape == (len(rates.sites), 12), bool(np.allclose(mf, mf[0]))   # no COVID-19: every site alike
        (True, True)
    """
    w = np.tile(rates.month_weight, (len(rates.sites), 1))
    for m in range(12):   # twelve months
        key = month_key(year, m + 1)
        if key in covid_mult:
            w[:, m] = w[:, m] * covid_mult[key]
    return w


def _draw_dates(year: int, site_idx: np.ndarray, mf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A date in ``year`` for each tumour: month by ``mf[site]``, day uniform in the month."""
    cum = np.cumsum(mf, axis=1)
    cum = cum / cum[:, -1:]
    u = rng.random(len(site_idx))
    month = (u[:, None] > cum[site_idx]).sum(axis=1)
    month = np.minimum(month, 11)
    leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0
    dim = DAYS_IN_MONTH + (np.arange(12) == 1) * int(leap)
    day = np.floor(rng.random(len(site_idx)) * dim[month]).astype(np.int64)
    start = np.datetime64(f"{year}-01-01", "D")
    month_start = np.array([np.datetime64(f"{year}-{m + 1:02d}-01", "D") for m in range(12)])
    return month_start[month] + day.astype("timedelta64[D]") if len(month) else np.zeros(0, "datetime64[D]") + (start - start)


def _draw_ages(band_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(len(band_idx))
    top = band_idx == N_BANDS - 1
    return AGE_BANDS[band_idx] + np.where(top, np.minimum(rng.exponential(4.0, len(band_idx)), 14.9), 5.0 * u)


def sample_cells(mean: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Poisson counts for cells ``mean[cell]`` and, for every event, an area drawn with
    probability proportional to ``weights[area, cell]``. Returns (cell index, area index).

    Example:
        >>> cell, area = sample_cells(np.array([0.0, 50.0]), np.array([[1.0, 1.0], [0.0, 0.0]]), np.random.default_rng(0))
        >>> set(cell.tolist()), set(area.tolist())   # only cell 1 has cases, all in area 0
        ({1}, {0})
    """
    n = rng.poisson(mean)
    cell = np.repeat(np.arange(len(mean)), n)
    if len(cell) == 0:
        return cell, cell.copy()
    cum = np.cumsum(weights, axis=0)                 # [area, cell]
    tot = cum[-1]
    safe = np.where(tot > 0, tot, 1.0)
    norm = (cum / safe).T + np.arange(weights.shape[1])[:, None]    # [cell, area], increasing
    flat = norm.ravel()
    u = rng.random(len(cell))
    idx = np.searchsorted(flat, cell + u * (1 - 1e-12), side="right")
    area = idx - cell * weights.shape[0]
    return cell, np.minimum(area, weights.shape[0] - 1)


def draw_year(year: int, site_list: list[int], rates: SiteRates, pop_y: np.ndarray, factors: np.ndarray,
              covid_mult: dict[str, np.ndarray], rng: np.random.Generator,
              expected: dict[str, Any] | None = None, first_factor: np.ndarray | None = None) -> Diagnoses:
    """First primaries diagnosed in ``year`` for the sites ``site_list`` (indices).

    ``first_factor[site]`` scales the rates down for the subsequent primaries generated later;
    ``expected[site][year]`` receives the expected count of all primaries by month (no COVID-19).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> rates = site_rates(epidemiology_params())
        >>> areas = pd.DataFrame({"deprivation_quintile": [1, 5], "y": [300_000.0, 300_000.0]})
        >>> pop = np.full((2, 2, 19), 5000)   # [area, sex, band]
        >>> f = area_factors(rates, areas, pop)
        >>> d = draw_year(2019, [rates.sites.index("C50")], rates, pop, f, {}, np.random.default_rng(0))
        >>> isinstance(d, Diagnoses), len(d.site) > 0, bool((d.date.astype("datetime64[Y]").astype(int) + 1970 == 2019).all())
        (True, True, True)
    """
    if not site_list:
        return Diagnoses.concat([])
    mf = month_factors(year, rates, covid_mult)
    rate_y = rates.rate(year)                                     # [site, sex, band]
    ff = np.ones(len(rates.sites)) if first_factor is None else first_factor
    parts = []
    n_area = pop_y.shape[0]
    for s in site_list:   # loop over sites
        w = pop_y.reshape(n_area, -1) * factors[s][:, None]      # [area, sex*band]
        base_mean = w.sum(axis=0) * rate_y[s].reshape(-1)         # all primaries, no COVID-19
        if expected is not None:
            expected.setdefault(rates.sites[s], {})[year] = base_mean.sum() * rates.month_weight
        mean = base_mean * mf[s].sum() * ff[s]
        cell, area = sample_cells(mean, w, rng)
        k = len(cell)
        if k == 0:
            continue
        site_idx = np.full(k, s)
        parts.append(Diagnoses(site_idx, (cell // N_BANDS + 1).astype(np.int8), _draw_ages(cell % N_BANDS, rng),
                               area, _draw_dates(year, site_idx, mf, rng), np.zeros(k, dtype=bool)))
    return Diagnoses.concat(parts)
