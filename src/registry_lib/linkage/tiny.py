"""The tiny cohort, generated and linked once per process: data for examples that need a registry.

:func:`tiny_cohort` runs the real generator on ``params/cohort/tiny.yaml`` and the real linkage
on its feeds, in a temporary folder removed at exit, and returns that folder. Later calls in the
same process return the same folder, so the examples of the release and study modules share one
run of a few seconds instead of each generating and linking again. It is the same data as
``registry-lab synth --config params/cohort/tiny.yaml`` followed by ``registry-lab link --cohort
tiny``.

Example:
    >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
    >>> cohort = tiny_cohort()
    >>> {"feeds", "reference", "registry", "truth"} <= {p.name for p in cohort.iterdir()}
    True
    >>> tiny_cohort() == cohort
    True
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from registry_lib.paths import project_root

_COHORTS: dict[Path, Path] = {}


def tiny_cohort(config: Path | str | None = None) -> Path:
    """The folder of the tiny cohort (or of ``config``), generated and linked once per process.

    Args:
        config: a cohort config; default ``params/cohort/tiny.yaml`` of the project.

    Returns:
        A temporary cohort folder with ``feeds/``, ``reference/``, ``truth/`` and ``registry/``
        (removed when the process exits). Releases written into it are shared by later callers.

    Example:
        >>> import os; _ = os.environ.setdefault("REGISTRY_LAB_KEY", "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        >>> (tiny_cohort() / "registry" / "tumour.parquet").exists()
        True
    """
    from registry_lib import synth
    from registry_lib.linkage.build import run as link

    path = Path(config) if config else project_root() / "params" / "cohort" / "tiny.yaml"
    key = path.resolve()
    if key not in _COHORTS or not (_COHORTS[key] / "registry").exists():
        parent = Path(tempfile.mkdtemp(prefix="registry-lab-tiny-"))
        atexit.register(shutil.rmtree, parent, ignore_errors=True)
        cohort = synth.run(path, out=parent / path.stem)
        link(cohort, quiet=True)
        _COHORTS[key] = cohort
    return _COHORTS[key]
