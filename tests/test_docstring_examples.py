"""Every public function and class of ``registry_lib`` has a runnable example (a ``>>>`` line
that ``pytest --doctest-modules src/registry_lib``, run by ``make test``, executes).

The ones still without an example are listed in ``tests/data/missing_examples.txt``; the list may
only shrink: a new public name without an example fails, and so does a listed name that has
gained one (take it off the list).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "registry_lib"
MISSING = ROOT / "tests" / "data" / "missing_examples.txt"


def public_without_example() -> set[str]:
    """``module:name`` of each public top-level function or class whose docstring has no ``>>>``."""
    out = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        if any(part.startswith("_") and part != "__init__" for part in rel.parts):
            continue
        for node in ast.parse(path.read_text()).body:
            if (isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                    and not node.name.startswith("_")
                    and ">>>" not in (ast.get_docstring(node) or "")):
                out.add(f"{module}:{node.name}")
    return out


def listed() -> set[str]:
    return {line.strip() for line in MISSING.read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def test_new_public_names_have_examples():
    new = sorted(public_without_example() - listed())
    assert not new, f"public functions/classes without a >>> example: {new}"


def test_the_list_of_missing_examples_only_shrinks():
    fixed = sorted(listed() - public_without_example())
    assert not fixed, f"these now have an example (or are gone): remove them from {MISSING.name}: {fixed}"
