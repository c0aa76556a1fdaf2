"""Study 06: patient experience (the National Cancer Patient Experience Survey, CPES).

The logic behind ``notebooks/06_patient_experience.ipynb`` (parameters in
``params/studies/patient_experience.yaml``):

1. :func:`survey_sample` — the CPES sample of the release joined to the patient (sex,
   ethnicity, deprivation) and the tumour of the episode (age, stage, route, tumour group);
2. :func:`response_rates` and :func:`non_response_model` — response by group and the adjusted
   odds ratios of responding (who does not answer);
3. :func:`national_results` — the mean overall rating and % positive per question with CIs;
4. :func:`casemix_adjusted` — trust results adjusted as NHS England publishes them (indirect
   standardisation on age, sex, ethnicity, deprivation and tumour group: a trust's adjusted
   score is the national score plus its observed minus its expected score), with funnel-plot
   limits at 95% and 99.8% and outlier flags;
5. :func:`response_weights` and :func:`weighted_results` — experience by route, stage and
   deprivation weighted for non-response (inverse probability of responding);
6. :func:`route_effect` — the difference in overall rating for emergency presentations,
   adjusted for case mix, stage and trust, with its CI.

Example:
    >>> tumour_group(pd.Series(["C50", "C18", "C34", "C91"])).tolist()
    ['Breast', 'Colorectal', 'Lung', 'Haematological']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats as st

from registry_lib.errors import RegistryLabError

QUESTIONS = {
    "overall_rating": "Overall rating of care (0-10, mean)",
    "cns_name": "Given the name of a clinical nurse specialist (%)",
    "told_sensitively": "Told sensitively that they had cancer (%)",
    "involved_decisions": "Involved as much as wanted in treatment decisions (%)",
    "support_after_treatment": "Given enough support after treatment (%)",
}
CASEMIX = ("age_band", "sex", "ethnicity", "deprivation_quintile", "tumour_group")
EMERGENCY = "Emergency presentation"
_GROUPS = [
    ("Breast", ["C50"]), ("Colorectal", ["C18", "C19", "C20", "C21"]), ("Lung", ["C33", "C34"]),
    ("Prostate", ["C61"]), ("Upper gastro", ["C15", "C16", "C17", "C22", "C23", "C24", "C25"]),
    ("Urological", ["C60", "C62", "C63", "C64", "C65", "C66", "C67", "C68"]),
    ("Gynaecological", ["C51", "C52", "C53", "C54", "C55", "C56", "C57", "C58"]),
    ("Skin", ["C43", "C44"]), ("Head and neck", [f"C{i:02d}" for i in range(0, 15)] + ["C30", "C31", "C32", "C73"]),
    ("Brain/CNS", ["C70", "C71", "C72"]),
    ("Haematological", [f"C{i}" for i in range(81, 97)]),
]
_GROUP_OF = {s: g for g, sites in _GROUPS for s in sites}


def tumour_group(site: pd.Series) -> pd.Series:
    """The CPES tumour group of ICD-10 sites (3 characters); others are "Other".

    Example:
        >>> tumour_group(pd.Series(["C619", "C443", "C67", "C80", None])).tolist()
        ['Prostate', 'Skin', 'Urological', 'Other', 'Other']
    """
    return site.astype("string").str[:3].map(_GROUP_OF).fillna("Other").astype(str)


def survey_sample(release: dict[str, pd.DataFrame], *, key: str = "pseudo_id") -> pd.DataFrame:
    """The CPES sample with the case-mix columns (see the module docstring).

    Example:
        >>> release = {
        ...     "cpes": pd.DataFrame({"pseudo_id": ["p1", "p2"], "tumour_id": ["t1", "t2"], "site_icd10": ["C50", "C34"],
        ...                           "episode_date": ["2022-03-01", "2022-06-01"], "trust_code": ["RA1", "RB2"],
        ...                           "responded": [1, 0], "overall_rating": [9, None], "cns_name": [1, None],
        ...                           "told_sensitively": [1, None], "involved_decisions": [0, None],
        ...                           "support_after_treatment": [None, None]}),
        ...     "patient": pd.DataFrame({"pseudo_id": ["p1", "p2"], "sex": [2, 1], "ethnicity": ["White", None],
        ...                              "deprivation_quintile": [1, None], "region": ["North", "South"]}),
        ...     "tumour": pd.DataFrame({"tumour_id": ["t1", "t2"], "diagnosis_date": ["2021-09-01", "2022-01-01"],
        ...                             "age_at_diagnosis": [64.5, 80], "stage": ["2", "X"],
        ...                             "route_to_diagnosis": ["Screening", "Emergency presentation"]})}
        >>> s = survey_sample(release)
        >>> print(s[["pseudo_id", "age_band", "ethnicity", "deprivation_quintile", "tumour_group", "stage",
        ...          "emergency", "responded"]].to_string())
          pseudo_id age_band ethnicity deprivation_quintile tumour_group    stage  emergency  responded
        0        p1    55-64     White                    1       Breast        2          0       True
        1        p2    75-84   Unknown              unknown         Lung  unknown          1      False
        >>> survey_sample({"cpes": release["cpes"]})
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: release: no patient table (the policy must list it to study patient experience)
    """
    for name in ("cpes", "patient", "tumour"):
        if name not in release:
            raise RegistryLabError(f"release: no {name} table (the policy must list it to study patient experience)")
    c = release["cpes"].copy()
    p = release["patient"][[key, "sex", "ethnicity", "deprivation_quintile", "region"]]
    t = release["tumour"][["tumour_id", "diagnosis_date", "age_at_diagnosis", "stage", "route_to_diagnosis"]]
    c = c.merge(p, on=key, how="left").merge(t, on="tumour_id", how="left")
    c["episode_date"] = pd.to_datetime(c["episode_date"])
    years = (c["episode_date"] - pd.to_datetime(c["diagnosis_date"])).dt.days / 365.25
    c["age"] = c["age_at_diagnosis"].astype(float) + years.fillna(0).clip(lower=0)
    bands = [16, 25, 35, 45, 55, 65, 75, 85, 200]
    labels = ["16-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75-84", "85+"]
    c["age_band"] = pd.cut(c["age"], bands, right=False, labels=labels).astype("string").fillna("unknown")
    c["sex"] = c["sex"].astype("Int64").astype("string").fillna("unknown")
    c["ethnicity"] = c["ethnicity"].astype("string").fillna("Unknown")
    c["deprivation_quintile"] = c["deprivation_quintile"].astype("Int64").astype("string").fillna("unknown")
    c["tumour_group"] = tumour_group(c["site_icd10"])
    c["stage"] = c["stage"].astype("string").where(c["stage"].astype("string").isin(["1", "2", "3", "4"]), "unknown")
    c["route_to_diagnosis"] = c["route_to_diagnosis"].astype("string").fillna("Unknown")
    c["emergency"] = (c["route_to_diagnosis"] == EMERGENCY).astype(int)
    c["responded"] = c["responded"].astype(bool)
    for q in QUESTIONS:
        c[q] = pd.to_numeric(c[q].astype("Float64"), errors="coerce").astype(float)
    return c


def _wilson(x: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    z = st.norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / n
        centre = (p + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2)) / (1 + z ** 2 / n)
    return centre - half, centre + half


def response_rates(sample: pd.DataFrame, by: Sequence[str], level: float = 0.95) -> pd.DataFrame:
    """Sampled, responded and the response rate (Wilson CI) by each grouping in ``by`` (long table).

    Example:
        >>> s = pd.DataFrame({"sex": ["1", "2"] * 6, "responded": [True, False, True, False, False, True,
        ...                                                      True, False, True, True, True, True]})
        >>> print(response_rates(s, ["sex"]).round(3).to_string())
          grouping level  sampled  responded  response_rate  lower  upper
        0      sex     1        6          5          0.833  0.436  0.970
        1      sex     2        6          3          0.500  0.188  0.812
    """
    parts = []
    for g in by:   # a few groupings
        t = sample.groupby(g, observed=True)["responded"].agg(sampled="size", responded="sum").reset_index()
        t = t.rename(columns={g: "level"}).assign(grouping=g)
        parts.append(t)
    out = pd.concat(parts, ignore_index=True)[["grouping", "level", "sampled", "responded"]]
    lo, hi = _wilson(out["responded"].to_numpy(float), out["sampled"].to_numpy(float), level)
    out["response_rate"] = out["responded"] / out["sampled"]
    out["lower"], out["upper"] = lo, hi
    out["level"] = out["level"].astype(str)
    return out


def _design(df: pd.DataFrame, columns: Sequence[str], reference: dict[str, str] | None = None) -> pd.DataFrame:
    """Dummy-coded covariates (first level, or the given reference, dropped) with a constant."""
    parts = []
    for col in columns:   # a few covariates
        values = df[col].astype(str)
        levels = sorted(values.unique())
        ref = (reference or {}).get(col, levels[0])
        for lv in levels:
            if lv != ref:
                parts.append(pd.Series((values == lv).astype(float).to_numpy(), name=f"{col}[{lv}]", index=df.index))
    x = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=df.index)
    x = x.loc[:, x.std() > 0] if len(x.columns) else x
    return sm.add_constant(x, has_constant="add")


def non_response_model(sample: pd.DataFrame, covariates: Sequence[str] = CASEMIX,
                       level: float = 0.95) -> pd.DataFrame:
    """Adjusted odds ratios of responding (logistic regression on the case-mix covariates).

    Example:
        >>> s = pd.DataFrame({"sex": ["1", "2"] * 6, "responded": [True, False, True, False, False, True,
        ...                                                      True, False, True, True, True, True]})
        >>> print(non_response_model(s, ["sex"]).round(3).to_string())   # women: 3/6 answer, men 5/6
             term  odds_ratio  lower  upper  p_value
        0  sex[2]         0.2  0.014  2.911    0.239
    """
    x = _design(sample, covariates)
    fit = sm.GLM(sample["responded"].astype(float), x, family=sm.families.Binomial()).fit()
    ci = fit.conf_int(1 - level)
    out = pd.DataFrame({"term": fit.params.index, "odds_ratio": np.exp(fit.params.to_numpy()),
                        "lower": np.exp(ci[0].to_numpy()), "upper": np.exp(ci[1].to_numpy()),
                        "p_value": fit.pvalues.to_numpy()})
    return out[out["term"] != "const"].reset_index(drop=True)


def response_weights(sample: pd.DataFrame, covariates: Sequence[str] = CASEMIX) -> pd.Series:
    """Inverse-probability-of-response weights of the respondents (mean 1), from the logistic
    model of :func:`non_response_model`; non-respondents get 0.

    Example:
        >>> s = pd.DataFrame({"sex": ["1", "2"] * 6, "responded": [True, False, True, False, False, True,
        ...                                                      True, False, True, True, True, True]})
        >>> response_weights(s, ["sex"]).round(3).tolist()   # women answer less often: they weigh more
        [0.8, 0.0, 0.8, 0.0, 0.0, 1.333, 0.8, 0.0, 0.8, 1.333, 0.8, 1.333]
    """
    x = _design(sample, covariates)
    fit = sm.GLM(sample["responded"].astype(float), x, family=sm.families.Binomial()).fit()
    p = np.clip(fit.predict(x).to_numpy(), 1e-3, 1.0)
    w = np.where(sample["responded"].to_numpy(), 1.0 / p, 0.0)
    resp = sample["responded"].to_numpy()
    w[resp] = w[resp] / w[resp].mean()
    return pd.Series(w, index=sample.index, name="weight")


def national_results(respondents: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean overall rating (t CI) and % positive per yes/no question (Wilson CI).

    Example:
        >>> r = pd.DataFrame({"overall_rating": [9, 7, 10, 8, None], "cns_name": [1, 1, 0, 1, 1],
        ...                   "told_sensitively": [1, 1, 1, 1, 0], "involved_decisions": [0, 1, 1, None, 1],
        ...                   "support_after_treatment": [1, 0, 1, 0, 1]})
        >>> print(national_results(r)[["question", "n", "estimate", "lower", "upper"]].round(1).to_string())
                          question  n  estimate  lower  upper
        0           overall_rating  4       8.5    7.2    9.8
        1                 cns_name  5      80.0   37.6   96.4
        2         told_sensitively  5      80.0   37.6   96.4
        3       involved_decisions  4      75.0   30.1   95.4
        4  support_after_treatment  5      60.0   23.1   88.2
    """
    rows = []
    z = st.norm.ppf(0.5 + level / 2)
    for q, label in QUESTIONS.items():   # five questions
        v = respondents[q].dropna().to_numpy(float)
        n = len(v)
        if q == "overall_rating":
            m = v.mean()
            se = v.std(ddof=1) / np.sqrt(n)
            rows.append({"question": q, "label": label, "n": n, "estimate": m, "lower": m - z * se,
                         "upper": m + z * se})
        else:
            lo, hi = _wilson(np.array([v.sum()]), np.array([float(n)]), level)
            rows.append({"question": q, "label": label, "n": n, "estimate": 100 * v.mean(), "lower": 100 * lo[0],
                         "upper": 100 * hi[0]})
    return pd.DataFrame(rows)


def casemix_adjusted(respondents: pd.DataFrame, question: str, covariates: Sequence[str] = CASEMIX,
                     limits: Sequence[float] = (0.95, 0.998)) -> pd.DataFrame:
    """Case-mix-adjusted trust scores with funnel-plot limits and outlier flags.

    The expected score of each respondent comes from a model of the answer on the case-mix
    covariates only (linear for the rating, logistic for yes/no items) fitted on all
    respondents; a trust's adjusted score is ``national + observed_mean - expected_mean``. Limits around
    the national score are ``national ± z · sd / sqrt(n)`` (``sd`` the residual SD for the
    rating, ``sqrt(p(1-p))`` for items); a trust is flagged at a level when its adjusted score
    lies outside that level's limits.

    Example:
        >>> r = pd.DataFrame({"trust_code": ["RA1"] * 4 + ["RB2"] * 4 + ["RC3"] * 4,
        ...                   "sex": ["1", "2", "2", "2", "1", "1", "1", "2", "1", "2", "1", "2"],
        ...                   "overall_rating": [9, 8, 8, 7, 8, 6, 7, 7, 9, 8, 9, 8]})
        >>> t = casemix_adjusted(r, "overall_rating", ["sex"])
        >>> print(t[["trust_code", "n", "observed_mean", "expected_mean", "adjusted", "z"]].round(3).to_string())
          trust_code  n  observed_mean  expected_mean  adjusted      z
        0        RA1  4            8.0          7.750     8.083  0.518
        1        RB2  4            7.0          7.917     6.917 -1.898
        2        RC3  4            8.5          7.833     8.500  1.380
        >>> round(float(t["national"].iloc[0]), 3), round(float(t["lower_95"].iloc[0]), 3)
        (7.833, 6.887)
    """
    d = respondents[respondents[question].notna()].copy()
    y = d[question].to_numpy(float)
    x = _design(d, covariates)
    binary = question != "overall_rating"
    if binary:
        fit = sm.GLM(y, x, family=sm.families.Binomial()).fit()
        expected = fit.predict(x).to_numpy()
    else:
        fit = sm.OLS(y, x).fit()
        expected = fit.fittedvalues.to_numpy()
    national = float(y.mean())
    d = d.assign(_y=y, _e=expected)
    t = d.groupby("trust_code").agg(n=("_y", "size"), observed_mean=("_y", "mean"),
                                    expected_mean=("_e", "mean")).reset_index()
    t["adjusted"] = national + t["observed_mean"] - t["expected_mean"]
    sd = np.sqrt(national * (1 - national)) if binary else float(np.sqrt(fit.scale))
    se = sd / np.sqrt(t["n"].to_numpy(float))
    t["z"] = (t["adjusted"] - national) / se
    for lv in limits:   # two limit levels
        zc = st.norm.ppf(0.5 + lv / 2)
        tag = f"{100 * lv:g}".replace(".", "_")
        t[f"lower_{tag}"] = national - zc * se
        t[f"upper_{tag}"] = national + zc * se
        t[f"outlier_{tag}"] = np.where(t["adjusted"] < t[f"lower_{tag}"], "below",
                                       np.where(t["adjusted"] > t[f"upper_{tag}"], "above", ""))
    t.insert(1, "question", question)
    t["national"] = national
    return t.sort_values("trust_code", kind="stable").reset_index(drop=True)


def funnel_plot(table: pd.DataFrame, ax: Any, *, title: str = "", scale: float = 1.0) -> Any:
    """Draw a funnel plot of :func:`casemix_adjusted` on ``ax`` (95% and 99.8% limits).

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> r = pd.DataFrame({"trust_code": ["RA1"] * 4 + ["RB2"] * 4 + ["RC3"] * 4,
        ...                   "sex": ["1", "2", "2", "2", "1", "1", "1", "2", "1", "2", "1", "2"],
        ...                   "overall_rating": [9, 8, 8, 7, 8, 6, 7, 7, 9, 8, 9, 8]})
        >>> fig, ax = plt.subplots()
        >>> ax = funnel_plot(casemix_adjusted(r, "overall_rating", ["sex"]), ax, title="Overall rating")
        >>> ax.get_ylabel(), len(ax.lines), [t.get_text() for t in ax.get_legend().get_texts()]
        ('mean rating (case-mix adjusted)', 5, ['95% limits', '99.8% limits', 'trust', 'outside 99.8%'])
        >>> plt.close(fig)
    """
    national = float(table["national"].iloc[0]) * scale
    n = np.linspace(max(table["n"].min() * 0.8, 5), table["n"].max() * 1.1, 200)
    binary = table["question"].iloc[0] != "overall_rating"
    se_unit = (table["upper_95"] - table["national"]).to_numpy()[0] * np.sqrt(table["n"].to_numpy()[0]) / \
        st.norm.ppf(0.975)
    for lv, style in ((0.95, "--"), (0.998, ":")):   # two limit levels
        zc = st.norm.ppf(0.5 + lv / 2)
        ax.plot(n, (national + zc * se_unit * scale / np.sqrt(n)), "k" + style, lw=0.9,
                label=f"{100 * lv:g}% limits")
        ax.plot(n, (national - zc * se_unit * scale / np.sqrt(n)), "k" + style, lw=0.9)
    ax.axhline(national, color="grey", lw=0.8)
    flag = table["outlier_99_8"] != ""
    ax.scatter(table["n"], table["adjusted"] * scale, s=18, color="tab:blue", label="trust")
    ax.scatter(table.loc[flag, "n"], table.loc[flag, "adjusted"] * scale, s=40, color="tab:red",
               label="outside 99.8%")
    for _, r in table[flag].iterrows():
        ax.annotate(str(r["trust_code"]), (r["n"], r["adjusted"] * scale), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("respondents")
    ax.set_ylabel(("% positive" if binary else "mean rating") + " (case-mix adjusted)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return ax


def weighted_results(respondents: pd.DataFrame, weights: pd.Series, by: Sequence[str],
                     level: float = 0.95) -> pd.DataFrame:
    """Mean rating and % positive per question by each grouping, weighted for non-response
    (ratings: CI from the weighted standard error with Kish's effective sample size; % positive:
    Wilson score interval on the effective sample size, so it stays within 0-100 in small groups).

    Example:
        >>> r = pd.DataFrame({"route": ["GP", "GP", "GP", "Emergency", "Emergency", "Emergency"],
        ...                   "overall_rating": [9, 7, 8, 6, 8, 7], "cns_name": [1, 0, 1, 1, None, 0],
        ...                   "told_sensitively": None, "involved_decisions": None, "support_after_treatment": None},
        ...                  index=[0, 2, 3, 5, 7, 8])
        >>> w = pd.Series([0.5, 1.5, 1.0, 1.0, 1.0, 2.0], index=[0, 2, 3, 5, 7, 8])
        >>> print(weighted_results(r, w, ["route"]).round(2).to_string())
          grouping      level        question  n  estimate  lower  upper
        0    route  Emergency  overall_rating  3      7.00   6.15   7.85
        1    route  Emergency        cns_name  2     33.33   4.16  85.20
        2    route         GP  overall_rating  3      7.67   6.76   8.58
        3    route         GP        cns_name  3     50.00  11.30  88.70
    """
    z = st.norm.ppf(0.5 + level / 2)
    rows = []
    d = respondents.assign(_w=weights.loc[respondents.index].to_numpy())
    for g in by:   # a few groupings
        for lv, part in d.groupby(g, observed=True):
            for q in QUESTIONS:   # five questions
                v = part[[q, "_w"]].dropna()
                if v.empty:
                    continue
                w = v["_w"].to_numpy()
                y = v[q].to_numpy(float)
                m = float(np.average(y, weights=w))
                n_eff = w.sum() ** 2 / (w ** 2).sum()
                var = float(np.average((y - m) ** 2, weights=w))
                if q == "overall_rating":
                    se = np.sqrt(var / n_eff) if n_eff > 1 else np.nan
                    k, lo, hi = 1.0, m - z * se, m + z * se
                else:   # a share: Wilson score interval on Kish's effective sample size
                    k, c = 100.0, z * z / n_eff
                    centre = (m + c / 2) / (1 + c)
                    half = z * np.sqrt(m * (1 - m) / n_eff + c / (4 * n_eff)) / (1 + c)
                    lo, hi = centre - half, centre + half
                rows.append({"grouping": g, "level": str(lv), "question": q, "n": len(v), "estimate": k * m,
                             "lower": k * lo, "upper": k * hi})
    return pd.DataFrame(rows)


def route_effect(respondents: pd.DataFrame, *, covariates: Sequence[str] = (*CASEMIX, "stage"),
                 trust: bool = True, level: float = 0.95) -> dict[str, float]:
    """Difference in mean overall rating, emergency presentation against every other route,
    adjusted for the covariates (and trust, as fixed effects); OLS with robust (HC1) errors.

    Example:
        >>> r = pd.DataFrame({"sex": ["1", "2"] * 6, "trust_code": ["RA1"] * 6 + ["RB2"] * 6,
        ...                   "emergency": [0, 0, 0, 1, 0, 1, 1, 0, 0, 0, 1, 0],
        ...                   "overall_rating": [9, 8, 9, 6, 8, 7, 6, 9, 8, 9, 7, 9]})
        >>> e = route_effect(r, covariates=["sex"])
        >>> round(e["estimate"], 3), round(e["lower"], 2), round(e["upper"], 2), e["p_value"] < 0.001, e["n_emergency"]
        (-2.125, -2.84, -1.41, True, 4)
    """
    d = respondents[respondents["overall_rating"].notna()]
    cols = [*covariates, *(["trust_code"] if trust else [])]
    x = _design(d, cols)
    x.insert(1, "emergency", d["emergency"].astype(float).to_numpy())
    fit = sm.OLS(d["overall_rating"].to_numpy(float), x).fit(cov_type="HC1")
    ci = fit.conf_int(1 - level).loc["emergency"]
    return {"estimate": float(fit.params["emergency"]), "lower": float(ci[0]), "upper": float(ci[1]),
            "p_value": float(fit.pvalues["emergency"]), "n": int(len(d)), "n_emergency": int(d["emergency"].sum())}
