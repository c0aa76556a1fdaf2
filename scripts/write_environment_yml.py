"""Write environment.yml from requirements.lock (run by `make lock`).

The project's direct dependencies (runtime and every extra: test, lab, spark, docs) come from
conda-forge, every other locked package from pip,
all pinned to the lock's versions for Python 3.11 on Linux.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from registry_lib.lockfile import CONDA_NAMES, parse_lock

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    pins = parse_lock(ROOT / "requirements.lock")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in project.get("optional-dependencies", {}).values() for r in extra)]
    direct = sorted({canonicalize_name(Requirement(r).name) for r in requirements})
    lines = [
        "# Generated from requirements.lock by scripts/write_environment_yml.py (make lock).",
        "# Same versions as the lock; tests/test_environment.py checks that they agree.",
        "name: registry-lab",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - pip",
    ]
    lines += [f"  - {CONDA_NAMES.get(n, n)}={pins[n]}" for n in direct]
    lines += ["  - pip:"]
    lines += [f"      - {n}=={v}" for n, v in sorted(pins.items()) if n not in direct]
    lines += ["      - -e ."]
    (ROOT / "environment.yml").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
