"""A report as a document: title, a header with its provenance, links and how to rerun it.

``report_header`` is what the pipeline puts at the top of every HTML report; ``parameter_rows``
and ``parameters_html`` give the readable parameter table that the report header and the index
share (nested values expanded one row per leaf, differences from the defaults marked).

The run's date and run time are not written into the page (two runs must give the same bytes):
the page reads them from ``reports/run_times.js``, written with the manifest.

Example:
    >>> rows = parameter_rows({"sites": ["C67"], "trial": {"grace_days": 90}}, {"trial": {"grace_days": 120}})
    >>> [(r["name"], r["value"], r["changed"]) for r in rows]
    [('sites', 'C67', True), ('trial.grace_days', '90', True)]
"""

from __future__ import annotations

import html
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RERUN_BIN = ".venv/bin/registry-lab"
_MISSING = object()

PAGE_CSS = """
.rl-header{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:0 auto 1em;
  padding:1em 1.2em;border-bottom:2px solid #1f5f99;background:#f6f8fa}
.rl-header nav{font-size:14px;margin-bottom:.5em}.rl-header nav a{margin-right:1em}
.rl-header dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:.4em 0;font-size:14px}
.rl-header dt{font-weight:600;color:#333}.rl-header dd{margin:0}
.rl-header details{margin:.4em 0;font-size:14px}.rl-header summary{cursor:pointer;color:#1f5f99}
.rl-header code{font-size:13px;background:#eef1f4;padding:0 .25em;border-radius:3px}
.rl-params{border-collapse:collapse;font-size:13px;margin:.4em 0}
.rl-params td,.rl-params th{border-bottom:1px solid #ddd;padding:.2em .6em;text-align:left;vertical-align:top}
.rl-params tr.changed td{background:#fff4ce}
.rl-files{columns:2;font-size:13px;margin:.3em 0}
"""

RUN_INFO_JS = """
(function(){var t=window.REGISTRY_LAB_RUN_TIMES||{};
document.querySelectorAll('[data-rl-run]').forEach(function(el){
 var r=t[el.dataset.rlRun];var f=el.dataset.rlField;
 if(r&&typeof r==='object'&&r[f]!==undefined&&r[f]!==null){
  el.textContent=f==='seconds'?(r[f]<60?r[f].toFixed(1)+' s':(r[f]/60).toFixed(1)+' min'):r[f].replace('T',' ').replace('+00:00',' UTC');}
});})();
"""


def _leaf_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        if all(not isinstance(v, dict | list) for v in value):
            return ", ".join(_leaf_text(v) for v in value) if value else "(empty)"
        return json.dumps(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(params):
        value = params[key]
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def parameter_rows(params: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per parameter leaf: ``name`` (dotted for nested), ``value`` (text), ``default``
    (text, or None when unknown) and ``changed`` (differs from the default, or has none).

    Example:
        >>> for row in parameter_rows({"grace_days": 120, "sites": ["C50", "C61"], "ndop": True},
        ...                           {"grace_days": 90, "sites": ["C50", "C61"]}):
        ...     print(row)
        {'name': 'grace_days', 'value': '120', 'default': '90', 'changed': True}
        {'name': 'ndop', 'value': 'yes', 'default': None, 'changed': True}
        {'name': 'sites', 'value': 'C50, C61', 'default': 'C50, C61', 'changed': False}
        >>> parameter_rows({"trial": {"arms": None}})   # no defaults given: nothing is marked
        [{'name': 'trial.arms', 'value': 'none', 'default': None, 'changed': False}]
    """
    flat = _flatten(params)
    flat_defaults = _flatten(defaults or {}) if defaults is not None else None
    rows = []
    for name, value in flat.items():
        default = _MISSING if flat_defaults is None else flat_defaults.get(name, _MISSING)
        rows.append({"name": name, "value": _leaf_text(value),
                     "default": None if default is _MISSING else _leaf_text(default),
                     "changed": flat_defaults is not None and (default is _MISSING or default != value)})
    return rows


def parameters_html(params: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> str:
    """A parameter table (differences from the defaults highlighted, their defaults shown).

    Example:
        >>> page = parameters_html({"grace_days": 120, "sites": ["C67"]}, {"grace_days": 90, "sites": ["C67"]})
        >>> re.findall(r"<tr class='(\\w*)'><td><code>(\\w+)</code></td><td>([^<]*)</td><td>([^<]*)</td>", page)
        [('changed', 'grace_days', '120', 'default: 90'), ('', 'sites', 'C67', '')]
    """
    rows = parameter_rows(params, defaults)
    body = "".join(
        f"<tr class='{'changed' if r['changed'] else ''}'><td><code>{html.escape(r['name'])}</code></td>"
        f"<td>{html.escape(r['value'])}</td><td>{'' if not r['changed'] or r['default'] is None else 'default: ' + html.escape(r['default'])}</td></tr>"
        for r in rows)
    return (f"<table class='rl-params'><thead><tr><th>parameter</th><th>value</th><th></th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def rerun_command(study: str, cohort: str, params: Mapping[str, Any], defaults: Mapping[str, Any],
                  *, published: bool, default_cohort: str = "default") -> str:
    """The exact command that makes this report again.

    Example:
        >>> rerun_command("covid_impact", "small", {"a": 1}, {"a": 2}, published=False)
        '.venv/bin/registry-lab run covid_impact --cohort small -p a 1'
        >>> rerun_command("covid_impact", "default", {"a": 2}, {"a": 2}, published=True)
        '.venv/bin/registry-lab reproduce'
    """
    if published:
        return RERUN_BIN + " reproduce" + ("" if cohort == default_cohort else f" --cohort {shlex.quote(cohort)}")
    parts = [RERUN_BIN, "run", study, "--cohort", shlex.quote(cohort)]
    for key in sorted(params):
        if key in defaults and params[key] != defaults[key]:
            parts += ["-p", key, shlex.quote(json.dumps(params[key], separators=(", ", ": ")))]
    return " ".join(parts)


def notebook_title(cells: Sequence[Mapping[str, Any]], fallback: str) -> str:
    """The text of the first ``# `` heading of a notebook's Markdown cells.

    Example:
        >>> cells = [{"cell_type": "code", "source": "# not a heading: a comment"},
        ...          {"cell_type": "markdown", "source": ["Intro\\n", "# *Cluster* investigation\\n"]}]
        >>> notebook_title(cells, "02_cluster_investigation")
        'Cluster investigation'
        >>> notebook_title([], "02_cluster_investigation")
        '02_cluster_investigation'
    """
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            m = re.search(r"^#\s+(.+)$", source, flags=re.M)
            if m:
                return re.sub(r"[*_`]", "", m.group(1)).strip()
    return fallback


def _link_list(folder: Path, pattern: str) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.glob(pattern) if p.is_file())


def report_header(*, title: str, study: str, folder: Path, cohort: str, commit: str | None, dirty: bool | None,
                  params: Mapping[str, Any], defaults: Mapping[str, Any], rerun: str, run_key: str) -> str:
    """The header of a report page: title, cohort, date, commit, parameters, links, how to rerun.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     folder = Path(d) / "covid_impact"
        ...     (folder / "tables").mkdir(parents=True)
        ...     _ = (folder / "results.json").write_text("{}")
        ...     _ = (folder / "tables" / "monthly.csv").write_text("n\\n10\\n")
        ...     head = report_header(title="COVID-19 and diagnoses", study="covid_impact", folder=folder,
        ...                          cohort="small", commit="0123456789abcdef", dirty=True,
        ...                          params={"grace_days": 120, "output_dir": "reports/covid_impact"},
        ...                          defaults={"grace_days": 90}, run_key="covid_impact",
        ...                          rerun="registry-lab run covid_impact --cohort small -p grace_days 120")
        >>> for term, value in re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", head):
        ...     print(f"{term}: {value}")
        Study: <code>covid_impact</code>
        Cohort: <b>small</b>
        Git commit: <code>0123456789ab (with uncommitted changes)</code>
        Files: <a href='results.json'>key results (results.json)</a>
        How to rerun: <code>registry-lab run covid_impact --cohort small -p grace_days 120</code>
        >>> re.findall(r"<summary>(.*?)</summary>", head)
        ['Parameters (1; highlighted where they differ from <code>params/studies/covid_impact.yaml</code>)', '1 table (CSV, disclosure-controlled)']
    """
    name = folder.name
    files = [(f"{name}.ipynb", "executed notebook"), ("results.json", "key results (results.json)")]
    files = [(f, t) for f, t in files if (folder / f).exists()]
    tables = _link_list(folder, "tables/*.csv")
    figures = _link_list(folder, "figures/*.png") + _link_list(folder, "figures/*.html")
    links = " · ".join(f"<a href='{html.escape(f)}'>{html.escape(t)}</a>" for f, t in files)
    def listing(items: list[str], what: str) -> str:
        if not items:
            return ""
        lis = "".join(f"<li><a href='{html.escape(i)}'>{html.escape(Path(i).name)}</a></li>" for i in items)
        what = what.replace("tables", "table").replace("figures", "figure") if len(items) == 1 else what
        return f"<details><summary>{len(items)} {what}</summary><ul class='rl-files'>{lis}</ul></details>"
    commit_text = (commit[:12] if commit else "not a git checkout") + (" (with uncommitted changes)" if dirty else "")
    visible = {k: v for k, v in params.items() if k != "output_dir"}
    return f"""<style>{PAGE_CSS}</style>
<header class="rl-header">
<nav><a href="../index.html">← all reports (index)</a></nav>
<dl>
<dt>Study</dt><dd><code>{html.escape(study)}</code></dd>
<dt>Cohort</dt><dd><b>{html.escape(cohort)}</b></dd>
<dt>Run finished</dt><dd><span data-rl-run="{html.escape(run_key)}" data-rl-field="finished">see manifest.json</span>
 (run time <span data-rl-run="{html.escape(run_key)}" data-rl-field="seconds">not recorded</span>)</dd>
<dt>Git commit</dt><dd><code>{html.escape(commit_text)}</code></dd>
<dt>Files</dt><dd>{links}</dd>
<dt>How to rerun</dt><dd><code>{html.escape(rerun)}</code></dd>
</dl>
<details><summary>Parameters ({len(parameter_rows(visible))}; highlighted where they differ from <code>params/studies/{html.escape(study)}.yaml</code>)</summary>
{parameters_html(visible, {**defaults, "cohort": cohort})}
</details>
{listing(tables, "tables (CSV, disclosure-controlled)")}
{listing(figures, "figures")}
</header>
<script src="../run_times.js"></script>
<script>{RUN_INFO_JS}</script>
"""


def decorate_report(page: str, *, title: str, header: str) -> str:
    """Put the study title in ``<title>`` and the header at the top of an nbconvert HTML page.

    Example:
        >>> page = "<html><head><title>Notebook</title></head><body class='jp-Notebook'><p>SIR 1.52</p></body></html>"
        >>> decorate_report(page, title="Cluster investigation", header="<header>H</header>")
        "<html><head><title>Cluster investigation</title></head><body class='jp-Notebook'>\\n<header>H</header><p>SIR 1.52</p></body></html>"
        >>> decorate_report("<p>no body tag</p>", title="T", header="<header>H</header>")
        '<header>H</header><p>no body tag</p>'
    """
    page = re.sub(r"<title>.*?</title>", f"<title>{html.escape(title)}</title>", page, count=1, flags=re.S)
    m = re.search(r"<body[^>]*>", page)
    if not m:
        return header + page
    return page[: m.end()] + "\n" + header + page[m.end():]
