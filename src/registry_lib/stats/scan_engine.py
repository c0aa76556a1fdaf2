"""The machinery of the circular spatial scan: windows, likelihood ratio and simulated maxima.

Internal to :func:`registry_lib.stats.scan.kulldorff_scan` (see that module for the method):
input checks, distances (planar or great-circle on a sphere of radius :data:`EARTH_RADIUS_KM`),
the nested windows around every centre built and kept block by block of centres
(:func:`_observe`), the log-likelihood ratio table, and the Monte Carlo maxima of the null
replications (:func:`_simulated_maxima`: a pilot scanned in full, the rest screened coarse to
fine), blocks shared between threads.

Example:
    >>> import numpy as np
    >>> float(_key_to_distance(np.array([0.0, 25.0]), "euclidean")[1])
    5.0
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

#: Earth radius used by SaTScan for great-circle distances (km).
EARTH_RADIUS_KM = 6367.0
_METRICS = ("euclidean", "haversine")
_CACHE_BYTES = 1_000_000  # working-set target per thread for the simulation loop
_BLOCK_KEYS = 4_000_000  # distance keys (centres × locations) per block of centres
_PILOT = 20  # replications scanned in full to set the screening level
_SCREEN_FRACTION = 0.75  # screening level = this × the smallest pilot maximum
_SEGMENT_FRACTION = 0.3  # coarse screening: expected growth over a segment / excess needed
_SCREEN_CHUNK = 128  # replications per chunk of the coarse screening
_FINE_WINDOWS = 2_000_000  # (window, replication) pairs evaluated at once after the screening


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


def _as_labelled(values, name: str) -> pd.Series | pd.DataFrame:
    if isinstance(values, pd.Series | pd.DataFrame):
        return values
    arr = np.asarray(values)
    if arr.ndim == 1:
        return pd.Series(arr)
    if arr.ndim == 2:
        return pd.DataFrame(arr)
    raise RegistryLabError(f"{name}: expected a 1-D (or, for coords, 2-D) array")


def _coords_matrix(coords: pd.DataFrame, metric: str) -> np.ndarray:
    if coords.shape[1] != 2:
        raise RegistryLabError(
            f"coords: expected 2 columns ({'lat, lon' if metric == 'haversine' else 'x, y'}),"
            f" got {coords.shape[1]}"
        )
    cols = [str(c).lower() for c in coords.columns]
    if metric == "haversine":
        for lat_name, lon_name in (("lat", "lon"), ("latitude", "longitude"), ("lat", "lng")):
            if lat_name in cols and lon_name in cols:
                coords = coords.iloc[:, [cols.index(lat_name), cols.index(lon_name)]]
                break
    xy = coords.to_numpy(dtype=float)
    if not np.all(np.isfinite(xy)):
        row = coords.index[int(np.flatnonzero(~np.isfinite(xy).all(axis=1))[0])]
        raise RegistryLabError(f"coords: location {row!r} has a missing or infinite coordinate")
    if metric == "haversine" and (np.any(np.abs(xy[:, 0]) > 90) or np.any(np.abs(xy[:, 1]) > 180)):
        bad = np.flatnonzero((np.abs(xy[:, 0]) > 90) | (np.abs(xy[:, 1]) > 180))[0]
        raise RegistryLabError(
            f"coords: location {coords.index[bad]!r} is not a (latitude, longitude) in degrees"
        )
    return xy


def _prepare(cases, population, coords, metric):
    cases = _as_labelled(cases, "cases")
    population = _as_labelled(population, "population")
    coords = _as_labelled(coords, "coords")
    if isinstance(cases, pd.DataFrame):
        if cases.shape[1] != 1:
            raise RegistryLabError("cases: expected one count per location (a Series)")
        cases = cases.iloc[:, 0]
    if isinstance(population, pd.DataFrame):
        if population.shape[1] != 1:
            raise RegistryLabError("population: expected one value per location (a Series)")
        population = population.iloc[:, 0]
    labels = cases.index
    if labels.has_duplicates:
        raise RegistryLabError(f"cases: location {labels[labels.duplicated()][0]!r} appears twice")
    for name, other in (("population", population), ("coords", coords)):
        if other.index.has_duplicates:
            dup = other.index[other.index.duplicated()][0]
            raise RegistryLabError(f"{name}: location {dup!r} appears twice")
        missing = labels.difference(other.index)
        if len(missing):
            raise RegistryLabError(f"{name}: no value for location {missing[0]!r}")
        extra = other.index.difference(labels)
        if len(extra):
            raise RegistryLabError(f"{name}: location {extra[0]!r} has no case count")
    c = cases.to_numpy(dtype=float)
    if not np.all(np.isfinite(c)) or np.any(c < 0) or np.any(c != np.round(c)):
        bad = labels[int(np.flatnonzero(~np.isfinite(c) | (c < 0) | (c != np.round(c)))[0])]
        raise RegistryLabError(
            f"cases: location {bad!r} has a count that is not a whole number >= 0"
        )
    p = population.reindex(labels).to_numpy(dtype=float)
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        bad = labels[int(np.flatnonzero(~np.isfinite(p) | (p < 0))[0])]
        raise RegistryLabError(f"population: location {bad!r} has a missing or negative value")
    if p.sum() <= 0:
        raise RegistryLabError("population: total population is zero")
    xy = _coords_matrix(coords.reindex(labels), metric)
    return labels, c.astype(np.int64), p, xy




# --------------------------------------------------------------------------------------------
# Geometry: neighbour lists
# --------------------------------------------------------------------------------------------


def _distance_key(xy: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """A key increasing with distance, rows × all locations: squared planar distance, or the
    haversine term ``sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2)``. See :func:`_key_to_distance`."""
    if metric == "euclidean":
        dx = xy[rows, 0, None] - xy[None, :, 0]
        dy = xy[rows, 1, None] - xy[None, :, 1]
        dx *= dx
        dy *= dy
        dx += dy
        return dx
    lat = np.radians(xy[:, 0])
    lon = np.radians(xy[:, 1])
    coslat = np.cos(lat)
    h = np.sin((lat[rows, None] - lat[None, :]) / 2)
    h *= h
    w = np.sin((lon[rows, None] - lon[None, :]) / 2)
    w *= w
    w *= coslat[rows, None]
    w *= coslat[None, :]
    h += w
    return h


def _key_to_distance(key: np.ndarray, metric: str) -> np.ndarray:
    if metric == "euclidean":
        return np.sqrt(key)
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(key, 0.0, 1.0)))


@dataclass
class _Windows:
    """Ragged neighbour lists: centre i's windows are rows ``start[i]:start[i+1]``."""

    start: np.ndarray  # (n+1,) offsets
    neighbour: np.ndarray  # (W,) location index entering at each step
    distance: np.ndarray | None  # (W,) its distance from the centre (None: not kept)
    cum_pop: np.ndarray | None  # (W,) population of the window ending at this step
    closed: np.ndarray  # (W,) bool: the next neighbour is strictly farther (a real window)


def _spatial_order(xy: np.ndarray, metric: str) -> np.ndarray:
    """A Z-order (Morton) permutation of the locations.

    Working in this order keeps each centre's neighbours close together in memory, which
    roughly halves the time of the simulation loop. Results do not depend on it.
    """
    pts = xy.astype(float).copy()
    if metric == "haversine":  # (lat, lon) -> a local plane, for ordering only
        pts = np.column_stack([pts[:, 1] * np.cos(np.radians(np.mean(pts[:, 0]))), pts[:, 0]])
    span = np.ptp(pts, axis=0)
    q = ((pts - pts.min(axis=0)) / np.where(span > 0, span, 1.0) * 65535).astype(np.uint64)

    def spread(v: np.ndarray) -> np.ndarray:
        v = (v | (v << np.uint64(16))) & np.uint64(0x0000FFFF0000FFFF)
        v = (v | (v << np.uint64(8))) & np.uint64(0x00FF00FF00FF00FF)
        v = (v | (v << np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
        v = (v | (v << np.uint64(2))) & np.uint64(0x3333333333333333)
        return (v | (v << np.uint64(1))) & np.uint64(0x5555555555555555)

    return np.argsort(spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1)), kind="stable")


def _stable_argsort_rows(a: np.ndarray) -> np.ndarray:
    """``np.argsort(a, axis=1, kind="stable")``, faster: the default (vectorised) sort, then
    the rows that hold equal values sorted again stably. A row of distinct values has only one
    sorted order, so the result is the stable one either way.

    Example:
        >>> _stable_argsort_rows(np.array([[3.0, 1.0, 2.0], [2.0, 1.0, 2.0]])).tolist()
        [[1, 2, 0], [1, 0, 2]]
    """
    idx = np.argsort(a, axis=1)
    srt = np.take_along_axis(a, idx, axis=1)
    tied = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if tied.size:
        idx[tied] = np.argsort(a[tied], axis=1, kind="stable")
    return idx


def _sorted_neighbours(key: np.ndarray, pop: np.ndarray, limit: float, inv: np.ndarray):
    """Neighbours of each row sorted by distance key, truncated once the population passes
    ``limit`` (at least one neighbour beyond it is kept to decide ties).

    Locations are in spatial order; ``inv[o]`` is the position of the location that was
    ``o``-th in the input, so ties are broken by input order. Returns ``(order, key_sorted)``;
    entries past a row's truncation are -1 / +inf.
    """
    rows, n = key.shape
    m = n - 1
    if n > 64:
        # partial sort: the m+1 nearest usually already pass the population limit
        m = int(min(n - 1, 1.25 * math.ceil(limit / max(float(np.mean(pop)), 1e-300)) + 64))
    rank = np.argsort(inv)  # input position of each location
    if m < n - 1:
        part = inv[np.sort(rank[np.argpartition(key, m, axis=1)[:, : m + 1]], axis=1)]
    else:
        part = np.broadcast_to(inv, key.shape)
    pkey = np.take_along_axis(key, part, axis=1)
    inner = _stable_argsort_rows(pkey)  # ties stay in input order
    order = np.take_along_axis(part, inner, axis=1)
    ksort = np.take_along_axis(pkey, inner, axis=1)
    if m == n - 1:
        return order, ksort
    full = pop[order].sum(axis=1) > limit
    if full.all():
        return order, ksort
    # rows whose m+1 nearest are still within the limit: sort them completely
    short = np.flatnonzero(~full)
    key_in = key[short][:, inv]  # columns in input order
    order_in = _stable_argsort_rows(key_in)
    order_all = np.full((rows, n), -1, dtype=np.intp)
    ksort_all = np.full((rows, n), np.inf)
    order_all[full, : m + 1] = order[full]
    ksort_all[full, : m + 1] = ksort[full]
    order_all[short] = inv[order_in]
    ksort_all[short] = np.take_along_axis(key_in, order_in, axis=1)
    return order_all, ksort_all


def _block_rows(n: int, n_jobs: int = 1) -> list[np.ndarray]:
    """Centres in consecutive blocks: at most ``_BLOCK_KEYS`` distance keys (centres ×
    locations) per block and, with several threads, at least ``4 × n_jobs`` blocks so that
    threads working on whole blocks stay busy. No result depends on the blocking.

    Example:
        >>> [len(b) for b in _block_rows(10, n_jobs=2)]
        [2, 2, 2, 2, 2]
    """
    if n == 0:
        return []
    size = min(n, max(1, _BLOCK_KEYS // max(n, 1)))
    if n_jobs > 1:
        size = min(size, -(-n // (4 * n_jobs)))
    return [np.arange(a, min(n, a + size)) for a in range(0, n, size)]


def _window_block(
    xy: np.ndarray,
    pop: np.ndarray,
    limit: float,
    metric: str,
    inv: np.ndarray,
    rows: np.ndarray,
) -> _Windows:
    """Neighbour lists of the centres ``rows`` (``start`` relative to the block; neighbours
    are global location indices), each cut at its largest window within ``limit``."""
    order, dsort = _sorted_neighbours(_distance_key(xy, rows, metric), pop, limit, inv)
    pad = order < 0
    cp = np.cumsum(np.where(pad, 0.0, pop[np.where(pad, 0, order)]), axis=1)
    cp[pad] = np.inf
    closed = np.ones_like(dsort, dtype=bool)
    closed[:, :-1] = dsort[:, 1:] > dsort[:, :-1]
    # keep steps up to the largest closed window within the population limit
    ok = closed & (cp <= limit)
    has = ok.any(axis=1)
    k = np.where(has, dsort.shape[1] - 1 - np.argmax(ok[:, ::-1], axis=1), -1) + 1
    mask = np.arange(dsort.shape[1])[None, :] < k[:, None]
    return _Windows(
        start=np.concatenate([[0], np.cumsum(k)]).astype(np.int64),
        neighbour=order[mask].astype(np.intp),
        distance=_key_to_distance(dsort[mask], metric),
        cum_pop=cp[mask],
        closed=closed[mask],
    )


def _build_windows(
    xy: np.ndarray, pop: np.ndarray, limit: float, metric: str, inv: np.ndarray | None = None
) -> _Windows:
    """Neighbour lists of every centre at once (locations in the order given; ``inv`` as in
    :func:`_sorted_neighbours`, identity by default). The scan itself works block by block
    (:func:`_scan_blocks`); this is the whole table, for small data and tests.

    Example:
        >>> xy = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
        >>> win = _build_windows(xy, np.array([10.0, 10.0, 10.0]), 20.0, "euclidean")
        >>> win.start.tolist(), win.neighbour.tolist(), win.cum_pop.tolist()
        ([0, 2, 4, 6], [0, 1, 1, 0, 2, 1], [10.0, 20.0, 10.0, 20.0, 10.0, 20.0])
    """
    n = len(pop)
    if inv is None:
        inv = np.arange(n)
    parts = [_window_block(xy, pop, limit, metric, inv, rows) for rows in _block_rows(n)]
    offsets = np.cumsum([0] + [len(p.neighbour) for p in parts])
    return _Windows(
        start=np.concatenate([[0]] + [p.start[1:] + o for p, o in zip(parts, offsets, strict=False)]),
        neighbour=np.concatenate([p.neighbour for p in parts]),
        distance=np.concatenate([p.distance for p in parts]),
        cum_pop=np.concatenate([p.cum_pop for p in parts]),
        closed=np.concatenate([p.closed for p in parts]),
    )


def _cumulative_population(win: _Windows, pop: np.ndarray) -> np.ndarray:
    """The population of every window of ``win``, recomputed from its neighbour lists exactly
    as :func:`_window_block` computed it (a running sum along each list, in the same order,
    so the same floating-point values): the kept windows need not store it.

    Example:
        >>> xy = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
        >>> pop = np.array([0.1, 0.2, 0.3])
        >>> win = _build_windows(xy, pop, 0.35, "euclidean")
        >>> np.array_equal(_cumulative_population(win, pop), win.cum_pop)
        True
    """
    sizes = np.diff(win.start)
    if len(win.neighbour) == 0:
        return np.zeros(0)
    inside = np.arange(int(sizes.max()))[None, :] < sizes[:, None]
    padded = np.zeros(inside.shape)
    padded[inside] = pop[win.neighbour]
    return np.cumsum(padded, axis=1)[inside]


# --------------------------------------------------------------------------------------------
# Likelihood ratio
# --------------------------------------------------------------------------------------------


def _xlogx(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    out = np.zeros_like(x)
    pos = x > 0
    out[pos] = x[pos] * np.log(x[pos])
    return out


class _LLR:
    """LLR(c, E) = T[c] - c·d(E) - g(E), with T[c] = xlogx(c) + xlogx(C-c) - C ln C."""

    def __init__(self, total_cases: int):
        self.C = int(total_cases)
        c = np.arange(self.C + 1, dtype=float)
        self.table = _xlogx(c) + _xlogx(self.C - c) - _xlogx(np.array([self.C]))[0]

    def window_terms(self, expected: np.ndarray, closed: np.ndarray):
        """Per-window slope d, offset g and integer threshold (c must reach it to count)."""
        C = self.C
        if C == 0:  # no cases: no window can have more than expected
            zeros = np.zeros(len(expected))
            return zeros, zeros, np.ones(len(expected), dtype=np.int32)
        e = np.clip(expected, 1e-300, None)
        rest = np.clip(C - expected, 1e-300, None)
        d = np.log(e) - np.log(rest)
        g = C * np.log(rest / C)
        # a window counts when c > E; windows with E >= C or not closed never count
        thresh = np.floor(expected).astype(np.int64) + 1
        thresh = np.where(closed & (expected < C), thresh, C + 1).astype(np.int32)
        return d, g, thresh

    def critical_counts(self, level: float, expected, d, g, thresh) -> np.ndarray:
        """Per window, the smallest count c >= thresh with LLR(c) >= level (C+1 if none).

        Integer bisection on all windows at once (the LLR increases with c above E). The
        bracket's upper end uses LLR(c) >= (c−E)²/(2c), so c = E + L + sqrt(L² + 2EL) always
        reaches level L.
        """
        C, table = self.C, self.table
        out = np.empty(len(thresh), dtype=np.int32)
        step = 1 << 16  # blocks of windows small enough to stay in cache
        for a in range(0, len(thresh), step):
            e = expected[a : a + step]
            dd, gg = d[a : a + step], g[a : a + step]
            lo = thresh[a : a + step].astype(np.int64)
            bound = np.ceil(e + level + np.sqrt(level * level + 2 * e * level)) + 1
            hi = np.minimum(bound, C + 1).astype(np.int64)
            hi = np.maximum(hi, lo)
            for _ in range(int(np.max(hi - lo, initial=0)).bit_length() + 1):
                mid = (lo + hi) // 2
                np.minimum(mid, C, out=mid)
                ok = (table[mid] - mid * dd - gg >= level) & (lo < hi)
                hi = np.where(ok, mid, hi)
                lo = np.where(ok | (lo >= hi), lo, mid + 1)
            out[a : a + step] = np.minimum(lo, C + 1)
        return out

    def values(self, c: np.ndarray, d, g, thresh) -> np.ndarray:
        v = self.table[c] - c * d - g
        return np.where(c >= thresh, np.maximum(v, 0.0), 0.0)


def _replicate_maxima(
    sims: np.ndarray,
    win: _Windows,
    llr: _LLR,
    d: np.ndarray,
    g: np.ndarray,
    thresh: np.ndarray,
) -> np.ndarray:
    """Maximum LLR over every window of ``win`` for each simulated data set (rows of
    ``sims``, locations in columns): per centre, the window counts of a chunk of replications
    are one cumulative sum along its neighbour list."""
    sims = np.ascontiguousarray(sims)  # the column gathers below need C order
    neighbour = win.neighbour.astype(np.intp, copy=False)
    n_rep = sims.shape[0]
    sizes = np.diff(win.start)
    best = np.zeros(n_rep)
    if n_rep == 0 or not np.any(sizes > 0):
        return best
    table = llr.table
    kmax = int(sizes.max())
    # replications go in chunks small enough for the working arrays to stay in cache
    rc = int(np.clip(_CACHE_BYTES // max(1, 21 * kmax), 8, max(8, n_rep)))
    cnt_buf = np.empty(rc * kmax, dtype=np.int32)
    val_buf = np.empty(rc * kmax, dtype=np.float64)
    tmp_buf = np.empty(rc * kmax, dtype=np.float64)
    msk_buf = np.empty(rc * kmax, dtype=bool)
    for r0 in range(0, n_rep, rc):
        m = min(n_rep, r0 + rc) - r0
        chunk = sims[r0 : r0 + m]
        chunk_best = best[r0 : r0 + m]
        for i in np.flatnonzero(sizes):
            a, b = win.start[i], win.start[i + 1]
            k = b - a
            cnt = cnt_buf[: m * k].reshape(m, k)
            val = val_buf[: m * k].reshape(m, k)
            tmp = tmp_buf[: m * k].reshape(m, k)
            msk = msk_buf[: m * k].reshape(m, k)
            np.take(chunk, neighbour[a:b], axis=1, out=cnt)
            np.cumsum(cnt, axis=1, out=cnt, dtype=np.int32)
            np.take(table, cnt, out=val)
            np.multiply(cnt, d[a:b], out=tmp)
            val -= tmp
            val -= g[a:b]
            np.less(cnt, thresh[a:b], out=msk)
            np.putmask(val, msk, 0.0)
            np.maximum(chunk_best, val.max(axis=1), out=chunk_best)
    return best


def _segments(win: _Windows, expected: np.ndarray, level: float):
    """Cut every centre's neighbour list into runs of windows ("segments") over which the
    expected count grows by at most ``_SEGMENT_FRACTION`` × the excess a window needs to
    reach the screening level (about sqrt(2·E·L) above E); the run boundaries are where
    ``floor(sqrt(2E/L) / _SEGMENT_FRACTION)`` changes.

    Returns ``(order, indptr, shape)``: ``order`` lists the windows segment by segment in
    segment-major order (segment t of every centre, then t + 1, …; the row of segment t of
    centre i is ``t × n_centres + i``); ``indptr`` (rows + 1) delimits each row's windows in
    ``order`` (empty rows where a centre has fewer segments); ``shape`` is
    ``(segments per centre at most, n_centres)``.
    """
    sizes = np.diff(win.start)
    n_c = len(sizes)
    centre_of = np.repeat(np.arange(n_c), sizes)
    key = np.floor(np.sqrt(2.0 * np.maximum(expected, 0.0) / level) / _SEGMENT_FRACTION)
    new = np.ones(len(key), dtype=bool)
    new[1:] = (key[1:] != key[:-1]) | (centre_of[1:] != centre_of[:-1])
    run = np.cumsum(new) - 1  # segment number over the block
    first_run = np.zeros(n_c, dtype=run.dtype)
    first_run[sizes > 0] = run[win.start[:-1][sizes > 0]]
    t_of = run - first_run[centre_of]  # segment number within its centre
    n_t = int(t_of.max()) + 1 if len(t_of) else 0
    row = t_of * n_c + centre_of
    order = np.argsort(row, kind="stable")
    counts = np.bincount(row, minlength=n_t * n_c)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return order, indptr, (n_t, n_c)


def _screened_maxima(
    sims_t: list[np.ndarray],
    win: _Windows,
    llr: _LLR,
    expected: np.ndarray,
    d: np.ndarray,
    g: np.ndarray,
    critical: np.ndarray,
    level: float,
) -> np.ndarray:
    """Per replication, the maximum LLR over the windows whose case count reaches their
    ``critical`` count (0 when none does); every window whose LLR reaches the screening level
    is among them, so a replication's maximum is exact whenever it is at least that level.

    ``sims_t`` holds the replications transposed (locations × replications), in consecutive
    column chunks. Coarse to fine: the case counts of each segment (:func:`_segments`) of every
    centre, for a chunk of replications at once, are one sparse-matrix product; cumulated
    along the centre's list, the count at a segment's end is at least the count of every
    window in the segment (counts only grow along the list). So a window can reach its
    critical count only where its segment's end count reaches the smallest critical count of
    the segment, and only those (segment, replication) pairs are evaluated window by window.
    Exact: integer counts throughout, and the LLR of each window evaluated as in
    :func:`_replicate_maxima`.
    """
    from scipy import sparse

    n_rep = sum(x.shape[1] for x in sims_t)
    best = np.zeros(n_rep)
    n_win = len(win.neighbour)
    if n_rep == 0 or n_win == 0:
        return best
    n_loc = sims_t[0].shape[0]
    order, indptr, (n_t, n_c) = _segments(win, expected, level)
    lengths = np.diff(indptr)
    full = lengths > 0
    matrix = sparse.csr_matrix(
        (np.ones(n_win, dtype=np.int32), win.neighbour[order].astype(np.int32), indptr),
        shape=(n_t * n_c, n_loc),
    )
    # the smallest critical count of each segment (C + 1, never reached, for empty rows)
    seg_min = np.full(n_t * n_c, llr.C + 1, dtype=np.int64)
    seg_min[full] = np.minimum.reduceat(critical[order], indptr[:-1][full])
    seg_min = seg_min.reshape(n_t, n_c, 1)
    seg_first = order[np.minimum(indptr[:-1], n_win - 1)]  # first window of each segment
    neighbour = win.neighbour
    table = llr.table
    r0 = 0
    for x in sims_t:
        m = x.shape[1]
        counts = np.asarray(matrix @ x).reshape(n_t, n_c, m)
        for t in range(1, n_t):  # cumulate along each centre's list
            np.add(counts[t], counts[t - 1], out=counts[t])
        cand = np.flatnonzero(counts >= seg_min)
        # evaluate the candidate segments window by window, a bounded number of windows at once
        ends = np.cumsum(lengths[cand // m])
        cuts = np.searchsorted(ends, np.arange(_FINE_WINDOWS, int(ends[-1]) if cand.size else 0,
                                               _FINE_WINDOWS))
        for part in np.split(cand, cuts):
            if not part.size:
                continue
            row, rep = np.divmod(part, m)
            base = np.where(row >= n_c, counts.reshape(-1)[np.maximum(part - n_c * m, 0)], 0)
            n_in = lengths[row]
            off = np.cumsum(n_in) - n_in
            w = np.repeat(seg_first[row] - off, n_in) + np.arange(int(n_in.sum()))
            reps = np.repeat(rep, n_in)
            cs = np.cumsum(x[neighbour[w], reps], dtype=np.int64)
            before = np.where(off > 0, cs[np.maximum(off - 1, 0)], 0)
            cnt = cs + np.repeat(base.astype(np.int64) - before, n_in)
            hit = cnt >= critical[w]
            if hit.any():
                cc, ww = cnt[hit], w[hit]
                np.maximum.at(best, r0 + reps[hit], table[cc] - cc * d[ww] - g[ww])
        r0 += m
    return best


def _map(fn, items: list, n_jobs: int) -> list:
    """``[fn(x) for x in items]``, on ``n_jobs`` threads (results in the order of ``items``)."""
    if n_jobs <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(n_jobs, len(items))) as pool:
        return list(pool.map(fn, items))


@dataclass
class _BestWindows:
    """The observed data's best window around each centre: the first of its largest LLR.

    ``step`` is the window's last position in the centre's neighbour list (the window is the
    ``step + 1`` nearest); a centre with no window has ``step`` -1 and ``llr`` 0.
    """

    llr: np.ndarray
    step: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    population: np.ndarray
    radius: np.ndarray


@dataclass
class _ScanTables:
    """The windows of every centre, kept block by block, and the observed data's scan.

    Each block holds the windows of centres ``rows`` compactly, neighbour (int32) and closed
    flag only: 5 bytes a window, the only part that grows as areas × areas within the maximum
    window (populations come back by :func:`_cumulative_population`, distances are not needed).
    """

    blocks: list[tuple[np.ndarray, _Windows]]
    best: _BestWindows
    n_windows: int
    pilot: np.ndarray  # maximum LLR of the first min(_PILOT, n_sim) replications
    _firsts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def members(self, i: int) -> np.ndarray:
        """Locations (spatial order) of centre ``i``'s best window, nearest first."""
        if len(self._firsts) != len(self.blocks):
            self._firsts = np.array([rows[0] for rows, _ in self.blocks])
        b = int(np.searchsorted(self._firsts, i, side="right")) - 1
        rows, win = self.blocks[b]
        a = win.start[i - rows[0]]
        return win.neighbour[a : a + self.best.step[i] + 1].astype(np.intp)


def _observe(
    xy: np.ndarray,
    pop: np.ndarray,
    c: np.ndarray,
    limit: float,
    metric: str,
    inv: np.ndarray,
    llr: _LLR,
    total_p: float,
    sims: np.ndarray | None,
    n_jobs: int,
) -> _ScanTables:
    """First pass over blocks of centres: windows, the observed data's best window per
    centre, and the full scan of the pilot replications (the first ``_PILOT`` rows of
    ``sims``). Blocks go to ``n_jobs`` threads; nothing depends on the blocking or threads."""
    n = len(pop)
    total_c = llr.C
    pilot_sims = None if sims is None else np.ascontiguousarray(sims[: min(len(sims), _PILOT)])

    def block(rows: np.ndarray):
        win = _window_block(xy, pop, limit, metric, inv, rows)
        sizes = np.diff(win.start)
        expected = total_c * win.cum_pop / total_p
        d, g, thresh = llr.window_terms(expected, win.closed)
        cs = np.cumsum(c[win.neighbour])
        obs_c = cs - np.repeat(np.concatenate([[0], cs])[win.start[:-1]], sizes)
        obs = llr.values(obs_c, d, g, thresh) if total_c > 0 else np.zeros(len(obs_c))
        # best window per centre: the first of its largest LLR
        has = sizes > 0
        centre_of = np.repeat(np.arange(len(rows)), sizes)
        top = np.zeros(len(rows))
        if has.any():
            top[has] = np.maximum.reduceat(obs, win.start[:-1][has])
        at = np.flatnonzero(obs == top[centre_of])
        first = at[np.concatenate([[True], centre_of[at[1:]] != centre_of[at[:-1]]])[: len(at)]]
        who = centre_of[first]
        step = np.full(len(rows), -1, dtype=np.int64)
        step[who] = first - win.start[who]
        fields = [np.zeros(len(rows)) for _ in range(4)]
        for out, values in zip(fields, (obs_c, expected, win.cum_pop, win.distance), strict=True):
            out[who] = values[first]
        pilot = None
        if pilot_sims is not None:
            pilot = _replicate_maxima(pilot_sims, win, llr, d, g, thresh)
        kept = _Windows(
            start=win.start,
            neighbour=win.neighbour.astype(np.int32),
            distance=None,
            cum_pop=None,
            closed=win.closed,
        )
        return rows, kept, top, step, fields, int(np.sum(win.closed)), pilot

    parts = _map(block, _block_rows(n, n_jobs), n_jobs)
    best = _BestWindows(
        llr=np.concatenate([p[2] for p in parts]),
        step=np.concatenate([p[3] for p in parts]),
        observed=np.concatenate([p[4][0] for p in parts]).astype(np.int64),
        expected=np.concatenate([p[4][1] for p in parts]),
        population=np.concatenate([p[4][2] for p in parts]),
        radius=np.concatenate([p[4][3] for p in parts]),
    )
    n_pilot = 0 if pilot_sims is None else len(pilot_sims)
    pilot = np.zeros(n_pilot)
    for p in parts:
        if p[6] is not None:
            np.maximum(pilot, p[6], out=pilot)
    return _ScanTables(
        blocks=[(p[0], p[1]) for p in parts],
        best=best,
        n_windows=sum(p[5] for p in parts),
        pilot=pilot,
    )


def _simulated_maxima(
    tables: _ScanTables,
    sims: np.ndarray,
    llr: _LLR,
    pop: np.ndarray,
    total_p: float,
    n_jobs: int,
) -> np.ndarray:
    """Exact maximum LLR of each replication (rows of ``sims``), evaluating few windows.

    The first ``_PILOT`` replications were scanned in full by :func:`_observe`; the
    screening level L is ``_SCREEN_FRACTION`` × the smallest pilot maximum. For the other
    replications, block by block, only the windows whose case count reaches the count at
    which their LLR is L are evaluated (an integer comparison); this finds the exact maximum
    of every replication whose maximum is at least L, and the few that fall below L are
    scanned again in full. Memory: one block's per-window terms per thread.
    """
    n_rep = sims.shape[0]
    pilot = len(tables.pilot)
    best = np.empty(n_rep)
    best[:pilot] = tables.pilot
    if pilot == n_rep:
        return best
    rest_sims = sims[pilot:]
    level = _SCREEN_FRACTION * float(tables.pilot.min())

    def terms(win: _Windows):
        expected = llr.C * _cumulative_population(win, pop) / total_p
        return (expected, *llr.window_terms(expected, win.closed))

    def full_scan(rows_sims: np.ndarray) -> np.ndarray:
        def block(item):
            _, win = item
            _, d, g, thresh = terms(win)
            return _replicate_maxima(rows_sims, win, llr, d, g, thresh)

        out = np.zeros(len(rows_sims))
        for part in _map(block, tables.blocks, n_jobs):
            np.maximum(out, part, out=out)
        return out

    if not level > 0:
        best[pilot:] = full_scan(rest_sims)
        return best

    # transposed, in column chunks, for the sparse products of the coarse screening
    sims_t = [
        np.ascontiguousarray(rest_sims[a : a + _SCREEN_CHUNK].T)
        for a in range(0, len(rest_sims), _SCREEN_CHUNK)
    ]

    def screened(item):
        _, win = item
        expected, d, g, thresh = terms(win)
        critical = llr.critical_counts(level * (1 - 1e-9), expected, d, g, thresh)
        return _screened_maxima(sims_t, win, llr, expected, d, g, critical, level)

    rest = np.zeros(n_rep - pilot)
    for part in _map(screened, tables.blocks, n_jobs):
        np.maximum(rest, part, out=rest)
    low = np.flatnonzero(rest < level)
    sims_t.clear()  # free the transposed copy before any full rescan
    if low.size:
        rest[low] = full_scan(np.ascontiguousarray(rest_sims[low]))
    best[pilot:] = rest
    return best
