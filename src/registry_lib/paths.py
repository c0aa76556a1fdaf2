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
    """``synthetic/<name>`` under the project root."""
    return (root or project_root()) / "synthetic" / name


def require_cohort(name: str, stage: str = "feeds", root: Path | None = None) -> Path:
    """The cohort folder, or a clear error naming the command that makes the missing stage."""
    path = cohort_dir(name, root)
    if not (path / stage).is_dir():
        makers = {
            "feeds": f"registry-lab synth --config params/cohort/{name}.yaml",
            "registry": f"registry-lab link --cohort {name}",
        }
        hint = makers.get(stage, f"registry-lab release --cohort {name} --policy <policy>")
        raise RegistryLabError(f"synthetic/{name}/{stage}: not found; make it with `{hint}`")
    return path


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"


def validate_name(name: str, what: str) -> str:
    """``name`` if it is safe as one path component (letters, digits, ``_`` and ``-``, not
    starting with ``_`` or ``-``); otherwise a :class:`RegistryLabError` naming ``what``.

    Example:
        >>> validate_name("small", "cohort")
        'small'
    """
    import re

    if not isinstance(name, str) or not re.fullmatch(NAME_PATTERN, name):
        raise RegistryLabError(f"{what} {name!r}: use only letters, digits, '_' and '-' "
                               "(starting with a letter or digit)")
    return name


def cohort_folder_name(name: str, seed: int | None = None, *, config_seed: int | None = None) -> str:
    """The folder name of a cohort under ``synthetic/``: the config's ``name``, plus
    ``-seed<N>`` when ``seed`` overrides the config's own seed.

    Example:
        >>> cohort_folder_name("small"), cohort_folder_name("small", 7, config_seed=20240607)
        ('small', 'small-seed7')
    """
    validate_name(name, "cohort name")
    if seed is None or seed == config_seed:
        return name
    return f"{name}-seed{int(seed)}"
