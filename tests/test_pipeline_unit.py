"""Unit tests of the pipeline machinery: step order, caching, scrubbing, CLI errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from registry_lib.errors import ConfigError
from registry_lib.pipeline.cache import StepState, hash_files
from registry_lib.pipeline.notebooks import scrub_notebook
from registry_lib.pipeline.spec import PipelineSpec

ROOT = Path(__file__).resolve().parents[1]


def spec(steps):
    return PipelineSpec.from_dict({"cohort": "small", "steps": steps})


def test_steps_run_in_dependency_order_and_targets_pull_in_their_needs():
    s = spec([
        {"name": "report", "kind": "notebook", "notebook": "n.ipynb", "needs": ["rel"]},
        {"name": "synth", "kind": "synth"},
        {"name": "rel", "kind": "release", "policy": "p", "needs": ["link"]},
        {"name": "link", "kind": "link", "needs": ["synth"]},
        {"name": "other", "kind": "notebook", "notebook": "o.ipynb", "needs": ["synth"]},
    ])
    assert [x.name for x in s.ordered()] == ["synth", "link", "other", "rel", "report"]
    assert [x.name for x in s.ordered(["rel"])] == ["synth", "link", "rel"]


@pytest.mark.parametrize("steps, message", [
    ([{"name": "a", "kind": "bake"}], "unknown kind"),
    ([{"name": "a", "kind": "synth", "needs": ["b"]}], "unknown step 'b'"),
    ([{"name": "a", "kind": "synth"}, {"name": "a", "kind": "link"}], "duplicate step"),
    ([{"name": "a", "kind": "link", "needs": ["b"]}, {"name": "b", "kind": "link", "needs": ["a"]}], "cycle"),
    ([{"name": "a", "kind": "synth", "colour": 1}], "unknown key"),
])
def test_bad_pipelines_are_refused_with_a_clear_message(steps, message):
    with pytest.raises(ConfigError, match=message):
        spec(steps)


def test_unknown_study_names_the_known_ones():
    s = spec([{"name": "cluster", "kind": "notebook", "notebook": "c.ipynb"}])
    with pytest.raises(ConfigError, match="unknown study 'clustr'.*cluster"):
        s.step("clustr")


def test_step_state_is_fresh_only_for_the_same_key_and_unchanged_outputs(tmp_path):
    out = tmp_path / "out.txt"
    out.write_text("a")
    state = StepState(tmp_path / "state.json")
    hashes = hash_files([out], tmp_path)
    state.record("key1", hashes)
    assert state.is_fresh("key1", hash_files([out], tmp_path))
    assert not state.is_fresh("key2", hash_files([out], tmp_path))
    out.write_text("b")
    assert not state.is_fresh("key1", hash_files([out], tmp_path))


def test_scrub_removes_timings_and_absolute_paths(tmp_path):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00"}
    cell.metadata["papermill"] = {"start_time": "t", "end_time": "t", "duration": 1.0, "status": "completed"}
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text=f"{tmp_path}/src/a.py:1: Warning")]
    nb.cells.append(cell)
    nb.metadata["papermill"] = {"start_time": "t", "duration": 2.0, "input_path": str(tmp_path), "parameters": {}}
    out = scrub_notebook(nb, tmp_path)
    assert out.cells[0].metadata["papermill"] == {"status": "completed"}
    assert "execution" not in out.cells[0].metadata
    assert out.cells[0].outputs[0]["text"] == "./src/a.py:1: Warning"
    assert out.metadata["papermill"] == {"parameters": {}}


@pytest.mark.parametrize("argv, fragment", [
    (["run", "no_such_study"], "unknown study 'no_such_study'"),
    (["link", "--cohort", "no_such_cohort"], "synthetic/no_such_cohort/feeds: not found"),
    (["reproduce", "--cohort", "no_such_cohort"], "no such cohort"),
])
def test_user_mistakes_give_one_sentence_and_no_traceback(argv, fragment):
    out = subprocess.run([sys.executable, "-m", "registry_lib.cli", *argv], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert fragment in out.stderr
    assert "Traceback" not in out.stderr
