"""The run's provenance manifest and the reports index page.

``reports/manifest.json`` records the git commit and dirty flag, Python and package versions,
the cohort seed, the params hashes, sha256 of every input and output file, and start and end
times. Only its timing fields (``started``, ``finished``, per-step ``started``, ``finished``,
``seconds``) change between two identical runs. ``reports/index.html`` is deterministic; run
times are shown from ``reports/run_times.js``, the manifest's timing fields in script form (so
the page works when opened from disk).

Example:
    >>> html_escape("<b>")
    '&lt;b&gt;'
"""

from __future__ import annotations

import datetime as dt
import html
import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry_lib.io import write_json
from registry_lib.pipeline.cache import hash_files

if TYPE_CHECKING:
    from registry_lib.pipeline.runner import Pipeline

TIMING_FIELDS = ("started", "finished", "seconds", "output_finished", "output_seconds")


def html_escape(text: str) -> str:
    """Text (or any value, as text) safe inside the index page's HTML.

    Example:
        >>> html_escape('Colorectal <C18-C20> & "anal"'), html_escape(0.95)
        ('Colorectal &lt;C18-C20&gt; &amp; &quot;anal&quot;', '0.95')
    """
    return html.escape(str(text))


def git_state(root: Path) -> dict[str, Any]:
    """The commit and whether the working tree differs from it.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     print(git_state(Path(d)))          # not a git checkout
        ...     git = ["git", "-c", "user.name=A. Analyst", "-c", "user.email=a@example.org"]
        ...     _ = (Path(d) / "analysis.py").write_text("print(1)\\n")
        ...     for cmd in (["init", "-q"], ["add", "analysis.py"], ["commit", "-qm", "first"]):
        ...         _ = subprocess.run([*git, *cmd], cwd=d, check=True)
        ...     clean = git_state(Path(d))
        ...     _ = (Path(d) / "analysis.py").write_text("print(2)\\n")
        ...     dirty = git_state(Path(d))
        {'commit': None, 'dirty': None}
        >>> len(clean["commit"]), clean["dirty"], dirty["commit"] == clean["commit"], dirty["dirty"]
        (40, False, True, True)
    """
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=20, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"commit": commit or None, "dirty": dirty}


def environment_summary() -> dict[str, Any]:
    """Python and package versions for the manifest.

    Example:
        >>> import platform, pandas
        >>> env = environment_summary()
        >>> sorted(env), env["python"] == platform.python_version()
        (['packages', 'platform', 'python'], True)
        >>> env["packages"]["pandas"] == pandas.__version__, list(env["packages"]) == sorted(env["packages"])
        (True, True)
    """
    import platform
    from importlib import metadata

    packages = {d.metadata["Name"].lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return {"python": platform.python_version(), "platform": platform.system().lower(),
            "packages": dict(sorted(packages.items()))}


def write_manifest(pipe: Pipeline, reports: Path, *, started: str) -> Path:
    """Write ``reports/manifest.json`` and ``reports/run_times.js``.

    Example (a pipeline whose one study has run):
        >>> import json, tempfile
        >>> from registry_lib.pipeline.runner import Pipeline, StepResult
        >>> from registry_lib.pipeline.spec import PipelineSpec
        >>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)   # a project root
        >>> spec = PipelineSpec.from_dict({"cohort": "tiny", "steps": [{"name": "registry_statistics",
        ...     "kind": "notebook", "notebook": "notebooks/05_registry_statistics.ipynb",
        ...     "title": "Cancer registration statistics", "question": "How many cancers are diagnosed?"}]})
        >>> pipe = Pipeline(spec, root)
        >>> study = root / "reports" / "registry_statistics"; study.mkdir(parents=True)
        >>> _ = (study / "results.json").write_text('{"headline": "1,234 cancers were registered in 2019."}')
        >>> pipe.results.append(StepResult("registry_statistics", "notebook", "ran", "2024-05-01T09:00:00+00:00",
        ...     "2024-05-01T09:01:00+00:00", 60.0, {"cohort": "tiny"}, "registry_statistics/registry_statistics.html",
        ...     "2024-05-01T09:01:00+00:00", 60.0))
        >>> manifest = json.loads(write_manifest(pipe, root / "reports", started="2024-05-01T09:00:00+00:00").read_text())
        >>> manifest["cohort"], manifest["git"], manifest["steps"][0]["status"], manifest["steps"][0]["seconds"]
        ('tiny', {'commit': None, 'dirty': None}, 'ran', 60.0)
        >>> manifest["outputs"]
        {'reports/registry_statistics/results.json': '385af7f3422b822dd4b0e98c0af8531b0471caffb2d576b13ee4e387d4efa2e6'}
        >>> print((root / "reports" / "run_times.js").read_text().splitlines()[-1])
        window.REGISTRY_LAB_RUN_TIMES = {"registry_statistics": {"finished": "2024-05-01T09:01:00+00:00", "seconds": 60.0}};
        >>> tmp.cleanup()
    """
    root = pipe.root
    cohort_json = pipe.cohort_path / "cohort.json"
    seed = json.loads(cohort_json.read_text()).get("seed") if cohort_json.exists() else None
    params_files = sorted({p for s in pipe.spec.steps for p in pipe.inputs(s) if p.exists()})
    inputs = hash_files([*params_files, root / "params" / "pipeline.yaml"], root)
    outputs: dict[str, str] = {}
    for step in pipe.spec.steps:
        outputs.update(hash_files(pipe.outputs(step), root))
    manifest = {
        "git": git_state(root),
        "environment": environment_summary(),
        "cohort": pipe.cohort,
        "seed": seed,
        "params_hashes": {k: v for k, v in inputs.items() if k.startswith("params/")},
        "inputs": inputs,
        "outputs": outputs,
        "steps": [
            {"name": r.name, "kind": r.kind, "status": r.status, "report": r.report,
             "started": r.started, "finished": r.finished, "seconds": r.seconds,
             "output_finished": r.output_finished, "output_seconds": r.output_seconds}
            for r in pipe.results
        ],
        "started": started,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    reports.mkdir(parents=True, exist_ok=True)
    path = write_json(manifest, reports / "manifest.json")
    write_run_times(reports, {r.name: {"finished": r.output_finished, "seconds": r.output_seconds}
                              for r in pipe.results if r.status != "failed"})
    return path


def write_run_times(reports: Path, runs: dict[str, dict[str, Any]]) -> Path:
    """Merge ``runs`` into ``reports/run_times.js``: for each step or report folder, when the run
    that made its outputs finished and how long it took (read by the pages opened from disk).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = write_run_times(Path(d), {"link": {"finished": "2024-05-01T09:00:00+00:00", "seconds": 41.5}})
        ...     js = write_run_times(Path(d), {"covid_impact": {"finished": "2024-05-01T09:03:10+00:00", "seconds": 12.0}})
        ...     print(js.read_text().splitlines()[-1])
        window.REGISTRY_LAB_RUN_TIMES = {"covid_impact": {"finished": "2024-05-01T09:03:10+00:00", "seconds": 12.0}, "link": {"finished": "2024-05-01T09:00:00+00:00", "seconds": 41.5}};
    """
    path = reports / "run_times.js"
    known: dict[str, Any] = {}
    if path.exists():
        text = path.read_text()
        start, end = text.find("{"), text.rfind("}")
        try:
            known = json.loads(text[start:end + 1]) if start >= 0 else {}
        except ValueError:
            known = {}
    known.update(runs)
    reports.mkdir(parents=True, exist_ok=True)
    path.write_text("// When the run that made each output finished, and its run time (from manifest.json),\n"
                    "// for the pages opened from disk.\n"
                    f"window.REGISTRY_LAB_RUN_TIMES = {json.dumps(known, sort_keys=True)};\n")
    return path


def _headline(folder: Path) -> str:
    """The headline sentence a study wrote into its ``results.json`` (empty if none)."""
    try:
        results = json.loads((folder / "results.json").read_text())
    except (OSError, ValueError):
        return ""
    return str(results.get("headline") or "")


def write_index(pipe: Pipeline, reports: Path) -> Path:
    """Write ``reports/index.html``: per study its question, headline result, status, run time,
    date, commit and parameters (as a table, differences from the defaults highlighted).

    Example (a pipeline whose one study has run):
        >>> import json, tempfile
        >>> from registry_lib.pipeline.runner import Pipeline, StepResult
        >>> from registry_lib.pipeline.spec import PipelineSpec
        >>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)   # a project root
        >>> spec = PipelineSpec.from_dict({"cohort": "tiny", "steps": [{"name": "registry_statistics",
        ...     "kind": "notebook", "notebook": "notebooks/05_registry_statistics.ipynb",
        ...     "title": "Cancer registration statistics", "question": "How many cancers are diagnosed?"}]})
        >>> pipe = Pipeline(spec, root)
        >>> study = root / "reports" / "registry_statistics"; study.mkdir(parents=True)
        >>> _ = (study / "results.json").write_text('{"headline": "1,234 cancers were registered in 2019."}')
        >>> pipe.results.append(StepResult("registry_statistics", "notebook", "ran", "2024-05-01T09:00:00+00:00",
        ...     "2024-05-01T09:01:00+00:00", 60.0, {"cohort": "tiny"}, "registry_statistics/registry_statistics.html",
        ...     "2024-05-01T09:01:00+00:00", 60.0))
        >>> page = write_index(pipe, root / "reports").read_text()
        >>> print("\\n".join(line for line in page.splitlines() if line.startswith(("<h2>", "<p class", "<dl>"))))
        <h2><a href="registry_statistics/registry_statistics.html">Cancer registration statistics</a></h2>
        <p class="question">How many cancers are diagnosed?</p>
        <p class="headline"><b>Result.</b> 1,234 cancers were registered in 2019.</p>
        <dl><dt>Status</dt><dd><span class='ok'>ok</span></dd>
        <h2>Data steps</h2><ul></ul>
        >>> "<code>not a git checkout</code>" in page
        True
        >>> tmp.cleanup()
    """
    from registry_lib.reporting.document import (
        PAGE_CSS,
        RUN_INFO_JS,
        parameter_rows,
        parameters_html,
    )

    git = git_state(pipe.root)
    commit = (git["commit"] or "")[:12] or "not a git checkout"
    if git["dirty"]:
        commit += " (with uncommitted changes)"
    cards = []
    for r in pipe.results:
        if r.kind != "notebook":
            continue
        step = pipe.spec.step(r.name)
        params = {k: v for k, v in r.parameters.items() if k not in {"output_dir"}}
        defaults = {**pipe.study_defaults(step), "cohort": pipe.spec.cohort}
        folder = Path(r.report).parent.as_posix() if r.report else r.name
        changed = sum(row["changed"] for row in parameter_rows(params, defaults))
        failed = r.status == "failed"
        title = html_escape(step.option("title", r.name.replace("_", " ").capitalize()))
        link = title if failed else f'<a href="{html_escape(r.report)}">{title}</a>'
        status = ("<span class='failed'>FAILED</span>" if failed else
                  "<span class='ok'>ok</span>" + (" (unchanged since the run below)" if r.status == "skipped" else ""))
        headline = "" if failed else _headline(reports / folder)
        cards.append(f"""<section class="study">
<h2>{link}</h2>
<p class="question">{html_escape(step.option("question", ""))}</p>
{f'<p class="headline"><b>Result.</b> {html_escape(headline)}</p>' if headline else ''}
<dl><dt>Status</dt><dd>{status}</dd>
<dt>Made by the run that finished</dt><dd><span data-rl-run="{html_escape(r.name)}" data-rl-field="finished">see manifest.json</span>
 in <span data-rl-run="{html_escape(r.name)}" data-rl-field="seconds">(not recorded)</span></dd>
<dt>Outputs</dt><dd>{'' if failed else f'<a href="{html_escape(r.report)}">report</a> · '}<a href="{html_escape(folder)}/{html_escape(Path(folder).name)}.ipynb">executed notebook</a>{'' if failed else f' · <a href="{html_escape(folder)}/results.json">results.json</a>'}</dd></dl>
<details><summary>Parameters ({'all defaults' if not changed else f"{changed} differ{'s' if changed == 1 else ''} from the defaults, highlighted"})</summary>
{parameters_html(params, defaults)}</details>
</section>""")
    steps = "".join(f"<li>{html_escape(r.name)} ({r.kind}): {'FAILED' if r.status == 'failed' else 'ok'}"
                    f"{' (unchanged)' if r.status == 'skipped' else ''}</li>"
                    for r in pipe.results if r.kind != "notebook")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Registry Lab reports — cohort {html_escape(pipe.cohort)}</title>
<style>{PAGE_CSS}
body{{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:62rem;padding:1.5rem;color:#222;line-height:1.45}}
section.study{{border:1px solid #d0d7de;border-radius:6px;padding:.6rem 1.1rem;margin:1rem 0}}
section.study h2{{margin:.3rem 0;font-size:1.25rem}}.question{{color:#444;margin:.2rem 0 .5rem}}
.headline{{background:#eef6ee;border-left:4px solid #2e7d32;padding:.4rem .7rem;margin:.5rem 0}}
dl{{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;font-size:14px;margin:.4rem 0}}dt{{font-weight:600}}dd{{margin:0}}
.failed{{color:#b00;font-weight:bold}}.ok{{color:#2e7d32;font-weight:600}}details summary{{cursor:pointer;color:#1f5f99;font-size:14px}}
code{{font-size:.85em}}</style></head><body>
<h1>Registry Lab reports</h1>
<p>Studies of <b>synthetic England</b>, cohort <b>{html_escape(pipe.cohort)}</b>, from git commit
<code>{html_escape(commit)}</code>. Provenance of every input and output (package versions, seed,
sha256): <a href="manifest.json">manifest.json</a>. Made with <code>.venv/bin/registry-lab reproduce{'' if pipe.cohort == pipe.spec.cohort else ' --cohort ' + html_escape(pipe.cohort)}</code>.</p>
{chr(10).join(cards)}
<h2>Data steps</h2><ul>{steps}</ul>
<script src="run_times.js"></script>
<script>{RUN_INFO_JS}</script>
</body></html>
"""
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / "index.html"
    path.write_text(page)
    return path
