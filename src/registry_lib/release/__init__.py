"""Purpose-bound releases: policies, opt-outs, pseudonyms, risk, aggregation, disclosure control.

Every study reads a release, never the registry. The registry gives data out under different
rules for different purposes (``params/release/*.yaml``): identifiable for direct care,
identifiable or pseudonymised for approved research (national data opt-out applied),
anonymised aggregates for publication. Published tables never let anyone work out a count
from 1 to 7.

Entry points:

- :func:`run` — ``registry-lab release --cohort NAME --policy POLICY --requester TEXT``;
- :func:`load_release` — what a study notebook reads;
- :func:`aggregate_counts`, :func:`aggregate_rates` — counts, crude and ESP 2013 age-standardised
  rates (Dobson intervals) by any grouping, through DuckDB over the release Parquet;
- :func:`protect_table`, :func:`check_table`, :func:`protect_km`, :func:`percentages` —
  disclosure control;
- :func:`publish_table` — the only way a study notebook writes a table (CSV) to ``reports/``;
- :func:`scan_reports_for_unsafe_counts` — finds unprotected counts 1–7 under ``reports/``;
- :func:`write_data_dictionary` — ``synthetic/README.md``, the data dictionary of every table.

Example:
    >>> import pandas as pd
    >>> protect_table(pd.DataFrame({"F": [3, 40], "M": [25, 50]}), rounding=5, secondary=False)
              F   M  Total
    0      <NA>  25     30
    1        40  50     90
    Total    45  75    120
"""

from registry_lib.release.aggregate import aggregate_counts, aggregate_rates
from registry_lib.release.dictionary import data_dictionary, write_data_dictionary
from registry_lib.release.disclosure import (
    UnsafeTableError,
    check_table,
    percentages,
    protect_counts,
    protect_table,
    round_counts,
    suppression_intervals,
)
from registry_lib.release.km import protect_km
from registry_lib.release.policy import Policy, list_policies, load_policy
from registry_lib.release.publish import (
    is_count_column,
    publish_table,
    scan_reports_for_unsafe_counts,
)
from registry_lib.release.risk import local_suppression, risk_report
from registry_lib.release.run import load_release, read_audit, release_dir, release_info, run

__all__ = [
    "Policy",
    "UnsafeTableError",
    "aggregate_counts",
    "aggregate_rates",
    "check_table",
    "data_dictionary",
    "is_count_column",
    "list_policies",
    "load_policy",
    "load_release",
    "local_suppression",
    "percentages",
    "protect_counts",
    "protect_km",
    "protect_table",
    "publish_table",
    "read_audit",
    "release_dir",
    "release_info",
    "risk_report",
    "round_counts",
    "run",
    "scan_reports_for_unsafe_counts",
    "suppression_intervals",
    "write_data_dictionary",
]
