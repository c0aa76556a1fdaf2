"""Benchmark of releases and disclosure control.

    .venv/bin/python benchmarks/bench_release.py [--tables 2000] [--scale 0.02] [--cohort NAME]

1. The LP attack on many random count tables: protect_table(rounding=None, secondary=True), then
   scipy.optimize.linprog bounds every primary-suppressed cell from the published cells and
   margins; counts the cells whose interval is narrower than the threshold (target 0).
2. Release and aggregation speed on a registry made by the real generator and linkage from the
   ``tiny`` cohort config at ``--scale`` (a fraction of England, diagnoses 2018-2021).
3. With ``--cohort``, the sizes and opt-out counts of the releases of a real cohort.
Prints Markdown tables with the targets beside the measurements.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from registry_lib.release import aggregate_rates, protect_table, run, suppression_intervals

THRESHOLD = 7


def random_table(rng: np.random.Generator, max_dim: int) -> np.ndarray:
    r, c = rng.integers(1, max_dim + 1, size=2)
    kind = rng.integers(0, 3)
    if kind == 0:
        return rng.poisson(rng.uniform(1, 8), size=(r, c))
    if kind == 1:
        return rng.choice([0, 0, 1, 2, 3, 5, 6, 7, 8, 9, 15, 30, 120], size=(r, c))
    return rng.negative_binomial(1, rng.uniform(0.02, 0.3), size=(r, c))


def lp_attack(n_tables: int, seed: int = 2024) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    primary_cells = secondary_cells = cells = failures = lower_zero = 0
    min_width = np.inf
    t0 = time.perf_counter()
    for k in range(n_tables):
        x = random_table(rng, 10 if k % 4 == 0 else 6)
        prot = protect_table(pd.DataFrame(x), threshold=THRESHOLD, rounding=None, secondary=True)
        r, c = x.shape
        ext = np.zeros((r + 1, c + 1), dtype=np.int64)
        ext[:r, :c], ext[:r, c], ext[r, :c], ext[r, c] = x, x.sum(1), x.sum(0), x.sum()
        primary = (ext >= 1) & (ext <= THRESHOLD)
        hidden = prot.isna().to_numpy()
        cells += ext.size
        primary_cells += int(primary.sum())
        secondary_cells += int((hidden & ~primary).sum())
        if not primary.any():
            continue
        iv = suppression_intervals(prot)
        pos = {(prot.index.get_loc(a), prot.columns.get_loc(b)): (lo, w)
               for a, b, lo, w in iv[["row", "column", "lower", "width"]].itertuples(index=False)}
        for i, j in np.argwhere(primary):
            lo, w = pos[(int(i), int(j))]
            min_width = min(min_width, w)
            failures += int(w < THRESHOLD - 1e-6)
            lower_zero += int(lo < 1e-6)
    secs = time.perf_counter() - t0
    return {"tables": n_tables, "cells": cells, "primary": primary_cells, "secondary": secondary_cells,
            "failures": failures, "min_width": float(min_width), "lower_zero": lower_zero,
            "seconds": secs}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def release_speed(scale: float) -> list[tuple[str, str, float, str]]:
    from registry_lib import linkage, synth
    from registry_lib.io import read_parquet

    os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        cohort = synth.run("params/cohort/tiny.yaml", scale=scale, out=Path(d) / "bench")
        linkage.run(cohort, quiet=True)
        n_patients = len(read_parquet(cohort / "registry" / "patient.parquet"))
        rows.append(("generate and link (tiny config)", f"scale {scale}: {n_patients:,} patients",
                     time.perf_counter() - t0, "-"))
        for policy, target in (("research_pseudonymised", 60), ("direct_care", 60),
                               ("aggregate_publication", 30)):
            t0 = time.perf_counter()
            out = run(cohort, policy, "benchmark")
            secs = time.perf_counter() - t0
            size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
            rows.append((f"release {policy}", f"{size:.1f} MB", secs, f"<= {target} s"))
        t0 = time.perf_counter()
        rates = aggregate_rates(cohort, by=["site_icd10", "sex", "region"])
        rows.append(("aggregate_rates site x sex x region", f"{len(rates)} rows",
                     time.perf_counter() - t0, "<= 5 s"))
    return rows


def cohort_sizes(name: str) -> pd.DataFrame:
    import json

    from registry_lib.paths import cohort_dir

    folder = cohort_dir(name) / "releases"
    rows = []
    for info in sorted(folder.glob("*/release.json")):
        r = json.loads(info.read_text())
        size = sum(p.stat().st_size for p in info.parent.iterdir()) / 1e6
        rows.append({"policy": r["policy"], "rows": r["row_counts"], "opt_out_removals": r["opt_out_removals"],
                     "MB": round(size, 2)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tables", type=int, default=2000)
    ap.add_argument("--scale", type=float, default=0.02,
                    help="fraction of England for the tiny cohort config (0.02: about 25,000 patients)")
    ap.add_argument("--cohort")
    args = ap.parse_args(argv)

    a = lp_attack(args.tables)
    print("## LP attack on random tables (protect_table, rounding=None, secondary=True)\n")
    print("| measure | value | target |\n|---|---|---|")
    print(f"| tables tried | {a['tables']:,} | >= 200 |")
    print(f"| cells (with margins) | {a['cells']:,} | |")
    print(f"| primary-suppressed cells attacked | {a['primary']:,} | |")
    print(f"| secondary suppressions | {a['secondary']:,} ({a['secondary'] / max(a['primary'], 1):.2f} per primary) | |")
    print(f"| cells bounded narrower than {THRESHOLD} | {a['failures']} | 0 |")
    print(f"| narrowest interval of a primary cell | {a['min_width']:g} | >= {THRESHOLD} |")
    print(f"| primary cells whose lower bound stays 0 | {a['lower_zero'] / max(a['primary'], 1):.1%} | |")
    print(f"| time (protect + attack) | {a['seconds']:.1f} s ({a['seconds'] / a['tables'] * 1000:.0f} ms/table) | |")

    print(f"\n## Release speed (tiny cohort config at scale {args.scale})\n")
    print("| step | size | seconds | target |\n|---|---|---|---|")
    for step, size, secs, target in release_speed(args.scale):
        print(f"| {step} | {size} | {secs:.1f} | {target} |")
    print(f"\npeak memory: {peak_mb():.0f} MB")

    if args.cohort:
        print(f"\n## Releases of cohort {args.cohort}\n")
        print(cohort_sizes(args.cohort).to_markdown(index=False) if hasattr(pd.DataFrame, "to_markdown")
              else cohort_sizes(args.cohort).to_string(index=False))
    return 0 if a["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
