"""Maps of the cluster investigation: a choropleth of the areas by smoothed-SIR class, and an
interactive version (zoom, hover with the protected counts) that works offline.

Areas are drawn as polygons (:func:`registry_lib.reporting.figures.area_polygons`); the
classes are those of :data:`registry_lib.studies.cluster_investigation.SIR_CLASS_EDGES`, with
a classed legend. Counts shown on hover are protected (1–7 read ``[c]``).

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from registry_lib.studies.cluster_investigation import _example_study
    >>> outline = [[-30, -30], [40, -30], [40, 30], [-30, 30]]
    >>> fig = plot_choropleth_map(_example_study(), outline)
    >>> len(fig.axes)
    2
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.reporting.figures import area_polygons, choropleth, polygons_geojson
from registry_lib.studies.cluster_investigation import DEFAULT_BANDS_KM, sir_class_labels

SIR_CMAP = "RdBu_r"


def plot_choropleth_map(study: Any, outline_km: Sequence[Sequence[float]], *, zoom_km: float | None = None,
                        alpha: float = 0.05):
    """Two maps: the source's surroundings (areas by smoothed-SIR class, the distance bands, the
    most likely cluster) and the whole comparison region with every significant cluster.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> from registry_lib.studies.cluster_investigation import _example_study
        >>> fig = plot_choropleth_map(_example_study(), [[-30, -30], [40, -30], [40, 30], [-30, 30]], zoom_km=20)
        >>> [ax.get_title() for ax in fig.axes]
        ['Around the source: bands at 2, 5, 10, 25 km', 'The comparison region']
        >>> [float(v) for v in fig.axes[0].get_xlim()], [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        ([-20.0, 20.0], ['source', 'most likely cluster (p = 0.050)', 'distance bands'])
        >>> plt.close(fig)
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    a = study.areas
    cells = area_polygons(a, outline_km)
    labels = sir_class_labels()
    src = study.sources[["x", "y"]].to_numpy() / 1000
    edges = study.settings.get("bands_km", list(DEFAULT_BANDS_KM))
    zoom = float(zoom_km if zoom_km is not None else edges[-1] * 1.2)
    clusters = study.scan.clusters
    pos = a[["x", "y"]] / 1000
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    for k, ax in enumerate(axes):
        choropleth(ax, cells, a["sir_class"].astype(object), classes=labels, cmap=SIR_CMAP,
                   legend_title="smoothed SIR (class)", outline=outline_km,
                   missing_label="no expected cases", legend_loc="lower left" if k == 0 else "upper left")
        legend = ax.get_legend()
        extra = [Line2D([], [], marker="*", ls="", color="black", ms=12, label="source")]
        ax.scatter(src[:, 0], src[:, 1], marker="*", s=180, c="black", zorder=6)
        for j, row in clusters.iterrows():
            if (k == 0 and j > 0) or (k == 1 and j > 0 and row["p_value"] > alpha):
                continue
            cx, cy = pos.loc[row["center"]]
            r = max(float(row["radius"]), 0.5)
            colour = "darkgreen" if j == 0 else "purple"
            ax.add_patch(Circle((cx, cy), r * 1.05, fill=False, lw=2, color=colour, zorder=6))
            name = "most likely cluster" if j == 0 else "secondary cluster"
            if name not in [h.get_label().split(" (")[0] for h in extra]:
                extra.append(Line2D([], [], color=colour, lw=2, label=f"{name} (p = {row['p_value']:.3f})"))
        if k == 0:
            for sx, sy in src:
                for e in edges[1:]:
                    ax.add_patch(Circle((sx, sy), e, fill=False, ls="--", lw=0.8, color="grey", zorder=5))
            extra.append(Line2D([], [], color="grey", ls="--", lw=0.8, label="distance bands"))
            sx, sy = src[0]
            ax.set(xlim=(sx - zoom, sx + zoom), ylim=(sy - zoom, sy + zoom))
            ax.set_title(f"Around the source: bands at {', '.join(f'{e:g}' for e in edges[1:])} km")
        else:
            ax.set_title("The comparison region")
        ax.add_artist(legend)
        ax.legend(handles=extra, loc="upper right", fontsize=7)
        ax.set(xlabel="easting (km)", ylabel="northing (km)", aspect="equal")
    fig.tight_layout()
    return fig


def interactive_map(study: Any, outline_km: Sequence[Sequence[float]], protect: Callable[[Any], Any],
                    *, width: int = 640, height: int = 620):
    """An Altair map of the areas by smoothed-SIR class: scroll to zoom, drag to pan, hover for
    the area's protected observed count, expected count and smoothed SIR.

    Example:
        >>> from registry_lib.studies.cluster_investigation import _example_study
        >>> protect = lambda c: [None if 1 <= v <= 7 else v for v in c]   # counts 1-7 withheld
        >>> chart = interactive_map(_example_study(), [[-30, -30], [40, -30], [40, 30], [-30, 30]], protect)
        >>> areas = chart.layer[0].data.values
        >>> [(f["properties"]["area"], f["properties"]["observed"], f["properties"]["in_most_likely_cluster"]) for f in areas]
        [('A', '12', 'yes'), ('B', '[c]', 'no'), ('C', '[c]', 'no'), ('D', '[c]', 'no')]
        >>> chart.layer[2].data.values[0]["geometry"]
        {'type': 'Point', 'coordinates': [0.0, 0.0]}
    """
    import altair as alt

    a = study.areas.reset_index()
    cells = area_polygons(a, outline_km)
    observed = pd.Series(list(protect(a["observed"].to_numpy())), index=a.index)
    props = pd.DataFrame({
        "area": a["area_id"].astype(str),
        "observed": [("[c]" if v is None or pd.isna(v) else f"{int(v):,}") for v in observed],
        "expected": a["expected"].round(2),
        "smoothed_sir": a["smoothed_sir"].round(2),
        "sir_class": a["sir_class"].astype(object).where(a["sir_class"].notna(), "no expected cases"),
        "distance_km": a["distance_km"].round(1),
        "in_most_likely_cluster": np.where(a.get("cluster", pd.Series(0, index=a.index)).fillna(0).astype(int) == 1,
                                           "yes", "no"),
    })
    geo = polygons_geojson(cells, props)
    labels = sir_class_labels()
    import matplotlib as mpl

    colours = [mpl.colors.to_hex(c) for c in mpl.colormaps[SIR_CMAP](np.linspace(0.08, 0.92, len(labels)))]
    ring = np.asarray(outline_km, dtype=float)
    lo, hi = ring.min(axis=0), ring.max(axis=0)
    mid = (lo + hi) / 2
    base_scale = min(width / float(hi[0] - lo[0]), height / float(hi[1] - lo[1])) * 0.95
    sx, sy = (study.sources[["x", "y"]].to_numpy()[0] / 1000).tolist()
    zoom = alt.param(name="zoom", value=1, bind=alt.binding_range(min=1, max=16, step=0.5,
                                                                  name="zoom towards the source "))
    # the centre moves from the middle of the country (zoom 1) to the source (large zoom)
    cx = f"({sx:.3f} + ({mid[0]:.3f} - {sx:.3f}) / zoom)"
    cy = f"({sy:.3f} + ({mid[1]:.3f} - {sy:.3f}) / zoom)"
    scale = f"{base_scale:.6f} * zoom"
    projection = {"type": "identity", "reflectY": True, "scale": alt.ExprRef(expr=scale),
                  "translate": alt.ExprRef(expr=f"[{width / 2} - {scale} * {cx}, {height / 2} + {scale} * {cy}]")}
    # the areas' data goes in after the layers are put together: Altair deep-copies each chart
    # as it is combined, which with England's 37,000 polygons took most of a minute
    areas_layer = alt.Chart(alt.Data(values=[])).mark_geoshape(stroke="white", strokeWidth=0.4).encode(
        color=alt.Color("properties.sir_class:N", title="smoothed SIR (class)",
                        scale=alt.Scale(domain=[*labels, "no expected cases"], range=[*colours, "#d9d9d9"])),
        tooltip=[alt.Tooltip("properties.area:N", title="area"),
                 alt.Tooltip("properties.observed:N", title="observed (protected)"),
                 alt.Tooltip("properties.expected:Q", title="expected"),
                 alt.Tooltip("properties.smoothed_sir:Q", title="smoothed SIR"),
                 alt.Tooltip("properties.distance_km:Q", title="km from the source"),
                 alt.Tooltip("properties.in_most_likely_cluster:N", title="in the most likely cluster")],
    ).project(**projection)
    outline = alt.Chart(alt.Data(values=[{"type": "Feature", "properties": {}, "geometry": {
        "type": "Polygon", "coordinates": [[[float(x), float(y)] for x, y in [*ring[::-1], ring[-1]]]]}}])
    ).mark_geoshape(filled=False, stroke="#555", strokeWidth=0.8).project(**projection)
    sources = study.sources.reset_index()
    src = alt.Chart(alt.Data(values=[{"type": "Feature", "properties": {"source": str(n)},
                                      "geometry": {"type": "Point", "coordinates": [float(x) / 1000, float(y) / 1000]}}
                                     for n, x, y in zip(sources["name"], sources["x"], sources["y"], strict=True)])
                    ).mark_geoshape(filled=True, color="black").encode(
        tooltip=[alt.Tooltip("properties.source:N", title="source")]).project(**projection)
    chart = (areas_layer + outline + src).add_params(zoom).properties(
        width=width, height=height,
        title="Smoothed SIR by area (hover for the protected values; the slider zooms towards the source)")
    chart.layer[0].data = alt.Data(values=geo["features"])
    return chart
