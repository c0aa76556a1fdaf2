"""Schemas of the registry that linkage builds (``synthetic/<cohort>/registry/``).

Column names follow the data model in DESIGN.md. Ids are the registry's own; they carry no
meaning and are unrelated to truth ids.

Example:
    >>> from registry_lib.linkage.tables import PATIENT
    >>> PATIENT.column_names[:2]
    ['patient_id', 'nhs_number']
"""

from __future__ import annotations

import pyarrow as pa

from registry_lib.schema import Column as C
from registry_lib.schema import Table, register

S, I8, I16, I64, F64, D, B = pa.string(), pa.int8(), pa.int16(), pa.int64(), pa.float64(), pa.date32(), pa.bool_()

PATIENT = register(Table("patient", "Registered persons (linked best values).", [
    C("patient_id", I64, False, "registry person id"),
    C("nhs_number", S, True, "best valid NHS number"),
    C("given_name", S, True, "given name"),
    C("family_name", S, True, "family name (latest)"),
    C("birth_date", D, True, "date of birth"),
    C("sex", I8, True, "1 male, 2 female"),
    C("ethnicity", S, True, "ONS 5-group ethnicity"),
    C("postcode", S, True, "latest postcode"),
    C("area_id", S, True, "area of the latest postcode"),
    C("deprivation_quintile", I8, True, "1–5 of that area"),
    C("death_date", D, True, "date of death (linked death registration)"),
    C("death_cause_icd10", S, True, "underlying cause of death"),
    C("ndop_opted_out", B, False, "on the national data opt-out list"),
], stage="registry", key=("patient_id",)))

TUMOUR = register(Table("tumour", "Registered tumours (consolidated from notifications).", [
    C("tumour_id", I64, False, "registry tumour id"),
    C("patient_id", I64, False, "registry person id"),
    C("diagnosis_date", D, False, "earliest diagnosis date"),
    C("age_at_diagnosis", I16, True, "age in completed years"),
    C("site_icd10", S, False, "ICD-10 3-character site"),
    C("morphology_icdo3", S, True, "ICD-O-3 morphology"),
    C("behaviour", S, True, "ICD-O-3 behaviour"),
    C("stage", S, False, "1–4 or U (unknown)"),
    C("grade", S, True, "G1–G4, GX"),
    C("laterality", S, True, "L, R, B, M, 9"),
    C("route_to_diagnosis", S, True, "Routes to Diagnosis category"),
    C("basis_of_diagnosis", S, True, "ENCR basis of diagnosis"),
    C("diagnosing_trust", S, True, "trust code"),
    C("area_id", S, True, "area of residence at diagnosis"),
    C("performance_status", I8, True, "WHO performance status near diagnosis"),
    C("comorbidity_score", I8, True, "Charlson comorbidity score"),
], stage="registry", key=("tumour_id",)))

TREATMENT = register(Table("treatment", "Treatments linked to registry tumours.", [
    C("treatment_id", I64, False, "registry treatment id"),
    C("patient_id", I64, False, "registry person id"),
    C("tumour_id", I64, True, "registry tumour id (null if no tumour matched)"),
    C("modality", S, False, "surgery | sact | radiotherapy"),
    C("start_date", D, False, "start date"),
    C("intent", S, True, "intent"),
    C("details", S, True, "regimen; or radiotherapy region, dose and fractions; or procedure"),
    C("regimen", S, True, "SACT regimen"),
    C("rt_region", S, True, "radiotherapy region"),
    C("dose_gy", F64, True, "radiotherapy dose in Gy"),
    C("fractions", I16, True, "radiotherapy fractions"),
    C("procedure_code", S, True, "OPCS-4 code"),
], stage="registry", key=("treatment_id",)))

QUARANTINE = register(Table("quarantine", "Feed records that could not be used, with the reason.", [
    C("feed", S, False, "feed name"),
    C("record_id", S, False, "record id in that feed"),
    C("reason", S, False, "reason code, e.g. NO_IDENTIFIERS, INVALID_SITE, DIAGNOSIS_AFTER_DEATH"),
    C("detail", S, True, "one sentence naming the field and value at fault"),
], stage="registry"))

REGISTRY = {t.name: t for t in (PATIENT, TUMOUR, TREATMENT, QUARANTINE)}
