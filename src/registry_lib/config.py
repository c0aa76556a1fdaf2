"""Reading params files: YAML with optional ``extends:`` inheritance.

A cohort config may say ``extends: default`` to start from ``params/cohort/default.yaml`` and
override only some keys (deep merge). Unknown files and malformed YAML raise
:class:`~registry_lib.errors.ConfigError` naming the file.

Example:
    >>> deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}})
    {'a': {'b': 1, 'c': 3}}
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from registry_lib.errors import ConfigError
from registry_lib.paths import NAME_PATTERN as _NAME


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``base`` with ``override`` merged in, recursively for nested dicts.

    An override value of ``None`` replaces (this is how an injected effect is switched off).

    Example:
        >>> deep_merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}, "b": None})
        {'a': {'x': 1, 'y': 3}, 'b': None}
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: Path | str) -> dict[str, Any]:
    """Load one YAML mapping, resolving ``extends: <name>`` against the same folder.

    Example:
        >>> load_yaml("params/cohort/tiny.yaml")["name"]
        'tiny'
        >>> load_yaml("params/cohort/nowhere.yaml")
        Traceback (most recent call last):
        ...
        registry_lib.errors.ConfigError: params/cohort/nowhere.yaml: no such params file
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such params file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not _NAME.fullmatch(parent):
            raise ConfigError(f"{path}: extends {parent!r} is not the name of a params file in the same folder")
        parent_path = path.with_name(f"{parent}.yaml")
        if parent_path.resolve() == path.resolve():
            raise ConfigError(f"{path}: extends itself")
        inherited = load_yaml(parent_path)
        inherited.pop("name", None)  # a config's name is its own, never its parent's
        data = deep_merge(inherited, data)
    return data


def params_hash(params: Any) -> str:
    """A stable sha256 of a JSON-able params structure (keys sorted).

    Example:
        >>> params_hash({"b": 1, "a": 2}) == params_hash({"a": 2, "b": 1})
        True
        >>> len(params_hash({"a": 1}))
        64
    """
    blob = json.dumps(params, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()
