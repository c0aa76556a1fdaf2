"""Linkage: turn raw feeds into the registry — validate, deduplicate, link, honour opt-outs.

Public API:

* :func:`run` — build ``synthetic/<cohort>/registry/`` from its feeds (what ``registry-lab link``
  calls) and return the link report;
* :func:`dedupe` and :func:`link` — the generic API on any data with identifier roles
  (``nhs_number``, ``given_name``, ``family_name``, ``birth_date``, ``sex``, ``postcode``,
  ``address``), returning candidate pairs ``id_l``, ``id_r``, ``match_probability``;
* :func:`evaluate` — pairwise precision, recall, F1, false and missed match rates, persons
  split and merged, against the true person of each record.

Example:
    >>> import pandas as pd
    >>> from registry_lib import linkage
    >>> df = pd.DataFrame({"surname": ["Lee", "Lee", "Khan"], "dob": ["1950-01-02"] * 2 + ["1960-05-06"]})
    >>> res = linkage.dedupe(df, columns={"family_name": "surname", "birth_date": "dob"})
    >>> res.clusters.tolist()
    [0, 0, 1]
"""

from __future__ import annotations

from registry_lib.linkage.api import DedupeResult, dedupe, link
from registry_lib.linkage.build import run
from registry_lib.linkage.evaluate import evaluate

__all__ = ["DedupeResult", "dedupe", "evaluate", "link", "run"]
