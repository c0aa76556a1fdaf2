"""Reading the lock file and the conda environment, to check that they pin the same versions.

``requirements.lock`` (uv pip compile, universal, with hashes) is the source of truth;
``environment.yml`` is generated from it by ``scripts/write_environment_yml.py``: the project's
direct dependencies come from conda-forge, everything else from pip, all at the lock's versions.

Example:
    >>> parse_lock_text("numpy==2.4.6 ; python_full_version < '3.12' \\\\\\n    --hash=sha256:ab\\n")
    {'numpy': '2.4.6'}
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.markers import Marker
from packaging.utils import canonicalize_name

# The interpreter environment.yml targets (conda-forge python=3.11 on Linux).
CONDA_MARKER_ENV = {"python_version": "3.11", "python_full_version": "3.11.9", "sys_platform": "linux",
                    "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
                    "implementation_name": "cpython", "platform_python_implementation": "CPython"}

# PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {"duckdb": "python-duckdb"}

_LINE = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?\s*$")


def parse_lock_text(text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """``{canonical name: version}`` for the lock entries whose markers hold in ``env``.

    Example:
        >>> lock = ["pandas==2.3.3 " + chr(92), "    --hash=sha256:00",
        ...         "PyYAML==6.0.2 ; python_version >= '3.8'"]
        >>> parse_lock_text(chr(10).join(lock))
        {'pandas': '2.3.3', 'pyyaml': '6.0.2'}
    """
    env = env or CONDA_MARKER_ENV
    pins: dict[str, str] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        name, version, marker = m.groups()
        if marker and not Marker(marker).evaluate(env):
            continue
        pins[canonicalize_name(name.split("[")[0])] = version
    return pins


def parse_lock(path: Path) -> dict[str, str]:
    """``{canonical PyPI name: version}`` of a lock file, for Python 3.11 on Linux.

    Example:
        >>> parse_lock("requirements.lock")["pandas"].startswith("2.")
        True
    """
    return parse_lock_text(Path(path).read_text())


def parse_environment(path: Path) -> dict[str, str]:
    """``{canonical PyPI name: version}`` pinned in environment.yml (conda and pip parts).

    Example:
        >>> parse_environment("environment.yml") == parse_lock("requirements.lock")
        True
    """
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    reverse = {v: k for k, v in CONDA_NAMES.items()}
    pins: dict[str, str] = {}
    for dep in data.get("dependencies", []):
        if isinstance(dep, dict):
            for item in dep.get("pip", []):
                if "==" in item:
                    name, version = item.split("==", 1)
                    pins[canonicalize_name(name)] = version.strip()
        elif "=" in dep:
            name, version = dep.split("=", 1)
            name = reverse.get(name.strip(), name.strip())
            if name not in {"python", "pip"}:
                pins[canonicalize_name(name)] = version.lstrip("=").strip()
    return pins
