"""Benchmark of registry_lib.stats.kulldorff_scan, and the New York reference comparison.

Run:  .venv/bin/python benchmarks/bench_scan.py [--quick]

Prints two Markdown tables:

1. speed — wall time of a whole scan (windows + observed + Monte Carlo), against the targets of
   issue 6: 281 areas × 999 replications ≤ 2 s; 7,000 areas at 10% maximum population × 999
   replications ≤ 60 s on 2 cores (synthetic random coordinates and LSOA-like populations);
2. the New York leukaemia data (281 tracts) against SaTScan v9.3.1.

``--quick`` runs the 7,000-area case with 99 replications (for development).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from registry_lib.stats import kulldorff_scan

ROOT = Path(__file__).resolve().parents[1]
NY = ROOT / "tests" / "data" / "ny_leukaemia"

SATSCAN = [  # SaTScan v9.3.1 (tests/data/ny_leukaemia/README.md)
    {
        "cluster": 1,
        "n_locations": 31,
        "radius": 7.70,
        "population": 119050,
        "observed": 106,
        "expected": 62.13,
        "relative_risk": 1.87,
        "llr": 14.780276,
        "p_value": 0.000087,
    },
    {
        "cluster": 2,
        "n_locations": 9,
        "radius": 13.01,
        "population": 40696,
        "observed": 42,
        "expected": 21.24,
        "relative_risk": 2.06,
        "llr": 8.287056,
        "p_value": 0.033,
    },
    {
        "cluster": 3,
        "n_locations": 16,
        "radius": None,
        "population": None,
        "observed": 44,
        "expected": 23.83,
        "relative_risk": None,
        "llr": 7.199672,
        "p_value": 0.105,
    },
]


def load_ny():
    cases = pd.read_csv(NY / "cases.txt", sep=r"\s+", header=None, names=["id", "cases", "year"])
    pop = pd.read_csv(NY / "pop.txt", sep=r"\s+", header=None, names=["id", "year", "pop"])
    xy = pd.read_csv(NY / "coords.txt", sep=r"\s+", header=None, names=["id", "lat", "lon"])
    return (
        cases.set_index("id")["cases"],
        pop.set_index("id")["pop"],
        xy.set_index("id")[["lat", "lon"]],
    )


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xy = pd.DataFrame(rng.random((n, 2)) * 150_000.0, columns=["x", "y"])  # metres
    pop = pd.Series(rng.integers(1_000, 3_000, n))  # LSOA-like
    cases = pd.Series(rng.poisson(pop * 0.002))
    return cases, pop, xy


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - t0, time.process_time() - c0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="99 replications for the large case")
    args = ap.parse_args()
    n_jobs = max(1, min(2, os.cpu_count() or 1))

    ny_cases, ny_pop, ny_xy = load_ny()
    ny, t_ny = timed(
        lambda: kulldorff_scan(
            ny_cases,
            ny_pop,
            ny_xy,
            metric="haversine",
            max_pop_fraction=0.5,
            n_sim=999,
            seed=1,
            n_jobs=n_jobs,
        )
    )
    big_reps = 99 if args.quick else 999
    cases, pop, xy = synthetic(7_000)
    big, t_big = timed(
        lambda: kulldorff_scan(
            cases, pop, xy, max_pop_fraction=0.1, n_sim=big_reps, seed=1, n_jobs=n_jobs
        )
    )
    rows = [
        ("NY leukaemia (haversine, 50%)", 281, 0.5, 999, ny.n_windows, t_ny, 2.0),
        ("synthetic random (10%)", 7_000, 0.1, big_reps, big.n_windows, t_big, 60.0),
    ]
    print(f"## Kulldorff scan speed ({n_jobs} thread(s), {os.cpu_count()} CPU(s) visible)\n")
    print(
        "| case | areas | max pop | replications | windows | wall (s) | CPU (s) | target (s) "
        "| met |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, n, f, r, w, (t, cpu), target in rows:
        met = "yes" if t <= target else "NO"
        if r != 999:
            met += " (quick run, not the target)"
        print(
            f"| {name} | {n:,} | {f:.0%} | {r} | {w:,} | {t:.2f} | {cpu:.2f} | ≤ {target:g} "
            f"| {met} |"
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nLoad average at the end: {load:.2f} (wall time grows when other jobs share the CPUs;"
        " CPU time is the work done)."
    )

    print("\n## New York leukaemia: ours vs SaTScan v9.3.1 (999 replications, seed 1)\n")
    print(
        "| cluster | | locations | radius km | population | observed | expected | RR | LLR | "
        "p-value (Monte Carlo) | p-value (Gumbel) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for j, ref in enumerate(SATSCAN):
        row = ny.clusters.iloc[j]

        def fmt(v, spec):
            return "—" if v is None else format(v, spec)

        print(
            f"| {j + 1} | SaTScan | {ref['n_locations']} | {fmt(ref['radius'], '.2f')} | "
            f"{fmt(ref['population'], ',')} | {ref['observed']} | {ref['expected']:.2f} | "
            f"{fmt(ref['relative_risk'], '.2f')} | {ref['llr']:.6f} | "
            f"{'—' if j == 0 else format(ref['p_value'], '.3f')} | "
            f"{format(ref['p_value'], '.6f') if j == 0 else '—'} |"
        )
        print(
            f"| {j + 1} | ours | {row['n_locations']} | {row['radius']:.2f} | "
            f"{int(row['population']):,} | {row['observed']} | {row['expected']:.2f} | "
            f"{row['relative_risk']:.2f} | {row['llr']:.6f} | {row['p_value']:.3f} | "
            f"{row['p_value_gumbel']:.6f} |"
        )


if __name__ == "__main__":
    main()
