"""Survival and late-effect statistics for registry studies (one import for the notebooks).

The methods live in small modules; this one gathers their public names:

=================================  =========================================================
``survival_curves``                :func:`km_table` (Kaplan–Meier by group, tidy, ready for
                                   ``release.protect_km``), :func:`cumulative_incidence`
                                   (Aalen–Johansen with competing risks)
``survival_cox``                   :class:`TreatmentEffectCox`, :func:`cox_three_ways` (naive,
                                   adjusted, IPTW Cox), :func:`propensity_scores`,
                                   :func:`iptw_weights`, :func:`balance_table`,
                                   :func:`design_matrix`
``survival_trial``                 :class:`TargetTrial` (protocol; landmark and
                                   clone-censor-weight emulations), :func:`weighted_cox_binary`
``survival_net``                   :func:`net_survival` (Pohar Perme, Ederer II),
                                   :func:`age_standardised_net_survival` (ICSS)
``life_table``                     :class:`BackgroundHazards`, :func:`expected_survival`,
                                   :func:`decimal_year`
``survival_late``                  :func:`lexis_split`, :func:`expected_counts`,
                                   :func:`late_effects_cohort`, :func:`second_cancer_sir`,
                                   :func:`bard_recall`
``survival_sim``                   :func:`simulate_treatment_cohort`,
                                   :func:`synthetic_life_table` (validation simulators)
=================================  =========================================================

A treatment-effects study is a few calls::

    trial = TargetTrial.from_params(params["target_trial"])
    cohort = trial.landmark_cohort(release["tumour"], release["patient"], release["treatment"],
                                   end_of_follow_up)
    km = km_table(cohort.data, "time", "dead", "treated")
    effect = TreatmentEffectCox(params["covariates"]).fit(cohort.data, "time", "dead", "treated")
    effect.hazard_ratios_, effect.balance_
    ns = net_survival(patients, life_table, times=[1, 5, 10])
    sirs, pyrs = second_cancer_sir(late_effects_cohort(...), breast_rates, by={...})

Example:
    >>> from registry_lib.stats.survival import net_survival, TargetTrial, km_table
    >>> callable(net_survival) and callable(km_table)
    True
"""

from registry_lib.stats.life_table import BackgroundHazards, decimal_year, expected_survival
from registry_lib.stats.survival_cox import (
    TreatmentEffectCox,
    balance_table,
    cox_three_ways,
    design_matrix,
    iptw_weights,
    propensity_scores,
)
from registry_lib.stats.survival_curves import cumulative_incidence, km_table
from registry_lib.stats.survival_late import (
    bard_recall,
    expected_counts,
    late_effects_cohort,
    lexis_split,
    second_cancer_sir,
)
from registry_lib.stats.survival_net import (
    NetSurvival,
    age_standardised_net_survival,
    net_survival,
)
from registry_lib.stats.survival_sim import simulate_treatment_cohort, synthetic_life_table
from registry_lib.stats.survival_trial import (
    CloneCensorWeight,
    TargetTrial,
    TrialCohort,
    weighted_cox_binary,
    weighted_km,
)

__all__ = [
    "BackgroundHazards",
    "CloneCensorWeight",
    "NetSurvival",
    "TargetTrial",
    "TreatmentEffectCox",
    "TrialCohort",
    "age_standardised_net_survival",
    "balance_table",
    "bard_recall",
    "cox_three_ways",
    "cumulative_incidence",
    "decimal_year",
    "design_matrix",
    "expected_counts",
    "expected_survival",
    "iptw_weights",
    "km_table",
    "late_effects_cohort",
    "lexis_split",
    "net_survival",
    "propensity_scores",
    "second_cancer_sir",
    "simulate_treatment_cohort",
    "synthetic_life_table",
    "weighted_cox_binary",
    "weighted_km",
]
