"""Shared fixtures: a fixed project key, and one small-cohort pipeline run shared by the
pipeline, notebook and disclosure tests (they are grouped onto one xdist worker)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Tests run on two xdist workers; a few use the real checkout's CLI, so a second run waits for
# the project's run lock instead of being refused (the refusal itself is tested with 0).
os.environ.setdefault("REGISTRY_LAB_LOCK_WAIT", "900")
TEST_KEY = "9abfe9ea9da03dfed9ff1d0976926475fa1eaf18df7f79039889311a25108c38"


@pytest.fixture(autouse=True)
def _project_key(monkeypatch):
    """Every test runs with a fixed project key unless it removes it on purpose."""
    monkeypatch.setenv("REGISTRY_LAB_KEY", TEST_KEY)


def make_project_copy(dest: Path) -> Path:
    """A throw-away project folder (params, notebooks) that uses the installed library."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    for folder in ("params", "notebooks"):
        shutil.copytree(ROOT / folder, dest / folder, dirs_exist_ok=True)
    return dest


def registry_lab(root: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the ``registry-lab`` command in ``root`` as a user would."""
    env = {**os.environ, "REGISTRY_LAB_ROOT": str(root), "REGISTRY_LAB_KEY": TEST_KEY, "CI": "true"}
    out = subprocess.run([sys.executable, "-m", "registry_lib.cli", *args], cwd=root, env=env,
                         capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"registry-lab {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return out


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """``registry-lab reproduce --cohort small --force`` in a fresh project folder."""
    root = make_project_copy(tmp_path_factory.mktemp("reproduce_a"))
    registry_lab(root, "reproduce", "--cohort", "small", "--force")
    return root


@pytest.fixture(scope="session")
def small_run_b(tmp_path_factory) -> Path:
    """A second, independent run from scratch (for the determinism check and nbval)."""
    root = make_project_copy(tmp_path_factory.mktemp("reproduce_b"))
    registry_lab(root, "reproduce", "--cohort", "small", "--force")
    return root
