"""Benchmark of registry_lib.stats.timeseries: speed, and recovery of a simulated truth.

Run: ``.venv/bin/python benchmarks/bench_timeseries.py [--replicates N]``

Series: Jan 2015 – Dec 2021, 30 diagnoses a day with +2%/year trend and seasonality,
negative-binomial overdispersion (alpha = 0.002); baseline Jan 2015 – Feb 2020; in the pandemic
each counterfactual case is kept with the month's multiplier (April 2020: 0.6) and the true
cumulative deficit (Mar–Dec 2020) is the number removed. Prints a Markdown table with targets.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from registry_lib.stats.counterfactual import fit_counterfactual
from registry_lib.stats.timeseries import monthly_counts, segmented_regression

MONTHS = pd.period_range("2015-01", "2021-12", freq="M")
BASELINE = ("2015-01", "2020-02")
WINDOW = ("2020-03", "2020-12")
EFFECTS = {"2020-03": 0.9, "2020-04": 0.6, "2020-05": 0.7, "2020-06": 0.8}
EFFECTS.update({str(p): 0.9 for p in pd.period_range("2020-07", "2020-12", freq="M")})


def simulate(n: int, seed: int, effects: dict[str, float], alpha: float = 0.002):
    rng = np.random.default_rng(seed)
    t = np.arange(len(MONTHS)) / 12.0
    moy = MONTHS.month.to_numpy()
    season = 0.08 * np.sin(2 * np.pi * (moy - 1) / 12) + 0.05 * np.cos(4 * np.pi * (moy - 1) / 12)
    mu = 30.0 * MONTHS.days_in_month.to_numpy() * np.exp(0.02 * t + season)
    lam = mu * rng.gamma(1 / alpha, alpha, (n, len(MONTHS)))
    cf = rng.poisson(lam)
    mult = np.ones(len(MONTHS))
    for m, v in effects.items():
        mult[MONTHS.get_loc(pd.Period(m, "M"))] = v
    obs = rng.binomial(cf, mult)
    w = (MONTHS >= pd.Period(WINDOW[0], "M")) & (MONTHS <= pd.Period(WINDOW[1], "M"))
    counts = pd.DataFrame({
        "replicate": np.repeat(np.arange(n), len(MONTHS)),
        "month": np.tile(MONTHS.to_timestamp(), n),
        "days_in_month": np.tile(MONTHS.days_in_month.to_numpy(), n),
        "count": obs.ravel(),
    })
    return counts, (cf - obs)[:, w].sum(axis=1)


def cover(lo, hi, truth) -> float:
    lo, hi, truth = map(np.asarray, (lo, hi, truth))
    return float(np.mean((lo <= truth) & (truth <= hi)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replicates", type=int, default=200)
    args = ap.parse_args()
    n = args.replicates
    rows: list[tuple[str, str, str]] = []

    # speed: monthly grid of 1M diagnoses by 20 sites
    rng = np.random.default_rng(0)
    dates = pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 2556, 1_000_000), "D")
    sites = rng.choice([f"C{i:02d}" for i in range(20)], 1_000_000)
    t0 = time.perf_counter()
    grid = monthly_counts(pd.DataFrame({"diagnosis_date": dates, "site": sites}), by="site")
    rows.append(("monthly_counts, 1M diagnoses × 20 sites", f"{time.perf_counter() - t0:.2f} s",
                 "< 2 s"))
    t0 = time.perf_counter()
    fit_counterfactual(grid, BASELINE, n_sims=2000, seed=1)
    rows.append(("fit_counterfactual, 20 sites, 2000 draws (NB GLM)",
                 f"{time.perf_counter() - t0:.2f} s", "< 5 s"))

    # recovery: GLM (negative binomial, HAC)
    counts, true_def = simulate(n, 1, EFFECTS)
    t0 = time.perf_counter()
    cf = fit_counterfactual(counts, BASELINE, n_sims=1000, seed=2)
    per = (time.perf_counter() - t0) / n
    apr = cf.ratio("2020-04")
    miss = cf.cumulative_missing(*WINDOW)
    naive = cf.monthly[cf.monthly.month.between("2020-03-01", "2020-12-01")]
    naive_w = (naive.pi_upper - naive.pi_lower).groupby(naive.replicate).sum()
    rows += [
        (f"GLM: time per series ({n} replicates)", f"{per * 1000:.0f} ms", "< 100 ms"),
        ("GLM: April O/E, mean estimate (true 0.600)", f"{apr.oe_ratio.mean():.3f}",
         "0.600 ± 0.01"),
        ("GLM: April O/E 95% CI coverage", f"{cover(apr.oe_lower, apr.oe_upper, 0.6):.3f}",
         "≈ 0.95"),
        ("GLM: cumulative missing Mar–Dec 2020, mean est / mean true",
         f"{miss.missing.mean():.0f} / {true_def.mean():.0f}", "ratio 1 ± 0.03"),
        ("GLM: cumulative missing 95% CI coverage",
         f"{cover(miss.missing_lower, miss.missing_upper, true_def):.3f}", "≈ 0.95"),
        ("GLM: CI width, simulation / sum of monthly bounds",
         f"{(miss.missing_upper - miss.missing_lower).mean():.0f} / {naive_w.mean():.0f}",
         "simulation narrower"),
        ("GLM: NB alpha, mean estimate (true 0.0020)",
         f"{np.mean([f.alpha for f in cf.fits.values()]):.4f}", "≈ 0.0020"),
    ]

    # null
    counts0, _ = simulate(n, 3, {})
    cf0 = fit_counterfactual(counts0, BASELINE, n_sims=1000, seed=4)
    m0 = cf0.cumulative_missing(*WINDOW)
    rows.append(("GLM null: share of seeds with no significant deficit",
                 f"{cover(m0.missing_lower, m0.missing_upper, 0):.3f}", "≥ 0.90"))

    # SARIMAX alternative
    k = max(20, n // 4)
    counts_s, true_s = simulate(k, 5, EFFECTS)
    t0 = time.perf_counter()
    cs = fit_counterfactual(counts_s, BASELINE, method="sarimax", n_sims=1000, seed=6)
    per_s = (time.perf_counter() - t0) / k
    apr_s, miss_s = cs.ratio("2020-04"), cs.cumulative_missing(*WINDOW)
    rows += [
        (f"SARIMAX: time per series ({k} replicates)", f"{per_s * 1000:.0f} ms", "< 500 ms"),
        ("SARIMAX: April O/E mean / coverage",
         f"{apr_s.oe_ratio.mean():.3f} / {cover(apr_s.oe_lower, apr_s.oe_upper, 0.6):.3f}",
         "0.600 / ≈ 0.95"),
        ("SARIMAX: cumulative missing mean est / true / coverage",
         f"{miss_s.missing.mean():.0f} / {true_s.mean():.0f} / "
         f"{cover(miss_s.missing_lower, miss_s.missing_upper, true_s):.3f}", "≈ 0.95"),
    ]

    # segmented regression: level 0.8, slope change exp(0.1) per year
    rng = np.random.default_rng(7)
    idx = np.arange(len(MONTHS))
    t0m = MONTHS.get_loc(pd.Period("2020-03", "M"))
    since = np.where(idx >= t0m, (idx - t0m) / 12, 0.0)
    moy = MONTHS.month.to_numpy()
    mu = 30.0 * MONTHS.days_in_month.to_numpy() * np.exp(
        0.02 * idx / 12 + 0.08 * np.sin(2 * np.pi * (moy - 1) / 12)
        + np.log(0.8) * (idx >= t0m) + 0.1 * since)
    y = rng.poisson(mu * rng.gamma(500.0, 1 / 500.0, (n, len(MONTHS))))
    seg_counts = pd.DataFrame({
        "replicate": np.repeat(np.arange(n), len(MONTHS)),
        "month": np.tile(MONTHS.to_timestamp(), n),
        "days_in_month": np.tile(MONTHS.days_in_month.to_numpy(), n),
        "count": y.ravel(),
    })
    seg = segmented_regression(seg_counts, "2020-03")
    lv, sl = seg[seg.term == "level_change"], seg[seg.term == "slope_change"]
    rows += [
        ("Segmented: level change RR mean / coverage (true 0.800)",
         f"{lv.rate_ratio.mean():.3f} / {cover(lv.lower, lv.upper, 0.8):.3f}", "≈ 0.95"),
        ("Segmented: slope change RR mean / coverage (true 1.105)",
         f"{sl.rate_ratio.mean():.3f} / {cover(sl.lower, sl.upper, np.exp(0.1)):.3f}", "≈ 0.95"),
    ]
    seg_plain = segmented_regression(seg_counts, "2020-03", conservative_se=False)
    lvp = seg_plain[seg_plain.term == "level_change"]
    rows.append(("Segmented: level coverage with plain HAC SEs (for comparison)",
                 f"{cover(lvp.lower, lvp.upper, 0.8):.3f}", "(under-covers)"))

    width = max(len(r[0]) for r in rows)
    print(f"| {'measure'.ljust(width)} | measured | target |")
    print(f"|{'-' * (width + 2)}|----------|--------|")
    for name, got, target in rows:
        print(f"| {name.ljust(width)} | {got} | {target} |")


if __name__ == "__main__":
    main()
