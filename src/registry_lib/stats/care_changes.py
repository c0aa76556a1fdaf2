"""Changes in care between periods (e.g. before and during the COVID-19 pandemic).

Small helpers that a service-shock study calls on registry tables, each returning a tidy
DataFrame (or a small result object of tidy DataFrames):

- :func:`assign_period` — label dates with named periods (``baseline``, ``pandemic``, ...);
- :func:`share_by_period` — share of records with a flag, with Wilson CIs; specialised as
  :func:`emergency_share` (route to diagnosis) and :func:`fractionation_share` (e.g. breast
  radiotherapy in 5 fractions);
- :func:`stage_shift` — stage distribution by period, chi-square test and the adjusted odds
  ratio of late stage (3–4 against 1–2) by logistic regression;
- :func:`first_treatment`, :func:`time_to_treatment`, :func:`median_iqr` — first treatment per
  tumour and the time from diagnosis to it (median and IQR) by period;
- :func:`odds_ratios`, :func:`hazard_ratios` — tidy adjusted OR (logistic) and HR (Cox) tables;
- :func:`covid_death_cohort`, :func:`covid_death_risk` — risk of COVID-19 death (ICD-10 U07.1)
  for patients on SACT, adjusted for age, sex and comorbidity;
- :func:`survival_times`, :func:`cohort_survival` — stage-adjusted survival of the cohorts
  diagnosed in each period (Cox), on a common follow-up horizon.

Monthly volumes (SACT starts, operations) against a counterfactual reuse
:mod:`registry_lib.stats.timeseries`: ``monthly_counts(first_treatment(tx, "sact"),
"start_date")`` then ``fit_counterfactual``.

References:
    Wilson EB (1927). Probable inference, the law of succession, and statistical inference.
    J Am Stat Assoc 22:209-212.

Example:
    >>> df = pd.DataFrame({"period": ["baseline"] * 4 + ["pandemic"] * 2,
    ...                    "emergency": [True, False, False, False, True, True]})
    >>> share_by_period(df, "emergency")[["period", "n", "events", "share"]]
         period  n  events  share
    0  baseline  4       1   0.25
    1  pandemic  2       2   1.00
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError

PERIOD = "period"



def _py(value: Any) -> Any:
    """A numpy scalar as the plain Python value, so messages read ``11`` not ``np.int64(11)``."""
    return value.item() if isinstance(value, np.generic) else value

def _cols(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RegistryLabError(f"{what}: missing column(s) {missing}")


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise RegistryLabError(f"level={level!r}: must lie strictly between 0 and 1")
    return float(level)


def _as_dates(s: pd.Series, name: str, allow_missing: bool = False) -> pd.Series:
    out = pd.to_datetime(s, errors="coerce")
    bad = out.isna() & s.notna() if allow_missing else out.isna()
    if bad.any():
        i = s.index[bad.to_numpy()][0]
        raise RegistryLabError(f"record at index {_py(i)!r}: {name}={_py(s.at[i])!r} is not a date")
    return out


# --------------------------------------------------------------------------------------------
# periods and shares
# --------------------------------------------------------------------------------------------
def _period_bounds(window: Sequence[Any], name: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    if isinstance(window, str) or len(window) != 2:
        raise RegistryLabError(f"periods[{name!r}]={window!r}: give a (start, end) pair")
    bounds = []
    for j, v in enumerate(window):
        text = str(v)
        try:
            if len(text) == 7 and text[4] == "-":  # a whole month, 'YYYY-MM'
                p = pd.Period(text, freq="M")
                bounds.append(p.start_time if j == 0 else p.end_time.normalize())
            else:
                bounds.append(pd.Timestamp(v).normalize())
        except (ValueError, TypeError) as exc:
            raise RegistryLabError(f"periods[{name!r}]={window!r}: {v!r} is not a date") from exc
    if bounds[1] < bounds[0]:
        raise RegistryLabError(f"periods[{name!r}]={window!r}: end is before start")
    return bounds[0], bounds[1]


def assign_period(dates: Any, periods: Mapping[str, Sequence[Any]]) -> pd.Series:
    """Label each date with the named period it falls in (missing if none).

    Args:
        dates: dates (Series, array or list).
        periods: ``{name: (start, end)}``, both ends inclusive; ``"YYYY-MM"`` means the whole
            month, e.g. ``{"baseline": ("2015-01", "2020-02"), "pandemic": ("2020-03",
            "2021-02")}``. Periods must not overlap.

    Returns:
        A categorical Series (categories in the order given), index kept from ``dates``.

    Example:
        >>> p = {"baseline": ("2019-01", "2020-02"), "pandemic": ("2020-03", "2020-12")}
        >>> assign_period(pd.Series(pd.to_datetime(["2020-02-29", "2020-03-01", "2021-01-01"])),
        ...               p).tolist()
        ['baseline', 'pandemic', nan]
    """
    s = dates if isinstance(dates, pd.Series) else pd.Series(dates)
    d = _as_dates(s, "date", allow_missing=True)
    if not periods:
        raise RegistryLabError("periods: give at least one named period")
    bounds = {name: _period_bounds(w, name) for name, w in periods.items()}
    ordered = sorted(bounds.items(), key=lambda kv: kv[1][0])
    for (n1, (_, e1)), (n2, (s2, _)) in zip(ordered, ordered[1:], strict=False):
        if s2 <= e1:
            raise RegistryLabError(f"periods {n1!r} and {n2!r} overlap")
    labels = np.full(len(d), None, dtype=object)
    values = d.to_numpy()
    for name, (lo, hi) in bounds.items():
        inside = (values >= lo.to_datetime64()) & (values <= hi.to_datetime64())
        labels[inside] = name
    return pd.Series(pd.Categorical(labels, categories=list(periods)), index=s.index, name=PERIOD)


def wilson_ci(events: Any, n: Any, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion (vectorised; NaN where n = 0).

    Example:
        >>> lo, hi = wilson_ci(5, 10)
        >>> round(float(lo), 4), round(float(hi), 4)
        (0.2366, 0.7634)
    """
    level = _check_level(level)
    x, m = np.asarray(events, float), np.asarray(n, float)
    z = sps.norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / m
        centre = (p + z * z / (2 * m)) / (1 + z * z / m)
        half = z * np.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / (1 + z * z / m)
    return centre - half, centre + half


def share_by_period(
    df: pd.DataFrame,
    flag: str,
    by: str | Sequence[str] | None = PERIOD,
    *,
    level: float = 0.95,
) -> pd.DataFrame:
    """Share of records with ``flag`` true, by group, with Wilson CIs.

    Records whose flag is missing are left out of the denominator and counted in
    ``n_missing``; records whose group is missing (e.g. outside every period) are dropped.

    Returns:
        DataFrame ``[*by, n, events, share, lower, upper, n_missing]``.

    Example:
        >>> df = pd.DataFrame({"period": ["a", "a", "a", "b"], "f": [True, None, False, True]})
        >>> share_by_period(df, "f")[["period", "n", "events", "n_missing"]]
          period  n  events  n_missing
        0      a  2       1          1
        1      b  1       1          0
    """
    by_cols = _cols(by)
    _require(df, [flag, *by_cols], "share_by_period input")
    f = df[flag]
    known = f.notna()
    flag_values = f.where(known, False)
    valid = flag_values.isin([True, False]).to_numpy()
    if not valid.all():
        bad = df.index[~valid][0]
        raise RegistryLabError(
            f"record at index {_py(bad)!r}: {flag}={_py(f.at[bad])!r} is not true/false"
        )
    work = pd.DataFrame(
        {
            "_n": known.astype(np.int64),
            "_events": (flag_values.astype(bool) & known).astype(np.int64),
            "_missing": (~known).astype(np.int64),
        },
        index=df.index,
    )
    if by_cols:
        for c in by_cols:
            work[c] = df[c]
        g = work.groupby(by_cols, observed=True, sort=True)[["_n", "_events", "_missing"]].sum()
        g = g.reset_index()
    else:
        g = work[["_n", "_events", "_missing"]].sum().to_frame().T
    g = g.rename(columns={"_n": "n", "_events": "events", "_missing": "n_missing"})
    with np.errstate(divide="ignore", invalid="ignore"):
        g["share"] = g["events"] / g["n"]
    g["lower"], g["upper"] = wilson_ci(g["events"], g["n"], level)
    return g[[*by_cols, "n", "events", "share", "lower", "upper", "n_missing"]]


def emergency_share(
    tumours: pd.DataFrame,
    by: str | Sequence[str] | None = PERIOD,
    *,
    route: str = "route_to_diagnosis",
    emergency: Sequence[str] = ("Emergency presentation",),
    level: float = 0.95,
) -> pd.DataFrame:
    """Share of tumours diagnosed through an emergency presentation, by group.

    Route values are matched to ``emergency`` ignoring case and surrounding spaces; tumours
    with no route recorded are counted in ``n_missing``, not in the denominator.

    Example:
        >>> t = pd.DataFrame({"period": ["b", "b", "p"],
        ...                   "route_to_diagnosis": ["GP referral", "Emergency Presentation",
        ...                                          "emergency presentation"]})
        >>> emergency_share(t)[["period", "n", "events", "share"]]
          period  n  events  share
        0      b  2       1    0.5
        1      p  1       1    1.0
    """
    _require(tumours, [route], "emergency_share input")
    wanted = {str(e).strip().lower() for e in emergency}
    r = tumours[route]
    flag = r.astype("string").str.strip().str.lower().isin(wanted).astype(object)
    flag[r.isna()] = None
    df = tumours.drop(columns=[c for c in ["_emergency"] if c in tumours]).assign(_emergency=flag)
    out = share_by_period(df, "_emergency", by, level=level)
    return out


def fractionation_share(
    treatments: pd.DataFrame,
    by: str | Sequence[str] | None = PERIOD,
    *,
    fractions: int = 5,
    region: str | None = "breast",
    region_col: str = "rt_region",
    fractions_col: str = "fractions",
    modality_col: str = "modality",
    level: float = 0.95,
) -> pd.DataFrame:
    """Share of radiotherapy courses given in ``fractions`` fractions (e.g. breast, 5).

    Only radiotherapy rows (``modality == "radiotherapy"`` when that column exists) in
    ``region`` (case-insensitive; ``None`` for every region) are counted; courses with no
    fraction count recorded go to ``n_missing``.

    Example:
        >>> rt = pd.DataFrame({"period": ["b", "b", "p", "p"], "modality": ["radiotherapy"] * 4,
        ...                    "rt_region": ["breast"] * 4, "fractions": [15, 15, 5, 15]})
        >>> fractionation_share(rt)[["period", "n", "events", "share"]]
          period  n  events  share
        0      b  2       0    0.0
        1      p  2       1    0.5
    """
    _require(treatments, [fractions_col], "fractionation_share input")
    keep = pd.Series(True, index=treatments.index)
    if modality_col in treatments.columns:
        keep &= treatments[modality_col].astype("string").str.lower().eq("radiotherapy").fillna(
            False
        )
    if region is not None:
        _require(treatments, [region_col], "fractionation_share input")
        keep &= (
            treatments[region_col].astype("string").str.strip().str.lower()
            .eq(region.lower()).fillna(False)
        )
    rt = treatments.loc[keep.to_numpy()]
    fr = pd.to_numeric(rt[fractions_col], errors="coerce")
    flag = (fr == fractions).astype(object)
    flag[fr.isna()] = None
    return share_by_period(rt.assign(_in_fractions=flag), "_in_fractions", by, level=level)


# --------------------------------------------------------------------------------------------
# regression tables
# --------------------------------------------------------------------------------------------
def model_matrix(
    df: pd.DataFrame,
    covariates: Sequence[str],
    categorical: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Numeric design matrix: numeric/bool columns as they are, categorical ones as indicators.

    A column is categorical if listed in ``categorical`` or if it is not numeric. Indicator
    columns are named ``column[level]``; the reference level (``reference[column]``, default the
    first in sorted order, or the first category of a categorical column) gets none.

    Example:
        >>> d = pd.DataFrame({"age": [50, 60, 70], "stage": ["1", "3", "4"]})
        >>> model_matrix(d, ["age", "stage"]).columns.tolist()
        ['age', 'stage[3]', 'stage[4]']
    """
    cats = set(_cols(categorical))
    reference = dict(reference or {})
    parts: dict[str, np.ndarray] = {}
    for c in covariates:
        s = df[c]
        is_cat = c in cats or not (
            pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)
        ) or isinstance(s.dtype, pd.CategoricalDtype)
        if not is_cat:
            parts[c] = s.to_numpy(dtype=float)
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            levels = [v for v in s.cat.categories if (s == v).any()]
        else:
            levels = sorted(pd.unique(s.dropna()), key=lambda v: (str(type(v)), v))
        ref = reference.get(c, levels[0] if levels else None)
        if ref not in levels:
            raise RegistryLabError(f"reference[{c!r}]={ref!r}: not a level of {c} ({levels})")
        values = s.to_numpy()
        for lv in levels:
            if lv != ref:
                parts[f"{c}[{lv}]"] = (values == lv).astype(float)
    return pd.DataFrame(parts, index=df.index)


def _complete_cases(
    df: pd.DataFrame, columns: Sequence[str], what: str
) -> tuple[pd.DataFrame, int]:
    _require(df, list(columns), what)
    ok = df[list(columns)].notna().all(axis=1)
    return df.loc[ok.to_numpy()], int((~ok).sum())


def _ratio_table(
    terms: Sequence[str], est: np.ndarray, se: np.ndarray, level: float, name: str
) -> pd.DataFrame:
    z = sps.norm.ppf(0.5 + level / 2)
    est, se = np.asarray(est, float), np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        p = 2 * sps.norm.sf(np.abs(est / se))
        return pd.DataFrame(
            {
                "term": list(terms),
                "estimate": est,
                "std_error": se,
                name: np.exp(est),
                "lower": np.exp(est - z * se),
                "upper": np.exp(est + z * se),
                "p_value": p,
            }
        )


def odds_ratios(
    df: pd.DataFrame,
    outcome: str,
    covariates: Sequence[str],
    *,
    categorical: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Adjusted odds ratios from a logistic regression, as a tidy table.

    Records with a missing outcome or covariate are left out and counted in ``n_excluded``.

    Args:
        df: one row per subject.
        outcome: 0/1 or boolean column.
        covariates: exposure and adjustment columns (see :func:`model_matrix`).
        categorical, reference: as in :func:`model_matrix`.
        level: CI level.

    Returns:
        DataFrame ``[term, estimate, std_error, odds_ratio, lower, upper, p_value, n, events,
        n_excluded]`` (intercept omitted).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> d = pd.DataFrame({"x": rng.integers(0, 2, 4000)})
        >>> d["y"] = rng.random(4000) < np.where(d["x"] == 1, 0.5, 0.2)
        >>> t = odds_ratios(d, "y", ["x"])
        >>> bool(t.lower.iloc[0] < 4.0 < t.upper.iloc[0])
        True
    """
    import statsmodels.api as sm

    level = _check_level(level)
    data, excluded = _complete_cases(df, [outcome, *covariates], "odds_ratios input")
    y = data[outcome].astype(float).to_numpy()
    if not np.isin(y, (0.0, 1.0)).all():
        raise RegistryLabError(f"outcome {outcome!r}: values must be 0/1 or true/false")
    X = model_matrix(data, covariates, categorical, reference)
    X.insert(0, "const", 1.0)
    if y.sum() == 0 or y.sum() == len(y):
        raise RegistryLabError(f"outcome {outcome!r}: every record has the same value")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sm.GLM(y, X, family=sm.families.Binomial()).fit()
    t = _ratio_table(X.columns[1:], res.params.to_numpy()[1:], res.bse.to_numpy()[1:], level,
                     "odds_ratio")
    t["n"], t["events"], t["n_excluded"] = len(y), int(y.sum()), excluded
    return t


def hazard_ratios(
    df: pd.DataFrame,
    duration: str,
    event: str,
    covariates: Sequence[str],
    *,
    categorical: Sequence[str] | None = None,
    reference: Mapping[str, Any] | None = None,
    strata: str | Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Adjusted hazard ratios from a Cox model (lifelines, Efron ties), as a tidy table.

    Records with a missing duration, event or covariate are left out (``n_excluded``).

    Returns:
        DataFrame ``[term, estimate, std_error, hazard_ratio, lower, upper, p_value, n, events,
        n_excluded]``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> d = pd.DataFrame({"x": rng.integers(0, 2, 2000)})
        >>> d["t"] = rng.exponential(1 / np.where(d["x"] == 1, 2.0, 1.0))
        >>> d["dead"] = True
        >>> t = hazard_ratios(d, "t", "dead", ["x"])
        >>> bool(t.lower.iloc[0] < 2.0 < t.upper.iloc[0])
        True
    """
    from lifelines import CoxPHFitter

    level = _check_level(level)
    strata_cols = _cols(strata)
    data, excluded = _complete_cases(
        df, [duration, event, *covariates, *strata_cols], "hazard_ratios input"
    )
    X = model_matrix(data, covariates, categorical, reference)
    frame = X.copy()
    frame["_duration"] = data[duration].astype(float).to_numpy()
    frame["_event"] = data[event].astype(bool).to_numpy()
    if (frame["_duration"] < 0).any():
        i = frame.index[(frame["_duration"] < 0).to_numpy()][0]
        raise RegistryLabError(f"record at index {_py(i)!r}: {duration} is negative")
    for c in strata_cols:
        frame[f"_strata_{c}"] = data[c].to_numpy()
    if not frame["_event"].any():
        raise RegistryLabError(f"event {event!r}: no events, hazard ratios undefined")
    from lifelines.exceptions import ConvergenceError

    cph = CoxPHFitter(alpha=1 - level)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cph.fit(frame, duration_col="_duration", event_col="_event",
                    strata=[f"_strata_{c}" for c in strata_cols] or None)
    except ConvergenceError as exc:
        raise RegistryLabError(
            f"Cox model of {event!r} on {list(covariates)} did not converge (a covariate level "
            "with no events, or collinear covariates?)"
        ) from exc
    s = cph.summary
    t = _ratio_table(list(X.columns), s.loc[X.columns, "coef"].to_numpy(),
                     s.loc[X.columns, "se(coef)"].to_numpy(), level, "hazard_ratio")
    t["n"], t["events"], t["n_excluded"] = len(frame), int(frame["_event"].sum()), excluded
    return t


# --------------------------------------------------------------------------------------------
# stage shift
# --------------------------------------------------------------------------------------------
@dataclass
class StageShift:
    """Result of :func:`stage_shift` (three tidy tables)."""

    distribution: pd.DataFrame
    test: pd.DataFrame
    odds_ratios: pd.DataFrame

    @property
    def odds_ratio(self) -> pd.Series:
        """The exposure row of :attr:`odds_ratios` (the adjusted OR of late stage)."""
        return self.odds_ratios.iloc[0]


def stage_distribution(
    tumours: pd.DataFrame,
    by: str | Sequence[str] | None = PERIOD,
    *,
    stage: str = "stage",
    unknown: Sequence[Any] = ("U",),
) -> pd.DataFrame:
    """Counts and shares of each stage by group (e.g. period, or year for a figure).

    ``share`` is among all tumours of the group; ``share_known`` among those with a known
    stage (``nan`` for the unknown row).

    Example:
        >>> t = pd.DataFrame({"period": ["b", "b", "b", "p"], "stage": ["1", "4", "U", "4"]})
        >>> stage_distribution(t)
          period stage  n     share  share_known
        0      b     1  1  0.333333          0.5
        1      b     4  1  0.333333          0.5
        2      b     U  1  0.333333          NaN
        3      p     4  1  1.000000          1.0
    """
    by_cols = _cols(by)
    _require(tumours, [stage, *by_cols], "stage_distribution input")
    st = tumours[stage].astype("string").fillna("U")
    unknown_set = {str(u) for u in unknown}
    df = tumours[by_cols].copy()
    df["stage"] = st.to_numpy()
    counts = df.groupby([*by_cols, "stage"], observed=True, sort=True).size().rename("n")
    counts = counts.reset_index()
    if by_cols:
        tot = counts.groupby(by_cols, observed=True)["n"].transform("sum")
    else:
        tot = counts["n"].sum()
    is_known = ~counts["stage"].isin(unknown_set)
    known_n = counts["n"].where(is_known, 0)
    known_tot = (
        known_n.groupby([counts[c] for c in by_cols], observed=True).transform("sum")
        if by_cols else known_n.sum()
    )
    counts["share"] = counts["n"] / tot
    with np.errstate(divide="ignore", invalid="ignore"):
        counts["share_known"] = np.where(is_known, counts["n"] / known_tot, np.nan)
    counts["n"] = counts["n"].astype(np.int64)
    return counts


def stage_shift(
    tumours: pd.DataFrame,
    *,
    period: str = PERIOD,
    reference: Any = "baseline",
    stage: str = "stage",
    late: Sequence[Any] = ("3", "4"),
    early: Sequence[Any] = ("1", "2"),
    covariates: Sequence[str] = ("age_at_diagnosis", "sex", "site_icd10", "deprivation_quintile"),
    categorical: Sequence[str] = ("sex", "site_icd10", "deprivation_quintile"),
    level: float = 0.95,
) -> StageShift:
    """Stage shift between periods: distribution, chi-square test, adjusted OR of late stage.

    The chi-square test compares the known-stage distribution across periods (tumours of
    unknown stage left out). The odds ratio compares late (``late``) against early
    (``early``) stage for each period against ``reference``, adjusted by logistic regression
    for ``covariates`` that are present in the table.

    Returns:
        :class:`StageShift` with ``distribution`` (:func:`stage_distribution`), ``test``
        (one row: ``statistic, dof, p_value, n``) and ``odds_ratios`` (:func:`odds_ratios`,
        the period rows first).
    """
    _require(tumours, [period, stage], "stage_shift input")
    data = tumours.loc[tumours[period].notna().to_numpy()].copy()
    st = data[stage].astype("string")
    late_s, early_s = {str(v) for v in late}, {str(v) for v in early}
    dist = stage_distribution(data, period, stage=stage,
                              unknown=[v for v in pd.unique(st.fillna("U"))
                                       if v not in late_s | early_s])
    known = st.isin(late_s | early_s).fillna(False).to_numpy()
    table = pd.crosstab(data.loc[known, period], st[known])
    if table.shape[0] < 2 or table.shape[1] < 2:
        raise RegistryLabError("stage_shift: need at least two periods and two known stages")
    chi2, p, dof, _ = sps.chi2_contingency(table.to_numpy(), correction=False)
    test = pd.DataFrame({"statistic": [float(chi2)], "dof": [int(dof)], "p_value": [float(p)],
                         "n": [int(table.to_numpy().sum())]})
    sub = data.loc[known].copy()
    sub["_late"] = st[known].isin(late_s).astype(float).to_numpy()
    sub[period] = sub[period].astype(str)
    covs = [c for c in covariates if c in sub.columns and c != period]
    ors = odds_ratios(sub, "_late", [period, *covs],
                      categorical=[period, *[c for c in categorical if c in covs]],
                      reference={period: str(reference)}, level=level)
    return StageShift(dist, test, ors)


# --------------------------------------------------------------------------------------------
# treatment timing
# --------------------------------------------------------------------------------------------
def first_treatment(
    treatments: pd.DataFrame,
    modality: str | Sequence[str] | None = None,
    *,
    per: str = "tumour_id",
    date: str = "start_date",
) -> pd.DataFrame:
    """The first treatment (optionally of one modality) per tumour (or per ``per`` key).

    Rows whose ``per`` key is missing (treatments not matched to a tumour) cannot be placed
    and are left out; ties on the date keep the first row in table order.

    Example:
        >>> tx = pd.DataFrame({"tumour_id": [1, 1, 2], "modality": ["sact", "surgery", "sact"],
        ...                    "start_date": pd.to_datetime(["2020-05-01", "2020-04-01",
        ...                                                  "2020-06-01"])})
        >>> first_treatment(tx)[["tumour_id", "modality"]]
           tumour_id modality
        0          1  surgery
        1          2     sact
        >>> first_treatment(tx, "sact")["start_date"].dt.strftime("%m-%d").tolist()
        ['05-01', '06-01']
    """
    _require(treatments, [per, date], "first_treatment input")
    tx = treatments
    if modality is not None:
        _require(treatments, ["modality"], "first_treatment input")
        mods = {m.lower() for m in _cols(modality)}
        tx = tx.loc[tx["modality"].astype("string").str.lower().isin(mods).fillna(False).to_numpy()]
    tx = tx.loc[tx[per].notna().to_numpy()].copy()
    tx[date] = _as_dates(tx[date], date)
    tx = tx.sort_values([per, date], kind="stable")
    return tx.drop_duplicates(per, keep="first").reset_index(drop=True)


def median_iqr(
    df: pd.DataFrame, value: str, by: str | Sequence[str] | None = PERIOD
) -> pd.DataFrame:
    """Median and interquartile range of ``value`` by group (linear-interpolation quantiles).

    Example:
        >>> d = pd.DataFrame({"period": ["a"] * 4 + ["b"], "days": [1, 2, 3, 10, 7]})
        >>> median_iqr(d, "days")
          period  n  median    q1    q3
        0      a  4     2.5  1.75  4.75
        1      b  1     7.0  7.00  7.00
    """
    by_cols = _cols(by)
    _require(df, [value, *by_cols], "median_iqr input")
    v = pd.to_numeric(df[value], errors="coerce")
    work = df[by_cols].assign(_v=v.to_numpy())
    work = work.loc[work["_v"].notna().to_numpy()]
    if by_cols:
        g = work.groupby(by_cols, observed=True, sort=True)["_v"]
        out = pd.DataFrame({
            "n": g.size(),
            "median": g.median(),
            "q1": g.quantile(0.25),
            "q3": g.quantile(0.75),
        }).reset_index()
    else:
        x = work["_v"]
        out = pd.DataFrame({"n": [len(x)], "median": [x.median()],
                            "q1": [x.quantile(0.25)], "q3": [x.quantile(0.75)]})
    out["n"] = out["n"].astype(np.int64)
    return out


def time_to_treatment(
    tumours: pd.DataFrame,
    treatments: pd.DataFrame,
    by: str | Sequence[str] | None = PERIOD,
    *,
    modality: str | Sequence[str] | None = None,
    diagnosis_date: str = "diagnosis_date",
    start_date: str = "start_date",
    tumour_id: str = "tumour_id",
    window_before_days: int = 0,
    max_days: int | None = None,
) -> pd.DataFrame:
    """Days from diagnosis to first treatment by group: median and IQR.

    Treatments starting more than ``window_before_days`` before diagnosis, or more than
    ``max_days`` after, do not count as the first treatment of that tumour.

    Returns:
        DataFrame ``[*by, n_tumours, n_treated, median, q1, q3]`` (days).

    Example:
        >>> tu = pd.DataFrame({"tumour_id": [1, 2, 3], "period": ["b", "b", "p"],
        ...                    "diagnosis_date": pd.to_datetime(["2020-01-01"] * 3)})
        >>> tx = pd.DataFrame({"tumour_id": [1, 1, 3], "modality": ["surgery"] * 3,
        ...                    "start_date": pd.to_datetime(["2020-01-31", "2020-01-11",
        ...                                                  "2020-03-01"])})
        >>> time_to_treatment(tu, tx)
          period  n_tumours  n_treated  median    q1    q3
        0      b          2          1    10.0  10.0  10.0
        1      p          1          1    60.0  60.0  60.0
    """
    by_cols = _cols(by)
    _require(tumours, [tumour_id, diagnosis_date, *by_cols], "time_to_treatment tumours")
    _require(treatments, [tumour_id, start_date], "time_to_treatment treatments")
    tu = tumours[[tumour_id, diagnosis_date, *by_cols]].copy()
    tu[diagnosis_date] = _as_dates(tu[diagnosis_date], diagnosis_date)
    tx = treatments
    if modality is not None:
        _require(treatments, ["modality"], "time_to_treatment treatments")
        mods = {m.lower() for m in _cols(modality)}
        tx = tx.loc[tx["modality"].astype("string").str.lower().isin(mods).fillna(False).to_numpy()]
    tx = tx.loc[tx[tumour_id].notna().to_numpy(), [tumour_id, start_date]].copy()
    tx[start_date] = _as_dates(tx[start_date], start_date)
    m = tx.merge(tu[[tumour_id, diagnosis_date]], on=tumour_id, how="inner")
    days = (m[start_date] - m[diagnosis_date]).dt.days
    ok = days >= -int(window_before_days)
    if max_days is not None:
        ok &= days <= int(max_days)
    m = m.loc[ok.to_numpy()].assign(_days=days[ok].to_numpy())
    first = m.groupby(tumour_id, sort=False)["_days"].min()
    tu["_days"] = tu[tumour_id].map(first)
    summary = median_iqr(tu, "_days", by_cols)
    if by_cols:
        sizes = tu.groupby(by_cols, observed=True, sort=True).size().rename("n_tumours")
        out = sizes.reset_index().merge(summary, on=by_cols, how="left")
    else:
        out = summary.assign(n_tumours=len(tu))
    out = out.rename(columns={"n": "n_treated"})
    out["n_treated"] = out["n_treated"].fillna(0).astype(np.int64)
    return out[[*by_cols, "n_tumours", "n_treated", "median", "q1", "q3"]]


# --------------------------------------------------------------------------------------------
# outcomes
# --------------------------------------------------------------------------------------------
def _is_code(causes: pd.Series, codes: Sequence[str]) -> np.ndarray:
    norm = causes.astype("string").str.upper().str.replace(".", "", regex=False).str.strip()
    wanted = tuple(str(c).upper().replace(".", "") for c in codes)
    return norm.str.startswith(wanted).fillna(False).to_numpy(dtype=bool)


def covid_death_cohort(
    patients: pd.DataFrame,
    tumours: pd.DataFrame,
    treatments: pd.DataFrame,
    *,
    start: Any,
    end: Any,
    sact_lookback_days: int = 28,
    covid_codes: Sequence[str] = ("U07.1",),
) -> pd.DataFrame:
    """One row per cancer patient alive at ``start``: SACT exposure, covariates and outcome.

    Patients with a tumour diagnosed before ``start`` and not dead before it enter. They are
    ``on_sact`` if a SACT course started in the ``sact_lookback_days`` before ``start`` (a
    fixed baseline exposure, avoiding immortal-time bias). The outcome ``covid_death`` is a
    death in ``[start, end]`` with underlying cause in ``covid_codes``; ``time_days`` runs
    from ``start`` to death or ``end``. Age is taken at ``start`` (from ``birth_date`` when the
    patients table has it, else from the latest tumour's age at diagnosis); comorbidity is the
    highest ``comorbidity_score`` of the patient's tumours (missing if none is recorded).

    Returns:
        DataFrame ``[patient_id, age, sex, comorbidity_score, on_sact, covid_death,
        other_death, time_days]``.
    """
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    if t1 <= t0:
        raise RegistryLabError(f"end={end!r} must be after start={start!r}")
    _require(patients, ["patient_id", "sex", "death_date", "death_cause_icd10"],
             "covid_death_cohort patients")
    _require(tumours, ["patient_id", "diagnosis_date"], "covid_death_cohort tumours")
    _require(treatments, ["patient_id", "modality", "start_date"], "covid_death_cohort treatments")
    tu = tumours.copy()
    tu["diagnosis_date"] = _as_dates(tu["diagnosis_date"], "diagnosis_date")
    tu = tu.loc[(tu["diagnosis_date"] < t0).to_numpy()]
    pa = patients.copy()
    pa["death_date"] = _as_dates(pa["death_date"], "death_date", allow_missing=True)
    pa = pa.loc[pa["patient_id"].isin(tu["patient_id"]).to_numpy()]
    pa = pa.loc[(pa["death_date"].isna() | (pa["death_date"] >= t0)).to_numpy()]
    latest = tu.sort_values("diagnosis_date", kind="stable").drop_duplicates(
        "patient_id", keep="last"
    )
    if "birth_date" in pa.columns and pa["birth_date"].notna().all():
        bd = _as_dates(pa["birth_date"], "birth_date")
        age = (t0 - bd).dt.days / 365.25
    else:
        _require(tumours, ["age_at_diagnosis"], "covid_death_cohort tumours (no birth_date)")
        a = latest.set_index("patient_id")
        years = (t0 - a["diagnosis_date"]).dt.days / 365.25
        age = pa["patient_id"].map(a["age_at_diagnosis"].astype(float) + years)
    if "comorbidity_score" in tu.columns:
        comorb = pa["patient_id"].map(tu.groupby("patient_id")["comorbidity_score"].max())
    else:
        comorb = pd.Series(np.nan, index=pa.index)
    tx = treatments.loc[
        treatments["modality"].astype("string").str.lower().eq("sact").fillna(False).to_numpy()
    ]
    sd = _as_dates(tx["start_date"], "start_date")
    recent = (sd >= t0 - pd.Timedelta(days=int(sact_lookback_days))) & (sd < t0)
    on_sact = pa["patient_id"].isin(tx.loc[recent.to_numpy(), "patient_id"])
    died = pa["death_date"].notna() & (pa["death_date"] <= t1)
    covid = died & _is_code(pa["death_cause_icd10"], covid_codes)
    stop = pa["death_date"].where(died, t1)
    return pd.DataFrame(
        {
            "patient_id": pa["patient_id"].to_numpy(),
            "age": np.asarray(age, dtype=float),
            "sex": pa["sex"].to_numpy(),
            "comorbidity_score": np.asarray(comorb, dtype=float),
            "on_sact": on_sact.to_numpy(),
            "covid_death": covid.to_numpy(),
            "other_death": (died & ~covid).to_numpy(),
            "time_days": (stop - t0).dt.days.to_numpy().astype(float),
        }
    ).reset_index(drop=True)


def covid_death_risk(
    cohort: pd.DataFrame,
    *,
    method: str = "logistic",
    exposure: str | None = "on_sact",
    covariates: Sequence[str] = ("age", "sex", "comorbidity_score"),
    categorical: Sequence[str] = ("sex",),
    level: float = 0.95,
) -> pd.DataFrame:
    """Adjusted OR (``"logistic"``) or cause-specific HR (``"cox"``) of COVID-19 death.

    Takes the output of :func:`covid_death_cohort`. With ``exposure="on_sact"`` the first row
    is the effect of being on SACT; with ``exposure=None`` (e.g. on the SACT patients only) the
    table gives the risk factors. Deaths from other causes are censored in the Cox model.

    Example:
        >>> rng = np.random.default_rng(3)
        >>> c = pd.DataFrame({"age": rng.normal(70, 10, 5000), "sex": rng.integers(1, 3, 5000),
        ...                   "comorbidity_score": rng.integers(0, 4, 5000),
        ...                   "on_sact": rng.random(5000) < 0.2, "time_days": 365.0})
        >>> c["covid_death"] = rng.random(5000) < 0.05
        >>> covid_death_risk(c).term.tolist()
        ['on_sact', 'age', 'sex[2]', 'comorbidity_score']
    """
    if method not in ("logistic", "cox"):
        raise RegistryLabError(f"method={method!r}: must be 'logistic' or 'cox'")
    covs = ([exposure] if exposure else []) + [c for c in covariates if c != exposure]
    cats = [c for c in categorical if c in covs]
    if method == "logistic":
        return odds_ratios(cohort, "covid_death", covs, categorical=cats, level=level)
    return hazard_ratios(cohort, "time_days", "covid_death", covs, categorical=cats, level=level)


def survival_times(
    df: pd.DataFrame,
    *,
    start: str = "diagnosis_date",
    death: str = "death_date",
    censor_date: Any,
    horizon_days: int | None = None,
) -> pd.DataFrame:
    """Follow-up time (days) and death indicator from ``start`` to death, censoring or horizon.

    Follow-up stops at the earliest of death, ``censor_date`` (end of data) and
    ``start + horizon_days``; deaths after that stop are censored. Negative follow-up (death
    recorded before ``start``) raises.

    Example:
        >>> d = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2020-01-01", "2020-01-01"]),
        ...                   "death_date": pd.to_datetime(["2020-03-01", None])})
        >>> survival_times(d, censor_date="2020-12-31", horizon_days=365)
           time_days   dead
        0       60.0   True
        1      365.0  False
    """
    _require(df, [start, death], "survival_times input")
    s = _as_dates(df[start], start)
    d = _as_dates(df[death], death, allow_missing=True)
    c = pd.Timestamp(censor_date)
    stop = pd.Series(c, index=df.index)
    if horizon_days is not None:
        stop = np.minimum(stop, s + pd.Timedelta(days=int(horizon_days)))
    dead = d.notna() & (d <= stop)
    end = d.where(dead, stop)
    t = (end - s).dt.days.astype(float)
    if (t < 0).any():
        i = df.index[(t < 0).to_numpy()][0]
        raise RegistryLabError(
            f"record at index {_py(i)!r}: {death} or censor_date is before {start}"
        )
    return pd.DataFrame({"time_days": t.to_numpy(), "dead": dead.to_numpy()}, index=df.index)


def cohort_survival(
    tumours: pd.DataFrame,
    *,
    censor_date: Any,
    horizon_days: int = 365,
    period: str = PERIOD,
    reference: Any = "baseline",
    covariates: Sequence[str] = ("stage", "age_at_diagnosis", "sex"),
    categorical: Sequence[str] = ("stage", "sex"),
    strata: str | Sequence[str] | None = None,
    level: float = 0.95,
) -> pd.DataFrame:
    """Stage-adjusted hazard ratio of death for each period's diagnosis cohort vs ``reference``.

    Each tumour (with ``diagnosis_date``, ``death_date`` and the covariates joined on) is
    followed for ``horizon_days`` at most, and to ``censor_date`` at the latest, so cohorts
    diagnosed later are compared on the same horizon. Tumours outside every period are left
    out. Use ``strata="site_icd10"`` to let each site have its own baseline hazard.

    Returns:
        :func:`hazard_ratios` table, the period rows first.
    """
    _require(tumours, [period, "diagnosis_date", "death_date"], "cohort_survival input")
    data = tumours.loc[tumours[period].notna().to_numpy()].copy()
    st = survival_times(data, censor_date=censor_date, horizon_days=horizon_days)
    data["_t"] = st["time_days"].to_numpy()
    data["_dead"] = st["dead"].to_numpy()
    data[period] = data[period].astype(str)
    covs = [period, *[c for c in covariates if c != period]]
    cats = [period, *[c for c in categorical if c in covs]]
    return hazard_ratios(data, "_t", "_dead", covs, categorical=cats,
                         reference={period: str(reference)}, strata=strata, level=level)
