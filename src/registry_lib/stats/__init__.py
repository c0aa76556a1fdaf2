"""Statistical methods shared by the studies.

Pure functions on arrays and DataFrames, returning tidy DataFrames or small result objects;
this package imports none of the pipeline stages. Public names are loaded lazily so that
importing one method does not import every module.

Example:
    >>> from registry_lib.stats import sir
    >>> float(sir([4], [2.0])["sir"].iloc[0])
    2.0
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # rates
    "EXACT_BELOW": "rates",
    "poisson_ci": "rates",
    "sir": "rates",
    "smoothed_sir": "rates",
    "stratum_rates": "rates",
    "indirect_expected": "rates",
    "crude_rate": "rates",
    "direct_standardised_rate": "rates",
    # spatial scan
    "EARTH_RADIUS_KM": "scan_engine",
    "ScanResult": "scan",
    "kulldorff_scan": "scan",
    # point-source cluster methods
    "DEFAULT_BANDS_KM": "cluster",
    "BandResult": "cluster",
    "StoneResult": "cluster",
    "ChiSquareResult": "sir_tests",
    "area_observed_expected": "cluster",
    "assign_bands": "cluster",
    "band_sir": "cluster",
    "band_sir_from_areas": "cluster",
    "distance_to_nearest_source": "cluster",
    "homogeneity_test": "sir_tests",
    "stone_test": "cluster",
    "trend_test": "sir_tests",
    # survival (registry_lib.stats.survival re-exports its sub-modules)
    "km_table": "survival",
    "cumulative_incidence": "survival",
    "TreatmentEffectCox": "survival",
    "cox_three_ways": "survival",
    "TargetTrial": "survival",
    "net_survival": "survival",
    "age_standardised_net_survival": "survival",
    "lexis_split": "survival",
    "late_effects_cohort": "survival",
    "second_cancer_sir": "survival",
    "bard_recall": "survival",
    # life tables (background mortality)
    "BackgroundHazards": "life_table",
    "expected_survival": "life_table",
    "decimal_year": "life_table",
    # interrupted time series and counterfactuals
    "monthly_counts": "timeseries",
    "seasonal_design": "timeseries",
    "segmented_regression": "timeseries",
    "CounterfactualModel": "counterfactual",
    "CounterfactualResults": "counterfactual",
    "fit_counterfactual": "counterfactual",
    # comparing periods
    "assign_period": "periods",
    "wilson_ci": "periods",
    "share_by_period": "periods",
    "median_iqr": "periods",
    "survival_times": "periods",
    # regression tables
    "model_matrix": "regression",
    "odds_ratios": "regression",
    "hazard_ratios": "regression",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'registry_lib.stats' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"registry_lib.stats.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
