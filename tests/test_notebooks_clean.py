"""Notebooks are committed thin: no outputs, a tagged parameters cell, a pipeline step each."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_and_a_parameters_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    assert "cohort" in source and "output_dir" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_a_pipeline_step_with_matching_parameters(path):
    spec = yaml.safe_load((ROOT / "params" / "pipeline.yaml").read_text())
    steps = [s for s in spec["steps"] if s.get("notebook") == f"notebooks/{path.name}"]
    assert len(steps) == 1, f"{path.name} is not (exactly once) in params/pipeline.yaml"
    params_file = ROOT / steps[0].get("params", f"params/studies/{steps[0]['name']}.yaml")
    assert params_file.exists(), params_file
    params = yaml.safe_load(params_file.read_text()) or {}
    params.pop("parameter_types", None)  # the declarations, not a parameter
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"])
    for key in params:
        assert f"{key} =" in source, f"{path.name}: parameters cell lacks a default for {key!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_names_the_project_kernel_and_writes_to_scratch(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "registry-lab"
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"])
    assert 'output_dir = "reports/_scratch/' in source, "run in Lab, a notebook must not write the published reports"
    text = path.read_text()
    assert "print(" not in text, "conclusions are Markdown (registry_lib.reporting.say), not prints"
    assert "shared/reference" not in text and "issue 4" not in text


def test_git_strips_notebook_outputs():
    attributes = (ROOT / ".gitattributes").read_text()
    assert "*.ipynb filter=nbstripout" in attributes
    assert "filter.nbstripout.clean" in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_records_the_language_info_the_project_kernel_reports(path):
    """JupyterLab writes the kernel's ``language_info`` into a notebook it opens; one that differs
    from what the project kernel reports opens modified (a dirty tab before the user typed)."""
    from ipykernel.ipkernel import IPythonKernel

    expected = {**IPythonKernel.language_info, "version": platform.python_version()}
    recorded = json.loads(path.read_text())["metadata"].get("language_info", {})
    assert recorded == expected, f"{path.name}: language_info {recorded} != the kernel's {expected}"
