"""Benchmark: identities, opt-outs and raw feeds of synthetic England at national scale.

Generates the truth of one English diagnosis year with the real generator (the ``tiny`` cohort
config at ``--scale`` 1, about 330,000 tumours), then times the postcode directory for ~37,000 areas,
identities and opt-outs for 200,000 people, and all feeds with their identifier errors.
Prints a Markdown table: measured figure, target. Wall time depends on what else runs on the
machine; CPU time (process time) is printed beside it.

    .venv/bin/python benchmarks/bench_synth_feeds.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import pandas as pd

from registry_lib.synth.feeds import make_feeds
from registry_lib.synth.identities import assign_identities, make_postcodes
from registry_lib.synth.optouts import assign_optouts


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of England for the one-year truth (params/cohort/tiny.yaml)")
    ap.add_argument("--areas", type=int, default=37_000)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(2024)
    from registry_lib.synth import generate, load_config

    cohort = generate(load_config("params/cohort/tiny.yaml", scale=args.scale, years=(2019, 2019)),
                      quiet=True)
    cfg = {"end_of_follow_up": cohort.config["end_of_follow_up"]}

    regions = ["North East", "North West", "Yorkshire and The Humber", "East Midlands", "West Midlands",
               "East of England", "London", "South East", "South West"]
    areas = pd.DataFrame({"area_id": [f"E01{i:06d}" for i in range(args.areas)],
                          "region": np.array(regions)[rng.integers(0, 9, args.areas)],
                          "x": rng.uniform(0, 6e5, args.areas), "y": rng.uniform(0, 6e5, args.areas)})
    postcodes, pc_wall, pc_cpu = timed(make_postcodes, areas, rng)

    n = 200_000
    people = pd.DataFrame({
        "patient_id": np.arange(n), "sex": rng.integers(1, 3, n).astype(np.int8),
        "birth_date": pd.Timestamp("1950-01-01") + pd.to_timedelta(rng.integers(0, 20000, n), "D"),
        "area_id": areas["area_id"].to_numpy()[rng.integers(0, args.areas, n)],
        "first_diagnosis_date": pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 365, n), "D"),
        "death_date": pd.NaT,
    })
    ids, id_wall, id_cpu = timed(assign_identities, people, postcodes, cfg, rng)
    _, opt_wall, opt_cpu = timed(assign_optouts, ids, areas, cfg, rng)

    reference = cohort.reference
    truth = {k: cohort.truth[k] for k in ("patients", "tumours", "treatments")}
    (feeds, record_truth), f_wall, f_cpu = timed(make_feeds, reference, truth, cfg, np.random.default_rng(1))
    n_records = sum(len(f) for f in feeds.values())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    rows = [
        ("postcode directory", f"{args.areas:,} areas → {len(postcodes):,} postcodes", f"{pc_wall:.2f} s (cpu {pc_cpu:.2f} s)", "—"),
        ("identities", f"{n:,} people", f"{id_wall:.2f} s (cpu {id_cpu:.2f} s)", "< 2 s"),
        ("opt-outs", f"{n:,} people", f"{opt_wall:.2f} s (cpu {opt_cpu:.2f} s)", "—"),
        ("feeds", f"{len(truth['tumours']):,} tumours, {len(truth['treatments']):,} treatments → "
                  f"{n_records:,} records", f"{f_wall:.2f} s (cpu {f_cpu:.2f} s)",
         "1 M records well under 10 s"),
        ("feed throughput", "records / s", f"{n_records / f_wall:,.0f} wall, {n_records / f_cpu:,.0f} cpu", "> 100,000"),
        ("peak memory", "whole benchmark process", f"{peak_gb:.2f} GB", "≤ 6 GB (whole synth)"),
    ]
    print("| step | size | measured | target |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print("| feed | records |")
    print("|---|---|")
    for name, df in feeds.items():
        print(f"| {name} | {len(df):,} |")
    kinds = record_truth["errors"].str.split(";").explode()
    share = kinds[kinds != ""].value_counts() / len(record_truth)
    print()
    print("| error kind | share of feed records |")
    print("|---|---|")
    for kind, s in share.items():
        print(f"| {kind} | {100 * s:.2f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
