"""The COVID-19 impact study's care-change tables on registry data.

Helpers of :mod:`registry_lib.studies.covid_impact` that know the registry's tables and
columns (``route_to_diagnosis``, ``stage``, ``modality``, ``death_cause_icd10``...), built on
the generic methods of :mod:`registry_lib.stats.periods` and
:mod:`registry_lib.stats.regression`:

- :func:`emergency_share` (route to diagnosis) and :func:`fractionation_share` (e.g. breast
  radiotherapy in 5 fractions) — specialisations of
  :func:`~registry_lib.stats.periods.share_by_period`;
- :func:`stage_shift` — stage distribution by period, chi-square test and the adjusted odds
  ratio of late stage (3–4 against 1–2) by logistic regression;
- :func:`first_treatment`, :func:`time_to_treatment` — first treatment per tumour and the
  time from diagnosis to it (median and IQR) by period;
- :func:`covid_death_cohort`, :func:`covid_death_risk` — risk of COVID-19 death (ICD-10 U07.1)
  for patients on SACT, adjusted for age, sex and comorbidity;
- :func:`cohort_survival` — stage-adjusted survival of the cohorts diagnosed in each period
  (Cox), on a common follow-up horizon.

Monthly volumes (SACT starts, operations) against a counterfactual reuse
:mod:`registry_lib.stats.counterfactual`: ``monthly_counts(first_treatment(tx, "sact"),
"start_date")`` then ``fit_counterfactual``.

Example:
    >>> t = pd.DataFrame({"period": ["b", "b", "p"],
    ...                   "route_to_diagnosis": ["GP referral", "Emergency presentation",
    ...                                          "Emergency presentation"]})
    >>> emergency_share(t)[["period", "n", "events", "share"]]
      period  n  events  share
    0      b  2       1    0.5
    1      p  1       1    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError
from registry_lib.stats.periods import (
    PERIOD,
    _as_dates,
    _cols,
    _require,
    median_iqr,
    share_by_period,
    survival_times,
)
from registry_lib.stats.regression import hazard_ratios, odds_ratios


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


@dataclass
class StageShift:
    """Result of :func:`stage_shift` (three tidy tables).

    Example:
        >>> rng = np.random.default_rng(1)
        >>> t = pd.DataFrame({"period": np.repeat(["baseline", "pandemic"], 400),
        ...                   "stage": np.r_[rng.choice(list("1234"), 400, p=[.3, .3, .2, .2]),
        ...                                  rng.choice(list("1234"), 400, p=[.2, .2, .3, .3])]})
        >>> shift = stage_shift(t)
        >>> shift.odds_ratio["term"], bool(shift.odds_ratio["odds_ratio"] > 1)
        ('period[pandemic]', True)
    """

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

    Example:
        >>> rng = np.random.default_rng(2)
        >>> t = pd.DataFrame({"period": np.repeat(["baseline", "pandemic"], 300),
        ...                   "stage": rng.choice(list("1234U"), 600)})
        >>> res = stage_shift(t)
        >>> list(res.test.columns), int(res.test["dof"].iloc[0])
        (['statistic', 'dof', 'p_value', 'n'], 3)
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

    Example:
        >>> patients = pd.DataFrame({"patient_id": [1, 2], "sex": [1, 2],
        ...     "birth_date": pd.to_datetime(["1950-01-01", "1960-01-01"]),
        ...     "death_date": pd.to_datetime(["2020-05-01", None]), "death_cause_icd10": ["U07.1", None]})
        >>> tumours = pd.DataFrame({"tumour_id": [10, 20], "patient_id": [1, 2], "age_at_diagnosis": [68, 58],
        ...     "diagnosis_date": pd.to_datetime(["2019-01-01", "2019-06-01"]), "comorbidity_score": [1, 0]})
        >>> treatments = pd.DataFrame({"patient_id": [1], "tumour_id": [10], "modality": ["sact"],
        ...     "start_date": pd.to_datetime(["2020-03-10"])})
        >>> c = covid_death_cohort(patients, tumours, treatments, start="2020-03-23", end="2020-06-30")
        >>> c["on_sact"].tolist(), c["covid_death"].tolist()
        ([True, False], [True, False])
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

    Example:
        >>> rng = np.random.default_rng(1); n = 300
        >>> dx = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D")
        >>> period = np.where(dx < pd.Timestamp("2020-03-01"), "baseline", "pandemic")
        >>> death = dx + pd.to_timedelta(rng.exponential(np.where(period == "pandemic", 500, 1000)).astype(int), "D")
        >>> t = pd.DataFrame({"period": period, "diagnosis_date": dx, "death_date": death,
        ...                   "stage": rng.choice(["1", "2", "3", "4"], n), "age_at_diagnosis": rng.integers(40, 90, n),
        ...                   "sex": rng.choice([1, 2], n)})
        >>> hr = cohort_survival(t, censor_date="2021-12-31")
        >>> hr["term"].iloc[0], bool(hr["hazard_ratio"].iloc[0] > 1)   # pandemic cohort: twice the hazard
        ('period[pandemic]', True)
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
