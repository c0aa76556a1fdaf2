"""Interactive charts of the COVID-19 study: monthly diagnoses against the counterfactual.

One panel per site group: the counterfactual (expected) line with its prediction band and the
observed monthly counts as published (1–7 withheld, others rounded to 5). Drag to pan and
scroll to zoom along time; hovering over a month shows its published observed count, the
expected count and the prediction interval. The page works offline (see
:func:`registry_lib.reporting.figures.interactive_chart`).

Example:
    >>> days = pd.date_range("2017-01-01", "2020-12-31", freq="D")
    >>> t = pd.DataFrame({"diagnosis_date": np.repeat(days.values, 3), "site_icd10": "C50"})
    >>> from registry_lib.studies.covid_impact import diagnosis_deficits
    >>> d = diagnosis_deficits(t, ["C50"], baseline=("2017-01", "2019-12"), end="2020-12",
    ...                        family="poisson", seasonality="none", n_sims=200)
    >>> chart = interactive_series(d)
    >>> len(chart.vconcat)
    1
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry_lib.release import protect_counts


def interactive_series(analysis: Any, *, threshold: int = 7, rounding: int = 5, width: int = 680,
                       height: int = 170) -> Any:
    """The observed-against-expected series of every group as a zoomable Altair chart.

    Example:
        >>> from types import SimpleNamespace
        >>> monthly = pd.DataFrame({"site_group": "Breast", "month": ["2020-03", "2020-04", "2020-05"],
        ...                         "observed": [52, 3, 41], "expected": [50.04, 49.5, 50.71],
        ...                         "pi_lower": [37.2, 36.8, 37.9], "pi_upper": [63.0, 62.4, 63.7]})
        >>> analysis = SimpleNamespace(group="site_group", fit=SimpleNamespace(monthly=monthly, level=0.95))
        >>> chart = interactive_series(analysis)
        >>> data = chart.data
        >>> print(data[["month_start", "observed_text", "expected"]].to_string())   # April: 3 withheld, others rounded to 5
          month_start observed_text  expected
        0  2020-03-01            50      50.0
        1  2020-04-01           [c]      49.5
        2  2020-05-01            40      50.7
        >>> chart.vconcat[0].title
        'Breast: observed (dots, published) and expected (line, 95% prediction band)'
    """
    import altair as alt

    df = analysis.fit.monthly.copy()
    group = analysis.group
    df["month_start"] = pd.PeriodIndex(df["month"], freq="M").to_timestamp() if not pd.api.types.is_datetime64_any_dtype(
        df["month"]) else df["month"]
    shown = protect_counts(df["observed"], threshold, rounding).astype("Float64")
    df["observed_published"] = shown.to_numpy(dtype=float, na_value=np.nan)
    df["observed_text"] = ["[c]" if np.isnan(v) else f"{int(v):,}" for v in df["observed_published"]]
    for col in ("expected", "pi_lower", "pi_upper"):
        df[col] = df[col].astype(float).round(1)
    level = int(round(analysis.fit.level * 100))
    charts = []
    for k, (name, part) in enumerate(df.groupby(group, sort=False)):
        data = part[["month_start", "observed_published", "observed_text", "expected", "pi_lower",
                     "pi_upper"]].assign(group=str(name))
        zoom = alt.selection_interval(bind="scales", encodings=["x"], name=f"zoom_{k}")
        tooltip = [alt.Tooltip("group:N", title="site group"),
                   alt.Tooltip("month_start:T", title="month", format="%B %Y"),
                   alt.Tooltip("observed_text:N", title="observed (published)"),
                   alt.Tooltip("expected:Q", title="expected"),
                   alt.Tooltip("pi_lower:Q", title=f"{level}% PI lower"),
                   alt.Tooltip("pi_upper:Q", title=f"{level}% PI upper")]
        base = alt.Chart(data).encode(x=alt.X("month_start:T", title="month of diagnosis"))
        band = base.mark_area(opacity=0.25, color="#4c78a8").encode(
            y=alt.Y("pi_lower:Q", title="diagnoses / month"), y2="pi_upper:Q")
        line = base.mark_line(color="#4c78a8").encode(y="expected:Q")
        points = base.mark_circle(color="black", size=18).encode(y="observed_published:Q", tooltip=tooltip)
        # a transparent band per month: hovering anywhere over a month shows its values
        hover = base.mark_rule(strokeWidth=6, opacity=0.001).encode(y="pi_lower:Q", y2="pi_upper:Q",
                                                                    tooltip=tooltip)
        charts.append(alt.layer(band, line, hover, points).add_params(zoom).properties(
            width=width, height=height, title=f"{name}: observed (dots, published) and expected "
                                              f"(line, {level}% prediction band)"))
    return alt.vconcat(*charts).resolve_scale(x="independent")
