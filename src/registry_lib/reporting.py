"""What study notebooks call to read inputs and write their outputs.

A study notebook reads a release (never feeds or truth), and writes into its ``output_dir``:
``results.json`` (the key estimates), disclosure-controlled tables (through
``registry_lib.release``) and figures. Output is deterministic: sorted JSON, PNG figures
without timestamps, no absolute paths.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_results({"sir": 1.5}, d)
    ...     p.name
    'results.json'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from registry_lib.io import read_parquet, write_json
from registry_lib.paths import cohort_dir, project_root, require_cohort


def study_output_dir(output_dir: str | Path) -> Path:
    """The study's output folder (relative paths are taken from the project root), created.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     study_output_dir(Path(d) / "out" / "cohort_overview").is_dir()
        True
    """
    path = Path(output_dir)
    if not path.is_absolute():
        path = project_root() / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_results(results: dict[str, Any], output_dir: str | Path) -> Path:
    """Write ``results.json`` (sorted keys, floats as given) into the study's output folder.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     print(write_results({"n": 3, "sir": float("nan")}, d).read_text().split())
        ['{', '"n":', '3,', '"sir":', 'null', '}']
    """
    return write_json(_clean(results), study_output_dir(output_dir) / "results.json")


def read_results(output_dir: str | Path) -> dict[str, Any]:
    """Read a study's ``results.json``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = write_results({"sir": 1.5, "years": (2019, 2020)}, d)
        ...     read_results(d)
        {'sir': 1.5, 'years': [2019, 2020]}
    """
    return json.loads((study_output_dir(output_dir) / "results.json").read_text())


def _clean(value: Any) -> Any:
    """Make numpy scalars, NaN and tuples JSON-friendly (NaN becomes null)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def save_figure(fig: Any, output_dir: str | Path, name: str, *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``figures/<name>.png`` with no timestamp metadata.

    Example:
        >>> import tempfile
        >>> import matplotlib
        >>> matplotlib.use("Agg")
        >>> import matplotlib.pyplot as plt
        >>> fig, ax = plt.subplots()
        >>> _ = ax.plot([1, 2], [3, 4])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = save_figure(fig, d, "trend")
        ...     path.relative_to(d).as_posix(), path.stat().st_size > 0
        ('figures/trend.png', True)
        >>> plt.close(fig)
    """
    folder = study_output_dir(output_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def read_reference(cohort: str, name: str) -> pd.DataFrame:
    """A public reference table of a cohort (areas, population, life_table, …).

    Example:
        >>> import os, shutil, tempfile
        >>> from unittest import mock
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> root = Path(tempfile.mkdtemp())   # a project root whose synthetic/tiny is a copy of the tiny cohort
        >>> _ = shutil.copytree(tiny_cohort(), root / "synthetic" / "tiny", ignore=shutil.ignore_patterns("feeds", "releases"))
        >>> env = mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": str(root)})
        >>> with env:
        ...     areas = read_reference("tiny", "areas")
        >>> "area_id" in areas.columns, len(areas) > 0
        (True, True)
        >>> shutil.rmtree(root)
    """
    return read_parquet(require_cohort(cohort, "reference") / "reference" / f"{name}.parquet")


def read_truth(cohort: str, name: str) -> pd.DataFrame:
    """Truth, for clearly marked validation ("truth check") cells only: studies never use it.

    Example:
        >>> import os, shutil, tempfile
        >>> from unittest import mock
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> root = Path(tempfile.mkdtemp())   # a project root whose synthetic/tiny is a copy of the tiny cohort
        >>> _ = shutil.copytree(tiny_cohort(), root / "synthetic" / "tiny", ignore=shutil.ignore_patterns("feeds", "releases"))
        >>> env = mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": str(root)})
        >>> with env:
        ...     tumours = read_truth("tiny", "tumours")
        >>> len(tumours) > 0
        True
        >>> shutil.rmtree(root)
    """
    return read_parquet(require_cohort(cohort, "truth") / "truth" / f"{name}.parquet")


def read_effects(cohort: str) -> dict[str, Any]:
    """The injected effects of a cohort (``truth/effects.json``), for truth-check cells.

    Example:
        >>> import os, shutil, tempfile
        >>> from unittest import mock
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> root = Path(tempfile.mkdtemp())   # a project root whose synthetic/tiny is a copy of the tiny cohort
        >>> _ = shutil.copytree(tiny_cohort(), root / "synthetic" / "tiny", ignore=shutil.ignore_patterns("feeds", "releases"))
        >>> env = mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": str(root)})
        >>> with env:
        ...     effects = read_effects("tiny")
        >>> "cluster" in effects
        True
        >>> shutil.rmtree(root)
    """
    return json.loads((cohort_dir(cohort) / "truth" / "effects.json").read_text())


def setup_notebook() -> None:
    """Quiet, reproducible notebook defaults: no warnings (they print absolute paths),
    a fixed figure size and resolution, and rounded DataFrame display.

    Example:
        >>> setup_notebook()
        >>> pd.get_option("display.precision")
        3
        >>> pd.reset_option("display.precision")
    """
    import warnings

    import matplotlib as mpl

    warnings.filterwarnings("ignore")
    mpl.rcParams.update({"figure.figsize": (8, 4.5), "figure.dpi": 100, "savefig.dpi": 110,
                         "axes.spines.top": False, "axes.spines.right": False,
                         "svg.hashsalt": "registry-lab"})
    pd.set_option("display.precision", 3)
    pd.set_option("display.max_rows", 60)
    pd.set_option("display.width", 120)


def read_cohort_info(cohort: str) -> dict[str, Any]:
    """The cohort's ``cohort.json``: the config it was generated from, its seed and sizes.

    Example:
        >>> import os, shutil, tempfile
        >>> from unittest import mock
        >>> from registry_lib.linkage.tiny import tiny_cohort
        >>> _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> root = Path(tempfile.mkdtemp())   # a project root whose synthetic/tiny is a copy of the tiny cohort
        >>> _ = shutil.copytree(tiny_cohort(), root / "synthetic" / "tiny", ignore=shutil.ignore_patterns("feeds", "releases"))
        >>> env = mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": str(root)})
        >>> with env:
        ...     info = read_cohort_info("tiny")
        >>> info["config"]["name"], info["seed"]
        ('tiny', 20241207)
        >>> shutil.rmtree(root)
    """
    return json.loads((require_cohort(cohort, "reference") / "cohort.json").read_text())


def read_params(relative: str) -> dict[str, Any]:
    """A params file by its path relative to ``params/`` (e.g. ``epidemiology/incidence.yaml``).

    Example:
        >>> isinstance(read_params("cohort/tiny.yaml"), dict)
        True
    """
    from registry_lib.config import load_yaml

    return load_yaml(project_root() / "params" / relative)
