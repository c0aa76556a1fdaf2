"""Target-trial emulation for treatment comparisons in registry data.

A :class:`TargetTrial` states the protocol of the randomised trial we would like to have run
(eligibility, treatment strategies, time zero, outcome, follow-up, causal contrast) and
builds, from the registry (or a release) tables, the cohort that emulates it.

**Time zero and the grace window.** Time zero is the date of diagnosis. The strategies are
"start <treatment> within ``grace_days`` of diagnosis" versus "do not start it within
``grace_days``". At diagnosis nobody's arm is known yet, and classifying patients by the
treatment they later receive would hand the treated arm the time they had to survive to be
treated (immortal-time bias). Two emulations avoid that:

- ``landmark_cohort`` (the default analysis): follow-up starts at the end of the grace window
  (the landmark). Patients who died or left follow-up before it are not eligible; the arm is
  the treatment started by the landmark. Arm membership is fixed at the new time zero, so
  no immortal time remains and the three Cox models (naive, adjusted, IPTW) apply as they
  are. The estimand is the effect among patients alive at the landmark; early deaths (few,
  for adjuvant treatment given after surgery) are lost. This is the analysis the notebook
  reports, because it keeps one row per patient and the familiar IPTW machinery.
- ``clone_censor_weight`` (sensitivity analysis keeping time zero at diagnosis): every
  eligible patient is cloned into both arms; a clone is censored when their data stop
  agreeing with their arm's strategy (the "no treatment" clone when treatment starts within
  the window; the "treatment" clone at the end of the window if treatment has not started),
  and the artificial censoring is undone by inverse-probability-of-censoring weights from a
  pooled logistic model of treatment initiation by interval of the grace window (stabilised,
  truncated). A weighted Cox model with robust SEs clustered on the patient gives the HR.
  Deaths inside the window count in both arms, as in the trial. (Hernán & Robins 2016;
  Maringe et al. 2020.)

References:
    Hernán MA, Robins JM (2016). Using big data to emulate a target trial when a randomized
    trial is not available. Am J Epidemiol 183:758-764.
    Maringe C, Benitez Majano S, Exarchakou A, et al. (2020). Reflection on modern methods:
    trial emulation in the presence of immortal-time bias. Int J Epidemiol 49:1719-1729.

Example:
    >>> trial = TargetTrial(sites=("C18",), diagnosis_years=(2015, 2020),
    ...                     treatment_modality="sact", stages=("3",))
    >>> trial.protocol()["component"].tolist()[:3]
    ['eligibility', 'treatment strategies', 'assignment']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy import stats as sps

from registry_lib.errors import RegistryLabError
from registry_lib.stats.survival_cox import design_matrix

DAYS_PER_YEAR = 365.25


def _as_dates(s: pd.Series, name: str) -> pd.Series:
    try:
        return pd.to_datetime(s, errors="raise")
    except (ValueError, TypeError) as exc:
        raise RegistryLabError(f"column {name!r}: values must be dates ({exc})") from exc


def _key(df: pd.DataFrame, key: str | None, what: str) -> str:
    if key is not None:
        if key not in df.columns:
            raise RegistryLabError(f"{what}: patient key column {key!r} not found")
        return key
    for k in ("pseudo_id", "patient_id"):
        if k in df.columns:
            return k
    raise RegistryLabError(f"{what}: no patient key column (pseudo_id or patient_id)")


@dataclass
class TrialCohort:
    """The emulated trial's analysis data and how it was reached.

    Attributes:
        data: one row per patient (landmark) or per clone-interval (clone-censor-weight).
        flow: eligibility flow (``step, n, excluded``): every tumour considered is accounted
            for.
        method: ``"landmark"`` or ``"clone_censor_weight"``.

    Example:
        >>> tum = pd.DataFrame({"tumour_id": [1], "patient_id": [10], "diagnosis_date": ["2016-01-01"],
        ...                     "age_at_diagnosis": [60], "site_icd10": ["C18"], "stage": ["3"]})
        >>> pat = pd.DataFrame({"patient_id": [10], "death_date": [None]})
        >>> trt = pd.DataFrame({"tumour_id": [1], "modality": ["sact"], "start_date": ["2016-02-15"]})
        >>> cohort = TargetTrial(("C18",), (2015, 2017), "sact", stages=("3",)).landmark_cohort(tum, pat, trt, "2020-12-31")
        >>> isinstance(cohort, TrialCohort), cohort.method, len(cohort.data), list(cohort.flow.columns)
        (True, 'landmark', 1, ['step', 'n', 'excluded'])
    """

    data: pd.DataFrame
    flow: pd.DataFrame
    method: str


@dataclass(frozen=True)
class TargetTrial:
    """Protocol of a target trial and its emulation in registry data.

    Args:
        sites: ICD-10 3-character sites (e.g. ``("C18", "C19", "C20")``).
        diagnosis_years: first and last year of diagnosis (inclusive).
        treatment_modality: ``surgery``, ``sact`` or ``radiotherapy``.
        stages: stages eligible (strings as recorded, e.g. ``("3",)``); None = any.
        ages: completed ages at diagnosis eligible (inclusive).
        treatment_intents: intents that count as the treatment (e.g. ``("adjuvant",)``);
            None = any intent.
        grace_days: days after diagnosis within which treatment must start.
        horizon_years: follow-up after time zero.
        first_primary_only: exclude patients with an earlier cancer (any site).
        requires_modality: a treatment that must be recorded for the tumour by the end of
            the grace window to be eligible (e.g. ``"surgery"`` for an adjuvant trial).
        patient_key: patient identifier column (default: ``pseudo_id`` or ``patient_id``).

    Example:
        >>> TargetTrial.from_params({"sites": ["C18"], "diagnosis_years": [2015, 2019],
        ...                          "treatment_modality": "sact"}).grace_days
        120
    """

    sites: tuple[str, ...]
    diagnosis_years: tuple[int, int]
    treatment_modality: str
    stages: tuple[str, ...] | None = None
    ages: tuple[float, float] = (18, 99)
    treatment_intents: tuple[str, ...] | None = None
    grace_days: int = 120
    horizon_years: float = 5.0
    first_primary_only: bool = True
    requires_modality: str | None = None
    patient_key: str | None = None

    def __post_init__(self):
        if self.grace_days < 0:
            raise RegistryLabError(f"grace_days={self.grace_days!r} must be >= 0")
        if self.horizon_years <= 0:
            raise RegistryLabError(f"horizon_years={self.horizon_years!r} must be > 0")
        if len(self.diagnosis_years) != 2 or self.diagnosis_years[0] > self.diagnosis_years[1]:
            raise RegistryLabError(f"diagnosis_years={self.diagnosis_years!r}: give [first, last]")

    @classmethod
    def from_params(cls, params: Mapping) -> TargetTrial:
        """Build from a params mapping (e.g. a section of ``params/studies/*.yaml``)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise RegistryLabError(f"target trial params: unknown key(s) {unknown}; "
                                   f"allowed: {sorted(names)}")
        kw = {}
        for k, v in params.items():
            if k in ("sites", "stages", "treatment_intents") and v is not None:
                v = tuple(str(x) for x in ([v] if isinstance(v, str | int) else v))
            elif k in ("diagnosis_years", "ages"):
                v = tuple(v)
            kw[k] = v
        return cls(**kw)

    # ------------------------------------------------------------------------------------
    def protocol(self) -> pd.DataFrame:
        """The target trial and its emulation, component by component (for the report)."""
        g = self.grace_days
        treat = self.treatment_modality + (
            f" ({', '.join(self.treatment_intents)})" if self.treatment_intents else "")
        stage = f"stage {', '.join(self.stages)}" if self.stages else "any stage"
        if self.requires_modality:
            stage += f" treated by {self.requires_modality} within {g} days"
        rows = [
            ("eligibility",
             f"adults aged {self.ages[0]:g}-{self.ages[1]:g} with a new {stage} cancer of "
             f"{', '.join(self.sites)}, diagnosed {self.diagnosis_years[0]}-"
             f"{self.diagnosis_years[1]}" + (", no earlier cancer" if self.first_primary_only
                                             else ""),
             "tumours in the registry meeting the same criteria; landmark: also alive and "
             f"followed {g} days after diagnosis"),
            ("treatment strategies", f"start {treat} within {g} days of diagnosis, versus "
             f"do not start it within {g} days",
             "first recorded start date of the treatment linked to the tumour"),
            ("assignment", "randomised at diagnosis",
             "not randomised: confounding by age, fitness, comorbidity, deprivation handled by "
             "covariate adjustment and inverse probability weighting"),
            ("time zero", "diagnosis (randomisation)",
             f"landmark: diagnosis + {g} days; clone-censor-weight: diagnosis"),
            ("outcome", "death from any cause", "death registration (ONS) linked to the registry"),
            ("follow-up", f"from time zero for {self.horizon_years:g} years or to the end of "
             "follow-up", "censored at the registry's end of follow-up"),
            ("causal contrast", "per-protocol effect (hazard ratio)",
             "landmark: HR among patients alive at the landmark; clone-censor-weight: HR of "
             "the two strategies from diagnosis"),
            ("analysis", "Cox proportional hazards",
             "naive, covariate-adjusted and IPTW Cox (robust SE); clone-censor-weight "
             "sensitivity analysis"),
        ]
        return pd.DataFrame(rows, columns=["component", "target_trial", "emulation"])

    # ------------------------------------------------------------------------------------
    def _eligible(self, tumours, patients, treatments, end_of_follow_up):
        """Eligible tumours (one per patient) with treatment day and follow-up end."""
        tkey = _key(tumours, self.patient_key, "tumours")
        pkey = _key(patients, self.patient_key, "patients")
        if tkey != pkey:
            raise RegistryLabError(f"tumours are keyed by {tkey!r} but patients by {pkey!r}")
        need_t = ["tumour_id", tkey, "diagnosis_date", "age_at_diagnosis", "site_icd10"]
        if self.stages is not None:
            need_t.append("stage")
        miss = [c for c in need_t if c not in tumours.columns]
        if miss:
            raise RegistryLabError(f"tumours: column(s) {miss} not found")
        if "death_date" not in patients.columns:
            raise RegistryLabError("patients: column 'death_date' not found")
        miss = [c for c in ("tumour_id", "modality", "start_date") if c not in treatments.columns]
        if self.treatment_intents is not None and "intent" not in treatments.columns:
            miss.append("intent")
        if miss:
            raise RegistryLabError(f"treatments: column(s) {miss} not found")
        end = pd.Timestamp(end_of_follow_up)
        flow = []
        t = tumours.copy()
        t["diagnosis_date"] = _as_dates(t["diagnosis_date"], "diagnosis_date")
        flow.append(("tumours in the data", len(t)))
        all_tumours = t[[tkey, "tumour_id", "diagnosis_date"]]
        t = t[t["site_icd10"].astype(str).str[:3].isin(self.sites)]
        flow.append((f"site in {', '.join(self.sites)}", len(t)))
        y = t["diagnosis_date"].dt.year
        t = t[(y >= self.diagnosis_years[0]) & (y <= self.diagnosis_years[1])]
        flow.append((f"diagnosed {self.diagnosis_years[0]}-{self.diagnosis_years[1]}", len(t)))
        if self.stages is not None:
            t = t[t["stage"].astype(str).isin(self.stages)]
            flow.append((f"stage {', '.join(self.stages)}", len(t)))
        age = pd.to_numeric(t["age_at_diagnosis"], errors="coerce")
        t = t[(age >= self.ages[0]) & (age <= self.ages[1])]
        flow.append((f"aged {self.ages[0]:g}-{self.ages[1]:g}", len(t)))
        t = t.sort_values(["diagnosis_date", "tumour_id"]).drop_duplicates(tkey, keep="first")
        flow.append(("first eligible tumour of each patient", len(t)))
        if self.first_primary_only:
            earliest = all_tumours.groupby(tkey)["diagnosis_date"].min()
            prior = earliest.reindex(t[tkey]).to_numpy() < t["diagnosis_date"].to_numpy()
            t = t[~prior]
            flow.append(("no earlier cancer", len(t)))
        p = patients[[pkey, "death_date"]].drop_duplicates(pkey)
        orphans = ~t[tkey].isin(p[pkey])
        if orphans.any():
            raise RegistryLabError(
                f"tumour {t.loc[orphans, 'tumour_id'].iloc[0]!r}: patient "
                f"{t.loc[orphans, tkey].iloc[0]!r} is not in the patients table"
            )
        t = t.merge(p, on=tkey, how="left", validate="many_to_one",
                    suffixes=("", "_patient"))
        if "death_date_patient" in t.columns:
            t = t.drop(columns="death_date_patient")
        extra = [c for c in patients.columns if c not in t.columns]
        if extra:
            t = t.merge(patients[[pkey, *extra]].drop_duplicates(pkey), on=tkey, how="left")
        t["death_date"] = _as_dates(t["death_date"], "death_date")
        t = t[t["diagnosis_date"] < end]
        flow.append(("diagnosed before the end of follow-up", len(t)))
        bad = t["death_date"].notna() & (t["death_date"] < t["diagnosis_date"])
        t = t[~bad]
        flow.append(("death not recorded before diagnosis", len(t)))

        if self.requires_modality is not None:
            req = treatments[treatments["modality"].astype(str) == self.requires_modality]
            req = req.assign(_d=_as_dates(req["start_date"], "start_date"))
            first_req = req.groupby("tumour_id")["_d"].min().reindex(t["tumour_id"])
            limit = t["diagnosis_date"] + pd.Timedelta(days=self.grace_days)
            ok = first_req.notna().to_numpy() & (first_req.to_numpy() <= limit.to_numpy())
            t = t[ok]
            flow.append((f"{self.requires_modality} within {self.grace_days} days of diagnosis",
                         len(t)))
        tr = treatments[treatments["modality"].astype(str) == self.treatment_modality]
        if self.treatment_intents is not None:
            tr = tr[tr["intent"].astype(str).isin(self.treatment_intents)]
        tr = tr.assign(start_date=_as_dates(tr["start_date"], "start_date"))
        first = tr.groupby("tumour_id")["start_date"].min()
        start = first.reindex(t["tumour_id"]).to_numpy()
        day = (pd.to_datetime(start) - t["diagnosis_date"].to_numpy()).days.to_numpy(dtype=float) \
            if len(t) else np.array([], dtype=float)
        t["treatment_day"] = day
        t["treatment_before_diagnosis"] = day < 0
        t.loc[t["treatment_day"] < 0, "treatment_day"] = 0.0
        exit_date = t["death_date"].where(t["death_date"].notna() & (t["death_date"] <= end), end)
        t["exit_day"] = (exit_date - t["diagnosis_date"]).dt.days.astype(float)
        t["died"] = t["death_date"].notna() & (t["death_date"] <= end)
        n0 = flow[0][1]
        flow_df = pd.DataFrame(flow, columns=["step", "n"])
        flow_df["excluded"] = (flow_df["n"].shift(1, fill_value=n0) - flow_df["n"]).astype(int)
        return t.reset_index(drop=True), flow_df

    def landmark_cohort(
        self,
        tumours: pd.DataFrame,
        patients: pd.DataFrame,
        treatments: pd.DataFrame,
        end_of_follow_up,
    ) -> TrialCohort:
        """One row per eligible patient alive at the landmark (diagnosis + grace).

        Columns added: ``treatment_day`` (days from diagnosis to the first qualifying
        treatment; NaN if none; treatment recorded before diagnosis counts as day 0),
        ``treated`` (1 if started by the landmark), ``time_zero`` (landmark date), ``time``
        (years from the landmark to death, end of follow-up or the horizon), ``dead`` (1 if
        the follow-up ended in death), ``diagnosis_year``.

        Example:
            >>> import pandas as pd
            >>> tum = pd.DataFrame({"tumour_id": [1, 2], "patient_id": [10, 20],
            ...     "diagnosis_date": ["2016-01-01", "2016-06-01"], "age_at_diagnosis": [60, 70],
            ...     "site_icd10": ["C18", "C18"], "stage": ["3", "3"]})
            >>> pat = pd.DataFrame({"patient_id": [10, 20], "death_date": [None, "2018-06-01"]})
            >>> trt = pd.DataFrame({"tumour_id": [1], "modality": ["sact"],
            ...                     "start_date": ["2016-02-15"]})
            >>> trial = TargetTrial(("C18",), (2015, 2017), "sact", stages=("3",))
            >>> trial.landmark_cohort(tum, pat, trt, "2020-12-31").data[
            ...     ["tumour_id", "treated", "dead"]].to_dict("list")
            {'tumour_id': [1, 2], 'treated': [1, 0], 'dead': [0, 1]}
        """
        t, flow = self._eligible(tumours, patients, treatments, end_of_follow_up)
        g = float(self.grace_days)
        alive = t["exit_day"] > g
        t = t[alive].copy()
        extra = pd.DataFrame([(f"alive and followed at the landmark ({self.grace_days} days)",
                               len(t), int((~alive).sum()))], columns=flow.columns)
        flow = pd.concat([flow, extra], ignore_index=True)
        h_days = self.horizon_years * DAYS_PER_YEAR
        fu = np.minimum(t["exit_day"].to_numpy() - g, h_days)
        t["treated"] = (t["treatment_day"] <= g).astype(int)
        t["time_zero"] = t["diagnosis_date"] + pd.Timedelta(days=self.grace_days)
        t["time"] = fu / DAYS_PER_YEAR
        t["dead"] = (t["died"].to_numpy() & (t["exit_day"].to_numpy() - g <= h_days)).astype(int)
        t["diagnosis_year"] = t["diagnosis_date"].dt.year
        return TrialCohort(t.drop(columns=["exit_day", "died"]).reset_index(drop=True), flow,
                           "landmark")

    # ------------------------------------------------------------------------------------
    def clone_censor_weight(
        self,
        tumours: pd.DataFrame,
        patients: pd.DataFrame,
        treatments: pd.DataFrame,
        end_of_follow_up,
        covariates: Sequence[str],
        *,
        categorical: Sequence[str] | None = None,
        interval_days: int = 30,
        trim: tuple[float, float] | None = (1.0, 99.0),
        level: float = 0.95,
    ) -> CloneCensorWeight:
        """Clone-censor-weight emulation from diagnosis; returns a fitted result.

        The grace window is cut into ``interval_days`` intervals. At the end ``b`` of each, a
        logistic regression among patients alive and followed at ``b`` models the
        probability of having started treatment by ``b`` given the covariates. The "no
        treatment" clone's weight in an interval is the inverse of its modelled probability
        of being still untreated at the interval's end (and at the end of the window
        thereafter); the "treatment" clone has weight 1 inside the window and afterwards the
        inverse of its probability of having started by the end of the window. Weights are
        stabilised by the marginal probabilities and truncated at the ``trim`` percentiles.
        The HR comes from a weighted Cox model of the arm (Breslow ties) with a robust
        variance clustered on the patient (:func:`weighted_cox_binary`); ``survival`` holds
        the weighted Kaplan–Meier survival of each arm at whole years.
        """
        t, flow = self._eligible(tumours, patients, treatments, end_of_follow_up)
        return _fit_ccw(t, flow, self, list(covariates), categorical, interval_days, trim, level)


@dataclass
class CloneCensorWeight:
    """Result of :meth:`TargetTrial.clone_censor_weight`.

    Attributes:
        hazard_ratio: one-row tidy table (``model="clone_censor_weight"``, hr, lower, upper…).
        survival: weighted Kaplan–Meier survival of each arm at yearly times.
        data: the cloned, split and weighted analysis rows.
        flow: eligibility flow.
        model: the weighted Cox fit (dict: log_hr, se, naive_se, …).

    Example:
        >>> rng = np.random.default_rng(0); n = 40
        >>> dx = pd.Timestamp("2016-01-01") + pd.to_timedelta(rng.integers(0, 700, n), "D")
        >>> tum = pd.DataFrame({"tumour_id": range(n), "patient_id": range(n), "diagnosis_date": dx,
        ...                     "age_at_diagnosis": rng.integers(50, 85, n), "site_icd10": "C18", "stage": "3"})
        >>> death = dx + pd.to_timedelta(rng.integers(100, 1500, n), "D")
        >>> pat = pd.DataFrame({"patient_id": range(n), "death_date": death.where(rng.random(n) < 0.5)})
        >>> treated = rng.random(n) < 0.6
        >>> trt = pd.DataFrame({"tumour_id": np.arange(n)[treated], "modality": "sact",
        ...                     "start_date": (dx + pd.to_timedelta(rng.integers(10, 80, n), "D"))[treated]})
        >>> trial = TargetTrial(("C18",), (2015, 2018), "sact", stages=("3",))
        >>> r = trial.clone_censor_weight(tum, pat, trt, "2020-12-31", ["age_at_diagnosis"])
        >>> isinstance(r, CloneCensorWeight), r.hazard_ratio["model"].iloc[0], sorted(r.survival["arm"].unique().tolist())
        (True, 'clone_censor_weight', [0, 1])
    """

    hazard_ratio: pd.DataFrame
    survival: pd.DataFrame
    data: pd.DataFrame
    flow: pd.DataFrame
    model: object


def _boundary_probabilities(x, tday, exit_day, bounds):
    """P(treated by b | X, alive at b) for each boundary b (columns), model and marginal."""
    import statsmodels.api as sm

    n = x.shape[0]
    p_den = np.zeros((n, bounds.size))
    p_num = np.zeros((n, bounds.size))
    exog = sm.add_constant(x, has_constant="add")
    for j, b in enumerate(bounds):
        alive = exit_day > b
        y = (tday <= b)[alive].astype(float)  # NaN (never treated) compares False
        if alive.sum() == 0 or y.sum() == 0 or y.sum() == y.size:
            share = float(y.mean()) if y.size else 0.0
            p_den[:, j] = share
            p_num[:, j] = share
            continue
        fit = sm.GLM(y, exog[alive], family=sm.families.Binomial()).fit()
        p_den[:, j] = fit.predict(exog)
        p_num[:, j] = y.mean()
    return p_den, p_num


def weighted_cox_binary(start, stop, event, x, weight, cluster, level: float = 0.95) -> dict:
    """Weighted Cox model for one binary covariate on counting-process rows (Breslow ties).

    Rows ``(start, stop]`` with an event flag at ``stop``, covariate ``x`` in {0, 1}, weights
    and a cluster id; the robust (sandwich) variance sums the score residuals within
    clusters (Lin & Wei 1989). Used by the clone-censor-weight analysis, where lifelines'
    sandwich estimator is too slow for tens of thousands of split rows; agrees with
    lifelines' ``CoxPHFitter(robust=True, cluster_col=...)`` on data without tied times.

    Example:
        >>> import numpy as np
        >>> r = weighted_cox_binary(np.zeros(4), np.array([1.0, 2, 3, 4]), np.array([1, 1, 1, 1]),
        ...                         np.array([1, 0, 1, 0]), np.ones(4), np.arange(4))
        >>> round(r["log_hr"], 4)
        0.9406
    """
    start, stop = np.asarray(start, float), np.asarray(stop, float)
    d = np.asarray(event, float)
    x = np.asarray(x, float)
    w = np.asarray(weight, float)
    ev_times = np.unique(stop[d > 0])
    if ev_times.size == 0:
        raise RegistryLabError("weighted Cox: no events")
    # weighted numbers at risk by arm at each event time: entered before and not yet left
    def at_risk(mask):
        ss, se = np.sort(start[mask]), np.sort(stop[mask])
        ws = w[mask][np.argsort(start[mask], kind="stable")]
        we = w[mask][np.argsort(stop[mask], kind="stable")]
        cs, ce = np.concatenate([[0], np.cumsum(ws)]), np.concatenate([[0], np.cumsum(we)])
        return cs[np.searchsorted(ss, ev_times, side="left")] - \
            ce[np.searchsorted(se, ev_times, side="left")]
    w1, w0 = at_risk(x == 1), at_risk(x == 0)
    k = np.searchsorted(ev_times, stop[d > 0])
    dw = np.bincount(k, w[d > 0], ev_times.size)
    dw1 = np.bincount(k, (w * x)[d > 0], ev_times.size)
    beta = 0.0
    for _ in range(50):
        e = np.exp(beta)
        xbar = e * w1 / (w0 + e * w1)
        score = float((dw1 - dw * xbar).sum())
        info = float((dw * xbar * (1 - xbar)).sum())
        if info <= 0:
            raise RegistryLabError("weighted Cox: no information (one arm has no one at risk)")
        step = score / info
        beta += step
        if abs(step) < 1e-10:
            break
    e = np.exp(beta)
    xbar = e * w1 / (w0 + e * w1)
    info = float((dw * xbar * (1 - xbar)).sum())
    s0 = w0 + e * w1
    # score residuals: d_r (x_r - xbar(T_r)) - exp(b x_r) sum_{tau in (start, stop]} (x_r - xbar) dN/S0
    inc1 = np.concatenate([[0], np.cumsum((1 - xbar) * dw / s0)])
    inc0 = np.concatenate([[0], np.cumsum((0 - xbar) * dw / s0)])
    lo = np.searchsorted(ev_times, start, side="right")
    hi = np.searchsorted(ev_times, stop, side="right")
    comp = np.where(x == 1, e * (inc1[hi] - inc1[lo]), inc0[hi] - inc0[lo])
    kk = np.clip(np.searchsorted(ev_times, stop), 0, ev_times.size - 1)
    resid = d * (x - xbar[kk]) - comp
    _, ci = np.unique(np.asarray(cluster), return_inverse=True)
    u = np.bincount(ci, w * resid)
    var = float((u ** 2).sum()) / info**2
    se = float(np.sqrt(var))
    z = float(sps.norm.ppf(0.5 + level / 2))
    return {"log_hr": beta, "se": se, "hr": float(np.exp(beta)),
            "lower": float(np.exp(beta - z * se)), "upper": float(np.exp(beta + z * se)),
            "p_value": float(2 * sps.norm.sf(abs(beta / se))) if se > 0 else float("nan"),
            "naive_se": float(1 / np.sqrt(info))}


def weighted_km(start, stop, event, weight, times) -> np.ndarray:
    """Weighted product-limit survival on counting-process rows, read at ``times``.

    Example:
        >>> import numpy as np
        >>> weighted_km(np.zeros(4), np.array([1.0, 2, 3, 4]), np.array([1, 0, 1, 0]),
        ...             np.ones(4), [1.5, 3.5]).round(4).tolist()
        [0.75, 0.375]
    """
    start, stop = np.asarray(start, float), np.asarray(stop, float)
    d, w = np.asarray(event, float), np.asarray(weight, float)
    ev_times = np.unique(stop[d > 0])
    ss, se = np.sort(start), np.sort(stop)
    cs = np.concatenate([[0], np.cumsum(w[np.argsort(start, kind="stable")])])
    ce = np.concatenate([[0], np.cumsum(w[np.argsort(stop, kind="stable")])])
    y = cs[np.searchsorted(ss, ev_times, side="left")] - ce[np.searchsorted(se, ev_times, "left")]
    k = np.searchsorted(ev_times, stop[d > 0])
    dw = np.bincount(k, w[d > 0], ev_times.size)
    surv = np.cumprod(1 - dw / y)
    pos = np.searchsorted(ev_times, np.asarray(times, float), side="right") - 1
    return np.where(pos >= 0, surv[np.maximum(pos, 0)], 1.0)


def _fit_ccw(t, flow, trial, covariates, categorical, interval_days, trim, level):
    if interval_days <= 0:
        raise RegistryLabError(f"interval_days={interval_days!r} must be > 0")
    g = float(trial.grace_days)
    h_days = trial.horizon_years * DAYS_PER_YEAR
    n = len(t)
    if n == 0:
        raise RegistryLabError("clone_censor_weight: no eligible patients")
    x = design_matrix(t, covariates, categorical)
    x = x.loc[:, x.std(ddof=0) > 0].to_numpy(dtype=float)
    exit_day = np.minimum(t["exit_day"].to_numpy(), h_days)
    died = t["died"].to_numpy() & (t["exit_day"].to_numpy() <= h_days)
    tday = t["treatment_day"].to_numpy()  # NaN = never treated
    treated_in_window = tday <= g
    if not treated_in_window.any() or treated_in_window.all():
        raise RegistryLabError("clone_censor_weight: nobody (or everybody) starts treatment "
                               "within the grace window; the strategies cannot be compared")
    m = max(int(np.ceil(g / interval_days)), 1)
    bounds = np.minimum(np.arange(m + 1) * float(interval_days), g)
    # P(treated by the end of each interval | X, alive then): model and marginal
    p_den, p_num = _boundary_probabilities(x, tday, exit_day, bounds[1:])
    eps = 1e-9
    rows = []
    cuts = np.append(bounds, np.inf)
    for arm in (0, 1):
        if arm == 1:
            stop_all = np.where(treated_in_window | (exit_day <= g), exit_day, g)
            event_all = died & (stop_all == exit_day)
        else:
            switch = treated_in_window & (tday < exit_day)
            stop_all = np.where(switch, tday, exit_day)
            event_all = died & ~switch
        for k in range(m + 1):
            a, b = cuts[k], cuts[k + 1]
            idx = np.flatnonzero(stop_all > a)
            if idx.size == 0:
                continue
            stop = np.minimum(stop_all[idx], b)
            ev = event_all[idx] & (stop_all[idx] <= b)
            jj = min(k, m - 1)
            if arm == 0:
                w = (1 - p_num[idx, jj]) / np.maximum(1 - p_den[idx, jj], eps)
            elif k < m:
                w = np.ones(idx.size)
            else:
                w = p_num[idx, m - 1] / np.maximum(p_den[idx, m - 1], eps)
            rows.append(pd.DataFrame({"row": idx, "arm": arm, "start": a / DAYS_PER_YEAR,
                                      "stop": stop / DAYS_PER_YEAR, "dead": ev.astype(int),
                                      "weight": w}))
    long = pd.concat(rows, ignore_index=True)
    long = long[long["stop"] > long["start"]].reset_index(drop=True)
    if trim is not None:
        qlo, qhi = np.percentile(long["weight"], trim)
        long["weight"] = long["weight"].clip(qlo, qhi)
    fit = weighted_cox_binary(long["start"], long["stop"], long["dead"], long["arm"],
                              long["weight"], long["row"], level)
    hr = pd.DataFrame([{
        "model": "clone_censor_weight", "hr": fit["hr"], "lower": fit["lower"],
        "upper": fit["upper"], "log_hr": fit["log_hr"], "se": fit["se"],
        "p_value": fit["p_value"], "n": n, "events": int(died.sum()), "robust_se": True,
        "description": "clone-censor-weight from diagnosis, IPC weights, robust SE by patient",
    }])
    years = np.arange(1, int(np.floor(trial.horizon_years)) + 1, dtype=float)
    surv = []
    for arm in (0, 1):
        dd = long[long["arm"] == arm]
        surv.append(pd.DataFrame({"arm": arm, "time": years, "survival": weighted_km(
            dd["start"], dd["stop"], dd["dead"], dd["weight"], years)}))
    key = _key(t, trial.patient_key, "tumours")
    long.insert(0, key, t[key].to_numpy()[long["row"].to_numpy()])
    return CloneCensorWeight(hr, pd.concat(surv, ignore_index=True), long.drop(columns="row"),
                             flow, fit)
