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

import numpy as np
import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.io import read_parquet, write_json
from registry_lib.paths import cohort_dir, project_root, require_cohort  # noqa: F401  (cohort_dir: used by the examples)


def study_output_dir(output_dir: str | Path) -> Path:
    """The study's output folder (relative paths are taken from the project root), created.

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     out = study_output_dir("reports/cluster_investigation")
        ...     out.relative_to(project_root()).as_posix(), out.is_dir()
        ('reports/cluster_investigation', True)
    """
    path = Path(output_dir)
    if not path.is_absolute():
        path = project_root() / path
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_results(results: dict[str, Any], output_dir: str | Path, *, headline: str | None = None) -> Path:
    """Write ``results.json`` (sorted keys, floats as given) into the study's output folder.

    ``headline`` is the one-sentence result the reports index shows for the study.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = write_results({"sir": np.float64(1.52), "ci": (1.1, 2.05), "trend_p": float("nan")},
        ...                       d, headline="More bladder cancer within 2 km of the works.")
        ...     print(p.read_text(), end="")
        {
          "ci": [
            1.1,
            2.05
          ],
          "headline": "More bladder cancer within 2 km of the works.",
          "sir": 1.52,
          "trend_p": null
        }
    """
    if headline is not None:
        results = {**results, "headline": headline}
    return write_json(_clean(results), study_output_dir(output_dir) / "results.json")


def read_results(output_dir: str | Path) -> dict[str, Any]:
    """Read a study's ``results.json``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = write_results({"n_patients": np.int64(3195), "net_survival_5y": 0.584}, d)
        ...     read_results(d)
        {'n_patients': 3195, 'net_survival_5y': 0.584}
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
        >>> from matplotlib.figure import Figure
        >>> fig = Figure(figsize=(3, 2))
        >>> _ = fig.subplots().plot([2019, 2020, 2021], [310, 280, 330])
        >>> with tempfile.TemporaryDirectory() as d:
        ...     p = save_figure(fig, d, "incidence_trend")
        ...     first = p.read_bytes()
        ...     same = save_figure(fig, d, "incidence_trend").read_bytes() == first
        ...     p.relative_to(d).as_posix(), first[1:4], b"matplotlib" in first, same
        ('figures/incidence_trend.png', b'PNG', False, True)
    """
    folder = study_output_dir(output_dir) / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def read_reference(cohort: str, name: str) -> pd.DataFrame:
    """A public reference table of a cohort (areas, population, life_table, …).

    Example:
        >>> from registry_lib.io import write_parquet
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     areas = pd.DataFrame({"area_id": ["E01000001", "E01000002"], "population": [1520, 1710]})
        ...     _ = write_parquet(areas, cohort_dir("demo") / "reference" / "areas.parquet")
        ...     print(read_reference("demo", "areas").to_string())
             area_id  population
        0  E01000001        1520
        1  E01000002        1710
    """
    return read_parquet(require_cohort(cohort, "reference") / "reference" / f"{name}.parquet")


def read_truth(cohort: str, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Truth, for clearly marked validation ("truth check") cells only: studies never use it.

    ``columns``: read only these (the national truth's patient table, names and all, is GBs).

    Example:
        >>> from registry_lib.io import write_parquet
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     truth = pd.DataFrame({"person_id": [1, 2], "stage": ["II", "IV"]})
        ...     _ = write_parquet(truth, cohort_dir("demo") / "truth" / "tumours.parquet")
        ...     print(read_truth("demo", "tumours").to_string())
           person_id stage
        0          1    II
        1          2    IV
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     _ = write_parquet(truth, cohort_dir("demo") / "truth" / "tumours.parquet")
        ...     read_truth("demo", "tumours", columns=["stage"]).columns.tolist()
        ['stage']
    """
    return read_parquet(require_cohort(cohort, "truth") / "truth" / f"{name}.parquet", columns=columns)


def read_effects(cohort: str) -> dict[str, Any]:
    """The injected effects of a cohort (``truth/effects.json``), for truth-check cells.

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     _ = write_json({"point_source": {"sir_within_2km": 1.5}}, cohort_dir("demo") / "truth" / "effects.json")
        ...     read_effects("demo")["point_source"]
        {'sir_within_2km': 1.5}
    """
    return json.loads((require_cohort(cohort, "truth") / "truth" / "effects.json").read_text())


def setup_notebook() -> None:
    """Quiet, reproducible notebook defaults: no warnings (they print absolute paths), a fixed
    figure size and resolution, and every DataFrame shown through the presentation layer
    (:func:`registry_lib.reporting.tables.table_html`).

    Example:
        >>> import warnings
        >>> import matplotlib as mpl
        >>> undo = pd.option_context("display.precision", 6, "display.max_rows", 60, "display.width", 80)
        >>> with undo, mpl.rc_context(), warnings.catch_warnings():   # restored after the example
        ...     setup_notebook()
        ...     pd.get_option("display.precision"), mpl.rcParams["figure.figsize"], warnings.filters[0][0]
        (3, [8.0, 4.5], 'ignore')
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
    from registry_lib.reporting.tables import register_table_formatter

    register_table_formatter()


def read_cohort_info(cohort: str) -> dict[str, Any]:
    """The cohort's ``cohort.json``: the config it was generated from, its seed and sizes.

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     (cohort_dir("demo") / "reference").mkdir(parents=True)   # a generated cohort has reference/
        ...     info = {"config": {"end_of_follow_up": "2024-12-31"}, "seed": 7}
        ...     _ = write_json(info, cohort_dir("demo") / "cohort.json")
        ...     read_cohort_info("demo")
        {'config': {'end_of_follow_up': '2024-12-31'}, 'seed': 7}
    """
    return json.loads((require_cohort(cohort, "reference") / "cohort.json").read_text())


def read_params(relative: str) -> dict[str, Any]:
    """A params file by its path relative to ``params/`` (e.g. ``epidemiology/incidence.yaml``).

    Example:
        >>> import os, tempfile
        >>> from unittest import mock
        >>> with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, {"REGISTRY_LAB_ROOT": root}):
        ...     p = Path(root) / "params" / "epidemiology" / "incidence.yaml"
        ...     p.parent.mkdir(parents=True)
        ...     _ = p.write_text("sites: [C50, C61]\\nstandard_population: esp2013\\n")
        ...     read_params("epidemiology/incidence.yaml")
        {'sites': ['C50', 'C61'], 'standard_population': 'esp2013'}
    """
    from registry_lib.config import load_yaml

    return load_yaml(project_root() / "params" / relative)


class NotEstimable(RegistryLabError):
    """A study section cannot be estimated on this cohort (the message says why, in one sentence).

    Example:
        >>> issubclass(NotEstimable, RegistryLabError)   # a section records it and the study goes on
        True
        >>> raise NotEstimable("no deaths after diagnosis, so no hazard ratio")
        Traceback (most recent call last):
        ...
        registry_lib.reporting.NotEstimable: no deaths after diagnosis, so no hazard ratio
    """


# Failures that mean "this cohort cannot support this section", not a bug: user-facing errors,
# and the numerical errors of fitting models to empty or degenerate data.
_ESTIMATION_ERRORS: tuple[type[BaseException], ...] = (RegistryLabError, ZeroDivisionError, np.linalg.LinAlgError)


def _estimation_errors() -> tuple[type[BaseException], ...]:
    extra: list[type[BaseException]] = []
    try:
        from lifelines.exceptions import ConvergenceError

        extra.append(ConvergenceError)
    except ImportError:  # pragma: no cover - lifelines is a dependency
        pass
    try:
        from statsmodels.tools.sm_exceptions import PerfectSeparationError

        extra.append(PerfectSeparationError)
    except ImportError:  # pragma: no cover
        pass
    return _ESTIMATION_ERRORS + tuple(extra)


class StudyResults:
    """A study's ``results.json``, written section by section as each result exists.

    ``with results.section(name):`` runs one section of a study. If the cohort cannot support it
    (a :class:`RegistryLabError` such as :class:`NotEstimable`, or a model that cannot be fitted
    to empty or degenerate data), the section records ``{"not_estimable": reason}``, prints one
    sentence saying so, and the study goes on; a later section that uses what a failed one
    would have made is recorded as not estimable too, naming it. Programming errors still raise.
    ``record(key, value)`` stores a result and rewrites ``results.json`` at once.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     study = StudyResults(d, cohort="small")
        ...     with study.section("late_effect"):
        ...         raise NotEstimable("no women in the late-effect cohort")
        ...     read_results(d)["late_effect"]
        section late_effect: not estimable on this cohort: no women in the late-effect cohort
        {'not_estimable': 'no women in the late-effect cohort'}
    """

    def __init__(self, output_dir: str | Path, **header: Any):
        self.output_dir = output_dir
        self.results: dict[str, Any] = dict(header)
        self.failed: dict[str, str] = {}
        write_results(self.results, output_dir)

    def record(self, key: str, value: Any) -> Any:
        """Store ``results[key] = value`` and write ``results.json`` now; returns ``value``."""
        self.results[key] = value
        write_results(self.results, self.output_dir)
        return value

    def not_estimable(self, key: str, reason: str) -> None:
        """Record that section ``key`` cannot be estimated, and say so in one sentence."""
        reason = " ".join(str(reason).split()) or "no reason given"
        self.failed[key] = reason
        self.record(key, {"not_estimable": reason})
        import sys

        sys.stdout.write(f"section {key}: not estimable on this cohort: {reason}\n")
        sys.stdout.flush()

    def estimable(self, *keys: str) -> bool:
        """True when none of the sections ``keys`` failed."""
        return not any(k in self.failed for k in keys)

    def section(self, key: str) -> _Section:
        """A context manager running one section; see the class docstring."""
        return _Section(self, key)

    def record_from(self, key: str, make: Any) -> Any:
        """``record(key, make())`` as a section of its own: not estimable if ``make`` fails so."""
        with self.section(key):
            return self.record(key, make())
        return None


class _Section:
    def __init__(self, study: StudyResults, key: str):
        self.study, self.key = study, key

    def __enter__(self) -> _Section:
        return self

    def __exit__(self, etype: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None:
            return False
        if self.key in self.study.failed and isinstance(exc, (NameError, KeyError, *_estimation_errors())):
            return True  # the section already said why it is not estimable
        if isinstance(exc, (NameError, KeyError, TypeError)) and self.study.failed:
            names = ", ".join(sorted(self.study.failed))
            self.study.not_estimable(self.key, f"it needs the result of section(s) {names}, not estimable")
            return True
        if isinstance(exc, _estimation_errors()):
            self.study.not_estimable(self.key, str(exc) or type(exc).__name__)
            return True
        return False


from registry_lib.reporting.prose import (  # noqa: E402  (the presentation layer, re-exported)
    conclude,
    count_text,
    interval_text,
    markdown_text,
    p_text,
    percent_text,
    say,
)
from registry_lib.reporting.tables import (  # noqa: E402
    add_suppressed_flag,
    captioned,
    format_count,
    format_p,
    format_table,
    label,
    read_published_table,
    show_table,
    table_html,
)

__all__ = [
    "NotEstimable", "StudyResults", "add_suppressed_flag", "captioned", "read_published_table", "conclude", "count_text", "format_count", "format_p", "format_table",
    "interval_text", "label", "markdown_text", "p_text", "percent_text", "read_cohort_info",
    "read_effects", "read_params", "read_reference", "read_results", "read_truth", "save_figure",
    "say", "setup_notebook", "show_table", "study_output_dir", "table_html", "write_results",
]
