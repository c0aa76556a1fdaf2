"""Truth recovery across seeds and drawn effect sizes (issue 11, point 5).

Generates ``--cohorts`` cohorts from ``params/cohort/small.yaml`` with other seeds and drawn effect
sizes and placements (:func:`registry_lib.synth.draws.draw_effects`), and ``--null`` cohorts with
every effect switched off; runs the cluster, treatment and COVID-19 studies on each through
``registry-lab reproduce --config FILE`` (the cluster study pointed at the injected source and
site), and prints, per estimate, the share of cohorts whose 95% CI covers the true value from
``truth/effects.json``; and, on the null cohorts, the false-positive rate of each study's headline
test. Targets: coverage >= 90%, null false-positive rate <= 8%.

    .venv/bin/python benchmarks/bench_truth_recovery.py [--cohorts 20] [--null 20] [--scale 0.004]

One cohort takes 30-50 s on one core (scale 0.004); rows are appended to ``--log`` (JSON lines)
as they come, and ``--table-only`` prints the table from that log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from registry_lib.studies.cluster_investigation import excess_supported  # noqa: E402
from registry_lib.synth.config import EFFECTS  # noqa: E402
from registry_lib.synth.draws import draw_effects  # noqa: E402

KEY = "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a"
STUDIES = ("cluster_investigation", "treatment_effects", "covid_impact")
PIPELINE = {
    "cohort": "small",
    "steps": [
        {"name": "synth", "kind": "synth"},
        {"name": "link", "kind": "link", "needs": ["synth"]},
        {"name": "release_research", "kind": "release", "policy": "research_pseudonymised",
         "requester": "truth-recovery benchmark", "needs": ["link"]},
        {"name": "release_direct_care", "kind": "release", "policy": "direct_care",
         "requester": "truth-recovery benchmark", "needs": ["link"]},
        {"name": "cluster_investigation", "kind": "notebook", "notebook": "notebooks/02_cluster_investigation.ipynb",
         "params": "params/studies/cluster_investigation.yaml", "needs": ["release_research"]},
        {"name": "treatment_effects", "kind": "notebook", "notebook": "notebooks/03_treatment_effects.ipynb",
         "params": "params/studies/treatment_effects.yaml", "needs": ["release_research", "release_direct_care"]},
        {"name": "covid_impact", "kind": "notebook", "notebook": "notebooks/04_covid_impact.ipynb",
         "params": "params/studies/covid_impact.yaml", "needs": ["release_research"]},
    ],
}
TARGET_COVERAGE, TARGET_FPR = 0.90, 0.08
#: what each row keeps of a study's results.json (enough to recompute the table with --table-only)
RESULT_KEYS = {"cluster_investigation": ("truth_check", "bands", "most_likely_cluster", "stone", "trend", "alpha",
                                         "source"),
               "treatment_effects": ("truth_check", "hazard_ratios", "late_effect_sir"),
               "covid_impact": ("truth_check", "sites_family_verdict")}


def _project(folder: Path, cluster: dict | None) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", folder / "pyproject.toml")
    for sub in ("params", "notebooks"):
        shutil.copytree(ROOT / sub, folder / sub)
    path = folder / "params" / "studies" / "cluster_investigation.yaml"
    params = yaml.safe_load(path.read_text())
    params["n_sim"] = 99  # scan and Stone's test replications (p >= 0.01 is enough at alpha 0.05)
    if cluster is not None:  # study the injected source and site, as the truth check needs
        params["source"], params["sites"] = cluster["source_id"], [cluster["site"]]
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    path = folder / "params" / "studies" / "covid_impact.yaml"
    params = yaml.safe_load(path.read_text())
    params["n_sims"] = 500  # simulated counterfactual draws for the intervals (2000 in the study)
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    (folder / "bench_pipeline.yaml").write_text(yaml.safe_dump(PIPELINE, sort_keys=False))
    return folder


def run_cohort(kind: str, seed: int, scale: float, work: Path) -> dict:
    """Generate one cohort, run the three studies, return what they recovered."""
    effects = draw_effects(seed, null=list(EFFECTS) if kind == "null" else [])
    cfg = yaml.safe_load((ROOT / "params" / "cohort" / "small.yaml").read_text())
    cfg.update(name=f"bench_{kind}_{seed}", seed=seed, scale=scale, effects=effects)
    folder = work / cfg["name"]
    shutil.rmtree(folder, ignore_errors=True)
    proj = _project(folder, effects["cluster"])
    config = folder / "cohort.yaml"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "REGISTRY_LAB_ROOT": str(proj), "REGISTRY_LAB_KEY": KEY, "CI": "true",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "registry_lib.cli", "reproduce", "--config", str(config),
                          "--pipeline", "bench_pipeline.yaml"], cwd=proj, env=env, capture_output=True, text=True)
    row: dict = {"kind": kind, "seed": seed, "scale": scale, "seconds": round(time.perf_counter() - t0, 1),
                 "ok": out.returncode == 0, "effects": effects}
    if out.returncode != 0:
        row["error"] = out.stderr[-1500:]
    results = {}
    for study in STUDIES:
        path = proj / "reports" / study / "results.json"
        results[study] = json.loads(path.read_text()) if path.exists() else {}
    row["results"] = {study: {k: results[study].get(k) for k in RESULT_KEYS[study]} for study in STUDIES}
    row.update(_recovered(results))
    shutil.rmtree(folder, ignore_errors=True)
    return row


def _covered(lo, hi, truth) -> bool | None:
    if lo is None or hi is None or truth is None:
        return None
    return bool(lo <= truth <= hi)


def _recovered(r: dict) -> dict:
    """Per estimate: covered (True/False, None = not estimable or withheld); headline tests."""
    cov: dict[str, bool | None] = {}
    tc = r["cluster_investigation"].get("truth_check") or {}
    if "sir_within_radius" in tc:
        cov["cluster SIR within the radius"] = tc["sir_within_radius"].get("covered")
    te = (r["treatment_effects"].get("truth_check") or {}).get("covers_truth", {})
    cov["adjusted HR"] = te.get("release HR adjusted")
    cov["IPTW HR"] = te.get("release HR iptw")
    cov["late-effect SIR"] = te.get("release SIR breast cancer")
    for d in (r["covid_impact"].get("truth_check") or {}).get("deficit_estimates", []):
        q = d["quantity"]
        if q.startswith("O/E 2020-04") or q.startswith("missing 2020-03..2020-12"):
            name = ("April 2020 O/E " if q.startswith("O/E") else "missing diagnoses 2020-03..12 ") + d["site_group"]
            cov[name] = d.get("covered")
    head: dict[str, bool | None] = {}
    cl = r["cluster_investigation"]
    head["cluster: excess supported"] = excess_supported(cl) if "bands" in cl else None
    hr = (r["treatment_effects"].get("hazard_ratios") or {}).get("adjusted") or {}
    head["treatment: adjusted HR CI excludes 1"] = (None if hr.get("lower") is None
                                                   else not (hr["lower"] <= 1 <= hr["upper"]))
    sir = r["treatment_effects"].get("late_effect_sir") or {}
    if sir.get("lower") is not None:
        head["late effect: SIR CI excludes 1"] = not (sir["lower"] <= 1 <= sir["upper"])
    else:   # the SIR is withheld (1-7 cases): on a null cohort (true RR 1) the truth check says it
        truth = r["treatment_effects"].get("truth_check") or {}
        covers = truth.get("covers_truth", {}).get("release SIR breast cancer")
        head["late effect: SIR CI excludes 1"] = (None if covers is None or truth.get("true_relative_risk") != 1.0
                                                 else not covers)
    fv = r["covid_impact"].get("sites_family_verdict") or {}
    head["covid: any site deficit (Holm)"] = fv.get("any_significant_deficit")
    return {"covered": cov, "headline": head}


def table(rows: list[dict]) -> str:
    lines = [f"{'estimate':<44} {'cohorts':>7} {'estimable':>9} {'covered':>7} {'coverage':>8}  target",
             "-" * 86]
    eff = [r for r in rows if r["kind"] == "effects"]
    names = sorted({k for r in eff for k in r["covered"]}, key=lambda k: (k[0].isdigit(), k))
    for name in names:
        vals = [r["covered"].get(name) for r in eff]
        ok = [v for v in vals if v is not None]
        share = sum(ok) / len(ok) if ok else float("nan")
        flag = "ok" if ok and share >= TARGET_COVERAGE else "BELOW"
        lines.append(f"{name:<44} {len(vals):>7} {len(ok):>9} {sum(ok):>7} {share:>8.1%}  >= 90% {flag}")
    null = [r for r in rows if r["kind"] == "null"]
    lines += ["", f"{'headline test on null cohorts':<44} {'cohorts':>7} {'tested':>9} {'positive':>8} {'FPR':>7}  target",
              "-" * 86]
    for name in sorted({k for r in null for k in r["headline"]}):
        vals = [r["headline"].get(name) for r in null]
        ok = [v for v in vals if v is not None]
        fpr = sum(ok) / len(ok) if ok else float("nan")
        flag = "ok" if ok and fpr <= TARGET_FPR else "ABOVE"
        lines.append(f"{name:<44} {len(vals):>7} {len(ok):>9} {sum(ok):>8} {fpr:>7.1%}  <= 8% {flag}")
    failed = [r for r in rows if not r["ok"]]
    lines.append(f"\n{len(eff)} cohorts with drawn effects, {len(null)} null cohorts; {len(failed)} runs failed; "
                 f"median {sorted(r['seconds'] for r in rows)[len(rows) // 2] if rows else 0:.0f} s per cohort")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohorts", type=int, default=20)
    ap.add_argument("--null", type=int, default=20)
    ap.add_argument("--scale", type=float, default=0.004)
    ap.add_argument("--seed", type=int, default=5000, help="first seed (cohort i uses seed + i)")
    ap.add_argument("--log", default="reports/bench_truth_recovery.jsonl")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    log = Path(args.log)
    if not log.is_absolute():
        log = ROOT / log
    if not args.table_only:
        log.parent.mkdir(parents=True, exist_ok=True)
        work = Path(args.work or tempfile.mkdtemp(prefix="bench_truth_"))
        done = {(r["kind"], r["seed"]) for r in map(json.loads, log.read_text().splitlines())} if log.exists() else set()
        plan = [("effects", args.seed + i) for i in range(args.cohorts)]
        plan += [("null", args.seed + 1000 + i) for i in range(args.null)]
        for i in range(max(args.cohorts, args.null)):   # interleave, so a partial run has both kinds
            for kind, seed in (p for p in plan if p[1] - args.seed - (1000 if p[0] == "null" else 0) == i):
                if (kind, seed) in done:
                    continue
                row = run_cohort(kind, seed, args.scale, work)
                with log.open("a") as fh:
                    fh.write(json.dumps(row, sort_keys=True) + "\n")
                print(f"{kind} seed {seed}: {'ok' if row['ok'] else 'FAILED'} in {row['seconds']:.0f} s", flush=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for row in rows:   # recomputed from the kept results, so the table follows this script's rules
        if "results" in row:
            row.update(_recovered({s: row["results"].get(s) or {} for s in STUDIES}))
    print(table(rows))


if __name__ == "__main__":
    main()
