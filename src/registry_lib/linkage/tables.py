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

# The screening and CPES tables (issue 14), defined beside their builders.
from registry_lib.linkage.linked_feeds import LINKED_TABLES  # noqa: E402

REGISTRY.update(LINKED_TABLES)

# --------------------------------------------------------------------------------------------
# Added by linkage (helper L): outputs beside the four core tables.
# --------------------------------------------------------------------------------------------
_SIDE = [("nhs_number", S, "valid NHS number (cleaned)"), ("given_name", S, "given name (cleaned)"),
         ("family_name", S, "family name (cleaned)"), ("birth_date", S, "birth date as sent (YYYY-MM-DD shape)"),
         ("sex", S, "1 male, 2 female"), ("postcode", S, "postcode (cleaned)")]

_REVIEW_ROLES = ("nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode")
CLERICAL_REVIEW = register(Table("clerical_review", "Record pairs in the clerical review band (uncertain matches), with both identities.", [
    C("identity_id_l", I64, False, "identity (distinct cleaned identifiers) on the left"),
    C("identity_id_r", I64, False, "identity on the right"),
    C("match_probability", F64, False, "Fellegi–Sunter match probability"),
    C("match_weight", F64, False, "match weight (log2 Bayes factor including the prior)"),
    C("decision", S, False, "linked (probability ≥ threshold) or not linked"),
    C("same_patient", B, False, "both sides ended in the same registry person (possibly through other links)"),
    C("patient_id_l", I64, True, "registry person of the left side (null if not registered)"),
    C("patient_id_r", I64, True, "registry person of the right side"),
    C("records_l", S, False, "feed:record_id of the records with the left identity (up to 5)"),
    C("records_r", S, False, "feed:record_id of the records with the right identity (up to 5)"),
    *[C(f"{n}_l", t, True, f"left: {d}") for n, t, d in _SIDE],
    *[C(f"{n}_r", t, True, f"right: {d}") for n, t, d in _SIDE],
    C("review_key", S, False, "the pair for a decisions file: first record of each side, 'feed:record_id|feed:record_id'"),
    C("evidence", S, False, "one line: each identifier's comparison level and its weight of evidence (log2 m/u)"),
    *[C(f"level_{r}", S, True, f"{r}: comparison level reached (e.g. exact, nickname, missing)") for r in _REVIEW_ROLES],
    *[C(f"weight_{r}", F64, True, f"{r}: weight of evidence of that level, log2(m/u); 0 when missing") for r in _REVIEW_ROLES],
], stage="registry"))

OPTOUT_HASHES = register(Table("optout_hashes", "Keyed hashes of opted-out persons' NHS numbers, and the records removed or blocked.", [
    C("nhs_number_hash", S, False, "HMAC-SHA256 (hex) of the NHS number under the project key, purpose registration-optout"),
    C("optout_person", I64, False, "1, 2, … one per opted-out person (hashes of one person share it)"),
    C("request_date", D, True, "date of the opt-out request (null when not a real date: applies from the start)"),
    C("records_removed", I64, False, "records of this person received before the request (removed)"),
    C("records_blocked", I64, False, "records received on or after the request (blocked, never registered)"),
], stage="registry"))

DEATH_FLAGS = register(Table("death_flags", "Registered persons whose death is dated before their last recorded activity.", [
    C("patient_id", I64, False, "registry person id"),
    C("death_date", D, False, "linked death date"),
    C("last_activity_date", D, False, "date of the latest diagnosis or treatment"),
    C("last_activity", S, False, "diagnosis | sact | radiotherapy | surgery"),
    C("days_before", I64, False, "days from death to that activity"),
], stage="registry"))

VALIDATION_ISSUES = register(Table("validation_issues", "Field-level problems in kept records (the field was treated as missing).", [
    C("feed", S, False, "feed name"),
    C("record_id", S, False, "record id in that feed"),
    C("reason", S, False, "reason code, e.g. INVALID_NHS_NUMBER, INVALID_MORPHOLOGY"),
    C("detail", S, True, "the field at fault (identifier values are never copied)"),
], stage="registry"))

RECORD_LINKS = register(Table("record_links", "Where every feed record ended up (records of opted-out persons are left out).", [
    C("feed", S, False, "feed name"),
    C("record_id", S, False, "record id in that feed"),
    C("status", S, False, "linked | quarantined"),
    C("patient_id", I64, True, "registry person (linked records)"),
    C("tumour_id", I64, True, "registry tumour (notifications; treatments matched to a tumour)"),
    C("treatment_id", I64, True, "registry treatment (treatment records)"),
], stage="registry"))

MATCH_WEIGHTS = register(Table("match_weights", "Scored identity pairs: match weights, comparison levels and (with --evaluate) the truth.", [
    C("identity_id_l", I64, False, "identity on the left"),
    C("identity_id_r", I64, False, "identity on the right"),
    C("match_probability", F64, False, "match probability"),
    C("match_weight", F64, False, "match weight"),
    C("linked", B, False, "probability ≥ the clustering threshold"),
    C("same_cluster", B, False, "both identities ended in the same person"),
    *[C(f"gamma_{n}", I8, True, f"comparison level of {n} (-1 null, 0 else, higher = closer)")
      for n in ("nhs_number", "given_name", "family_name", "birth_date", "sex", "postcode")],
    C("n_records_l", I64, False, "records with the left identity"),
    C("n_records_r", I64, False, "records with the right identity"),
    C("is_match", B, True, "truth: the two identities belong to the same true person (null without --evaluate)"),
    C("errors_l", S, True, "truth: identifier errors injected into the left identity's records"),
    C("errors_r", S, True, "truth: identifier errors injected into the right identity's records"),
], stage="registry"))

REGISTRY_EXTRA = {t.name: t for t in (CLERICAL_REVIEW, OPTOUT_HASHES, DEATH_FLAGS, VALIDATION_ISSUES,
                                      RECORD_LINKS, MATCH_WEIGHTS)}
