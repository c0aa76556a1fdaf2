"""Rates, standardisation and Poisson confidence intervals.

The building blocks every registry study uses:

- :func:`poisson_ci` — exact (Garwood 1936, via the chi-square distribution) or Byar's
  approximate limits for a Poisson count;
- :func:`sir` — standardised incidence ratios O/E with exact or Byar limits;
- :func:`smoothed_sir` — empirical Bayes (Marshall 1991) smoothed SIRs for maps;
- :func:`stratum_rates` and :func:`indirect_expected` — reference rates by stratum (age band ×
  sex, optionally × deprivation) and the expected counts they imply in a study population;
- :func:`crude_rate` — a crude rate per ``per`` person-years with exact limits;
- :func:`direct_standardised_rate` — directly standardised rates with Dobson et al. (1991)
  limits.

References:
    Garwood F (1936). Fiducial limits for the Poisson distribution. Biometrika 28:437-442.
    Breslow NE, Day NE (1987). Statistical methods in cancer research, vol. II, p. 69 (Byar).
    Dobson AJ, Kuulasmaa K, Eberle E, Scherer J (1991). Confidence intervals for weighted sums
    of Poisson parameters. Statistics in Medicine 10:457-462.
    Marshall RJ (1991). Mapping disease and mortality rates using empirical Bayes estimators.
    Applied Statistics 40:283-294.
    Public Health England (2018). PHEindicatormethods: ISRs use Byar's method when O >= 10 and
    exact limits when O < 10 — the cut-off used by ``sir(method="auto")``.

Example:
    >>> lo, hi = poisson_ci([0, 1, 5])
    >>> [round(float(x), 4) for x in hi]
    [3.6889, 5.5716, 11.6683]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError

#: ``sir(method="auto")`` uses exact limits when the observed count is below this, Byar's
#: otherwise (Public Health England, PHEindicatormethods ``phe_isr``/``calculate_ISRate``).
EXACT_BELOW = 10

_METHODS = ("exact", "byar")


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise RegistryLabError(
            f"level={level!r}: confidence level must lie strictly between 0 and 1"
        )
    return float(level)


def _as_counts(observed, name: str = "observed") -> np.ndarray:
    arr = np.asarray(observed, dtype=float)
    if arr.size and (not np.all(np.isfinite(arr)) or np.any(arr < 0)):
        bad = int(np.flatnonzero(~np.isfinite(arr) | (arr < 0))[0])
        raise RegistryLabError(
            f"{name}[{bad}]={arr.flat[bad]!r}: counts must be finite and non-negative"
        )
    return arr


def _exact_limits(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = 1.0 - level
    with np.errstate(invalid="ignore"):
        lower = np.where(x > 0, sps.chi2.ppf(alpha / 2, 2 * np.maximum(x, 1e-300)) / 2, 0.0)
    upper = sps.chi2.ppf(1 - alpha / 2, 2 * x + 2) / 2
    return lower, upper


def _byar_limits(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    z = sps.norm.ppf(1 - (1 - level) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower = x * (1 - 1 / (9 * x) - z / (3 * np.sqrt(x))) ** 3
    lower = np.where(x > 0, np.maximum(lower, 0.0), 0.0)
    x1 = x + 1
    upper = x1 * (1 - 1 / (9 * x1) + z / (3 * np.sqrt(x1))) ** 3
    return lower, upper


def poisson_ci(
    observed, level: float = 0.95, method: str = "exact"
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided confidence limits for Poisson counts.

    ``method="exact"`` gives Garwood's limits ``chi2(a/2, 2x)/2`` and ``chi2(1-a/2, 2x+2)/2``
    (lower limit 0 when x = 0); ``method="byar"`` gives Byar's approximation
    (Breslow & Day 1987), accurate to a few parts in a thousand once x ≥ 10.

    Args:
        observed: a count or array of counts (non-negative; need not be integers).
        level: confidence level, e.g. 0.95.
        method: ``"exact"`` or ``"byar"``.

    Returns:
        ``(lower, upper)`` as float arrays with the shape of ``observed``.

    Example:
        >>> lo, hi = poisson_ci(10)
        >>> round(float(lo), 3), round(float(hi), 3)
        (4.795, 18.39)
        >>> lo, hi = poisson_ci(10, method="byar")
        >>> round(float(lo), 3), round(float(hi), 3)
        (4.787, 18.391)
    """
    level = _check_level(level)
    x = _as_counts(observed)
    if method == "exact":
        return _exact_limits(x, level)
    if method == "byar":
        return _byar_limits(x, level)
    raise RegistryLabError(f"method={method!r}: Poisson CI method must be one of {_METHODS}")


def _observed_expected(observed, expected) -> tuple[np.ndarray, np.ndarray]:
    """Observed counts and expected counts as matching 1-D arrays; expected must be > 0."""
    o = np.atleast_1d(_as_counts(observed))
    e = np.atleast_1d(np.asarray(expected, dtype=float))
    if o.shape != e.shape:
        raise RegistryLabError(
            f"observed has {o.size} values but expected has {e.size}: they must match"
        )
    if e.size and (not np.all(np.isfinite(e)) or np.any(e <= 0)):
        bad = int(np.flatnonzero(~np.isfinite(e) | (e <= 0))[0])
        raise RegistryLabError(f"expected[{bad}]={e[bad]!r}: expected counts must be > 0")
    return o, e


def sir(observed, expected, level: float = 0.95, method: str = "auto") -> pd.DataFrame:
    """Standardised incidence ratios O/E with confidence limits.

    The limits are the Poisson limits of O divided by E (E treated as fixed). With
    ``method="auto"`` exact (Garwood) limits are used when O < ``EXACT_BELOW`` (10) and Byar's
    otherwise, as Public Health England does; ``"exact"`` or ``"byar"`` force one method.

    Args:
        observed: observed counts (scalar, array or Series; a Series index is kept).
        expected: expected counts, same length, strictly positive.
        level: confidence level.
        method: ``"auto"``, ``"exact"`` or ``"byar"``.

    Returns:
        DataFrame with columns ``observed, expected, sir, lower, upper, method``.

    Example:
        >>> sir([3, 25], [1.5, 20.0])[["sir", "lower", "upper", "method"]].round(3)
            sir  lower  upper method
        0  2.00  0.412  5.845  exact
        1  1.25  0.809  1.845   byar
    """
    level = _check_level(level)
    index = observed.index if isinstance(observed, pd.Series) else None
    o, e = _observed_expected(observed, expected)
    if method == "auto":
        use_exact = o < EXACT_BELOW
    elif method in _METHODS:
        use_exact = np.full(o.shape, method == "exact")
    else:
        raise RegistryLabError(f"method={method!r}: SIR CI method must be auto, exact or byar")
    lo_e, hi_e = _exact_limits(o, level)
    lo_b, hi_b = _byar_limits(o, level)
    lower = np.where(use_exact, lo_e, lo_b)
    upper = np.where(use_exact, hi_e, hi_b)
    return pd.DataFrame(
        {
            "observed": o,
            "expected": e,
            "sir": o / e,
            "lower": lower / e,
            "upper": upper / e,
            "method": np.where(use_exact, "exact", "byar"),
        },
        index=index,
    )


def smoothed_sir(observed, expected) -> np.ndarray:
    """Empirical Bayes smoothed SIRs (Marshall's global moment estimator), for maps.

    Each area's SIR ``r_i = O_i/E_i`` is shrunk towards the overall ``m = ΣO/ΣE`` by
    ``A / (A + m/E_i)``, where ``A = s² − m/Ē`` (floored at 0) estimates the between-area
    variance of the true SIRs, ``s² = Σ E_i (r_i − m)² / ΣE`` and ``Ē`` is the mean expected
    count. Areas with small E are shrunk most; if the SIRs vary no more than Poisson noise
    (A = 0) every area gets ``m``.

    Example:
        >>> smoothed_sir([0, 2, 10, 30], [2.0, 2.0, 10.0, 10.0]).round(3)
        array([0.865, 1.371, 1.123, 2.796])
    """
    o, e = _observed_expected(observed, expected)
    o = o.astype(float)
    r = o / e
    m = o.sum() / e.sum()
    s2 = np.sum(e * (r - m) ** 2) / e.sum()
    a = max(s2 - m / e.mean(), 0.0)
    if a == 0.0:
        return np.full(o.shape, m)
    return m + (r - m) * a / (a + m / e)


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RegistryLabError(f"{what}: missing column(s) {missing}")


def stratum_rates(df: pd.DataFrame, count: str, population: str, by: Sequence[str]) -> pd.DataFrame:
    """Reference rates (events per person-year) by stratum, e.g. age band × sex.

    Args:
        df: one row per (area, stratum) or per stratum, with counts and populations.
        count: column of event counts.
        population: column of populations (person-years).
        by: stratum columns.

    Returns:
        DataFrame with columns ``*by, count, population, rate``.

    Example:
        >>> ref = pd.DataFrame({"sex": ["F", "F", "M"], "n": [2, 4, 3], "pop": [100, 200, 100]})
        >>> stratum_rates(ref, "n", "pop", ["sex"])
          sex  count  population  rate
        0   F      6         300  0.02
        1   M      3         100  0.03
    """
    by = list(by)
    _require_columns(df, [count, population, *by], "stratum_rates input")
    g = df.groupby(by, as_index=False, observed=True)[[count, population]].sum()
    g = g.rename(columns={count: "count", population: "population"})
    if (g["population"] <= 0).any():
        row = g.loc[g["population"] <= 0, by].iloc[0].to_dict()
        raise RegistryLabError(f"stratum {row}: reference population is zero, rate undefined")
    g["rate"] = g["count"] / g["population"]
    return g


def indirect_expected(
    study_population: pd.DataFrame,
    reference_rates: pd.DataFrame,
    by: Sequence[str],
    *,
    population: str = "population",
    rate: str = "rate",
    group: str | Sequence[str] | None = None,
) -> pd.Series:
    """Expected counts by indirect standardisation: Σ population × reference rate by stratum.

    Args:
        study_population: populations by stratum (and usually by area), column ``population``.
        reference_rates: one row per stratum with column ``rate`` (events per person-year),
            e.g. from :func:`stratum_rates` on the comparison region.
        by: the stratum columns shared by both tables (e.g. ``["age_band", "sex"]``, optionally
            with ``"deprivation_quintile"``).
        population: name of the population column in ``study_population``.
        rate: name of the rate column in ``reference_rates``.
        group: if given, sum the expected counts within these columns (e.g. ``"area_id"``);
            otherwise return one expected count per row of ``study_population``.

    Returns:
        Series named ``expected``.

    Raises:
        RegistryLabError: if a study stratum has no reference rate.

    Example:
        >>> pop = pd.DataFrame({"area": ["a", "a", "b"], "sex": ["F", "M", "F"],
        ...                     "population": [1000, 500, 2000]})
        >>> rates = pd.DataFrame({"sex": ["F", "M"], "rate": [0.001, 0.002]})
        >>> indirect_expected(pop, rates, ["sex"], group="area")
        area
        a    2.0
        b    2.0
        Name: expected, dtype: float64
    """
    by = list(by)
    _require_columns(study_population, [population, *by], "study_population")
    _require_columns(reference_rates, [rate, *by], "reference_rates")
    if reference_rates.duplicated(by).any():
        row = reference_rates.loc[reference_rates.duplicated(by), by].iloc[0].to_dict()
        raise RegistryLabError(f"reference_rates: stratum {row} appears more than once")
    keys = pd.MultiIndex.from_frame(reference_rates[by])
    look = pd.MultiIndex.from_frame(study_population[by])
    pos = keys.get_indexer(look)
    if (pos < 0).any():
        row = study_population[by].iloc[int(np.flatnonzero(pos < 0)[0])].to_dict()
        raise RegistryLabError(f"study stratum {row} has no reference rate")
    r = reference_rates[rate].to_numpy(dtype=float)[pos]
    exp = pd.Series(
        study_population[population].to_numpy(dtype=float) * r,
        index=study_population.index,
        name="expected",
    )
    if group is None:
        return exp
    cols = [group] if isinstance(group, str) else list(group)
    _require_columns(study_population, cols, "study_population")
    keys_df = study_population[cols]
    out = exp.groupby([keys_df[c] for c in cols], observed=True).sum()
    out.name = "expected"
    return out


def crude_rate(count, population, per: float = 100_000, level: float = 0.95) -> pd.DataFrame:
    """Crude rate per ``per`` person-years with exact (Garwood) limits.

    Example:
        >>> crude_rate(10, 50_000).round(2)
           count  population  rate  lower  upper
        0   10.0     50000.0  20.0   9.59  36.78
    """
    c = np.atleast_1d(_as_counts(count, "count"))
    n = np.atleast_1d(np.asarray(population, dtype=float))
    if c.shape != n.shape:
        raise RegistryLabError(f"count has {c.size} values but population has {n.size}")
    if n.size and np.any(~(n > 0)):
        bad = int(np.flatnonzero(~(n > 0))[0])
        raise RegistryLabError(f"population[{bad}]={n[bad]!r}: population must be > 0")
    lo, hi = poisson_ci(c, level, "exact")
    return pd.DataFrame(
        {
            "count": c,
            "population": n,
            "rate": c / n * per,
            "lower": lo / n * per,
            "upper": hi / n * per,
        }
    )


def direct_standardised_rate(
    df: pd.DataFrame,
    count: str,
    population: str,
    weight: str,
    by: str | Sequence[str] | None = None,
    per: float = 100_000,
    level: float = 0.95,
    method: str = "exact",
) -> pd.DataFrame:
    """Directly standardised rates with Dobson et al. (1991) confidence limits.

    ``df`` holds one row per stratum (e.g. age band × sex) within each group ``by``, with the
    events ``count``, the ``population`` at risk and the standard population ``weight`` (e.g.
    the European Standard Population 2013). The DSR is ``Σ w_i d_i/n_i / Σ w_i``. Dobson's
    limits scale the Poisson limits (O_L, O_U) of the total count O:
    ``DSR + sqrt(Var(DSR)/O) × (O_L − O)`` and likewise for the upper limit, with
    ``Var(DSR) = Σ w_i² d_i/n_i² / (Σ w_i)²``. ``method`` picks the limits of O (``"exact"``,
    as Dobson did, or ``"byar"``, as PHE does). When O = 0 the DSR and lower limit are 0 and the
    upper limit is Dobson's formula in the limit of events spread in proportion to population:
    ``O_U × sqrt(Σ w_i²/n_i / (Σ w_i)² / Σ n_i)``.

    Returns:
        DataFrame with the ``by`` columns (if any) and ``count, population, crude_rate, dsr,
        lower, upper``.

    Example:
        >>> d = pd.DataFrame({"age": ["young", "old"], "n": [10, 40],
        ...                   "pop": [50_000, 10_000], "esp": [60_000, 40_000]})
        >>> direct_standardised_rate(d, "n", "pop", "esp").round(2)
           count  population  crude_rate    dsr   lower   upper
        0     50       60000       83.33  172.0  125.37  229.59
    """
    level = _check_level(level)
    if method not in _METHODS:
        raise RegistryLabError(f"method={method!r}: DSR CI method must be exact or byar")
    by_cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    _require_columns(df, [count, population, weight, *by_cols], "direct_standardised_rate input")
    d = df[[*by_cols, count, population, weight]].copy()
    _as_counts(d[count].to_numpy(), count)
    n = d[population].to_numpy(dtype=float)
    if np.any(~(n > 0)):
        row = d.iloc[int(np.flatnonzero(~(n > 0))[0])].to_dict()
        raise RegistryLabError(f"stratum {row}: population must be > 0")
    w = d[weight].to_numpy(dtype=float)
    if np.any(~(w >= 0)):
        row = d.iloc[int(np.flatnonzero(~(w >= 0))[0])].to_dict()
        raise RegistryLabError(f"stratum {row}: standard population weight must be >= 0")
    x = d[count].to_numpy(dtype=float)
    d["_wr"] = w * x / n
    d["_wv"] = w**2 * x / n**2
    d["_w0"] = w**2 / n
    keys = by_cols if by_cols else np.zeros(len(d), dtype=np.int8)
    g = d.groupby(keys, as_index=bool(not by_cols), observed=True, sort=True)
    agg = g[[count, population, weight, "_wr", "_wv", "_w0"]].sum()
    sw = agg[weight].to_numpy(dtype=float)
    o = agg[count].to_numpy(dtype=float)
    dsr = agg["_wr"].to_numpy(dtype=float) / sw
    var = agg["_wv"].to_numpy(dtype=float) / sw**2
    lo_o, hi_o = poisson_ci(o, level, method)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(o > 0, np.sqrt(var / o), 0.0)
    lower = dsr + scale * (lo_o - o)
    npop = agg[population].to_numpy(dtype=float)
    scale0 = np.sqrt(agg["_w0"].to_numpy(dtype=float) / sw**2 / npop)
    upper = np.where(o > 0, dsr + scale * (hi_o - o), scale0 * hi_o)
    out = agg[by_cols].copy() if by_cols else pd.DataFrame(index=range(len(agg)))
    out["count"] = agg[count].to_numpy()
    out["population"] = agg[population].to_numpy()
    out["crude_rate"] = o / agg[population].to_numpy(dtype=float) * per
    out["dsr"] = dsr * per
    out["lower"] = np.maximum(lower, 0.0) * per
    out["upper"] = upper * per
    return out.reset_index(drop=True)
