"""Figures worth looking at: survival curves, maps and interactive charts for the reports.

- :func:`area_polygons` gives each small area a polygon (the Voronoi cell of its centroid,
  clipped to the convex hull of the outline of England), so maps can be choropleths;
- :func:`choropleth` draws classed data with a classed legend, clipped to the outline;
- :func:`survival_small_multiples` draws survival curves on their time grid with confidence
  bands, one panel per group and one colour per line, stopping where 7 or fewer remain at risk;
- :func:`km_with_numbers_at_risk` and :func:`step_curve` draw Kaplan–Meier curves with the
  (protected) numbers at risk under the axis, and cumulative incidence as a step curve;
- :func:`interactive_chart` shows an Altair chart that works offline (the Vega JavaScript is
  inlined, no CDN) and saves it as ``figures/<name>.html``.

Example:
    >>> areas = pd.DataFrame({"x": [0, 10_000, 0, 10_000], "y": [0, 0, 10_000, 10_000]})
    >>> cells = area_polygons(areas, [[-5, -5], [15, -5], [15, 15], [-5, 15]])
    >>> len(cells), round(float(_area(cells[0])), 1)
    (4, 100.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MIN_AT_RISK = 8  # curves stop where 7 or fewer remain at risk (the disclosure threshold)


# ---------------------------------------------------------------------------------------------
# polygons for the synthetic areas
# ---------------------------------------------------------------------------------------------
def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _clip_convex(poly: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman: ``poly`` clipped to the convex, counter-clockwise polygon ``clip``."""
    out = poly
    for a, b in zip(clip, np.roll(clip, -1, axis=0), strict=True):
        if len(out) == 0:
            break
        edge = b - a
        side = edge[0] * (out[:, 1] - a[1]) - edge[1] * (out[:, 0] - a[0])  # >= 0: inside
        nxt = np.roll(out, -1, axis=0)
        side_n = np.roll(side, -1)
        pts: list[np.ndarray] = []
        for p, q, sp, sq in zip(out, nxt, side, side_n, strict=True):  # vertices of one cell
            if sp >= 0:
                pts.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                pts.append(p + t * (q - p))
        out = np.array(pts) if pts else np.empty((0, 2))
    return out


def area_polygons(areas: pd.DataFrame, outline_km: Sequence[Sequence[float]], *, x: str = "x",
                  y: str = "y") -> list[np.ndarray]:
    """A polygon (km, counter-clockwise) per area: the Voronoi cell of its centroid (metres in
    ``areas[x]``, ``areas[y]``) clipped to the convex hull of ``outline_km``. Deterministic.

    Example:
        >>> areas = pd.DataFrame({"x": [0, 10_000], "y": [5_000, 5_000]})   # two centroids, metres
        >>> cells = area_polygons(areas, [[-10, 0], [20, 0], [20, 10], [-10, 10]])   # outline, km
        >>> [(np.round(c, 3) + 0.0).tolist() for c in cells]   # split halfway between the centroids, at x = 5 km
        [[[5.0, 0.0], [5.0, 10.0], [-10.0, 10.0], [-10.0, 0.0]], [[5.0, 10.0], [5.0, 0.0], [20.0, 0.0], [20.0, 10.0]]]
    """
    from scipy.spatial import ConvexHull, Voronoi

    pts = np.column_stack([areas[x].to_numpy(float), areas[y].to_numpy(float)]) / 1000.0
    outline = np.asarray(outline_km, dtype=float)
    hull = outline[ConvexHull(outline).vertices]  # counter-clockwise
    span = float(np.ptp(np.vstack([pts, outline]), axis=0).max()) * 10 + 1.0
    centre = outline.mean(axis=0)
    far = centre + span * np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=float)
    vor = Voronoi(np.vstack([pts, far]))
    cells = []
    for i in range(len(pts)):
        region = vor.regions[vor.point_region[i]]
        poly = vor.vertices[[v for v in region if v >= 0]]
        order = np.argsort(np.arctan2(poly[:, 1] - pts[i, 1], poly[:, 0] - pts[i, 0]))
        cells.append(_clip_convex(poly[order], hull))
    return cells


def choropleth(ax: Any, cells: Sequence[np.ndarray], values: pd.Series | np.ndarray, *,
               classes: Sequence[Any] | None = None, bins: Sequence[float] | None = None,
               cmap: str = "viridis", class_labels: Sequence[str] | None = None,
               legend_title: str | None = None, outline: Sequence[Sequence[float]] | None = None,
               missing_label: str = "not available", legend_loc: str = "upper left") -> Any:
    """Fill each cell by the class of its value, with a classed legend (one patch per class).

    ``classes`` are the values themselves (categorical data, e.g. quintiles); ``bins`` the
    class edges of continuous data. Cells with a missing value are grey. With ``outline``
    (km) the map is clipped to it and the outline drawn.

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = Figure().subplots()
        >>> cells = [np.array([[0, 0], [1, 0], [1, 1], [0, 1]]) + [i, 0] for i in range(3)]
        >>> coll = choropleth(ax, cells, [0.8, 1.3, None], bins=[0.5, 1, 1.5], legend_title="SIR")
        >>> [t.get_text() for t in ax.get_legend().get_texts()]
        ['0.5 to <1', '1 to <1.5', 'not available']
        >>> coll.get_facecolors().round(2).tolist()   # two viridis classes, then grey for missing
        [[0.28, 0.12, 0.44, 1.0], [0.79, 0.88, 0.12, 1.0], [0.85, 0.85, 0.85, 1.0]]
        >>> choropleth(ax, cells, [1, 2, 3])
        Traceback (most recent call last):
        ...
        ValueError: choropleth: give classes= (categorical values) or bins= (class edges)
    """
    import matplotlib as mpl
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch, Polygon

    vals = pd.Series(np.asarray(values, dtype=object))
    if classes is not None:
        codes = vals.map({c: i for i, c in enumerate(classes)})
        n = len(classes)
        labels = list(class_labels) if class_labels is not None else [str(c) for c in classes]
    elif bins is not None:
        edges = np.asarray(bins, dtype=float)
        num = pd.to_numeric(vals, errors="coerce").to_numpy(float)
        idx = np.clip(np.searchsorted(edges, num, side="right") - 1, 0, len(edges) - 2)
        codes = pd.Series(np.where(np.isnan(num), np.nan, idx))
        n = len(edges) - 1
        labels = list(class_labels) if class_labels is not None else [
            f"{edges[i]:g} to <{edges[i + 1]:g}" for i in range(n)]
    else:
        raise ValueError("choropleth: give classes= (categorical values) or bins= (class edges)")
    colours = mpl.colormaps[cmap](np.linspace(0.08, 0.92, max(n, 2)))[:n]
    face = [colours[int(c)] if pd.notna(c) else (0.85, 0.85, 0.85, 1.0) for c in codes]
    keep = [i for i, c in enumerate(cells) if len(c) >= 3]
    coll = PolyCollection([cells[i] for i in keep], facecolors=[face[i] for i in keep], edgecolors="white",
                          linewidths=0.3)
    ax.add_collection(coll)
    if outline is not None:
        ring = np.asarray(outline, dtype=float)
        patch = Polygon(ring, closed=True, facecolor="none", edgecolor="#555", lw=0.8, zorder=4)
        ax.add_patch(patch)
        coll.set_clip_path(patch)
    allpts = np.vstack([cells[i] for i in keep]) if keep else np.zeros((1, 2))
    ax.set_xlim(allpts[:, 0].min(), allpts[:, 0].max())
    ax.set_ylim(allpts[:, 1].min(), allpts[:, 1].max())
    ax.set_aspect("equal")
    handles = [Patch(facecolor=colours[i], edgecolor="#777", label=labels[i]) for i in range(n)]
    if pd.isna(codes).any():
        handles.append(Patch(facecolor=(0.85, 0.85, 0.85), edgecolor="#777", label=missing_label))
    ax.legend(handles=handles, title=legend_title, loc=legend_loc, fontsize=8, title_fontsize=8)
    return coll


# ---------------------------------------------------------------------------------------------
# survival curves
# ---------------------------------------------------------------------------------------------
def survival_small_multiples(curve: pd.DataFrame, *, panel: str, line: str, time: str = "time",
                             value: str = "net_survival", lower: str = "lower", upper: str = "upper",
                             at_risk: str | None = "n_at_risk", ncols: int = 2,
                             panel_label: Callable[[Any], str] = str, line_label: Callable[[Any], str] = str,
                             xlabel: str = "years since diagnosis", ylabel: str = "survival") -> Any:
    """One panel per ``panel`` value, one step curve per ``line`` value (a colour each, the same
    in every panel) with its 95% confidence band; each curve stops where fewer than 8 are at
    risk. A net-survival curve's band is exp(-(H ± 1.96 SE)) from its cumulative excess hazard H.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> curve = pd.DataFrame({"sex": [1] * 8 + [2] * 4, "stage": ["I"] * 4 + ["IV"] * 4 + ["I"] * 4,
        ...                       "time": [0, 1, 2, 3] * 3,
        ...                       "net_survival": [1, .95, .9, .88, 1, .5, .3, .2, 1, .96, .93, .9],
        ...                       "n_at_risk": [50, 45, 40, 30, 20, 10, 7, 3, 60, 55, 50, 41]})
        >>> fig = survival_small_multiples(curve, panel="sex", line="stage",
        ...                                panel_label={1: "men", 2: "women"}.get)
        >>> [ax.get_title() for ax in fig.axes], [t.get_text() for t in fig.legends[0].get_texts()]
        (['men', 'women'], ['I', 'IV'])
        >>> [(line.get_label(), line.get_xdata().tolist()) for line in fig.axes[0].lines]   # IV stops: 7 at risk at 2 years
        [('I', [0, 1, 2, 3]), ('IV', [0, 1])]
        >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt

    panels = sorted(curve[panel].dropna().unique().tolist())
    lines = sorted(curve[line].dropna().unique().tolist())
    colours = {g: plt.get_cmap("viridis")(x) for g, x in zip(lines, np.linspace(0.0, 0.85, max(len(lines), 1)),
                                                               strict=False)}
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    for ax, p in zip(axes.flat, panels, strict=False):
        part = curve[curve[panel] == p]
        for g in lines:
            c = part[part[line] == g].sort_values(time)
            if at_risk is not None and at_risk in c.columns:
                c = c[c[at_risk] >= MIN_AT_RISK]
            if c.empty:
                continue
            ax.step(c[time], c[value], where="post", color=colours[g], label=line_label(g), lw=1.6)
            if {"cumulative_excess_hazard", "var_cumulative_excess_hazard"} <= set(c.columns):
                # the band on the log-hazard-free scale: exp(-(H ± 1.96 √var H)); the log-log
                # interval collapses where the cumulative excess hazard is near 0
                h = c["cumulative_excess_hazard"].to_numpy(float)
                half = 1.959964 * np.sqrt(np.clip(c["var_cumulative_excess_hazard"].to_numpy(float), 0, None))
                lo, hi = np.exp(-(h + half)), np.minimum(np.exp(-(h - half)), 1.0)
                ax.fill_between(c[time], lo, hi, step="post", color=colours[g], alpha=0.15, lw=0)
            elif lower in c.columns and upper in c.columns:
                lo, hi = _steady_band(c[lower].to_numpy(float), c[upper].to_numpy(float))
                ax.fill_between(c[time], lo, hi, step="post", color=colours[g], alpha=0.15, lw=0)
        ax.set_title(panel_label(p), fontsize=10)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1, :]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    handles, labels = [], []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=max(len(labels), 1), frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def _steady_band(lower: np.ndarray, upper: np.ndarray, factor: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """The band without isolated spikes: points whose width exceeds ``factor`` times the median
    width of their 9 neighbours are not drawn (unstable variance at single grid points)."""
    width = pd.Series(upper - lower)
    local = width.rolling(9, center=True, min_periods=1).median()
    spike = (width > factor * local) & (width > 0.05)
    return np.where(spike, np.nan, lower), np.where(spike, np.nan, upper)


def km_with_numbers_at_risk(table: pd.DataFrame, *, group: str, time: str = "time", value: str = "survival",
                            lower: str = "lower", upper: str = "upper", at_risk: str = "n_at_risk",
                            ticks: Sequence[float] | None = None, xlabel: str = "time",
                            ylabel: str = "survival", legend_title: str | None = None) -> Any:
    """Kaplan–Meier step curves with bands and, under the axis, the numbers at risk at
    ``ticks`` read from the (protected) table: a suppressed number reads ``[c]``.

    Example:
        >>> import matplotlib.pyplot as plt
        >>> km = pd.DataFrame({"arm": ["surgery"] * 3 + ["radiotherapy"] * 3, "time": [0, 12, 24] * 2,
        ...                    "survival": [1, .9, .8, 1, .7, .5], "n_at_risk": [120, 96, 80, 40, 25, None]})
        >>> fig = km_with_numbers_at_risk(km, group="arm", ticks=[0, 12, 24], xlabel="months")
        >>> curves, risk = fig.axes
        >>> [line.get_label() for line in curves.lines], [t.get_text() for t in risk.texts]
        (['surgery', 'radiotherapy'], ['120', '96', '80', '40', '25', '[c]'])
        >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(table[group].tolist()))
    fig, (ax, risk) = plt.subplots(2, 1, figsize=(8, 4.6 + 0.28 * len(groups)), sharex=True,
                                   gridspec_kw={"height_ratios": [4, 0.35 * len(groups) + 0.4]})
    for k, g in enumerate(groups):
        d = table[table[group] == g].sort_values(time)
        colour = f"C{k}"
        ax.step(d[time], d[value], where="post", color=colour, label=str(g), lw=1.6)
        if lower in d.columns and upper in d.columns:
            ax.fill_between(d[time], d[lower], d[upper], step="post", color=colour, alpha=0.15, lw=0)
    ax.set(ylabel=ylabel, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(title=legend_title)
    tmax = float(table[time].max())
    if ticks is None:
        ticks = np.linspace(0, tmax, 6).round()
    ticks = [t for t in ticks if t <= tmax]
    for k, g in enumerate(groups):
        d = table[table[group] == g].sort_values(time)
        for t in ticks:
            before = d[d[time] <= t]
            n = before[at_risk].iloc[-1] if len(before) else (d[at_risk].iloc[0] if len(d) else np.nan)
            text = "[c]" if pd.isna(n) else f"{round(float(n)):,}"
            risk.text(t, len(groups) - 1 - k, text, ha="center", va="center", fontsize=8, color=f"C{k}")
    risk.set_yticks(range(len(groups)), [str(g) for g in groups][::-1], fontsize=8)
    risk.set_ylim(-0.6, len(groups) - 0.4)
    risk.set_title("numbers at risk (protected)", fontsize=8, loc="left")
    for side in ("top", "right", "left"):
        risk.spines[side].set_visible(False)
    risk.tick_params(axis="y", length=0)
    risk.set_xticks(ticks)
    risk.set_xlabel(xlabel)
    fig.tight_layout()
    return fig


def step_curve(ax: Any, time: Sequence[float], value: Sequence[float], lower: Sequence[float] | None = None,
               upper: Sequence[float] | None = None, *, label: str | None = None, colour: str = "C0") -> None:
    """A curve that starts at 0 at time 0 and steps at each event time (e.g. cumulative incidence).

    Example:
        >>> from matplotlib.figure import Figure
        >>> ax = Figure().subplots()
        >>> step_curve(ax, [2.0, 5.0], [0.10, 0.25], [0.05, 0.20], [0.15, 0.30], label="recurrence")
        >>> ax.lines[0].get_xydata().tolist(), ax.lines[0].get_label(), len(ax.collections)
        ([[0.0, 0.0], [2.0, 0.1], [5.0, 0.25]], 'recurrence', 1)
    """
    t = np.r_[0.0, np.asarray(time, dtype=float)]
    v = np.r_[0.0, np.asarray(value, dtype=float)]
    ax.step(t, v, where="post", color=colour, label=label, lw=1.6)
    if lower is not None and upper is not None:
        ax.fill_between(t, np.r_[0.0, np.asarray(lower, float)], np.r_[0.0, np.asarray(upper, float)],
                        step="post", color=colour, alpha=0.15, lw=0)


# ---------------------------------------------------------------------------------------------
# interactive charts, offline
# ---------------------------------------------------------------------------------------------
def interactive_html(chart: Any, name: str) -> str:
    """A self-contained HTML page of an Altair chart with the Vega JavaScript inlined (works
    offline: no CDN). ``name`` makes the element id unique on the page.

    Example:
        >>> class Chart:   # stands in for an Altair chart, whose page inlines ~900 kB of Vega
        ...     def to_html(self, inline, output_div):
        ...         return f"<div id='{output_div}'></div><script>/* inline={inline} */</script>"
        >>> interactive_html(Chart(), "incidence_by_region")
        "<div id='rl-chart-incidence_by_region'></div><script>/* inline=True */</script>"
    """
    return chart.to_html(inline=True, output_div=f"rl-chart-{name}")


def interactive_chart(chart: Any, output_dir: str | Path, name: str) -> Path:
    """Save ``figures/<name>.html`` (self-contained) and show the chart in the notebook.

    Example:
        >>> import tempfile
        >>> from unittest import mock
        >>> class Chart:   # stands in for an Altair chart, whose page inlines ~900 kB of Vega
        ...     def to_html(self, inline, output_div):
        ...         return f"<div id='{output_div}'></div>"
        >>> with tempfile.TemporaryDirectory() as d, mock.patch("IPython.display.display") as shown:
        ...     path = interactive_chart(Chart(), d, "sir_map")
        ...     path.relative_to(d).as_posix(), path.read_text(), shown.call_args.args[0].data
        ('figures/sir_map.html', "<div id='rl-chart-sir_map'></div>", "<div id='rl-chart-sir_map'></div>")
    """
    from IPython.display import HTML, display

    from registry_lib.reporting import study_output_dir

    page = interactive_html(chart, name)
    folder = study_output_dir(output_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.html"
    path.write_text(page)
    display(HTML(page))
    return path


def polygons_geojson(cells: Sequence[np.ndarray], properties: pd.DataFrame) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (planar km coordinates) of the cells with their properties.

    Example:
        >>> g = polygons_geojson([np.array([[0, 0], [1, 0], [1, 1]])], pd.DataFrame({"a": [1]}))
        >>> g["features"][0]["geometry"]["coordinates"][0][0], g["features"][0]["properties"]
        ([0.0, 0.0], {'a': 1})
    """
    feats = []
    records = properties.astype(object).where(properties.notna(), None).to_dict("records")
    for cell, props in zip(cells, records, strict=True):
        if len(cell) < 3:
            continue
        ring = [[round(float(a), 3), round(float(b), 3)] for a, b in cell]
        ring.append(ring[0])
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring[::-1]]},
                      "properties": {k: (v.item() if hasattr(v, "item") else v) for k, v in props.items()}})
    return {"type": "FeatureCollection", "features": feats}
