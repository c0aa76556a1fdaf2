"""The project key behind keyed hashes (pseudonyms, registration opt-out hashes).

The key is per project and never written to outputs or logs. It comes from, in order:
1. ``REGISTRY_LAB_KEY``: the key as 64 hex characters;
2. ``REGISTRY_LAB_KEY_FILE``: a file holding it;
3. ``.registry-lab/project.key`` under the project root (git-ignored).

With none of these there is no silent default: :func:`project_key` raises an error that says
how to make one (``registry-lab keygen``).

Example:
    >>> import os; os.environ["REGISTRY_LAB_KEY"] = "00" * 32
    >>> keyed_hash(pd.Series(["9434765919"]), purpose="demo").str.len().tolist()
    [64]
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pandas as pd

from registry_lib.errors import RegistryLabError
from registry_lib.paths import project_root

KEY_HELP = (
    "no project key is configured: run `registry-lab keygen` (writes .registry-lab/project.key, "
    "git-ignored) or set REGISTRY_LAB_KEY to 64 hex characters or REGISTRY_LAB_KEY_FILE to a key file"
)


def default_key_path(root: Path | None = None) -> Path:
    """Where ``registry-lab keygen`` writes the key.

    Example:
        >>> default_key_path(Path("/project")).as_posix()
        '/project/.registry-lab/project.key'
    """
    return (root or project_root()) / ".registry-lab" / "project.key"


def _parse(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise RegistryLabError(f"{where}: the project key must be 64 hex characters") from None
    if len(key) != 32:
        raise RegistryLabError(f"{where}: the project key must be 64 hex characters, not {len(text)}")
    return key


def project_key(root: Path | None = None) -> bytes:
    """The 32-byte project key, or a RegistryLabError saying how to make one.

    Example:
        >>> import os; os.environ["REGISTRY_LAB_KEY"] = "ab" * 32
        >>> project_key() == bytes.fromhex("ab" * 32)
        True
    """
    if os.environ.get("REGISTRY_LAB_KEY"):
        return _parse(os.environ["REGISTRY_LAB_KEY"], "REGISTRY_LAB_KEY")
    if os.environ.get("REGISTRY_LAB_KEY_FILE"):
        path = Path(os.environ["REGISTRY_LAB_KEY_FILE"])
        if not path.exists():
            raise RegistryLabError(f"REGISTRY_LAB_KEY_FILE: {path} does not exist")
        return _parse(path.read_text(), str(path))
    path = default_key_path(root)
    if path.exists():
        return _parse(path.read_text(), str(path.name))
    raise RegistryLabError(KEY_HELP)


def keygen(root: Path | None = None, *, overwrite: bool = False) -> Path:
    """Write a new random key to ``.registry-lab/project.key`` (mode 600) and return its path.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     len(keygen(Path(d)).read_text().strip())
        64
    """
    path = default_key_path(root)
    if path.exists() and not overwrite:
        raise RegistryLabError(f"{path.name}: a project key exists already; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


def keyed_hash(values: pd.Series, *, purpose: str, key: bytes | None = None) -> pd.Series:
    """HMAC-SHA256 (hex) of each value under the project key, separated by ``purpose``.

    Missing values stay missing. The same key and purpose give the same hash; a different key
    gives unlinkable hashes. One HMAC per distinct value (hashing is not vectorisable, so it is
    done once per unique value and mapped back).

    Example:
        >>> h = keyed_hash(pd.Series(["9434765919", None]), purpose="research/nhs_number",
        ...                key=b"k" * 32)
        >>> len(h[0]), h.isna().tolist()
        (64, [False, True])
    """
    key = key if key is not None else project_key()
    derived = hmac.new(key, purpose.encode(), hashlib.sha256).digest()
    text = values.astype("string")
    uniques = text.dropna().unique()
    base = hmac.new(derived, digestmod=hashlib.sha256)  # key schedule once, then copy per value

    def digest(value: str) -> str:
        h = base.copy()
        h.update(value.encode())
        return h.hexdigest()

    table = {v: digest(v) for v in uniques}
    return text.map(table).astype("string")
