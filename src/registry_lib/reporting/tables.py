"""Tables for reading: the one way every report shows a table.

A table in a report has no index column unless the index means something; counts are integers
with thousands separators; estimates have a fixed number of decimals per column; p-values
below 0.001 read ``<0.001``; column names and model terms read as words. Following the ONS
convention for official statistics, a cell withheld by disclosure control reads ``[c]`` and a
value that does not exist or could not be estimated reads ``[x]``, each explained in a footnote
under the table. Long tables fold away behind a summary line.

The CSV files under ``tables/`` are not touched: they keep machine-readable values.

Example:
    >>> t = pd.DataFrame({"site_icd10": ["C50", "C61"], "n_patients": [3195.0, None],
    ...                   "p_value": [0.00004, 0.2]})
    >>> format_table(t, suppressed_columns=["n_patients"]).values.tolist()
    [['C50', '3,195', '<0.001'], ['C61', '[c]', '0.200']]
    >>> list(format_table(t).columns)
    ['Site (ICD-10)', 'Patients', 'p-value']
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

SUPPRESSED = "[c]"
NOT_AVAILABLE = "[x]"
FOOTNOTE_SUPPRESSED = ("[c] confidential: withheld by disclosure control (counts of 1–7 are suppressed, "
                       "others rounded to the nearest 5; a value derived from a withheld count is withheld too).")
FOOTNOTE_NOT_AVAILABLE = "[x] not available: the value does not exist or could not be estimated."

# Words that are written in capitals or otherwise not as the column name would give them.
_WORDS = {
    "sir": "SIR", "smr": "SMR", "hr": "HR", "or": "OR", "rr": "RR", "ci": "CI", "se": "SE",
    "icd10": "ICD-10", "icdo3": "ICD-O-3", "id": "ID", "nhs": "NHS", "ndop": "NDOP", "sact": "SACT",
    "iptw": "IPTW", "llr": "LLR", "f1": "F1", "km": "km", "asr": "ASR", "o": "O", "e": "E",
    "smd": "SMD", "ess": "ESS", "oe": "O/E", "n": "n", "pct": "%", "percent": "%", "lsoa": "LSOA", "rt": "RT",
}

# Column names with a label of their own.
LABELS: dict[str, str] = {
    "site_icd10": "Site (ICD-10)", "site": "Site", "p_value": "p-value", "p": "p-value",
    "n": "n", "lower": "Lower 95% CI", "upper": "Upper 95% CI", "lcl": "Lower 95% CI",
    "ucl": "Upper 95% CI", "ci_lower": "Lower 95% CI", "ci_upper": "Upper 95% CI",
    "hr": "Hazard ratio", "sir": "SIR", "rr": "Relative risk", "relative_risk": "Relative risk",
    "observed": "Observed", "expected": "Expected", "net_survival": "Net survival",
    "survival": "Survival", "n_at_risk": "Number at risk", "age_at_diagnosis": "Age at diagnosis",
    "deprivation_quintile": "Deprivation quintile", "stage": "Stage", "sex": "Sex",
    "england_equivalent": "Synthetic, scaled to England", "published": "Published",
    "share": "Share", "completeness": "Stage completeness",
    "llr": "Log-likelihood ratio", "o_e": "O/E", "oe": "O/E", "events": "Events",
    "time": "Time", "year": "Year", "route_to_diagnosis": "Route to diagnosis",
}

# Levels of categorical model terms and columns that read better as words.
LEVELS: dict[str, dict[str, str]] = {
    "sex": {"1": "male", "2": "female", "1.0": "male", "2.0": "female"},
}

_COUNT_NAME = re.compile(r"^(n|count|counts|observed|cases|deaths|events|records|patients|tumours|persons)$"
                         r"|^n_|_n$|^n\d|_count$|^count_|_pairs$|^records_|_records$|^persons_|^excluded$")
_P_NAME = re.compile(r"^(p|p_value|pvalue|p_val)$|_p$|^p_|_p_value$|p_value$")
_TERM = re.compile(r"^(?P<var>[A-Za-z_][\w.]*)\[(?:T\.)?(?P<level>[^\]]*)\]$")
_CSV_FLAG = "suppressed"


def label(name: Any, labels: Mapping[str, str] | None = None) -> str:
    """A human label for a column name or model term (``site_icd10`` → ``Site (ICD-10)``).

    Example:
        >>> label("n_pairs_wrong"), label("sex[2]"), label("period[T.pandemic]")
        ('Pairs wrong', 'Sex: female', 'Period: pandemic')
    """
    key = str(name)
    if labels and key in labels:
        return labels[key]
    if key in LABELS:
        return LABELS[key]
    m = _TERM.match(key)
    if m:
        var, level = m.group("var"), m.group("level")
        level = LEVELS.get(var, {}).get(level, level)
        return f"{label(var, labels)}: {level}"
    if re.fullmatch(r"\d+(\.\d+)?", key):
        return key
    words = [w for w in key.replace("-", "_").split("_") if w]
    if words and words[0] == "n" and len(words) > 1:
        words = words[1:]
    if not words:
        return key
    out = [_WORDS.get(w.lower(), w) for w in words]
    first = out[0]
    if first == words[0] and not first.isupper():
        out[0] = first[:1].upper() + first[1:]
    return " ".join(out)


def is_count_name(name: Any) -> bool:
    """Whether a column name is a count by the project's naming convention (``n_*``, ``*_pairs``…).

    Example:
        >>> [is_count_name(c) for c in ("n_patients", "deaths", "true_pairs", "net_survival", "age")]
        [True, True, True, False, False]
    """
    return bool(_COUNT_NAME.search(str(name)))


def is_p_name(name: Any) -> bool:
    """Whether a column name holds p-values (``p``, ``p_value``, ``trend_p``…).

    Example:
        >>> [is_p_name(c) for c in ("p", "p_value", "trend_p", "stone_p_value", "population")]
        [True, True, True, True, False]
    """
    return bool(_P_NAME.search(str(name)))


def format_p(p: float | None, digits: int = 3) -> str:
    """A p-value as read in a paper: ``<0.001`` below 0.001, else ``digits`` decimals.

    Example:
        >>> format_p(0.00044), format_p(0.9999), format_p(0.0123)
        ('<0.001', '1.000', '0.012')
    """
    if p is None or pd.isna(p):
        return NOT_AVAILABLE
    floor = 10.0 ** -digits
    return f"<{floor:.{digits}f}" if float(p) < floor else f"{float(p):.{digits}f}"


def format_count(n: float | None) -> str:
    """A count as an integer with thousands separators (``326600.0`` → ``326,600``).

    Example:
        >>> format_count(326600.0), format_count(7), format_count(None), format_count(float("nan"))
        ('326,600', '7', '[c]', '[c]')
    """
    if n is None or pd.isna(n):
        return SUPPRESSED
    return f"{round(float(n)):,}"


def _decimals_for(values: pd.Series) -> int:
    """A fixed number of decimals for a column of estimates: from its typical magnitude, and
    for probabilities and rates (all within 0–1) enough to show two significant digits of the
    smallest value or of the smallest distance from 1 (a precision of 0.99995 is not 1.000)."""
    v = values.dropna().abs()
    v = v[np.isfinite(v)]
    if v.empty:
        return 2
    if bool((v <= 1).all()):
        tiny = v[v > 0]
        near = 1 - v[(v < 1) & (v > 0.9)]
        smallest = float(pd.concat([tiny, near]).min()) if len(tiny) or len(near) else 0.1
        return int(np.clip(np.ceil(-np.log10(smallest)) + 1, 3, 6))
    typical = float(v.median()) or float(v.max())
    if typical >= 100:
        return 1
    if typical >= 1:
        return 2
    return 3


def _is_integer_valued(values: pd.Series) -> bool:
    v = values.dropna()
    return len(v) > 0 and bool(np.all(np.isclose(v.to_numpy(dtype=float), np.round(v.to_numpy(dtype=float)))))


def format_table(
    df: pd.DataFrame,
    *,
    counts: Sequence[str] | None = None,
    decimals: Mapping[str, int] | int | None = None,
    percent: Sequence[str] = (),
    p_values: Sequence[str] | None = None,
    suppressed_columns: Sequence[str] | None = None,
    suppressed_rows: pd.Series | None = None,
    labels: Mapping[str, str] | None = None,
    levels: Mapping[str, Mapping[Any, str]] | None = None,
    index: bool | None = None,
) -> pd.DataFrame:
    """The table as strings ready to read (see the module docstring for the conventions).

    Args:
        df: the table; a meaningful index (named, or not 0..n-1) becomes leading columns.
        counts: count columns (default: integer-valued numeric columns named like counts).
        decimals: decimals per column (or one number for all estimate columns); default from
            each column's typical magnitude.
        percent: columns holding shares (0–1) to show as percentages with one decimal.
        p_values: p-value columns (default: by name, ``p``, ``p_value``, ``*_p``).
        suppressed_columns: columns whose missing cells were withheld by disclosure control
            (``[c]``); missing cells elsewhere read ``[x]``.
        suppressed_rows: a boolean Series (aligned to ``df``): rows where any missing cell is
            a withheld one (a derived value blanked because its count is suppressed).
        labels: column labels overriding the defaults.
        levels: per column, labels of its values (e.g. ``{"sex": {1: "male", 2: "female"}}``).
        index: keep the index as columns (default: unless it is an unnamed integer index).

    Returns:
        A DataFrame of strings with human column labels and a plain 0..n-1 index.

    Example:
        >>> t = pd.DataFrame({"stage": ["I", "IV"], "n_patients": [1200.0, None],
        ...                   "net_survival": [0.9213, 0.1875], "share": [0.512, 0.0417], "sex": [1, 2]})
        >>> print(format_table(t, percent=["share"], suppressed_columns=["n_patients"]).to_string())
          Stage Patients Net survival  Share     Sex
        0     I    1,200        0.921  51.2%    male
        1    IV      [c]        0.188   4.2%  female
        >>> print(format_table(t.set_index("stage"), decimals={"net_survival": 2}).to_string())
          Stage Patients Net survival  Share     Sex
        0     I    1,200         0.92  0.512    male
        1    IV      [x]         0.19  0.042  female
    """
    table = df.copy()
    # an unnamed integer index (0..n-1, or what is left of it after filtering) means nothing
    plain = isinstance(table.index, pd.RangeIndex) or (
        all(n is None for n in table.index.names) and pd.api.types.is_integer_dtype(table.index))
    keep_index = (not plain) if index is None else index
    if keep_index:
        if any(n is None for n in table.index.names) and table.index.nlevels == 1:
            table.index.name = table.index.name or ""
        table = table.reset_index()
    else:
        table = table.reset_index(drop=True)
    if isinstance(table.columns, pd.MultiIndex):
        table.columns = [" ".join(str(x) for x in c if str(x)) for c in table.columns]
    suppressed_columns = {str(c) for c in (suppressed_columns or [])}
    if suppressed_rows is not None:
        rows_flag = pd.Series(np.asarray(suppressed_rows, dtype=bool), index=table.index)
    else:
        rows_flag = pd.Series(False, index=table.index)
    p_cols = {str(c) for c in p_values} if p_values is not None else {str(c) for c in table.columns if is_p_name(c)}
    out = pd.DataFrame(index=table.index)
    numeric_labels: list[str] = []
    for col in table.columns:
        name = str(col)
        s = table[col]
        missing_mark = pd.Series(NOT_AVAILABLE, index=table.index)
        if name in suppressed_columns:
            missing_mark[:] = SUPPRESSED
        missing_mark[rows_flag] = SUPPRESSED
        col_levels = (levels or {}).get(name) or LEVELS.get(name)
        numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
        if col_levels is not None:
            text = s.map(lambda v, lv=col_levels: lv.get(v, lv.get(str(v), v)) if pd.notna(v) else v).astype(object)
            text = text.map(lambda v: v if pd.isna(v) else str(v))
        elif pd.api.types.is_bool_dtype(s) or s.dropna().map(lambda v: isinstance(v, bool | np.bool_)).all() and s.notna().any():
            text = s.map(lambda v: v if pd.isna(v) else ("yes" if bool(v) else "no"))
        elif not numeric:
            as_term = name.lower() in _TERM_COLUMNS
            text = s.map(lambda v, t=as_term: v if (v is None or (isinstance(v, float) and np.isnan(v))
                                                    or v is pd.NA or v is pd.NaT)
                         else (label(v) if t and isinstance(v, str) else _text(v)))
        elif name in p_cols:
            text = s.map(lambda v: v if pd.isna(v) else format_p(v))
        elif name in percent:
            d = decimals.get(name, 1) if isinstance(decimals, Mapping) else 1
            text = s.map(lambda v, d=d: v if pd.isna(v) else f"{100 * float(v):,.{d}f}%")
        elif name.lower() in ("df", "dof", "degrees_of_freedom") and _is_integer_valued(s):
            text = s.map(lambda v: v if pd.isna(v) else f"{round(float(v))}")
        elif "year" in name.lower() and _is_integer_valued(s):
            text = s.map(lambda v: v if pd.isna(v) else f"{round(float(v))}")  # 2019, not 2,019
        elif (name in (counts or [])) or (counts is None and _is_integer_valued(s)
                                          and (is_count_name(name) or pd.api.types.is_integer_dtype(s)
                                               or name in suppressed_columns
                                               or float(s.dropna().abs().median()) >= 10)):
            text = s.map(lambda v: v if pd.isna(v) else f"{round(float(v)):,}")
        else:
            if isinstance(decimals, Mapping) and name in decimals:
                d = decimals[name]
            elif isinstance(decimals, int):
                d = decimals
            else:
                d = _decimals_for(s.astype(float))
            text = s.map(lambda v, d=d: v if pd.isna(v) else _number(float(v), d))
        text = text.astype(object)
        isna = text.isna()
        text[isna] = missing_mark[isna]
        out[label(name, labels)] = text
        if numeric and col_levels is None:
            numeric_labels.append(label(name, labels))
    out = out.reset_index(drop=True)
    out.attrs["numeric"] = numeric_labels
    return out


_TERM_COLUMNS = {"term", "model", "covariate", "variable", "measure"}


def _number(v: float, d: int) -> str:
    """A number with ``d`` decimals: ∞ for an unbounded limit, no negative zero."""
    if not np.isfinite(v):
        return "∞" if v > 0 else "−∞"
    text = f"{v:,.{d}f}" if abs(v) >= 1e4 else f"{v:.{d}f}"
    return text[1:] if text.startswith("-") and float(text.replace(",", "")) == 0 else text


def _text(v: Any) -> str:
    if isinstance(v, pd.Timestamp):
        return f"{v:%Y-%m-%d}"
    if isinstance(v, list | tuple):
        return ", ".join(map(str, v))
    return label(v) if _TERM.match(str(v)) else str(v)


def read_published(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A CSV written by ``publish_table`` and its ``.meta.json`` sidecar (empty dict if none).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = Path(d) / "incidence.csv"
        ...     _ = p.write_text("site,n\\nC50,1200\\nC61,\\n")
        ...     _ = (Path(d) / "incidence.meta.json").write_text('{"kind": "counts", "count_columns": ["n"]}')
        ...     table, meta = read_published(p)
        ...     bare, none = read_published(p.rename(Path(d) / "other.csv"))
        >>> print(table.to_string())
          site       n
        0  C50  1200.0
        1  C61     NaN
        >>> meta, none
        ({'kind': 'counts', 'count_columns': ['n']}, {})
    """
    path = Path(path)
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    side = path.with_name(path.name[: -len(".csv")] + ".meta.json")
    meta = json.loads(side.read_text()) if side.exists() else {}
    if meta.get("secondary_suppression") or (meta.get("kind") == "counts" and len(table.columns)
                                              and str(table.columns[0]) not in meta.get("count_columns", [])
                                              and str(table.columns[0]).startswith("Unnamed")):
        table = table.set_index(table.columns[0])
    return table, meta


def table_html(
    table: pd.DataFrame | str | Path,
    caption: str | None = None,
    *,
    collapse_after: int = 15,
    note: str | None = None,
    **options: Any,
) -> str:
    """The HTML of a formatted table with its footnotes, folded away when it is long.

    ``table`` is a DataFrame or the path of a CSV written by ``publish_table`` (its sidecar
    says which columns are counts, so their blanks read ``[c]``). ``options`` go to
    :func:`format_table`.

    Example:
        >>> "<th>Patients</th>" in table_html(pd.DataFrame({"n_patients": [1200]}))
        True
    """
    if isinstance(table, str | Path):
        df, meta = read_published(table)
        if _CSV_FLAG in df.columns:
            flag = df[_CSV_FLAG].astype(str).str.lower().isin(["true", "1"])
            df = df.drop(columns=_CSV_FLAG)
        else:
            counts = [c for c in meta.get("count_columns", []) if c in df.columns]
            flag = df[counts].isna().any(axis=1) if counts else None
        options.setdefault("suppressed_columns", meta.get("count_columns", []))
        if flag is not None and "suppressed_rows" not in options:
            options["suppressed_rows"] = flag.to_numpy()
        options.setdefault("counts", [c for c in meta.get("count_columns", []) if c in df.columns] or None)
    else:
        df = table
    shown = format_table(df, **options)
    numeric = set(shown.attrs.get("numeric", []))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = "".join(
            f"<td class='{'num' if c in numeric else 'txt'}'>{html.escape(str(v))}</td>"
            for c, v in zip(shown.columns, row, strict=True))
        body.append(f"<tr>{cells}</tr>")
    values = shown.to_numpy().ravel().tolist()
    notes = []
    if SUPPRESSED in values:
        notes.append(FOOTNOTE_SUPPRESSED)
    if NOT_AVAILABLE in values:
        notes.append(FOOTNOTE_NOT_AVAILABLE)
    if note:
        notes.append(note)
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    foot = "".join(f"<p class='rl-note'>{html.escape(n)}</p>" for n in notes)
    html_table = (f"<table class='rl-table'>{cap}<thead><tr>{head}</tr></thead>"
                  f"<tbody>{''.join(body)}</tbody></table>{foot}")
    style = ("<style>.rl-table{border-collapse:collapse;margin:.5em 0;font-size:13px}"
             ".rl-table caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}"
             ".rl-table th{border-bottom:1px solid #444;padding:.25em .6em;text-align:left;vertical-align:bottom}"
             ".rl-table td{border-bottom:1px solid #ddd;padding:.2em .6em;white-space:normal}"
             ".rl-table td.txt,.rl-table th{text-align:left}"
             ".rl-table td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}"
             ".rl-note{font-size:12px;color:#555;margin:.1em 0}"
             "details.rl-fold>summary{cursor:pointer;color:#1f5f99}</style>")
    if len(shown) > collapse_after:
        summary = html.escape(caption or "Table")
        return (f"{style}<details class='rl-fold'><summary>{summary} — {len(shown):,} rows "
                f"(click to show)</summary>{html_table}</details>")
    return style + html_table


def show_table(table: pd.DataFrame | str | Path, caption: str | None = None, **options: Any) -> None:
    """Display a table for reading in a notebook (see :func:`table_html`).

    Example:
        >>> show_table(pd.DataFrame({"n": [5]}))  # doctest: +ELLIPSIS
        <IPython.core.display.HTML object>
    """
    from IPython.display import HTML, display

    display(HTML(table_html(table, caption, **options)))


def add_suppressed_flag(table: pd.DataFrame, count_columns: Sequence[str]) -> pd.DataFrame:
    """The table with a boolean ``suppressed`` column: whether any count of the row is withheld.

    Example:
        >>> add_suppressed_flag(pd.DataFrame({"n": [10.0, None]}), ["n"])["suppressed"].tolist()
        [False, True]
    """
    cols = [c for c in count_columns if c in table.columns]
    out = table.copy()
    out[_CSV_FLAG] = out[cols].isna().any(axis=1) if cols else False
    return out


def read_published_table(path: str | Path) -> pd.DataFrame:
    """A table as ``publish_table`` wrote it, for display and for the text: counts as whole
    numbers, the ``suppressed`` flag column dropped, and ``attrs`` saying which columns hold
    protected counts (their blanks read ``[c]`` when the table is shown).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = Path(d) / "t.csv"
        ...     _ = p.write_text("site,n\\nC50,1200\\nC61,\\n")
        ...     _ = (Path(d) / "t.meta.json").write_text('{"count_columns": ["n"]}')
        ...     t = read_published_table(p)
        >>> t["n"].tolist(), t.attrs["suppressed_columns"]
        ([1200, <NA>], ['n'])
    """
    table, meta = read_published(path)
    if _CSV_FLAG in table.columns:
        table = table.drop(columns=_CSV_FLAG)
    counts = [c for c in meta.get("count_columns", []) if c in table.columns]
    for c in counts:
        if pd.api.types.is_numeric_dtype(table[c]) and _is_integer_valued(table[c]):
            table[c] = table[c].round().astype("Int64")
    table.attrs["suppressed_columns"] = [str(c) for c in meta.get("count_columns", [])]
    return table


def _dataframe_html(df: pd.DataFrame) -> str:
    """The notebook's HTML for any DataFrame: the same conventions as :func:`table_html`."""
    attrs = dict(df.attrs)
    suppressed = [c for c in attrs.get("suppressed_columns", []) if c in df.columns]
    rows = df[suppressed].isna().any(axis=1).to_numpy() if suppressed else None
    return table_html(df, attrs.get("caption"), suppressed_columns=suppressed, suppressed_rows=rows,
                      labels=attrs.get("labels"), percent=attrs.get("percent", ()),
                      decimals=attrs.get("decimals"))


def register_table_formatter() -> bool:
    """Show every DataFrame of the running notebook through :func:`table_html` (no pandas
    repr, no index column, ``[c]``/``[x]``, separators, p-values, labels). Returns whether an
    IPython shell was found.

    Example:
        >>> register_table_formatter()   # a plain Python process: no notebook, nothing changed
        False
        >>> import re
        >>> from types import SimpleNamespace
        >>> from unittest import mock
        >>> from IPython.core.formatters import DisplayFormatter
        >>> shell = SimpleNamespace(display_formatter=DisplayFormatter())   # a notebook's formatter
        >>> with mock.patch("IPython.get_ipython", return_value=shell):
        ...     register_table_formatter()
        True
        >>> t = captioned(pd.DataFrame({"n_patients": [1200.0, None]}), "By stage",
        ...               suppressed_columns=["n_patients"])
        >>> re.search("<tbody>.*</tbody>", shell.display_formatter.format(t)[0]["text/html"]).group()
        "<tbody><tr><td class='num'>1,200</td></tr><tr><td class='num'>[c]</td></tr></tbody>"
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, _dataframe_html)
    return True


def captioned(df: pd.DataFrame, caption: str, **attrs: Any) -> pd.DataFrame:
    """The table with a caption (and other display attributes: ``labels``, ``percent``,
    ``decimals``, ``suppressed_columns``) for when it is displayed.

    Example:
        >>> captioned(pd.DataFrame({"n": [1]}), "Counts").attrs["caption"]
        'Counts'
    """
    out = df.copy()
    out.attrs.update(df.attrs)
    out.attrs["caption"] = caption
    out.attrs.update(attrs)
    return out
