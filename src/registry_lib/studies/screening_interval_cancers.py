"""Study 07: screen-detected and interval cancers in the breast screening programme.

The logic behind ``notebooks/07_screening_interval_cancers.ipynb`` (parameters in
``params/studies/screening_interval_cancers.yaml``):

1. :func:`classify_detection` — each woman's first cancer of the programme's sites, classified
   from her linked screening history: **screen-detected** (a positive test in the
   ``recall_window_days`` around diagnosis), **interval** (diagnosed after a negative test and
   before the next was due), **lapsed** (tested before, but not within the interval), **never
   screened** (invited, never tested) or **not invited** (no screening record);
2. :func:`detection_rates` — screen-detected and interval cancers per 1,000 women screened, by
   year of screen and by year since the screen, with the programme statistics (women tested)
   as denominators;
3. :func:`proportional_incidence` — interval cancers in year ``k`` after a negative screen
   against the cancers expected without screening (underlying incidence by age band,
   deprivation quintile and London, applied to the women tested); programme sensitivity
   ``1 - sum(interval) / sum(expected)``, CIs on the log scale (Poisson counts, incidence rates'
   sampling variance included);
4. :func:`stage_by_detection`, :func:`survival_by_detection` — stage and survival by detection
   mode (lead-time and length bias make survival of screen-detected cancers look better than
   the screening's true benefit);
5. :func:`truth_agreement` — validation only: the classification against the generator's truth.

Example:
    >>> import pandas as pd
    >>> tum = pd.DataFrame({"pseudo_id": ["a", "b"], "tumour_id": ["t1", "t2"],
    ...                     "diagnosis_date": pd.to_datetime(["2018-06-01", "2018-06-01"])})
    >>> scr = pd.DataFrame({"pseudo_id": ["a", "b"], "programme": ["breast", "breast"],
    ...                     "invitation_date": pd.to_datetime(["2018-04-01", "2016-01-01"]),
    ...                     "attended": [True, True], "test_date": pd.to_datetime(["2018-05-01", "2016-02-01"]),
    ...                     "result": ["positive", "negative"]})
    >>> classify_detection(tum, scr, programme="breast", interval_years=3)["detection"].tolist()
    ['screen_detected', 'interval']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as st

from registry_lib.errors import RegistryLabError

YEAR = 365.25
MODES = ("screen_detected", "interval", "lapsed", "never_screened", "not_invited")
TRUTH_LABEL = {"screen_detected": "screen_detected", "interval": "interval", "lapsed": "lapsed",
               "never_screened": "never_screened", "not_eligible": "not_invited"}


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise RegistryLabError(f"{what}: column(s) {', '.join(missing)} missing")


def programme_tumours(tumours: pd.DataFrame, patients: pd.DataFrame, *, sites: Sequence[str], sex: int | None,
                      key: str = "pseudo_id") -> pd.DataFrame:
    """Each person's first tumour of the programme's sites, with the person's columns.

    Example:
        >>> tum = pd.DataFrame({"pseudo_id": ["a", "a", "b", "c"], "tumour_id": ["t2", "t1", "t3", "t4"],
        ...                     "site_icd10": ["C504", "C509", "C61", "C50"],
        ...                     "diagnosis_date": ["2019-03-01", "2017-05-01", "2018-01-01", "2020-02-01"],
        ...                     "age_at_diagnosis": [63, 61, 70, 55]})
        >>> pat = pd.DataFrame({"pseudo_id": ["a", "b", "c"], "sex": [2, 1, 1], "region": ["London", "North", "North"]})
        >>> print(programme_tumours(tum, pat, sites=["C50"], sex=2).to_string())   # a's first breast cancer only
          pseudo_id tumour_id site_icd10 diagnosis_date  age_at_diagnosis  sex  region
        0         a        t1       C509     2017-05-01                61    2  London
        >>> len(programme_tumours(tum, pat, sites=["C50"], sex=None))   # c is a man with breast cancer
        2
        >>> programme_tumours(tum.drop(columns="age_at_diagnosis"), pat, sites=["C50"], sex=2)
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: tumour: column(s) age_at_diagnosis missing
    """
    _require(tumours, [key, "tumour_id", "site_icd10", "diagnosis_date", "age_at_diagnosis"], "tumour")
    t = tumours[tumours["site_icd10"].astype(str).str[:3].isin(list(sites))].copy()
    t["diagnosis_date"] = pd.to_datetime(t["diagnosis_date"])
    t = t.sort_values([key, "diagnosis_date", "tumour_id"], kind="stable").drop_duplicates(key)
    cols = [c for c in ("sex", "deprivation_quintile", "region", "area_id", "death_date", "ethnicity")
            if c in patients.columns and c not in t.columns]
    t = t.merge(patients[[key, *cols]], on=key, how="left")
    if sex is not None:
        t = t[t["sex"].astype("Int64") == sex]
    return t.reset_index(drop=True)


def classify_detection(tumours: pd.DataFrame, screening: pd.DataFrame, *, programme: str, interval_years: float,
                       recall_window_days: Sequence[int] = (-180, 30), key: str = "pseudo_id") -> pd.DataFrame:
    """Detection mode of each tumour (see the module docstring); vectorised with as-of merges.

    Adds ``detection``, ``screen_date`` (the positive test, or the last negative one) and
    ``years_since_screen`` (interval cancers; 0 for screen-detected).

    Example:
        >>> tum = pd.DataFrame({"pseudo_id": ["a", "b", "c", "d", "e"], "tumour_id": ["t1", "t2", "t3", "t4", "t5"],
        ...                     "diagnosis_date": pd.to_datetime(["2018-06-01"] * 5)})
        >>> scr = pd.DataFrame({"pseudo_id": ["a", "b", "c", "d"], "programme": "breast",
        ...                     "invitation_date": pd.to_datetime(["2018-04-01", "2016-01-01", "2012-01-01", "2017-01-01"]),
        ...                     "attended": [True, True, True, False],
        ...                     "test_date": pd.to_datetime(["2018-05-01", "2016-02-01", "2012-02-01", None]),
        ...                     "result": ["positive", "negative", "negative", None]})
        >>> out = classify_detection(tum, scr, programme="breast", interval_years=3)
        >>> print(out[["pseudo_id", "detection", "screen_date", "years_since_screen"]].round(2).to_string())
          pseudo_id        detection screen_date  years_since_screen
        0         a  screen_detected  2018-05-01                0.00
        1         b         interval  2016-02-01                2.33
        2         c           lapsed         NaT                 NaN
        3         d   never_screened         NaT                 NaN
        4         e      not_invited         NaT                 NaN
    """
    _require(tumours, [key, "tumour_id", "diagnosis_date"], "tumour")
    _require(screening, [key, "programme", "invitation_date", "attended", "test_date", "result"], "screening")
    s = screening[screening["programme"] == programme].copy()
    s["test_date"] = pd.to_datetime(s["test_date"]).astype("datetime64[ns]")
    s["invitation_date"] = pd.to_datetime(s["invitation_date"]).astype("datetime64[ns]")
    t = tumours.copy()
    t["diagnosis_date"] = pd.to_datetime(t["diagnosis_date"]).astype("datetime64[ns]")
    t = t.reset_index(drop=True)
    t["_row"] = np.arange(len(t))
    lo, hi = (pd.Timedelta(days=int(d)) for d in recall_window_days)
    # screen-detected: a positive test in the recall window
    pos = s[s["attended"].astype(bool) & (s["result"] == "positive")][[key, "test_date"]]
    m = t[[key, "_row", "diagnosis_date"]].merge(pos, on=key)
    m = m[(m["test_date"] >= m["diagnosis_date"] + lo) & (m["test_date"] <= m["diagnosis_date"] + hi)]
    m = m.sort_values(["_row", "test_date"]).drop_duplicates("_row", keep="last")
    sd = np.zeros(len(t), dtype=bool)
    sd[m["_row"].to_numpy()] = True
    sd_date = pd.Series(pd.NaT, index=t.index, dtype="datetime64[ns]")
    sd_date.iloc[m["_row"].to_numpy()] = m["test_date"].to_numpy()
    # last attended test on or before diagnosis
    tested = s[s["attended"].astype(bool) & s["test_date"].notna()][[key, "test_date", "result"]]
    tested = tested.sort_values("test_date")
    left = t[[key, "_row", "diagnosis_date"]].sort_values("diagnosis_date")
    last = pd.merge_asof(left, tested.rename(columns={"test_date": "last_test"}), left_on="diagnosis_date",
                         right_on="last_test", by=key, direction="backward").sort_values("_row")
    gap = (last["diagnosis_date"] - last["last_test"]).dt.days.to_numpy() / YEAR
    has_test = last["last_test"].notna().to_numpy()
    neg = (last["result"] == "negative").fillna(False).to_numpy(dtype=bool)
    interval = has_test & neg & (gap < float(interval_years))
    invited = t[key].isin(set(s.loc[s["invitation_date"].notna(), key])).to_numpy()
    inv_before = t[[key, "_row", "diagnosis_date"]].merge(s[[key, "invitation_date"]], on=key)
    inv_before = set(inv_before.loc[inv_before["invitation_date"] <= inv_before["diagnosis_date"], "_row"])
    invited = invited & t["_row"].isin(inv_before).to_numpy()
    mode = np.select([sd, interval, has_test, invited], ["screen_detected", "interval", "lapsed", "never_screened"],
                     default="not_invited")
    out = t.drop(columns="_row")
    out["detection"] = mode
    out["screen_date"] = np.where(sd, sd_date.to_numpy(), np.where(interval, last["last_test"].to_numpy(),
                                                                    np.datetime64("NaT")))
    out["screen_date"] = pd.to_datetime(out["screen_date"])
    out["years_since_screen"] = np.where(sd, 0.0, np.where(interval, gap, np.nan))
    return out


def _limits(years: np.ndarray, lo_hi: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    lo = np.full(len(years), np.inf)
    hi = np.full(len(years), -np.inf)
    for start, a, b in sorted(lo_hi):   # phases of the programme (a few)
        lo = np.where(years >= start, a, lo)
        hi = np.where(years >= start, b, hi)
    return lo, hi


def screened_women(statistics: pd.DataFrame, areas: pd.DataFrame, *, programme: str, years: Sequence[int],
                   sex: int | None) -> pd.DataFrame:
    """Women tested per screen year and stratum (age band, deprivation quintile, London).

    Example:
        >>> stats = pd.DataFrame({"programme": "breast", "year": [2018, 2018, 2018, 2019], "area_id": ["A", "B", "B", "A"],
        ...                       "sex": 2, "age_band": [50, 50, 55, 50], "tested": [120, 80, 40, 100]})
        >>> areas = pd.DataFrame({"area_id": ["A", "B"], "deprivation_quintile": [1, 5], "region": ["London", "North"]})
        >>> print(screened_women(stats, areas, programme="breast", years=[2018, 2018], sex=2).to_string())
           year  age_band  deprivation_quintile  london  tested
        0  2018        50                     1    True     120
        1  2018        50                     5   False      80
        2  2018        55                     5   False      40
        >>> screened_women(stats, areas, programme="bowel", years=[2018, 2019], sex=2)
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: screening statistics: no bowel screens (sex 2) recorded in 2018-2019 (is the programme switched off in this cohort?); detection rates and sensitivity need women screened
    """
    _require(statistics, ["programme", "year", "area_id", "sex", "age_band", "tested"], "screening statistics")
    s = statistics[(statistics["programme"] == programme) & statistics["year"].between(years[0], years[1])]
    if sex is not None:
        s = s[s["sex"] == sex]
    if not len(s) or s["tested"].sum() <= 0:
        who = "" if sex is None else f" (sex {sex})"
        raise RegistryLabError(f"screening statistics: no {programme} screens{who} recorded in {years[0]}-{years[1]} "
                               "(is the programme switched off in this cohort?); detection rates and "
                               "sensitivity need women screened")
    s = _with_stratum(s, areas)
    return s.groupby(["year", "age_band", "deprivation_quintile", "london"], as_index=False)["tested"].sum()


def _with_stratum(df: pd.DataFrame, areas: pd.DataFrame) -> pd.DataFrame:
    a = areas.set_index("area_id")
    return df.assign(deprivation_quintile=df["area_id"].map(a["deprivation_quintile"]).astype("Int64"),
                     london=(df["area_id"].map(a["region"]) == "London"))


def underlying_incidence(tumours: pd.DataFrame, population: pd.DataFrame, areas: pd.DataFrame, *,
                         years: Sequence[int], sex: int | None, age_range: Sequence[int]) -> pd.DataFrame:
    """Incidence per woman-year by 5-year age band, quintile and London: every first tumour of
    the programme's sites (all detection modes: diagnosis dates are not moved by screening here).

    Example:
        >>> tum = pd.DataFrame({"diagnosis_date": pd.to_datetime(["2018-03-01", "2018-09-01", "2019-01-01", "2018-05-01"]),
        ...                     "age_at_diagnosis": [52, 58, 53, 49], "area_id": ["A", "A", "A", "B"]})
        >>> pop = pd.DataFrame({"year": 2018, "sex": 2, "area_id": ["A", "A", "B"], "age_band": [50, 55, 45],
        ...                     "population": [1000, 800, 500]})
        >>> areas = pd.DataFrame({"area_id": ["A", "B"], "deprivation_quintile": [1, 5], "region": ["London", "North"]})
        >>> inc = underlying_incidence(tum, pop, areas, years=[2018, 2018], sex=2, age_range=[50, 70])
        >>> print(inc.to_string())   # 2019 and the 49-year-old are outside the study
           age_band  deprivation_quintile  london  cases  person_years     rate  rate_var
        0        50                     1    True    1.0          1000  0.00100  0.000001
        1        55                     1    True    1.0           800  0.00125  0.000002
        2        45                     5   False    0.0           500  0.00000  0.000000
    """
    t = tumours[tumours["diagnosis_date"].dt.year.between(years[0], years[1])].copy()
    t["age_band"] = (t["age_at_diagnosis"].astype(int) // 5 * 5).clip(upper=90)
    t = t[t["age_band"].between(age_range[0] // 5 * 5, age_range[1])]
    t = t.dropna(subset=["area_id"])
    t = _with_stratum(t, areas)
    cases = t.groupby(["age_band", "deprivation_quintile", "london"]).size().rename("cases")
    p = population[population["year"].between(years[0], years[1])]
    if sex is not None:
        p = p[p["sex"] == sex]
    p = _with_stratum(p, areas)
    py = p.groupby(["age_band", "deprivation_quintile", "london"])["population"].sum().rename("person_years")
    out = pd.concat([cases, py], axis=1).fillna({"cases": 0}).reset_index()
    out = out[out["person_years"] > 0]
    out["rate"] = out["cases"] / out["person_years"]
    out["rate_var"] = out["cases"] / out["person_years"] ** 2
    return out


def detection_rates(classified: pd.DataFrame, screened: pd.DataFrame, *, years: Sequence[int],
                    age_range: Sequence[int], interval_years: int, level: float = 0.95) -> dict[str, pd.DataFrame]:
    """Screen-detected cancers per 1,000 women screened by screen year, and interval cancers per
    1,000 by year since the screen (screens in ``years``), with exact Poisson CIs.

    Example:
        >>> c = pd.DataFrame({"detection": ["screen_detected", "screen_detected", "interval", "interval", "lapsed"],
        ...                   "screen_date": pd.to_datetime(["2018-03-01", "2019-05-01", "2018-06-01", "2018-02-01", None]),
        ...                   "years_since_screen": [0.0, 0.0, 0.4, 2.5, None], "age_at_diagnosis": [55, 60, 57, 66, 70]})
        >>> screened = pd.DataFrame({"year": [2018, 2019], "tested": [1000, 500]})
        >>> r = detection_rates(c, screened, years=[2018, 2019], age_range=[50, 70], interval_years=3)
        >>> print(r["by_screen_year"].round(2).to_string())
           screen_year  women_screened  screen_detected  per_1000  lower  upper
        0         2018            1000                1       1.0   0.03   5.57
        1         2019             500                1       2.0   0.05  11.14
        >>> print(r["by_year_since_screen"][["year_since_screen", "interval_cancers", "per_1000"]].to_string())
           year_since_screen  interval_cancers  per_1000
        0                  1                 1  0.666667
        1                  2                 0  0.000000
        2                  3                 1  0.666667
        >>> print(r["summary"].to_string())
           women_screened  screen_detected  interval_cancers  interval_cancer_proportion
        0            1500                2                 2                         0.5
    """
    c = classified[classified["screen_date"].notna()].copy()
    c["screen_year"] = c["screen_date"].dt.year
    c["screen_age"] = c["age_at_diagnosis"] - c["years_since_screen"].fillna(0)
    c = c[c["screen_year"].between(years[0], years[1]) & c["screen_age"].between(age_range[0], age_range[1] + 1)]
    tested = screened.groupby("year")["tested"].sum()
    sd = c[c["detection"] == "screen_detected"].groupby("screen_year").size().reindex(tested.index, fill_value=0)
    by_year = pd.DataFrame({"screen_year": tested.index, "women_screened": tested.to_numpy(),
                            "screen_detected": sd.to_numpy()})
    by_year = _per_1000(by_year, "screen_detected", "women_screened", level)
    ic = c[c["detection"] == "interval"].copy()
    ic["year_since_screen"] = np.minimum(np.floor(ic["years_since_screen"]).astype(int), interval_years - 1) + 1
    k = ic.groupby("year_since_screen").size().reindex(range(1, interval_years + 1), fill_value=0)
    total = int(tested.sum())
    by_k = pd.DataFrame({"year_since_screen": k.index, "women_screened": total, "interval_cancers": k.to_numpy()})
    by_k = _per_1000(by_k, "interval_cancers", "women_screened", level)
    n_sd = int(sd.sum())
    n_ic = int(k.sum())
    summary = pd.DataFrame([{"women_screened": total, "screen_detected": n_sd, "interval_cancers": n_ic,
                             "interval_cancer_proportion": n_ic / (n_sd + n_ic) if n_sd + n_ic else np.nan}])
    return {"by_screen_year": by_year, "by_year_since_screen": by_k, "summary": summary}


def _per_1000(df: pd.DataFrame, count: str, denom: str, level: float) -> pd.DataFrame:
    a = (1 - level) / 2
    x = df[count].to_numpy(dtype=float)
    n = df[denom].to_numpy(dtype=float)
    lo = np.where(x > 0, st.chi2.ppf(a, 2 * x) / 2, 0.0)
    hi = st.chi2.ppf(1 - a, 2 * x + 2) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return df.assign(per_1000=1000 * x / n, lower=1000 * lo / n, upper=1000 * hi / n)


def proportional_incidence(classified: pd.DataFrame, screened: pd.DataFrame, incidence: pd.DataFrame, *,
                           years: Sequence[int], age_range: Sequence[int], interval_years: int,
                           level: float = 0.95) -> dict[str, Any]:
    """Proportional incidence of interval cancers by year since screen and programme sensitivity.

    Expected cancers in year ``k`` after the screens of ``years`` = sum over strata of the women
    tested times the underlying incidence of their stratum (one woman-year each). Returns
    ``{"by_year": DataFrame, "sensitivity": dict}``.

    Example:
        >>> c = pd.DataFrame({"detection": ["interval", "interval", "interval"],
        ...                   "screen_date": pd.to_datetime(["2018-06-01", "2018-02-01", "2018-04-01"]),
        ...                   "years_since_screen": [0.4, 1.2, 2.5], "age_at_diagnosis": [57, 61, 66]})
        >>> screened = pd.DataFrame({"year": 2018, "age_band": [50, 60], "deprivation_quintile": [1, 1],
        ...                          "london": False, "tested": [1000, 1000]})
        >>> inc = pd.DataFrame({"age_band": [50, 60], "deprivation_quintile": [1, 1], "london": False,
        ...                     "rate": [0.002, 0.003], "rate_var": [1e-8, 1e-8]})
        >>> r = proportional_incidence(c, screened, inc, years=[2018, 2018], age_range=[50, 70], interval_years=3)
        >>> print(r["by_year"][["year_since_screen", "interval_cancers", "expected", "proportional_incidence"]].to_string())
           year_since_screen  interval_cancers  expected  proportional_incidence
        0                  1                 1       5.0                     0.2
        1                  2                 1       5.0                     0.2
        2                  3                 1       5.0                     0.2
        >>> s = r["sensitivity"]
        >>> round(float(s["sensitivity"]), 3), round(float(s["lower"]), 3), round(float(s["upper"]), 3), s["expected"]
        (0.8, 0.379, 0.936, 15.0)
    """
    z = st.norm.ppf(0.5 + level / 2)
    keys = ["age_band", "deprivation_quintile", "london"]
    s = screened.merge(incidence[[*keys, "rate", "rate_var"]], on=keys, how="left").fillna({"rate": 0, "rate_var": 0})
    expected = float((s["tested"] * s["rate"]).sum())
    if expected <= 0:
        raise RegistryLabError("proportional incidence: no cancers expected among the women screened (no underlying "
                               "incidence in their strata); sensitivity cannot be estimated")
    e_var = float((s["tested"] ** 2 * s["rate_var"]).sum())
    rates = detection_rates(classified, screened, years=years, age_range=age_range, interval_years=interval_years,
                            level=level)
    k = rates["by_year_since_screen"]
    ic = k["interval_cancers"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = ic / expected
        se = np.sqrt(1 / ic + e_var / expected ** 2)
    by_year = pd.DataFrame({"year_since_screen": k["year_since_screen"], "interval_cancers": ic.astype(int),
                            "expected": expected, "proportional_incidence": pi,
                            "lower": pi * np.exp(-z * se), "upper": pi * np.exp(z * se)})
    total_ic = ic.sum()
    total_e = expected * len(ic)
    ratio = total_ic / total_e
    se_t = np.sqrt(1 / total_ic + e_var / expected ** 2) if total_ic > 0 else np.inf
    sens = {"sensitivity": 1 - ratio, "lower": 1 - ratio * np.exp(z * se_t), "upper": 1 - ratio * np.exp(-z * se_t),
            "interval_cancers": int(total_ic), "expected": total_e, "method": "proportional incidence"}
    return {"by_year": by_year, "sensitivity": sens}


def stage_by_detection(classified: pd.DataFrame, groups: dict[str, Sequence[str]]) -> pd.DataFrame:
    """Counts by stage (1-4, unknown) and detection group, with the share of known stage 3-4.

    Example:
        >>> c = pd.DataFrame({"detection": ["screen_detected", "screen_detected", "interval", "interval", "lapsed", "not_invited"],
        ...                   "stage": ["1", "2", "3", None, "4", "2"]})
        >>> groups = {"screen-detected": ["screen_detected"], "interval": ["interval"], "not screened": ["lapsed", "never_screened"]}
        >>> print(stage_by_detection(c, groups).to_string())
        stage        detection  stage_1  stage_2  stage_3  stage_4  stage_unknown  late_stage_share
        0      screen-detected        1        1        0        0              0               0.0
        1             interval        0        0        1        0              1               1.0
        2         not screened        0        0        0        1              0               1.0
    """
    c = classified.copy()
    label = {m: g for g, ms in groups.items() for m in ms}
    c["group"] = c["detection"].map(label)
    c = c[c["group"].notna()]
    stage = c["stage"].astype("string").where(c["stage"].astype("string").isin(["1", "2", "3", "4"]), "unknown")
    table = pd.crosstab(c["group"], stage).reindex(columns=["1", "2", "3", "4", "unknown"], fill_value=0)
    table = table.reindex(list(groups), fill_value=0)
    known = table[["1", "2", "3", "4"]].sum(axis=1)
    out = table.reset_index().rename(columns={"group": "detection", **{s: f"stage_{s}" for s in ["1", "2", "3", "4"]},
                                              "unknown": "stage_unknown"})
    out["late_stage_share"] = ((table["3"] + table["4"]) / known.replace(0, np.nan)).to_numpy()
    return out


def survival_by_detection(classified: pd.DataFrame, groups: dict[str, Sequence[str]], *, censor_date: str,
                          times_years: Sequence[float], level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier survival (all-cause) by detection group at ``times_years``.

    Example:
        >>> c = pd.DataFrame({"detection": ["screen_detected"] * 3 + ["interval"] * 3,
        ...                   "diagnosis_date": pd.to_datetime(["2015-01-01"] * 6),
        ...                   "death_date": [None, None, "2017-01-01", "2015-07-01", "2016-07-01", None]})
        >>> km = survival_by_detection(c, {"screen-detected": ["screen_detected"], "interval": ["interval"]},
        ...                            censor_date="2020-12-31", times_years=[1, 5])
        >>> print(km.round(3).to_string())
                     group  time  n_at_risk  n_events  n_censored  survival  lower  upper
        0         interval   1.0          2         1           0     0.667  0.054  0.945
        1         interval   5.0          1         1           0     0.333  0.009  0.774
        2  screen-detected   1.0          3         0           0     1.000  1.000  1.000
        3  screen-detected   5.0          2         1           0     0.667  0.054  0.945
    """
    from registry_lib.stats.survival_curves import km_table

    c = classified.copy()
    label = {m: g for g, ms in groups.items() for m in ms}
    c["group"] = c["detection"].map(label)
    c = c[c["group"].notna()]
    end = pd.Timestamp(censor_date)
    death = pd.to_datetime(c["death_date"])
    stop = death.where(death.notna() & (death <= end), end)
    c["years"] = ((stop - c["diagnosis_date"]).dt.days / YEAR).clip(lower=0)
    c["died"] = (death.notna() & (death <= end)).astype(int)
    return km_table(c, "years", "died", "group", times=list(times_years), level=level)


def truth_agreement(classified: pd.DataFrame, truth: pd.DataFrame, *, tumour_map: pd.Series) -> dict[str, Any]:
    """Validation only: the classification against the generator's truth.

    ``tumour_map`` maps the classified tumours' ``tumour_id`` to true tumour ids. Returns the
    agreement, the confusion table and the disagreeing tumours.

    Example:
        >>> c = pd.DataFrame({"tumour_id": [11, 12, 13, 14], "detection": ["screen_detected", "interval", "lapsed", "interval"]})
        >>> truth = pd.DataFrame({"tumour_id": [1, 2, 3, 4], "detection": ["screen_detected", "interval", "interval", "not_eligible"]})
        >>> r = truth_agreement(c, truth, tumour_map=pd.Series([1, 2, 3], index=[11, 12, 13]))   # 14 has no true tumour
        >>> r["compared"], round(r["agreement"], 3), round(r["interval_agreement"], 3)
        (3, 0.667, 0.667)
        >>> r["disagreements"][["tumour_id", "detection", "truth"]].values.tolist()
        [[13, 'lapsed', 'interval']]
    """
    c = classified.assign(true_tumour=classified["tumour_id"].map(tumour_map))
    t = truth.assign(truth=truth["detection"].map(TRUTH_LABEL))[["tumour_id", "truth"]]
    m = c.merge(t, left_on="true_tumour", right_on="tumour_id", how="inner", suffixes=("", "_true"))
    agree = (m["detection"] == m["truth"]).to_numpy()
    confusion = pd.crosstab(m["truth"], m["detection"])
    ic_true = (m["truth"] == "interval").to_numpy()
    ic_est = (m["detection"] == "interval").to_numpy()
    return {"compared": int(len(m)), "agreement": float(agree.mean()) if len(m) else float("nan"),
            "interval_agreement": float((ic_true == ic_est).mean()) if len(m) else float("nan"),
            "confusion": confusion, "disagreements": m.loc[~agree]}


def truth_tumour_map(record_links: pd.DataFrame, record_truth: pd.DataFrame) -> pd.Series:
    """Validation only: registry tumour id -> true tumour id, through the notifications behind
    each registry tumour (the true tumour holding most of them).

    Example:
        >>> links = pd.DataFrame({"feed": ["notifications"] * 4 + ["screening"], "record_id": [1, 2, 3, 4, 5],
        ...                       "tumour_id": [100, 100, 100, 200, 100]})
        >>> truth = pd.DataFrame({"feed": ["notifications"] * 4 + ["screening"], "record_id": ["1", "2", "3", "4", "5"],
        ...                       "tumour_id": [7, 7, 8, 9, 8]})
        >>> truth_tumour_map(links, truth).to_dict()   # registry tumour 100 holds two notifications of true tumour 7
        {100: 7, 200: 9}
    """
    links = record_links[(record_links["feed"] == "notifications") & record_links["tumour_id"].notna()]
    rt = record_truth[record_truth["feed"] == "notifications"][["record_id", "tumour_id"]]
    m = links[["record_id", "tumour_id"]].astype({"record_id": str}).merge(
        rt.astype({"record_id": str}), on="record_id", suffixes=("", "_true"))
    m = m.dropna(subset=["tumour_id_true"])
    top = (m.groupby(["tumour_id", "tumour_id_true"]).size().rename("n").reset_index()
           .sort_values(["tumour_id", "n", "tumour_id_true"], ascending=[True, False, True])
           .drop_duplicates("tumour_id"))
    return pd.Series(top["tumour_id_true"].astype("int64").to_numpy(), index=top["tumour_id"].astype("int64").to_numpy())


def explain_disagreements(disagreements: pd.DataFrame, record_links: pd.DataFrame, record_truth: pd.DataFrame,
                          true_tumours: pd.DataFrame) -> pd.DataFrame:
    """Validation only: why each disagreeing tumour was misclassified.

    ``screening records lost or mislinked``: the true person's screening records are not all
    linked to the registry person (quarantined, or linked to someone else); ``identifier
    errors``: they are, but carry injected identifier errors; ``other``: neither (the rule itself).

    Example:
        >>> d = pd.DataFrame({"true_tumour": [1, 2, 3], "patient_id": [10, 20, 30]})
        >>> true_tumours = pd.DataFrame({"tumour_id": [1, 2, 3], "patient_id": [501, 502, 503]})
        >>> truth = pd.DataFrame({"feed": "screening", "record_id": ["s1", "s2", "s3"], "patient_id": [501, 502, 503],
        ...                       "errors": [None, "nhs_number_typo", None]})
        >>> links = pd.DataFrame({"feed": "screening", "record_id": ["s1", "s2", "s3"], "patient_id": [99, 20, 30]})
        >>> print(explain_disagreements(d, links, truth, true_tumours).to_string())   # s1 linked to someone else
                                        reason  tumours
        0  screening records lost or mislinked        1
        1                    identifier errors        1
        2                                other        1
    """
    if disagreements.empty:
        return pd.DataFrame({"reason": [], "tumours": []})
    rt = record_truth[record_truth["feed"] == "screening"].astype({"record_id": str})
    rl = record_links[record_links["feed"] == "screening"].astype({"record_id": str})
    true_pid = true_tumours.set_index("tumour_id")["patient_id"]
    d = disagreements.assign(true_patient=disagreements["true_tumour"].map(true_pid))
    recs = rt[rt["patient_id"].isin(set(d["true_patient"]))].merge(rl[["record_id", "patient_id"]], on="record_id",
                                                                     how="left", suffixes=("", "_registry"))
    reg_pid = d.set_index("true_patient")["patient_id"] if "patient_id" in d else None
    recs["expected_registry"] = recs["patient_id"].map(reg_pid) if reg_pid is not None else np.nan
    recs["_lost"] = (recs["patient_id_registry"].isna() | (recs["patient_id_registry"] != recs["expected_registry"])
                     ).fillna(True).astype(bool)
    recs["_err"] = recs["errors"].fillna("").astype(str) != ""
    lost = recs.groupby("patient_id")["_lost"].any()
    errs = recs.groupby("patient_id")["_err"].any()
    reason = np.where(d["true_patient"].map(lost).fillna(False).astype(bool), "screening records lost or mislinked",
                      np.where(d["true_patient"].map(errs).fillna(False).astype(bool), "identifier errors", "other"))
    return pd.Series(reason).value_counts().rename_axis("reason").rename("tumours").reset_index()
