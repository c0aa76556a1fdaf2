"""Content-hash caching of pipeline steps, like make or an OpenSAFELY project.yaml.

A step is skipped when its key (the hash of its code, its params and its upstream outputs) is
the one recorded after its last successful run *and* its outputs still have the recorded hashes.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> state = StepState(d / "s.json")
    >>> state.is_fresh("k1", {})
    False
    >>> state.record("k1", {}); state.is_fresh("k1", {})
    True
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from registry_lib.io import sha256_file, sha256_tree


def _label(path: Path, root: Path) -> str:
    """A path relative to the project root; a file outside it (a cohort config given with
    ``--config``) by its name only, so that no absolute path enters a manifest."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return f"(outside the project)/{path.name}"


def hash_files(paths: list[Path], root: Path) -> dict[str, str]:
    """``{path relative to root: sha256}`` for files and every file under folders.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "a.txt").write_text("x")
        ...     hash_files([Path(d) / "a.txt"], Path(d))
        {'a.txt': '2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881'}
    """
    out: dict[str, str] = {}
    for path in paths:
        if path.is_dir():
            for rel, digest in sha256_tree(path).items():
                out[_label(path / rel, root)] = digest
        elif path.exists():
            out[_label(path, root)] = sha256_file(path)
    return dict(sorted(out.items()))


def code_hash(package_dir: Path) -> str:
    """One sha256 over every source and data file of the installed library.

    Example:
        >>> import registry_lib
        >>> len(code_hash(Path(registry_lib.__file__).parent))
        64
    """
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".csv", ".yaml", ".json", ".txt"} and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(package_dir)).encode())
            h.update(sha256_file(path).encode())
    return h.hexdigest()


def combine(*parts: object) -> str:
    """A sha256 of JSON-serialised parts.

    Example:
        >>> combine("link", {"threshold": 0.95}) == combine("link", {"threshold": 0.95})
        True
        >>> combine("link", {"threshold": 0.95}) == combine("link", {"threshold": 0.9})
        False
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class StepState:
    """The record of a step's last successful run: its key and its output hashes.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     state = StepState(Path(d) / "link.json")
        ...     state.record("key-1", {"registry/tumour.parquet": "ab12"})
        ...     state.is_fresh("key-1", {"registry/tumour.parquet": "ab12"}), state.is_fresh("key-2", {})
        (True, False)
    """

    def __init__(self, path: Path):
        self.path = path

    def _load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def is_fresh(self, key: str, outputs_now: dict[str, str]) -> bool:
        data = self._load()
        return bool(data) and data.get("key") == key and data.get("outputs") == outputs_now

    def record(self, key: str, outputs: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"key": key, "outputs": outputs}, sort_keys=True, indent=1))

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)

    @property
    def _run_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".run.json")

    def record_run(self, finished: str, seconds: float) -> None:
        """When the run that made the current outputs finished, and how long it took."""
        self._run_path.parent.mkdir(parents=True, exist_ok=True)
        self._run_path.write_text(json.dumps({"finished": finished, "seconds": seconds}, sort_keys=True))

    def last_run(self) -> dict:
        """``{"finished", "seconds"}`` of the run that made the current outputs (``{}`` if unknown)."""
        try:
            return json.loads(self._run_path.read_text())
        except (OSError, ValueError):
            return {}
