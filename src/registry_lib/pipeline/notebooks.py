"""Executing a study notebook with papermill, scrubbing it, and rendering HTML.

Executed notebooks are made byte-reproducible: papermill's and nbclient's timing metadata are
removed and the project's absolute path is replaced by ``.`` in every output.

Example:
    >>> scrub_text("/home/me/project/src/x.py:3: Warning", "/home/me/project")
    './src/x.py:3: Warning'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat

from registry_lib.errors import RegistryLabError
from registry_lib.parameters import python_literal
from registry_lib.progress import in_ci

KERNEL_NAME = "registry-lab"  # what the notebooks name; `make setup` installs it into .venv


def kernel_name() -> str:
    """The project kernel when it is installed, else the environment's own ``python3``.

    Example:
        >>> from unittest import mock
        >>> specs = "jupyter_client.kernelspec.KernelSpecManager.find_kernel_specs"
        >>> with mock.patch(specs, return_value={"python3": "/k/python3", "registry-lab": "/k/registry-lab"}):
        ...     kernel_name()                      # after make setup
        'registry-lab'
        >>> with mock.patch(specs, return_value={"python3": "/k/python3"}):
        ...     kernel_name()                      # a bare environment
        'python3'
    """
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL_NAME if KERNEL_NAME in KernelSpecManager().find_kernel_specs() else "python3"


class NotebookFailed(RegistryLabError):
    """A study notebook raised an error in one of its cells.

    A :class:`RegistryLabError`, so the command line prints its message (which cell, which
    error, where the partly executed notebook is) rather than a traceback.

    Example:
        >>> try:
        ...     raise NotebookFailed("04_covid_impact.ipynb: cell 7 failed with KeyError: 'stage'")
        ... except RegistryLabError as exc:
        ...     print(f"registry-lab: {exc}")
        registry-lab: 04_covid_impact.ipynb: cell 7 failed with KeyError: 'stage'
    """


def scrub_text(text: str, root: str) -> str:
    """Replace the absolute project path (and its parent forms) by ``.``.

    Example:
        >>> scrub_text("FileNotFoundError: /home/me/registry-lab/synthetic/tiny/registry", "/home/me/registry-lab/")
        'FileNotFoundError: ./synthetic/tiny/registry'
    """
    return text.replace(root.rstrip("/"), ".")


def scrub_notebook(nb: nbformat.NotebookNode, root: Path) -> nbformat.NotebookNode:
    """Remove timings and absolute paths so two executions give identical bytes.

    Example:
        >>> nb = nbformat.v4.new_notebook(metadata={"papermill": {"duration": 12.3, "parameters": {"cohort": "tiny"}}})
        >>> cell = nbformat.v4.new_code_cell("print(len(tumours))", outputs=[
        ...     nbformat.v4.new_output("stream", name="stdout", text="reading /home/me/lab/synthetic/tiny\\n"),
        ...     nbformat.v4.new_output("stream", name="stdout", text="242 tumours\\n")])
        >>> cell.metadata["execution"] = {"iopub.execute_input": "2024-05-01T09:00:00Z"}
        >>> nb.cells = [cell]
        >>> nb = scrub_notebook(nb, Path("/home/me/lab"))
        >>> nb.metadata["papermill"], nb.cells[0]["id"], dict(nb.cells[0].metadata)
        ({'parameters': {'cohort': 'tiny'}}, 'cell-000', {})
        >>> nb.cells[0].outputs[0]["text"]     # one stream output, without the absolute path
        'reading ./synthetic/tiny\\n242 tumours\\n'
    """
    root_s = str(root)
    meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration", "input_path", "output_path", "environment_variables"):
        meta.pop(key, None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"  # papermill gives its injected-parameters cell a random id
        cell.metadata.pop("execution", None)
        pm = cell.metadata.get("papermill")
        if pm is not None:
            for key in ("start_time", "end_time", "duration"):
                pm.pop(key, None)
        if cell.cell_type == "code":
            cell["outputs"] = _merge_streams(cell.get("outputs", []))
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = scrub_text(out["text"], root_s)
            if out.get("output_type") == "error":
                out["traceback"] = [scrub_text(t, root_s) for t in out.get("traceback", [])]
                out["evalue"] = scrub_text(out.get("evalue", ""), root_s)
            data = out.get("data", {})
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in data:
                    value = data[mime]
                    data[mime] = scrub_text(value if isinstance(value, str) else "".join(value), root_s)
    return nb


def _merge_streams(outputs: list) -> list:
    """Join consecutive outputs of the same stream: how a print is split into messages depends
    on timing, so unmerged streams differ between two runs."""
    merged: list = []
    for out in outputs:
        if (merged and out.get("output_type") == "stream" and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] = merged[-1]["text"] + out["text"]
        else:
            merged.append(out)
    return merged


def execute_notebook(notebook: Path, output: Path, parameters: dict[str, Any], root: Path) -> None:
    """Run ``notebook`` with ``parameters`` into ``output`` (cwd = project root).

    On a failing cell the partly executed notebook is kept at ``output`` and NotebookFailed
    names the cell and the error.

    Example (parameters are checked before a kernel starts):
        >>> execute_notebook(Path("notebooks/05_registry_statistics.ipynb"), Path("out.ipynb"),
        ...                  {"2019": True}, Path("."))
        Traceback (most recent call last):
        registry_lib.errors.RegistryLabError: 05_registry_statistics.ipynb: parameter name '2019' is not a Python name
        >>> execute_notebook(Path("notebooks/05_registry_statistics.ipynb"), Path("out.ipynb"),
        ...                  {"sites": {"C50"}}, Path("."))
        Traceback (most recent call last):
        registry_lib.errors.ConfigError: parameter value = {'C50'} is not allowed: expected a plain value (text, number, true/false, null, list or mapping)
    """
    import papermill as pm

    _use_safe_literals()
    for name, value in parameters.items():
        if not str(name).isidentifier():
            raise RegistryLabError(f"{notebook.name}: parameter name {name!r} is not a Python name")
        python_literal(value)  # refuses anything that is not plain data before the kernel starts
    output.parent.mkdir(parents=True, exist_ok=True)
    env_backup = os.environ.get("REGISTRY_LAB_ROOT")
    os.environ["REGISTRY_LAB_ROOT"] = str(root)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    try:
        pm.execute_notebook(
            str(notebook), str(output), parameters=parameters, kernel_name=kernel_name(), language="python",
            cwd=str(root), progress_bar=not in_ci(), log_output=False, report_mode=False,
        )
    except pm.PapermillExecutionError as exc:
        _scrub_file(output, root)
        source = exc.source or _failing_source(output, exc.exec_count)
        raise NotebookFailed(
            f"{notebook.name}: cell {exc.exec_count} failed with {exc.ename}: "
            f"{scrub_text(str(exc.evalue), str(root))}\n--- failing cell ---\n{source}\n"
            f"--- partly executed notebook kept at {output.relative_to(root)} ---"
        ) from None
    finally:
        if env_backup is None:
            os.environ.pop("REGISTRY_LAB_ROOT", None)
        else:
            os.environ["REGISTRY_LAB_ROOT"] = env_backup
    _scrub_file(output, root)


def _use_safe_literals() -> None:
    """Make papermill write every parameter as an exact Python literal (``repr`` of plain data,
    checked by :func:`~registry_lib.parameters.python_literal`), never as unescaped text."""
    from papermill.translators import PythonTranslator, papermill_translators

    class SafePythonTranslator(PythonTranslator):
        @classmethod
        def translate(cls, val: Any) -> str:
            return python_literal(val)

    papermill_translators.register("python", SafePythonTranslator)


def _scrub_file(path: Path, root: Path) -> None:
    if path.exists():
        nb = nbformat.read(path, as_version=4)
        nbformat.write(scrub_notebook(nb, root), path)


def _failing_source(path: Path, exec_count: int | None) -> str:
    if not path.exists():
        return "(notebook not written)"
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.get("execution_count") == exec_count:
            return cell.source
    return "(failing cell not found)"


def render_html(executed: Path, html: Path, context: dict[str, Any] | None = None) -> None:
    """nbconvert the executed notebook to HTML with figures embedded and input cells hidden.

    With ``context`` (study, folder, cohort, params, defaults, rerun, run_key, root, git: the commit and whether the tree is dirty) the page
    becomes a document: the study title in ``<title>`` and a header with cohort, date, commit,
    parameters, links to every output and back to the index, and the command to rerun it.

    Example:
        >>> import tempfile
        >>> nb = nbformat.v4.new_notebook()
        >>> nb.cells = [nbformat.v4.new_markdown_cell("# Cancer registration statistics"),
        ...             nbformat.v4.new_code_cell("print(f'{n:,} registrations')", outputs=[
        ...                 nbformat.v4.new_output("stream", name="stdout", text="1,234 registrations\\n")])]
        >>> with tempfile.TemporaryDirectory() as d:
        ...     nbformat.write(nb, Path(d) / "registry_statistics.ipynb")
        ...     render_html(Path(d) / "registry_statistics.ipynb", Path(d) / "registry_statistics.html")
        ...     page = (Path(d) / "registry_statistics.html").read_text()
        >>> "1,234 registrations" in page, "print(f'" in page    # outputs shown, code hidden
        (True, False)
        >>> "require.js" in page or "cdn.jsdelivr" in page       # nothing fetched from the network
        False
    """
    from nbconvert import HTMLExporter

    from registry_lib.reporting.document import decorate_report, notebook_title, report_header

    # the lab template minus require.js and MathJax from a CDN: the page works offline
    exporter = HTMLExporter(template_name="registry_lab",
                            extra_template_basedirs=[str(Path(__file__).with_name("templates"))])
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    nb = nbformat.read(executed, as_version=4)
    banners = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
               if o.get("metadata", {}).get("registry_lab_synthetic")]
    if banners:  # a study run on a synthetic twin says so at the very top of its report
        banner = nbformat.v4.new_code_cell("", outputs=[banners[0]])
        banner.id = "synthetic-data-banner"  # a fixed id: a random one would change the page on every run
        nb.cells.insert(0, banner)
    body, _ = exporter.from_notebook_node(nb)
    if context is not None:
        title = notebook_title(nb.cells, context["study"])
        git = context["git"]
        header = report_header(title=title, study=context["study"], folder=context["folder"],
                               cohort=context["cohort"], commit=git["commit"], dirty=git["dirty"],
                               params=context["params"], defaults=context["defaults"],
                               rerun=context["rerun"], run_key=context["run_key"])
        body = decorate_report(body, title=title, header=header)
    html.write_text(body)
