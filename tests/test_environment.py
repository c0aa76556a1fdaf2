"""The pinned environment: lock file, environment.yml and the installed packages agree."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from registry_lib.lockfile import parse_environment, parse_lock, parse_lock_text

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_pins_the_lock_versions():
    lock = parse_lock(ROOT / "requirements.lock")
    env = parse_environment(ROOT / "environment.yml")
    assert env == lock, {k: (lock.get(k), env.get(k)) for k in set(lock) | set(env) if lock.get(k) != env.get(k)}


def test_environment_yml_takes_direct_dependencies_from_conda_forge():
    text = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in text and "python=3.11" in text
    for dep in ("pandas", "statsmodels", "lifelines", "papermill", "jupyterlab", "nbval", "faker", "splink"):
        assert f"  - {dep}=" in text, dep


def test_every_lock_entry_is_pinned_with_hashes():
    blocks = (ROOT / "requirements.lock").read_text().split("\n")
    pinned = [i for i, line in enumerate(blocks) if "==" in line and not line.startswith(" ") and not line.startswith("#")]
    assert len(pinned) > 50
    for i in pinned:
        assert blocks[i].rstrip().endswith("\\") and "--hash=sha256:" in blocks[i + 1], blocks[i]


def test_project_dependencies_are_all_in_the_lock():
    lock = parse_lock(ROOT / "requirements.lock")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for raw in [*project["dependencies"], *(r for reqs in extras.values() for r in reqs)]:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        assert name in lock, name
        assert req.specifier.contains(lock[name], prereleases=True), (name, lock[name], str(req.specifier))


# Needed at run time without being imported: the kernel the pipeline runs the notebooks on.
# ipykernel runs the notebooks; vl-convert-python is the engine altair saves static charts with.
RUNTIME_NOT_IMPORTED = {"ipykernel", "vl-convert-python"}
# Imported by the library only when the user asks for it (the Spark backend, the browser check).
OPTIONAL_IMPORTS = {"pyspark": "spark", "playwright": "test"}


def _library_imports() -> set[str]:
    import ast

    names = set()
    for path in (ROOT / "src" / "registry_lib").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "registry_lib"}


def test_runtime_dependencies_are_what_the_library_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    dists = metadata.packages_distributions()
    imported = {canonicalize_name(dists[name][0]) for name in _library_imports()}
    assert runtime == (imported - set(OPTIONAL_IMPORTS)) | RUNTIME_NOT_IMPORTED
    extras = {name: {canonicalize_name(Requirement(r).name) for r in reqs}
              for name, reqs in project["optional-dependencies"].items()}
    assert set(extras) >= {"test", "lab", "spark", "docs"}
    for dist, extra in OPTIONAL_IMPORTS.items():
        assert dist in extras[extra], (dist, extra)
    assert {"pytest", "ruff", "hypothesis", "nbval", "import-linter"} <= extras["test"]
    assert "jupyterlab" in extras["lab"] and "pdoc" in extras["docs"]
    assert not runtime & {"pytest", "ruff", "hypothesis", "nbval", "pyspark", "jupyterlab"}


def test_installed_versions_match_the_lock():
    lock = parse_lock_text((ROOT / "requirements.lock").read_text(), env=_this_interpreter())
    mismatched = {}
    for name, version in lock.items():
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            got = None
        if got != version:
            mismatched[name] = (version, got)
    assert not mismatched


def test_pins_are_mutually_compatible():
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_lifelines_and_pandas_pins_are_compatible():
    # Some lifelines releases cap pandas below 3: the lock must satisfy lifelines' own requirement.
    lock = parse_lock(ROOT / "requirements.lock")
    requires = [Requirement(r) for r in metadata.requires("lifelines") or []]
    pandas_req = next(r for r in requires if canonicalize_name(r.name) == "pandas")
    assert pandas_req.specifier.contains(lock["pandas"])


def _this_interpreter() -> dict[str, str]:
    import platform

    return {"python_version": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "python_full_version": platform.python_version(), "sys_platform": sys.platform,
            "platform_system": platform.system(), "platform_machine": platform.machine(),
            "os_name": "posix", "implementation_name": "cpython",
            "platform_python_implementation": "CPython"}
