"""The project key behind keyed hashes (pseudonyms, registration opt-out hashes).

The key is per project and never written to outputs or logs. It comes from, in order:
1. ``REGISTRY_LAB_KEY``: the key as 64 hex characters;
2. ``REGISTRY_LAB_KEY_FILE``: a file holding it;
3. ``.registry-lab/project.key`` under the project root (git-ignored).

With none of these there is no silent default: :func:`project_key` raises an error that says
how to make one (``registry-lab keygen``).

Example:
    >>> import os; os.environ["REGISTRY_LAB_KEY"] = "3a7f1c9e5b2d8a4f6e0c1b3d5f7a9c2e4b6d8f0a1c3e5a7b9d2f4c6e8a0b1d3f"
    >>> keyed_hash(pd.Series(["9434765919"]), purpose="demo").str.len().tolist()
    [64]
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def weak_key(key: bytes) -> str | None:
    """Why ``key`` cannot hold 128 bits of entropy, or None.

    A random 32-byte key has about 30 distinct byte values and no short period; a key with
    fewer than 16 distinct bytes (all-zero, one byte repeated, a short pattern) or that repeats
    a block of 16 bytes or fewer is refused.

    Example:
        >>> weak_key(bytes(32))
        'it has only 1 distinct byte value(s)'
        >>> weak_key(bytes.fromhex("3a7f1c9e5b2d8a4f6e0c1b3d5f7a9c2e4b6d8f0a1c3e5a7b9d2f4c6e8a0b1d3f")) is None
        True
    """
    distinct = len(set(key))
    if distinct < 16:
        return f"it has only {distinct} distinct byte value(s)"
    for period in range(1, 17):
        if key == (key[:period] * (len(key) // period + 1))[:len(key)]:
            return f"it repeats a block of {period} bytes"
    return None


def _parse(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise RegistryLabError(f"{where}: the project key must be 64 hex characters") from None
    if len(key) != 32:
        raise RegistryLabError(f"{where}: the project key must be 64 hex characters, not {len(text)}")
    why = weak_key(key)
    if why:
        raise RegistryLabError(f"{where}: the project key is too weak ({why}); make a random one with "
                               "`registry-lab keygen`")
    return key


def _read_key_file(path: Path, where: str) -> str:
    if path.is_dir():
        raise RegistryLabError(f"{where}: {path} is a folder, not a key file")
    try:
        if path.stat().st_size > 4096:
            raise RegistryLabError(f"{where}: {path} is too large to be a key file (64 hex characters)")
        return path.read_text(encoding="ascii")
    except UnicodeDecodeError:
        raise RegistryLabError(f"{where}: {path} is not a text file of 64 hex characters") from None
    except OSError as exc:
        raise RegistryLabError(f"{where}: {path} cannot be read ({exc.strerror or exc.__class__.__name__})") from None


def project_key(root: Path | None = None) -> bytes:
    """The 32-byte project key, or a RegistryLabError saying how to make one.

    Example:
        >>> import os; os.environ["REGISTRY_LAB_KEY"] = "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a"
        >>> project_key() == bytes.fromhex("c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a")
        True
    """
    if os.environ.get("REGISTRY_LAB_KEY"):
        return _parse(os.environ["REGISTRY_LAB_KEY"], "REGISTRY_LAB_KEY")
    if os.environ.get("REGISTRY_LAB_KEY_FILE"):
        path = Path(os.environ["REGISTRY_LAB_KEY_FILE"])
        if not path.exists():
            raise RegistryLabError(f"REGISTRY_LAB_KEY_FILE: {path} does not exist")
        return _parse(_read_key_file(path, "REGISTRY_LAB_KEY_FILE"), str(path))
    path = default_key_path(root)
    if path.exists():
        return _parse(_read_key_file(path, path.name), str(path.name))
    raise RegistryLabError(KEY_HELP)


def key_fingerprint(key: bytes | None = None) -> str:
    """A keyed hash of a constant under the project key (never the key): the same key gives the
    same fingerprint, so caches and releases can tell which key made an output.

    Example:
        >>> len(key_fingerprint(bytes(range(32))))
        16
    """
    key = key if key is not None else project_key()
    return hmac.new(key, b"registry-lab key fingerprint v1", hashlib.sha256).hexdigest()[:16]


def current_fingerprint(root: Path | None = None) -> str | None:
    """The project key's fingerprint, or None when no key is configured yet.

    Example:
        >>> import os; os.environ["REGISTRY_LAB_KEY"] = "c337586593d53ec915c7982c4088b2d030dc971771bde08fda1054b7adb4241a"
        >>> current_fingerprint() == key_fingerprint(project_key())
        True
    """
    try:
        return key_fingerprint(project_key(root))
    except RegistryLabError:
        return None


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


def _pads(key: bytes, purpose: str) -> tuple[Any, Any]:
    """The inner and outer SHA-256 states of HMAC(key', .) with key' = HMAC(key, purpose).

    HMAC(k, m) = H((k ^ opad) || H((k ^ ipad) || m)) (RFC 2104): both padded key blocks are hashed
    once, and each value then costs two copies of a hash state (half ``hmac.copy``'s cost).
    """
    derived = hmac.new(key, purpose.encode(), hashlib.sha256).digest()
    block = derived.ljust(hashlib.sha256().block_size, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in block)), hashlib.sha256(bytes(b ^ 0x5C for b in block))


def _digests(values: list[bytes], inner: Any, outer: Any) -> bytes:
    """The raw 32-byte HMAC digests of ``values``, concatenated (one C call chain per value)."""
    out: list[bytes] = []
    append, icopy, ocopy = out.append, inner.copy, outer.copy
    for v in values:
        h = icopy()
        h.update(v)
        o = ocopy()
        o.update(h.digest())
        append(o.digest())
    return b"".join(out)


#: the two hex characters of every byte value, as one uint16 each (a single gather per byte)
_HEX = np.frombuffer(b"".join(f"{i:02x}".encode() for i in range(256)), dtype=np.uint16)
#: values hashed per Arrow chunk of hex digests (64 characters each: int32 offsets stay small)
_CHUNK = 1 << 20


def _hex_array(digests: bytes) -> pa.StringArray:
    """Lower-case hex of concatenated 32-byte digests, as an Arrow string array (no Python loop).

    Example:
        >>> _hex_array(bytes(range(32)) + bytes(32)).to_pylist()[0][:8]
        '00010203'
    """
    raw = np.frombuffer(digests, dtype=np.uint8)
    n = raw.size // 32
    text = _HEX[raw]
    offsets = np.arange(0, 64 * (n + 1), 64, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def keyed_digests(values: pa.Array, *, purpose: str, key: bytes | None = None) -> bytes:
    """The raw 32-byte HMAC-SHA256 digests of ``values`` (text, none missing), concatenated.

    Example:
        >>> d = keyed_digests(pa.array(["7"]), purpose="demo", key=b"k" * 32)
        >>> d.hex() == keyed_hash(pd.Series(["7"]), purpose="demo", key=b"k" * 32)[0]
        True
    """
    key = key if key is not None else project_key()
    inner, outer = _pads(key, purpose)
    return _digests(pc.cast(values, pa.binary()).to_pylist(), inner, outer)


def hex_digests(digests: bytes) -> pa.ChunkedArray:
    """Concatenated 32-byte digests as lower-case hex text, one Arrow string per digest.

    Example:
        >>> hex_digests(bytes(32) + bytes(range(32))).to_pylist()[1][:8]
        '00010203'
    """
    step = _CHUNK * 32
    chunks = [_hex_array(digests[i:i + step]) for i in range(0, len(digests), step)]
    return pa.chunked_array(chunks, pa.string())


def keyed_hash_arrow(values: pa.Array | pa.ChunkedArray, *, purpose: str,
                     key: bytes | None = None) -> pa.ChunkedArray:
    """:func:`keyed_hash` on an Arrow array: the same hex HMAC-SHA256 of each value, nulls kept.

    Values are turned to text as Arrow casts them (integers as ``'123'``); one HMAC per distinct
    value, and the digests are turned to hex and mapped back to the rows with Arrow kernels.

    Example:
        >>> h = keyed_hash_arrow(pa.array([7, None, 7]), purpose="demo", key=b"k" * 32)
        >>> h.null_count, h[0] == h[2], h[0].as_py() == keyed_hash(pd.Series(["7"]), purpose="demo", key=b"k" * 32)[0]
        (1, True, True)
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], values.type)
    encoded = pc.dictionary_encode(values)   # distinct values first: casting them is cheaper
    uniques = pc.cast(encoded.dictionary, pa.string())
    return hex_digests(keyed_digests(uniques, purpose=purpose, key=key)).take(encoded.indices)


def keyed_hash(values: pd.Series, *, purpose: str, key: bytes | None = None) -> pd.Series:
    """HMAC-SHA256 (hex) of each value under the project key, separated by ``purpose``.

    Missing values stay missing. The same key and purpose give the same hash; a different key
    gives unlinkable hashes. One HMAC per distinct value (hashing is not vectorisable, so it is
    done once per unique value and mapped back; see :func:`keyed_hash_arrow`).

    Example:
        >>> h = keyed_hash(pd.Series(["9434765919", None]), purpose="research/nhs_number",
        ...                key=b"k" * 32)
        >>> len(h[0]), h.isna().tolist()
        (64, [False, True])
    """
    text = values if isinstance(values.dtype, pd.StringDtype) else values.astype("string")
    codes, uniques = pd.factorize(text)  # missing: code -1
    hashed = keyed_hash_arrow(pa.array(np.asarray(uniques, dtype=object), pa.string()), purpose=purpose, key=key)
    # one Python string per distinct value, shared by its rows (a string per row took 2 GB more
    # for the opt-out check of a national decade: 18.6 million NHS numbers)
    table = np.array([*hashed.to_pylist(), None], dtype=object)
    return pd.Series(table[codes], index=values.index, dtype="string")
