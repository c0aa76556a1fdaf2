"""Where things live in a project checkout.

Example:
    >>> from registry_lib.paths import project_root, cohort_dir
    >>> (project_root() / "pyproject.toml").exists()
    True
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from registry_lib.errors import ConfigError, RegistryLabError

#: What a cohort, step, study or policy name may look like: it becomes a folder or file name.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def project_root(start: Path | str | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``pyproject.toml``.

    ``REGISTRY_LAB_ROOT`` overrides the search, so notebooks run from anywhere.

    Example:
        >>> (project_root() / "params").is_dir()
        True
    """
    env = os.environ.get("REGISTRY_LAB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "params").is_dir():
            return folder
    raise RegistryLabError(f"{here}: not inside a Registry Lab checkout (no pyproject.toml and params/ above it)")


def validate_name(name: str, what: str) -> str:
    """``name`` unchanged if it is a safe name (letters, digits, ``_``, ``-``; not starting with
    ``_`` or ``-``), else a ConfigError in one sentence naming ``what`` it is.

    Example:
        >>> validate_name("small", "cohort")
        'small'
        >>> validate_name("../x", "cohort")
        Traceback (most recent call last):
        ...
        registry_lib.errors.ConfigError: cohort name '../x' is not allowed: use letters, digits, _ and - only, starting with a letter or digit
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > 100:
        raise ConfigError(f"{what} name {name!r} is not allowed: use letters, digits, _ and - only, "
                          "starting with a letter or digit")
    return name


def inside(path: Path | str, root: Path | str, what: str = "output") -> Path:
    """``path`` resolved, if it lies inside ``root`` (resolved); else a RegistryLabError.

    Every path the project writes goes through this before anything is written.

    Example:
        >>> inside("/tmp/p/a/b", "/tmp/p")
        PosixPath('/tmp/p/a/b')
        >>> inside("/tmp/p/../q", "/tmp/p")
        Traceback (most recent call last):
        ...
        registry_lib.errors.RegistryLabError: /tmp/q: this output lies outside /tmp/p; refused before writing
    """
    resolved = Path(path).resolve()
    base = Path(root).resolve()
    if resolved != base and base not in resolved.parents:
        raise RegistryLabError(f"{resolved}: this {what} lies outside {base}; refused before writing")
    return resolved


def cohort_dir(name: str, root: Path | None = None) -> Path:
    """``synthetic/<name>`` under the project root (``name`` must be a valid name).

    Example:
        >>> cohort_dir("small", Path("/project")).as_posix()
        '/project/synthetic/small'
    """
    validate_name(name, "cohort")
    base = (root or project_root()) / "synthetic"
    return inside(base / name, base, "cohort folder")


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
            "reference": f"registry-lab synth --config params/cohort/{name}.yaml",
            "truth": f"registry-lab synth --config params/cohort/{name}.yaml",
            "registry": f"registry-lab link --cohort {name}",
        }
        hint = makers.get(stage, f"registry-lab release --cohort {name} --policy <policy>")
        raise RegistryLabError(f"synthetic/{name}/{stage}: not found; make it with `{hint}`")
    return path


def cohort_folder_name(name: str, seed: int | None = None, *, config_seed: int | None = None) -> str:
    """The folder name of a cohort under ``synthetic/``: the config's ``name``, plus
    ``-seed<N>`` when ``seed`` overrides the config's own seed.

    Example:
        >>> cohort_folder_name("small"), cohort_folder_name("small", 7, config_seed=20240607)
        ('small', 'small-seed7')
    """
    validate_name(name, "cohort")
    if seed is None or seed == config_seed:
        return name
    return f"{name}-seed{int(seed)}"
