"""The synthetic-twin study (notebook 08): the studies' own estimates on a release and its twin.

What ``notebooks/08_synthetic_twin.ipynb`` needs besides ``registry_lib.twin``:

- :func:`study_estimates` — the treatment study's hazard ratios (naive, adjusted, IPTW), Pohar
  Perme net survival at 1 and 5 years and age-standardised incidence by site, on the original
  release and on its twin, with the CI overlap of each (Karr et al. 2006);
- :func:`benchmark_table` — the twin against both baselines, one row each (the table
  ``benchmarks/bench_twin.py`` prints);
- :func:`verdict` — the conclusion for a data owner: is the twin safe to share, is it useful.

Example:
    >>> verdict({"standardised_pmse": 3.0, "baseline_standardised_pmse": [50.0, 20.0], "min_ci_overlap": 0.7,
    ...          "replicated_unique_share": 0.0, "rules_violated": 0}, {"standardised_pmse": 10,
    ...          "ci_overlap": 0.5, "replicated_uniques": 0.001})["useful"]
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from registry_lib.twin import ci_overlap

__all__ = ["benchmark_table", "study_estimates", "verdict"]


def _hazard_ratios(cohort: str, policy: str, te: Mapping[str, Any], end) -> pd.DataFrame:
    from registry_lib.release import load_release
    from registry_lib.stats.survival import TargetTrial, TreatmentEffectCox
    from registry_lib.studies import treatment_effects as ts

    rel = load_release(cohort, policy)
    patients, tumours, treatments = rel["patient"], rel["tumour"], rel["treatment"]
    trial = TargetTrial.from_params(te["target_trial"])
    trial_tumours = ts.with_patient_columns(tumours, patients, ["sex", "deprivation_quintile"])
    landmark = trial.landmark_cohort(trial_tumours, patients, treatments, end)
    analysis = ts.handle_missing_covariates(landmark.data, te["covariates"], method=te["missing_covariates"],
                                            categorical=te["categorical_covariates"])
    fit = TreatmentEffectCox(analysis.covariates, categorical=analysis.categorical,
                             trim=tuple(te["iptw_trim"])).fit(analysis.data, "time", "dead", "treated")
    hr = fit.hazard_ratios_
    return pd.DataFrame({"study": "treatment_effects", "estimate": "HR " + hr["model"].astype(str),
                         "value": hr["hr"], "lower": hr["lower"], "upper": hr["upper"]})


def _net_survival(cohort: str, policy: str, te: Mapping[str, Any], times: list[float], end) -> pd.DataFrame:
    from registry_lib.release import load_release
    from registry_lib.reporting import read_reference
    from registry_lib.stats import survival as sv
    from registry_lib.studies import treatment_effects as ts

    rel = load_release(cohort, policy)
    ns = te["net_survival"]
    frame, _ = ts.net_survival_frame(rel["tumour"], rel["patient"], end, sites=te["target_trial"]["sites"],
                                     diagnosis_years=ns["diagnosis_years"], ages=ns["ages"])
    pp = sv.net_survival(frame, read_reference(cohort, "life_table"), times=times, step=ns["step"]).table
    return pd.DataFrame({"study": "treatment_effects",
                         "estimate": [f"net survival {t:g} year(s)" for t in pp["time"]],
                         "value": pp["net_survival"], "lower": pp["lower"], "upper": pp["upper"]})


def _incidence(cohort: str, policy: str, sites: list[str], years) -> pd.DataFrame:
    from registry_lib.release import aggregate_rates

    r = aggregate_rates(cohort, ["site_icd10"], years=years, sites=sites, policy=policy)
    return pd.DataFrame({"study": "registry_statistics",
                         "estimate": "ASR per 100,000 " + r["site_icd10"].astype(str),
                         "value": r["dsr"], "lower": r["dsr_lower"], "upper": r["dsr_upper"]})


def study_estimates(cohort: str | Path, original: str, twin: str, params: Mapping[str, Any] | None = None
                    ) -> dict[str, Any]:
    """The studies' estimates on ``original`` and ``twin`` releases, with their CI overlap.

    Args:
        cohort: cohort name or folder (``synthetic/<cohort>``).
        original, twin: release names (e.g. ``research_pseudonymised`` and its ``_twin``).
        params: this study's parameters (default ``params/studies/synthetic_twin.yaml``); the
            target trial is the treatment study's (``params/studies/treatment_effects.yaml``).

    Returns ``{"table": [rows], "min_ci_overlap": float}``; each row has the estimate with its
    interval on both data sets and ``ci_overlap``.

    Example:
        >>> import os, shutil, tempfile
        >>> from pathlib import Path
        >>> from unittest import mock
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> from registry_lib.paths import project_root
        >>> from registry_lib.release.run import run
        >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> root = Path(tempfile.mkdtemp())   # a project root holding a copy of the tiny cohort
        >>> _ = shutil.copytree(project_root() / "params", root / "params")
        >>> _ = shutil.copytree(tiny_cohort(), root / "synthetic" / "tiny", ignore=shutil.ignore_patterns("feeds", "releases"))
        >>> with mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": str(root)}):
        ...     _ = run(root / "synthetic" / "tiny", "direct_care", "example")
        ...     study_estimates("tiny", "direct_care", "direct_care_twin")   # a direct-care release lacks research fields
        {'table': [], 'min_ci_overlap': None, 'not_computed': 'release direct_care lacks patient.deprivation_quintile, tumour.comorbidity_score, tumour.performance_status the study estimates need'}
        >>> shutil.rmtree(root)
    """
    from registry_lib.reporting import read_cohort_info, read_params

    name = Path(cohort).name
    p = dict(params or read_params("studies/synthetic_twin.yaml"))
    te = read_params("studies/treatment_effects.yaml")
    end = pd.Timestamp(read_cohort_info(name)["config"]["end_of_follow_up"])
    years = p.get("incidence_years")
    from registry_lib.release import load_release

    needed = {"patient": {"death_date", "sex", "deprivation_quintile"},
              "tumour": {"stage", "diagnosis_date", "age_at_diagnosis", *te["covariates"]} - {"sex",
                                                                                          "deprivation_quintile"},
              "treatment": {"modality", "start_date", "intent"}}
    tables = load_release(name, original)
    missing = sorted(f"{t}.{c}" for t, cols in needed.items() for c in cols
                     if c not in tables.get(t, pd.DataFrame()).columns)
    if missing:  # e.g. a direct-care release: the studies' estimates need the research fields
        return {"table": [], "min_ci_overlap": None,
                "not_computed": f"release {original} lacks {', '.join(missing)} the study estimates need"}
    rows = []
    for label, policy in (("original", original), ("twin", twin)):
        parts = [_hazard_ratios(name, policy, te, end),
                 _net_survival(name, policy, te, list(p.get("net_survival_times", [1, 5])), end),
                 _incidence(name, policy, list(p.get("incidence_sites") or []), years)]
        rows.append(pd.concat(parts, ignore_index=True).assign(data=label))
    o, s = rows
    table = o.drop(columns="data").merge(s.drop(columns="data"), on=["study", "estimate"], how="outer",
                                         suffixes=("_original", "_twin"))
    table["ci_overlap"] = [ci_overlap(r.lower_original, r.upper_original, r.lower_twin, r.upper_twin)
                           for r in table.itertuples()]
    return {"table": table.to_dict("records"), "min_ci_overlap": float(table["ci_overlap"].min())}


def benchmark_table(report: Mapping[str, Any]) -> pd.DataFrame:
    """One row per synthesiser (twin, independent marginals, Gaussian copula) from a twin report.

    Columns: ``pmse_ratio`` and ``standardised_pmse`` (whole patient-tumour table, against the null
    the report used: ``null``), the same against the permutation null and the asymptotic null
    (Snoke et al. 2018) when the report has them, and the median standardised pMSE over pairs of
    variables.

    Example:
        >>> r = {"utility": {"pmse": {"twin": {"ratio": 2.0, "standardised": 1.0}},
        ...                  "pairs_median_standardised": {"twin": 0.5}}}
        >>> benchmark_table(r).to_dict("records")
        [{'synthesiser': 'twin', 'null': 'asymptotic', 'pmse_ratio': 2.0, 'standardised_pmse': 1.0, 'pairs_median_standardised_pmse': 0.5}]
        >>> r["utility"]["pmse"]["twin"].update(null="permutation", ratio_permutation=2.0, standardised_permutation=1.0,
        ...                                     ratio_asymptotic=3.0, standardised_asymptotic=40.0)
        >>> benchmark_table(r).columns.tolist()[4:]
        ['ratio_permutation', 'standardised_permutation', 'ratio_asymptotic', 'standardised_asymptotic', 'pairs_median_standardised_pmse']
    """
    u = report["utility"]
    rows = []
    for name, v in u["pmse"].items():
        row = {"synthesiser": name, "null": v.get("null", "asymptotic"), "pmse_ratio": v["ratio"],
               "standardised_pmse": v["standardised"]}
        for null in ("permutation", "asymptotic"):
            if f"ratio_{null}" in v:
                row[f"ratio_{null}"] = v[f"ratio_{null}"]
                row[f"standardised_{null}"] = v[f"standardised_{null}"]
        row["pairs_median_standardised_pmse"] = u["pairs_median_standardised"].get(name)
        rows.append(row)
    return pd.DataFrame(rows)


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The figures :func:`verdict` judges, from a twin report (with study estimates).

    Example:
        >>> report = {"utility": {"pmse": {"twin": {"standardised": 3.2}, "marginals": {"standardised": 48.0},
        ...                                "copula": {"standardised": 21.5}}},
        ...           "replicated_uniques": {"replicated_uniques_share_after_removal": 0.0004},
        ...           "study_estimates": {"min_ci_overlap": 0.71}, "rules_violated": {"death_before_diagnosis": 0, "male_c53": 1}}
        >>> summary(report)
        {'standardised_pmse': 3.2, 'baseline_standardised_pmse': [48.0, 21.5], 'min_ci_overlap': 0.71, 'replicated_unique_share': 0.0004, 'rules_violated': 1}
    """
    pm = report["utility"]["pmse"]
    ru = report["replicated_uniques"]
    return {"standardised_pmse": pm["twin"]["standardised"],
            "baseline_standardised_pmse": [v["standardised"] for k, v in pm.items() if k != "twin"],
            "min_ci_overlap": (report.get("study_estimates") or {}).get("min_ci_overlap"),
            "replicated_unique_share": ru["replicated_uniques_share_after_removal"],
            "rules_violated": int(sum(report["rules_violated"].values()))}


def verdict(figures: Mapping[str, Any], targets: Mapping[str, float]) -> dict[str, Any]:
    """Is the twin useful and safe to share? Each target checked, with one sentence each.

    ``figures`` as :func:`summary` returns; ``targets`` as ``params/studies/synthetic_twin.yaml``.

    Example:
        >>> figures = {"standardised_pmse": 3.2, "baseline_standardised_pmse": [48.0, 21.5], "min_ci_overlap": 0.41,
        ...            "replicated_unique_share": 0.0004, "rules_violated": 0}
        >>> v = verdict(figures, {"standardised_pmse": 10, "ci_overlap": 0.5, "replicated_uniques": 0.001})
        >>> v["useful"], v["safe"]
        (False, True)
        >>> for line in v["lines"]:
        ...     print(line)
        standardised pMSE 3.20 (target ≤ 10, baselines 48.0, 21.5): met
        smallest CI overlap of the study estimates 0.41 (target ≥ 0.5): NOT met
        replicated uniques after removal 0.0400% (target ≤ 0.1%); rules violated: 0: met
    """
    spm = figures["standardised_pmse"]
    useful_pmse = spm <= targets["standardised_pmse"] and all(spm < b for b in figures["baseline_standardised_pmse"])
    ov = figures.get("min_ci_overlap")
    useful_ci = ov is not None and ov >= targets["ci_overlap"]
    safe = figures["replicated_unique_share"] <= targets["replicated_uniques"] and figures["rules_violated"] == 0
    lines = [
        f"standardised pMSE {spm:.2f} (target ≤ {targets['standardised_pmse']:g}, baselines "
        + ", ".join(f"{b:.1f}" for b in figures["baseline_standardised_pmse"]) + ")"
        + (": met" if useful_pmse else ": NOT met"),
        (f"smallest CI overlap of the study estimates {ov:.2f} (target ≥ {targets['ci_overlap']:g})"
         + (": met" if useful_ci else ": NOT met")) if ov is not None else "study estimates not compared",
        f"replicated uniques after removal {figures['replicated_unique_share']:.4%} "
        f"(target ≤ {targets['replicated_uniques']:.1%}); rules violated: {figures['rules_violated']}"
        + (": met" if safe else ": NOT met"),
    ]
    return {"useful": bool(useful_pmse and useful_ci), "safe": bool(safe), "lines": lines}
