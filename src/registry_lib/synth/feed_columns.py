"""The identifier columns every person feed carries, as sent (shared by the feed schemas).

Example:
    >>> [c.name for c in IDENTIFIERS][:3]
    ['nhs_number', 'given_name', 'family_name']
"""

from __future__ import annotations

import pyarrow as pa

from registry_lib.schema import Column as C

S = pa.string()

#: NHS number, names, birth date, sex and postcode as a hospital sent them (strings).
IDENTIFIERS = [
    C("nhs_number", S, True, "NHS number as sent (may be missing or mistyped)"),
    C("given_name", S, True, "given name as sent"),
    C("family_name", S, True, "family name as sent"),
    C("birth_date", S, True, "date of birth as sent, YYYY-MM-DD (may be impossible)"),
    C("sex", S, True, "1 male, 2 female, 9 not specified"),
    C("postcode", S, True, "postcode as sent"),
]
