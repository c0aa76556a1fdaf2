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

KERNEL_NAME = "python3"


class NotebookFailed(RegistryLabError):
    """A study notebook raised an error in one of its cells.

    Example:
        >>> issubclass(NotebookFailed, RegistryLabError)
        True
    """


def scrub_text(text: str, root: str) -> str:
    """Replace the absolute project path (and its parent forms) by ``.``.

    Example:
        >>> scrub_text("saved to /srv/lab/reports/x.png", "/srv/lab")
        'saved to ./reports/x.png'
    """
    return text.replace(root.rstrip("/"), ".")


def scrub_notebook(nb: nbformat.NotebookNode, root: Path) -> nbformat.NotebookNode:
    """Remove timings and absolute paths so two executions give identical bytes.

    Example:
        >>> nb = nbformat.v4.new_notebook(metadata={"papermill": {"duration": 1.5}})
        >>> nb.cells.append(nbformat.v4.new_code_cell("print(1)", outputs=[
        ...     nbformat.v4.new_output("stream", name="stdout", text="/srv/lab/data.csv\\n")]))
        >>> out = scrub_notebook(nb, Path("/srv/lab"))
        >>> out.metadata["papermill"], out.cells[0].id, out.cells[0].outputs[0]["text"]
        ({}, 'cell-000', './data.csv\\n')
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

    Example:
        >>> import tempfile
        >>> nb = nbformat.v4.new_notebook()
        >>> nb.cells.append(nbformat.v4.new_code_cell("n = 1", metadata={"tags": ["parameters"]}))
        >>> nb.cells.append(nbformat.v4.new_code_cell("print(n * 2)"))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     nbformat.write(nb, Path(d) / "study.ipynb")
        ...     execute_notebook(Path(d) / "study.ipynb", Path(d) / "out" / "study.ipynb", {"n": 21}, Path(d))
        ...     out = nbformat.read(Path(d) / "out" / "study.ipynb", as_version=4)
        >>> out.cells[-1].outputs[0]["text"]
        '42\\n'
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
            str(notebook), str(output), parameters=parameters, kernel_name=KERNEL_NAME, language="python",
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


def render_html(executed: Path, html: Path) -> None:
    """nbconvert the executed notebook to HTML with figures embedded and input cells hidden.

    Example:
        >>> import tempfile
        >>> nb = nbformat.v4.new_notebook()
        >>> nb.cells.append(nbformat.v4.new_code_cell("secret_code = 1", outputs=[
        ...     nbformat.v4.new_output("stream", name="stdout", text="42 patients")]))
        >>> with tempfile.TemporaryDirectory() as d:
        ...     nbformat.write(nb, Path(d) / "run.ipynb")
        ...     render_html(Path(d) / "run.ipynb", Path(d) / "run.html")
        ...     html = (Path(d) / "run.html").read_text()
        >>> "42 patients" in html, "secret_code" in html   # outputs shown, input cells hidden
        (True, False)
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    html.write_text(body)
