"""Study-specific analysis: the logic behind each study notebook.

Unlike :mod:`registry_lib.stats` (pure methods, importing no stage), these modules may use
the release stage (disclosure control, the audit log) because a study publishes through it.

One module per study notebook, named exactly as the notebook and its
``params/studies/<study>.yaml``:

- :mod:`registry_lib.studies.cohort_overview` — does synthetic England look like England? (notebook 00)
- :mod:`registry_lib.studies.linkage_quality` — how well did linkage do? (notebook 01)
- :mod:`registry_lib.studies.cluster_investigation` — point-source cluster investigation (notebook 02)
- :mod:`registry_lib.studies.treatment_effects` — long-term effects of treatment (notebook 03)
- :mod:`registry_lib.studies.covid_impact` — COVID-19 impact (notebook 04), with its care-change
  tables on registry data in :mod:`registry_lib.studies.covid_impact_care`
- :mod:`registry_lib.studies.registry_statistics` — official-statistics-style incidence (notebook 05),
  with its charts in :mod:`registry_lib.studies.registry_statistics_charts`
"""
