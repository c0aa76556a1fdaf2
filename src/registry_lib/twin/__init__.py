"""Synthetic twins of a release: synthpop-style sequential CART, utility and disclosure risk.

A twin is fitted to a record-level release (patient → tumours → treatments) and is itself a
release (``releases/<policy>_twin/``) that every study can read in place of the real one, on
which a collaborator can develop a study before the registry runs the same notebook on the
real data.

Entry points:

- :func:`fit` — fit the synthesiser to a release's tables; ``.sample(n, seed)`` draws a twin;
- :func:`run` — ``registry-lab twin --cohort NAME --policy POLICY [--size N] [--seed S]``;
- utility: :func:`patient_tumour_table`, :func:`pmse`, :func:`pairwise_pmse`,
  :func:`compare_distributions`, :func:`ci_overlap`;
- baselines: :func:`independent_marginals`, :func:`gaussian_copula`;
- risk: :func:`replicated_uniques`, :func:`distance_to_closest`, :func:`tcap`.

Example:
    >>> from registry_lib.twin.example import example_release
    >>> tables = example_release(300, seed=1)
    >>> twin = fit(tables, "pseudo_id", seed=1).sample(300, seed=2)
    >>> check_rules(twin, "pseudo_id", (18, 100))["treatment_after_death"]
    0
"""

from registry_lib.twin.baselines import gaussian_copula, independent_marginals
from registry_lib.twin.risk import distance_to_closest, key_frame, replicated_uniques, tcap
from registry_lib.twin.run import (
    SYNTHETIC_NOTICE,
    check_rules,
    generate,
    is_synthetic,
    load_twin_report,
    run,
    twin_name,
)
from registry_lib.twin.synthesiser import Synthesiser, fit
from registry_lib.twin.utility import (
    ci_overlap,
    compare_distributions,
    pairwise_pmse,
    patient_tumour_table,
    pmse,
)

__all__ = [
    "SYNTHETIC_NOTICE",
    "Synthesiser",
    "check_rules",
    "ci_overlap",
    "compare_distributions",
    "distance_to_closest",
    "fit",
    "gaussian_copula",
    "generate",
    "independent_marginals",
    "is_synthetic",
    "key_frame",
    "load_twin_report",
    "pairwise_pmse",
    "patient_tumour_table",
    "pmse",
    "replicated_uniques",
    "run",
    "tcap",
    "twin_name",
]
