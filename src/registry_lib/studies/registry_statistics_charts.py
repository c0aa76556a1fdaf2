"""Bar charts of published age-standardised rates, drawn only from published (protected) values.

:func:`dsr_bars` draws one bar per row of a published rates table (``publish_table(kind="rates")``
read back with :func:`~registry_lib.studies.registry_statistics.read_published`): the DSR with its
confidence interval as an error bar. A row whose count is suppressed has no DSR, so it gets no
bar, only the mark ``[c]`` (confidential, as ONS marks suppressed cells).

Example:
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> t = pd.DataFrame({"site_icd10": ["C18", "C18", "C50", "C50"], "sex": [1, 2, 1, 2],
    ...                   "dsr": [60.0, 45.0, None, 150.0], "dsr_lower": [55.0, 41.0, None, 140.0],
    ...                   "dsr_upper": [65.0, 49.0, None, 160.0]})
    >>> fig, ax = plt.subplots()
    >>> drawn = dsr_bars(ax, t, "site_icd10", hue="sex", hue_labels={1: "male", 2: "female"})
    >>> drawn
    3
    >>> plt.close(fig)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError

SUPPRESSED_MARK = "[c]"


def dsr_bars(
    ax: Any,
    table: pd.DataFrame,
    category: str,
    *,
    hue: str | None = None,
    order: Sequence[Any] | None = None,
    labels: Mapping[Any, str] | None = None,
    hue_labels: Mapping[Any, str] | None = None,
    horizontal: bool = True,
    xlabel: str = "age-standardised rate per 100,000 (ESP 2013), 95% CI",
) -> int:
    """Draw DSR bars with CIs on ``ax``; return the number of bars drawn.

    Args:
        ax: a matplotlib Axes.
        table: a published rates table with ``dsr, dsr_lower, dsr_upper`` and the ``category``
            (and ``hue``) columns.
        category: the column giving one bar (group of bars) per value.
        hue: optional column splitting each category into side-by-side bars.
        order: categories in drawing order (default: as they appear in the table).
        labels, hue_labels: display names of categories and hue values.
        horizontal: horizontal bars (categories read top to bottom).
        xlabel: the value axis label.

    Example:
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> t = pd.DataFrame({"sex": [1, 2, 1, 2], "region": ["North", "North", "South", "South"],
        ...                   "dsr": [610.0, 540.0, None, 500.0], "dsr_lower": [580.0, 510.0, None, 470.0],
        ...                   "dsr_upper": [640.0, 570.0, None, 530.0]})
        >>> fig, ax = plt.subplots()
        >>> dsr_bars(ax, t, "region", hue="sex", hue_labels={1: "male", 2: "female"})   # a suppressed DSR is not drawn
        3
        >>> plt.close(fig)
    """
    need = {category, "dsr", "dsr_lower", "dsr_upper"} | ({hue} if hue else set())
    if not need <= set(table.columns):
        raise RegistryLabError(f"dsr_bars: the table lacks {sorted(need - set(table.columns))}")
    cats = list(pd.unique(table[category])) if order is None else list(order)
    hues = list(pd.unique(table[hue])) if hue else [None]
    width = 0.8 / len(hues)
    pos = {c: k for k, c in enumerate(cats)}
    drawn = 0
    for h_i, h in enumerate(hues):  # loop over the few hue levels
        part = table if hue is None else table[table[hue] == h]
        part = part[part[category].isin(pos)]
        where = part[category].map(pos).to_numpy(dtype=float) - 0.4 + width * (h_i + 0.5)
        dsr = pd.to_numeric(part["dsr"], errors="coerce").to_numpy(dtype=float)
        lo = pd.to_numeric(part["dsr_lower"], errors="coerce").to_numpy(dtype=float)
        hi = pd.to_numeric(part["dsr_upper"], errors="coerce").to_numpy(dtype=float)
        shown = ~np.isnan(dsr)
        err = np.vstack([dsr - lo, hi - dsr])[:, shown]
        label = None if h is None else (hue_labels or {}).get(h, str(h))
        bar = ax.barh if horizontal else ax.bar
        kw = {"height" if horizontal else "width": width}
        bars = bar(where[shown], dsr[shown], **kw, label=label)
        color = bars.patches[0].get_facecolor() if bars.patches else None
        if shown.any():
            e = {"xerr" if horizontal else "yerr": err}
            ax.errorbar(*((dsr[shown], where[shown]) if horizontal else (where[shown], dsr[shown])),
                        **e, fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        for p in where[~shown]:  # the few suppressed cells
            xy = (0, p) if horizontal else (p, 0)
            ax.annotate(SUPPRESSED_MARK, xy, xytext=(2, 0) if horizontal else (0, 2),
                        textcoords="offset points", fontsize=7, color=color or "grey",
                        va="center" if horizontal else "bottom", ha="left" if horizontal else "center")
        drawn += int(shown.sum())
    ticks = [(labels or {}).get(c, str(c)) for c in cats]
    if horizontal:
        ax.set_yticks(np.arange(len(cats)), ticks)
        ax.set_ylim(len(cats) - 0.5, -0.5)
        ax.set_xlabel(xlabel)
    else:
        ax.set_xticks(np.arange(len(cats)), ticks)
        ax.set_ylabel(xlabel)
    if hue:
        ax.legend()
    return drawn
