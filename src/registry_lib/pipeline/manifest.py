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

TIMING_FIELDS = ("started", "finished", "seconds")


def html_escape(text: str) -> str:
    """``text`` (any value, as a string) with ``&``, ``<``, ``>`` and quotes escaped for HTML.

    Example:
        >>> html_escape('a & "b"')
        'a &amp; &quot;b&quot;'
    """
    return html.escape(str(text))


def git_state(root: Path) -> dict[str, Any]:
    """The commit and whether the working tree differs from it.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     sorted(git_state(Path(d)))
        ['commit', 'dirty']
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
        >>> env = environment_summary()
        >>> env["python"].count(".") >= 1, "pandas" in env["packages"]
        (True, True)
    """
    import platform
    from importlib import metadata

    packages = {d.metadata["Name"].lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return {"python": platform.python_version(), "platform": platform.system().lower(),
            "packages": dict(sorted(packages.items()))}


def write_manifest(pipe: Pipeline, reports: Path, *, started: str) -> Path:
    """Write ``reports/manifest.json`` and ``reports/run_times.js``.

    Example:
        >>> import tempfile
        >>> from registry_lib.paths import project_root
        >>> from registry_lib.pipeline.runner import Pipeline, load_spec
        >>> pipe = Pipeline(load_spec(None, project_root()), project_root(), cohort="tiny")   # nothing run yet
        >>> with tempfile.TemporaryDirectory() as d:
        ...     manifest = json.loads(write_manifest(pipe, Path(d), started="2024-01-01T00:00:00+00:00").read_text())
        ...     sorted(p.name for p in Path(d).iterdir())
        ['manifest.json', 'run_times.js']
        >>> manifest["cohort"], manifest["started"]
        ('tiny', '2024-01-01T00:00:00+00:00')
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
             "started": r.started, "finished": r.finished, "seconds": r.seconds}
            for r in pipe.results
        ],
        "started": started,
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    reports.mkdir(parents=True, exist_ok=True)
    path = write_json(manifest, reports / "manifest.json")
    times = {r.name: r.seconds for r in pipe.results}
    (reports / "run_times.js").write_text(
        "// Timing fields of manifest.json, for index.html opened from disk.\n"
        f"window.REGISTRY_LAB_RUN_TIMES = {json.dumps(times, sort_keys=True)};\n")
    return path


def write_index(pipe: Pipeline, reports: Path) -> Path:
    """Write ``reports/index.html``: every study report with its status, run time and parameters.

    Example:
        >>> import tempfile
        >>> from registry_lib.paths import project_root
        >>> from registry_lib.pipeline.runner import Pipeline, load_spec
        >>> pipe = Pipeline(load_spec(None, project_root()), project_root(), cohort="tiny")   # nothing run yet
        >>> with tempfile.TemporaryDirectory() as d:
        ...     html = write_index(pipe, Path(d)).read_text()
        >>> html.startswith("<!doctype html>"), "Registry Lab reports — tiny" in html
        (True, True)
    """
    rows = []
    for r in pipe.results:
        if r.kind != "notebook":
            continue
        params = {k: v for k, v in r.parameters.items() if k not in {"output_dir"}}
        params_html = "<br>".join(f"<code>{html_escape(k)}</code> = {html_escape(json.dumps(v))}"
                                  for k, v in sorted(params.items()))
        folder = Path(r.report).parent.as_posix() if r.report else r.name
        link = f'<a href="{html_escape(r.report)}">{html_escape(r.name)}</a>' if r.status != "failed" else html_escape(r.name)
        rows.append(
            f"<tr><td>{link}</td><td class='{r.status}'>{'ok' if r.status != 'failed' else 'FAILED'}"
            f"{' (cached)' if r.status == 'skipped' else ''}</td>"
            f"<td class='time' data-step='{html_escape(r.name)}'>see manifest</td>"
            f"<td><a href='{folder}/results.json'>results.json</a></td><td>{params_html}</td></tr>")
    steps = "".join(f"<li>{html_escape(r.name)} ({r.kind}): {r.status}</li>" for r in pipe.results if r.kind != "notebook")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Registry Lab reports — {html_escape(pipe.cohort)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.4rem .6rem;vertical-align:top}}.failed{{color:#b00;font-weight:bold}}
code{{font-size:.85em}}</style></head><body>
<h1>Registry Lab reports</h1>
<p>Cohort <b>{html_escape(pipe.cohort)}</b>. Provenance: <a href="manifest.json">manifest.json</a>
(git commit, package versions, seed, sha256 of every input and output).</p>
<table><thead><tr><th>study</th><th>status</th><th>run time (s)</th><th>results</th><th>parameters</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<h2>Data steps</h2><ul>{steps}</ul>
<script src="run_times.js"></script>
<script>
const t = window.REGISTRY_LAB_RUN_TIMES || {{}};
document.querySelectorAll("td.time").forEach(td => {{
  const s = t[td.dataset.step]; if (s !== undefined) td.textContent = s.toFixed(1);
}});
</script>
</body></html>
"""
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / "index.html"
    path.write_text(page)
    return path
