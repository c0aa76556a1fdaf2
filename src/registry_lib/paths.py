"""Where things live in a project checkout.

Example:
    >>> from registry_lib.paths import project_root, cohort_dir
    >>> (project_root() / "pyproject.toml").exists()
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from registry_lib.errors import RegistryLabError


def project_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``pyproject.toml``.

    ``REGISTRY_LAB_ROOT`` overrides the search, so notebooks run from anywhere.
    """
    env = os.environ.get("REGISTRY_LAB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "params").is_dir():
            return folder
    raise RegistryLabError(f"{here}: not inside a Registry Lab checkout (no pyproject.toml and params/ above it)")


def cohort_dir(name: str, root: Path | None = None) -> Path:
    """``synthetic/<name>`` under the project root.

    Example:
        >>> cohort_dir("tiny", root=Path("/project")).as_posix()
        '/project/synthetic/tiny'
    """
    return (root or project_root()) / "synthetic" / name


def require_cohort(name: str, stage: str = "feeds", root: Path | None = None) -> Path:
    """The cohort folder, or a clear error naming the command that makes the missing stage.

    Example:
        >>> require_cohort("nowhere", root=Path("/project"))
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: synthetic/nowhere/feeds: not found; make it with `registry-lab synth --config params/cohort/nowhere.yaml`
    """
    path = cohort_dir(name, root)
    if not (path / stage).is_dir():
        makers = {
            "feeds": f"registry-lab synth --config params/cohort/{name}.yaml",
            "registry": f"registry-lab link --cohort {name}",
        }
        hint = makers.get(stage, f"registry-lab release --cohort {name} --policy <policy>")
        raise RegistryLabError(f"synthetic/{name}/{stage}: not found; make it with `{hint}`")
    return path
