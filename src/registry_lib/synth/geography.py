"""Geography of synthetic England: areas, trusts and point sources on a BNG-like plane.

Areas are LSOA-like (about 1,500 residents at full scale). Their number scales with the
cohort's ``scale``; they are placed in real cities (dense, Gaussian around the city centre),
small towns and countryside inside a crude outline of England, in the 9 regions. Deprivation
quintiles are national ranks of a spatially smooth score that is higher in city cores and in
the north.

Example:
    >>> import numpy as np
    >>> from registry_lib.synth.params import epidemiology_params
    >>> geo = make_geography(0.002, epidemiology_params(), np.random.default_rng(1))
    >>> len(geo.areas), sorted(geo.areas.deprivation_quintile.unique().tolist())
    (74, [1, 2, 3, 4, 5])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

KM = 1000.0


@dataclass
class Geography:
    """Areas (reference/areas columns), their relative size and age tilt, trusts, sources.

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> geo = make_geography(0.0005, p, np.random.default_rng(1))
        >>> isinstance(geo, Geography), len(geo.size) == len(geo.areas), round(float(geo.size.mean()), 6)
        (True, True, 1.0)
    """

    areas: pd.DataFrame
    size: np.ndarray           # relative population of each area (mean 1)
    age_tilt: np.ndarray       # log-slope of the area's age structure
    trusts: pd.DataFrame
    point_sources: pd.DataFrame
    area_trust_choices: np.ndarray   # (n_areas, 3) indices of the 3 nearest trusts


def _largest_remainder(total: int, weights: np.ndarray, minimum: int = 0) -> np.ndarray:
    """Integers summing to ``total`` proportional to ``weights`` (each at least ``minimum``)."""
    weights = np.asarray(weights, dtype=float)
    base = np.full(len(weights), minimum, dtype=np.int64)
    rest = total - base.sum()
    if rest <= 0 or weights.sum() == 0:
        return base
    exact = rest * weights / weights.sum()
    floor = np.floor(exact).astype(np.int64)
    left = rest - floor.sum()
    order = np.argsort(-(exact - floor), kind="stable")
    floor[order[:left]] += 1
    return base + floor


def _inside(poly: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Vectorised ray-casting point-in-polygon test."""
    inside = np.zeros(len(x), dtype=bool)
    px, py = poly[:, 0], poly[:, 1]
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    for x0, y0, x1, y1 in zip(px, py, qx, qy, strict=True):   # loop over polygon edges
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < xcross)
    return inside


class _Plane:
    """Region membership on the plane: London is a circle; elsewhere the nearest centroid."""

    def __init__(self, geo: dict[str, Any]):
        self.names = list(geo["regions"])
        c = np.array([geo["regions"][r][:2] for r in self.names], dtype=float) * KM
        self.centroids = c
        self.london = self.names.index("London")
        self.london_r = float(geo["london_radius_km"]) * KM
        self.poly = np.array(geo["england_outline_km"], dtype=float) * KM

    def region_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = np.hypot(x[:, None] - self.centroids[None, :, 0], y[:, None] - self.centroids[None, :, 1])
        d[:, self.london] = np.inf
        reg = np.argmin(d, axis=1)
        in_london = np.hypot(x - self.centroids[self.london, 0], y - self.centroids[self.london, 1]) < self.london_r
        return np.where(in_london, self.london, reg)

    def uniform_in_region(self, region: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points uniform in a region's part of England (rejection sampling in batches)."""
        lo, hi = self.poly.min(axis=0), self.poly.max(axis=0)
        xs, ys, got = [], [], 0
        while got < n:   # loop over batches, not points
            m = max(4096, 40 * (n - got))
            x = rng.uniform(lo[0], hi[0], m)
            y = rng.uniform(lo[1], hi[1], m)
            keep = _inside(self.poly, x, y)
            keep[keep] &= self.region_of(x[keep], y[keep]) == region
            xs.append(x[keep])
            ys.append(y[keep])
            got += int(keep.sum())
        return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def make_geography(scale: float, params: dict[str, Any], rng: np.random.Generator) -> Geography:
    """Areas, trusts and point sources for a cohort at ``scale`` (fraction of England).

    Example:
        >>> from registry_lib.synth.params import epidemiology_params
        >>> p = epidemiology_params()
        >>> geo = make_geography(0.0005, p, np.random.default_rng(1))
        >>> bool(geo.areas["area_id"].is_unique), geo.area_trust_choices.shape[1]
        (True, 3)
    """
    geo = params["geography"]
    pop = params["population"]
    plane = _Plane(geo)
    n_regions = len(plane.names)
    n_areas = max(2 * n_regions, int(round(pop["full_scale_areas"] * scale)))
    region_pop = np.array([geo["regions"][r][2] for r in plane.names], dtype=float)
    per_region = _largest_remainder(n_areas, region_pop, minimum=2)

    cities = [(name, *v) for name, v in geo["cities"].items()]
    parts: list[tuple[np.ndarray, np.ndarray, int, int, np.ndarray]] = []   # x, y, region, kind, dist
    for r, rname in enumerate(plane.names):          # loop over the 9 regions
        rc = [c for c in cities if c[4] == rname]
        city_share = np.array([c[3] / 1000.0 / region_pop[r] for c in rc])
        city_share = np.minimum(city_share, 1.0)
        rest = max(0.0, 1.0 - city_share.sum())
        town = rest * float(geo["town_share_of_rest"])
        weights = np.concatenate([city_share, [town, rest - town]])
        counts = _largest_remainder(int(per_region[r]), weights)
        for (_, cx, cy, cpop, _), k in zip(rc, counts[:-2], strict=True):   # loop over cities
            sd = float(geo["city_spread_km_per_sqrt_thousand"]) * np.sqrt(cpop) * KM
            px, py = _scatter(plane, cx * KM, cy * KM, sd, int(k), r, rng)
            parts.append((px, py, r, 0, np.hypot(px - cx * KM, py - cy * KM) / sd))
        n_town, n_rural = int(counts[-2]), int(counts[-1])
        if n_town:
            tx, ty = plane.uniform_in_region(r, int(geo["towns_per_region"]), rng)
            which = rng.integers(0, len(tx), n_town)
            sd = float(geo["town_spread_km"]) * KM
            px, py = _scatter_many(plane, tx[which], ty[which], sd, r, rng)
            parts.append((px, py, r, 1, np.hypot(px - tx[which], py - ty[which]) / sd))
        if n_rural:
            px, py = plane.uniform_in_region(r, n_rural, rng)
            parts.append((px, py, r, 2, np.full(n_rural, np.inf)))
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    region = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    kind = np.concatenate([np.full(len(p[0]), p[3]) for p in parts])
    dist = np.concatenate([p[4] for p in parts])

    # Deprivation: inner city + north + smooth noise + noise, ranked into national quintiles.
    dp = geo["deprivation"]
    core = np.where(kind == 0, dp["city_core"], np.where(kind == 1, dp["town_core"], 0.0))
    score = core * np.exp(-0.5 * np.where(np.isfinite(dist), dist, 10.0) ** 2)
    score = score + dp["north_gradient_per_100km"] * (y - 300 * KM) / (100 * KM)
    lon = plane.london
    ld = np.hypot(x - plane.centroids[lon, 0], y - plane.centroids[lon, 1])
    score = score + np.where(region == lon, dp["london_inner"] * np.exp(-0.5 * (ld / (8 * KM)) ** 2), 0.0)
    n_bumps = 400
    lo, hi = plane.poly.min(axis=0), plane.poly.max(axis=0)
    bx = rng.uniform(lo[0], hi[0], n_bumps)
    by = rng.uniform(lo[1], hi[1], n_bumps)
    amp = rng.normal(0.0, 1.0, n_bumps)
    s = float(dp["smooth_noise_scale_km"]) * KM
    field = np.zeros(len(x))
    for start in range(0, len(x), 8192):   # chunks of areas, bounded memory
        sl = slice(start, start + 8192)
        d2 = (x[sl, None] - bx[None, :]) ** 2 + (y[sl, None] - by[None, :]) ** 2
        field[sl] = np.exp(-0.5 * d2 / s**2) @ amp
    field = field / (field.std() or 1.0) * dp["smooth_noise_sd"]
    score = score + field + rng.normal(0.0, dp["iid_noise_sd"], len(x))
    rank = np.argsort(np.argsort(score, kind="stable"), kind="stable")
    quintile = (1 + (5 * rank) // len(x)).astype(np.int8)

    order = np.lexsort((np.round(x), np.round(-y), region))
    n = len(x)
    areas = pd.DataFrame({
        "area_id": [f"E01{i:06d}" for i in range(1, n + 1)],
        "region": np.array(plane.names, dtype=object)[region[order]],
        "x": np.round(x[order], 1),
        "y": np.round(y[order], 1),
        "deprivation_quintile": quintile[order],
        "urban": kind[order] < 2,
    })
    size = np.exp(rng.normal(0.0, float(pop["area_size_log_sd"]), n))
    size = size / size.mean()
    tilt_p = pop["area_age_tilt"]
    urban = areas["urban"].to_numpy()
    tilt = (np.where(urban, tilt_p["urban"], tilt_p["rural"])
            + tilt_p["per_deprivation_quintile"] * (areas["deprivation_quintile"].to_numpy() - 3)
            + rng.normal(0.0, tilt_p["noise_sd"], n))
    trusts, choices = _make_trusts(areas, size, scale, geo, plane, rng)
    sources = _make_point_sources(areas, scale, geo, rng)
    return Geography(areas, size, tilt, trusts, sources, choices)


def _scatter(plane: _Plane, cx: float, cy: float, sd: float, k: int, region: int,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return _scatter_many(plane, np.full(k, cx), np.full(k, cy), sd, region, rng)


def _scatter_many(plane: _Plane, cx: np.ndarray, cy: np.ndarray, sd: float, region: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian scatter around centres, redrawn (a few rounds) where it falls outside England."""
    k = len(cx)
    px = cx + rng.normal(0.0, sd, k)
    py = cy + rng.normal(0.0, sd, k)
    for _ in range(20):   # rounds of redraws, not per point
        bad = ~_inside(plane.poly, px, py)
        if not bad.any():
            break
        px[bad] = cx[bad] + rng.normal(0.0, sd, int(bad.sum()))
        py[bad] = cy[bad] + rng.normal(0.0, sd, int(bad.sum()))
    bad = ~_inside(plane.poly, px, py)
    px[bad], py[bad] = cx[bad], cy[bad]
    return px, py


def _make_trusts(areas: pd.DataFrame, size: np.ndarray, scale: float, geo: dict[str, Any],
                 plane: _Plane, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    tp = geo["trusts"]
    regions = plane.names
    region_pop = np.array([geo["regions"][r][2] for r in regions], dtype=float)
    n = max(tp["min_per_region"] * len(regions), int(round(tp["full_scale"] * scale ** 0.35)))
    n = min(n, tp["full_scale"])
    per_region = _largest_remainder(n, region_pop, minimum=int(tp["min_per_region"]))
    area_region = areas["region"].to_numpy()
    urban = areas["urban"].to_numpy()
    tx, ty, tr = [], [], []
    for r, rname in enumerate(regions):   # loop over regions
        idx = np.flatnonzero(area_region == rname)
        pref = idx[urban[idx]] if urban[idx].any() else idx
        w = size[pref] / size[pref].sum()
        k = int(per_region[r])
        pick = rng.choice(pref, size=k, replace=k > len(pref), p=w)
        tx.append(areas["x"].to_numpy()[pick] + rng.normal(0, 500, k))
        ty.append(areas["y"].to_numpy()[pick] + rng.normal(0, 500, k))
        tr += [rname] * k
    alphabet = np.array(list("0123456789ABCDEFGHJKLMNPQRTVWXY"))
    codes = np.char.add(np.char.add(tp["code_prefix"], np.repeat(alphabet, len(alphabet))),
                        np.tile(alphabet, len(alphabet)))
    codes = np.sort(rng.choice(codes, size=n, replace=False))
    trusts = pd.DataFrame({"trust_code": codes, "region": tr,
                           "x": np.round(np.concatenate(tx), 1), "y": np.round(np.concatenate(ty), 1)})
    ax, ay = areas["x"].to_numpy(), areas["y"].to_numpy()
    k = min(3, n)
    choices = np.empty((len(areas), 3), dtype=np.int64)
    for start in range(0, len(areas), 8192):   # chunks of areas
        sl = slice(start, start + 8192)
        d = np.hypot(ax[sl, None] - trusts["x"].to_numpy()[None, :], ay[sl, None] - trusts["y"].to_numpy()[None, :])
        near = np.argsort(d, axis=1, kind="stable")[:, :k]
        choices[sl] = near if k == 3 else np.pad(near, ((0, 0), (0, 3 - k)), mode="edge")
    return trusts, choices


def _make_point_sources(areas: pd.DataFrame, scale: float, geo: dict[str, Any],
                        rng: np.random.Generator) -> pd.DataFrame:
    sp = geo["point_sources"]
    ns = geo["named_source"]
    ax, ay = areas["x"].to_numpy(), areas["y"].to_numpy()
    urban = areas["urban"].to_numpy()
    city = geo["cities"][ns["city"]]
    rows = [{"source_type": ns["type"], "name": ns["name"],
             "x": city[0] * KM + ns["offset_km"][0] * KM, "y": city[1] * KM + ns["offset_km"][1] * KM,
             "start_year": int(ns["start_year"])}]
    labels = {"power_station": "Power station", "phone_mast": "Phone mast",
              "incinerator": "Incinerator", "industrial_site": "Industrial site"}
    for kind, full in sp["counts"].items():   # loop over the four source types
        k = max(2, int(round(full * np.sqrt(scale))))
        in_town = rng.random(k) < sp["urban_share"][kind]
        pool_u = np.flatnonzero(urban)
        pool_r = np.flatnonzero(~urban) if (~urban).any() else pool_u
        pick = np.where(in_town, pool_u[rng.integers(0, len(pool_u), k)], pool_r[rng.integers(0, len(pool_r), k)])
        lo, hi = sp["start_year_range"][kind]
        start = rng.integers(lo, hi + 1, k)
        jx, jy = rng.normal(0, 800, k), rng.normal(0, 800, k)
        for i in range(k):   # a few dozen rows: building the small table
            rows.append({"source_type": kind, "name": f"{labels[kind]} {i + 1}",
                         "x": ax[pick[i]] + jx[i], "y": ay[pick[i]] + jy[i], "start_year": int(start[i])})
    out = pd.DataFrame(rows)
    out.insert(0, "source_id", [f"PS{i:04d}" for i in range(1, len(out) + 1)])
    out["x"] = out["x"].round(1)
    out["y"] = out["y"].round(1)
    out["start_year"] = out["start_year"].astype(np.int16)
    return out
