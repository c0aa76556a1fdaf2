"""One run at a time: a lock file per project, and the leftovers of killed runs removed.

``registry-lab synth``, ``link``, ``release``, ``run`` and ``reproduce`` hold
``.registry-lab/run.lock`` (an OS lock, released by the kernel when the process ends, however
it ends) for as long as they run. A second one started meanwhile waits up to
``REGISTRY_LAB_LOCK_WAIT`` seconds (default 0: it does not wait), saying once what it waits for,
then refuses with one sentence naming the running process. On taking the lock, temporary folders of runs that were killed
(``.NAME.tmp-PID``, ``.NAME.old-PID`` of processes no longer running) are removed.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with project_lock(root, "demo"):
    ...     (root / ".registry-lab" / "run.lock").exists()
    True
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from registry_lib.errors import RegistryLabError
from registry_lib.io import remove_leftovers

LOCK_NAME = "run.lock"
_held: dict[str, int] = {}  # lock path -> depth (re-entrant within one process)


def lock_path(root: Path) -> Path:
    """``.registry-lab/run.lock`` under the project root.

    Example:
        >>> lock_path(Path("/project")).as_posix()
        '/project/.registry-lab/run.lock'
    """
    return Path(root) / ".registry-lab" / LOCK_NAME


def lock_wait_seconds() -> float:
    """How long a second run waits for the lock: ``REGISTRY_LAB_LOCK_WAIT`` seconds, default 0.

    Example:
        >>> import os; os.environ["REGISTRY_LAB_LOCK_WAIT"] = "30"
        >>> lock_wait_seconds()
        30.0
        >>> del os.environ["REGISTRY_LAB_LOCK_WAIT"]; lock_wait_seconds()
        0.0
    """
    raw = os.environ.get("REGISTRY_LAB_LOCK_WAIT", "0").strip() or "0"
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 1e7:
        raise RegistryLabError(f"REGISTRY_LAB_LOCK_WAIT={raw!r}: expected a number of seconds (0 or more)")
    return seconds


def _holder(fh) -> dict:
    fh.seek(0)
    try:
        return json.loads(fh.read() or "{}")
    except ValueError:
        return {}


def clean_leftovers(root: Path) -> list[Path]:
    """Remove what killed runs left under ``synthetic/`` and ``reports/`` (call with the lock held).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     clean_leftovers(Path(d))
        []
    """
    root = Path(root)
    removed = remove_leftovers(root / "synthetic") + remove_leftovers(root / "reports")
    synthetic = root / "synthetic"
    if synthetic.is_dir():
        for cohort in sorted(p for p in synthetic.iterdir() if p.is_dir() and not p.name.startswith(".")):
            removed += remove_leftovers(cohort) + remove_leftovers(cohort / "releases")
    return removed


@contextlib.contextmanager
def project_lock(root: Path, what: str) -> Iterator[None]:
    """Hold the project's run lock while the block runs, or refuse naming the process holding it.

    Re-entrant within one process (``run`` calls the pipeline, which takes it again).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     with project_lock(Path(d), "demo"):
        ...         lock_path(Path(d)).exists()
        True
    """
    path = lock_path(root)
    key = str(path.resolve()) if path.exists() else str(path)
    if _held.get(key):
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the lock's lifetime
    try:
        deadline = time.monotonic() + lock_wait_seconds()
        said = got = False
        while not got:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                got = True
            except BlockingIOError:
                holder = _holder(fh)
                if time.monotonic() >= deadline:
                    break
                if not said:
                    print(f"waiting for another registry-lab process (pid {holder.get('pid', '?')}, "
                          f"`{holder.get('what', '?')}`) to finish", file=sys.stderr)
                    said = True
                time.sleep(0.5)
        if not got:
            raise RegistryLabError(
                f"{path.relative_to(root) if path.is_relative_to(root) else path}: another registry-lab "
                f"process (pid {holder.get('pid', '?')}, `{holder.get('what', '?')}`, started "
                f"{holder.get('started', '?')}) is running in this project; wait for it to finish"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "what": what,
                             "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}))
        fh.flush()
        key = str(path.resolve())
        _held[key] = 1
        try:
            clean_leftovers(Path(root))
            yield
        finally:
            _held.pop(key, None)
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()
