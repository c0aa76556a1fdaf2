"""Property tests of the generator's numerical building blocks (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_lib.synth.geography import _largest_remainder
from registry_lib.synth.incidence import sample_cells
from registry_lib.synth.outcomes import cancer_death_years, cure_curve, segment_event
from registry_lib.synth.tumours import categorical

FAST = settings(max_examples=60, deadline=None)


@FAST
@given(s1=st.floats(0.05, 0.995), frac=st.floats(0.05, 0.95))
def test_cure_curve_reproduces_one_and_five_year_survival(s1, frac):
    s5 = s1 ** (1 + 3.5 * frac)                    # log S5 / log S1 in (1, 4.5): a valid pair
    a, b = cure_curve(np.array([s1]), np.array([s5]))
    surv = lambda t: np.exp(-a * (1 - np.exp(-b * t)))  # noqa: E731
    assert np.allclose(surv(1.0), s1, rtol=1e-6) and np.allclose(surv(5.0), s5, rtol=1e-6)


@FAST
@given(e=st.floats(0.0, 5.0), t0=st.floats(0, 100), length=st.floats(0.1, 400), h=st.floats(1e-4, 0.1),
       split_at=st.floats(0, 1), m1=st.floats(0.2, 3), m2=st.floats(0.2, 3))
def test_segment_event_inverts_the_cumulative_hazard(e, t0, length, h, split_at, m1, m2):
    t1 = t0 + length
    split = t0 + split_at * length
    ev, time, used = segment_event(np.array([e]), np.array([t0]), np.array([t1]), np.array([h]),
                                   np.array([split]), m1, m2)
    total = h * m1 * (split - t0) + h * m2 * (t1 - split)
    assert np.isclose(used[0], total)
    assert ev[0] == (e <= total)
    if ev[0]:
        t = time[0]
        assert t0 - 1e-9 <= t <= t1 + 1e-6
        cum = h * m1 * (min(t, split) - t0) + h * m2 * max(t - split, 0.0)
        assert np.isclose(cum, e, atol=1e-7)


@FAST
@given(e=st.floats(0.0, 3.0), k=st.floats(0.1, 5), hr=st.floats(0.2, 1.0), start=st.floats(0, 3))
def test_a_protective_treatment_never_brings_death_forward(e, k, hr, start):
    a, b = np.array([1.2]), np.array([0.8])
    base = cancer_death_years(a, b, np.array([k]), np.array([e]))
    treated = cancer_death_years(a, b, np.array([k]), np.array([e]), hr, start)
    assert treated[0] >= base[0] - 1e-9
    if base[0] <= start:                          # died before treatment: unchanged
        assert np.isclose(treated[0], base[0]) or base[0] == treated[0]


@FAST
@given(seed=st.integers(0, 2**32 - 1), n_area=st.integers(1, 30), n_cell=st.integers(1, 8))
def test_sample_cells_respects_weights(seed, n_area, n_cell):
    rng = np.random.default_rng(seed)
    w = rng.random((n_area, n_cell)) * (rng.random((n_area, n_cell)) > 0.4)
    w[0] += 1e-3                                  # every cell has some weight
    mean = rng.random(n_cell) * 20
    cell, area = sample_cells(mean, w, np.random.default_rng(seed + 1))
    assert len(cell) == len(area)
    assert (np.diff(cell) >= 0).all()             # grouped by cell
    assert (w[area, cell] > 0).all()              # never an area without weight in that cell
    assert np.array_equal(np.bincount(cell, minlength=n_cell), np.random.default_rng(seed + 1).poisson(mean))


@FAST
@given(total=st.integers(0, 500), weights=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=12))
def test_largest_remainder_sums_to_total(total, weights):
    w = np.array(weights)
    out = _largest_remainder(total, w)
    if w.sum() > 0:
        assert out.sum() == total and (out >= 0).all()
        assert np.all(np.abs(out - total * w / w.sum()) < 1 + 1e-9)


@FAST
@given(seed=st.integers(0, 1000))
def test_categorical_never_picks_zero_probability(seed):
    rng = np.random.default_rng(seed)
    p = rng.random((50, 5)) * (rng.random((50, 5)) > 0.5)
    p[:, 2] += 0.01
    pick = categorical(p, np.random.default_rng(seed))
    assert (p[np.arange(50), pick] > 0).all()
