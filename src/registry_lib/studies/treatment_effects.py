"""The long-term treatment-effects study (notebook 03): analysis frames, rates and the recall list.

What ``notebooks/03_treatment_effects.ipynb`` needs besides ``registry_lib.stats.survival``,
kept here so that a second study can reuse it and the tests exercise exactly the notebook's path:

- :func:`with_patient_columns` — tumours with their patient's sex, deprivation, … (the
  covariates a :class:`~registry_lib.stats.survival.TargetTrial` cohort is adjusted for);
- :func:`handle_missing_covariates` — complete-case or missing-indicator covariates (registry
  performance status and comorbidity are often missing; Cox and the propensity model need
  complete data);
- :func:`net_survival_frame` — one row per patient's first primary of a site for net survival
  from a pseudonymised release (exact age estimated as completed age + 0.5);
- :func:`population_rates` — incidence of a (first) cancer of a site by age band × calendar
  period from released tumours and ``reference/population`` (the expected rates of an SIR);
- :func:`opt_out_inflation` — the factor that undoes the national data opt-out's removal of
  cases from a release's numerators;
- :func:`recall_list` / :func:`write_recall_list` / :func:`recall_counts` — the BARD recall list
  from the ``direct_care`` release, written only to that release's folder with an audit entry,
  and the disclosure-safe counts a report may show;
- :func:`complementary_suppression`, :func:`cumulative_incidence_for_publication` — disclosure
  control that ``publish_table`` cannot see: SIR bands whose counts follow from the total, and
  cumulative-incidence steps resting on 1–7 events;
- :func:`protected_count`, :func:`hazard_ratio_results`, :func:`estimate_results` — figures for
  ``results.json``.

This module is pure except :func:`write_recall_list` (which writes the identifiable list and
appends to the release audit log). It imports ``registry_lib.release`` lazily for disclosure
control and audit: those are the project's own rules, not a study's.

Example:
    >>> import pandas as pd
    >>> t = pd.DataFrame({"tumour_id": [1], "pseudo_id": ["a"], "stage": ["3"]})
    >>> p = pd.DataFrame({"pseudo_id": ["a"], "sex": [2], "death_date": [None]})
    >>> with_patient_columns(t, p, ["sex"]).columns.tolist()
    ['tumour_id', 'pseudo_id', 'stage', 'sex']
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from registry_lib.errors import RegistryLabError
from registry_lib.schema import Column, Table
from registry_lib.stats.life_table import decimal_year
from registry_lib.stats.survival_late import bard_recall, late_effects_cohort

DAYS_PER_YEAR = 365.25
DCO_BASIS = "0"  # ENCR basis of diagnosis 0 = death certificate only
RECALL_FILE = "recall_list.parquet"
#: Derived identifiable lists live in this subfolder of their release's folder: dot-prefixed, so
#: the release's content hash (pipeline cache, ``sha256_tree``) and ``load_release`` ignore it,
#: and re-making the release (an atomic folder swap) removes a list built from superseded data.
DERIVED_FOLDER = ".derived"

RECALL_LIST = Table("recall_list", "BARD recall list: women due for very-high-risk breast screening.", [
    Column("patient_ref", pa.string(), False, "direct-care patient reference"),
    Column("nhs_number", pa.string(), True, "NHS number"),
    Column("given_name", pa.string(), True, "given name"),
    Column("family_name", pa.string(), True, "family name"),
    Column("birth_date", pa.timestamp("ms"), False, "date of birth"),
    Column("postcode", pa.string(), True, "postcode"),
    Column("rt_date", pa.timestamp("ms"), False, "start of the first chest/mantle radiotherapy"),
    Column("age_at_rt", pa.int64(), False, "completed age at that radiotherapy"),
    Column("due_from", pa.timestamp("ms"), False, "date from which screening is due"),
    Column("age_on_reference_date", pa.int64(), False, "completed age on the reference date"),
], stage="release", key=("patient_ref",))


def _patient_key(df: pd.DataFrame, key: str | None, what: str) -> str:
    if key is not None:
        if key not in df.columns:
            raise RegistryLabError(f"{what}: patient key column {key!r} not found")
        return key
    for k in ("pseudo_id", "patient_id", "patient_ref"):
        if k in df.columns:
            return k
    raise RegistryLabError(f"{what}: no patient key column (pseudo_id, patient_id or patient_ref)")


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RegistryLabError(f"{what}: column(s) {missing} not found")


# ----------------------------------------------------------------------------------------
# analysis frames
# ----------------------------------------------------------------------------------------
def with_patient_columns(
    tumours: pd.DataFrame,
    patients: pd.DataFrame,
    columns: Sequence[str],
    *,
    key: str | None = None,
) -> pd.DataFrame:
    """Tumours with the named patient columns added (one patient row per key; none dropped).

    Columns the tumour table already has are left as they are. A tumour whose patient is not
    in ``patients`` is an error naming it (a release never orphans a tumour).

    Example:
        >>> t = pd.DataFrame({"tumour_id": [1, 2], "patient_id": [7, 7]})
        >>> p = pd.DataFrame({"patient_id": [7], "sex": [1], "deprivation_quintile": [4]})
        >>> with_patient_columns(t, p, ["sex", "deprivation_quintile"])["sex"].tolist()
        [1, 1]
    """
    k = _patient_key(tumours, key, "tumours")
    if k not in patients.columns:
        raise RegistryLabError(f"patients: patient key column {k!r} not found")
    add = [c for c in columns if c not in tumours.columns]
    _require(patients, add, "patients")
    p = patients[[k, *add]].drop_duplicates(k)
    orphan = ~tumours[k].isin(p[k])
    if orphan.any():
        i = int(np.flatnonzero(orphan.to_numpy())[0])
        raise RegistryLabError(f"tumour row {tumours.index[i]!r}: patient {tumours[k].iloc[i]!r} "
                               "is not in the patients table")
    out = tumours.merge(p, on=k, how="left", validate="many_to_one")
    out.index = tumours.index
    return out


@dataclass
class AnalysisCovariates:
    """Covariates ready for the propensity and Cox models (see :func:`handle_missing_covariates`).

    Attributes:
        data: the frame with complete covariates (rows dropped for ``complete_case``; filled
            values and ``<covariate>_missing`` indicators added for ``indicator``).
        covariates: the covariate columns to model (indicators included).
        categorical: the categorical covariates among them.
        summary: per original covariate: ``covariate, missing_percent, handling``.
        dropped: rows dropped (complete case only).
        method: ``"complete_case"`` or ``"indicator"``.

    Example:
        >>> a = handle_missing_covariates(pd.DataFrame({"age": [60.0, 70.0], "ps": [1.0, None]}), ["age", "ps"])
        >>> isinstance(a, AnalysisCovariates), a.method, a.dropped
        (True, 'indicator', 0)
    """

    data: pd.DataFrame
    covariates: list[str]
    categorical: list[str]
    summary: pd.DataFrame
    dropped: int
    method: str


def handle_missing_covariates(
    df: pd.DataFrame,
    covariates: Sequence[str],
    *,
    method: str = "indicator",
    categorical: Sequence[str] | None = None,
) -> AnalysisCovariates:
    """Make covariates complete for modelling: complete-case or missing-indicator method.

    - ``"complete_case"``: rows with any missing covariate are dropped (unbiased for the
      conditional HR when data are missing completely at random, at the cost of power);
    - ``"indicator"``: a numeric covariate's missing values are set to its observed mean and a
      0/1 column ``<covariate>_missing`` is added; a categorical covariate gets the level
      ``"missing"``. Keeps every patient, but confounding by the unobserved values among
      those with missing data is not removed (state it in the report);
    - ``"error"``: any missing value is an error naming the covariate.

    A covariate with no missing value is left as it is (no indicator).

    Example:
        >>> d = pd.DataFrame({"age": [60.0, 70.0, 80.0], "ps": [0.0, None, 2.0]})
        >>> a = handle_missing_covariates(d, ["age", "ps"])
        >>> a.covariates, a.data["ps"].tolist(), a.data["ps_missing"].tolist()
        (['age', 'ps', 'ps_missing'], [0.0, 1.0, 2.0], [0, 1, 0])
        >>> handle_missing_covariates(d, ["age", "ps"], method="complete_case").dropped
        1
    """
    if method not in ("indicator", "complete_case", "error"):
        raise RegistryLabError(f"missing covariates method={method!r}: use 'indicator', "
                               "'complete_case' or 'error'")
    covs = list(covariates)
    _require(df, covs, "covariates")
    cats = set(categorical or ())
    is_cat = {c: c in cats or not (pd.api.types.is_numeric_dtype(df[c])
                                   or pd.api.types.is_bool_dtype(df[c])) for c in covs}
    miss = {c: df[c].isna() for c in covs}
    n = max(len(df), 1)
    summary = pd.DataFrame({
        "covariate": covs,
        "missing_percent": [round(100.0 * float(miss[c].sum()) / n, 1) for c in covs],
        "handling": ["none needed" if not miss[c].any() else
                     {"indicator": "level 'missing'" if is_cat[c] else "mean + indicator",
                      "complete_case": "rows dropped", "error": "error"}[method] for c in covs],
    })
    any_missing = [c for c in covs if miss[c].any()]
    if method == "error" and any_missing:
        c = any_missing[0]
        raise RegistryLabError(f"covariate {c!r} has {int(miss[c].sum())} missing value(s)")
    out_cats = [c for c in covs if is_cat[c]]
    if method == "complete_case":
        keep = ~pd.concat([miss[c] for c in covs], axis=1).any(axis=1) if covs else \
            pd.Series(True, index=df.index)
        return AnalysisCovariates(df[keep].copy(), covs, out_cats, summary, int((~keep).sum()),
                                  method)
    data = df.copy()
    out = []
    for c in covs:
        out.append(c)
        if not miss[c].any():
            continue
        if is_cat[c]:
            data[c] = data[c].astype(object).where(~miss[c], "missing").astype(str)
        else:
            observed = pd.to_numeric(data[c], errors="coerce")
            fill = float(observed.mean()) if observed.notna().any() else 0.0
            data[c] = observed.astype(float).fillna(fill)
            data[f"{c}_missing"] = miss[c].astype(int).to_numpy()
            out.append(f"{c}_missing")
    return AnalysisCovariates(data, out, out_cats, summary, 0, method)


def net_survival_frame(
    tumours: pd.DataFrame,
    patients: pd.DataFrame,
    end_of_follow_up,
    *,
    sites: Sequence[str],
    diagnosis_years: Sequence[int],
    ages: Sequence[float] = (15, 99),
    exclude_dco: bool = True,
    key: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per patient's first primary of ``sites`` for net survival, with its flow.

    The first tumour of each patient among ``sites`` (any earlier cancer of another site is
    allowed, as in national cancer survival statistics) diagnosed within ``diagnosis_years``
    (inclusive) at a completed age within ``ages``; death-certificate-only registrations
    (``basis_of_diagnosis == "0"``) are excluded when ``exclude_dco`` and the column exists;
    patients without a sex or deprivation quintile cannot be matched to the life table and
    are excluded (counted in the flow). Exact age at diagnosis is completed age + 0.5 (the
    pseudonymised release has no birth date). A death on the day of diagnosis counts half a
    day of follow-up.

    Returns:
        ``(frame, flow)``: the frame has key, ``site_icd10, stage, time`` (years), ``dead``,
        ``age, year`` (decimal), ``sex, deprivation_quintile``; the flow has ``step, n``.

    Example:
        >>> t = pd.DataFrame({"tumour_id": [1, 2], "pseudo_id": ["a", "b"],
        ...     "diagnosis_date": pd.to_datetime(["2015-01-01", "2016-07-01"]),
        ...     "age_at_diagnosis": [60, 70], "site_icd10": ["C18", "C18"], "stage": ["2", "3"]})
        >>> p = pd.DataFrame({"pseudo_id": ["a", "b"], "sex": [1, 2],
        ...     "deprivation_quintile": [3, 5], "death_date": pd.to_datetime([None, "2017-07-01"])})
        >>> f, _ = net_survival_frame(t, p, "2020-01-01", sites=["C18"], diagnosis_years=[2015, 2016])
        >>> f[["time", "dead", "age"]].round(2).to_dict("list")
        {'time': [5.0, 1.0], 'dead': [0, 1], 'age': [60.5, 70.5]}
    """
    k = _patient_key(tumours, key, "tumours")
    _require(tumours, [k, "tumour_id", "diagnosis_date", "age_at_diagnosis", "site_icd10"],
             "tumours")
    _require(patients, [k, "sex", "deprivation_quintile", "death_date"], "patients")
    end = pd.Timestamp(end_of_follow_up)
    flow = []
    t = tumours[tumours["site_icd10"].astype(str).str[:3].isin(list(sites))].copy()
    t["diagnosis_date"] = pd.to_datetime(t["diagnosis_date"])
    t = t.sort_values(["diagnosis_date", "tumour_id"]).drop_duplicates(k, keep="first")
    flow.append((f"first tumour of {', '.join(sites)} per patient", len(t)))
    y = t["diagnosis_date"].dt.year
    t = t[(y >= diagnosis_years[0]) & (y <= diagnosis_years[1]) & (t["diagnosis_date"] < end)]
    flow.append((f"diagnosed {diagnosis_years[0]}-{diagnosis_years[1]}", len(t)))
    a = pd.to_numeric(t["age_at_diagnosis"], errors="coerce")
    t = t[(a >= ages[0]) & (a <= ages[1])]
    flow.append((f"aged {ages[0]:g}-{ages[1]:g}", len(t)))
    if exclude_dco and "basis_of_diagnosis" in t.columns:
        t = t[t["basis_of_diagnosis"].astype(str) != DCO_BASIS]
        flow.append(("not death certificate only", len(t)))
    t = with_patient_columns(t, patients, ["sex", "deprivation_quintile", "death_date"], key=k)
    ok = t["sex"].notna() & t["deprivation_quintile"].notna()
    t = t[ok]
    flow.append(("sex and deprivation known (life table match)", len(t)))
    death = pd.to_datetime(t["death_date"])
    bad = death.notna() & (death < t["diagnosis_date"])
    t, death = t[~bad], death[~bad]
    flow.append(("death not recorded before diagnosis", len(t)))
    dead = death.notna() & (death <= end)
    exit_date = death.where(dead, end)
    time = (exit_date - t["diagnosis_date"]).dt.days.to_numpy(dtype=float) / DAYS_PER_YEAR
    frame = pd.DataFrame({
        k: t[k].to_numpy(),
        "site_icd10": t["site_icd10"].astype(str).str[:3].to_numpy(),
        "stage": t["stage"].astype(str).to_numpy() if "stage" in t.columns else "U",
        "time": np.maximum(time, 0.5 / DAYS_PER_YEAR),
        "dead": dead.astype(int).to_numpy(),
        "age": a.reindex(t.index).to_numpy(dtype=float) + 0.5,
        "year": decimal_year(t["diagnosis_date"]),
        "sex": t["sex"].astype(int).to_numpy(),
        "deprivation_quintile": t["deprivation_quintile"].astype(int).to_numpy(),
    })
    return frame.reset_index(drop=True), pd.DataFrame(flow, columns=["step", "n"])


# ----------------------------------------------------------------------------------------
# population rates for expected counts
# ----------------------------------------------------------------------------------------
def _age_band(age: np.ndarray, top: int, width: int) -> np.ndarray:
    """Lower bound of each age's band ``width`` years wide (ages above ``top`` in the last band)."""
    return (np.minimum(age, top) // width * width).astype(int)


def _period(year: np.ndarray, first: int, width: int) -> np.ndarray:
    """First year of each year's calendar period, ``width`` years wide from ``first``."""
    return (first + (year - first) // width * width).astype(int)


def population_rates(
    tumours: pd.DataFrame,
    patients: pd.DataFrame,
    population: pd.DataFrame,
    *,
    site: str,
    sex: int | None = 2,
    years: Sequence[int],
    age_band_years: int = 5,
    period_years: int = 5,
    first_per_person: bool = True,
    inflate: float = 1.0,
    key: str | None = None,
) -> pd.DataFrame:
    """Incidence of a site by age band × calendar period: registered cases / population.

    Cases: the tumours of ``site`` (the first per person when ``first_per_person``, i.e. first
    primary cancers of that site, the outcome of a second-cancer SIR) of patients of ``sex``
    diagnosed in ``years`` (first, last inclusive), by completed age at diagnosis. Person-years:
    the sum of ``reference/population`` (mid-year residents by ``area_id, year, sex,
    age_band``) over areas and the years of each period. Age bands are ``age_band_years``
    wide (a multiple of the population's 5-year bands; the population's last band is open and
    older cases are counted in it); periods are ``period_years`` wide from the first year.
    ``inflate`` multiplies the rates (e.g. :func:`opt_out_inflation` for a release that removed
    opted-out patients from the numerator).

    Returns:
        ``age_band, period, cases, person_years, rate`` (per person-year), one row per cell,
        every cell of the grid present (zero cases where none).

    Example:
        >>> t = pd.DataFrame({"tumour_id": [1, 2, 3], "pseudo_id": ["a", "a", "b"],
        ...     "diagnosis_date": pd.to_datetime(["2001-03-01", "2004-01-01", "2002-05-05"]),
        ...     "age_at_diagnosis": [42, 45, 33], "site_icd10": ["C50", "C50", "C50"]})
        >>> p = pd.DataFrame({"pseudo_id": ["a", "b"], "sex": [2, 2]})
        >>> pop = pd.DataFrame({"area_id": "A", "year": [2001, 2002] * 2, "sex": 2,
        ...                     "age_band": [30, 30, 40, 40], "population": [1000, 1000, 500, 500]})
        >>> population_rates(t, p, pop, site="C50", years=[2001, 2002], age_band_years=10,
        ...                  period_years=5)[["age_band", "cases", "person_years", "rate"]]
           age_band  cases  person_years    rate
        0        30      1        2000.0  0.0005
        1        40      1        1000.0  0.0010
    """
    k = _patient_key(tumours, key, "tumours")
    _require(tumours, [k, "tumour_id", "diagnosis_date", "age_at_diagnosis", "site_icd10"],
             "tumours")
    _require(population, ["year", "sex", "age_band", "population"], "population")
    if age_band_years <= 0 or period_years <= 0:
        raise RegistryLabError("age_band_years and period_years must be positive")
    y0, y1 = int(years[0]), int(years[1])
    pop = population[(population["year"] >= y0) & (population["year"] <= y1)]
    if sex is not None:
        pop = pop[pop["sex"].astype(int) == int(sex)]
    if pop.empty:
        raise RegistryLabError(f"population: no rows for years {y0}-{y1}"
                               + (f" and sex {sex}" if sex is not None else ""))
    pop_bands = np.sort(pop["age_band"].astype(int).unique())
    if np.any(pop_bands % 5) or age_band_years % 5:
        raise RegistryLabError("population_rates: population bands and age_band_years must be "
                               "multiples of 5 years")
    top = int(pop_bands.max())
    denom = pd.DataFrame({"age_band": _age_band(pop["age_band"].to_numpy(dtype=int), top, age_band_years),
                          "period": _period(pop["year"].to_numpy(dtype=int), y0, period_years),
                          "person_years": pop["population"].to_numpy(dtype=float)})
    denom = denom.groupby(["age_band", "period"], as_index=False)["person_years"].sum()
    t = tumours[tumours["site_icd10"].astype(str).str[:3] == site]
    if sex is not None:
        _require(patients, [k, "sex"], "patients")
        t = with_patient_columns(t, patients, ["sex"], key=k)
        t = t[pd.to_numeric(t["sex"], errors="coerce") == int(sex)]  # unknown sex: not counted
    t = t.assign(diagnosis_date=pd.to_datetime(t["diagnosis_date"]))
    if first_per_person:
        t = t.sort_values(["diagnosis_date", "tumour_id"]).drop_duplicates(k, keep="first")
    yr = t["diagnosis_date"].dt.year.to_numpy()
    t = t[(yr >= y0) & (yr <= y1)]
    cases = pd.DataFrame({
        "age_band": _age_band(pd.to_numeric(t["age_at_diagnosis"]).to_numpy(dtype=int), top, age_band_years),
        "period": _period(t["diagnosis_date"].dt.year.to_numpy(), y0, period_years),
    }).value_counts().rename("cases").reset_index()
    out = denom.merge(cases, on=["age_band", "period"], how="left")
    out["cases"] = out["cases"].fillna(0).astype(np.int64)
    out["rate"] = out["cases"] / out["person_years"] * float(inflate)
    out = out.sort_values(["period", "age_band"]).reset_index(drop=True)
    return out[["age_band", "period", "cases", "person_years", "rate"]]


def national_rates(
    national: pd.DataFrame,
    population: pd.DataFrame,
    *,
    site: str,
    sex: int = 2,
    years: Sequence[int],
    age_band_years: int = 5,
    period_years: int = 5,
) -> pd.DataFrame:
    """Published national incidence of a site by age band × calendar period, as SIR reference rates.

    ``national`` is ``reference/national_incidence`` (England's registrations per person-year by
    ``year, site_icd10, sex, age_band``). Its rates are averaged into the bands and periods of
    :func:`population_rates`, weighted by the cohort's ``reference/population`` of that sex, so
    the table has the same grid and ``rate`` column; unlike rates counted in the registry itself
    they do not rest on a small cohort's few young cases, and they do not contain the excess
    being measured.

    Returns:
        ``age_band, period, person_years, rate`` (per person-year), one row per cell.

    Example:
        >>> nat = pd.DataFrame({"year": [2001, 2002, 2001, 2002], "site_icd10": "C50", "sex": 2,
        ...                     "age_band": [30, 30, 35, 35], "rate": [0.0004, 0.0006, 0.001, 0.001]})
        >>> pop = pd.DataFrame({"area_id": "A", "year": [2001, 2002, 2001, 2002], "sex": 2,
        ...                     "age_band": [30, 30, 35, 35], "population": [1000, 1000, 500, 500]})
        >>> national_rates(nat, pop, site="C50", years=[2001, 2002], age_band_years=10)
           age_band  period  person_years      rate
        0        30    2001        3000.0  0.000667
    """
    _require(national, ["year", "site_icd10", "sex", "age_band", "rate"], "national incidence")
    _require(population, ["year", "sex", "age_band", "population"], "population")
    if age_band_years <= 0 or period_years <= 0 or age_band_years % 5:
        raise RegistryLabError("age_band_years must be a positive multiple of 5 and period_years positive")
    y0, y1 = int(years[0]), int(years[1])
    nat = national[(national["site_icd10"].astype(str) == site) & (national["sex"].astype(int) == int(sex))
                   & national["year"].between(y0, y1)]
    pop = population[(population["sex"].astype(int) == int(sex)) & population["year"].between(y0, y1)]
    pop = pop.groupby(["year", "age_band"], as_index=False)["population"].sum()
    cells = pop.merge(nat[["year", "age_band", "rate"]], on=["year", "age_band"], how="left")
    if cells["rate"].isna().any():
        row = cells[cells["rate"].isna()].iloc[0]
        raise RegistryLabError(f"national incidence: no rate for {site}, sex {sex}, year {int(row['year'])}, "
                               f"age band {int(row['age_band'])}")
    ages = cells["age_band"].to_numpy(dtype=int)
    cells = cells.assign(age_band=_age_band(ages, int(ages.max()), age_band_years),
                         period=_period(cells["year"].to_numpy(dtype=int), y0, period_years),
                         expected=cells["rate"] * cells["population"])
    out = cells.groupby(["age_band", "period"], as_index=False)[["population", "expected"]].sum()
    out["rate"] = out["expected"] / out["population"]
    out = out.rename(columns={"population": "person_years"}).astype({"person_years": float})
    out = out.sort_values(["period", "age_band"]).reset_index(drop=True)
    return out[["age_band", "period", "person_years", "rate"]]


def opt_out_inflation(release_info: Mapping[str, Any], table: str = "tumour") -> float:
    """Factor undoing the national data opt-out's removal of rows from a release's counts.

    ``(released + removed) / released`` rows of ``table`` from the release's ``release.json``
    (``row_counts``, ``opt_out_removals``); 1.0 when the opt-out was not applied. Multiplying
    population rates computed from the release by it assumes opting out is unrelated to the
    cancer's incidence.

    Example:
        >>> opt_out_inflation({"national_data_opt_out_applied": True,
        ...                    "row_counts": {"tumour": 950}, "opt_out_removals": {"tumour": 50}})
        1.0526315789473684
    """
    if not release_info.get("national_data_opt_out_applied"):
        return 1.0
    try:
        kept = int(release_info["row_counts"][table])
        removed = int(release_info.get("opt_out_removals", {}).get(table, 0))
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistryLabError(f"release.json: no row count of table {table!r}") from exc
    if kept <= 0:
        raise RegistryLabError(f"release.json: table {table!r} has no rows")
    return (kept + removed) / kept


# ----------------------------------------------------------------------------------------
# the recall list (direct care)
# ----------------------------------------------------------------------------------------
def recall_list(
    release: Mapping[str, pd.DataFrame],
    reference_date,
    *,
    first_sites: Sequence[str] = ("C81",),
    rt_regions: Sequence[str] = ("chest", "mantle"),
    ages_at_treatment: tuple[int, int] = (10, 35),
    sex: int = 2,
    second_site: str = "C50",
    years_after_rt: int = 8,
    from_age: int = 25,
    until_age: int | None = 70,
    exclude_with_second_cancer: bool = True,
    key: str = "patient_ref",
) -> pd.DataFrame:
    """Living women due for very-high-risk breast screening on ``reference_date`` (BARD).

    From an identifiable release (``direct_care``: birth dates, NHS numbers; patients linked by
    ``patient_ref``): women given radiotherapy to ``rt_regions`` for a first cancer of
    ``first_sites`` at a completed age within ``ages_at_treatment``
    (:func:`~registry_lib.stats.survival.late_effects_cohort`), alive on the reference date,
    due from the later of ``years_after_rt`` after the radiotherapy and their ``from_age``
    birthday (:func:`~registry_lib.stats.survival.bard_recall`), and not older than
    ``until_age`` on the reference date (the NHS Breast Screening Programme screens very-high-risk
    women until their 71st birthday; None = no upper age). Women who have had a breast cancer
    (``second_site``) since the radiotherapy are under breast-cancer follow-up instead and are
    left out when ``exclude_with_second_cancer``. Patients without a birth date (the rule needs
    exact ages) or, when selecting by ``sex``, without a recorded sex are left out; their counts
    are in ``.attrs["left_out_no_birth_date"]`` and ``.attrs["left_out_missing_sex"]``.

    Returns:
        The identifiable list (columns of :data:`RECALL_LIST`), sorted by ``due_from`` then
        ``patient_ref``. Never publish it: write it with :func:`write_recall_list`.

    Example:
        >>> rel = {"patient": pd.DataFrame({"patient_ref": ["r1"], "nhs_number": ["9000000009"],
        ...            "given_name": ["Ann"], "family_name": ["Lee"], "postcode": ["LS1 1AA"],
        ...            "birth_date": pd.to_datetime(["1980-05-01"]), "sex": [2],
        ...            "death_date": pd.to_datetime([None])}),
        ...        "tumour": pd.DataFrame({"tumour_id": ["t1"], "patient_ref": ["r1"],
        ...            "diagnosis_date": pd.to_datetime(["1998-01-10"]), "age_at_diagnosis": [17],
        ...            "site_icd10": ["C81"]}),
        ...        "treatment": pd.DataFrame({"patient_ref": ["r1"], "tumour_id": ["t1"],
        ...            "modality": ["radiotherapy"], "rt_region": ["mantle"],
        ...            "start_date": pd.to_datetime(["1998-02-01"])})}
        >>> recall_list(rel, "2024-06-30")[["patient_ref", "age_at_rt", "due_from"]].astype(str).values.tolist()
        [['r1', '17', '2006-02-01']]
    """
    for name in ("patient", "tumour", "treatment"):
        if name not in release:
            raise RegistryLabError(f"recall list: the release has no {name!r} table")
        if key not in release[name].columns:
            raise RegistryLabError(f"recall list: table {name!r} has no {key!r} column (use the "
                                   "direct_care release)")
    pat = release["patient"]
    _require(pat, [key, "birth_date", "sex", "death_date"], "patients")
    # the recall rule needs exact birth dates: patients without one are left out (and counted)
    no_birth = pat["birth_date"].isna()
    pat = pat[~no_birth]
    ren = {key: "patient_id"}
    cohort = late_effects_cohort(
        pat[[key, "sex", "birth_date", "death_date"]].rename(columns=ren),
        release["tumour"].rename(columns=ren), release["treatment"].rename(columns=ren),
        end_of_follow_up=reference_date, first_sites=tuple(first_sites),
        rt_regions=tuple(rt_regions), ages_at_treatment=tuple(ages_at_treatment), sex=sex,
        second_site=second_site,
    )
    if exclude_with_second_cancer:
        cohort = cohort[cohort["second_cancer"] == 0]
    due = bard_recall(cohort, reference_date, ages_at_rt=tuple(ages_at_treatment),
                      years_after_rt=years_after_rt, from_age=from_age)
    if until_age is not None:
        due = due[due["age_on_reference_date"] <= int(until_age)]
    due = due.rename(columns={"patient_id": key})
    ids = [c for c in ("nhs_number", "given_name", "family_name", "postcode") if c in pat.columns]
    out = due[[key, "rt_date", "age_at_rt", "due_from", "age_on_reference_date"]].merge(
        pat[[key, "birth_date", *ids]], on=key, how="left")
    for c in ("nhs_number", "given_name", "family_name", "postcode"):
        if c not in out.columns:
            out[c] = None
    out = out.sort_values(["due_from", key], kind="stable").reset_index(drop=True)
    for c in ("age_at_rt", "age_on_reference_date"):
        out[c] = out[c].astype(np.int64)
    out = out[RECALL_LIST.column_names]
    out.attrs["left_out_no_birth_date"] = int(no_birth.sum())
    out.attrs["left_out_missing_sex"] = int(cohort.attrs.get("left_out_missing_sex", 0))
    return out


#: The columns :func:`recall_list` reads of the direct-care release's tumour and treatment
#: tables (its patient table is read whole): on the national release, reading only these keeps
#: about 2 GB of treatment ids, regimens and doses out of memory.
RECALL_COLUMNS = {
    "tumour": ["patient_ref", "tumour_id", "diagnosis_date", "age_at_diagnosis", "site_icd10"],
    "treatment": ["patient_ref", "tumour_id", "modality", "rt_region", "start_date"],
}


RECALL_IDENTIFIERS = ["nhs_number", "given_name", "family_name", "postcode"]


def recall_list_from_release(
    cohort: str | Path, policy: str, reference_date: Any, *, key: str = "patient_ref", **rule: Any
) -> pd.DataFrame:
    """:func:`recall_list` read from the direct-care release ``policy`` of ``cohort``, narrowly.

    The same list as ``recall_list(load_release(cohort, policy), reference_date, **rule)``, but
    the rule runs on the columns it needs (:data:`RECALL_COLUMNS`; the patients' key, birth and
    death dates and sex) and names, NHS numbers and postcodes are read afterwards for the women
    on the list only: on the national release the identifiers of 3.3 million patients would be
    ~2 GB in memory for a list of ~700.

    Example (a release folder with one woman due):
        >>> import os, tempfile
        >>> from unittest import mock
        >>> from registry_lib.io import write_json, write_parquet
        >>> from registry_lib.paths import cohort_dir
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     folder = cohort_dir("demo") / "releases" / "direct_care"
        ...     _ = write_json({"purpose": "direct_care"}, folder / "release.json")
        ...     _ = write_parquet(pd.DataFrame({"patient_ref": ["r1", "r2"], "nhs_number": ["9000000009", "9000000017"],
        ...         "given_name": ["Ann", "Bea"], "family_name": ["Lee", "Ray"], "postcode": ["LS1 1AA", "M1 1AA"],
        ...         "birth_date": pd.to_datetime(["1980-05-01", "1950-01-01"]), "sex": [2, 2],
        ...         "death_date": pd.to_datetime([None, None])}), folder / "patient.parquet")
        ...     _ = write_parquet(pd.DataFrame({"tumour_id": ["t1"], "patient_ref": ["r1"],
        ...         "diagnosis_date": pd.to_datetime(["1998-01-10"]), "age_at_diagnosis": [17],
        ...         "site_icd10": ["C81"]}), folder / "tumour.parquet")
        ...     _ = write_parquet(pd.DataFrame({"patient_ref": ["r1"], "tumour_id": ["t1"], "modality": ["radiotherapy"],
        ...         "rt_region": ["mantle"], "start_date": pd.to_datetime(["1998-02-01"])}), folder / "treatment.parquet")
        ...     due = recall_list_from_release("demo", "direct_care", "2024-06-30")
        >>> due[["patient_ref", "nhs_number", "given_name", "age_at_rt"]].values.tolist()
        [['r1', '9000000009', 'Ann', 17]]
    """
    import pyarrow.parquet as pq

    from registry_lib.release import load_release
    from registry_lib.release.run import release_dir

    patient_columns = [key, "birth_date", "sex", "death_date"]
    release = load_release(cohort, policy, tables=["patient", "tumour", "treatment"],
                           columns={**RECALL_COLUMNS, "patient": patient_columns})
    due = recall_list(release, reference_date, key=key, **rule)
    attrs = dict(due.attrs)
    del release
    path = release_dir(cohort, policy) / "patient.parquet"
    ids = [c for c in RECALL_IDENTIFIERS if c in pq.read_schema(path).names]
    wanted = due[key].drop_duplicates().tolist()
    if wanted:
        found = pq.read_table(path, columns=[key, *ids], filters=[(key, "in", wanted)]).to_pandas()
    else:
        found = pd.DataFrame({c: pd.Series(dtype=object) for c in [key, *ids]})
    out = due.drop(columns=RECALL_IDENTIFIERS).merge(found, on=key, how="left")
    for c in RECALL_IDENTIFIERS:
        if c not in out.columns:
            out[c] = None
    out = out[RECALL_LIST.column_names]
    out.attrs.update(attrs)
    return out


def write_recall_list(
    recall: pd.DataFrame,
    cohort: str | Path,
    *,
    requester: str,
    policy: str = "direct_care",
    rule: Mapping[str, Any] | None = None,
) -> Path:
    """Write the identifiable recall list into the direct-care release folder and audit it.

    The list goes ONLY to ``synthetic/<cohort>/releases/<policy>/.derived/recall_list.parquet``
    (schema :data:`RECALL_LIST`, deterministic bytes), and only when that release was made for
    direct care (``release.json`` purpose ``direct_care``); anything else is refused. The
    subfolder is dot-prefixed so that the release's own content hash and ``load_release``
    ignore it (see :data:`DERIVED_FOLDER`). One JSON line is appended to
    ``releases/audit.jsonl`` (the release audit log, via ``registry_lib.release.run``'s
    append-only writer): time, cohort, policy, action ``recall_list``, requester, number of
    rows, the rule applied, the file and its sha256.

    Returns:
        The path written.

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> from registry_lib.release.run import run
        >>> cohort = tiny_cohort()
        >>> _ = run(cohort, "research_pseudonymised", "A. Analyst (example)")
        >>> write_recall_list(pd.DataFrame(), cohort, requester="BARD team", policy="research_pseudonymised")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: recall list: release 'research_pseudonymised' was made for 'research_pseudonymised', not direct care; an identifiable list may only be written under the direct_care policy
    """
    from registry_lib.io import sha256_file, write_parquet
    from registry_lib.release import release_dir, release_info
    from registry_lib.release.run import AUDIT_LOG, append_audit

    if not str(requester or "").strip():
        raise RegistryLabError("recall list: say who asked for it (requester)")
    info = release_info(cohort, policy)  # errors with the command to run when missing
    if info.get("purpose") != "direct_care":
        raise RegistryLabError(
            f"recall list: release {policy!r} was made for {info.get('purpose')!r}, not direct "
            "care; an identifiable list may only be written under the direct_care policy")
    folder = release_dir(cohort, policy)
    path = folder / DERIVED_FOLDER / RECALL_FILE
    path.parent.mkdir(exist_ok=True)
    write_parquet(recall[RECALL_LIST.column_names], path, RECALL_LIST)
    append_audit(folder.parent / AUDIT_LOG, {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cohort": folder.parent.parent.name,
        "policy": policy,
        "purpose": "direct_care",
        "action": "recall_list",
        "requester": str(requester).strip(),
        "row_counts": {"recall_list": len(recall)},
        "national_data_opt_out_applied": bool(info.get("national_data_opt_out_applied")),
        "rule": dict(rule or {}),
        "release": f"releases/{policy}/{DERIVED_FOLDER}/{RECALL_FILE}",
        "files_sha256": {RECALL_FILE: sha256_file(path)},
    })
    return path


def recall_counts(
    recall: pd.DataFrame,
    age_bands: Sequence[int] = (25, 30, 40, 50),
) -> pd.DataFrame:
    """Women on the recall list by age band on the reference date (unprotected counts).

    Publish with ``publish_table(..., kind="counts", count_columns=["women"])``; the
    identifiable list itself never leaves the release folder.

    Example:
        >>> r = pd.DataFrame({"age_on_reference_date": [26, 33, 35, 61]})
        >>> recall_counts(r).to_dict("list")
        {'age_band': ['25-29', '30-39', '40-49', '50+'], 'women': [1, 2, 0, 1]}
    """
    b = np.asarray(age_bands, dtype=int)
    if b.size == 0 or np.any(np.diff(b) <= 0):
        raise RegistryLabError("recall_counts: age_bands must be increasing")
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(b[:-1], b[1:], strict=True)] + [f"{b[-1]}+"]
    age = recall["age_on_reference_date"].to_numpy(dtype=int)
    idx = np.searchsorted(b, age, side="right") - 1
    if np.any(idx < 0):
        raise RegistryLabError(f"recall_counts: a woman is younger than the first band ({b[0]})")
    return pd.DataFrame({"age_band": labels,
                         "women": np.bincount(idx, minlength=b.size).astype(np.int64)})


# ----------------------------------------------------------------------------------------
# disclosure control of SIR bands and cumulative incidence
# ----------------------------------------------------------------------------------------
def complementary_suppression(
    table: pd.DataFrame,
    *,
    count: str = "observed",
    group: str = "group",
    total: str = "overall",
    threshold: int = 7,
) -> pd.DataFrame:
    """Mark extra bands for suppression so no suppressed band follows from the total.

    An SIR table publishes each band's expected count and SIR, so every published band's
    observed count is known exactly (SIR × expected), and a band suppressed alone could be
    recovered as the total minus the other bands. In each group of bands adding up to the
    ``total`` row (e.g. by age at treatment; by time since treatment), when the total is
    published and exactly one band has a count in 1..threshold, the band with the next
    smallest count (non-zero first) is suppressed too.

    Returns:
        A copy for publishing only: the chosen bands' counts are set to ``threshold`` so that
        ``publish_table(..., count_columns=[count])`` suppresses them and blanks their
        estimates; column ``complementary`` flags them.

    Example:
        >>> t = pd.DataFrame({"group": ["overall", "age", "age", "age"],
        ...                   "observed": [30, 4, 10, 16]})
        >>> complementary_suppression(t)[["observed", "complementary"]].values.tolist()
        [[30, False], [4, False], [7, True], [16, False]]
    """
    _require(table, [count, group], "complementary_suppression")
    out = table.copy()
    out["complementary"] = False
    obs = out[count].to_numpy(dtype=float)
    small = (obs >= 1) & (obs <= threshold)
    tot = out[group] == total
    if tot.any() and small[tot.to_numpy()].any():
        return out  # the total itself is suppressed: nothing follows from it
    for g in out.loc[~tot, group].unique():
        idx = np.flatnonzero((out[group] == g).to_numpy())
        if small[idx].sum() != 1 or idx.size < 2:
            continue
        rest = idx[~small[idx]]
        order = np.lexsort((obs[rest], obs[rest] == 0))  # non-zero first, then smallest
        pick = rest[order[0]]
        out.iloc[pick, out.columns.get_loc(count)] = threshold
        out.iloc[pick, out.columns.get_loc("complementary")] = True
    return out


def cumulative_incidence_for_publication(
    cif: pd.DataFrame,
    *,
    threshold: int = 7,
) -> pd.DataFrame:
    """Cumulative incidence at chosen times, keeping only steps that rest on enough events.

    ``cif`` is :func:`~registry_lib.stats.survival.cumulative_incidence` read at ``times``
    (events counted between consecutive times). A time is published only when at least
    ``threshold + 1`` events of interest occurred since the previous published time (times
    before the first event are kept, with incidence 0), so no published increase of the curve
    rests on 1..threshold events; ``cumulative_events`` is the running total. Counts still go
    through ``publish_table`` (rounded; at-risk counts 1..threshold suppressed).

    Example:
        >>> c = pd.DataFrame({"time": [5, 10, 15, 20], "n_at_risk": [90, 80, 60, 40],
        ...                   "n_events": [0, 5, 6, 9], "cif": [0, .05, .12, .2],
        ...                   "lower": [0, .02, .07, .13], "upper": [0, .1, .19, .28]})
        >>> cumulative_incidence_for_publication(c)[["time", "cumulative_events"]].values.tolist()
        [[5, 0], [15, 11], [20, 20]]
    """
    _require(cif, ["time", "n_at_risk", "n_events", "cif", "lower", "upper"],
             "cumulative incidence table")
    cum = np.cumsum(cif["n_events"].to_numpy(dtype=np.int64))
    keep = np.zeros(len(cif), dtype=bool)
    last = 0
    for i, c in enumerate(cum):  # loop over a handful of publication times
        if c == 0 or c - last >= threshold + 1:
            keep[i] = True
            last = c
    out = cif.loc[keep, ["time", "n_at_risk", "cif", "lower", "upper"]].copy()
    out.insert(2, "cumulative_events", cum[keep])
    return out.reset_index(drop=True)


# ----------------------------------------------------------------------------------------
# results.json helpers
# ----------------------------------------------------------------------------------------
def protected_count(n: int, *, threshold: int = 7, rounding: int | str = 5) -> int | None:
    """A count as it may be published: None if 1..threshold, else rounded (0 stays 0).

    Example:
        >>> protected_count(3), protected_count(0), protected_count(248)
        (None, 0, 250)
    """
    from registry_lib.release import protect_counts

    v = protect_counts([int(n)], threshold, rounding)[0]
    return None if pd.isna(v) else int(v)


def hazard_ratio_results(hazard_ratios: pd.DataFrame, digits: int = 4) -> dict[str, dict]:
    """``{model: {hr, lower, upper, p_value}}`` from a tidy HR table (counts left out).

    Example:
        >>> hr = pd.DataFrame({"model": ["naive"], "hr": [0.71234], "lower": [0.5],
        ...                    "upper": [0.9], "p_value": [0.01]})
        >>> hazard_ratio_results(hr)
        {'naive': {'hr': 0.7123, 'lower': 0.5, 'upper': 0.9, 'p_value': 0.01}}
    """
    out = {}
    for _, r in hazard_ratios.iterrows():
        out[str(r["model"])] = {c: round(float(r[c]), digits)
                                for c in ("hr", "lower", "upper", "p_value") if c in r}
    return out


def estimate_results(table: pd.DataFrame, *, time: str = "time", estimate: str = "net_survival",
                     digits: int = 4) -> dict[str, dict]:
    """``{"<t>y": {estimate, lower, upper}}`` from a table of estimates at times (NaN -> None).

    Example:
        >>> t = pd.DataFrame({"time": [1.0, 5.0], "net_survival": [0.8, 0.6],
        ...                   "lower": [0.7, 0.5], "upper": [0.9, 0.7]})
        >>> estimate_results(t)["5y"]
        {'estimate': 0.6, 'lower': 0.5, 'upper': 0.7}
    """
    out = {}
    for _, r in table.iterrows():
        vals = {"estimate": r[estimate], "lower": r["lower"], "upper": r["upper"]}
        out[f"{float(r[time]):g}y"] = {k: (None if pd.isna(v) else round(float(v), digits))
                                       for k, v in vals.items()}
    return out
