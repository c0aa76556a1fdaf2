"""Comparative effectiveness with Cox models: naive, covariate-adjusted and IPTW.

One call fits the three models a registry study reports for a treatment contrast:

- **naive** — Cox PH on the treatment indicator alone;
- **adjusted** — Cox PH on treatment plus the adjustment covariates (a conditional HR);
- **IPTW** — Cox PH on treatment alone, weighted by inverse-probability-of-treatment weights
  from a logistic propensity model (statsmodels), stabilised (numerator = marginal
  probability of the arm received) and truncated at configurable percentiles, with robust
  (sandwich) standard errors (a marginal HR). The robust variance ignores the estimation of
  the propensity score, which makes it conservative for this estimand.

Balance is reported as standardised mean differences (SMD) of every covariate (each level of
a categorical covariate) before and after weighting: ``(m1 - m0) / sqrt((v1 + v0) / 2)``
with weighted means and variances after weighting (Austin & Stuart 2015); |SMD| < 0.1 is the
usual threshold.

Categorical covariates (string, category or any column named in ``categorical``) are
one-hot coded with the first level as reference; numeric covariates enter linearly.

References:
    Cole SR, Hernán MA (2008). Constructing inverse probability weights for marginal
    structural models. Am J Epidemiol 168:656-664 (stabilised and truncated weights).
    Austin PC, Stuart EA (2015). Moving towards best practice when using inverse probability
    of treatment weighting (IPTW) using the propensity score. Stat Med 34:3661-3679.

Example:
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> age = rng.normal(65, 10, 400)
    >>> treated = rng.random(400) < 1 / (1 + np.exp((age - 65) / 10))
    >>> time = rng.exponential(1 / (0.1 * np.exp(0.03 * (age - 65)) * np.where(treated, 0.7, 1)))
    >>> df = pd.DataFrame({"years": np.minimum(time, 5), "dead": time < 5,
    ...                    "chemo": treated, "age": age})
    >>> hr = cox_three_ways(df, "years", "dead", "chemo", ["age"])
    >>> list(hr["model"])
    ['naive', 'adjusted', 'iptw']
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError

HR_COLUMNS = ["model", "hr", "lower", "upper", "log_hr", "se", "p_value", "n", "events",
              "robust_se", "description"]

_DESCRIPTIONS = {
    "naive": "Cox PH, treatment only",
    "adjusted": "Cox PH, treatment + covariates",
    "iptw": "Cox PH, treatment only, stabilised truncated IPT weights, robust SE",
}


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RegistryLabError(f"{what}: column(s) {missing} not found in the data")


def design_matrix(
    df: pd.DataFrame,
    covariates: Sequence[str],
    categorical: Sequence[str] | None = None,
    *,
    drop_first: bool = True,
) -> pd.DataFrame:
    """Numeric design matrix for a list of covariates (categorical ones one-hot coded).

    A covariate is categorical when it is listed in ``categorical`` or its dtype is not
    numeric or boolean (string, object, category); the first level (sorted) is the reference when
    ``drop_first``. Dummy columns are named ``"<covariate>=<level>"``. Missing values are an
    error (name the covariate), never silently dropped.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"age": [60, 70, 80], "stage": ["2", "3", "3"]})
        >>> design_matrix(df, ["age", "stage"]).columns.tolist()
        ['age', 'stage=3']
    """
    covariates = list(covariates)
    _require(df, covariates, "covariates")
    categorical = set(categorical or ())
    parts = []
    for c in covariates:
        col = df[c]
        if col.isna().any():
            raise RegistryLabError(
                f"covariate {c!r} has {int(col.isna().sum())} missing value(s): impute or "
                "restrict the cohort before fitting"
            )
        is_cat = c in categorical or not (
            pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
        )
        if is_cat:
            levels = sorted(pd.unique(col.astype(str)))
            keep = levels[1:] if drop_first else levels
            s = col.astype(str)
            for lev in keep:
                parts.append(pd.Series((s == lev).astype(float).to_numpy(), index=df.index,
                                       name=f"{c}={lev}"))
        else:
            parts.append(pd.Series(col.astype(float).to_numpy(), index=df.index, name=c))
    if not parts:
        return pd.DataFrame(index=df.index)
    return pd.concat(parts, axis=1)


def _treatment(df: pd.DataFrame, treatment: str) -> np.ndarray:
    a = df[treatment]
    if a.isna().any():
        raise RegistryLabError(f"treatment column {treatment!r} has missing values")
    vals = a.astype(float).to_numpy()
    if not np.isin(vals, (0.0, 1.0)).all():
        raise RegistryLabError(
            f"treatment column {treatment!r} must be 0/1 or boolean (found {sorted(set(vals))[:5]})"
        )
    if vals.min() == vals.max():
        raise RegistryLabError(f"treatment column {treatment!r}: every patient is in one arm")
    return vals


def propensity_scores(
    df: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    categorical: Sequence[str] | None = None,
) -> pd.Series:
    """Propensity of treatment from a main-effects logistic regression (statsmodels GLM).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"a": [0, 1, 0, 1, 1, 0], "x": [1, 2, 3, 4, 1, 2]})
        >>> ps = propensity_scores(df, "a", ["x"])
        >>> bool(((ps > 0) & (ps < 1)).all())
        True
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    a = _treatment(df, treatment)
    x = design_matrix(df, covariates, categorical)
    x = x.loc[:, x.std(ddof=0) > 0] if x.shape[1] else x
    exog = sm.add_constant(x.to_numpy(dtype=float), has_constant="add")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        try:
            fit = sm.GLM(a, exog, family=sm.families.Binomial()).fit()
        except (PerfectSeparationWarning, np.linalg.LinAlgError) as exc:
            raise RegistryLabError(
                f"propensity model for {treatment!r} on {list(covariates)}: the covariates "
                "separate the arms perfectly (no overlap); restrict the cohort or drop a covariate"
            ) from exc
    return pd.Series(np.asarray(fit.fittedvalues, dtype=float), index=df.index, name="propensity")


def iptw_weights(
    treatment: np.ndarray | pd.Series,
    propensity: np.ndarray | pd.Series,
    *,
    stabilised: bool = True,
    trim: tuple[float, float] | None = (1.0, 99.0),
) -> np.ndarray:
    """Inverse-probability-of-treatment weights, optionally stabilised and truncated.

    Unstabilised: ``A/ps + (1-A)/(1-ps)``. Stabilised: the numerator is the marginal share of
    the arm received (``P(A=1)`` or ``P(A=0)``), so weights average about 1. ``trim`` =
    (lower, upper) percentiles at which the weights are truncated (values beyond are set to
    the percentile; Cole & Hernán 2008); ``None`` leaves them as they are.

    Example:
        >>> import numpy as np
        >>> iptw_weights(np.array([1, 0]), np.array([0.5, 0.5]), trim=None).tolist()
        [1.0, 1.0]
    """
    a = np.asarray(treatment, dtype=float)
    ps = np.asarray(propensity, dtype=float)
    if np.any((ps <= 0) | (ps >= 1) | ~np.isfinite(ps)):
        raise RegistryLabError("propensity scores must lie strictly between 0 and 1")
    if stabilised:
        p1 = a.mean()
        w = np.where(a == 1, p1 / ps, (1 - p1) / (1 - ps))
    else:
        w = np.where(a == 1, 1 / ps, 1 / (1 - ps))
    if trim is not None:
        lo, hi = trim
        if not 0 <= lo < hi <= 100:
            raise RegistryLabError(f"trim={trim!r}: percentiles must satisfy 0 <= lower < upper <= 100")
        qlo, qhi = np.percentile(w, [lo, hi])
        w = np.clip(w, qlo, qhi)
    return w


def _wmean_var(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = (w[:, None] * x).sum(0) / w.sum()
    v = (w[:, None] * (x - m) ** 2).sum(0) / w.sum()
    return m, v


def balance_table(
    df: pd.DataFrame,
    treatment: str,
    covariates: Sequence[str],
    weights: np.ndarray | pd.Series | None = None,
    categorical: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Standardised mean differences of covariates between arms, before and after weighting.

    Every level of a categorical covariate gets its own row. SMD =
    ``(mean_treated - mean_control) / sqrt((var_treated + var_control) / 2)``; after weighting
    the means and variances are weighted.

    Returns:
        DataFrame: ``covariate, mean_treated, mean_control, smd, mean_treated_weighted,
        mean_control_weighted, smd_weighted`` (the weighted columns only with ``weights``).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"a": [1, 1, 0, 0], "x": [1.0, 3.0, 0.0, 2.0]})
        >>> float(balance_table(df, "a", ["x"])["smd"].iloc[0])
        1.0
    """
    a = _treatment(df, treatment)
    x = design_matrix(df, covariates, categorical, drop_first=False)
    names = list(x.columns)
    xv = x.to_numpy(dtype=float)
    t, c = a == 1, a == 0

    def smd(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m1, v1 = _wmean_var(xv[t], w[t])
        m0, v0 = _wmean_var(xv[c], w[c])
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where((v1 + v0) > 0, (m1 - m0) / np.sqrt((v1 + v0) / 2), 0.0)
        return m1, m0, d

    m1, m0, d = smd(np.ones(len(a)))
    out = pd.DataFrame({"covariate": names, "mean_treated": m1, "mean_control": m0, "smd": d})
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        if w.shape != a.shape:
            raise RegistryLabError("weights must have one value per row of the data")
        m1w, m0w, dw = smd(w)
        out["mean_treated_weighted"] = m1w
        out["mean_control_weighted"] = m0w
        out["smd_weighted"] = dw
    return out


def _fit_cox(model: str, fit):
    from lifelines.exceptions import ConvergenceError

    try:
        return fit()
    except ConvergenceError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise RegistryLabError(
            f"{model} Cox model did not converge ({first}); check for an arm without events "
            "or a covariate that separates the arms"
        ) from exc


def _cox_row(model: str, cph, term: str, n: int, events: int, robust: bool,
             level: float) -> dict:
    z = float(sps.norm.ppf(0.5 + level / 2))
    b = float(cph.params_[term])
    se = float(cph.standard_errors_[term])
    return {
        "model": model, "hr": float(np.exp(b)), "lower": float(np.exp(b - z * se)),
        "upper": float(np.exp(b + z * se)), "log_hr": b, "se": se,
        "p_value": float(2 * sps.norm.sf(abs(b / se))), "n": n, "events": events,
        "robust_se": robust, "description": _DESCRIPTIONS.get(model, model),
    }


@dataclass
class TreatmentEffectCox:
    """Naive, covariate-adjusted and IPTW Cox models of a treatment contrast.

    Configure with the covariates and weighting options, then ``fit`` on a one-row-per-patient
    cohort (e.g. the landmark cohort of a :class:`~registry_lib.stats.survival.TargetTrial`).

    Attributes set by ``fit``: ``hazard_ratios_`` (tidy HR table, one row per model),
    ``balance_`` (SMD before/after weighting), ``data_`` (the cohort with ``propensity`` and
    ``iptw`` columns), ``models_`` (the fitted lifelines ``CoxPHFitter`` objects).

    Example:
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=300); a = rng.random(300) < 1 / (1 + np.exp(-x))
        >>> t = rng.exponential(1 / np.exp(0.5 * x - 0.3 * a))
        >>> df = pd.DataFrame({"t": t, "d": 1, "a": a, "x": x})
        >>> fit = TreatmentEffectCox(["x"]).fit(df, "t", "d", "a")
        >>> fit.hazard_ratios_["model"].tolist()
        ['naive', 'adjusted', 'iptw']
    """

    covariates: Sequence[str]
    categorical: Sequence[str] | None = None
    trim: tuple[float, float] | None = (1.0, 99.0)
    stabilised: bool = True
    level: float = 0.95
    hazard_ratios_: pd.DataFrame = field(init=False, repr=False)
    balance_: pd.DataFrame = field(init=False, repr=False)
    data_: pd.DataFrame = field(init=False, repr=False)
    models_: dict = field(init=False, repr=False)
    treatment_col_: str = field(init=False, repr=False)

    def fit(self, df: pd.DataFrame, duration_col: str, event_col: str,
            treatment_col: str) -> TreatmentEffectCox:
        """Fit the three Cox models and the balance table; returns ``self``."""
        from lifelines import CoxPHFitter

        if not 0 < self.level < 1:
            raise RegistryLabError(f"level={self.level!r} must lie between 0 and 1")
        covs = list(self.covariates)
        _require(df, [duration_col, event_col, treatment_col, *covs], "TreatmentEffectCox.fit")
        data = df.copy()
        a = _treatment(data, treatment_col)
        t = pd.to_numeric(data[duration_col], errors="coerce").to_numpy(dtype=float)
        if np.any(~np.isfinite(t) | (t < 0)):
            i = int(np.flatnonzero(~np.isfinite(t) | (t < 0))[0])
            raise RegistryLabError(
                f"{duration_col}: row {data.index[i]!r} has duration {data[duration_col].iloc[i]!r};"
                " durations must be finite and >= 0"
            )
        e = data[event_col].astype(float).to_numpy()
        n, events = len(data), int(e.sum())
        for arm, name in ((1.0, "treated"), (0.0, "untreated")):
            if e[a == arm].sum() == 0:
                raise RegistryLabError(
                    f"the {name} arm has no events ({event_col}): the hazard ratio cannot be "
                    "estimated"
                )
        x = design_matrix(data, covs, self.categorical)
        x = x.loc[:, x.std(ddof=0) > 0]
        base = pd.DataFrame({"_t": t, "_e": e, "_a": a}, index=data.index)
        alpha = 1 - self.level
        rows, models = [], {}

        naive = _fit_cox("naive", lambda: CoxPHFitter(alpha=alpha).fit(base, "_t", "_e"))
        models["naive"] = naive
        rows.append(_cox_row("naive", naive, "_a", n, events, False, self.level))

        adj_df = pd.concat([base, x.add_prefix("x:")], axis=1)
        adjusted = _fit_cox("adjusted", lambda: CoxPHFitter(alpha=alpha).fit(adj_df, "_t", "_e"))
        models["adjusted"] = adjusted
        rows.append(_cox_row("adjusted", adjusted, "_a", n, events, False, self.level))

        ps = propensity_scores(data, treatment_col, covs, self.categorical)
        w = iptw_weights(a, ps, stabilised=self.stabilised, trim=self.trim)
        wdf = base.assign(_w=w)
        iptw = _fit_cox("iptw", lambda: CoxPHFitter(alpha=alpha).fit(
            wdf, "_t", "_e", weights_col="_w", robust=True))
        models["iptw"] = iptw
        rows.append(_cox_row("iptw", iptw, "_a", n, events, True, self.level))

        self.hazard_ratios_ = pd.DataFrame(rows, columns=HR_COLUMNS)
        self.balance_ = balance_table(data, treatment_col, covs, w, self.categorical)
        data["propensity"] = ps.to_numpy()
        data["iptw"] = w
        self.data_ = data
        self.models_ = models
        self.treatment_col_ = treatment_col
        return self

    def summary(self) -> pd.DataFrame:
        """The HR table rounded for display."""
        cols = ["model", "hr", "lower", "upper", "p_value", "n", "events"]
        return self.hazard_ratios_[cols].round({"hr": 3, "lower": 3, "upper": 3, "p_value": 4})

    def effective_sample_size(self) -> pd.Series:
        """Kish effective sample size of each weighted arm: ``(sum w)^2 / sum w^2``."""
        w = self.data_["iptw"].to_numpy()
        treated = self.data_[self.treatment_col_].astype(float).to_numpy() == 1
        out = {}
        for name, m in (("treated", treated), ("control", ~treated)):
            out[name] = float(w[m].sum() ** 2 / (w[m] ** 2).sum())
        return pd.Series(out, name="effective_n")

    def plot_balance(self, ax=None, threshold: float = 0.1):
        """Love plot: |SMD| of each covariate before and after weighting."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 0.3 * len(self.balance_) + 1.5))
        b = self.balance_.iloc[::-1]
        y = np.arange(len(b))
        ax.scatter(b["smd"].abs(), y, label="unweighted", marker="o")
        ax.scatter(b["smd_weighted"].abs(), y, label="IPT-weighted", marker="x")
        ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(y, b["covariate"])
        ax.set_xlabel("|standardised mean difference|")
        ax.legend(loc="lower right")
        return ax


def cox_three_ways(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    treatment_col: str,
    covariates: Sequence[str],
    *,
    categorical: Sequence[str] | None = None,
    trim: tuple[float, float] | None = (1.0, 99.0),
    stabilised: bool = True,
    level: float = 0.95,
) -> pd.DataFrame:
    """HRs with CIs of the treatment from naive, adjusted and IPTW Cox models (one table).

    Shortcut for ``TreatmentEffectCox(...).fit(...).hazard_ratios_``; see that class.

    Example:
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(2)
        >>> x = rng.normal(size=200); a = (rng.random(200) < 0.5)
        >>> df = pd.DataFrame({"t": rng.exponential(1, 200), "d": 1, "a": a, "x": x})
        >>> cox_three_ways(df, "t", "d", "a", ["x"]).columns[:4].tolist()
        ['model', 'hr', 'lower', 'upper']
    """
    return TreatmentEffectCox(
        covariates, categorical=categorical, trim=trim, stabilised=stabilised, level=level
    ).fit(df, duration_col, event_col, treatment_col).hazard_ratios_
