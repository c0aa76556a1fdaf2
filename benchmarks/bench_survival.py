"""Benchmark of registry_lib.stats.survival (issue 7 §8).

Run:  .venv/bin/python benchmarks/bench_survival.py [--quick] [--daily]

Prints two Markdown tables:

1. Pohar Perme net survival (1-, 5-, 10-year values with CIs) for 1,000,000 patients with a
   life table by year × sex × deprivation × age, on a monthly and a weekly grid — target
   ≤ 30 s. ``--daily`` adds the daily grid (several times slower; for the record).
2. The treatment-effects notebook's survival models on a cohort the size of the ``default``
   cohort's stage-3 colorectal group (5,000 patients, simulated with a known HR): target-trial
   landmark cohort, Kaplan–Meier table, naive/adjusted/IPTW Cox with balance, the
   clone-censor-weight analysis, and Pohar Perme + Ederer II (daily grid) and
   ICSS-standardised net survival on the same patients — target ≤ 60 s in total.

``--quick`` uses 200,000 patients for the first table (for development).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from registry_lib.stats.survival import (
    TargetTrial,
    TreatmentEffectCox,
    age_standardised_net_survival,
    km_table,
    net_survival,
    simulate_treatment_cohort,
    synthetic_life_table,
)

COVARIATES = ["age_at_diagnosis", "sex", "deprivation_quintile", "performance_status",
              "comorbidity_score"]
STANDARDS = Path(__file__).resolve().parents[1] / "params" / "epidemiology" / \
    "standard_populations.yaml"


def icss1() -> dict[int, float]:
    """ICSS 1 weights (Corazziari et al. 2004) from params/epidemiology."""
    std = yaml.safe_load(STANDARDS.read_text())["icss1"]
    return dict(zip(std["age_bands"], std["weights"], strict=True))


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def patients(n: int, seed: int = 0) -> pd.DataFrame:
    """n patients diagnosed 2005–2015, censored 1–12 years later, with a mixed excess hazard.

    Background deaths follow the continuous Gompertz hazard behind ``synthetic_life_table``
    (age, sex, deprivation and calendar trend), so the estimates are sensible: the true net
    survival is 0.6 + 0.4 exp(-0.6 t) = 0.820, 0.620, 0.601 at 1, 5, 10 years; the life
    table's whole-year steps understate the continuous background hazard a little, so the
    estimates run slightly low at 10 years (this is a timing benchmark, not a validation).
    """
    rng = np.random.default_rng(seed)
    age = rng.uniform(30, 95, n)
    year = rng.uniform(2005, 2015, n)
    sex = rng.integers(1, 3, n)
    dep = rng.integers(1, 6, n)
    a, b, trend = 5e-5, 0.095, 0.01
    c = (a * np.where(sex == 1, 1.3, 1.0) * (1 + 0.12 * (dep - 3))
         * np.exp(b * age - trend * (year - 2010)))
    t_bg = np.log1p((b - trend) * rng.exponential(1.0, n) / c) / (b - trend)
    excess = np.where(rng.random(n) < 0.4, 0.6, 0.0)
    t_ex = rng.exponential(1 / np.maximum(excess, 1e-12))
    t = np.minimum(t_bg, t_ex)
    cens = rng.uniform(1, 12, n)
    return pd.DataFrame({
        "time": np.minimum(t, cens), "dead": (t < cens).astype(np.int8), "age": age,
        "year": year, "sex": sex, "deprivation_quintile": dep,
    })


def bench_pohar_perme(n: int, daily: bool) -> list[dict]:
    lt = synthetic_life_table((1995, 2030))
    df = patients(n)
    rows = []
    for step in ["month", "week"] + (["day"] if daily else []):
        res, wall, cpu = timed(lambda s=step: net_survival(df, lt, times=[1, 5, 10], step=s))
        s = res.table.set_index("time")["net_survival"]
        rows.append({"task": f"Pohar Perme, {n:,} patients, {step} grid", "wall_s": wall,
                     "cpu_s": cpu, "target_s": 30.0,
                     "result": f"1y {s[1.0]:.3f}, 5y {s[5.0]:.3f}, 10y {s[10.0]:.3f}"})
    return rows


def bench_notebook_models(n: int = 5000) -> list[dict]:
    sim = simulate_treatment_cohort(n, seed=1, hr=0.7)
    end = sim["truth"]["end_of_follow_up"]
    trial = TargetTrial(sites=("C18",), diagnosis_years=(2013, 2019), treatment_modality="sact",
                        stages=("3",), treatment_intents=("adjuvant",), grace_days=120,
                        horizon_years=5)
    rows = []

    def add(task, fn, result=lambda r: ""):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out, wall, cpu = timed(fn)
        rows.append({"task": task, "wall_s": wall, "cpu_s": cpu, "target_s": None,
                     "result": result(out)})
        return out

    cohort = add(f"landmark cohort ({n:,} tumours)", lambda: trial.landmark_cohort(
        sim["tumours"], sim["patients"], sim["treatments"], end),
        lambda c: f"{len(c.data):,} eligible")
    add("Kaplan–Meier table by arm", lambda: km_table(cohort.data, "time", "dead", "treated"),
        lambda k: f"{len(k):,} rows")
    add("Cox naive + adjusted + IPTW, balance", lambda: TreatmentEffectCox(
        COVARIATES, categorical=["sex"]).fit(cohort.data, "time", "dead", "treated"),
        lambda f: ", ".join(f"{m} {h:.2f}" for m, h in zip(
            f.hazard_ratios_["model"], f.hazard_ratios_["hr"], strict=True)))
    add("clone-censor-weight", lambda: trial.clone_censor_weight(
        sim["tumours"], sim["patients"], sim["treatments"], end, COVARIATES,
        categorical=["sex"]), lambda c: f"HR {c.hazard_ratio['hr'].iloc[0]:.2f}")
    lt = synthetic_life_table((1995, 2030))
    tum = sim["tumours"].merge(sim["patients"], on="patient_id")
    exit_ = tum["death_date"].fillna(pd.Timestamp(end))
    ns_df = pd.DataFrame({
        "time": (exit_ - tum["diagnosis_date"]).dt.days / 365.25,
        "dead": tum["death_date"].notna().astype(int),
        "age": tum["age_at_diagnosis"] + 0.5, "year": tum["diagnosis_date"],
        "sex": tum["sex"], "deprivation_quintile": tum["deprivation_quintile"]})
    for method in ("pohar_perme", "ederer2"):
        add(f"net survival {method}, daily grid", lambda m=method: net_survival(
            ns_df, lt, times=[1, 5, 10], method=m),
            lambda r: "5y " + f"{r.table['net_survival'].iloc[1]:.3f}")
    add("age-standardised (ICSS 1) Pohar Perme", lambda: age_standardised_net_survival(
        ns_df, lt, icss1(), times=[1, 5, 10]),
        lambda r: "5y " + f"{r.table['net_survival'].iloc[1]:.3f}")
    total = {"task": "**total (notebook survival models)**",
             "wall_s": sum(r["wall_s"] for r in rows), "cpu_s": sum(r["cpu_s"] for r in rows),
             "target_s": 60.0, "result": ""}
    return [*rows, total]


def markdown(rows: list[dict]) -> str:
    lines = ["| task | wall (s) | CPU (s) | target (s) | result |", "|---|---:|---:|---:|---|"]
    for r in rows:
        target = "" if r["target_s"] is None else (
            f"≤ {r['target_s']:.0f} {'✓' if r['wall_s'] <= r['target_s'] else '✗'}")
        lines.append(f"| {r['task']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {target} | "
                     f"{r['result']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200,000 patients for Pohar Perme")
    ap.add_argument("--daily", action="store_true", help="also time the daily grid")
    args = ap.parse_args()
    n = 200_000 if args.quick else 1_000_000
    print("## Pohar Perme net survival\n")
    print(markdown(bench_pohar_perme(n, args.daily)))
    print("\n## Treatment-effects notebook: survival models (default-cohort size)\n")
    print(markdown(bench_notebook_models()))


if __name__ == "__main__":
    main()
