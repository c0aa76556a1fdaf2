"""Building blocks of a service-shock study of diagnoses (the COVID-19 impact study).

On top of :mod:`registry_lib.stats.counterfactual` and :mod:`registry_lib.stats.periods`, the
pieces a study of missing diagnoses needs, each usable by a second notebook:

- :func:`~registry_lib.stats.sites.site_range`, :func:`label_site_groups` — site groups written as ICD-10 codes or
  ranges (``"C50"``, ``"C18-C20"``) and the label of each tumour's group;
- :func:`study_tumours`, :func:`with_patient_id` — release tables joined for analysis (tumour
  plus the patient's sex, deprivation, region and death), keyed by ``patient_id``;
- :func:`diagnosis_deficits` — monthly diagnoses by site group against a counterfactual fitted
  on the baseline: observed/expected in one month and cumulative missing diagnoses over one or
  more windows, with CIs (:class:`DeficitAnalysis`); :func:`grouped_deficits` does the same by
  another grouping (route, stage, region, deprivation quintile);
- :meth:`DeficitAnalysis.family_verdict`, :func:`holm_adjust` — a study-level verdict over all
  the groups that controls the family-wise error (Holm over the groups' one-sided p-values);
- :func:`deficit_results` — those figures as a JSON-ready dict with observed counts protected
  (counts 1–7 suppressed, others rounded) and the estimates of a suppressed cell blanked;
- :func:`true_deficits`, :func:`recovered_vs_true` — the injected multipliers and deficits of a
  synthetic cohort (``truth/effects.json``) against the estimates: the truth check.

Window labels are ``"YYYY-MM..YYYY-MM"`` (both months included), as in ``effects.json``.

Example:
    >>> site_range("C18-C20")
    ['C18', 'C19', 'C20']
    >>> label_site_groups(pd.Series(["C19", "C50", "C61"]), ["C18-C20", "C50"]).tolist()
    ['C18-C20', 'C50', nan]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.stats.counterfactual import CounterfactualResults, fit_counterfactual, group_seed
from registry_lib.stats.periods import assign_period
from registry_lib.stats.sites import site_range
from registry_lib.stats.timeseries import monthly_counts, to_month

SITE_GROUP = "site_group"
_PATIENT_FIELDS = ("sex", "deprivation_quintile", "region", "death_date", "death_cause_icd10")


# --------------------------------------------------------------------------------------------
# site groups
# --------------------------------------------------------------------------------------------
def site_group_codes(sites: Sequence[str]) -> dict[str, list[str]]:
    """``{label: [codes]}`` for a list of site groups; a code in two groups raises.

    Example:
        >>> site_group_codes(["C18-C19", "C50"])
        {'C18-C19': ['C18', 'C19'], 'C50': ['C50']}
    """
    if isinstance(sites, str) or not len(sites):
        raise RegistryLabError(f"sites={sites!r}: give a list of site groups, e.g. [C18-C20, C50]")
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for spec in sites:
        label = str(spec).strip().upper()
        codes = site_range(label)
        for c in codes:
            if c in seen:
                raise RegistryLabError(f"sites: {c} is in both {seen[c]!r} and {label!r}")
            seen[c] = label
        out[label] = codes
    return out


def label_site_groups(codes: pd.Series, sites: Sequence[str]) -> pd.Series:
    """The site-group label of each ICD-10 code (missing when in no group).

    Example:
        >>> label_site_groups(pd.Series(["C20", "C34"]), ["C18-C20"]).tolist()
        ['C18-C20', nan]
    """
    lookup = {c: label for label, cs in site_group_codes(sites).items() for c in cs}
    s = codes.astype("string").str.strip().str.upper().str[:3]
    out = pd.Series(s.map(lookup).to_numpy(dtype=object, na_value=np.nan), index=codes.index)
    return out.rename(SITE_GROUP)


# --------------------------------------------------------------------------------------------
# analysis tables from a release
# --------------------------------------------------------------------------------------------
def with_patient_id(df: pd.DataFrame) -> pd.DataFrame:
    """A copy keyed by ``patient_id`` (a pseudonymised release calls it ``pseudo_id``).

    Example:
        >>> with_patient_id(pd.DataFrame({"pseudo_id": ["a"]})).columns.tolist()
        ['patient_id']
    """
    if "patient_id" in df.columns:
        return df.copy()
    if "pseudo_id" not in df.columns:
        raise RegistryLabError(f"table with columns {list(df.columns)}: no pseudo_id or patient_id")
    return df.rename(columns={"pseudo_id": "patient_id"})


def study_tumours(
    release: Mapping[str, pd.DataFrame],
    *,
    sites: Sequence[str] | None = None,
    periods: Mapping[str, Sequence[Any]] | None = None,
) -> pd.DataFrame:
    """Released tumours with their patient's sex, deprivation, region and death, for analysis.

    Args:
        release: ``{"tumour": ..., "patient": ...}`` as from ``load_release``.
        sites: site groups; adds ``site_group`` (missing outside every group).
        periods: ``{name: (start, end)}``; adds ``period`` by diagnosis date
            (:func:`~registry_lib.stats.periods.assign_period`).

    Returns:
        One row per tumour, keyed by ``tumour_id`` and ``patient_id``. A tumour whose patient
        is not in the patient table raises.

    Example:
        >>> rel = {"tumour": pd.DataFrame({"tumour_id": [1], "pseudo_id": ["p"],
        ...                                "site_icd10": ["C19"],
        ...                                "diagnosis_date": pd.to_datetime(["2020-04-02"])}),
        ...        "patient": pd.DataFrame({"pseudo_id": ["p"], "sex": [2]})}
        >>> study_tumours(rel, sites=["C18-C20"], periods={"pandemic": ("2020-03", "2020-12")}
        ...               )[["patient_id", "sex", "site_group", "period"]]
          patient_id  sex site_group    period
        0          p    2    C18-C20  pandemic
    """
    for name in ("tumour", "patient"):
        if name not in release:
            raise RegistryLabError(f"release: no {name!r} table (tables: {sorted(release)})")
    tu = with_patient_id(release["tumour"])
    pa = with_patient_id(release["patient"])
    if pa["patient_id"].duplicated().any():
        dup = pa.loc[pa["patient_id"].duplicated(), "patient_id"].iloc[0]
        raise RegistryLabError(f"release patient table: patient {dup!r} appears more than once")
    fields = [c for c in _PATIENT_FIELDS if c in pa.columns and c not in tu.columns]
    out = tu.merge(pa[["patient_id", *fields]], on="patient_id", how="left", indicator=True)
    orphan = out["_merge"] == "left_only"
    if orphan.any():
        row = out.loc[orphan].iloc[0]
        raise RegistryLabError(
            f"release tumour {row.get('tumour_id', '?')!r}: its patient {row['patient_id']!r} is "
            "not in the patient table"
        )
    out = out.drop(columns="_merge")
    if sites is not None:
        out[SITE_GROUP] = label_site_groups(out["site_icd10"], sites).to_numpy()
    if periods is not None:
        out["period"] = assign_period(out["diagnosis_date"], periods).to_numpy()
    return out


def drop_death_before_diagnosis(
    tumours: pd.DataFrame, *, diagnosis: str = "diagnosis_date", death: str = "death_date"
) -> tuple[pd.DataFrame, int]:
    """Tumours whose patient's recorded death is not before the diagnosis, and how many were not.

    A death before diagnosis is a linkage or recording error (a wrong link, a mistyped date);
    survival analysis cannot use the tumour, so it is left out and counted.

    Example:
        >>> t = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2020-01-10", "2020-02-01"]),
        ...                   "death_date": pd.to_datetime(["2020-01-01", None])})
        >>> kept, n = drop_death_before_diagnosis(t)
        >>> len(kept), n
        (1, 1)
    """
    for c in (diagnosis, death):
        if c not in tumours.columns:
            raise RegistryLabError(f"drop_death_before_diagnosis: no column {c!r}")
    bad = (pd.to_datetime(tumours[death]) < pd.to_datetime(tumours[diagnosis])).fillna(False)
    bad = bad.to_numpy(dtype=bool)
    return tumours.loc[~bad], int(bad.sum())


# --------------------------------------------------------------------------------------------
# deficits against a counterfactual
# --------------------------------------------------------------------------------------------
def window_label(window: Sequence[Any]) -> str:
    """``"YYYY-MM..YYYY-MM"`` for a (first month, last month) pair.

    Example:
        >>> window_label(("2020-03", "2020-12-31"))
        '2020-03..2020-12'
    """
    if isinstance(window, str) or len(window) != 2:
        raise RegistryLabError(f"window={window!r}: give a (first month, last month) pair")
    a, b = to_month(window[0], "window[0]"), to_month(window[1], "window[1]")
    if b < a:
        raise RegistryLabError(f"window={window!r}: the last month is before the first")
    return f"{a}..{b}"


@dataclass
class DeficitAnalysis:
    """Result of :func:`diagnosis_deficits` / :func:`grouped_deficits`.

    Attributes:
        group: the grouping column (``site_group``, ``route_to_diagnosis``, ...).
        counts: monthly counts (:func:`~registry_lib.stats.timeseries.monthly_counts`).
        fit: the counterfactual (:class:`~registry_lib.stats.counterfactual.CounterfactualResults`).
        ratio: one row per group: ``month, observed, expected, oe_ratio, oe_lower, oe_upper``.
        missing: one row per group × window: ``window, observed, expected, missing,
            missing_lower, missing_upper, missing_pct, pct_lower, pct_upper``.
        dropped: groups left out (too few diagnoses to model), with the reason.
        p_values: one row per group × quantity (``"O/E YYYY-MM"``, ``"missing <window>"``):
            ``p_value``, the one-sided Monte Carlo p-value of a deficit (O/E below 1, missing
            diagnoses above 0) from the same simulation draws as the CIs.

    Example:
        >>> rng = np.random.default_rng(2)
        >>> days = pd.date_range("2016-01-01", "2020-12-31", freq="D")
        >>> n = rng.poisson(np.where(days.to_period("M") == pd.Period("2020-04"), 2.0, 4.0))
        >>> t = pd.DataFrame({"diagnosis_date": np.repeat(days.values, n), "site_icd10": "C50"})
        >>> d = diagnosis_deficits(t, ["C50"], baseline=("2016-01", "2020-02"), end="2020-12",
        ...                        family="poisson", seasonality="none", n_sims=200, seed=1)
        >>> isinstance(d, DeficitAnalysis), d.group, len(d.ratio)
        (True, 'site_group', 1)
    """

    group: str
    counts: pd.DataFrame
    fit: CounterfactualResults
    ratio: pd.DataFrame
    missing: pd.DataFrame
    dropped: pd.DataFrame
    p_values: pd.DataFrame | None = None

    @property
    def windows(self) -> list[str]:
        return list(dict.fromkeys(self.missing["window"]))

    def summary(self, window: str | None = None) -> pd.DataFrame:
        """One row per group: the month's O/E and the cumulative missing in ``window``
        (default: the first window), with ``significant_deficit``."""
        w = window or self.windows[0]
        m = self.missing.loc[self.missing["window"] == w]
        if m.empty:
            raise RegistryLabError(f"window {window!r}: not analysed (windows: {self.windows})")
        r = self.ratio.rename(columns={"observed": "month_observed", "expected": "month_expected"})
        out = r.drop(columns="month").merge(
            m.rename(columns={"observed": "window_observed", "expected": "window_expected"}),
            on=self.group, how="left",
        )
        out["significant_deficit"] = significant_deficit(out)
        return out

    def estimates(self) -> pd.DataFrame:
        """Long table ``[group, quantity, observed, estimate, lower, upper]``: ``"O/E YYYY-MM"``
        and ``"missing <window>"`` rows (the input of :func:`recovered_vs_true`); ``observed``
        is the count each estimate rests on (protect it when publishing)."""
        month = str(to_month(self.ratio["month"].iloc[0]))
        a = self.ratio.assign(quantity=f"O/E {month}")[
            [self.group, "quantity", "observed", "oe_ratio", "oe_lower", "oe_upper"]]
        a.columns = [self.group, "quantity", "observed", "estimate", "lower", "upper"]
        b = self.missing.assign(quantity="missing " + self.missing["window"])[
            [self.group, "quantity", "observed", "missing", "missing_lower", "missing_upper"]]
        b.columns = a.columns
        out = pd.concat([a, b], ignore_index=True)
        out["observed"] = out["observed"].astype(np.int64)
        return out

    def family_verdict(self, alpha: float = 0.05, window: str | None = None) -> dict[str, Any]:
        """A study-level verdict on deficits that controls the family-wise error over the groups.

        Each group's p-value combines its two one-sided checks — the month's O/E below 1 and
        the missing diagnoses of ``window`` (default: the first) above 0 — by Bonferroni
        (``min(1, 2 × smaller p)``), the test behind the per-group rule of
        :func:`significant_deficit` (either 97.5% bound excluding no change). The groups'
        p-values are then Holm-adjusted (:func:`holm_adjust`): the chance that any group of a
        study without a deficit is declared significant is at most ``alpha``. With one group
        and ``alpha = 1 − level`` the verdict is the per-group rule.

        Returns:
            ``{"method", "alpha", "window", "groups": {group: {"p_month", "p_window",
            "p_group", "p_adjusted", "significant_deficit"}}, "any_significant_deficit"}``
            (p-values and flags only: no counts).
        """
        if not 0 < float(alpha) < 1:
            raise RegistryLabError(f"alpha={alpha!r}: must be between 0 and 1")
        if self.p_values is None:
            raise RegistryLabError("family_verdict: this analysis holds no p-values")
        w = window or self.windows[0]
        if w not in self.windows:
            raise RegistryLabError(f"window {window!r}: not analysed (windows: {self.windows})")
        month = str(to_month(self.ratio["month"].iloc[0]))
        p = self.p_values.pivot(index=self.group, columns="quantity", values="p_value")
        groups = [g for g in self.ratio[self.group] if g in p.index]
        p_month = p.loc[groups, f"O/E {month}"].to_numpy(dtype=float)
        p_window = p.loc[groups, f"missing {w}"].to_numpy(dtype=float)
        p_group = np.minimum(1.0, 2.0 * np.minimum(p_month, p_window))
        p_adj = holm_adjust(p_group)
        table = {
            str(g): {"p_month": float(a), "p_window": float(b), "p_group": float(c),
                     "p_adjusted": float(d), "significant_deficit": bool(d < alpha)}
            for g, a, b, c, d in zip(groups, p_month, p_window, p_group, p_adj, strict=True)
        }
        return {
            "method": (f"Holm over the {self.group} groups; a group's p-value is twice the "
                       f"smaller one-sided p of O/E {month} < 1 and missing {w} > 0"),
            "alpha": round(float(alpha), 12),
            "window": w,
            "groups": table,
            "any_significant_deficit": bool((p_adj < alpha).any()),
        }


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error control), in the input order.

    The i-th smallest of ``k`` p-values is multiplied by ``k − i + 1`` (i from 1), running
    maxima taken so the adjusted values keep the order of the raw ones, and capped at 1;
    reject where the adjusted p-value is below ``alpha``.

    Example:
        >>> holm_adjust([0.01, 0.04, 0.03, 0.5]).round(4).tolist()
        [0.04, 0.09, 0.09, 0.5]
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise RegistryLabError(f"holm_adjust: p-values must be a list of numbers in [0, 1]: {p}")
    k = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(p[order] * (k - np.arange(k)))
    out = np.empty(k)
    out[order] = np.minimum(stepped, 1.0)
    return out


def significant_deficit(table: pd.DataFrame) -> pd.Series:
    """Whether a row reports a significant deficit: the month's O/E CI lies below 1, or the
    cumulative-missing CI lies above 0 (columns ``oe_upper`` and/or ``missing_lower``).

    Example:
        >>> significant_deficit(pd.DataFrame({"oe_upper": [0.9, 1.2, 1.1],
        ...                                   "missing_lower": [-3.0, -1.0, 4.0]})).tolist()
        [True, False, True]
    """
    flag = pd.Series(False, index=table.index)
    if "oe_upper" in table.columns:
        flag |= (table["oe_upper"] < 1).fillna(False).astype(bool)
    if "missing_lower" in table.columns:
        flag |= (table["missing_lower"] > 0).fillna(False).astype(bool)
    if not {"oe_upper", "missing_lower"} & set(table.columns):
        raise RegistryLabError("significant_deficit: the table has no oe_upper or missing_lower")
    return flag.rename("significant_deficit")


def _deficits(
    events: pd.DataFrame,
    group: str,
    levels: list[Any],
    *,
    date: str,
    baseline: Sequence[Any],
    end: Any,
    month: Any,
    windows: Sequence[Sequence[Any]],
    n_sims: int,
    seed: int,
    level: float,
    dropped: pd.DataFrame,
    model_options: dict[str, Any],
) -> DeficitAnalysis:
    first = to_month(baseline[0], "baseline[0]")
    counts = monthly_counts(events, date, by=group, start=first, end=end, levels={group: levels})
    fit = fit_counterfactual(counts, baseline, by=group, n_sims=n_sims, level=level, seed=seed,
                             **model_options)
    ratio = fit.ratio(month)
    parts = []
    for w in windows:
        label = window_label(w)
        cm = fit.cumulative_missing(w[0], w[1]).drop(columns=["start", "end"])
        cm.insert(1, "window", label)
        parts.append(cm)
    missing = pd.concat(parts, ignore_index=True)
    p_values = _deficit_p_values(fit, group, month, windows, n_sims, seed)
    return DeficitAnalysis(group, counts, fit, ratio, missing, dropped, p_values)


def _deficit_p_values(
    fit: CounterfactualResults,
    group: str,
    month: Any,
    windows: Sequence[Sequence[Any]],
    n_sims: int,
    seed: int,
) -> pd.DataFrame:
    """One-sided Monte Carlo p-values of a deficit, from the draws behind the CIs.

    Each group's draws are re-made with the generator :func:`fit_counterfactual` used (the
    same seed and group key), so the p-values agree with the CIs: ``(1 + #draws showing no
    deficit) / (1 + draws)``, no deficit being an O/E draw of the upper limit ≥ 1 in ``month`` or a simulated
    counterfactual window total ≤ the observed one.
    """
    mo = to_month(month, "month")
    bounds = [(window_label(w), to_month(w[0]), to_month(w[1])) for w in windows]
    monthly = fit.monthly
    rows = []
    for key, model in fit.fits.items():   # loop over groups
        mask = np.ones(len(monthly), dtype=bool)
        for c, v in zip(fit.by, key, strict=True):
            mask &= (monthly[c] == v).to_numpy()
        sub = monthly.loc[mask]
        months = pd.PeriodIndex(sub["month"], freq="M")
        obs = sub["observed"].to_numpy(dtype=float)
        sim = model.simulate(months, sub["days_in_month"].to_numpy(), obs, int(n_sims),
                             group_seed(seed, key))
        at = months == mo
        no_deficit = (sim.ratio_high_draws[:, at] >= 1).sum()   # the draws of the CI's upper limit
        label = key[0] if len(key) == 1 else key
        rows.append((label, f"O/E {mo}", (1.0 + no_deficit) / (1.0 + n_sims)))
        for lab, a, b in bounds:
            w = (months >= a) & (months <= b)
            cf = sim.count_draws[:, w].sum(axis=1).astype(np.float32)
            no_deficit = (cf <= np.float32(obs[w].sum())).sum()
            rows.append((label, f"missing {lab}", (1.0 + no_deficit) / (1.0 + n_sims)))
    return pd.DataFrame(rows, columns=[group, "quantity", "p_value"])


def diagnosis_deficits(
    tumours: pd.DataFrame,
    sites: Sequence[str],
    *,
    baseline: Sequence[Any],
    end: Any,
    month: Any = "2020-04",
    windows: Sequence[Sequence[Any]] = (("2020-03", "2020-12"),),
    date: str = "diagnosis_date",
    n_sims: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    **model_options: Any,
) -> DeficitAnalysis:
    """Monthly diagnoses by site group against a counterfactual fitted on the baseline.

    Args:
        tumours: one row per tumour with ``site_icd10`` and ``date``.
        sites: site groups (``"C50"``, ``"C18-C20"``); tumours of other sites are left out.
        baseline: ``(first month, last month)`` the counterfactual is fitted on.
        end: last month of the series.
        month: the month whose observed/expected ratio is reported.
        windows: windows of cumulative missing diagnoses.
        n_sims, seed, level: simulation draws, their seed and the interval level.
        model_options: :class:`~registry_lib.stats.counterfactual.CounterfactualModel` options
            (``family``, ``seasonality``, ``cov_type``, ``method``, ``order``, ...).

    Example:
        >>> rng = np.random.default_rng(2)
        >>> days = pd.date_range("2016-01-01", "2020-12-31", freq="D")
        >>> n = rng.poisson(np.where(days.to_period("M") == pd.Period("2020-04"), 2.0, 4.0))
        >>> t = pd.DataFrame({"diagnosis_date": np.repeat(days.values, n), "site_icd10": "C50"})
        >>> d = diagnosis_deficits(t, ["C50"], baseline=("2016-01", "2020-02"), end="2020-12",
        ...                        family="poisson", seasonality="none", n_sims=500, seed=1)
        >>> row = d.ratio.iloc[0]
        >>> bool(row.oe_lower < 0.5 < row.oe_upper), bool(d.summary().significant_deficit[0])
        (True, True)
    """
    groups = site_group_codes(sites)
    if "site_icd10" not in tumours.columns or date not in tumours.columns:
        raise RegistryLabError(f"diagnosis_deficits: tumours need site_icd10 and {date}")
    label = label_site_groups(tumours["site_icd10"], list(groups))
    events = pd.DataFrame({date: tumours[date].to_numpy(), SITE_GROUP: label.to_numpy()})
    events = events.loc[events[SITE_GROUP].notna().to_numpy()]
    return _deficits(events, SITE_GROUP, list(groups), date=date, baseline=baseline, end=end,
                     month=month, windows=windows, n_sims=n_sims, seed=seed, level=level,
                     dropped=pd.DataFrame(columns=[SITE_GROUP, "reason"]),
                     model_options=model_options)


def grouped_deficits(
    events: pd.DataFrame,
    by: str,
    *,
    baseline: Sequence[Any],
    end: Any,
    month: Any = "2020-04",
    windows: Sequence[Sequence[Any]] = (("2020-03", "2020-12"),),
    date: str = "diagnosis_date",
    min_monthly_mean: float = 5.0,
    missing_label: str = "not recorded",
    n_sims: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    **model_options: Any,
) -> DeficitAnalysis:
    """:func:`diagnosis_deficits` by another grouping: route, stage, region, quintile, ...

    Missing values of ``by`` become ``missing_label``; numbers are labelled as text (quintile
    ``3.0`` as ``"3"``). Groups with fewer than ``min_monthly_mean`` events a month on average in
    the baseline are too sparse to model and are listed in ``dropped`` instead.

    Example:
        >>> rng = np.random.default_rng(4)
        >>> days = pd.date_range("2016-01-01", "2020-12-31", freq="D")
        >>> t = pd.DataFrame({"diagnosis_date": np.repeat(days.values, rng.poisson(6, len(days)))})
        >>> t["stage"] = rng.choice(["1", "4", None], len(t), p=[0.5, 0.4999, 0.0001])
        >>> d = grouped_deficits(t, "stage", baseline=("2016-01", "2020-02"), end="2020-12",
        ...                      family="poisson", seasonality="none", n_sims=200)
        >>> d.ratio["stage"].tolist(), d.dropped["stage"].tolist()
        (['1', '4'], ['not recorded'])
    """
    if by not in events.columns or date not in events.columns:
        raise RegistryLabError(f"grouped_deficits: the table needs {by!r} and {date!r}")
    values = events[by]
    if pd.api.types.is_float_dtype(values):
        whole = values.dropna()
        if (whole == np.round(whole)).all():
            values = values.astype("Int64")
    labels = values.astype("string").fillna(missing_label).astype(object)
    frame = pd.DataFrame({date: events[date].to_numpy(), by: labels.to_numpy()})
    first, last = to_month(baseline[0], "baseline[0]"), to_month(baseline[1], "baseline[1]")
    months = pd.PeriodIndex(pd.to_datetime(frame[date]), freq="M")
    in_base = (months >= first) & (months <= last)
    n_months = len(pd.period_range(first, last, freq="M"))
    mean = frame.loc[in_base].groupby(by).size().reindex(sorted(pd.unique(labels)), fill_value=0)
    mean = mean / n_months
    keep = sorted(mean.index[mean >= min_monthly_mean])
    dropped = pd.DataFrame({by: [g for g in mean.index if g not in keep]})
    dropped["reason"] = [
        f"{mean[g]:.1f} a month in the baseline (< {min_monthly_mean:g})" for g in dropped[by]
    ]
    if not keep:
        raise RegistryLabError(
            f"grouped_deficits by {by!r}: no group has {min_monthly_mean:g} events a month"
        )
    frame = frame.loc[frame[by].isin(keep).to_numpy()]
    return _deficits(frame, by, keep, date=date, baseline=baseline, end=end, month=month,
                     windows=windows, n_sims=n_sims, seed=seed, level=level, dropped=dropped,
                     model_options=model_options)


# --------------------------------------------------------------------------------------------
# COVID-19 death and SACT: monthly landmarks (time-varying exposure)
# --------------------------------------------------------------------------------------------
def covid_death_person_months(
    patients: pd.DataFrame,
    tumours: pd.DataFrame,
    treatments: pd.DataFrame,
    *,
    start: Any,
    end: Any,
    sact_lookback_days: int = 28,
    covid_codes: Sequence[str] = ("U07.1",),
) -> pd.DataFrame:
    """Person-months of cancer patients in ``[start, end]`` with SACT exposure updated monthly.

    At each landmark (``start``, then the first of every month up to ``end``) every patient
    with a tumour diagnosed before it and alive at it contributes one interval to the next
    landmark (or ``end``): ``on_sact`` if a SACT course started in the ``sact_lookback_days``
    before the landmark (known at the landmark, so no immortal time), ``age`` at the landmark
    (from the first tumour's age at diagnosis), ``comorbidity_score`` (highest recorded on the
    tumours diagnosed so far), ``covid_death`` when the death in the interval has an underlying
    cause in ``covid_codes`` (``U07.1`` also matches ``U071``). Times are days since ``start``
    (calendar time, so a Cox model's baseline hazard follows the epidemic waves).

    Patients newly diagnosed during the window enter at the next landmark; exposure is counted
    in every month, not once at the start — far more exposed person-time than a single fixed
    baseline.

    Returns:
        DataFrame ``[patient_id, landmark, t_start, t_stop, age, sex, comorbidity_score,
        on_sact, covid_death, other_death]``, one row per patient × month at risk.

    Example:
        >>> pa = pd.DataFrame({"patient_id": [1, 2], "sex": [1, 2],
        ...                    "death_date": pd.to_datetime(["2020-04-10", None]),
        ...                    "death_cause_icd10": ["U071", None]})
        >>> tu = pd.DataFrame({"patient_id": [1, 2], "age_at_diagnosis": [70, 60],
        ...                    "diagnosis_date": pd.to_datetime(["2019-01-01", "2020-03-15"]),
        ...                    "comorbidity_score": [1.0, 0.0]})
        >>> tx = pd.DataFrame({"patient_id": [1], "modality": ["sact"],
        ...                    "start_date": pd.to_datetime(["2020-03-20"])})
        >>> pm = covid_death_person_months(pa, tu, tx, start="2020-03-01", end="2020-05-31")
        >>> pm[["patient_id", "landmark", "t_start", "t_stop", "on_sact", "covid_death"]]
           patient_id   landmark  t_start  t_stop  on_sact  covid_death
        0           1 2020-03-01      0.0    31.0    False        False
        1           1 2020-04-01     31.0    40.0     True         True
        2           2 2020-04-01     31.0    61.0    False        False
        3           2 2020-05-01     61.0    92.0    False        False
    """
    t0, t1 = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    if t1 <= t0:
        raise RegistryLabError(f"end={end!r} must be after start={start!r}")
    for name, df, cols in (
        ("patients", patients, ["patient_id", "sex", "death_date", "death_cause_icd10"]),
        ("tumours", tumours, ["patient_id", "diagnosis_date", "age_at_diagnosis"]),
        ("treatments", treatments, ["patient_id", "modality", "start_date"]),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise RegistryLabError(f"covid_death_person_months {name}: missing column(s) {missing}")
    stop_all = t1 + pd.Timedelta(days=1)
    marks = pd.date_range(t0, t1, freq="MS")
    marks = marks.union(pd.DatetimeIndex([t0])).sort_values()
    nxt = list(marks[1:]) + [stop_all]

    tu = tumours[["patient_id", "diagnosis_date", "age_at_diagnosis"]].copy()
    tu["comorbidity_score"] = (tumours["comorbidity_score"] if "comorbidity_score" in tumours
                               else np.nan)
    tu["diagnosis_date"] = pd.to_datetime(tu["diagnosis_date"])
    tu = tu.loc[tu["diagnosis_date"].notna().to_numpy()].sort_values(
        ["patient_id", "diagnosis_date"], kind="stable")
    first = tu.drop_duplicates("patient_id", keep="first").set_index("patient_id")
    # birth approximated from the first tumour (age in completed years: + half a year)
    birth = first["diagnosis_date"] - pd.to_timedelta(
        (first["age_at_diagnosis"].astype(float) + 0.5) * 365.25, unit="D")

    pa = patients[["patient_id", "sex", "death_date", "death_cause_icd10"]].copy()
    pa = pa.loc[pa["patient_id"].isin(first.index).to_numpy()]
    pa["death_date"] = pd.to_datetime(pa["death_date"])
    codes = tuple(str(c).upper().replace(".", "") for c in covid_codes)
    cause = pa["death_cause_icd10"].astype("string").str.upper().str.replace(".", "", regex=False)
    pa["_covid"] = cause.str.strip().str.startswith(codes).fillna(False).to_numpy(dtype=bool)
    pa["_first_dx"] = pa["patient_id"].map(first["diagnosis_date"])
    pa["_birth"] = pa["patient_id"].map(birth)

    tx = treatments.loc[
        treatments["modality"].astype("string").str.lower().eq("sact").fillna(False).to_numpy()
        & treatments["patient_id"].notna().to_numpy(), ["patient_id", "start_date"]]
    tx_start = pd.to_datetime(tx["start_date"]).to_numpy(dtype="datetime64[ns]")

    # Every patient gets an integer code in patient_id order (vectorised look-ups below, and the
    # output's order patient_id, t_start by a stable sort of integers, not of 14 million ids).
    pa = pa.sort_values("patient_id", kind="stable")
    ids = pd.Index(pd.unique(pa["patient_id"]))
    code = ids.get_indexer(pa["patient_id"])
    n_codes = len(ids)
    death = pa["death_date"].to_numpy(dtype="datetime64[ns]")
    first_dx = pa["_first_dx"].to_numpy(dtype="datetime64[ns]")
    birth_pa = pd.Series(pa["_birth"].to_numpy(dtype="datetime64[ns]"))
    death_s = pd.Series(death)
    tx_code = ids.get_indexer(tx["patient_id"])

    # highest comorbidity score of the tumours diagnosed before a landmark: the running maximum
    # over each patient's tumours in date order (missing scores skipped), read at the patient's
    # last tumour before the landmark (a binary search on patient code x diagnosis day)
    tu_code = ids.get_indexer(tu["patient_id"])
    has = tu_code >= 0
    tu_code = tu_code[has]
    tu_day = tu["diagnosis_date"].to_numpy(dtype="datetime64[ns]")[has].astype("datetime64[D]").astype(np.int64)
    run = tu.loc[has, ["patient_id", "comorbidity_score"]]
    run_max = run.groupby("patient_id", sort=False)["comorbidity_score"].cummax()
    run_max = run_max.groupby(run["patient_id"].to_numpy(), sort=False).ffill().to_numpy(dtype=float)
    day0 = int(tu_day.min()) - 1 if len(tu_day) else 0
    span = (int(tu_day.max()) - day0 + 2) if len(tu_day) else 2
    span = max(span, int((np.datetime64(t1, "D").astype(np.int64)) - day0 + 2))
    tu_key = tu_code.astype(np.int64) * span + (tu_day - day0)

    cols: dict[str, list] = {k: [] for k in ("code", "landmark", "t_start", "t_stop", "age", "sex",
                                               "comorbidity_score", "on_sact", "covid_death", "other_death")}
    sex = pa["sex"].to_numpy()
    covid = pa["_covid"].to_numpy(dtype=bool)
    del tu, first, birth, pa, tx, run, has  # only the arrays above are needed from here on
    for mark, upto in zip(marks, nxt, strict=True):   # loop over monthly landmarks (vectorised within)
        m64 = np.datetime64(mark, "ns")
        alive = np.isnat(death) | (death >= m64)
        sel = np.flatnonzero((first_dx < m64) & alive)
        if sel.size == 0:
            continue
        c = code[sel]
        recent = (tx_start >= np.datetime64(mark - pd.Timedelta(days=int(sact_lookback_days)), "ns")) & (tx_start < m64)
        flags = np.zeros(n_codes, dtype=bool)
        flags[tx_code[recent & (tx_code >= 0)]] = True
        mark_day = int(np.datetime64(mark, "D").astype(np.int64))
        pos = np.searchsorted(tu_key, c.astype(np.int64) * span + (mark_day - day0), side="left") - 1
        valid = (pos >= 0) & (tu_code[np.maximum(pos, 0)] == c)
        comorb = np.where(valid, run_max[np.maximum(pos, 0)], np.nan) if len(tu_key) else np.full(sel.size, np.nan)
        d_at = death_s.iloc[sel].reset_index(drop=True)
        died = (d_at.notna() & (d_at < upto)).to_numpy()
        stop = d_at.where(died, upto)
        cols["code"].append(c)
        cols["landmark"].append(np.full(sel.size, m64))
        cols["t_start"].append(np.full(sel.size, float((mark - t0).days)))
        cols["t_stop"].append((stop - t0).dt.days.astype(float).to_numpy())
        cols["age"].append(((mark - birth_pa.iloc[sel]).dt.total_seconds() / 86400 / 365.25).to_numpy())
        cols["sex"].append(sex[sel])
        cols["comorbidity_score"].append(comorb.astype(float))
        cols["on_sact"].append(flags[c])
        cols["covid_death"].append(died & covid[sel])
        cols["other_death"].append(died & ~covid[sel])
    if not cols["code"]:
        raise RegistryLabError(f"covid_death_person_months: nobody at risk in {t0.date()}..{t1.date()}")
    row_code = np.concatenate(cols.pop("code"))
    order = np.argsort(row_code, kind="stable")
    out = {}
    for k in list(cols):  # one column at a time: the parts are freed as the output is made
        out[k] = np.concatenate(cols.pop(k))[order]
    # a death on the landmark day itself gives a zero-length interval: count it as half a day
    out["t_stop"] = np.maximum(out["t_stop"], out["t_start"] + 0.5)
    return pd.DataFrame({"patient_id": ids.to_numpy()[row_code[order]], **out}, copy=False)


def person_month_counts(person_months: pd.DataFrame) -> pd.DataFrame:
    """Person-months by SACT exposure and COVID-19 death, labelled for publication.

    Counted on the two flags and labelled afterwards (the national release has 14 million
    person-months: labelling them first would copy the table).

    Example:
        >>> pm = pd.DataFrame({"on_sact": [True, False, False], "covid_death": [False, False, True]})
        >>> person_month_counts(pm)
               on_sact        covid_death  count
        0  not on SACT     COVID-19 death      1
        1  not on SACT  no COVID-19 death      1
        2      on SACT  no COVID-19 death      1
    """
    counts = person_months.groupby(["on_sact", "covid_death"]).size().rename("count").reset_index()
    counts["on_sact"] = counts["on_sact"].map({True: "on SACT", False: "not on SACT"})
    counts["covid_death"] = counts["covid_death"].map({True: "COVID-19 death", False: "no COVID-19 death"})
    return counts.sort_values(["on_sact", "covid_death"], kind="stable").reset_index(drop=True)


COUNTING_COX_MIN_ROWS = 1_000_000  # person-months from which the Cox fit leaves lifelines (see below)


def covid_death_risk_tv(
    person_months: pd.DataFrame,
    *,
    method: str = "cox",
    covariates: Sequence[str] = ("on_sact", "age", "sex", "comorbidity_score"),
    categorical: Sequence[str] = ("sex",),
    level: float = 0.95,
) -> pd.DataFrame:
    """Adjusted risk of COVID-19 death from :func:`covid_death_person_months`.

    ``"cox"``: a Cox model with time-varying covariates (lifelines ``CoxTimeVaryingFitter``,
    counting-process intervals on calendar time; deaths from other causes censor) — hazard
    ratios. From :data:`COUNTING_COX_MIN_ROWS` person-months on (the national release has 8.5
    million) the same Efron partial likelihood is maximised by
    :func:`~registry_lib.stats.survival_cox_counting.cox_counting_process` instead (equal to
    lifelines to ~1e-10, in seconds rather than hours). ``"logistic"``: a pooled logistic regression over the person-months (a
    discrete-time hazard model; odds ratios close to hazard ratios for a rare outcome).

    Returns:
        Table ``[term, estimate, std_error, hazard_ratio | odds_ratio, lower, upper, p_value,
        n, events, n_excluded]`` (``n``: patients for Cox, person-months for logistic;
        ``n_excluded``: person-months with a missing covariate).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> pm = pd.DataFrame({"patient_id": np.arange(3000), "t_start": 0.0, "t_stop": 30.0,
        ...                    "on_sact": rng.random(3000) < 0.3, "age": rng.normal(70, 8, 3000),
        ...                    "sex": rng.integers(1, 3, 3000), "comorbidity_score": 1.0})
        >>> pm["covid_death"] = rng.random(3000) < np.where(pm["on_sact"], 0.1, 0.05)
        >>> t = covid_death_risk_tv(pm, method="logistic", covariates=["on_sact", "age", "sex"])
        >>> t["term"].tolist(), bool(t["odds_ratio"].iloc[0] > 1.3)
        (['on_sact', 'age', 'sex[2]'], True)
    """
    from registry_lib.stats.regression import _ratio_table, model_matrix, odds_ratios

    if method not in ("cox", "logistic"):
        raise RegistryLabError(f"method={method!r}: must be 'cox' or 'logistic'")
    covs = list(covariates)
    if method == "logistic":
        return odds_ratios(person_months, "covid_death", covs,
                           categorical=[c for c in categorical if c in covs], level=level)
    import warnings

    from lifelines import CoxTimeVaryingFitter

    from registry_lib.stats.survival_cox_counting import cox_counting_process

    need = ["patient_id", "t_start", "t_stop", "covid_death", *covs]
    missing = [c for c in need if c not in person_months.columns]
    if missing:
        raise RegistryLabError(f"covid_death_risk_tv: missing column(s) {missing}")
    ok = person_months[need].notna().all(axis=1).to_numpy()
    data = person_months.loc[ok]
    if not data["covid_death"].any():
        raise RegistryLabError("covid_death_risk_tv: no COVID-19 deaths, hazard ratios undefined")
    X = model_matrix(data, covs, [c for c in categorical if c in covs])
    event = data["covid_death"].astype(bool).to_numpy()
    if len(data) >= COUNTING_COX_MIN_ROWS:  # the same Efron partial likelihood, O(rows) per step
        fit = cox_counting_process(data["t_start"].to_numpy(), data["t_stop"].to_numpy(), event, X.to_numpy())
        coef, se = fit.params, fit.std_errors
    else:
        frame = X.assign(_id=data["patient_id"].to_numpy(), _start=data["t_start"].to_numpy(),
                         _stop=data["t_stop"].to_numpy(), _event=event)
        ctv = CoxTimeVaryingFitter(alpha=1 - level)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctv.fit(frame, id_col="_id", start_col="_start", stop_col="_stop", event_col="_event")
        s = ctv.summary
        coef, se = s.loc[X.columns, "coef"].to_numpy(), s.loc[X.columns, "se(coef)"].to_numpy()
    t = _ratio_table(list(X.columns), coef, se, level, "hazard_ratio")
    t["n"] = int(data["patient_id"].nunique())
    t["events"] = int(event.sum())
    t["n_excluded"] = int((~ok).sum())
    return t


# --------------------------------------------------------------------------------------------
# results with disclosure control
# --------------------------------------------------------------------------------------------
def _r(value: Any, digits: int) -> float | None:
    v = float(value)
    return None if not np.isfinite(v) else round(v, digits)


def deficit_results(
    analysis: DeficitAnalysis,
    *,
    threshold: int = 7,
    rounding: int = 5,
    digits: int = 4,
) -> dict[str, Any]:
    """The month's O/E and the cumulative missing diagnoses of each group, JSON-ready.

    Observed counts are protected (1..``threshold`` suppressed, others rounded to
    ``rounding``) and, where a count is suppressed, the figures derived from it are blanked
    (``None``), as :func:`registry_lib.release.publish_table` does for estimates. Expected
    counts are model outputs and are kept.

    Returns:
        ``{group: {"month": {...}, "cumulative_missing": {window: {...}},
        "significant_deficit": bool}}``.

    Example:
        >>> rng = np.random.default_rng(2)
        >>> days = pd.date_range("2016-01-01", "2020-12-31", freq="D")
        >>> n = rng.poisson(np.where(days.to_period("M") == pd.Period("2020-04"), 2.0, 4.0))
        >>> t = pd.DataFrame({"diagnosis_date": np.repeat(days.values, n), "site_icd10": "C50"})
        >>> d = diagnosis_deficits(t, ["C50"], baseline=("2016-01", "2020-02"), end="2020-12",
        ...                        family="poisson", seasonality="none", n_sims=200, seed=1)
        >>> r = deficit_results(d)
        >>> sorted(r), sorted(r["C50"])
        (['C50'], ['cumulative_missing', 'month', 'significant_deficit'])
    """
    from registry_lib.release import protect_counts

    out: dict[str, Any] = {}
    month = str(to_month(analysis.ratio["month"].iloc[0]))
    first_window = analysis.windows[0]
    for row in analysis.ratio.itertuples(index=False):
        g = getattr(row, analysis.group)
        obs = protect_counts([row.observed], threshold, rounding)[0]
        hidden = pd.isna(obs)
        entry: dict[str, Any] = {
            "month": {
                "month": month,
                "observed": None if hidden else int(obs),
                "expected": _r(row.expected, 2),
                "oe_ratio": None if hidden else _r(row.oe_ratio, digits),
                "oe_lower": None if hidden else _r(row.oe_lower, digits),
                "oe_upper": None if hidden else _r(row.oe_upper, digits),
            },
            "cumulative_missing": {},
        }
        for m in analysis.missing.loc[analysis.missing[analysis.group] == g].itertuples():
            wobs = protect_counts([m.observed], threshold, rounding)[0]
            wh = pd.isna(wobs)
            entry["cumulative_missing"][m.window] = {
                "observed": None if wh else int(wobs),
                "expected": _r(m.expected, 1),
                "missing": None if wh else _r(m.missing, 1),
                "missing_lower": None if wh else _r(m.missing_lower, 1),
                "missing_upper": None if wh else _r(m.missing_upper, 1),
                "missing_pct": None if wh else _r(m.missing_pct, 2),
                "pct_lower": None if wh else _r(m.pct_lower, 2),
                "pct_upper": None if wh else _r(m.pct_upper, 2),
            }
        # significance only from published figures (a suppressed cell says nothing)
        shown_month = entry["month"]["oe_upper"]
        shown_window = entry["cumulative_missing"].get(first_window, {}).get("missing_lower")
        entry["significant_deficit"] = bool(
            (shown_month is not None and shown_month < 1)
            or (shown_window is not None and shown_window > 0)
        )
        out[str(g)] = entry
    return out


def plot_observed_expected(
    analysis: DeficitAnalysis,
    group: Any,
    ax: Any = None,
    *,
    threshold: int = 7,
    rounding: int = 5,
) -> Any:
    """Observed (protected) against expected by month for one group, with the prediction band.

    Observed counts are drawn as published: 1..``threshold`` left out, others rounded to
    ``rounding``. The band is the counterfactual's prediction interval.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> days = pd.date_range("2017-01-01", "2020-12-31", freq="D")
        >>> t = pd.DataFrame({"diagnosis_date": np.repeat(days.values, 3), "site_icd10": "C50"})
        >>> d = diagnosis_deficits(t, ["C50"], baseline=("2017-01", "2019-12"), end="2020-12",
        ...                        family="poisson", seasonality="none", n_sims=200)
        >>> plot_observed_expected(d, "C50").get_title()
        'C50'
    """
    import matplotlib.pyplot as plt

    from registry_lib.release import protect_counts

    df = analysis.fit.monthly
    df = df.loc[(df[analysis.group] == group).to_numpy()]
    if df.empty:
        raise RegistryLabError(f"plot_observed_expected: no group {group!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.5))
    shown = protect_counts(df["observed"], threshold, rounding).astype("Float64")
    ax.fill_between(df["month"], df["pi_lower"], df["pi_upper"], color="tab:blue", alpha=0.2,
                    label=f"{int(round(analysis.fit.level * 100))}% prediction interval")
    ax.plot(df["month"], df["expected"], color="tab:blue", lw=1.2, label="expected (counterfactual)")
    ax.plot(df["month"], shown.to_numpy(dtype=float, na_value=np.nan), "o", ms=2.5,
            color="black", label=f"observed (rounded to {rounding})")
    ax.axvline((analysis.fit.baseline[1] + 1).to_timestamp(), color="grey", ls=":", lw=1)
    ax.set_title(str(group))
    ax.set_ylim(bottom=0)
    return ax


# --------------------------------------------------------------------------------------------
# truth check (synthetic cohorts only)
# --------------------------------------------------------------------------------------------
def true_deficits(
    effects: Mapping[str, Any],
    sites: Sequence[str],
    *,
    month: Any = "2020-04",
    windows: Sequence[Sequence[Any]] = (("2020-03", "2020-12"),),
) -> pd.DataFrame:
    """The injected diagnosis multiplier and true cumulative deficit of each site group.

    From a synthetic cohort's ``effects.json`` (``effects["covid"]["sites"][code]`` with
    ``multipliers`` and ``expected_without_covid`` by month): a group's multiplier in ``month``
    is ``Σ expected × multiplier / Σ expected`` over its codes, and its deficit in a window is
    ``Σ expected × (1 − multiplier)`` over codes and months (months without a multiplier count
    0). With the COVID-19 effect removed (``effects["covid"]`` null) the truth is 1 and 0.

    Returns:
        Long table ``[site_group, quantity, truth]`` matching :meth:`DeficitAnalysis.estimates`.

    Example:
        >>> eff = {"covid": {"sites": {
        ...     "C18": {"multipliers": {"2020-04": 0.5}, "expected_without_covid": {"2020-04": 30.0}},
        ...     "C19": {"multipliers": {"2020-04": 0.8}, "expected_without_covid": {"2020-04": 10.0}}}}}
        >>> true_deficits(eff, ["C18-C19"], windows=[("2020-03", "2020-12")])
          site_group                  quantity   truth
        0    C18-C19               O/E 2020-04   0.575
        1    C18-C19  missing 2020-03..2020-12  17.000
    """
    mo = str(to_month(month, "month"))
    labels = [window_label(w) for w in windows]
    bounds = [(str(to_month(w[0])), str(to_month(w[1]))) for w in windows]
    covid = effects.get("covid") if isinstance(effects, Mapping) else None
    rows = []
    for group, codes in site_group_codes(sites).items():
        if covid is None:
            rows.append((group, f"O/E {mo}", 1.0))
            rows += [(group, f"missing {lab}", 0.0) for lab in labels]
            continue
        per_site = covid.get("sites", {})
        absent = [c for c in codes if c not in per_site]
        if len(absent) == len(codes):
            raise RegistryLabError(f"effects.json: no COVID-19 truth for any site of {group!r}")
        num = den = 0.0
        deficit = np.zeros(len(windows))
        for c in codes:
            if c in absent:
                continue
            mult, exp = per_site[c]["multipliers"], per_site[c]["expected_without_covid"]
            if mo in exp:
                num += exp[mo] * mult[mo]
                den += exp[mo]
            for i, (a, b) in enumerate(bounds):
                deficit[i] += sum(exp[m] * (1 - mult[m]) for m in exp if a <= m <= b)
        rows.append((group, f"O/E {mo}", num / den if den > 0 else 1.0))
        rows += [(group, f"missing {lab}", float(d)) for lab, d in zip(labels, deficit, strict=True)]
    return pd.DataFrame(rows, columns=[SITE_GROUP, "quantity", "truth"])


def recovered_vs_true(
    estimates: pd.DataFrame,
    truth: pd.DataFrame,
    *,
    on: Sequence[str] = (SITE_GROUP, "quantity"),
) -> pd.DataFrame:
    """Estimates with CIs against the truth: ``covered`` when ``lower <= truth <= upper``.

    Example:
        >>> est = pd.DataFrame({"site_group": ["C50"], "quantity": ["O/E 2020-04"],
        ...                     "observed": [30], "estimate": [0.5], "lower": [0.4], "upper": [0.62]})
        >>> tru = pd.DataFrame({"site_group": ["C50"], "quantity": ["O/E 2020-04"], "truth": [0.45]})
        >>> recovered_vs_true(est, tru)[["estimate", "truth", "covered"]]
           estimate  truth  covered
        0       0.5   0.45     True
    """
    keys = list(on)
    out = estimates.merge(truth, on=keys, how="inner", validate="one_to_one")
    if len(out) < len(estimates):
        missing = estimates.merge(truth, on=keys, how="left", indicator=True)
        row = missing.loc[missing["_merge"] == "left_only", keys].iloc[0].tolist()
        raise RegistryLabError(f"recovered_vs_true: no truth for {row}")
    out["covered"] = (out["lower"] <= out["truth"]) & (out["truth"] <= out["upper"])
    return out


def release_coverage(
    released: pd.DataFrame,
    true_tumours: pd.DataFrame,
    sites: Sequence[str],
    *,
    window: Sequence[Any],
    date: str = "diagnosis_date",
) -> pd.Series:
    """Share of the true tumours of each site group that a release holds (in ``window``).

    A release leaves out patients on the national data opt-out (and linkage may lose or merge
    a few), so counts from it — and the missing diagnoses — are this share of the true ones;
    multiply a true deficit by it to compare like with like. Truth-check use only.

    Example:
        >>> t = pd.DataFrame({"site_icd10": ["C50"] * 4,
        ...                   "diagnosis_date": pd.to_datetime(["2019-01-05"] * 4)})
        >>> release_coverage(t.iloc[:3], t, ["C50"], window=("2019-01", "2019-12")).tolist()
        [0.75]
    """
    first, last = to_month(window[0]), to_month(window[1])

    def count(df: pd.DataFrame) -> pd.Series:
        m = pd.PeriodIndex(pd.to_datetime(df[date]), freq="M")
        inside = ((m >= first) & (m <= last))
        lab = label_site_groups(df["site_icd10"], sites)[inside]
        return lab.value_counts().reindex(list(site_group_codes(sites)), fill_value=0)

    rel, tru = count(released), count(true_tumours)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rel / tru.where(tru > 0)).rename("release_coverage")
