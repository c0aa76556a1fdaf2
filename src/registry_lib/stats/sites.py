"""ICD-10 site groups written the way analysts write them: ``C50`` or a range ``C18-C20``.

Example:
    >>> site_range("C18-C20")
    ['C18', 'C19', 'C20']
    >>> expand_sites(["C67", "C18-C20"])
    ['C18', 'C19', 'C20', 'C67']
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from registry_lib.errors import RegistryLabError

_SITE = re.compile(r"^([A-Z])(\d{2})$")


def site_range(spec: str) -> list[str]:
    """The ICD-10 3-character codes of one site or one range (within one letter, upwards).

    Example:
        >>> site_range("C18-C20")
        ['C18', 'C19', 'C20']
    """
    text = str(spec).strip().upper()
    lo, _, hi = text.partition("-")
    a, b = _SITE.match(lo.strip()), _SITE.match((hi or lo).strip())
    if a is None or b is None or text.count("-") > 1:
        raise RegistryLabError(f"sites: {spec!r} is not an ICD-10 3-character code (C50) or range (C18-C20)")
    if a.group(1) != b.group(1) or int(b.group(2)) < int(a.group(2)):
        raise RegistryLabError(f"sites: the range {spec!r} must run upwards within one letter")
    return [f"{a.group(1)}{k:02d}" for k in range(int(a.group(2)), int(b.group(2)) + 1)]


def expand_sites(sites: str | Sequence[str]) -> list[str]:
    """Sorted distinct codes of a list of codes and ranges; an empty list raises.

    Example:
        >>> expand_sites(["C50", "C18-C19", "C50"])
        ['C18', 'C19', 'C50']
    """
    items = [sites] if isinstance(sites, str) else list(sites)
    out = sorted({code for item in items for code in site_range(item)})
    if not out:
        raise RegistryLabError("sites: give at least one ICD-10 code")
    return out
