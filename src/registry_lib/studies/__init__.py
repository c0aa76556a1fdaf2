"""Study-specific analysis: the logic behind each study notebook.

Unlike :mod:`registry_lib.stats` (pure methods, importing no stage), these modules may use
the release stage (disclosure control, the audit log) because a study publishes through it.

- :mod:`registry_lib.studies.cluster_study` — point-source cluster investigation (notebook 02)
- :mod:`registry_lib.studies.treatment_study` — long-term effects of treatment (notebook 03)
- :mod:`registry_lib.studies.covid_study` — COVID-19 impact (notebook 04)
"""
