"""Net survival: Pohar Perme and Ederer II with background mortality from a life table.

Net survival is the survival patients would have if cancer were their only possible cause of
death. It is estimated from all-cause deaths by removing the expected (background) mortality
of people of the same age, sex, calendar year and deprivation, taken from a life table.

**Background hazards.** The life table gives ``qx``, the annual probability of death, by
single year of age 0–100 (100 = 100+), sex, calendar year and deprivation quintile (any
stratum columns can be used). It is converted to a constant hazard within each cell,
``mu = -log(1 - qx)``. Each patient is followed along their Lexis line: attained age and
calendar year both advance with follow-up time, so the patient's hazard changes at every
birthday and every 1 January. The cumulative background hazard ``Lambda_i(t)`` is integrated
exactly over those pieces (vectorised over patients and whole years of follow-up). Years
beyond the life table's range use its last (or first) year.

**Estimator on a time grid.** Follow-up (in years) is cut on a regular grid of step ``h``
(``"day"`` by default; ``"week"``, ``"month"`` or a number of years). In grid interval
``k`` each patient contributes, while at risk, with weight ``w_i(u) = 1 / S_P,i(u) =
exp(Lambda_i(u))`` (Pohar Perme) or ``w = 1`` (Ederer II):

- weighted person-time ``Y_k = sum_i ∫ w_i(u) du`` (trapezoidal rule over the interval),
- weighted expected deaths ``E_k = sum_i ∫ w_i(u) lambda_i(u) du``, which for Pohar Perme is
  exactly ``sum_i [w_i(end) - w_i(start)]`` and for Ederer II ``sum_i [Lambda_i(end) -
  Lambda_i(start)]``,
- weighted deaths ``D_k = sum_{deaths in k} w_i(T_i)`` and ``V_k = sum w_i(T_i)^2``.

The excess hazard in the interval is ``(D_k - E_k) / Y_k``; the cumulative excess hazard is
``Lambda_E(t) = sum_k h_k (D_k - E_k) / Y_k`` and net survival ``exp(-Lambda_E(t))``. As
``h -> 0`` this is the Pohar Perme (2012) estimator ``∫ (dN^w - Y^w dLambda_P^w) / Y^w``
(and Ederer II with unit weights); on a daily grid with follow-up in whole days it is the
relsurv ``rs.surv`` computation with ``precision = 1`` day up to the weight being evaluated
at the event time. The variance is the usual Pohar Perme one, ``Var Lambda_E(t) = sum_k
h_k^2 V_k / Y_k^2`` (the grid form of ``∫ sum dN_i w_i^2 / (Y^w)^2``); limits are log(-log)
by default (``"log"`` and ``"plain"`` on request). After the last patient leaves follow-up
the curve is not estimable and is reported as NaN.

Cost is proportional to the number of (patient, grid step) pairs: a daily grid suits tens of
thousands of patients; for a million patients a monthly grid (about 25 s on one core,
``benchmarks/bench_survival.py``) gives the same 1-, 5- and 10-year values to about 0.001.

References:
    Pohar Perme M, Stare J, Estève J (2012). On estimation in relative survival. Biometrics
    68:113-120.
    Ederer F, Heise H (1959). Instructions to IBM 650 programmers in processing survival
    computations. National Cancer Institute (Ederer II).
    Corazziari I, Quinn M, Capocaccia R (2004). Standard cancer patient population for age
    standardising survival ratios. Eur J Cancer 40:2307-2316 (ICSS).
    Brenner H, Arndt V, Gefeller O, Hakulinen T (2004). An alternative approach to age
    adjustment of cancer survival rates. Eur J Cancer 40:2317-2322.

Example:
    >>> import numpy as np, pandas as pd
    >>> life = pd.DataFrame([(y, s, d, a, 0.01) for y in (2010, 2011) for s in (1, 2)
    ...                      for d in range(1, 6) for a in range(101)],
    ...                     columns=["year", "sex", "deprivation_quintile", "age", "qx"])
    >>> df = pd.DataFrame({"time": [0.5, 2.0, 3.0], "dead": [1, 0, 1], "age": [60.2, 70.5, 65.0],
    ...                    "year": [2010.3, 2010.9, 2011.5], "sex": [1, 2, 1],
    ...                    "deprivation_quintile": [1, 3, 5]})
    >>> ns = net_survival(df, life, times=[1], step="month")
    >>> ns.table[["time", "net_survival"]].round(3)
       time  net_survival
    0   1.0         0.724
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError
from registry_lib.stats.life_table import BackgroundHazards, _age_year, _LexisPaths

DAYS_PER_YEAR = 365.25
STEPS = {"day": 1 / DAYS_PER_YEAR, "week": 7 / DAYS_PER_YEAR, "month": 1 / 12}
METHODS = ("pohar_perme", "ederer2")
CI_TYPES = ("log-log", "log", "plain")
_CHUNK_ELEMENTS = 4_000_000
_EPS = 1e-9

TABLE_COLUMNS = ["time", "net_survival", "se", "lower", "upper", "n_at_risk", "n_events",
                 "method"]


# ----------------------------------------------------------------------------------------
# the estimator
# ----------------------------------------------------------------------------------------
def _step_years(step) -> float:
    if isinstance(step, str):
        if step not in STEPS:
            raise RegistryLabError(f"step={step!r}: use 'day', 'week', 'month' or a number of years")
        return STEPS[step]
    h = float(step)
    if not 0 < h <= 1:
        raise RegistryLabError(f"step={step!r}: a step in years must lie in (0, 1]")
    return h


def _grid(horizon: float, h: float) -> np.ndarray:
    k = int(np.ceil(horizon / h - _EPS))
    edges = np.arange(k + 1, dtype=float) * h
    edges[-1] = horizon
    return edges


def _accumulate(bh, sidx, a0, y0, t, dead, wext, edges, h, pohar: bool) -> dict[str, np.ndarray]:
    """Interval sums Y, E, D, V (and unweighted counts) over all patients, chunked."""
    k_int = edges.size - 1
    n_steps = np.maximum(np.ceil(t / h - _EPS).astype(np.int64), 1)
    n_years = int(np.floor(edges[-1])) + 1
    acc = {name: np.zeros(k_int) for name in ("Y", "E", "D", "V", "n_risk", "n_dead")}
    cs = np.cumsum(n_steps)
    cuts = np.searchsorted(cs, np.arange(_CHUNK_ELEMENTS, cs[-1], _CHUNK_ELEMENTS), side="right")
    starts = np.unique(np.concatenate([[0], cuts, [len(t)]]))
    for lo, hi in zip(starts[:-1], starts[1:], strict=True):
        sl = slice(lo, hi)
        paths = _LexisPaths(bh, sidx[sl], a0[sl], y0[sl], n_years)
        ns = n_steps[sl]
        m = hi - lo
        pid = np.repeat(np.arange(m), ns)
        first = np.cumsum(ns) - ns
        k = np.arange(ns.sum()) - np.repeat(first, ns)
        ts = k * h
        lam_s = paths.at(pid, np.minimum(ts, edges[-1]))
        tend_pat = t[sl]
        lam_T = paths.at(np.arange(m), tend_pat)
        last = np.cumsum(ns) - 1
        lam_e = np.empty_like(lam_s)
        lam_e[:-1] = lam_s[1:]
        lam_e[last] = lam_T
        te = np.minimum((k + 1) * h, edges[-1])
        te[last] = tend_pat
        dt = te - ts
        we_ext = wext[sl][pid]
        if pohar:
            ws, we = np.exp(lam_s), np.exp(lam_e)
            y_c = dt * (ws + we) / 2 * we_ext
            e_c = (we - ws) * we_ext
            w_dead = np.exp(lam_T) * wext[sl]
        else:
            y_c = dt * we_ext
            e_c = (lam_e - lam_s) * we_ext
            w_dead = wext[sl]
        acc["Y"] += np.bincount(k, y_c, k_int)
        acc["E"] += np.bincount(k, e_c, k_int)
        acc["n_risk"] += np.bincount(k, minlength=k_int)
        d = dead[sl].astype(bool)
        kd = (ns - 1)[d]
        acc["D"] += np.bincount(kd, w_dead[d], k_int)
        acc["V"] += np.bincount(kd, w_dead[d] ** 2, k_int)
        acc["n_dead"] += np.bincount(kd, minlength=k_int)
    return acc


def _ci(surv, cumhaz, se_h, z, ci: str) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_lo, log_hi = surv * np.exp(-z * se_h), surv * np.exp(z * se_h)
        if ci == "log":
            return log_lo, log_hi
        if ci == "plain":
            return surv - z * surv * se_h, surv + z * surv * se_h
        pos = cumhaz > 0
        ll_lo = np.exp(-cumhaz * np.exp(z * se_h / np.where(pos, cumhaz, 1)))
        ll_hi = np.exp(-cumhaz * np.exp(-z * se_h / np.where(pos, cumhaz, 1)))
        return np.where(pos, ll_lo, log_lo), np.where(pos, ll_hi, log_hi)


def _net_curve(bh, sidx, a0, y0, t, dead, wext, horizon, h, method, z, ci) -> pd.DataFrame:
    pohar = method == "pohar_perme"
    dead = dead & (t <= horizon)
    t = np.minimum(t, horizon)
    edges = _grid(horizon, h)
    acc = _accumulate(bh, sidx, a0, y0, t, dead, wext, edges, h, pohar)
    width = np.diff(edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (acc["D"] - acc["E"]) / acc["Y"]
        dvar = acc["V"] / acc["Y"] ** 2 * width**2
    ok = acc["Y"] > 0
    # after the last person at risk the curve is undefined
    stop = np.flatnonzero(~ok)
    valid = np.ones_like(ok) if stop.size == 0 else np.arange(ok.size) < stop[0]
    cumhaz = np.concatenate([[0.0], np.cumsum(np.where(valid, rate * width, 0.0))])
    cumvar = np.concatenate([[0.0], np.cumsum(np.where(valid, dvar, 0.0))])
    end_valid = np.concatenate([[True], valid])
    cumhaz[~end_valid] = np.nan
    cumvar[~end_valid] = np.nan
    surv = np.exp(-cumhaz)
    se_h = np.sqrt(cumvar)
    lo, hi = _ci(surv, cumhaz, se_h, z, ci)
    return pd.DataFrame({
        "time": edges, "net_survival": surv, "se": surv * se_h, "lower": lo, "upper": hi,
        "cumulative_excess_hazard": cumhaz, "var_cumulative_excess_hazard": cumvar,
        "n_at_risk": np.concatenate([acc["n_risk"][:1], acc["n_risk"]]).astype(np.int64),
        "n_events": np.concatenate([[0], acc["n_dead"]]).astype(np.int64),
    })


def _read_curve(curve: pd.DataFrame, times: np.ndarray, z: float, ci: str) -> pd.DataFrame:
    e = curve["time"].to_numpy()
    cumhaz = np.interp(times, e, curve["cumulative_excess_hazard"].to_numpy())
    cumvar = np.interp(times, e, curve["var_cumulative_excess_hazard"].to_numpy())
    surv = np.exp(-cumhaz)
    se_h = np.sqrt(cumvar)
    lo, hi = _ci(surv, cumhaz, se_h, z, ci)
    pos = np.clip(np.searchsorted(e, times - _EPS, side="right"), 0, e.size - 1)
    ev = np.cumsum(curve["n_events"].to_numpy())
    return pd.DataFrame({
        "time": times, "net_survival": surv, "se": surv * se_h, "lower": lo, "upper": hi,
        "n_at_risk": curve["n_at_risk"].to_numpy()[pos],
        "n_events": ev[np.searchsorted(e, times + _EPS, side="right") - 1],
    })


@dataclass
class NetSurvival:
    """Result of :func:`net_survival` (or the age-standardised version).

    Attributes:
        table: values at the requested times (group columns, ``time, net_survival, se,
            lower, upper, n_at_risk, n_events, method``).
        curve: the whole curve on the grid (per group).
        method, step, level, ci: how it was computed.
        by_age: for age-standardised estimates, the age-specific values and weights.
        excluded: number of patients left out (e.g. outside the standard's age range).

    Example:
        >>> life = pd.DataFrame([(y, s, d, a, 0.01) for y in (2010, 2011) for s in (1, 2)
        ...                      for d in range(1, 6) for a in range(101)],
        ...                     columns=["year", "sex", "deprivation_quintile", "age", "qx"])
        >>> df = pd.DataFrame({"time": [0.5, 2.0, 3.0], "dead": [1, 0, 1], "age": [60.2, 70.5, 65.0],
        ...                    "year": [2010.3, 2010.9, 2011.5], "sex": [1, 2, 1],
        ...                    "deprivation_quintile": [1, 3, 5]})
        >>> ns = net_survival(df, life, times=[1], step="month")
        >>> ns.method, list(ns.table["time"])
        ('pohar_perme', [1.0])
    """

    table: pd.DataFrame
    curve: pd.DataFrame
    method: str
    step: float
    level: float
    ci: str
    by_age: pd.DataFrame | None = None
    excluded: int = 0
    notes: list[str] = field(default_factory=list)

    def plot(self, ax=None, **kwargs):
        """Plot the curve(s) with their limits."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        group_cols = [c for c in self.curve.columns if c not in _CURVE_COLUMNS]
        groups = self.curve.groupby(group_cols, sort=True) if group_cols else [("all", self.curve)]
        for key, g in groups:
            line, = ax.step(g["time"], g["net_survival"], where="post", label=str(key), **kwargs)
            ax.fill_between(g["time"], g["lower"], g["upper"], step="post", alpha=0.2,
                            color=line.get_color())
        ax.set_xlabel("years since diagnosis")
        ax.set_ylabel(f"net survival ({self.method})")
        ax.set_ylim(0, 1.05)
        if group_cols:
            ax.legend(title=", ".join(group_cols))
        return ax


_CURVE_COLUMNS = ["time", "net_survival", "se", "lower", "upper", "cumulative_excess_hazard",
                  "var_cumulative_excess_hazard", "n_at_risk", "n_events", "method"]


def _prepare(df, duration, event, age, year, bh):
    for c in (duration, event):
        if c not in df.columns:
            raise RegistryLabError(f"patients: column {c!r} not found")
    t = pd.to_numeric(df[duration], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise RegistryLabError(f"patient row {df.index[i]!r}: {duration}={df[duration].iloc[i]!r}"
                               " must be a finite number of years >= 0")
    ev = df[event]
    if ev.isna().any() or not ev.astype(float).isin((0.0, 1.0)).all():
        i = int(np.flatnonzero((ev.isna() | ~ev.astype(float).isin((0.0, 1.0))).to_numpy())[0])
        raise RegistryLabError(f"patient row {df.index[i]!r}: {event}={ev.iloc[i]!r} must be 0/1")
    a0, y0 = _age_year(df, age, year)
    return t, ev.astype(float).to_numpy() == 1, a0, y0, bh.stratum_index(df)


def net_survival(
    df: pd.DataFrame,
    life_table: pd.DataFrame | BackgroundHazards,
    *,
    duration: str = "time",
    event: str = "dead",
    age: str = "age",
    year: str = "year",
    strata: Sequence[str] = ("sex", "deprivation_quintile"),
    times: Sequence[float] = (1, 5, 10),
    method: str = "pohar_perme",
    step: str | float = "day",
    by: str | Sequence[str] | None = None,
    weights: str | None = None,
    level: float = 0.95,
    ci: str = "log-log",
) -> NetSurvival:
    """Net survival by the Pohar Perme estimator (or Ederer II), with CIs.

    Args:
        df: one row per patient (first primary of the site studied).
        life_table: ``year, age (0-100), qx`` plus the ``strata`` columns, or a prepared
            :class:`BackgroundHazards`.
        duration: follow-up from diagnosis in years (e.g. days / 365.25).
        event: 1 when follow-up ended in death from any cause.
        age: exact age at diagnosis in years (fractional; add 0.5 to completed years).
        year: decimal calendar year of diagnosis, or a datetime column of diagnosis dates.
        strata: the patient columns matched to the life table (default sex, deprivation).
        times: times (years) at which to report; the curve runs to the largest.
        method: ``"pohar_perme"`` or ``"ederer2"``.
        step: grid step: ``"day"``, ``"week"``, ``"month"`` or years (see module docstring).
        by: optional grouping column(s) (one curve each).
        weights: optional column of extra patient weights (e.g. Brenner age weights).
        level: confidence level; ``ci``: ``"log-log"``, ``"log"`` or ``"plain"``.

    Returns:
        :class:`NetSurvival` with ``.table`` at ``times`` and ``.curve``.

    Example:
        >>> life = pd.DataFrame({"year": 2015, "age": range(101), "qx": 0.02})
        >>> df = pd.DataFrame({"time": [1.0, 2.0, 3.0, 4.0], "dead": [1, 1, 0, 1],
        ...                    "age": 70.0, "year": 2015.0})
        >>> net_survival(df, life, strata=(), times=[2], step=1.0).table["net_survival"].round(4)
        0    0.5776
        Name: net_survival, dtype: float64
    """
    if method not in METHODS:
        raise RegistryLabError(f"method={method!r}: use one of {METHODS}")
    if ci not in CI_TYPES:
        raise RegistryLabError(f"ci={ci!r}: use one of {CI_TYPES}")
    if not 0 < level < 1:
        raise RegistryLabError(f"level={level!r} must lie between 0 and 1")
    z = float(sps.norm.ppf(0.5 + level / 2))
    h = _step_years(step)
    ts = np.asarray(sorted(float(x) for x in times), dtype=float)
    if ts.size == 0 or ts[0] <= 0:
        raise RegistryLabError(f"times={list(times)!r}: give at least one time > 0")
    bh = life_table if isinstance(life_table, BackgroundHazards) else \
        BackgroundHazards.from_life_table(life_table, strata)
    if by is None:
        cols, groups = [], [((), df)]
    else:
        cols = [by] if isinstance(by, str) else list(by)
        groups = [(k if isinstance(k, tuple) else (k,), g)
                  for k, g in df.groupby(cols, sort=True, observed=True)]
    tables, curves = [], []
    for key, g in groups:
        t, dead, a0, y0, sidx = _prepare(g, duration, event, age, year, bh)
        if weights is None:
            w = np.ones(len(g))
        else:
            w = pd.to_numeric(g[weights], errors="coerce").to_numpy(dtype=float)
            if np.any(~np.isfinite(w) | (w < 0)):
                raise RegistryLabError(f"weights column {weights!r} must be finite and >= 0")
        if len(g) == 0:
            raise RegistryLabError(f"net_survival: no patients in group {key}")
        curve = _net_curve(bh, sidx, a0, y0, t, dead, w, ts[-1], h, method, z, ci)
        tab = _read_curve(curve, ts, z, ci)
        for c, v in zip(cols, key, strict=True):
            curve.insert(cols.index(c), c, v)
            tab.insert(cols.index(c), c, v)
        tab["method"] = method
        curve["method"] = method
        tables.append(tab)
        curves.append(curve)
    return NetSurvival(pd.concat(tables, ignore_index=True), pd.concat(curves, ignore_index=True),
                       method, h, level, ci)


def _standard_weights(standard) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(standard, pd.DataFrame):
        if not {"age_band", "weight"} <= set(standard.columns):
            raise RegistryLabError("standard weights: need columns age_band and weight")
        if "standard" in standard.columns and standard["standard"].nunique() > 1:
            raise RegistryLabError(
                "standard weights: the table holds several standards "
                f"{sorted(standard['standard'].unique())}; filter to one first"
            )
        s = standard.sort_values("age_band")
        lower, w = s["age_band"].to_numpy(dtype=float), s["weight"].to_numpy(dtype=float)
    elif isinstance(standard, Mapping):
        items = sorted((float(k), float(v)) for k, v in standard.items())
        lower, w = np.array([k for k, _ in items]), np.array([v for _, v in items])
    else:
        raise RegistryLabError("standard weights: pass a DataFrame (age_band, weight) or a dict")
    if np.any(w < 0) or w.sum() <= 0 or len(np.unique(lower)) != lower.size:
        raise RegistryLabError("standard weights: weights must be >= 0, sum > 0, one per age band")
    return lower, w / w.sum()


def age_standardised_net_survival(
    df: pd.DataFrame,
    life_table: pd.DataFrame | BackgroundHazards,
    standard: pd.DataFrame | Mapping[float, float],
    *,
    age: str = "age",
    approach: str = "traditional",
    by: str | Sequence[str] | None = None,
    times: Sequence[float] = (1, 5, 10),
    level: float = 0.95,
    ci: str = "log-log",
    **kwargs,
) -> NetSurvival:
    """Age-standardised Pohar Perme net survival with standard (e.g. ICSS) weights.

    ``standard`` gives the lower bound of each age band and its weight (e.g.
    ``reference/standard_populations`` filtered to ``standard == "icss1"``: bands 15, 45, 55,
    65, 75 — i.e. 15–44, 45–54, 55–64, 65–74, 75+); weights are normalised to sum to 1.
    Patients younger than the first band are excluded (counted in ``.excluded``).

    ``approach="traditional"`` estimates net survival in each age band and averages the
    band values with the weights (variance ``sum w^2 Var S_g``; Corazziari et al. 2004);
    ``approach="brenner"`` weights each patient by ``W_g / (n_g / n)`` inside one Pohar Perme
    estimate (Brenner et al. 2004), which stays defined when a band is sparse. Every age band
    must contain patients.

    Example:
        >>> import numpy as np
        >>> life = pd.DataFrame({"year": 2015, "age": range(101), "qx": 0.02})
        >>> rng = np.random.default_rng(0)
        >>> df = pd.DataFrame({"time": rng.exponential(5, 200), "dead": 1,
        ...                    "age": rng.uniform(20, 90, 200), "year": 2015.0})
        >>> std = {15: 0.07, 45: 0.12, 55: 0.23, 65: 0.29, 75: 0.29}
        >>> res = age_standardised_net_survival(df, life, std, strata=(), times=[1], step="month")
        >>> res.by_age["age_band"].tolist()
        [15.0, 45.0, 55.0, 65.0, 75.0]
    """
    if approach not in ("traditional", "brenner"):
        raise RegistryLabError(f"approach={approach!r}: use 'traditional' or 'brenner'")
    lower, w = _standard_weights(standard)
    if age not in df.columns:
        raise RegistryLabError(f"patients: column {age!r} not found")
    a = pd.to_numeric(df[age], errors="coerce").to_numpy(dtype=float)
    band_idx = np.searchsorted(lower, a, side="right") - 1
    keep = band_idx >= 0
    data = df.loc[keep].copy()
    data["age_band"] = lower[band_idx[keep]]
    excluded = int((~keep).sum())
    z = float(sps.norm.ppf(0.5 + level / 2))
    cols = [] if by is None else ([by] if isinstance(by, str) else list(by))
    groups = [((), data)] if not cols else [
        (k if isinstance(k, tuple) else (k,), g) for k, g in data.groupby(cols, sort=True)]
    tables, curves, by_age = [], [], []
    for key, g in groups:
        counts = g["age_band"].value_counts().reindex(lower, fill_value=0)
        empty = counts.index[counts.to_numpy() == 0]
        if len(empty):
            raise RegistryLabError(
                f"age band starting at {empty[0]:g}{' in group ' + str(key) if key else ''} has "
                "no patients: cannot age-standardise"
            )
        if approach == "traditional":
            res = net_survival(g, life_table, age=age, by="age_band", times=times, level=level,
                               ci=ci, **kwargs)
            tab = res.table.merge(pd.DataFrame({"age_band": lower, "weight": w}), on="age_band")
            by_age.append(tab.assign(**dict(zip(cols, key, strict=True))))
            agg = tab.assign(ws=tab["weight"] * tab["net_survival"],
                             wv=(tab["weight"] * tab["se"]) ** 2).groupby("time")
            s = agg["ws"].sum().to_numpy()
            se = np.sqrt(agg["wv"].sum().to_numpy())
            with np.errstate(divide="ignore", invalid="ignore"):
                lo, hi = _ci(s, -np.log(s), se / s, z, ci)
            t_tab = pd.DataFrame({
                "time": agg["ws"].sum().index.to_numpy(dtype=float), "net_survival": s, "se": se,
                "lower": lo, "upper": hi, "n_at_risk": agg["n_at_risk"].sum().to_numpy(),
                "n_events": agg["n_events"].sum().to_numpy(),
            })
            curve = res.curve
        else:
            share = counts / counts.sum()
            g = g.assign(_brenner=(pd.Series(w, index=lower) / share).reindex(g["age_band"]).to_numpy())
            res = net_survival(g, life_table, age=age, times=times, level=level, ci=ci,
                               weights="_brenner", **kwargs)
            t_tab = res.table.drop(columns="method")
            curve = res.curve
            by_age.append(pd.DataFrame({"age_band": lower, "weight": w,
                                        "n": counts.to_numpy(), "brenner_weight": w / share}))
        for c, v in zip(cols, key, strict=True):
            t_tab.insert(cols.index(c), c, v)
            curve.insert(cols.index(c), c, v)
        t_tab["method"] = f"{kwargs.get('method', 'pohar_perme')} age-standardised ({approach})"
        tables.append(t_tab)
        curves.append(curve)
    return NetSurvival(pd.concat(tables, ignore_index=True), pd.concat(curves, ignore_index=True),
                       kwargs.get("method", "pohar_perme"), _step_years(kwargs.get("step", "day")), level, ci,
                       by_age=pd.concat(by_age, ignore_index=True), excluded=excluded)
