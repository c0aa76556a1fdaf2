"""Build the static documentation site into ``docs/site/`` (run by ``make docs``), offline.

- ``api/`` — the API reference of ``registry_lib``, rendered by pdoc from the docstrings;
- ``journey.html`` — the data journey (synth → link → release → studies) with the folders each
  step writes, generated from ``params/pipeline.yaml``;
- ``studies/<study>.html`` — one page per study: the question (the notebook's first Markdown
  cell), its parameters (``params/studies/<study>.yaml``, with their comments) and the keys of
  the ``results.json`` it writes (read from the notebook's code);
- ``data_dictionary.html`` — ``synthetic/README.md``;
- ``index.html`` — links to all of them.

Every page is generated from the files the pipeline itself reads, so the site cannot drift from
the code. Usage: ``python scripts/build_docs.py [--out docs/site]``.
"""

from __future__ import annotations

import argparse
import ast
import html
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]

# What each kind of pipeline step writes, under synthetic/<cohort>/ or reports/.
STEP_OUTPUTS = {
    "synth": "`synthetic/{cohort}/feeds/` (raw feeds as hospitals send them), "
             "`synthetic/{cohort}/reference/` (areas, populations, life tables, point sources), "
             "`synthetic/{cohort}/truth/` (true patients, tumours, treatments, injected effects)",
    "link": "`synthetic/{cohort}/registry/` (patient, tumour, treatment, quarantine, clerical "
            "review, `link_report.json`)",
    "release": "`synthetic/{cohort}/releases/{policy}/` (the tables the policy allows) and the "
               "audit log `synthetic/{cohort}/releases/audit.jsonl`",
    "notebook": "`reports/{name}/` (`{name}.html`, `{name}.ipynb`, `results.json`, "
                "`tables/*.csv`, `figures/*.png`)",
}

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1b1b1b; }
code, pre { background: #f3f3f3; border-radius: 3px; }
pre { padding: .6rem; overflow-x: auto; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
nav { margin-bottom: 1.5rem; }
"""


def _markdown(text: str) -> str:
    """Markdown to HTML with markdown2 (the converter pdoc itself uses; no network)."""
    import markdown2

    return str(markdown2.markdown(text, extras=["tables", "fenced-code-blocks", "cuddled-lists"]))


def _page(title: str, body_html: str, depth: int = 0) -> str:
    up = "../" * depth
    nav = (f'<nav><a href="{up}index.html">Registry Lab</a> · <a href="{up}journey.html">data '
           f'journey</a> · <a href="{up}data_dictionary.html">data dictionary</a> · '
           f'<a href="{up}api/registry_lib.html">API reference</a></nav>')
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body>{nav}\n{body_html}\n</body></html>\n")


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def journey_markdown(root: Path = ROOT) -> str:
    """The data journey, step by step, from ``params/pipeline.yaml``."""
    spec = yaml.safe_load((root / "params" / "pipeline.yaml").read_text())
    cohort = spec.get("cohort", "<cohort>")
    lines = [
        "# The data journey",
        "",
        "Data move one way: `synth` generates synthetic England, `link` turns the raw feeds "
        "into a registry, `release` gives registry data out under a purpose-specific policy "
        "(`params/release/`), and each study notebook reads a release and writes a report. "
        "`registry-lab reproduce` runs the steps of `params/pipeline.yaml` in dependency order, "
        "skipping a step whose code, parameters and upstream outputs are unchanged. The library "
        "is layered the same way (`synth` → `linkage` → `release` → `studies` → `pipeline` → "
        "`cli`, each importing only leftwards; `stats` imports none of them), and "
        "`lint-imports` checks it.",
        "",
        f"The steps of `params/pipeline.yaml` (cohort `{cohort}`):",
        "",
        "| step | kind | needs | writes |",
        "|---|---|---|---|",
    ]
    for step in spec["steps"]:
        kind = step["kind"]
        writes = STEP_OUTPUTS.get(kind, "").format(cohort=cohort, policy=step.get("policy", ""),
                                                   name=step["name"])
        if kind == "notebook":
            writes = f"`{step['notebook']}` with `{step['params']}` → " + writes
        needs = ", ".join(f"`{n}`" for n in step.get("needs", [])) or "—"
        lines.append(f"| `{step['name']}` | {kind} | {needs} | {_cell(writes)} |")
    lines += ["", "Studies never read `feeds/` or `truth/`: they read a release, as a real analyst "
              "would; truth is read only by validation code (tests, benchmarks and the clearly "
              "marked truth-check cells)."]
    return "\n".join(lines) + "\n"


def parameter_rows(params_file: Path) -> list[tuple[str, str, str]]:
    """``(name, value, comment)`` for each top-level key of a study's params file.

    The comment is the text after ``#`` on the key's line, or else the comment lines just above.
    """
    text = params_file.read_text()
    values = yaml.safe_load(text) or {}
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            above = []
            continue
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:", line)
        if m:
            after = line.split("#", 1)[1].strip() if " #" in line else ""
            comments[m.group(1)] = after or " ".join(above)
        above = []
    return [(k, json.dumps(v, default=str), comments.get(k, "")) for k, v in values.items()]


def notebook_question(notebook: Path) -> str:
    """The notebook's first Markdown cell (title and question)."""
    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            return "".join(cell["source"])
    return ""


def results_keys(notebook: Path) -> list[str]:
    """Top-level keys of ``results.json``: the ``results`` dict the notebook passes to
    ``write_results``, and the sections a :class:`~registry_lib.reporting.StudyResults` records."""
    nb = json.loads(notebook.read_text())
    keys: list[str] = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            value = None
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name) and target.id == "results":
                        value = node.value
                    elif (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)
                          and target.value.id == "results"
                          and isinstance(target.slice, ast.Constant)):
                        keys.append(str(target.slice.value))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in ("record", "record_from", "section") and node.args
                  and isinstance(node.args[0], ast.Constant)):  # StudyResults: section by section
                keys.append(str(node.args[0].value))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id == "StudyResults"):  # its header keys
                keys += [k.arg for k in node.keywords if k.arg]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "update" and isinstance(node.func.value, ast.Name)
                  and node.func.value.id == "results" and node.args):
                value = node.args[0]
            if isinstance(value, ast.Dict):
                keys += [str(k.value) for k in value.keys if isinstance(k, ast.Constant)]
            elif value is not None:
                keys.append(f"(the keys returned by `{ast.unparse(value)}`)")
    return list(dict.fromkeys(keys))


def study_markdown(study: str, notebook: Path, params_file: Path) -> str:
    """The page of one study: question, parameters and what ``results.json`` holds."""
    lines = [notebook_question(notebook), "", "## Where it lives", "",
             f"- notebook: `{notebook.relative_to(ROOT)}`",
             f"- study module: `registry_lib.studies.{study}` "
             f"([API](../api/registry_lib/studies/{study}.html))",
             f"- parameters: `{params_file.relative_to(ROOT)}` — run with other values by "
             f"`registry-lab run {study} -p NAME VALUE`",
             f"- report: `reports/{study}/`", "",
             "## Parameters", "", "| parameter | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | `{_cell(v)}` | {_cell(c)} |" for k, v, c in parameter_rows(params_file)]
    lines += ["", "## What `results.json` holds", "",
              f"`reports/{study}/results.json` has these top-level keys (key estimates and the "
              "settings that produced them):", ""]
    lines += [f"- `{k}`" if not k.startswith("(") else f"- {k}" for k in results_keys(notebook)]
    return "\n".join(lines) + "\n"


def studies(root: Path = ROOT) -> list[tuple[str, Path, Path]]:
    """``(study, notebook, params)`` of every notebook step of ``params/pipeline.yaml``."""
    spec = yaml.safe_load((root / "params" / "pipeline.yaml").read_text())
    return [(s["name"], root / s["notebook"], root / s["params"])
            for s in spec["steps"] if s["kind"] == "notebook"]


def build(out: Path, *, api: bool = True) -> list[Path]:
    """Write the site into ``out`` (emptied first); returns the pages written."""
    if out.exists():
        shutil.rmtree(out)
    (out / "studies").mkdir(parents=True)
    pages: list[Path] = []

    def write(rel: str, title: str, markdown_text: str) -> None:
        path = out / rel
        path.write_text(_page(title, _markdown(markdown_text), depth=rel.count("/")))
        pages.append(path)

    write("journey.html", "The data journey", journey_markdown())
    write("data_dictionary.html", "Data dictionary",
          (ROOT / "synthetic" / "README.md").read_text())
    items = []
    for study, notebook, params_file in studies():
        write(f"studies/{study}.html", study, study_markdown(study, notebook, params_file))
        items.append(f"- [`{study}`](studies/{study}.html) — `{notebook.relative_to(ROOT)}`")
    index = "\n".join([
        "# Registry Lab", "",
        "A reproducible research environment for population cancer-registry studies on "
        "synthetic England.", "",
        "- [The data journey](journey.html): synth → link → release → studies, and the folders "
        "each step writes",
        "- [The data dictionary](data_dictionary.html) of every table",
        "- [The API reference](api/registry_lib.html) of `registry_lib`", "",
        "## Studies", "", *items, ""])
    write("index.html", "Registry Lab", index)
    if api:
        pages += build_api(out / "api")
    return pages


def api_modules() -> list[str]:
    """Every module of ``registry_lib`` (packages with ``__all__`` would hide their submodules)."""
    import pkgutil

    import registry_lib

    return ["registry_lib", *sorted(m.name for m in pkgutil.walk_packages(registry_lib.__path__,
                                                                         "registry_lib."))]


def build_api(out: Path) -> list[Path]:
    """The API reference of every module, by pdoc (Google-style docstrings)."""
    import warnings

    import pdoc
    import pdoc.render

    modules = api_modules()
    pdoc.render.configure(docformat="google", show_source=False,
                          footer_text="Registry Lab API reference")
    with warnings.catch_warnings():
        # Lazily exported names (module __getattr__) are documented in their own modules.
        warnings.filterwarnings("ignore", message=".*does not resolve.*")
        # Each package's submodules are listed as well as walked: one page each all the same.
        warnings.filterwarnings("ignore", message=".*has already been added.*")
        pdoc.pdoc(*modules, output_directory=out)
    return [out / (m.replace(".", "/") + ".html") for m in modules]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "site")
    args = parser.parse_args(argv)
    pages = build(args.out)
    print(f"wrote {len(pages)} pages and the API reference to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
