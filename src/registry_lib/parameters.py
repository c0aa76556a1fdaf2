"""Study parameters are data, never code: plain YAML values checked against typed declarations.

Each ``params/studies/<study>.yaml`` holds the parameters' default values and, under the
reserved key ``parameter_types``, a declaration per parameter: a type (``int``, ``float``,
``bool``, ``str``, ``month`` = ``"YYYY-MM"``, ``date`` = ``"YYYY-MM-DD"``, ``list``, ``mapping``,
``any``), with ``min``/``max``, ``choices``, ``pattern``, ``length``, ``items`` (the type of a list's
items), ``fields`` (of a mapping) and ``nullable`` where they apply. A parameter or field with no
declaration is checked against the type of its default. Values given with ``-p`` or ``-f`` are
parsed by :func:`load_plain` (YAML scalars, lists and mappings only: no tags such as ``!!binary``
or ``!!set``, and an unquoted date stays text), then checked by :func:`check_parameters` before
any step runs; a bad value is refused with one sentence naming the parameter, the value and
what is expected. :func:`python_literal` is how a checked value reaches a notebook.

Example:
    >>> check_parameters({"level": 0.9}, {"level": 0.95}, {"level": {"type": "float", "min": 0, "max": 1}})
    {'level': 0.9}
    >>> check_parameters({"level": "abc"}, {"level": 0.95}, {"level": {"type": "float", "min": 0, "max": 1}})
    Traceback (most recent call last):
    ...
    registry_lib.errors.ConfigError: parameter level = 'abc' is not allowed: expected a number in [0, 1]
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import yaml

from registry_lib.errors import ConfigError

#: The reserved key of a study params file that holds the declarations (not a parameter).
TYPES_KEY = "parameter_types"
TYPES = {"int", "float", "bool", "str", "month", "date", "list", "mapping", "any"}
DECL_KEYS = {"type", "min", "max", "choices", "pattern", "length", "items", "fields", "nullable"}
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}


class PlainLoader(yaml.SafeLoader):
    """A YAML loader for outside input: scalars, lists and mappings only; dates stay text.

    Example:
        >>> yaml.load("{when: 2020-03-01, n: 3}", Loader=PlainLoader)
        {'when': '2020-03-01', 'n': 3}
    """


# No implicit timestamps: `2020-04-01` is the text "2020-04-01", checked by its declaration.
PlainLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Refused(Exception):
    pass


def _refuse_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    raise _Refused(node.tag)


for _tag in ("binary", "set", "timestamp", "omap", "pairs", "merge", "value", "yaml"):
    PlainLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", lambda loader, node: _refuse_tag(loader, "", node))
PlainLoader.add_multi_constructor("", _refuse_tag)


def load_plain(text: str, where: str) -> Any:
    """Parse YAML ``text`` as plain data, or a ConfigError naming ``where``.

    Example:
        >>> load_plain("2020-04-01", "-p ratio_month")
        '2020-04-01'
        >>> load_plain("!!binary aGk=", "-p source")
        Traceback (most recent call last):
        ...
        registry_lib.errors.ConfigError: -p source: YAML tag !!binary is not allowed; parameters are plain values (text, numbers, true/false, null, lists, mappings)
    """
    try:
        return yaml.load(text, Loader=PlainLoader)  # noqa: S506 - PlainLoader is a restricted SafeLoader
    except _Refused as exc:
        tag = str(exc).replace("tag:yaml.org,2002:", "!!")
        raise ConfigError(f"{where}: YAML tag {tag} is not allowed; parameters are plain values "
                          "(text, numbers, true/false, null, lists, mappings)") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc.__class__.__name__})") from None
    except (ValueError, TypeError, RecursionError) as exc:
        raise ConfigError(f"{where}: not a plain YAML value ({exc.__class__.__name__})") from None


def load_plain_file(path: Path | str) -> dict[str, Any]:
    """A YAML file of parameter values (a mapping), parsed as plain data.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "p.yaml").write_text("{alpha: 0.05, sites: [C18, C19]}")
        ...     load_plain_file(Path(d) / "p.yaml")
        {'alpha': 0.05, 'sites': ['C18', 'C19']}
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such params file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"{path}: cannot be read as UTF-8 text") from None
    data = load_plain(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of parameter names to values")
    return data


def infer(default: Any) -> dict[str, Any]:
    """A declaration for a value nobody declared: the type of its default.

    Example:
        >>> infer([1, 2])
        {'type': 'list', 'items': {'type': 'int'}}
    """
    if default is None:
        return {"type": "any"}
    if isinstance(default, bool):
        return {"type": "bool"}
    if isinstance(default, int):
        return {"type": "int"}
    if isinstance(default, float):
        return {"type": "float"}
    if isinstance(default, str):
        return {"type": "str"}
    if isinstance(default, list):
        kinds = {infer(v)["type"] for v in default}
        if len(kinds) == 1 and kinds != {"list", "mapping"}:
            kind = kinds.pop()
            return {"type": "list", "items": {"type": "float" if kind == "int" and any(
                isinstance(v, float) for v in default) else kind}}
        return {"type": "list"}
    if isinstance(default, dict):
        return {"type": "mapping", "fields": {k: infer(v) for k, v in default.items()}}
    return {"type": "any"}


def _normal(decl: Any, where: str) -> dict[str, Any]:
    if isinstance(decl, str):
        decl = {"type": decl}
    if not isinstance(decl, dict) or decl.get("type") not in TYPES or set(decl) - DECL_KEYS:
        raise ConfigError(f"{where}: a parameter declaration needs a type ({', '.join(sorted(TYPES))}) "
                          f"and only the keys {', '.join(sorted(DECL_KEYS))}")
    return decl


def describe(decl: dict[str, Any]) -> str:
    """What a declaration expects, in words.

    Example:
        >>> describe({"type": "float", "min": 0, "max": 1})
        'a number in [0, 1]'
    """
    kind = decl["type"]
    words = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
             "month": "a month 'YYYY-MM' (quoted)", "date": "a date 'YYYY-MM-DD' (quoted)",
             "list": "a list", "mapping": "a mapping", "any": "a plain value"}[kind]
    if "choices" in decl:
        words = "one of " + ", ".join(map(str, decl["choices"]))
    lo, hi = decl.get("min"), decl.get("max")
    if lo is not None and hi is not None:
        words += f" in [{lo}, {hi}]"
    elif lo is not None:
        words += f" >= {lo}"
    elif hi is not None:
        words += f" <= {hi}"
    if "length" in decl:
        words += f" of {decl['length']} items"
    if kind == "list" and "items" in decl:
        words += f" of {describe(_normal(decl['items'], 'items'))}"
    if decl.get("nullable"):
        words += ", or null"
    return words


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_value(value: Any, decl: Any, name: str, default: Any = None) -> Any:
    """``value`` if it matches ``decl`` (a declaration), else a ConfigError naming ``name``.

    Example:
        >>> check_value("2020-03", {"type": "month"}, "start")
        '2020-03'
        >>> check_value(12, {"type": "int", "max": 10}, "k")
        Traceback (most recent call last):
        ...
        registry_lib.errors.ConfigError: parameter k = 12 is not allowed: expected a whole number <= 10
        >>> check_value({"b": 3}, "mapping", "m", {"a": 1, "b": 2})   # a mapping: fields not given keep their default
        {'a': 1, 'b': 3}
    """
    decl = _normal(decl, name)

    def bad(expected: str | None = None) -> ConfigError:
        return ConfigError(f"parameter {name} = {_short(value)} is not allowed: expected {expected or describe(decl)}")

    if value is None:
        if decl.get("nullable") or decl["type"] == "any":
            return None
        raise bad()
    kind = decl["type"]
    if kind == "any":
        _plain_check(value, name)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad()
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad()
    elif kind in ("str", "month", "date"):
        if not isinstance(value, str):
            raise bad()
        if kind == "month" and not _MONTH.match(value):
            raise bad()
        if kind == "date":
            import datetime as dt

            try:
                if not _DATE.match(value):
                    raise ValueError
                dt.date.fromisoformat(value)
            except ValueError:
                raise bad() from None
        if "pattern" in decl and not re.fullmatch(decl["pattern"], value):
            raise bad()
    elif kind == "list":
        if not isinstance(value, list):
            raise bad()
        if "length" in decl and len(value) != decl["length"]:
            raise bad()
        items = decl.get("items")
        if items is None and isinstance(default, list) and default:
            items = infer(default)["items"] if "items" in infer(default) else None
        value = [check_value(v, items, f"{name}[{i}]") if items is not None else _plain_check(v, f"{name}[{i}]")
                 for i, v in enumerate(value)]
    elif kind == "mapping":
        if not isinstance(value, dict):
            raise bad()
        fields = decl.get("fields")
        if isinstance(default, dict):   # fields declared override those inferred from the default
            fields = {**{k: infer(v) for k, v in default.items()}, **(fields or {})}
        if fields is not None:
            unknown = [k for k in value if k not in fields]
            if unknown:
                raise ConfigError(f"parameter {name} has no field {unknown[0]!r} "
                                  f"(known: {', '.join(map(str, fields))})")
            base = default if isinstance(default, dict) else {}
            value = {k: check_value(v, fields[k], f"{name}.{k}", base.get(k)) for k, v in value.items()}
            value = {**base, **value}   # fields not given keep their defaults
        else:
            _plain_check(value, name)
    if "choices" in decl and value not in decl["choices"]:
        raise bad()
    if kind in ("int", "float"):
        if ("min" in decl and value < decl["min"]) or ("max" in decl and value > decl["max"]):
            raise bad()
    return value


def _plain_check(value: Any, name: str) -> Any:
    """``value`` if it is made only of text, finite numbers, booleans, null, lists and mappings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"parameter {name} = {value!r} is not allowed: expected a finite number")
        return value
    if isinstance(value, list):
        return [_plain_check(v, f"{name}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k in value:
            if not isinstance(k, str):
                raise ConfigError(f"parameter {name} has a non-text key {_short(k)}; mapping keys must be text")
        return {k: _plain_check(v, f"{name}.{k}") for k, v in value.items()}
    raise ConfigError(f"parameter {name} = {_short(value)} is not allowed: expected a plain value "
                      "(text, number, true/false, null, list or mapping)")


def split_declarations(data: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(defaults, declarations)`` of a study params file's mapping.

    Example:
        >>> values, decls = split_declarations({"k": 3, "parameter_types": {"k": "int"}}, "demo.yaml")
        >>> values, sorted(decls)
        ({'k': 3}, ['k'])
    """
    values = {k: v for k, v in data.items() if k != TYPES_KEY}
    decls = data.get(TYPES_KEY) or {}
    if not isinstance(decls, dict):
        raise ConfigError(f"{where}: {TYPES_KEY} must map parameter names to declarations")
    stray = sorted(set(decls) - set(values))
    if stray:
        raise ConfigError(f"{where}: {TYPES_KEY} declares {', '.join(stray)}, which has no default value")
    return values, {k: _normal(v, f"{where}: {TYPES_KEY}.{k}") for k, v in decls.items()}


def check_parameters(values: dict[str, Any], defaults: dict[str, Any], declarations: dict[str, Any],
                     where: str = "") -> dict[str, Any]:
    """Check every value against its declaration (or its default's type); unknown names refused.

    Example:
        >>> check_parameters({"k": 5}, {"k": 3}, {})
        {'k': 5}
        >>> check_parameters({"j": 5}, {"k": 3}, {})
        Traceback (most recent call last):
        ...
        registry_lib.errors.ConfigError: no parameter 'j' (known: k)
    """
    out = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name.isidentifier() or name == TYPES_KEY:
            raise ConfigError(f"{where}parameter name {_short(name)} is not allowed")
        if name not in defaults:
            known = ", ".join(sorted(defaults)) or "(none)"
            raise ConfigError(f"{where}no parameter {name!r} (known: {known})")
        decl = declarations.get(name) or infer(defaults[name])
        try:
            out[name] = check_value(value, decl, name, defaults[name])
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
    return out


def python_literal(value: Any) -> str:
    """The Python source of a checked plain value: a literal that evaluates to it and does nothing else.

    Example:
        >>> python_literal({"a": ['x"; import os #', 1.5, None]})
        '{\\'a\\': [\\'x"; import os #\\', 1.5, None]}'
    """
    _plain_check(value, "value")
    text = repr(value)
    if ast.literal_eval(text) != value:  # pragma: no cover - repr of plain values round-trips
        raise ConfigError(f"parameter value {_short(value)} has no exact Python literal")
    return text
