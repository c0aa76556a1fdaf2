"""Tests for registry_lib.stats.kulldorff_scan.

- reproduces SaTScan v9.3.1 on the New York leukaemia data (tests/data/ny_leukaemia, copied
  from the project's shared reference);
- agrees with a brute-force scan written independently (observed data and simulated maxima);
- is calibrated under the null and finds an injected cluster.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_lib.errors import RegistryLabError
from registry_lib.stats import kulldorff_scan

NY = Path(__file__).parent / "data" / "ny_leukaemia"

# SaTScan v9.3.1 output (tests/data/ny_leukaemia/README.md)
SATSCAN = [
    {
        "members": [
            52,
            50,
            53,
            38,
            49,
            48,
            15,
            39,
            37,
            1,
            16,
            44,
            47,
            40,
            14,
            2,
            51,
            13,
            43,
            45,
            17,
            55,
            11,
            3,
            12,
            46,
            36,
            35,
            54,
            10,
            5,
        ],
        "center": 52,
        "radius": 7.70,
        "population": 119_050,
        "observed": 106,
        "expected": 62.13,
        "relative_risk": 1.87,
        "llr": 14.780276,
        "p_value": 0.000087,
    },
    {
        "members": [88, 87, 92, 86, 89, 91, 93, 85, 90],
        "center": 88,
        "radius": 13.01,
        "population": 40_696,
        "observed": 42,
        "expected": 21.24,
        "relative_risk": 2.06,
        "llr": 8.287056,
        "p_value": 0.033,
    },
    {
        "n_locations": 16,
        "center_coords": (43.076454, -76.137613),
        "observed": 44,
        "expected": 23.83,
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


@pytest.fixture(scope="module")
def ny_result():
    cases, pop, coords = load_ny()
    assert cases.sum() == 552 and pop.sum() == 1_057_673 and len(coords) == 281
    return kulldorff_scan(
        cases, pop, coords, max_pop_fraction=0.5, n_sim=999, metric="haversine", seed=20240601
    ), coords


def test_ny_reproduces_satscan_clusters(ny_result):
    res, coords = ny_result
    cl = res.clusters
    for j, ref in enumerate(SATSCAN[:2]):
        row = cl.iloc[j]
        assert set(row["members"]) == set(ref["members"])
        assert row["members"] == ref["members"]  # same order (by distance) as SaTScan prints
        assert row["center"] == ref["center"]
        assert round(row["radius"], 2) == ref["radius"]
        assert row["population"] == ref["population"]
        assert row["observed"] == ref["observed"]
        assert round(row["expected"], 2) == ref["expected"]
        assert round(row["relative_risk"], 2) == ref["relative_risk"]
        assert round(row["llr"], 6) == ref["llr"]
    third = cl.iloc[2]
    ref = SATSCAN[2]
    assert third["n_locations"] == ref["n_locations"]
    lat, lon = coords.loc[third["center"]]
    assert (round(lat, 6), round(lon, 6)) == ref["center_coords"]
    assert third["observed"] == ref["observed"]
    assert round(third["expected"], 2) == ref["expected"]
    assert round(third["llr"], 6) == ref["llr"]
    # clusters are in decreasing LLR and share no location
    assert cl["llr"].is_monotonic_decreasing
    seen: set = set()
    for members in cl["members"]:
        assert not seen & set(members)
        seen |= set(members)


def test_ny_p_values_within_monte_carlo_error(ny_result):
    res, _ = ny_result
    cl = res.clusters
    r = res.n_sim
    assert len(res.simulated_llr) == r == 999
    # most likely: SaTScan's 0.000087 is a Gumbel value below 1/(R+1)
    assert cl.loc[0, "p_value"] == pytest.approx(1 / (r + 1))
    assert cl.loc[0, "p_value_gumbel"] < 0.001
    for j in (1, 2):
        p_ref = SATSCAN[j]["p_value"]
        # two independent Monte Carlo estimates of the same p: difference sd sqrt(2p(1-p)/R)
        tol = 3.5 * math.sqrt(2 * p_ref * (1 - p_ref) / r)
        assert abs(cl.loc[j, "p_value"] - p_ref) <= tol


# --------------------------------------------------------------------------------------------
# An independent brute-force scan
# --------------------------------------------------------------------------------------------


def brute_force_windows(c, p, xy, frac):
    """Every circular window (centre, radius at a location distance) within the limit."""
    n = len(c)
    big_c, big_p = c.sum(), p.sum()
    out = []
    for i in range(n):
        dist = [math.dist(xy[i], xy[j]) for j in range(n)]
        for r in sorted(set(dist)):
            inside = [j for j in range(n) if dist[j] <= r]
            pop_in = sum(p[j] for j in inside)
            if pop_in > frac * big_p:
                break
            cc = sum(c[j] for j in inside)
            e = big_c * pop_in / big_p
            if cc > e:
                llr = cc * math.log(cc / e)
                if big_c - cc > 0:
                    llr += (big_c - cc) * math.log((big_c - cc) / (big_c - e))
            else:
                llr = 0.0
            out.append((llr, i, frozenset(inside), cc, e))
    return out


def brute_force_max(c, p, xy, frac):
    return max((w[0] for w in brute_force_windows(c, p, xy, frac)), default=0.0)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 14),
    data=st.data(),
    frac=st.sampled_from([0.2, 0.5, 1.0]),
)
def test_observed_scan_matches_brute_force(n, data, frac):
    # integer grid coordinates create many distance ties
    xy = np.array(
        data.draw(
            st.lists(
                st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=n, max_size=n, unique=True
            )
        ),
        dtype=float,
    )
    c = np.array(data.draw(st.lists(st.integers(0, 15), min_size=n, max_size=n)))
    p = np.array(data.draw(st.lists(st.integers(1, 500), min_size=n, max_size=n)), dtype=float)
    windows = brute_force_windows(c, p, xy, frac)
    best = max((w[0] for w in windows), default=0.0)
    res = kulldorff_scan(
        pd.Series(c), pd.Series(p), pd.DataFrame(xy), max_pop_fraction=frac, n_sim=0
    )
    if best <= 1e-12:
        assert res.clusters.empty
        return
    top = res.clusters.iloc[0]
    assert top["llr"] == pytest.approx(best, rel=1e-9, abs=1e-9)
    # the reported window is one of the brute-force windows with that LLR
    winners = {w[2] for w in windows if abs(w[0] - best) <= 1e-9 * max(1, best)}
    assert frozenset(top["members"]) in winners
    assert top["observed"] == sum(c[j] for j in top["members"])
    assert top["expected"] == pytest.approx(c.sum() * p[top["members"]].sum() / p.sum())
    assert top["population"] <= frac * p.sum() + 1e-9


def brute_force_clusters(c, p, xy, frac):
    """SaTScan's reporting rule, brute force: best window per centre (smallest on ties),
    then in decreasing LLR (centre order on ties) those sharing no location with earlier ones."""
    best = {}
    for llr, i, members, _, _ in brute_force_windows(c, p, xy, frac):
        if llr > 0 and (i not in best or llr > best[i][0] + 1e-12):
            best[i] = (llr, members)
    chosen, used = [], set()
    for _i, (llr, members) in sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0])):
        if not used & members:
            chosen.append((llr, members))
            used |= members
    return chosen


@pytest.mark.parametrize(("frac", "giant"), [(0.1, False), (0.5, False), (0.1, True)])
def test_grid_with_ties_and_skewed_populations_matches_brute_force(frac, giant):
    # 12 x 12 grid: many equidistant neighbours; lognormal populations; with a giant town in
    # one corner most neighbourhoods hold far less than the mean population, which exercises
    # the full-sort fallback of the partial sort
    rng = np.random.default_rng(5)
    g = np.arange(12.0)
    xy = np.column_stack([np.repeat(g, 12), np.tile(g, 12)])
    p = np.maximum(1, rng.lognormal(5, 1.6, len(xy))).round()
    if giant:
        p[0] = 20 * p.sum()
    c = rng.poisson(p / 60)
    res = kulldorff_scan(
        pd.Series(c), pd.Series(p), pd.DataFrame(xy), max_pop_fraction=frac, n_sim=0
    )
    want = brute_force_clusters(c, p, xy, frac)
    assert len(res.clusters) == len(want)
    for (_, row), (llr, members) in zip(res.clusters.iterrows(), want, strict=True):
        assert row["llr"] == pytest.approx(llr, rel=1e-9, abs=1e-8)
        assert set(row["members"]) == members


def test_simulated_maxima_match_brute_force():
    rng = np.random.default_rng(7)
    n = 12
    xy = rng.integers(0, 6, size=(n, 2)).astype(float) + rng.random((n, 2)) * 0.01
    p = rng.integers(50, 300, n).astype(float)
    c = rng.poisson(p / 40)
    res = kulldorff_scan(
        pd.Series(c), pd.Series(p), pd.DataFrame(xy), n_sim=25, seed=11, max_pop_fraction=0.5
    )
    # the documented null: one multinomial draw per replication from Generator(seed)
    draws = np.random.default_rng(11).multinomial(int(c.sum()), p / p.sum(), size=25)
    expected = [brute_force_max(d, p, xy, 0.5) for d in draws]
    np.testing.assert_allclose(res.simulated_llr, expected, rtol=1e-9, atol=1e-9)
    lam = res.clusters.loc[0, "llr"]
    assert res.clusters.loc[0, "p_value"] == (1 + sum(e >= lam for e in expected)) / 26


def test_screened_simulation_equals_full_evaluation(monkeypatch):
    """The screening shortcut (critical counts after a pilot) gives the exact maxima."""
    import registry_lib.stats.scan_engine as scan_mod

    rng = np.random.default_rng(21)
    xy = pd.DataFrame(rng.random((300, 2)), columns=["x", "y"])
    pop = pd.Series(rng.integers(100, 2000, 300))
    cases = pd.Series(rng.poisson(pop / 150))
    screened = kulldorff_scan(cases, pop, xy, n_sim=80, seed=9, max_pop_fraction=0.3)
    monkeypatch.setattr(scan_mod, "_PILOT", 10_000)  # every replication in full
    full = kulldorff_scan(cases, pop, xy, n_sim=80, seed=9, max_pop_fraction=0.3)
    np.testing.assert_array_equal(screened.simulated_llr, full.simulated_llr)
    monkeypatch.setattr(scan_mod, "_PILOT", 1)
    monkeypatch.setattr(scan_mod, "_SCREEN_FRACTION", 0.999)  # many replications fall back
    fallback = kulldorff_scan(cases, pop, xy, n_sim=80, seed=9, max_pop_fraction=0.3)
    np.testing.assert_array_equal(fallback.simulated_llr, full.simulated_llr)


def _unblocked_reference(cases, pop, xy, frac, n_sim, seed):
    """The scan as it was before blocks and coarse screening: every window of every centre at
    once (``_build_windows``), every replication evaluated on every window, the best window
    per centre by one lexsort. Returns (simulated maxima, [(members, llr, observed, p)])."""
    import registry_lib.stats.scan_engine as eng

    labels, c_in, p_in, xy_in = eng._prepare(cases, pop, xy, "euclidean")
    perm = eng._spatial_order(xy_in, "euclidean")
    inv = np.argsort(perm)
    c, p, xyp = c_in[perm], p_in[perm], xy_in[perm]
    total_c, total_p = int(c.sum()), float(p.sum())
    limit = frac * total_p * (1 + 1e-12)
    win = eng._build_windows(xyp, p, limit, "euclidean", inv)
    llr = eng._LLR(total_c)
    expected = total_c * win.cum_pop / total_p
    d, g, thresh = llr.window_terms(expected, win.closed)
    sizes = np.diff(win.start)
    centre_of = np.repeat(np.arange(len(c)), sizes)

    def window_counts(counts):
        cs = np.cumsum(counts[win.neighbour])
        return cs - np.repeat(np.concatenate([[0], cs])[win.start[:-1]], sizes)

    obs_c = window_counts(c)
    obs = llr.values(obs_c, d, g, thresh)
    draws = np.random.default_rng(seed).multinomial(total_c, p_in / total_p, size=n_sim)
    sims = draws[:, perm]
    sim_max = np.array([llr.values(window_counts(r), d, g, thresh).max() for r in sims])
    order = np.lexsort((np.arange(len(obs)), -obs, centre_of))
    first = np.ones(len(order), dtype=bool)
    first[1:] = centre_of[order[1:]] != centre_of[order[:-1]]
    best_w = order[first]
    best_w = best_w[obs[best_w] > 0]
    best_w = best_w[np.lexsort((perm[centre_of[best_w]], -obs[best_w]))]
    used = np.zeros(len(c), dtype=bool)
    rows = []
    for w in best_w:
        members = win.neighbour[win.start[centre_of[w]] : w + 1]
        if used[members].any():
            continue
        used[members] = True
        lam = float(obs[w])
        pv = (1 + int(np.sum(sim_max >= lam - 1e-9 * max(1.0, lam)))) / (n_sim + 1)
        rows.append((labels[perm][members].tolist(), lam, int(obs_c[w]), pv))
    return sim_max, rows


@pytest.mark.parametrize(
    ("block_keys", "segment_fraction", "chunk", "fine", "n_jobs"),
    [
        (4_000_000, 0.3, 128, 2_000_000, 2),
        (2_000, 0.3, 16, 2_000_000, 2),
        (700, 0.05, 7, 2_000_000, 1),
        (3_000, 3.0, 1000, 40, 2),
    ],
)
def test_blocked_screened_scan_equals_unblocked_reference(
    monkeypatch, block_keys, segment_fraction, chunk, fine, n_jobs
):
    """Blocks of centres, the coarse-to-fine screening and its chunks change nothing: the
    simulated maxima, LLRs, members and p-values are exactly those of the unblocked scan."""
    import registry_lib.stats.scan_engine as scan_mod

    monkeypatch.setattr(scan_mod, "_BLOCK_KEYS", block_keys)  # 300 areas: 1 to 300 blocks
    monkeypatch.setattr(scan_mod, "_SEGMENT_FRACTION", segment_fraction)
    monkeypatch.setattr(scan_mod, "_SCREEN_CHUNK", chunk)
    monkeypatch.setattr(scan_mod, "_FINE_WINDOWS", fine)
    full_rows = []  # replications evaluated on every window: the pilot's, and any fallback
    full = scan_mod._replicate_maxima

    def spy(sims, *args):
        full_rows.append(len(sims))
        return full(sims, *args)

    monkeypatch.setattr(scan_mod, "_replicate_maxima", spy)
    rng = np.random.default_rng(17)
    n = 300
    xy = pd.DataFrame(rng.random((n, 2)) * 40, columns=["x", "y"])
    pop = pd.Series(rng.integers(1_000, 3_000, n))
    risk = np.where(np.hypot(xy["x"] - 10, xy["y"] - 30) < 4, 1.8, 1.0)
    cases = pd.Series(rng.poisson(pop * 0.003 * risk))
    res = kulldorff_scan(cases, pop, xy, max_pop_fraction=0.1, n_sim=199, seed=4, n_jobs=n_jobs)
    sim_max, rows = _unblocked_reference(cases, pop, xy, 0.1, 199, 4)
    np.testing.assert_array_equal(res.simulated_llr, sim_max)
    assert len(res.clusters) == len(rows)
    for (_, row), (members, lam, observed, pv) in zip(res.clusters.iterrows(), rows, strict=True):
        assert row["members"] == members
        assert row["llr"] == lam
        assert row["observed"] == observed
        assert row["p_value"] == pv
    assert res.clusters.loc[0, "p_value"] <= 0.01  # the injected cluster
    # only the pilot ran in full, once per block: every other maximum came from the screening
    assert full_rows == [scan_mod._PILOT] * len(scan_mod._block_rows(n, n_jobs))


def test_fast_row_sort_equals_stable_sort():
    import registry_lib.stats.scan_engine as eng

    rng = np.random.default_rng(8)
    for values in (rng.random((40, 300)), rng.integers(0, 25, (40, 300)).astype(float),
                   np.where(rng.random((40, 300)) < 0.02, 0.5, rng.random((40, 300)))):
        np.testing.assert_array_equal(
            eng._stable_argsort_rows(values), np.argsort(values, axis=1, kind="stable")
        )


def test_recomputed_window_populations_are_bit_identical():
    """The kept windows store no populations: recomputed from the neighbour lists they must be
    the same floats (ties, a giant town with fully sorted rows, great-circle distances)."""
    import registry_lib.stats.scan_engine as eng

    rng = np.random.default_rng(5)
    g = np.arange(12.0)
    grid = np.column_stack([np.repeat(g, 12), np.tile(g, 12)])
    p = np.maximum(1, rng.lognormal(5, 1.6, len(grid))) / 7.0
    p[0] = 20 * p.sum()
    _, _, ny_pop, ny_xy = eng._prepare(*load_ny(), "haversine")
    for xy, pop, metric, frac in ((grid, p, "euclidean", 0.1), (ny_xy, ny_pop, "haversine", 0.5)):
        win = eng._build_windows(xy, pop, frac * pop.sum(), metric)
        np.testing.assert_array_equal(eng._cumulative_population(win, pop), win.cum_pop)


def test_deterministic_and_thread_count_invariant():
    rng = np.random.default_rng(3)
    xy = pd.DataFrame(rng.random((150, 2)), columns=["x", "y"])
    pop = pd.Series(rng.integers(100, 1000, 150))
    cases = pd.Series(rng.poisson(pop / 100))
    a = kulldorff_scan(cases, pop, xy, n_sim=99, seed=5, n_jobs=1)
    b = kulldorff_scan(cases, pop, xy, n_sim=99, seed=5, n_jobs=2)
    c = kulldorff_scan(cases, pop, xy, n_sim=99, seed=6, n_jobs=2)
    np.testing.assert_array_equal(a.simulated_llr, b.simulated_llr)
    pd.testing.assert_frame_equal(a.clusters, b.clusters)
    assert not np.array_equal(a.simulated_llr, c.simulated_llr)


def test_invariant_to_input_order_and_population_scale():
    cases, pop, coords = load_ny()
    base = kulldorff_scan(cases, pop, coords, metric="haversine", n_sim=0)
    order = np.random.default_rng(0).permutation(len(cases))
    shuffled = kulldorff_scan(
        cases.iloc[order], pop.iloc[order], coords.iloc[order], metric="haversine", n_sim=0
    )
    # expected counts (population × a constant rate) in place of population: the adjusted scan
    scaled = kulldorff_scan(cases, pop * 552 / pop.sum(), coords, metric="haversine", n_sim=0)
    for other in (shuffled, scaled):
        assert len(other.clusters) == len(base.clusters)
        for (_, a), (_, b) in zip(base.clusters.iterrows(), other.clusters.iterrows(), strict=True):
            assert set(a["members"]) == set(b["members"])
            assert a["llr"] == pytest.approx(b["llr"], rel=1e-9)
            assert a["observed"] == b["observed"]


def test_labels_kept_and_inputs_aligned_by_label():
    xy = pd.DataFrame(
        {"x": [0.0, 1.0, 5.0, 6.0], "y": [0.0, 0.0, 0.0, 0.0]}, index=["E1", "E2", "E3", "E4"]
    )
    pop = pd.Series([100, 100, 100, 100], index=["E4", "E3", "E2", "E1"])  # another order
    cases = pd.Series([9, 8, 1, 1], index=["E1", "E2", "E3", "E4"])
    res = kulldorff_scan(cases, pop, xy, n_sim=0)
    top = res.clusters.iloc[0]
    assert sorted(top["members"]) == ["E1", "E2"]
    assert top["center"] in ("E1", "E2")
    assert top["radius"] == pytest.approx(1.0)
    assert np.isnan(top["p_value"])


def test_haversine_radius_in_km():
    # two locations 0.1 degree of latitude apart: 6367 * pi / 180 * 0.1 km
    coords = pd.DataFrame({"lon": [0.0, 0.0, 1.0], "lat": [50.0, 50.1, 52.0]})
    res = kulldorff_scan(
        pd.Series([10, 10, 1]), pd.Series([100, 100, 200]), coords, metric="haversine", n_sim=0
    )
    top = res.clusters.iloc[0]
    assert sorted(top["members"]) == [0, 1]
    assert top["radius"] == pytest.approx(6367 * math.pi / 180 * 0.1, rel=1e-9)


def test_bad_inputs_raise_clear_errors():
    xy = pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 0.0]}, index=["a", "b"])
    pop = pd.Series([10, 10], index=["a", "b"])
    with pytest.raises(RegistryLabError, match="population: no value for location 'b'"):
        kulldorff_scan(pd.Series([1, 2], index=["a", "b"]), pop.iloc[:1], xy)
    with pytest.raises(RegistryLabError, match="location 'b'.*whole number"):
        kulldorff_scan(pd.Series([1, -2], index=["a", "b"]), pop, xy)
    with pytest.raises(RegistryLabError, match="metric"):
        kulldorff_scan(pd.Series([1, 2], index=["a", "b"]), pop, xy, metric="manhattan")
    with pytest.raises(RegistryLabError, match="max_pop_fraction"):
        kulldorff_scan(pd.Series([1, 2], index=["a", "b"]), pop, xy, max_pop_fraction=0)
    with pytest.raises(RegistryLabError, match="latitude"):
        kulldorff_scan(pd.Series([1, 2], index=["a", "b"]), pop, xy * 100, metric="haversine")


# --------------------------------------------------------------------------------------------
# Calibration and power
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_null_false_positive_rate():
    """300 null data sets (200 areas, 99 replications each): P(p <= 0.05) in [0.02, 0.08]."""
    rng = np.random.default_rng(2024)
    n_areas, n_rep = 200, 300
    xy = pd.DataFrame(rng.random((n_areas, 2)) * 50, columns=["x", "y"])
    pop = pd.Series(rng.integers(800, 3000, n_areas))
    rate = 0.004
    hits = 0
    for r in range(n_rep):
        cases = pd.Series(rng.poisson(pop * rate))
        res = kulldorff_scan(cases, pop, xy, n_sim=99, seed=r, max_clusters=1, n_jobs=1)
        hits += bool(res.clusters.loc[0, "p_value"] <= 0.05)
    assert 0.02 <= hits / n_rep <= 0.08


def test_injected_cluster_is_found():
    rng = np.random.default_rng(99)
    g = np.arange(15.0)
    xy = pd.DataFrame({"x": np.repeat(g, 15), "y": np.tile(g, 15)})
    pop = pd.Series(rng.integers(800, 1500, len(xy)))
    truth = ((xy["x"] - 4) ** 2 + (xy["y"] - 9) ** 2) <= 2.0**2
    risk = np.where(truth, 2.5, 1.0)
    cases = pd.Series(rng.poisson(pop * 0.003 * risk))
    res = kulldorff_scan(cases, pop, xy, n_sim=199, seed=1)
    top = res.most_likely
    assert top["p_value"] <= 0.01
    found = set(top["members"])
    true_set = set(np.flatnonzero(truth))
    assert len(found & true_set) / len(found | true_set) >= 0.6
    assert top["relative_risk"] == pytest.approx(2.5, rel=0.35)


def test_docstring_examples_run():
    import doctest

    import registry_lib.stats.scan as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
