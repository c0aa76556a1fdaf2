"""Benchmark of the synthetic twin (issue 15).

    .venv/bin/python benchmarks/bench_twin.py [--cohort default] [--policy research_pseudonymised]
                                              [--seed 1] [--speed-patients 100000] [--reuse]
                                              [--permutations 20]

1. Fits a twin to the release and writes it (``registry-lab twin``), with the study estimates;
   prints the pMSE table of the twin and both baselines (independent marginals, Gaussian copula)
   against both nulls (the permutation null, which the target is judged on, and the asymptotic one),
   the study estimates with their CI overlap, the replicated uniques and the rules checked.
2. Times fit + generate of ``--speed-patients`` patients (with their tumours and treatments) on
   the same release (a twin larger than the release when the release is smaller).
Prints Markdown tables with the targets beside the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import pandas as pd

from registry_lib import twin
from registry_lib.paths import require_cohort
from registry_lib.release import load_release, release_info
from registry_lib.studies.synthetic_twin import benchmark_table, study_estimates, summary
from registry_lib.twin.run import PERMUTATIONS

TARGETS = {"standardised_pmse": 10.0, "ci_overlap": 0.5, "replicated_uniques": 0.001, "seconds": 60.0}


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table (no extra dependency)."""
    rows = [list(map(str, df.columns)), ["---"] * len(df.columns)]
    rows += [["" if pd.isna(v) else (f"{v:,.3f}" if isinstance(v, float) else str(v)) for v in r]
             for r in df.itertuples(index=False)]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cohort", default="default")
    p.add_argument("--policy", default="research_pseudonymised")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--speed-patients", type=int, default=100_000)
    p.add_argument("--reuse", action="store_true",
                   help="read the twin already written (releases/<policy>_twin) instead of fitting it again")
    p.add_argument("--permutations", type=int, default=PERMUTATIONS,
                   help="label permutations of the propensity model for the pMSE's permutation null")
    a = p.parse_args()
    cohort = require_cohort(a.cohort, "registry")
    t0 = time.perf_counter()
    folder = cohort / "releases" / twin.twin_name(a.policy)
    if not (a.reuse and (folder / "twin_report.json").exists()):
        folder = twin.run(cohort, a.policy, seed=a.seed, requester="benchmarks/bench_twin.py",
                          estimates=study_estimates, permutations=a.permutations)
    total = time.perf_counter() - t0
    report = json.loads((folder / "twin_report.json").read_text())
    figs = summary(report)
    print(f"## Twin of {a.cohort}/{a.policy}: {report['patients']:,} patients (twin, reports and estimates: {total:.0f} s)\n")
    table = benchmark_table(report)
    print(markdown(table))
    for name, v in report["utility"]["pmse"].items():
        if "expected_permutation" in v:
            print(f"\n{name}: pMSE {v['pmse']:.6f}; permutation null ({v['permutations']} permutations) mean "
                  f"{v['expected_permutation']:.6f}, SD {v['sd_permutation']:.6f}; asymptotic null mean "
                  f"{v['expected_asymptotic']:.6f} ({v['parameters']} parameters); with synthpop's logistic "
                  f"halving of the permuted pMSEs: ratio {v['ratio_permutation_halved']:.3f}, standardised "
                  f"{v['standardised_permutation_halved']:.1f}", end="")
    print()
    twin_spm = figs["standardised_pmse"]
    print(f"\nstandardised pMSE of the twin {twin_spm:.2f} ({report['utility']['pmse']['twin'].get('null', 'asymptotic')} null; target <= {TARGETS['standardised_pmse']:g} and below both "
          f"baselines: {'met' if twin_spm <= TARGETS['standardised_pmse'] and all(twin_spm < b for b in figs['baseline_standardised_pmse']) else 'NOT met'})\n")
    est = pd.DataFrame(report["study_estimates"]["table"])
    cols = ["estimate", "value_original", "lower_original", "upper_original", "value_twin", "lower_twin",
            "upper_twin", "ci_overlap"]
    print(markdown(est[cols]))
    print(f"\nsmallest CI overlap {figs['min_ci_overlap']:.3f} (target >= {TARGETS['ci_overlap']}: "
          f"{'met' if figs['min_ci_overlap'] >= TARGETS['ci_overlap'] else 'NOT met'})\n")
    ru = report["replicated_uniques"]
    print(f"replicated uniques: {ru['replicated_uniques_drawn']} drawn of {ru['patients_drawn']} "
          f"({ru['replicated_uniques_rate_before_removal']:.3%}), {ru['replicated_uniques_removed']} removed, "
          f"{ru['replicated_uniques_after_removal']} left ({ru['replicated_uniques_share_after_removal']:.3%}; target "
          f"<= {TARGETS['replicated_uniques']:.1%})")
    print(f"rules violated: {report['rules_violated']}")
    dcr = report["risk"]["distance_to_closest_record"]
    print(f"distance to closest record: median twin {dcr['median_twin']:.4f} vs hold-out {dcr['median_holdout']:.4f}; "
          f"exact copies twin {dcr['share_exact_twin']:.2%} vs hold-out {dcr['share_exact_holdout']:.2%}")
    tc = {k: v for k, v in report["risk"]["tcap"].items() if k != "key_variables"}
    print("TCAP: " + "; ".join(f"{k} {v['tcap']:.3f} (baseline {v['baseline']:.3f}, {v['matched']} matched)"
                               for k, v in tc.items()) + "\n")
    # speed: fit + generate N patients
    original = load_release(cohort, a.policy)
    key = release_info(cohort, a.policy)["patient_key"]
    t0 = time.perf_counter()
    model = twin.fit(original, key, seed=a.seed)
    t1 = time.perf_counter()
    tw = model.sample(a.speed_patients, seed=a.seed)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("| step | patients | tumours | treatments | seconds | target |")
    print("|---|---|---|---|---|---|")
    print(f"| fit on {a.cohort}/{a.policy} | {len(original['patient']):,} | {len(original['tumour']):,} | "
          f"{len(original.get('treatment', [])):,} | {t1 - t0:.1f} | |")
    print(f"| generate | {len(tw['patient']):,} | {len(tw['tumour']):,} | {len(tw['treatment']):,} | {t2 - t1:.1f} | |")
    print(f"| fit + generate | | | | {t2 - t0:.1f} | <= {TARGETS['seconds']:g} s "
          f"({'met' if t2 - t0 <= TARGETS['seconds'] else 'NOT met'}) |")
    print(f"\npeak memory {rss:,.0f} MB")


if __name__ == "__main__":
    main()
